//! The `otlp` receiver (the Collector's section, accepted as it is): its configuration, its
//! checks, and its servers ([`super::serve_grpc`], [`super::serve_http`]).

use crate::transport::tls::ServerTlsSettings;
use serde::{Deserialize, de::IgnoredAny};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{Limits, ReceiverError};
use crate::{
    component::{ReceiverConfig, ReceiverContext, StartFuture, Started},
    config::{
        section::{ConfigError, Section},
        tls::ServerTlsConfig,
    },
};

/// Where each protocol listens unless told otherwise: loopback.
const DEFAULT_GRPC: &str = "127.0.0.1:4317";
const DEFAULT_HTTP: &str = "127.0.0.1:4318";

/// The Collector's `otlp` receiver section, accepted as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    pub grpc: Option<OtlpServer>,
    pub http: Option<OtlpServer>,
}

/// One OTLP server (gRPC or HTTP). Unset fields take the Collector's defaults, except that
/// runbom binds to loopback unless told otherwise.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpServer {
    /// `host:port`; default `127.0.0.1:4317` (gRPC) or `127.0.0.1:4318` (HTTP).
    pub endpoint: Option<String>,
    /// Largest request accepted, in MiB (default 4).
    pub max_recv_msg_size_mib: Option<u64>,
    pub tls: Option<ServerTlsConfig>,
    /// runbom's own key: keep `runbom.*`/`aibom.*` attributes and kernel/drift event names that
    /// clients send (default false: they are moved under `received.`, contract §6). Only for a
    /// gateway whose clients are runbom node agents, authenticated (mTLS `client_ca_file`).
    #[serde(default)]
    pub trust_runbom_attributes: bool,
    // Accepted so that a Collector's section loads as it is; runbom does not use these.
    #[serde(default, rename = "max_concurrent_streams")]
    _max_concurrent_streams: IgnoredAny,
    #[serde(default, rename = "read_buffer_size")]
    _read_buffer_size: IgnoredAny,
    #[serde(default, rename = "write_buffer_size")]
    _write_buffer_size: IgnoredAny,
    #[serde(default, rename = "include_metadata")]
    _include_metadata: IgnoredAny,
    #[serde(default, rename = "transport")]
    _transport: IgnoredAny,
    #[serde(default, rename = "keepalive")]
    _keepalive: IgnoredAny,
    #[serde(default, rename = "cors")]
    _cors: IgnoredAny,
    #[serde(default, rename = "traces_url_path")]
    _traces_url_path: IgnoredAny,
    #[serde(default, rename = "logs_url_path")]
    _logs_url_path: IgnoredAny,
    #[serde(default, rename = "metrics_url_path")]
    _metrics_url_path: IgnoredAny,
}

impl OtlpReceiverConfig {
    /// Each configured protocol with its name and default address.
    fn servers(&self) -> [(&'static str, Option<&OtlpServer>, &'static str); 2] {
        [
            ("grpc", self.protocols.grpc.as_ref(), DEFAULT_GRPC),
            ("http", self.protocols.http.as_ref(), DEFAULT_HTTP),
        ]
    }

    /// Starts the receiver's servers.
    async fn start_servers(
        &self,
        name: &str,
        ctx: ReceiverContext<'_>,
    ) -> Result<Started, ReceiverError> {
        let mut started = Started::default();
        for (proto, server, default) in self.servers() {
            let tls = server_tls(name, proto, server)?;
            let Some(server) = server else { continue };
            let addr = server.endpoint.as_deref().unwrap_or(default);
            let what = format!("receiver `{name}` ({proto})");
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ReceiverError::Bind {
                    what: what.clone(),
                    addr: addr.to_owned(),
                    source,
                })?;
            let limits = Limits {
                max_request_bytes: server
                    .max_recv_msg_size_mib
                    .map_or(Limits::default().max_request_bytes, |m| (m as usize) << 20),
                trust_runbom_attributes: server.trust_runbom_attributes,
            };
            info!(
                receiver = name,
                "OTLP/{proto} listening on {}{}",
                listener.local_addr()?,
                if tls.is_some() { " (TLS)" } else { "" }
            );
            let ingest = ctx.ingest.clone();
            started.tasks.push(tokio::spawn(async move {
                let outcome = if proto == "grpc" {
                    super::serve_grpc(listener, ingest, limits, tls).await
                } else {
                    super::serve_http(listener, ingest, limits, tls).await
                };
                outcome.map_err(|source| ReceiverError::Serve { what, source })
            }));
        }
        Ok(started)
    }
}

impl ReceiverConfig for OtlpReceiverConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            return Err(at.at("protocols").error("enable `grpc` and/or `http`"));
        }
        for (proto, server, _) in self.servers() {
            if let Some(tls) = server.and_then(|s| s.tls.as_ref()) {
                tls.check(&at.at(&format!("protocols.{proto}.tls")))?;
            }
        }
        Ok(())
    }

    fn own_endpoints(&self) -> Vec<String> {
        self.servers()
            .into_iter()
            .filter_map(|(_, server, default)| {
                server.map(|s| {
                    let e = s.endpoint.as_deref().unwrap_or(default);
                    // A wildcard listener is reached on loopback and on the node's addresses.
                    e.replacen("localhost:", "127.0.0.1:", 1)
                })
            })
            .collect()
    }

    fn validate(&self, name: &str) -> Result<(), ReceiverError> {
        for (proto, server, _) in self.servers() {
            server_tls(name, proto, server)?;
        }
        Ok(())
    }

    fn start<'a>(&'a self, name: &'a str, ctx: ReceiverContext<'a>) -> StartFuture<'a> {
        Box::pin(self.start_servers(name, ctx))
    }
}

/// Reads a server's certificate files; `None` without a `tls` section.
fn server_tls(
    name: &str,
    proto: &str,
    server: Option<&OtlpServer>,
) -> Result<Option<rustls::ServerConfig>, ReceiverError> {
    let Some(tls) = server.and_then(|s| s.tls.as_ref()) else {
        return Ok(None);
    };
    let section = format!("receivers.{name}.protocols.{proto}.tls");
    // Checked when the configuration was read; kept as an error rather than a panic.
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err(ReceiverError::Tls(format!(
            "{section}: set both `cert_file` and `key_file`"
        )));
    };
    if tls.ca_file.is_some() {
        warn!(
            "{section}.ca_file does not check client certificates (nor does it in the Collector); \
             use client_ca_file for that"
        );
    }
    let settings = ServerTlsSettings {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        min_version: tls.min_version,
        max_version: tls.max_version,
        reload_interval: tls.reload_interval,
    };
    settings
        .load()
        .map(Some)
        .map_err(|e| ReceiverError::Tls(e.under(&section)))
}
