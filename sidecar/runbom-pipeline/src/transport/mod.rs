//! What receivers and exporters share on the wire: TLS settings ([`tls`]), the `google.rpc`
//! messages of OTLP error handling ([`rpc`]), a gRPC codec for requests encoded once
//! ([`codec`]) and an HTTP/2 connection's writes gathered per burst ([`gather`]).

pub mod codec;
pub mod gather;
pub mod rpc;
pub mod tls;
