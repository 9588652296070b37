//! TLS for the OTLP receivers: the server configuration each protocol uses. Connections and
//! their handshakes are [`super::conn`]'s.

use std::sync::Arc;

use rustls::ServerConfig;

/// `config` with the one application protocol this receiver speaks (`h2` for gRPC,
/// `http/1.1` for OTLP/HTTP), so clients that ask for it by ALPN get it.
pub(super) fn with_alpn(mut config: ServerConfig, protocol: &[u8]) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![protocol.to_vec()];
    Arc::new(config)
}
