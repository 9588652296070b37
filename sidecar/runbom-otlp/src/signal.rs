//! The unit that flows through runbom's pipelines: one OTLP export request of one signal.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::{
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data},
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

/// Which telemetry signal a pipeline carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    Traces,
    Logs,
    Metrics,
}

impl SignalKind {
    pub const ALL: [Self; 3] = [Self::Traces, Self::Logs, Self::Metrics];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
            Self::Metrics => "metrics",
        }
    }

    /// What one item of this signal is called in counters and messages.
    #[must_use]
    pub fn item(self) -> &'static str {
        match self {
            Self::Traces => "spans",
            Self::Logs => "log_records",
            Self::Metrics => "data_points",
        }
    }
}

/// One export request.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Signal {
    #[must_use]
    pub fn kind(&self) -> SignalKind {
        match self {
            Self::Traces(_) => SignalKind::Traces,
            Self::Logs(_) => SignalKind::Logs,
            Self::Metrics(_) => SignalKind::Metrics,
        }
    }

    /// Spans, log records or metric data points in the request (what batching counts).
    #[must_use]
    pub fn item_count(&self) -> usize {
        match self {
            Self::Traces(r) => count(&r.resource_spans, |r| &r.scope_spans, |s| s.spans.len()),
            Self::Logs(r) => count(&r.resource_logs, |r| &r.scope_logs, |s| s.log_records.len()),
            Self::Metrics(r) => count(
                &r.resource_metrics,
                |r| &r.scope_metrics,
                |s| s.metrics.iter().map(|m| data_points(m.data.as_ref())).sum(),
            ),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Traces(r) => r.resource_spans.is_empty(),
            Self::Logs(r) => r.resource_logs.is_empty(),
            Self::Metrics(r) => r.resource_metrics.is_empty(),
        }
    }

    /// Appends `other`'s resources to this request; `other` must be of the same kind
    /// (returned unchanged otherwise).
    pub fn merge(&mut self, other: Signal) -> Result<(), Signal> {
        match (self, other) {
            (Self::Traces(a), Self::Traces(b)) => a.resource_spans.extend(b.resource_spans),
            (Self::Logs(a), Self::Logs(b)) => a.resource_logs.extend(b.resource_logs),
            (Self::Metrics(a), Self::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// The request as protobuf: trace and log requests through [`crate::encode`] (each
    /// nested message measured once), metrics through prost. The bytes are prost's.
    #[must_use]
    pub fn to_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_protobuf(&mut out);
        out
    }

    /// [`Signal::to_protobuf`], appended to `out` (a buffer kept between requests).
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        use prost::Message as _;
        match self {
            Self::Traces(r) => crate::encode::encode_traces(r, out),
            Self::Logs(r) => crate::encode::encode_logs(r, out),
            Self::Metrics(r) => {
                out.reserve(r.encoded_len());
                // A `Vec` grows as needed: encoding into it cannot run out of room.
                let _ = r.encode(out);
            }
        }
    }

    /// The request cut into parts of at most `max_bytes` of protobuf each, in order, each part
    /// keeping its items' resource and scope; `None` when it has a single item (spans, log
    /// records; for metrics, metrics) and cannot be cut. A part of one item larger than
    /// `max_bytes` stays as it is.
    #[must_use]
    pub fn split_to_fit(&self, max_bytes: usize) -> Option<Vec<Signal>> {
        if self.units() < 2 {
            return None;
        }
        let mut parts = Vec::new();
        let mut todo = vec![self.clone()];
        let mut bytes = Vec::new();
        while let Some(mut part) = todo.pop() {
            bytes.clear();
            part.write_protobuf(&mut bytes);
            let units = part.units();
            if bytes.len() <= max_bytes || units < 2 {
                parts.push(part);
                continue;
            }
            let tail = part.split_off(units / 2);
            todo.push(tail);
            todo.push(part);
        }
        Some(parts)
    }

    /// What [`Signal::split_to_fit`] cuts between: spans, log records, or whole metrics.
    fn units(&self) -> usize {
        match self {
            Self::Traces(r) => count(&r.resource_spans, |r| &r.scope_spans, |s| s.spans.len()),
            Self::Logs(r) => count(&r.resource_logs, |r| &r.scope_logs, |s| s.log_records.len()),
            Self::Metrics(r) => count(
                &r.resource_metrics,
                |r| &r.scope_metrics,
                |s| s.metrics.len(),
            ),
        }
    }

    /// Keeps the first `at` units and returns the rest as a request of its own.
    fn split_off(&mut self, at: usize) -> Signal {
        match self {
            Self::Traces(r) => Self::Traces(ExportTraceServiceRequest {
                resource_spans: split_units(&mut r.resource_spans, at),
            }),
            Self::Logs(r) => Self::Logs(ExportLogsServiceRequest {
                resource_logs: split_units(&mut r.resource_logs, at),
            }),
            Self::Metrics(r) => Self::Metrics(ExportMetricsServiceRequest {
                resource_metrics: split_units(&mut r.resource_metrics, at),
            }),
        }
    }

    /// An empty request of `kind`.
    #[must_use]
    pub fn empty(kind: SignalKind) -> Self {
        match kind {
            SignalKind::Traces => Self::Traces(ExportTraceServiceRequest::default()),
            SignalKind::Logs => Self::Logs(ExportLogsServiceRequest::default()),
            SignalKind::Metrics => Self::Metrics(ExportMetricsServiceRequest::default()),
        }
    }
}

/// A resource or scope of a request: its items (scopes, or spans, log records, metrics) and a
/// copy of it without them, which a cut request's second part starts with.
trait Group {
    type Item;
    fn items(&mut self) -> &mut Vec<Self::Item>;
    fn without_items(&self) -> Self;
}

macro_rules! group {
    ($group:ty, $about:ident, $items:ident, $item:ty) => {
        impl Group for $group {
            type Item = $item;
            fn items(&mut self) -> &mut Vec<$item> {
                &mut self.$items
            }
            fn without_items(&self) -> Self {
                Self {
                    $about: self.$about.clone(),
                    $items: Vec::new(),
                    schema_url: self.schema_url.clone(),
                }
            }
        }
    };
}

group!(ResourceSpans, resource, scope_spans, ScopeSpans);
group!(ScopeSpans, scope, spans, Span);
group!(ResourceLogs, resource, scope_logs, ScopeLogs);
group!(ScopeLogs, scope, log_records, LogRecord);
group!(ResourceMetrics, resource, scope_metrics, ScopeMetrics);
group!(ScopeMetrics, scope, metrics, Metric);

/// Keeps the first `at` units (the items of the scopes, counted across every scope of every
/// resource, in order) in `resources` and returns the rest, under copies of the resource and
/// scope the cut fell in.
fn split_units<R, S>(resources: &mut Vec<R>, at: usize) -> Vec<R>
where
    R: Group<Item = S>,
    S: Group,
{
    // The resource and scope of the first unit that goes, and its place in the scope.
    let mut before = 0;
    let mut cut = None;
    'find: for (r, resource) in resources.iter_mut().enumerate() {
        for (s, scope) in resource.items().iter_mut().enumerate() {
            let n = scope.items().len();
            if before + n > at {
                cut = Some((r, s, at - before));
                break 'find;
            }
            before += n;
        }
    }
    let Some((r, s, i)) = cut else {
        return Vec::new();
    };
    let head = &mut resources[r];
    let mut scope = head.items()[s].without_items();
    *scope.items() = head.items()[s].items().split_off(i);
    let mut resource = head.without_items();
    resource.items().push(scope);
    resource.items().extend(head.items().split_off(s + 1));
    // A cut before the scope's first unit leaves no empty scope (nor resource) behind.
    if head.items()[s].items().is_empty() {
        head.items().pop();
    }
    let empty = head.items().is_empty();
    let mut rest = vec![resource];
    rest.extend(resources.split_off(r + 1));
    if empty {
        resources.pop();
    }
    rest
}

/// The items of every scope of every resource: the same walk for each signal.
fn count<R, S>(resources: &[R], scopes: impl Fn(&R) -> &[S], items: impl Fn(&S) -> usize) -> usize {
    resources.iter().flat_map(scopes).map(items).sum()
}

fn data_points(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
        metrics::v1::{Gauge, NumberDataPoint},
        resource::v1::Resource,
    };

    use super::*;

    fn resource(name: &str) -> Resource {
        Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(name.into())),
                }),
            }],
            ..Default::default()
        }
    }

    fn scope(name: &str) -> InstrumentationScope {
        InstrumentationScope {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Resources a and b; a has scopes x (3 spans) and y (4), b has z (5): each span named
    /// after where it is and a payload of `pad` bytes.
    fn traces(pad: usize) -> Signal {
        let spans = |at: &str, n: usize| -> Vec<Span> {
            (0..n)
                .map(|i| Span {
                    name: format!("{at}{i}"),
                    trace_id: vec![7; 16],
                    span_id: vec![i as u8; 8],
                    attributes: vec![KeyValue {
                        key: "pad".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("p".repeat(pad))),
                        }),
                    }],
                    ..Default::default()
                })
                .collect()
        };
        let scope_spans = |name: &str, n| ScopeSpans {
            scope: Some(scope(name)),
            spans: spans(name, n),
            schema_url: format!("https://example.com/{name}"),
        };
        Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource("a")),
                    scope_spans: vec![scope_spans("x", 3), scope_spans("y", 4)],
                    schema_url: "https://example.com/a".into(),
                },
                ResourceSpans {
                    resource: Some(resource("b")),
                    scope_spans: vec![scope_spans("z", 5)],
                    schema_url: String::new(),
                },
            ],
        })
    }

    /// Every span as (resource, scope, scope's schema URL, span name), in order.
    fn flat(signal: &Signal) -> Vec<(String, String, String, String)> {
        let Signal::Traces(r) = signal else {
            panic!("not traces")
        };
        let mut out = Vec::new();
        for rs in &r.resource_spans {
            let res = format!("{:?}", rs.resource);
            for ss in &rs.scope_spans {
                let sc = format!("{:?}", ss.scope);
                for span in &ss.spans {
                    out.push((
                        res.clone(),
                        sc.clone(),
                        ss.schema_url.clone(),
                        span.name.clone(),
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_cut_keeps_the_order_and_each_items_resource_and_scope() {
        let whole = traces(0);
        for at in 1..12 {
            let mut head = whole.clone();
            let tail = head.split_off(at);
            assert_eq!(head.units(), at, "cut at {at}");
            assert_eq!(tail.units(), 12 - at, "cut at {at}");
            let mut both = flat(&head);
            both.extend(flat(&tail));
            assert_eq!(both, flat(&whole), "cut at {at}");
            for part in [&head, &tail] {
                let Signal::Traces(r) = part else { panic!() };
                assert!(
                    r.resource_spans
                        .iter()
                        .all(|rs| rs.scope_spans.iter().all(|ss| !ss.spans.is_empty())),
                    "cut at {at}: an empty resource or scope was left in a part"
                );
            }
        }
    }

    #[test]
    fn split_to_fit_gives_parts_under_the_limit_in_order() {
        let whole = traces(1000);
        let size = whole.to_protobuf().len();
        let max = size / 4;
        let parts = whole.split_to_fit(max).expect("twelve spans can be cut");
        assert!(
            parts.len() >= 4,
            "{} parts of {size} bytes for {max}",
            parts.len()
        );
        for part in &parts {
            assert!(part.to_protobuf().len() <= max);
        }
        let joined: Vec<_> = parts.iter().flat_map(flat).collect();
        assert_eq!(joined, flat(&whole));
        // Everything fits: one part, the request itself.
        assert_eq!(whole.split_to_fit(size), Some(vec![whole.clone()]));
    }

    #[test]
    fn a_single_item_is_not_cut_and_stays_whole_when_too_large() {
        let one = |n| {
            Signal::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource("a")),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope("x")),
                        log_records: vec![LogRecord::default(); n],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            })
        };
        assert_eq!(one(1).split_to_fit(1), None);
        let parts = one(3).split_to_fit(1).expect("three records can be cut");
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.item_count() == 1));
    }

    #[test]
    fn metrics_are_cut_between_whole_metrics() {
        let metric = |name: &str, points: usize| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); points],
            })),
            ..Default::default()
        };
        let whole = Signal::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource("a")),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope("x")),
                    metrics: vec![metric("m1", 50), metric("m2", 3), metric("m3", 40)],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        });
        let parts = whole.split_to_fit(1).expect("three metrics can be cut");
        assert_eq!(parts.len(), 3);
        let points: Vec<usize> = parts.iter().map(Signal::item_count).collect();
        assert_eq!(points, [50, 3, 40]);
    }
}
