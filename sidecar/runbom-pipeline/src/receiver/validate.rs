//! The checks both receivers apply to a decoded request before it enters a pipeline.
//!
//! Items the OTLP data model calls invalid are dropped and reported back as a partial
//! success; everything else passes through untouched:
//! - spans: `trace_id` must be 16 bytes and `span_id` 8 bytes, neither all zero; a
//!   `parent_span_id`, when present, must be 8 bytes;
//! - log records: `trace_id` and `span_id` are optional, but when present must be 16 and 8
//!   bytes;
//! - metrics: not checked.
//!
//! A scope or resource left with no items because all of its items were dropped is dropped
//! too; one that arrived empty is kept as it was.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse},
        metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse},
        trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
    },
    logs::v1::LogRecord,
    trace::v1::Span,
};
use runbom_otlp::signal::{Signal, SignalKind};

/// What a receiver answers an accepted request with: how many items it dropped, and why.
/// An empty one (nothing rejected, no message) means full success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub rejected: u64,
    pub error_message: String,
}

impl PartialSuccess {
    /// Whether this is a full success (the OTLP responses then leave `partial_success` unset).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rejected == 0 && self.error_message.is_empty()
    }

    fn rejected_i64(&self) -> i64 {
        i64::try_from(self.rejected).unwrap_or(i64::MAX)
    }

    /// The `ExportTraceServiceResponse` carrying this outcome.
    #[must_use]
    pub fn traces(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (!self.is_empty()).then(|| ExportTracePartialSuccess {
                rejected_spans: self.rejected_i64(),
                error_message: self.error_message.clone(),
            }),
        }
    }

    /// The `ExportLogsServiceResponse` carrying this outcome.
    #[must_use]
    pub fn logs(&self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (!self.is_empty()).then(|| ExportLogsPartialSuccess {
                rejected_log_records: self.rejected_i64(),
                error_message: self.error_message.clone(),
            }),
        }
    }

    /// The `ExportMetricsServiceResponse` carrying this outcome.
    #[must_use]
    pub fn metrics(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (!self.is_empty()).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: self.rejected_i64(),
                error_message: self.error_message.clone(),
            }),
        }
    }
}

/// Drops the invalid items of `signal` and says how many were dropped and why.
pub(crate) fn drop_invalid(signal: &mut Signal) -> PartialSuccess {
    let kind = signal.kind();
    let (rejected, first) = match signal {
        Signal::Traces(r) => retain_valid(
            &mut r.resource_spans,
            |r| &mut r.scope_spans,
            |s| &mut s.spans,
            span_problem,
        ),
        Signal::Logs(r) => retain_valid(
            &mut r.resource_logs,
            |r| &mut r.scope_logs,
            |s| &mut s.log_records,
            log_problem,
        ),
        // Metrics are not checked; kernel records and annotated spans are made by runbom, never
        // received.
        Signal::Metrics(_)
        | Signal::KernelLogs(_)
        | Signal::KernelSpans(_)
        | Signal::AnnotatedTraces(_)
        | Signal::SharedLogs(_) => (0, None),
    };
    let Some(first) = first else {
        return PartialSuccess::default();
    };
    let rule = match kind {
        SignalKind::Traces => {
            "a span needs a 16-byte trace_id and an 8-byte span_id, neither all zero, \
             and an empty or 8-byte parent_span_id"
        }
        SignalKind::Logs => "a log record's trace_id and span_id, if set, must be 16 and 8 bytes",
        SignalKind::Metrics => "",
    };
    PartialSuccess {
        rejected,
        error_message: format!(
            "rejected {rejected} invalid {} ({rule}); first: {first}",
            kind.item()
        ),
    }
}

/// Keeps the items `problem` finds nothing wrong with; returns how many were dropped and the
/// first problem found.
fn retain_valid<R, S, I>(
    resources: &mut Vec<R>,
    scopes: fn(&mut R) -> &mut Vec<S>,
    items: fn(&mut S) -> &mut Vec<I>,
    problem: fn(&I) -> Option<String>,
) -> (u64, Option<String>) {
    let mut rejected = 0;
    let mut first = None;
    resources.retain_mut(|resource| {
        let scopes = scopes(resource);
        let had_scopes = !scopes.is_empty();
        scopes.retain_mut(|scope| {
            let items = items(scope);
            let had_items = !items.is_empty();
            items.retain(|item| match problem(item) {
                None => true,
                Some(p) => {
                    rejected += 1;
                    first.get_or_insert(p);
                    false
                }
            });
            !(had_items && items.is_empty())
        });
        !(had_scopes && scopes.is_empty())
    });
    (rejected, first)
}

fn span_problem(span: &Span) -> Option<String> {
    let bad = bad_id([
        (Id::Required("trace_id", 16), &span.trace_id),
        (Id::Required("span_id", 8), &span.span_id),
        (Id::Optional("parent_span_id", 8), &span.parent_span_id),
    ])?;
    Some(format!("span {:?} has {bad}", span.name))
}

fn log_problem(log: &LogRecord) -> Option<String> {
    let bad = bad_id([
        (Id::Optional("trace_id", 16), &log.trace_id),
        (Id::Optional("span_id", 8), &log.span_id),
    ])?;
    Some(format!("log record at {} has {bad}", log.time_unix_nano))
}

/// An id field and its length in bytes: required (set, and not all zero) or optional (empty,
/// or of that length).
#[derive(Clone, Copy)]
enum Id {
    Required(&'static str, usize),
    Optional(&'static str, usize),
}

/// The first id that breaks its rule, described.
fn bad_id<const N: usize>(ids: [(Id, &Vec<u8>); N]) -> Option<String> {
    ids.into_iter().find_map(|(rule, id)| {
        let (field, ok) = match rule {
            Id::Required(field, len) => (field, id.len() == len && id.iter().any(|b| *b != 0)),
            Id::Optional(field, len) => (field, id.is_empty() || id.len() == len),
        };
        (!ok).then(|| describe(field, id))
    })
}

fn describe(field: &str, id: &[u8]) -> String {
    if id.is_empty() {
        format!("an empty {field}")
    } else if id.iter().all(|b| *b == 0) && matches!(id.len(), 8 | 16) {
        format!("an all-zero {field}")
    } else {
        format!("a {}-byte {field}", id.len())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        logs::v1::{ResourceLogs, ScopeLogs},
        trace::v1::{ResourceSpans, ScopeSpans},
    };

    use super::*;

    fn span(name: &str, trace_id: &[u8], span_id: &[u8]) -> Span {
        Span {
            name: name.into(),
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            ..Span::default()
        }
    }

    fn traces(scopes: Vec<Vec<Span>>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        spans,
                        ..ScopeSpans::default()
                    })
                    .collect(),
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn drops_invalid_spans_and_says_why() {
        let good = span("good", &[1; 16], &[2; 8]);
        let mut signal = Signal::Traces(traces(vec![
            vec![
                good.clone(),
                span("short", &[1; 4], &[2; 8]),
                span("zero", &[1; 16], &[0; 8]),
            ],
            vec![span("empty", &[], &[2; 8])],
            vec![],
        ]));
        let partial = drop_invalid(&mut signal);
        assert_eq!(partial.rejected, 3, "{partial:?}");
        assert!(
            partial
                .error_message
                .contains("span \"short\" has a 4-byte trace_id"),
            "{partial:?}"
        );
        // The scope whose only span was dropped goes; the one that came empty stays.
        assert_eq!(
            signal,
            Signal::Traces(traces(vec![vec![good], vec![]])),
            "only the valid span should remain"
        );
    }

    #[test]
    fn a_request_of_only_invalid_spans_becomes_empty() {
        let mut signal = Signal::Traces(traces(vec![vec![span("x", &[0; 16], &[1; 8])]]));
        let partial = drop_invalid(&mut signal);
        assert_eq!(partial.rejected, 1);
        assert!(signal.is_empty(), "{signal:?}");
        assert!(
            partial.error_message.contains("an all-zero trace_id"),
            "{partial:?}"
        );
    }

    #[test]
    fn log_ids_are_optional_but_sized() {
        let log = |trace_id: &[u8], span_id: &[u8]| LogRecord {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            ..LogRecord::default()
        };
        let mut signal = Signal::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        log(&[], &[]),
                        log(&[1; 16], &[2; 8]),
                        log(&[1; 3], &[]),
                        log(&[], &[2; 7]),
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        });
        let partial = drop_invalid(&mut signal);
        assert_eq!(partial.rejected, 2, "{partial:?}");
        assert_eq!(signal.item_count(), 2, "{signal:?}");
    }

    #[test]
    fn full_success_leaves_partial_success_unset() {
        let ok = PartialSuccess::default();
        assert_eq!(ok.traces().partial_success, None);
        let partial = PartialSuccess {
            rejected: 2,
            error_message: "why".into(),
        };
        let response = partial.logs();
        let got = response
            .partial_success
            .expect("a rejection should set partial_success");
        assert_eq!(got.rejected_log_records, 2);
    }
}
