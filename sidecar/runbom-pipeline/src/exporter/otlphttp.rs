//! OTLP/HTTP exporter: protobuf bodies sent by POST to `<endpoint>/v1/traces`, `/v1/logs` and
//! `/v1/metrics`. The endpoint's scheme decides: `https://` uses TLS with the `tls` settings,
//! `http://` (or none) plain text, as the Collector's `otlphttp` exporter does.

use std::{io::Write as _, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, header};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, ResponseFuture, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::{
    buffer::KeptBuffer,
    error::{ExportError, causes, tls_hint},
    export::{ExportFuture, Exporter},
    network::{
        EventParts, MAX_REQUEST_BYTES, NetworkExporter, NetworkExporterConfig, NetworkSettings,
        SendsProtobuf, export_protobuf,
    },
};
use runbom_otlp::{
    signal::{Signal, SignalKind},
    split::split_encoded,
};

/// The connection pool: plain TCP, or TLS for an `https://` endpoint. A clone shares it.
#[derive(Clone)]
enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl Transport {
    fn new(settings: &NetworkSettings, https: bool) -> Result<Self, ExportError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new());
        if !https {
            return Ok(Self::Plain(client.build(http)));
        }
        let fail = |error| ExportError::Tls {
            exporter: "otlphttp",
            endpoint: settings.endpoint.clone(),
            error,
        };
        http.enforce_http(false);
        let config = settings.tls.load().map_err(fail)?;
        let mut connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        if let Some(name) = settings.tls.server_name().map_err(fail)? {
            connector = connector.with_server_name_resolver(FixedServerNameResolver::new(name));
        }
        Ok(Self::Tls(
            client.build(connector.enable_http1().wrap_connector(http)),
        ))
    }

    fn request(&self, request: Request<Full<Bytes>>) -> ResponseFuture {
        match self {
            Self::Plain(client) => client.request(request),
            Self::Tls(client) => client.request(request),
        }
    }
}

#[derive(Clone)]
pub struct HttpExporter {
    client: Transport,
    traces_url: hyper::Uri,
    logs_url: hyper::Uri,
    metrics_url: hyper::Uri,
    settings: NetworkSettings,
    /// Each request's protobuf is written here; kept for the next once sent.
    buffer: KeptBuffer,
    /// The parts a request held as kernel events is written in.
    parts: EventParts,
}

impl HttpExporter {
    pub fn new(settings: NetworkSettings) -> Result<Self, ExportError> {
        let base = settings.endpoint.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let uri = |path: &str| {
            format!("{base}{path}")
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ExportError::Endpoint {
                    exporter: "otlphttp",
                    endpoint: settings.endpoint.clone(),
                    reason: e.to_string(),
                })
        };
        for name in settings.headers.keys() {
            header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| ExportError::Header {
                exporter: "otlphttp",
                name: name.clone(),
                reason: "not a valid HTTP header name".into(),
            })?;
        }
        Ok(Self {
            client: Transport::new(&settings, base.starts_with("https://"))?,
            traces_url: uri("/v1/traces")?,
            logs_url: uri("/v1/logs")?,
            metrics_url: uri("/v1/metrics")?,
            settings,
            buffer: KeptBuffer::default(),
            parts: EventParts::default(),
        })
    }

    pub async fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        let url = match signal.kind() {
            SignalKind::Traces => &self.traces_url,
            SignalKind::Logs => &self.logs_url,
            SignalKind::Metrics => &self.metrics_url,
        };
        let url = url.clone();
        export_protobuf(self, &url, signal).await
    }
}

impl SendsProtobuf for HttpExporter {
    type Target = hyper::Uri;

    fn buffer(&mut self) -> &mut KeptBuffer {
        &mut self.buffer
    }

    fn parts(&mut self) -> &mut EventParts {
        &mut self.parts
    }

    async fn send(&mut self, url: &hyper::Uri, raw: Vec<u8>) -> Result<(), ExportError> {
        if let Some(parts) = split_encoded(&raw, MAX_REQUEST_BYTES) {
            self.buffer.give_back(raw);
            for part in parts {
                let body = if self.settings.gzip {
                    gzip(&part)
                } else {
                    Bytes::from(part)
                };
                self.post(url, body).await?;
            }
            return Ok(());
        }
        if self.settings.gzip {
            let body = gzip(&raw);
            self.buffer.give_back(raw);
            return self.post(url, body).await;
        }
        let body = Bytes::from(raw);
        let sent = self.post(url, body.clone()).await;
        // Every attempt's copy of the bytes is gone once the request has ended.
        if let Ok(body) = body.try_into_mut() {
            self.buffer.give_back(body.into());
        }
        sent
    }
}

impl HttpExporter {
    async fn post(&self, url: &hyper::Uri, body: Bytes) -> Result<(), ExportError> {
        self.settings
            .retry
            .run(&self.settings.retries, || self.post_once(url, body.clone()))
            .await
    }

    async fn post_once(&self, url: &hyper::Uri, body: Bytes) -> Result<(), ExportError> {
        let transport = |reason: String| ExportError::HttpTransport {
            url: url.to_string(),
            reason,
        };
        let mut req = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("runbom/", env!("CARGO_PKG_VERSION")),
            );
        if self.settings.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.settings.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(self.settings.timeout, self.client.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {:?}", self.settings.timeout)))?
            .map_err(|e| {
                let reason = causes(&e);
                match tls_hint(&reason, "use an http:// endpoint for plain text") {
                    Some(hint) => transport(format!("{reason} ({hint})")),
                    None => transport(reason),
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // Only the delay-seconds form; an HTTP-date falls back to backoff.
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| {
                String::from_utf8_lossy(&b.to_bytes())
                    .chars()
                    .take(200)
                    .collect()
            })
            .unwrap_or_default();
        Err(ExportError::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
            body,
            retry_after,
        })
    }
}

impl Exporter for HttpExporter {
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a> {
        Box::pin(Self::export(self, signal))
    }

    fn another(&self) -> Option<super::export::BoxExporter> {
        Some(Box::new(self.clone()))
    }
}

/// The `otlphttp` exporter's section.
pub type OtlpHttpExporterConfig = NetworkExporterConfig<HttpExporter>;

impl NetworkExporter for HttpExporter {
    fn connect(settings: NetworkSettings) -> Result<Self, ExportError> {
        Self::new(settings)
    }
}

/// A request body gzipped.
fn gzip(raw: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(raw);
    Bytes::from(enc.finish().unwrap_or_default())
}
