//! The `otlp` receiver (the Collector's section, accepted as it is): its configuration, its
//! checks, and its servers ([`super::serve_grpc`], [`super::serve_http`]).

use crate::transport::tls::ServerTlsSettings;
use serde::{Deserialize, de::IgnoredAny};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{Limits, PingPolicy, ReceiverError};
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
/// The largest `max_decoding_mib` (1 TiB): more bounds nothing a machine has.
const MAX_DECODING_MIB: u64 = 1 << 20;

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
    /// The Collector's `auth`: the `bearertokenauth` extension every request must satisfy.
    pub auth: Option<Auth>,
    /// gRPC: HTTP/2 streams per connection (default 100).
    pub max_concurrent_streams: Option<u32>,
    /// gRPC: the Collector's `keepalive` (`server_parameters` only).
    pub keepalive: Option<Keepalive>,
    /// How long a request may take to arrive whole, headers and body (the Collector's
    /// `confighttp` key, for both servers here; default 30 s).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub read_timeout: Option<std::time::Duration>,
    /// The Collector's network transport: only `tcp`.
    pub transport: Option<String>,
    /// HTTP: the Collector's paths; only their defaults (`/v1/traces`, ...) are served.
    pub traces_url_path: Option<String>,
    pub logs_url_path: Option<String>,
    pub metrics_url_path: Option<String>,
    /// HTTP: a connection on which no byte moved for this long is closed (the Collector's
    /// `confighttp` key; default 120 s). gRPC: `keepalive.server_parameters.max_connection_idle`.
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub idle_timeout: Option<std::time::Duration>,
    /// runbom's own key: connections open at once on this server (default 4096); more are
    /// closed as soon as they are accepted.
    pub max_connections: Option<usize>,
    /// runbom's own key: the memory, in MiB, the requests this server is decoding may hold
    /// together, each counted as its estimated decoded size plus its body (default 256); a
    /// request with no room is refused with a retry hint ([`super::inflight`]).
    pub max_decoding_mib: Option<u64>,
    /// runbom's own key: keep `runbom.*`/`aibom.*` attributes and kernel/drift event names that
    /// clients send (default false: they are moved under `received.`, contract §6). Only for a
    /// gateway whose clients are runbom node agents, authenticated (mTLS `client_ca_file`).
    #[serde(default)]
    pub trust_runbom_attributes: bool,
    // Read so that a Collector's section that sets them gets a clear refusal (`check`) rather
    // than a key silently doing nothing: runbom cannot honour them.
    pub read_buffer_size: Option<IgnoredAny>,
    pub write_buffer_size: Option<IgnoredAny>,
    /// Only `false` (the default): no runbom processor reads client metadata.
    pub include_metadata: Option<bool>,
    pub cors: Option<IgnoredAny>,
}

/// The Collector's `auth` section of a server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The name of an enabled extension under `extensions` (a `bearertokenauth`).
    pub authenticator: String,
}

/// The Collector's gRPC `keepalive` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    pub server_parameters: Option<KeepaliveServer>,
    /// The pings a client may send ([`super::pings`]); without the section, grpc-go's
    /// defaults (as in the Collector).
    pub enforcement_policy: Option<EnforcementPolicy>,
}

/// `keepalive.enforcement_policy`: a client pinging more often gets GOAWAY
/// `ENHANCE_YOUR_CALM` and is disconnected, as in grpc-go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementPolicy {
    /// The least time between a client's pings (default 5 min).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub min_time: Option<std::time::Duration>,
    /// Allow pings while no stream is open (default false: then a ping sooner than 2 h after
    /// the previous one is a strike).
    pub permit_without_stream: Option<bool>,
}

/// `keepalive.server_parameters`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveServer {
    /// Ping a connection silent for this long (default 2 h).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub time: Option<std::time::Duration>,
    /// Close it when the ping is not answered within this (default 20 s).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub timeout: Option<std::time::Duration>,
    /// Close a connection on which no byte moved for this long (default 120 s; runbom counts
    /// bytes, where the Collector counts calls: a connection kept busy only by pings is idle
    /// there, not here).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub max_connection_idle: Option<std::time::Duration>,
    /// Send GOAWAY to a connection this old (default: never) ...
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub max_connection_age: Option<std::time::Duration>,
    /// ... and close it this long after (default: never).
    #[serde(default, deserialize_with = "crate::config::duration::optional")]
    pub max_connection_age_grace: Option<std::time::Duration>,
}

impl OtlpServer {
    /// The limits this server enforces.
    fn limits(&self) -> Limits {
        let d = Limits::default();
        let keepalive = self
            .keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.as_ref());
        Limits {
            max_request_bytes: self.max_recv_msg_size_mib.map_or(d.max_request_bytes, |m| {
                usize::try_from(m).unwrap_or(usize::MAX >> 20) << 20
            }),
            max_concurrent_streams: self
                .max_concurrent_streams
                .unwrap_or(d.max_concurrent_streams),
            keepalive_time: keepalive.and_then(|k| k.time).or(d.keepalive_time),
            keepalive_timeout: keepalive
                .and_then(|k| k.timeout)
                .unwrap_or(d.keepalive_timeout),
            read_timeout: self.read_timeout.unwrap_or(d.read_timeout),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_decoding_bytes: self
                .max_decoding_mib
                .map_or(d.max_decoding_bytes, |m| m << 20),
            idle_timeout: self
                .idle_timeout
                .or(keepalive.and_then(|k| k.max_connection_idle))
                .unwrap_or(d.idle_timeout),
            max_connection_age: keepalive.and_then(|k| k.max_connection_age),
            max_connection_age_grace: keepalive.and_then(|k| k.max_connection_age_grace),
            ping_policy: self
                .keepalive
                .as_ref()
                .and_then(|k| k.enforcement_policy.as_ref())
                .map_or(d.ping_policy, |e| {
                    let d = PingPolicy::default();
                    Some(PingPolicy {
                        min_time: e.min_time.unwrap_or(d.min_time),
                        permit_without_stream: e
                            .permit_without_stream
                            .unwrap_or(d.permit_without_stream),
                    })
                }),
            trust_runbom_attributes: self.trust_runbom_attributes,
            ..d
        }
    }

    /// Values the YAML types allow but this server does not.
    fn check(&self, proto: &str, at: &Section) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint).map_err(|reason| at.at("endpoint").error(reason))?;
        }
        if self.max_recv_msg_size_mib == Some(0) {
            return Err(at
                .at("max_recv_msg_size_mib")
                .error("must be at least 1 (MiB)"));
        }
        if self.max_recv_msg_size_mib.is_some_and(|m| m > 1024) {
            return Err(at.at("max_recv_msg_size_mib").error("at most 1024 (MiB)"));
        }
        if self.read_timeout.is_some_and(|t| t.is_zero()) {
            return Err(at
                .at("read_timeout")
                .error("must be more than 0: without it a slow client holds memory forever"));
        }
        self.check_unsupported(proto, at)?;
        if self.max_connections == Some(0) {
            return Err(at.at("max_connections").error("must be at least 1"));
        }
        if self
            .max_decoding_mib
            .is_some_and(|m| !(1..=MAX_DECODING_MIB).contains(&m))
        {
            return Err(at.at("max_decoding_mib").error(format!(
                "must be from 1 to {MAX_DECODING_MIB} (MiB); a request larger than it is \
                 still decoded, alone"
            )));
        }
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(at.at("idle_timeout").error("must be more than 0"));
        }
        if let Some(t) = self.transport.as_deref().filter(|t| *t != "tcp") {
            return Err(at
                .at("transport")
                .error(format!("only `tcp` is supported, not `{t}`")));
        }
        if proto == "grpc" {
            if self.max_concurrent_streams == Some(0) {
                return Err(at.at("max_concurrent_streams").error("must be at least 1"));
            }
            for (key, set) in [
                ("traces_url_path", self.traces_url_path.is_some()),
                ("logs_url_path", self.logs_url_path.is_some()),
                ("metrics_url_path", self.metrics_url_path.is_some()),
                ("idle_timeout", self.idle_timeout.is_some()),
            ] {
                if set {
                    return Err(at.at(key).error("an `http` setting; gRPC has no URL paths, and its idle limit is `keepalive.server_parameters.max_connection_idle`"));
                }
            }
            if let Some(k) = &self.keepalive {
                check_keepalive(k, &at.at("keepalive"))?;
            }
        } else {
            if self
                .idle_timeout
                .is_some_and(|t| t < self.read_timeout.unwrap_or(Limits::default().read_timeout))
            {
                return Err(at.at("idle_timeout").error(
                    "must be at least `read_timeout`: a request may take that long to arrive",
                ));
            }
            for (key, set) in [
                (
                    "max_concurrent_streams",
                    self.max_concurrent_streams.is_some(),
                ),
                ("keepalive", self.keepalive.is_some()),
            ] {
                if set {
                    return Err(at
                        .at(key)
                        .error("a `grpc` setting; runbom's OTLP/HTTP server speaks HTTP/1.1"));
                }
            }
            for (key, value, default) in [
                ("traces_url_path", &self.traces_url_path, "/v1/traces"),
                ("logs_url_path", &self.logs_url_path, "/v1/logs"),
                ("metrics_url_path", &self.metrics_url_path, "/v1/metrics"),
            ] {
                if let Some(v) = value.as_deref().filter(|v| *v != default) {
                    return Err(at.at(key).error(format!(
                        "not supported: runbom serves `{default}`, not `{v}`"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_keepalive(k: &Keepalive, at: &Section) -> Result<(), ConfigError> {
    if k.enforcement_policy
        .as_ref()
        .and_then(|e| e.min_time)
        .is_some_and(|t| t.is_zero())
    {
        return Err(at
            .at("enforcement_policy")
            .at("min_time")
            .error("must be more than 0 (the least time between a client's pings)"));
    }
    if let Some(s) = &k.server_parameters {
        let at = at.at("server_parameters");
        for (key, value) in [
            ("max_connection_idle", s.max_connection_idle),
            ("max_connection_age", s.max_connection_age),
            ("max_connection_age_grace", s.max_connection_age_grace),
            ("time", s.time),
            ("timeout", s.timeout),
        ] {
            if value.is_some_and(|v| v.is_zero()) {
                return Err(at.at(key).error("must be more than 0"));
            }
        }
        if s.max_connection_age_grace.is_some() && s.max_connection_age.is_none() {
            return Err(at
                .at("max_connection_age_grace")
                .error("takes effect only with `max_connection_age`: set it too"));
        }
    }
    Ok(())
}

impl OtlpServer {
    /// The Collector's keys runbom reads but cannot honour: refused, naming why.
    fn check_unsupported(&self, proto: &str, at: &Section) -> Result<(), ConfigError> {
        let buffers = "not supported: runbom's HTTP/2 server sizes its buffers itself (they are \
                       bounded per connection by the requests it reads at once and \
                       `max_recv_msg_size_mib`); remove the key";
        for (key, set) in [
            ("read_buffer_size", self.read_buffer_size.is_some()),
            ("write_buffer_size", self.write_buffer_size.is_some()),
        ] {
            if set && proto == "grpc" {
                return Err(at.at(key).error(buffers));
            }
            if set {
                return Err(at.at(key).error("a `grpc` setting (and not supported)"));
            }
        }
        if self.include_metadata == Some(true) {
            return Err(at.at("include_metadata").error(
                "not supported: no runbom processor reads client metadata (only `false` is \
                 accepted)",
            ));
        }
        if self.cors.is_some() {
            return Err(at.at("cors").error(
                "not supported: runbom does not answer browsers' CORS preflight requests; \
                 let browser telemetry reach runbom through a Collector or proxy that does",
            ));
        }
        Ok(())
    }
}

/// `host:port` with a port from 1 to 65535 (0 would mean any free port).
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some((_, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("`{endpoint}` is not host:port"));
    };
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!(
            "`{endpoint}`: the port must be a number from 1 to 65535"
        )),
    }
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
            let limits = server.limits();
            let auth = match &server.auth {
                None => None,
                Some(a) => Some(ctx.authenticators.get(&a.authenticator).cloned().ok_or_else(
                    || {
                        ReceiverError::Auth(format!(
                            "receivers.{name}.protocols.{proto}.auth: extension `{}` is not enabled",
                            a.authenticator
                        ))
                    },
                )?),
            };
            let loopback = listener.local_addr()?.ip().is_loopback();
            if auth.is_some() && tls.is_none() && !loopback {
                warn!(
                    receiver = name,
                    "OTLP/{proto}: bearer tokens travel in plain text on a non-loopback address; \
                     add a `tls` section"
                );
            }
            info!(
                receiver = name,
                "OTLP/{proto} listening on {}{}{}",
                listener.local_addr()?,
                if tls.is_some() { " (TLS)" } else { "" },
                if auth.is_some() {
                    " (bearer token)"
                } else {
                    ""
                }
            );
            let ingest = ctx.ingest.clone();
            started.tasks.push(tokio::spawn(async move {
                let outcome = if proto == "grpc" {
                    super::serve_grpc(listener, ingest, limits, tls, auth).await
                } else {
                    super::serve_http(listener, ingest, limits, tls, auth).await
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
            let Some(server) = server else { continue };
            let at = at.at(&format!("protocols.{proto}"));
            server.check(proto, &at)?;
            if let Some(tls) = &server.tls {
                tls.check(&at.at("tls"))?;
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

    fn authenticators(&self) -> Vec<(String, String)> {
        self.servers()
            .into_iter()
            .filter_map(|(proto, server, _)| {
                let auth = server?.auth.as_ref()?;
                Some((
                    format!("protocols.{proto}.auth.authenticator"),
                    auth.authenticator.clone(),
                ))
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
