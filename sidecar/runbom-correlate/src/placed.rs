//! What the correlator hands out ([`Output`]) and what it holds placed until a trace is decided.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    resource::v1::Resource,
};
use runbom_event::{KernelEvent, semconv::correlation};

use crate::{
    Method,
    spans::{SpanId, TraceId},
};

/// What is ready to go on: application and kernel spans, and kernel log records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub traces: ExportTraceServiceRequest,
    pub logs: ExportLogsServiceRequest,
}

impl Output {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.traces.resource_spans.is_empty() && self.logs.resource_logs.is_empty()
    }
}

/// An event placed under a span, waiting for the span's trace to be decided.
pub(crate) struct Placed {
    pub(crate) event: KernelEvent,
    pub(crate) span: SpanId,
    pub(crate) trace: TraceId,
    pub(crate) resource: Arc<Resource>,
    pub(crate) method: Method,
    pub(crate) confidence: &'static str,
}

impl Placed {
    pub(crate) fn ancestry(
        event: KernelEvent,
        span: SpanId,
        trace: TraceId,
        resource: Arc<Resource>,
    ) -> Self {
        Self {
            event,
            span,
            trace,
            resource,
            method: Method::Ancestry,
            confidence: correlation::MEDIUM,
        }
    }
}
