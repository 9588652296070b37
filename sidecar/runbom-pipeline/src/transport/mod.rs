//! What receivers and exporters share on the wire: TLS settings ([`tls`]), the `google.rpc`
//! messages of OTLP error handling ([`rpc`]) and a gRPC codec for requests encoded once
//! ([`codec`]).

pub mod codec;
pub mod rpc;
pub mod tls;
