//! The unit that flows through runbom's pipelines: one OTLP export request of one signal.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::{
    annotated::AnnotatedTraces,
    kernel_logs::{KernelLogs, KernelSpans, cut_groups},
    shared_logs::SharedLogs,
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
    /// A log export request still held as the kernel events it is made of (made inside
    /// runbom, never received): batched, counted and written to the wire as it is; a
    /// component that reads or edits log records takes it as [`Signal::Logs`] through
    /// [`Signal::into_typed`].
    KernelLogs(KernelLogs),
    /// A trace export request still held as kernel events (their spans): as
    /// [`Signal::KernelLogs`], taken as [`Signal::Traces`] through [`Signal::into_typed`].
    KernelSpans(KernelSpans),
    /// A trace export request whose spans get attributes added as they are written (by a
    /// processor, once per distinct set): written to the wire as it is; a component that reads
    /// or edits spans takes it as [`Signal::Traces`] through [`Signal::into_typed`].
    AnnotatedTraces(AnnotatedTraces),
    /// A log export request held as its records' parts, shared among them (made by a
    /// processor): written to the wire as it is; a component that reads or edits log records
    /// takes it as [`Signal::Logs`] through [`Signal::into_typed`]. Boxed: its parts are
    /// several vectors.
    SharedLogs(Box<SharedLogs>),
}

impl Signal {
    #[must_use]
    pub fn kind(&self) -> SignalKind {
        match self {
            Self::Traces(_) | Self::KernelSpans(_) | Self::AnnotatedTraces(_) => SignalKind::Traces,
            Self::Logs(_) | Self::KernelLogs(_) | Self::SharedLogs(_) => SignalKind::Logs,
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
            Self::KernelLogs(k) => k.len(),
            Self::KernelSpans(k) => k.len(),
            Self::AnnotatedTraces(a) => a.spans().count(),
            Self::SharedLogs(s) => s.len(),
        }
    }

    /// Room for `additional` more items to be merged in ([`Signal::merge`]) when the request
    /// holds kernel events, whose vector would otherwise grow by doubling, moving them each
    /// time; other requests are left as they are.
    pub fn reserve(&mut self, additional: usize) {
        match self {
            Self::KernelLogs(k) => k.reserve(additional),
            Self::KernelSpans(k) => k.reserve(additional),
            _ => {}
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Traces(r) => r.resource_spans.is_empty(),
            Self::Logs(r) => r.resource_logs.is_empty(),
            Self::Metrics(r) => r.resource_metrics.is_empty(),
            Self::KernelLogs(k) => k.is_empty(),
            Self::KernelSpans(k) => k.is_empty(),
            Self::AnnotatedTraces(a) => a.request().resource_spans.is_empty(),
            Self::SharedLogs(s) => s.is_empty(),
        }
    }

    /// Appends `other`'s resources to this request; `other` must be of the same kind
    /// (returned unchanged otherwise).
    ///
    /// Kernel log records join kernel log records as events (one resource per process over
    /// both: the same records, in the same order within each process, under fewer copies of
    /// their resources), and kernel spans kernel spans; mixed with records already built, or
    /// written under other options, both are built and their resources appended.
    pub fn merge(&mut self, other: Signal) -> Result<(), Signal> {
        match (self, other) {
            (Self::Traces(a), Self::Traces(b)) => a.resource_spans.extend(b.resource_spans),
            (Self::Logs(a), Self::Logs(b)) => a.resource_logs.extend(b.resource_logs),
            (Self::Metrics(a), Self::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
            (Self::KernelLogs(a), Self::KernelLogs(b)) if a.writes_like(&b) => a.append(b),
            (Self::KernelSpans(a), Self::KernelSpans(b)) if a.writes_like(&b) => a.append(b),
            (Self::SharedLogs(a), Self::SharedLogs(b)) => a.append(*b),
            // Spans with attributes to add stay so, joined by spans without.
            (Self::AnnotatedTraces(a), Self::AnnotatedTraces(b)) => a.append(b),
            (Self::AnnotatedTraces(a), Self::Traces(b)) => a.append(AnnotatedTraces::plain(b)),
            (this, Self::AnnotatedTraces(b)) if matches!(this, Self::Traces(_)) => {
                let Self::Traces(a) = std::mem::replace(this, Self::empty(SignalKind::Traces))
                else {
                    unreachable!("matched as traces")
                };
                let mut joined = AnnotatedTraces::plain(a);
                joined.append(b);
                *this = Self::AnnotatedTraces(joined);
            }
            (this, other) if this.kind() == other.kind() && (this.is_held() || other.is_held()) => {
                // Both typed now: merged by the arms above.
                return this.typed_mut().merge(other.into_typed());
            }
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// The request as `opentelemetry-proto` types: kernel log records and shared log records
    /// are built into [`Signal::Logs`], kernel spans and annotated spans into [`Signal::Traces`] (the same
    /// request [`Signal::write_protobuf`] writes); any other signal is returned as it is. What
    /// every component that reads or edits records goes through.
    #[must_use]
    pub fn into_typed(mut self) -> Signal {
        self.typed_mut();
        self
    }

    /// [`Signal::into_typed`] in place; returns the typed request.
    pub fn typed_mut(&mut self) -> &mut Signal {
        match self {
            Self::KernelLogs(k) => *self = Self::Logs(k.to_request()),
            Self::KernelSpans(k) => *self = Self::Traces(k.to_request()),
            Self::AnnotatedTraces(a) => *self = Self::Traces(std::mem::take(a).into_request()),
            Self::SharedLogs(s) => *self = Self::Logs(s.to_request()),
            _ => {}
        }
        self
    }

    /// Whether the request is held in another form than `opentelemetry-proto` types (kernel
    /// events, spans with attributes beside them, or log records as shared parts):
    /// [`Signal::into_typed`] builds it.
    #[must_use]
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            Self::KernelLogs(_)
                | Self::KernelSpans(_)
                | Self::AnnotatedTraces(_)
                | Self::SharedLogs(_)
        )
    }

    /// The request as protobuf: trace and log requests through [`crate::encode`] (each
    /// nested message measured once), kernel log records and spans from their events
    /// ([`KernelLogs::write_protobuf`], [`KernelSpans::write_protobuf`]), metrics through
    /// prost. The bytes are prost's.
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
            Self::KernelLogs(k) => k.write_protobuf(out),
            Self::KernelSpans(k) => k.write_protobuf(out),
            Self::AnnotatedTraces(a) => a.write_protobuf(out),
            Self::SharedLogs(s) => s.write_protobuf(out),
        }
    }

    /// How many kernel events the request is held as, if it is held as events.
    #[must_use]
    pub fn event_count(&self) -> Option<usize> {
        match self {
            Self::KernelLogs(k) => Some(k.len()),
            Self::KernelSpans(k) => Some(k.events().len()),
            _ => None,
        }
    }

    /// A request held as more than `per_part` kernel events, cut into parts of at most
    /// `per_part` events ([`cut_groups`]), each written with [`Signal::write_protobuf_part`]
    /// from the events: what an exporter sends a request too large for its receiver as, without
    /// writing it whole first. `None` for any other request.
    #[must_use]
    pub fn event_parts(&self, per_part: usize) -> Option<Vec<Vec<Vec<usize>>>> {
        match self.event_count() {
            Some(n) if n > per_part => {}
            _ => return None,
        }
        let groups = match self {
            Self::KernelLogs(k) => k.groups(),
            Self::KernelSpans(k) => k.groups(),
            _ => return None,
        };
        Some(cut_groups(groups, per_part))
    }

    /// One part of [`Signal::event_parts`] as protobuf, appended to `out` (nothing for a part
    /// of kernel spans whose events have no span). A request not held as events is one part,
    /// written whole.
    pub fn write_protobuf_part(&self, part: &[Vec<usize>], out: &mut Vec<u8>) {
        match self {
            Self::KernelLogs(k) => k.write_protobuf_part(part, out),
            Self::KernelSpans(k) => k.write_protobuf_part(part, out),
            other => other.write_protobuf(out),
        }
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: trace
    /// and log requests through [`crate::json::write`], kernel log records and spans from their
    /// events ([`KernelLogs::write_json`], [`KernelSpans::write_json`]), metrics through
    /// `serde_json`.
    ///
    /// # Errors
    /// Only a metrics request `serde_json` cannot write.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Self::Traces(r) => crate::json::write::write_traces(r, out),
            Self::Logs(r) => crate::json::write::write_logs(r, out),
            Self::Metrics(r) => serde_json::to_writer(out, r)?,
            Self::KernelLogs(k) => k.write_json(out),
            Self::KernelSpans(k) => k.write_json(out),
            Self::AnnotatedTraces(a) => a.write_json(out),
            Self::SharedLogs(s) => s.write_json(out),
        }
        Ok(())
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
