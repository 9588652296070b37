//! OTLP/gRPC exporter (tonic), over TLS (rustls, through hyper-rustls's connector) unless
//! the configuration asks for plain text (see
//! [`ClientTlsSettings::grpc_uses_tls`](crate::transport::tls::ClientTlsSettings::grpc_uses_tls)).

use bytes::Bytes;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tonic::{
    codec::CompressionEncoding,
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, Endpoint},
};

use runbom_otlp::{
    signal::{Signal, SignalKind},
    split::split_encoded,
};

use super::{
    buffer::KeptBuffer,
    error::{ExportError, status_causes, tls_hint},
    export::{ExportFuture, Exporter},
    network::{
        EventParts, MAX_REQUEST_BYTES, NetworkExporter, NetworkExporterConfig, NetworkSettings,
        SendsProtobuf, export_protobuf,
    },
};
use crate::transport::{
    codec::{EncodedCodec, EncodedMessage, SendEncoded},
    gather::GatherConnector,
    tls::TlsError,
};

/// The `Export` methods of the three OTLP collector services.
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Sends a request encoded once (every retry sends the same bytes; nothing is cloned or
/// encoded again), as the three services' generated clients would. A clone shares the
/// channel (its connection).
#[derive(Clone)]
pub struct GrpcExporter {
    endpoint: String,
    tls: bool,
    grpc: tonic::client::Grpc<SendEncoded<Channel>>,
    metadata: MetadataMap,
    settings: NetworkSettings,
    /// Each request's protobuf is written here; kept for the next once sent.
    buffer: KeptBuffer,
    /// The parts a request held as kernel events is written in.
    parts: EventParts,
}

impl GrpcExporter {
    /// Connects lazily: a collector that is not up yet is not an error until data is sent.
    /// Certificate files are read here, so a missing or malformed one is an error now.
    ///
    /// Needs a Tokio runtime (the channel's worker task is spawned here).
    pub fn new(settings: NetworkSettings) -> Result<Self, ExportError> {
        let GrpcChannel {
            channel,
            endpoint,
            tls,
        } = GrpcChannel::new(&settings)?;
        let mut metadata = MetadataMap::new();
        for (name, value) in &settings.headers {
            let header_err = |reason: &str| ExportError::Header {
                exporter: "otlp",
                name: name.clone(),
                reason: reason.into(),
            };
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| header_err("not a valid gRPC metadata name"))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| header_err("value is not valid ASCII"))?;
            metadata.insert(key, value);
        }
        let mut grpc = tonic::client::Grpc::new(SendEncoded(channel));
        if settings.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(Self {
            endpoint,
            tls,
            grpc,
            metadata,
            settings,
            buffer: KeptBuffer::default(),
            parts: EventParts::default(),
        })
    }

    pub async fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        let path = PathAndQuery::from_static(match signal.kind() {
            SignalKind::Traces => TRACES,
            SignalKind::Logs => LOGS,
            SignalKind::Metrics => METRICS,
        });
        export_protobuf(self, &path, signal).await
    }
}

impl SendsProtobuf for GrpcExporter {
    type Target = PathAndQuery;

    fn buffer(&mut self) -> &mut KeptBuffer {
        &mut self.buffer
    }

    fn parts(&mut self) -> &mut EventParts {
        &mut self.parts
    }

    async fn send(&mut self, path: &PathAndQuery, body: Vec<u8>) -> Result<(), ExportError> {
        if let Some(parts) = split_encoded(&body, MAX_REQUEST_BYTES) {
            self.buffer.give_back(body);
            for part in parts {
                self.call(path, Bytes::from(part)).await?;
            }
            return Ok(());
        }
        let body = Bytes::from(body);
        let sent = self.call(path, body.clone()).await;
        // Every attempt's copy of the bytes is gone once the call has ended.
        if let Ok(body) = body.try_into_mut() {
            self.buffer.give_back(body.into());
        }
        sent
    }
}

impl GrpcExporter {
    /// One `Export` call of an encoded request, retried as the policy allows.
    async fn call(&self, path: &PathAndQuery, body: Bytes) -> Result<(), ExportError> {
        let tls = self.tls;
        let len = body.len();
        let fail = |status| ExportError::Grpc {
            endpoint: self.endpoint.clone(),
            status: Box::new(if tls { with_tls_hint(status) } else { status }),
        };
        self.settings
            .retry
            .run(&self.settings.retries, || {
                let mut grpc = self.grpc.clone();
                // Uncompressed, the message goes out as it is (`SendEncoded`), not through
                // tonic's codec; compressed, the codec writes it.
                let (mut request, codec) = if self.settings.gzip {
                    (tonic::Request::new(body.clone()), EncodedCodec::sized(len))
                } else {
                    let mut request = tonic::Request::new(Bytes::new());
                    request
                        .extensions_mut()
                        .insert(EncodedMessage(body.clone()));
                    (request, EncodedCodec::sized(0))
                };
                *request.metadata_mut() = self.metadata.clone();
                let path = path.clone();
                async move {
                    // As the generated clients do: a channel that cannot take the call is
                    // `Unknown`.
                    grpc.ready().await.map_err(|e| {
                        fail(tonic::Status::unknown(format!(
                            "Service was not ready: {e}"
                        )))
                    })?;
                    grpc.unary(request, path, codec)
                        .await
                        .map(drop)
                        .map_err(fail)
                }
            })
            .await
    }
}

/// A failed handshake's status, with what to change in the configuration (see
/// [`tls_hint`]); TLS is the default for a bare `host:port`.
fn with_tls_hint(status: tonic::Status) -> tonic::Status {
    let plain_text = "for plain text set `tls: {insecure: true}` or use an http:// endpoint";
    let reason = status_causes(&status);
    match tls_hint(&reason, plain_text) {
        Some(hint) => tonic::Status::new(status.code(), format!("{reason} ({hint})")),
        None => status,
    }
}

/// A lazily connected gRPC channel to an exporter's endpoint: plain text or TLS as
/// [`ClientTlsSettings::grpc_uses_tls`](crate::transport::tls::ClientTlsSettings::grpc_uses_tls)
/// decides, TLS by runbom's own connector (rustls, the settings' CAs and client certificate).
pub struct GrpcChannel {
    pub channel: Channel,
    /// The endpoint as connected to (`https://` or `http://`).
    pub endpoint: String,
    pub tls: bool,
}

impl GrpcChannel {
    /// Needs a Tokio runtime (the channel's worker task is spawned here). Certificate files
    /// are read here, so a missing or malformed one is an error now.
    pub fn new(settings: &NetworkSettings) -> Result<Self, ExportError> {
        let tls = settings.tls.grpc_uses_tls(&settings.endpoint);
        let address = settings
            .endpoint
            .strip_prefix("https://")
            .or_else(|| settings.endpoint.strip_prefix("http://"))
            .unwrap_or(&settings.endpoint);
        let endpoint = format!("{}://{address}", if tls { "https" } else { "http" });
        let bad = |reason: String| ExportError::Endpoint {
            exporter: "otlp",
            endpoint: settings.endpoint.clone(),
            reason,
        };
        let builder = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let channel = if tls {
            connect_tls(builder, http, settings)?
        } else {
            builder.connect_with_connector_lazy(GatherConnector(http))
        };
        Ok(Self {
            channel,
            endpoint,
            tls,
        })
    }
}

/// A lazily connected channel that speaks gRPC over TLS over `http`'s connections: ALPN `h2`,
/// the server's certificate checked against `tls` (and `server_name_override`, which also
/// becomes the `:authority`).
fn connect_tls(
    mut builder: Endpoint,
    http: HttpConnector,
    settings: &NetworkSettings,
) -> Result<Channel, ExportError> {
    let tls = &settings.tls;
    let fail = |error| ExportError::Tls {
        exporter: "otlp",
        endpoint: settings.endpoint.clone(),
        error,
    };
    let config = tls.load().map_err(fail)?;
    let mut https = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    if let Some(name) = tls.server_name().map_err(fail)? {
        let authority = match &name {
            rustls::pki_types::ServerName::IpAddress(rustls::pki_types::IpAddr::V6(_)) => {
                format!("https://[{}]", name.to_str())
            }
            _ => format!("https://{}", name.to_str()),
        };
        let origin = authority
            .parse()
            .map_err(|e: tonic::codegen::http::uri::InvalidUri| {
                fail(TlsError::ServerName(e.to_string()))
            })?;
        builder = builder.origin(origin);
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    Ok(builder
        .connect_with_connector_lazy(https.enable_http2().wrap_connector(GatherConnector(http))))
}

impl Exporter for GrpcExporter {
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a> {
        Box::pin(Self::export(self, signal))
    }

    fn another(&self) -> Option<super::export::BoxExporter> {
        Some(Box::new(self.clone()))
    }
}

/// The `otlp` exporter's section.
pub type OtlpExporterConfig = NetworkExporterConfig<GrpcExporter>;

impl NetworkExporter for GrpcExporter {
    fn connect(settings: NetworkSettings) -> Result<Self, ExportError> {
        Self::new(settings)
    }
}
