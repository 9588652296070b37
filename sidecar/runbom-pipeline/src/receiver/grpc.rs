//! OTLP/gRPC receiver: `TraceService`, `LogsService` and `MetricsService` on one tonic server
//! ([`super::grpc_export`]).
//!
//! tonic answers some failures itself, before a handler runs, with codes the OTLP spec does
//! not use: a payload that does not decode comes back `INTERNAL` and one over the size limit
//! `OUT_OF_RANGE`. [`OtlpCodes`] rewrites those to `INVALID_ARGUMENT` and
//! `RESOURCE_EXHAUSTED` (the handlers never answer `INTERNAL` or `OUT_OF_RANGE` themselves).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    Code, Request, Status,
    codegen::{Service, http},
    server::NamedService,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Server,
};

use super::{
    accept::Limits,
    conn,
    grpc_export::{ExportService, GrpcReceiver},
    inflight::DecodingBudget,
    sender::Peer,
    tls,
};
use crate::{extension::bearertokenauth::BearerTokenAuth, ingest::Ingest};

/// Serves OTLP/gRPC on `listener` until `ingest.stopping()` is cancelled, then lets the
/// requests in flight finish and returns.
///
/// Requests may be gzip-compressed; answers are gzip-compressed when the client accepts it.
/// A request larger than `limits.max_request_bytes`, compressed or not, or one that would take
/// more memory decoded than [`super::decoded_limit`] allows, is refused with
/// `RESOURCE_EXHAUSTED`; one that the requests being decoded leave no room for
/// ([`super::inflight`]) with `UNAVAILABLE` and a retry delay. With `tls`, every connection is TLS (ALPN `h2`). With `auth`, a call
/// without its token is answered `UNAUTHENTICATED` before its message is decoded.
pub async fn serve_grpc(
    listener: TcpListener,
    ingest: Ingest,
    limits: Limits,
    tls: Option<ServerConfig>,
    auth: Option<Arc<BearerTokenAuth>>,
) -> io::Result<()> {
    let check = BearerCheck(auth);
    let receiver = GrpcReceiver {
        ingest: ingest.clone(),
        limits,
        budget: DecodingBudget::new(limits.max_decoding_bytes),
    };
    let max = limits.max_request_bytes;
    let traces = ExportService::<ExportTraceServiceRequest>::new(receiver.clone(), max);
    let logs = ExportService::<ExportLogsServiceRequest>::new(receiver.clone(), max);
    let metrics = ExportService::<ExportMetricsServiceRequest>::new(receiver, max);
    let stop = ingest.stopping().clone();
    let mut builder = Server::builder();
    if let Some(age) = limits.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(grace) = limits.max_connection_age_grace {
        builder = builder.max_connection_age_grace(grace);
    }
    let router = builder
        .max_concurrent_streams(limits.streams_announced())
        .concurrency_limit_per_connection(limits.max_requests_per_connection)
        .timeout(limits.read_timeout)
        .http2_keepalive_interval(limits.keepalive_time)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // Streams a client resets before the server sees them cost memory too (CVE-2023-44487).
        .http2_max_pending_accept_reset_streams(Some(32))
        .add_service(OtlpCodes(InterceptedService::new(traces, check.clone())))
        .add_service(OtlpCodes(InterceptedService::new(logs, check.clone())))
        .add_service(OtlpCodes(InterceptedService::new(metrics, check)));
    let connections = conn::accept(
        listener,
        tls.map(|config| tls::with_alpn(config, b"h2")),
        limits,
        stop.clone(),
        ingest.receiver().to_owned(),
    );
    let served = router
        .serve_with_incoming_shutdown(
            ReceiverStream::new(connections).map(Ok::<_, io::Error>),
            stop.cancelled_owned(),
        )
        .await;
    served.map_err(io::Error::other)
}

/// Refuses calls without the `bearertokenauth` token, when there is one.
#[derive(Clone)]
struct BearerCheck(Option<Arc<BearerTokenAuth>>);

impl Interceptor for BearerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(auth) = &self.0 else {
            return Ok(request);
        };
        let token = request
            .metadata()
            .get(auth.header())
            .map(tonic::metadata::MetadataValue::as_bytes);
        if auth.accepts(token) {
            Ok(request)
        } else {
            tracing::debug!(client = ?request.extensions().get::<Peer>().map(|p| p.client), "gRPC call without a valid bearer token");
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

/// Wraps an OTLP service and rewrites the status codes tonic picks for requests it
/// rejects before the handler runs (see the module docs).
#[derive(Clone)]
struct OtlpCodes<S>(S);

impl<S: NamedService> NamedService for OtlpCodes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for OtlpCodes<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            remap_code(response.headers_mut());
            Ok(response)
        })
    }
}

/// Rewrites a trailers-only answer's `grpc-status` to the code OTLP asks for.
fn remap_code(headers: &mut http::HeaderMap) {
    let Some(code) = headers.get(GRPC_STATUS) else {
        return;
    };
    let code = match Code::from_bytes(code.as_bytes()) {
        Code::Internal => Code::InvalidArgument,
        Code::OutOfRange => Code::ResourceExhausted,
        _ => return,
    };
    headers.insert(GRPC_STATUS, http::HeaderValue::from(code as i32));
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_tonic_codes_to_otlp_codes() {
        for (from, to) in [
            (Code::Internal, Code::InvalidArgument),
            (Code::OutOfRange, Code::ResourceExhausted),
            (Code::Unavailable, Code::Unavailable),
            (Code::Ok, Code::Ok),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(GRPC_STATUS, http::HeaderValue::from(from as i32));
            remap_code(&mut headers);
            let got = Status::from_header_map(&headers)
                .map(|s| s.code())
                .expect("grpc-status should still be set");
            assert_eq!(got, to, "{from:?} should become {to:?}");
        }
    }
}
