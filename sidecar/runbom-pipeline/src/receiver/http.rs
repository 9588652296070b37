//! OTLP/HTTP receiver (hyper 1, HTTP/1.1): `POST /v1/traces`, `/v1/logs` and `/v1/metrics`.
//!
//! Bodies are binary protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`,
//! read by [`super::json`]), optionally `Content-Encoding: gzip`, over plain TCP or TLS. Every
//! answer uses the request's encoding: the `Export*ServiceResponse` on success, a
//! `google.rpc.Status` otherwise (binary protobuf when the request's content type was not
//! understood).
//!
//! | request                                          | answer |
//! |--------------------------------------------------|--------|
//! | without the token of the `auth` extension, when set | 401 (`WWW-Authenticate`), before anything else is read |
//! | path other than the three above                  | 404    |
//! | method other than POST                           | 405 (`Allow: POST`) |
//! | signal no pipeline takes from this receiver ([`Refusal::NotConfigured`]) | 404, as the Collector answers for a signal it has no pipeline for |
//! | missing or unknown `Content-Type` / `Content-Encoding` | 415 |
//! | body over [`Limits::max_request_bytes`], before or after gunzip | 413 |
//! | body that would take more memory decoded than [`super::decoded_limit`] allows | 413 |
//! | body the requests being decoded leave no room for ([`super::inflight`]) | 503 + `Retry-After` (seconds) |
//! | body not arrived whole within [`Limits::read_timeout`] | 408 |
//! | body that does not decode                        | 400    |
//! | [`Refusal::Unavailable`] (pipeline full or stopping) | 503 + `Retry-After` (seconds) |

use std::{convert::Infallible, io, io::Read as _, sync::Arc, time::Duration};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body as _, Incoming},
    header::{self, HeaderMap, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use runbom_otlp::signal::{Signal, SignalKind};
use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};

use super::{
    accept::{Limits, accept},
    conn,
    decoded_limit::{self, DecodedTooLarge, Format},
    inflight::DecodingBudget,
    json::{self, JsonError},
    sender::Peer,
    status::ErrorStatus,
    tls,
    validate::PartialSuccess,
};
use crate::{
    extension::bearertokenauth::BearerTokenAuth,
    ingest::{Ingest, Refusal},
};

/// How long shutdown waits for requests in flight before returning anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves OTLP/HTTP on `listener` until `ingest.stopping()` is cancelled, then stops
/// accepting connections, lets the requests in flight finish (for up to 10 s) and returns.
/// With `tls`, every connection is TLS (ALPN `http/1.1`). With `auth`, a request without its
/// token is answered 401 before its body is read.
///
/// Failed `accept`s are logged and retried, so this only returns at shutdown.
pub async fn serve_http(
    listener: TcpListener,
    ingest: Ingest,
    limits: Limits,
    tls: Option<ServerConfig>,
    auth: Option<Arc<BearerTokenAuth>>,
) -> io::Result<()> {
    let stop = ingest.stopping().clone();
    let graceful = GracefulShutdown::new();
    let receiver = Arc::new(HttpReceiver {
        ingest: ingest.clone(),
        limits,
        budget: DecodingBudget::new(limits.max_decoding_bytes),
        auth,
    });
    let mut connections = conn::accept(
        listener,
        tls.map(|config| tls::with_alpn(config, b"http/1.1")),
        Limits {
            ping_policy: None,
            ..limits
        },
        stop.clone(),
        ingest.receiver().to_owned(),
    );
    loop {
        let connection = tokio::select! {
            () = stop.cancelled() => break,
            connection = connections.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
        };
        let peer = connection.peer();
        serve_connection(connection, Some(peer), &receiver, &graceful);
    }
    drop(connections);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            receiver = ingest.receiver(),
            "OTLP/HTTP requests still in flight after {DRAIN_TIMEOUT:?}; not waiting for them"
        );
    }
    Ok(())
}

/// What every request of one server is answered with: the receiver's [`Ingest`], the
/// server's limits, its decoding budget and its bearer token check.
struct HttpReceiver {
    ingest: Ingest,
    limits: Limits,
    budget: Arc<DecodingBudget>,
    auth: Option<Arc<BearerTokenAuth>>,
}

/// Serves HTTP/1.1 on one connection, in its own task, watched by `graceful`.
fn serve_connection<S>(
    stream: S,
    client: Option<Peer>,
    receiver: &Arc<HttpReceiver>,
    graceful: &GracefulShutdown,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let read_timeout = receiver.limits.read_timeout;
    let receiver = Arc::clone(receiver);
    let service = service_fn(move |request| {
        let receiver = Arc::clone(&receiver);
        async move { Ok::<_, Infallible>(answer(request, client, &receiver).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "OTLP/HTTP connection ended with an error");
        }
    });
}

/// Why an OTLP/HTTP request was not accepted.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("missing or wrong bearer token")]
    Unauthenticated,
    #[error("no OTLP endpoint at {0:?}; use /v1/traces, /v1/logs or /v1/metrics")]
    NotFound(String),
    #[error("method {0} is not allowed; OTLP/HTTP takes POST")]
    MethodNotAllowed(Method),
    #[error("unsupported Content-Type {0:?}; use application/x-protobuf or application/json")]
    ContentType(String),
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    ContentEncoding(String),
    #[error("request body is larger than the limit of {limit} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error(transparent)]
    DecodedTooLarge(#[from] DecodedTooLarge),
    #[error("the request body did not arrive within {0:?}")]
    SlowBody(Duration),
    #[error("could not read the request body: {0}")]
    Body(String),
    #[error("malformed gzip body: {0}")]
    Gzip(io::Error),
    #[error("malformed OTLP protobuf payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("malformed OTLP/JSON payload: {0}")]
    Json(#[from] JsonError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl HttpError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::Refused(Refusal::NotConfigured(_)) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ContentType(_) | Self::ContentEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } | Self::DecodedTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Body(_) | Self::Gzip(_) | Self::Protobuf(_) | Self::Json(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Refused(Refusal::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `google.rpc.Status` sent as the body.
    fn rpc_status(&self) -> ErrorStatus {
        let code = match self {
            Self::Refused(refusal) => return ErrorStatus::from(refusal),
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::MethodNotAllowed(_) => tonic::Code::Unimplemented,
            Self::TooLarge { .. } | Self::DecodedTooLarge(_) => tonic::Code::ResourceExhausted,
            Self::SlowBody(_) => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::InvalidArgument,
        };
        ErrorStatus::new(code, self.to_string())
    }
}

/// The two OTLP/HTTP body encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// Reads `Content-Type`, ignoring case and parameters such as `charset`.
    fn of(headers: &HeaderMap) -> Result<Self, HttpError> {
        let raw = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = raw.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Self::Json)
        } else {
            Err(HttpError::ContentType(raw))
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        })
    }
}

async fn answer(
    request: Request<Incoming>,
    client: Option<Peer>,
    receiver: &HttpReceiver,
) -> Response<Full<Bytes>> {
    let ingest = &receiver.ingest;
    let encoding = Encoding::of(request.headers()).unwrap_or(Encoding::Protobuf);
    if let Some(auth) = &receiver.auth
        && !auth.accepts(
            request
                .headers()
                .get(auth.header())
                .map(HeaderValue::as_bytes),
        )
    {
        tracing::debug!(
            receiver = ingest.receiver(),
            ?client,
            "OTLP/HTTP request without a valid bearer token"
        );
        return failure(&HttpError::Unauthenticated, encoding);
    }
    match receive(request, client, receiver).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(receiver = ingest.receiver(), %error, "OTLP/HTTP request refused");
            failure(&error, encoding)
        }
    }
}

async fn receive(
    request: Request<Incoming>,
    client: Option<Peer>,
    receiver: &HttpReceiver,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let (ingest, limits) = (&receiver.ingest, receiver.limits);
    let kind = match request.uri().path() {
        "/v1/traces" => SignalKind::Traces,
        "/v1/logs" => SignalKind::Logs,
        "/v1/metrics" => SignalKind::Metrics,
        other => return Err(HttpError::NotFound(other.to_owned())),
    };
    if request.method() != Method::POST {
        return Err(HttpError::MethodNotAllowed(request.method().clone()));
    }
    if !ingest.accepts(kind) {
        return Err(Refusal::NotConfigured(kind).into());
    }
    let encoding = Encoding::of(request.headers())?;
    let gzipped = is_gzipped(request.headers())?;
    let limit = limits.max_request_bytes;
    let body = read_body(request.into_body(), limits).await?;
    let body = if gzipped {
        Bytes::from(gunzip(&body, limit)?)
    } else {
        body
    };
    let format = match encoding {
        Encoding::Protobuf => Format::Protobuf,
        Encoding::Json => Format::Json,
    };
    let estimate = decoded_limit::check(ingest, kind, format, &body)?;
    // Given back once the request's data is in the pipelines or refused, on every way out.
    let _decoding = receiver.budget.admit(ingest, kind, estimate, body.len())?;
    let signal = decode(kind, encoding, &body)?;
    drop(body);
    let partial = accept(ingest, signal, client, limits).await?;
    Ok(success(kind, encoding, &partial))
}

fn is_gzipped(headers: &HeaderMap) -> Result<bool, HttpError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let value = String::from_utf8_lossy(value.as_bytes());
    match value.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Ok(true),
        "" | "identity" => Ok(false),
        _ => Err(HttpError::ContentEncoding(value.into_owned())),
    }
}

/// Reads the body, refusing it as soon as it is known to exceed `limit`: from
/// `Content-Length` before reading, or while reading a chunked body.
async fn read_body(body: Incoming, limits: Limits) -> Result<Bytes, HttpError> {
    let limit = limits.max_request_bytes;
    let too_large = HttpError::TooLarge {
        limit,
        decompressed: false,
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large);
    }
    // A body trickled in slower than this is given up on, and what it held freed.
    match tokio::time::timeout(limits.read_timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(HttpError::SlowBody(limits.read_timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large),
        Ok(Err(error)) => Err(HttpError::Body(error.to_string())),
    }
}

/// Decompresses at most `limit` bytes, so a small body cannot expand without bound.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(HttpError::Gzip)?;
    if out.len() > limit {
        return Err(HttpError::TooLarge {
            limit,
            decompressed: true,
        });
    }
    Ok(out)
}

fn decode(kind: SignalKind, encoding: Encoding, body: &[u8]) -> Result<Signal, HttpError> {
    Ok(match (kind, encoding) {
        (SignalKind::Traces, Encoding::Protobuf) => {
            Signal::Traces(ExportTraceServiceRequest::decode(body)?)
        }
        (SignalKind::Logs, Encoding::Protobuf) => {
            Signal::Logs(ExportLogsServiceRequest::decode(body)?)
        }
        (SignalKind::Metrics, Encoding::Protobuf) => {
            Signal::Metrics(ExportMetricsServiceRequest::decode(body)?)
        }
        (kind, Encoding::Json) => json::decode(kind, body)?,
    })
}

fn success(
    kind: SignalKind,
    encoding: Encoding,
    partial: &PartialSuccess,
) -> Response<Full<Bytes>> {
    let body = match encoding {
        Encoding::Protobuf => match kind {
            SignalKind::Traces => partial.traces().encode_to_vec(),
            SignalKind::Logs => partial.logs().encode_to_vec(),
            SignalKind::Metrics => partial.metrics().encode_to_vec(),
        },
        Encoding::Json => json::response(kind, partial),
    };
    respond(StatusCode::OK, encoding, body)
}

fn failure(error: &HttpError, encoding: Encoding) -> Response<Full<Bytes>> {
    let status = error.rpc_status();
    let body = match encoding {
        Encoding::Protobuf => status.to_protobuf(),
        Encoding::Json => status.to_json(),
    };
    let mut response = respond(error.status(), encoding, body);
    let headers = response.headers_mut();
    if let HttpError::MethodNotAllowed(_) = error {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let HttpError::Unauthenticated = error {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    // These are answered without reading the body, so the connection cannot be reused: say so,
    // rather than letting the client find out with a broken pipe.
    if matches!(
        error,
        HttpError::NotFound(_)
            | HttpError::Unauthenticated
            | HttpError::MethodNotAllowed(_)
            | HttpError::ContentType(_)
            | HttpError::ContentEncoding(_)
            | HttpError::TooLarge { .. }
            | HttpError::Refused(Refusal::NotConfigured(_))
    ) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(delay) = status.retry_after {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

fn respond(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, encoding.content_type());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(value).expect("test header values are valid"),
        );
        headers
    }

    #[test]
    fn reads_content_type_loosely() {
        for (value, want) in [
            ("application/x-protobuf", Some(Encoding::Protobuf)),
            ("Application/JSON; charset=utf-8", Some(Encoding::Json)),
            ("text/plain", None),
        ] {
            assert_eq!(
                Encoding::of(&content_type(value)).ok(),
                want,
                "Content-Type {value:?}"
            );
        }
        assert!(
            Encoding::of(&HeaderMap::new()).is_err(),
            "a missing Content-Type is refused"
        );
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0_u8; 100_000])
            .expect("writing to a Vec cannot fail");
        let bomb = gz.finish().expect("finishing a Vec gzip cannot fail");
        assert!(bomb.len() < 1_000, "the test body should compress well");
        assert!(matches!(
            gunzip(&bomb, 10_000),
            Err(HttpError::TooLarge {
                decompressed: true,
                ..
            })
        ));
        assert_eq!(gunzip(&bomb, 100_000).map(|v| v.len()).ok(), Some(100_000));
    }
}
