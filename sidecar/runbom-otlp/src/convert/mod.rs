//! Kernel events as OTLP spans and log records, exactly as the telemetry contract
//! (`docs/telemetry-contract.md` §1) names them, with the names of [`runbom_event::semconv`].
//!
//! Events are grouped by the process (program run) that caused them: one `ResourceSpans` /
//! `ResourceLogs` per process, scope `runbom.kernel`. An event that no application trace claimed
//! becomes a root span in a trace shared by all events of its process, so a trace viewer shows a
//! program run's activity together. An event that the correlation placed in an application
//! trace ([`Placement`], contract §2) becomes a child of the application's span instead, under
//! the application's Resource.

use std::{net::IpAddr, sync::Arc};

use attributes::split_host_port;
pub(crate) use attributes::{event_attributes_into, log_only_attributes, process_attributes};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode},
};
use runbom_event::{
    Detail, KernelEvent, ProcessInfo,
    ids::new_span_id,
    semconv::{CONTAINER_ID, HOST_NAME, PROCESS_EXECUTABLE_PATH, PROCESS_PID, SERVICE_NAME, scope},
};

/// What the conversion needs to know beyond the events.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// `host.name` of this node.
    pub host_name: String,
    /// Emit spans for events that no application trace claimed (logs are always emitted).
    pub uncorrelated_spans: bool,
}

/// Where the correlation put one event: under an application span (contract §2).
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The application trace (after stitching).
    pub trace_id: [u8; 16],
    /// The application span the event happened in: the kernel span's parent.
    pub parent_span_id: [u8; 8],
    /// The application's Resource, shared by every event placed in that application.
    pub resource: Arc<Resource>,
    /// `runbom.correlation.method`: `traceparent`, `thread`, `process` or `ancestry`.
    pub method: &'static str,
    /// `runbom.correlation.confidence`: `high`, `medium` or `low`.
    pub confidence: &'static str,
}

/// One batch of events, converted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpBatch {
    pub traces: ExportTraceServiceRequest,
    pub logs: ExportLogsServiceRequest,
}

impl OtlpBatch {
    #[must_use]
    pub fn span_count(&self) -> usize {
        self.traces
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    #[must_use]
    pub fn log_count(&self) -> usize {
        self.logs
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }
}

/// Converts a batch of events. `placements[i]` says where the correlation put `events[i]`
/// (`None`, or a shorter slice, `&[]` included: not correlated). A placed event always
/// becomes a span (but `process.exit`, a log only); an unplaced one only with
/// `uncorrelated_spans`.
#[must_use]
pub fn convert(
    events: &[KernelEvent],
    placements: &[Option<Placement>],
    opts: &ConvertOptions,
) -> OtlpBatch {
    convert_parts(events, placements, opts, SpanIds::Chosen, Parts::Both)
}

/// The span ids of unplaced `events`' spans, chosen now so that spans and log records made
/// apart ([`convert_spans`] or [`KernelSpans`](crate::KernelSpans), [`KernelLogs::with_spans`](crate::KernelLogs::with_spans)) agree:
/// `None` for an event that has no span (`process.exit`), an MCP message's own span id, else
/// a new one.
#[must_use]
pub fn span_ids(events: &[KernelEvent]) -> Vec<Option<[u8; 8]>> {
    events.iter().map(span_id).collect()
}

/// The spans of unplaced `events` with the ids [`span_ids`] chose (`span_ids[i]` for
/// `events[i]`; `None`, or a shorter slice: no span): the trace request [`convert`] would
/// make with `uncorrelated_spans`, had it chosen these ids.
#[must_use]
pub fn convert_spans(
    events: &[KernelEvent],
    span_ids: &[Option<[u8; 8]>],
    opts: &ConvertOptions,
) -> ExportTraceServiceRequest {
    convert_parts(events, &[], opts, SpanIds::Given(span_ids), Parts::Spans).traces
}

/// The span ids of `events`' spans where [`convert`] makes spans (`placements[i]` says where
/// `events[i]` went): a placed event's, and an unplaced one's with `uncorrelated_spans`, as
/// [`span_ids`] chooses them; `None` for the others.
#[must_use]
pub fn placed_span_ids(
    events: &[KernelEvent],
    placements: &[Option<Placement>],
    opts: &ConvertOptions,
) -> Vec<Option<[u8; 8]>> {
    events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let placed = placements.get(i).is_some_and(Option::is_some);
            if placed || opts.uncorrelated_spans {
                span_id(ev)
            } else {
                None
            }
        })
        .collect()
}

/// The spans of `events` (placed as `placements` says) with the ids [`placed_span_ids`]
/// chose: the trace request [`convert`] would make, had it chosen these ids.
#[must_use]
pub fn convert_placed_spans(
    events: &[KernelEvent],
    span_ids: &[Option<[u8; 8]>],
    placements: &[Option<Placement>],
    opts: &ConvertOptions,
) -> ExportTraceServiceRequest {
    convert_parts(
        events,
        placements,
        opts,
        SpanIds::Given(span_ids),
        Parts::Spans,
    )
    .traces
}

/// The log records of `events` (placed as `placements` says), each pointing at the span whose
/// id `span_ids[i]` is, if any (else, when placed, at the application span it happened in).
pub(crate) fn convert_logs(
    events: &[KernelEvent],
    span_ids: &[Option<[u8; 8]>],
    placements: &[Option<Placement>],
    opts: &ConvertOptions,
) -> ExportLogsServiceRequest {
    convert_parts(
        events,
        placements,
        opts,
        SpanIds::Given(span_ids),
        Parts::Logs,
    )
    .logs
}

/// The span id of an event's span, `None` when it has none: the one rule [`convert`] and
/// [`span_ids`] both follow.
fn span_id(ev: &KernelEvent) -> Option<[u8; 8]> {
    match &ev.detail {
        Detail::Exit { .. } => None, // a log only
        Detail::Mcp(m) => Some(m.span_id),
        _ => Some(new_span_id()),
    }
}

/// Where the ids of the events' spans come from.
#[derive(Clone, Copy)]
enum SpanIds<'a> {
    /// [`span_id`], for a placed event, and for an unplaced one with `uncorrelated_spans`.
    Chosen,
    /// Chosen before: `ids[i]` for `events[i]` (the events are unplaced).
    Given(&'a [Option<[u8; 8]>]),
}

/// What of the batch is built.
#[derive(Clone, Copy, PartialEq)]
enum Parts {
    Both,
    Spans,
    Logs,
}

fn convert_parts(
    events: &[KernelEvent],
    placements: &[Option<Placement>],
    opts: &ConvertOptions,
    ids: SpanIds<'_>,
    parts: Parts,
) -> OtlpBatch {
    let groups = kernel_groups(events, placements);
    let scope = Some(kernel_scope());
    let mut batch = OtlpBatch::default();
    for group in &groups {
        let first = group[0];
        let resource = Some(match placements.get(first).and_then(Option::as_ref) {
            Some(p) => (*p.resource).clone(),
            None => resource(&events[first].process, opts),
        });
        let mut spans = Vec::with_capacity(if parts == Parts::Logs { 0 } else { group.len() });
        let mut logs = Vec::with_capacity(if parts == Parts::Spans {
            0
        } else {
            group.len()
        });
        for &i in group {
            let ev = &events[i];
            let placement = placements.get(i).and_then(Option::as_ref);
            let id = match ids {
                SpanIds::Chosen if placement.is_some() || opts.uncorrelated_spans => span_id(ev),
                SpanIds::Chosen => None,
                SpanIds::Given(ids) => ids.get(i).copied().flatten(),
            };
            if parts == Parts::Spans && id.is_none() {
                continue;
            }
            // The attributes are built once: the span gets a copy, the log record the original
            // with `event.name` added (there is room for it).
            let mut attributes = Vec::with_capacity(17);
            event_attributes_into(ev, placement, &mut attributes);
            let span = match (id, parts) {
                (Some(id), Parts::Spans) => {
                    spans.push(span(ev, placement, id, attributes));
                    continue;
                }
                (Some(id), Parts::Both) => Some(span(ev, placement, id, attributes.clone())),
                (_, Parts::Logs) | (None, _) => None,
            };
            // The log record points at the span: the span's ids, or (logs only) the same ids.
            let trace_id = placement.map_or(&ev.process.trace_id, |p| &p.trace_id);
            let points_at = match (&span, &id) {
                (Some(s), _) => Some((&s.trace_id[..], &s.span_id[..])),
                (None, Some(id)) if parts == Parts::Logs => Some((&trace_id[..], &id[..])),
                (None, _) => None,
            };
            log_only_attributes(ev, &mut attributes);
            logs.push(log(ev, points_at, placement, attributes));
            spans.extend(span);
        }
        if !spans.is_empty() {
            batch.traces.resource_spans.push(ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        if parts != Parts::Spans {
            batch.logs.resource_logs.push(ResourceLogs {
                resource,
                scope_logs: vec![ScopeLogs {
                    scope: scope.clone(),
                    log_records: logs,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
    }
    batch
}

/// The scope every kernel event is exported under.
pub(crate) fn kernel_scope() -> InstrumentationScope {
    InstrumentationScope {
        name: scope::KERNEL.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The Resource of an uncorrelated event's process run (also that of the GenAI spans runbom
/// synthesises for it).
#[must_use]
pub fn process_resource(p: &ProcessInfo, opts: &ConvertOptions) -> Resource {
    resource(p, opts)
}

/// The attributes of a kernel event, as its span and log record carry them.
#[must_use]
pub fn event_attributes(ev: &KernelEvent) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(17);
    event_attributes_into(ev, None, &mut a);
    a
}

fn resource(p: &ProcessInfo, opts: &ConvertOptions) -> Resource {
    let mut attributes = Vec::with_capacity(5);
    resource_attributes(p, opts, &mut attributes);
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The attributes of a process run's Resource.
pub(crate) fn resource_attributes(
    p: &ProcessInfo,
    opts: &ConvertOptions,
    a: &mut impl AttributeSink,
) {
    let name = if p.exe.is_empty() {
        "unknown"
    } else {
        p.exe_name()
    };
    a.str(SERVICE_NAME, name);
    a.str(HOST_NAME, &opts.host_name);
    a.int(PROCESS_PID, p.pid.into());
    if !p.exe.is_empty() {
        a.str(PROCESS_EXECUTABLE_PATH, &p.exe);
    }
    if let Some(id) = &p.container_id {
        a.str(CONTAINER_ID, id);
    }
}

/// The span of an event, with the id [`span_id`] chose for it, under its placement's span when
/// it has one.
fn span(
    ev: &KernelEvent,
    placement: Option<&Placement>,
    span_id: [u8; 8],
    attributes: Vec<KeyValue>,
) -> Span {
    let mut name = String::with_capacity(64);
    let kind = write_span_name(ev, &mut name);
    let status = error(ev).map(|e| Status {
        message: e.into_owned(),
        code: StatusCode::Error as i32,
    });
    Span {
        trace_id: placement
            .map_or(ev.process.trace_id, |p| p.trace_id)
            .to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: placement
            .map(|p| p.parent_span_id.to_vec())
            .unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: ev.start_ns,
        end_time_unix_nano: ev.end_ns,
        attributes,
        status,
        ..Default::default()
    }
}

/// The name of an event's span, appended to `name`; returns the span's kind.
fn write_span_name(ev: &KernelEvent, name: &mut String) -> SpanKind {
    use std::fmt::Write as _;
    let event = ev.detail.event_name();
    // Writing into a `String` cannot fail.
    match &ev.detail {
        // Never asked for: `process.exit` has no span id.
        Detail::Exit { .. } => {
            name.push_str(event);
            SpanKind::Internal
        }
        Detail::Exec { path, .. } | Detail::FileOpen { path, .. } => {
            push_all(name, &[event, " ", path]);
            SpanKind::Internal
        }
        // IPv6 addresses in brackets, so that `host:port` stays unambiguous.
        Detail::Connect { remote, .. } => {
            let _ = match remote.ip() {
                IpAddr::V4(ip) => write!(name, "{event} {ip}:{}", remote.port()),
                IpAddr::V6(ip) => write!(name, "{event} [{ip}]:{}", remote.port()),
            };
            SpanKind::Client
        }
        Detail::Accept { peer } => {
            let _ = match peer {
                Some(p) => write!(name, "{event} {}", p.ip()),
                None => write!(name, "{event} unknown"),
            };
            SpanKind::Server
        }
        Detail::DnsQuery { name: query, .. } => {
            push_all(name, &[event, " ", query]);
            SpanKind::Client
        }
        Detail::Mcp(m) => {
            name.push_str(&m.span_name());
            match m.side {
                runbom_event::McpSide::Client => SpanKind::Client,
                runbom_event::McpSide::Server => SpanKind::Server,
            }
        }
        Detail::HttpRequest(h) => {
            push_all(
                name,
                &[
                    event,
                    " ",
                    &h.method,
                    " ",
                    // `server.address`: the Host header without its port.
                    h.host
                        .as_deref()
                        .map_or("unknown", |host| split_host_port(host).0),
                ],
            );
            SpanKind::Client
        }
    }
}

/// An unplaced event's span but its attributes, with the id `span_id`, in its process's trace:
/// its name written into `name` (a buffer kept across events).
pub(crate) fn span_head<'a>(
    ev: &'a KernelEvent,
    span_id: &'a [u8; 8],
    name: &'a mut String,
) -> SpanHead<'a> {
    name.clear();
    let kind = write_span_name(ev, name);
    SpanHead {
        trace_id: &ev.process.trace_id,
        span_id,
        name,
        kind: kind as i32,
        start_time_unix_nano: ev.start_ns,
        end_time_unix_nano: ev.end_ns,
        error: error(ev),
    }
}

/// The log record of an event, pointing at its span when there is one (`span`: its trace and
/// span ids; else, when placed, at the application span it happened in).
/// `attributes` are the event's, `event.name` included.
fn log(
    ev: &KernelEvent,
    span: Option<(&[u8], &[u8])>,
    placement: Option<&Placement>,
    attributes: Vec<KeyValue>,
) -> LogRecord {
    let head = log_head(ev, None);
    let mut body = String::with_capacity(128);
    write_body(ev, &mut body);
    LogRecord {
        time_unix_nano: head.time_unix_nano,
        observed_time_unix_nano: head.observed_time_unix_nano,
        severity_number: head.severity_number,
        severity_text: head.severity_text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body)),
        }),
        attributes,
        event_name: head.event_name.into(),
        trace_id: span.map_or_else(
            || placement.map(|p| p.trace_id.to_vec()).unwrap_or_default(),
            |(trace_id, _)| trace_id.to_vec(),
        ),
        span_id: span.map_or_else(
            || {
                placement
                    .map(|p| p.parent_span_id.to_vec())
                    .unwrap_or_default()
            },
            |(_, span_id)| span_id.to_vec(),
        ),
        dropped_attributes_count: head.dropped_attributes_count,
        flags: head.flags,
    }
}

/// An unplaced event's log record but its body and attributes; pointing at the span whose id
/// is `span_id` (in the process's trace) when the event has one.
pub(crate) fn log_head<'a>(ev: &'a KernelEvent, span_id: Option<&'a [u8; 8]>) -> LogHead<'a> {
    log_head_at(ev, span_id, None)
}

/// [`log_head`] of an event the correlation may have placed: pointing at its span (in the
/// application's trace when placed), else, when placed, at the application span it happened
/// in, as [`convert`]'s log records do.
pub(crate) fn log_head_at<'a>(
    ev: &'a KernelEvent,
    span_id: Option<&'a [u8; 8]>,
    placement: Option<&'a Placement>,
) -> LogHead<'a> {
    let failed = error(ev).is_some();
    LogHead {
        time_unix_nano: ev.start_ns,
        observed_time_unix_nano: ev.end_ns,
        severity_number: if failed {
            SeverityNumber::Warn
        } else {
            SeverityNumber::Info
        } as i32,
        severity_text: if failed { "WARN" } else { "INFO" },
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: match (span_id, placement) {
            (_, Some(p)) => &p.trace_id,
            (Some(_), None) => &ev.process.trace_id,
            (None, None) => &[],
        },
        span_id: match (span_id, placement) {
            (Some(id), _) => id,
            (None, Some(p)) => &p.parent_span_id,
            (None, None) => &[],
        },
        event_name: ev.detail.event_name(),
    }
}

fn error(ev: &KernelEvent) -> Option<std::borrow::Cow<'static, str>> {
    match &ev.detail {
        Detail::Connect { error, .. } | Detail::FileOpen { error, .. } => error.map(Into::into),
        Detail::Mcp(m) => mcp::error_type(m),
        _ => None,
    }
}

fn any_str(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

fn any_int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(i)),
    }
}

fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any_str(value)),
    }
}

/// A string attribute whose value is already an owned `String` (moved, not copied).
fn kv_string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any_int(value)),
    }
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::BoolValue(value)),
        }),
    }
}

mod attributes;
mod body;
mod genai;
mod groups;
mod mcp;
mod sink;

use body::push_all;
pub(crate) use body::write_body;
pub(crate) use groups::kernel_groups;
pub use sink::AttributeSink;
pub(crate) use sink::formatted_in;

/// The fields of a log record but its body and attributes, as the writers of
/// [`crate::encode`] and [`crate::json::write`] take them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogHead<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

impl<'a> LogHead<'a> {
    pub(crate) fn of(l: &'a LogRecord) -> Self {
        LogHead {
            time_unix_nano: l.time_unix_nano,
            observed_time_unix_nano: l.observed_time_unix_nano,
            severity_number: l.severity_number,
            severity_text: &l.severity_text,
            dropped_attributes_count: l.dropped_attributes_count,
            flags: l.flags,
            trace_id: &l.trace_id,
            span_id: &l.span_id,
            event_name: &l.event_name,
        }
    }
}

/// The fields of an unplaced kernel event's span but its attributes (no parent, trace state,
/// events, links or flags), as the writers of [`crate::encode`] and [`crate::json::write`] take
/// them.
#[derive(Clone, Debug)]
pub(crate) struct SpanHead<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// The status message of a failed event (its status code is then `ERROR`).
    pub error: Option<std::borrow::Cow<'static, str>>,
}

#[cfg(test)]
mod tests;
