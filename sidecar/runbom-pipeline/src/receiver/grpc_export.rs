//! The three OTLP/gRPC export services (`TraceService`, `LogsService`, `MetricsService`), each
//! decoding its request with a codec that first checks what the request would take decoded
//! ([`super::decoded_limit`]) and takes that from the server's decoding budget
//! ([`super::inflight`]): `opentelemetry-proto`'s generated servers decode with prost before
//! anything can look at the request's bytes. The decoded request carries its share of the
//! budget to the handler ([`Decoded`]), which gives it back once the request is pushed or
//! refused.
//!
//! They are served as the generated servers serve them: tonic's [`Grpc`] reads the message
//! (gzip-compressed or not, refused over `max_decoding_message_size`), calls the handler and
//! writes its answer; only the codec differs.
//!
//! The handlers push a request through [`GrpcReceiver`] and answer a refusal with
//! [`error_status`]; [`super::grpc`] serves the three services on one server.

use std::{convert::Infallible, marker::PhantomData, sync::Arc};

use bytes::{Buf as _, Bytes};

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use runbom_otlp::signal::{Signal, SignalKind};
use tonic::{
    Request, Response, Status,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder},
    codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http},
    metadata::{MetadataMap, MetadataValue},
    server::{Grpc, NamedService, UnaryService},
};
use tonic_prost::{ProstCodec, ProstEncoder};

use super::{
    accept::{Limits, accept},
    decoded_limit::{self, Format},
    inflight::{DecodingBudget, DecodingPermit},
    sender::Peer,
    status::ErrorStatus,
    validate::PartialSuccess,
};
use crate::ingest::{Ingest, Refusal};

/// An OTLP export request and what its service answers.
pub(super) trait ExportRequest: prost::Message + Default + Send + 'static {
    /// The gRPC service that takes it; its one method is `Export`.
    const SERVICE: &'static str;
    const KIND: SignalKind;
    type Response: prost::Message + Send + 'static;

    fn into_signal(self) -> Signal;
    fn response(partial: &PartialSuccess) -> Self::Response;
}

impl ExportRequest for ExportTraceServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const KIND: SignalKind = SignalKind::Traces;
    type Response = ExportTraceServiceResponse;

    fn into_signal(self) -> Signal {
        Signal::Traces(self)
    }

    fn response(partial: &PartialSuccess) -> Self::Response {
        partial.traces()
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const KIND: SignalKind = SignalKind::Logs;
    type Response = ExportLogsServiceResponse;

    fn into_signal(self) -> Signal {
        Signal::Logs(self)
    }

    fn response(partial: &PartialSuccess) -> Self::Response {
        partial.logs()
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const KIND: SignalKind = SignalKind::Metrics;
    type Response = ExportMetricsServiceResponse;

    fn into_signal(self) -> Signal {
        Signal::Metrics(self)
    }

    fn response(partial: &PartialSuccess) -> Self::Response {
        partial.metrics()
    }
}

/// The export service of requests `R`: `/<R::SERVICE>/Export`.
pub(super) struct ExportService<R> {
    receiver: GrpcReceiver,
    max_request_bytes: usize,
    request: PhantomData<fn() -> R>,
}

impl<R> ExportService<R> {
    pub(super) fn new(receiver: GrpcReceiver, max_request_bytes: usize) -> Self {
        Self {
            receiver,
            max_request_bytes,
            request: PhantomData,
        }
    }
}

impl<R> Clone for ExportService<R> {
    fn clone(&self) -> Self {
        Self::new(self.receiver.clone(), self.max_request_bytes)
    }
}

impl<R: ExportRequest> NamedService for ExportService<R> {
    const NAME: &'static str = R::SERVICE;
}

impl<R, B> Service<http::Request<B>> for ExportService<R>
where
    R: ExportRequest,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(R::SERVICE));
        if method != Some("/Export") {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let receiver = self.receiver.clone();
        let codec = CheckedCodec::<R>::new(receiver.ingest.clone(), receiver.budget.clone());
        let mut grpc = Grpc::new(codec)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_request_bytes);
        Box::pin(async move { Ok(grpc.unary(Export::<R>::new(receiver), request).await) })
    }
}

/// What the three OTLP services push through: one [`Ingest`], and one decoding budget.
#[derive(Clone)]
pub(super) struct GrpcReceiver {
    pub(super) ingest: Ingest,
    pub(super) limits: Limits,
    pub(super) budget: Arc<DecodingBudget>,
}

impl GrpcReceiver {
    pub(super) async fn export(
        &self,
        signal: Signal,
        client: Option<Peer>,
    ) -> Result<PartialSuccess, Status> {
        accept(&self.ingest, signal, client, self.limits)
            .await
            .map_err(|refusal| {
                tracing::debug!(receiver = self.ingest.receiver(), %refusal, "gRPC export refused");
                refusal_status(&refusal)
            })
    }
}

/// `UNAVAILABLE` carries the retry delay twice: as a `google.rpc.RetryInfo` in the status
/// details (read by Go clients and the Collector) and in the `google.rpc.retryinfo-bin`
/// trailer (read by the Python SDK's exporter).
fn refusal_status(refusal: &Refusal) -> Status {
    error_status(&ErrorStatus::from(refusal))
}

/// The gRPC status of an error answer: its code and message, and the `google.rpc.Status` in
/// the details (with the retry delay also in the `google.rpc.retryinfo-bin` trailer).
pub(super) fn error_status(status: &ErrorStatus) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(info) = status.retry_info() {
        metadata.insert_bin("google.rpc.retryinfo-bin", MetadataValue::from_bytes(&info));
    }
    Status::with_details_and_metadata(
        status.code,
        status.message.clone(),
        Bytes::from(status.to_protobuf()),
        metadata,
    )
}

/// A decoded request with its share of the decoding budget, held until it is pushed or
/// refused.
pub(super) struct Decoded<R> {
    request: R,
    _decoding: DecodingPermit,
}

/// The handler of `Export`: the decoded request pushed through [`GrpcReceiver::export`].
struct Export<R> {
    receiver: GrpcReceiver,
    request: PhantomData<fn() -> R>,
}

impl<R> Export<R> {
    fn new(receiver: GrpcReceiver) -> Self {
        Self {
            receiver,
            request: PhantomData,
        }
    }
}

impl<R: ExportRequest> UnaryService<Decoded<R>> for Export<R> {
    type Response = R::Response;
    type Future = BoxFuture<Response<R::Response>, Status>;

    fn call(&mut self, request: Request<Decoded<R>>) -> Self::Future {
        let receiver = self.receiver.clone();
        Box::pin(async move {
            let client = request.extensions().get::<Peer>().copied();
            let Decoded { request, _decoding } = request.into_inner();
            let partial = receiver.export(request.into_signal(), client).await?;
            Ok(Response::new(R::response(&partial)))
        })
    }
}

/// prost's codec, with a decoder that first checks the request's decoded size
/// ([`decoded_limit::check`]) and takes it from the decoding budget.
struct CheckedCodec<R> {
    ingest: Ingest,
    budget: Arc<DecodingBudget>,
    request: PhantomData<fn() -> R>,
}

impl<R> CheckedCodec<R> {
    fn new(ingest: Ingest, budget: Arc<DecodingBudget>) -> Self {
        Self {
            ingest,
            budget,
            request: PhantomData,
        }
    }
}

impl<R: ExportRequest> Codec for CheckedCodec<R> {
    type Encode = R::Response;
    type Decode = Decoded<R>;
    type Encoder = ProstEncoder<R::Response>;
    type Decoder = CheckedDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<R::Response, R>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            ingest: self.ingest.clone(),
            budget: self.budget.clone(),
            request: PhantomData,
        }
    }
}

struct CheckedDecoder<R> {
    ingest: Ingest,
    budget: Arc<DecodingBudget>,
    request: PhantomData<fn() -> R>,
}

impl<R: ExportRequest> Decoder for CheckedDecoder<R> {
    type Item = Decoded<R>;
    type Error = Status;

    fn decode(&mut self, message: &mut DecodeBuf<'_>) -> Result<Option<Decoded<R>>, Status> {
        // The whole message, decompressed; taken out of tonic's buffer without a copy.
        let message = message.copy_to_bytes(message.remaining());
        let estimate = decoded_limit::check(&self.ingest, R::KIND, Format::Protobuf, &message)
            .map_err(|too_large| {
                let status =
                    ErrorStatus::new(tonic::Code::ResourceExhausted, too_large.to_string());
                error_status(&status)
            })?;
        let decoding = self
            .budget
            .admit(&self.ingest, R::KIND, estimate, message.len())
            .map_err(|refusal| refusal_status(&refusal))?;
        // As prost's own decoder answers (`INTERNAL`, which `OtlpCodes` makes
        // `INVALID_ARGUMENT`).
        let request = R::decode(message).map_err(|error| Status::internal(error.to_string()))?;
        Ok(Some(Decoded {
            request,
            _decoding: decoding,
        }))
    }
}
