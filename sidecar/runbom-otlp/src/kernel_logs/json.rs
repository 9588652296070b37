//! The log and trace export requests as OTLP/JSON, written from the events: the objects of
//! [`crate::json::write`] (its field order, escaping, ids and times), fed from the events by
//! [`crate::convert`](mod@crate::convert)'s descriptions of a log record and a span instead of
//! from a built request.

use std::cell::Cell;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use runbom_event::ProcessInfo;

use super::{KernelLogs, Request};
use crate::{
    ConvertOptions,
    convert::{self, AttributeSink},
    json::write as w,
};

/// The whole log or trace request: every group's `ResourceLogs` or `ResourceSpans`, but a group
/// none of whose events has an item in `request`, under the group's resource (its
/// application's when placed, else its process run's) and `scope`; `item` writes the item of
/// each event that has one, in order.
fn walk(
    out: &mut Vec<u8>,
    request: Request,
    logs: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
    scratch: &Cell<String>,
    mut item: impl FnMut(&mut Vec<u8>, usize),
) {
    let has = |i| request.has(logs, i);
    let groups = groups.iter().filter(|group| group.iter().any(|&i| has(i)));
    let groups = |out: &mut Vec<u8>| {
        w::array_with(out, groups, |out, group| {
            let process = &logs.events[group[0]].process;
            let placement = logs.placement(group[0]);
            let resource = |out: &mut Vec<u8>| match placement {
                // An application's, as it sent it.
                Some(placed) => w::resource(out, &placed.resource),
                None => resource(out, process, &logs.opts, scratch),
            };
            let mut items = |out: &mut Vec<u8>| {
                let items = group.iter().filter(|&&i| has(i));
                w::array_with(out, items, |out, &i| item(out, i));
            };
            let scopes = |out: &mut Vec<u8>| {
                w::array_with(out, [()], |out, ()| match request {
                    Request::Logs => w::scope_logs_with(out, Some(scope), &mut items, ""),
                    Request::Traces => w::scope_spans_with(out, Some(scope), &mut items, ""),
                });
            };
            match request {
                Request::Logs => w::resource_logs_with(out, resource, scopes, ""),
                Request::Traces => w::resource_spans_with(out, resource, scopes, ""),
            }
        });
    };
    match request {
        Request::Logs => w::write_logs_with(out, groups),
        Request::Traces => w::write_traces_with(out, groups),
    }
}

/// The log request of `logs`' events in `groups`.
pub(super) fn write(
    out: &mut Vec<u8>,
    logs: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
) {
    let mut body = String::with_capacity(256);
    let scratch = Cell::new(String::with_capacity(64));
    let scratch = &scratch;
    walk(
        out,
        Request::Logs,
        logs,
        groups,
        scope,
        scratch,
        |out, i| record(out, logs, i, &mut body, scratch),
    );
}

/// The trace request of `events`' events in `groups` that have a span.
pub(super) fn write_spans(
    out: &mut Vec<u8>,
    events: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
) {
    let mut name = String::with_capacity(128);
    let scratch = Cell::new(String::with_capacity(64));
    let scratch = &scratch;
    walk(
        out,
        Request::Traces,
        events,
        groups,
        scope,
        scratch,
        |out, i| {
            let (ev, Some(id)) = (&events.events[i], events.span_id(i)) else {
                return;
            };
            w::kernel_span_with(out, &convert::span_head(ev, id, &mut name), |out| {
                attributes(out, scratch, |a| {
                    convert::event_attributes_into(ev, None, a);
                });
            });
        },
    );
}

/// The Resource of a process run.
fn resource(
    out: &mut Vec<u8>,
    process: &ProcessInfo,
    opts: &ConvertOptions,
    scratch: &Cell<String>,
) {
    w::resource_with(
        out,
        |out| {
            attributes(out, scratch, |a| {
                convert::resource_attributes(process, opts, a);
            });
        },
        0,
        &[],
    );
}

/// The log record of `logs`' event `i`.
fn record(
    out: &mut Vec<u8>,
    logs: &KernelLogs,
    i: usize,
    body: &mut String,
    scratch: &Cell<String>,
) {
    let ev = &logs.events[i];
    body.clear();
    convert::write_body(ev, body);
    w::log_record_with(
        out,
        &convert::log_head_at(ev, logs.span_id(i), logs.placement(i)),
        |out| w::string_value(out, body),
        |out| {
            attributes(out, scratch, |a| {
                convert::event_attributes_into(ev, logs.placement(i), a);
                convert::log_only_attributes(ev, a);
                if let Some(set) = logs.appended_set(i) {
                    a.encoded(set.json());
                }
            });
        },
    );
}

/// The array of attributes `f` gives.
fn attributes(out: &mut Vec<u8>, scratch: &Cell<String>, f: impl FnOnce(&mut Attributes<'_>)) {
    out.push(b'[');
    f(&mut Attributes {
        out,
        first: true,
        scratch,
    });
    out.push(b']');
}

/// Attributes written as the elements of a JSON array of `KeyValue` objects.
struct Attributes<'a> {
    out: &'a mut Vec<u8>,
    /// No element written yet (none needs a comma before it).
    first: bool,
    /// Where formatted values are written, kept across events.
    scratch: &'a Cell<String>,
}

impl Attributes<'_> {
    fn key_value(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        self.comma();
        w::key_value_with(self.out, key, value);
    }

    /// Attributes already written (`KeyValue` objects, comma-separated).
    fn encoded(&mut self, key_values: &[u8]) {
        if !key_values.is_empty() {
            self.comma();
            self.out.extend_from_slice(key_values);
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }
}

impl AttributeSink for Attributes<'_> {
    fn str(&mut self, key: &'static str, value: &str) {
        self.key_value(key, |out| w::string_value(out, value));
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.key_value(key, |out| w::int_value(out, value));
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.key_value(key, |out| w::bool_value(out, value));
    }

    fn double(&mut self, key: &'static str, value: f64) {
        self.key_value(key, |out| w::double_value(out, value));
    }

    fn strs<'v>(&mut self, key: &'static str, values: impl Iterator<Item = &'v str>) {
        self.key_value(key, |out| {
            w::array_value_with(out, |out| w::array_with(out, values, w::string_value));
        });
    }

    fn formatted(&mut self, key: &'static str, write: impl FnOnce(&mut String)) {
        let scratch = self.scratch;
        convert::formatted_in(scratch, write, |value| self.str(key, value));
    }
}
