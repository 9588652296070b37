//! [`Processor::push`] with the verdicts beside the request ([`AnnotatedTraces`]) instead of
//! written onto its spans: what runbom's pipelines use, since their exporters write the
//! verdicts' attributes from one encoding per distinct verdict.

use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use runbom_otlp::{AnnotatedTraces, SharedLogs};

use super::Processor;
use crate::{annotate::Annotations, bom::DeclaredBom};

/// What [`Processor::push_annotated`] lets go on: the spans, with the `aibom.*` attributes
/// each gets when written, and the alerts, held as their parts for the exporters to write
/// ([`SharedLogs::to_request`] is the request `push` returns).
#[derive(Debug, Default)]
pub struct AnnotatedRelease {
    pub traces: Option<AnnotatedTraces>,
    pub alerts: Option<SharedLogs>,
}

impl Processor {
    /// [`Processor::push`], the verdicts of the spans judged where they sit in `req` kept
    /// beside it: [`AnnotatedTraces::into_request`] is the request `push` returns (the spans
    /// of held traces released with it get theirs written).
    pub fn push_annotated(
        &mut self,
        req: ExportTraceServiceRequest,
        now: Instant,
        bom: &DeclaredBom,
    ) -> AnnotatedRelease {
        let spans = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let mut annotations = Annotations::new(spans);
        let out = self.push_with(req, now, bom, Some(&mut annotations));
        AnnotatedRelease {
            traces: out.traces.map(|t| annotations.finish(t)),
            alerts: (!out.alerts.is_empty()).then_some(out.alerts),
        }
    }
}
