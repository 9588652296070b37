//! The log and trace export requests as protobuf, written from the events: the walk of
//! [`crate::encode`] (its field order and length rules), fed from the events by
//! [`crate::convert`](mod@crate::convert)'s descriptions of a log record and a span instead of
//! from a built request.

use std::cell::Cell;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use runbom_event::{KernelEvent, ProcessInfo};

use super::{KernelLogs, Request};
use crate::{
    ConvertOptions,
    convert::{self, AttributeSink},
    encode::{self, Pass, Shift},
};

/// About the bytes of a kernel log record or span (8192 opens of one process, `batch`'s default, are
/// more than 4 MiB). A group's length is written after room guessed from its records: a guess
/// too small (or too large) moves the whole group, megabytes in a full batch of a busy process.
const RECORD_BYTES: usize = 512;

/// Every group's `ResourceLogs` or `ResourceSpans` (their fields and tags are the same), but a
/// group none of whose events has an item in `request`: under the group's resource (its
/// application's when placed, else its process run's) and `scope`, `item` writes the item of
/// each event that has one, in order.
fn walk<P: Pass>(
    p: &mut P,
    request: Request,
    logs: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
    scratch: &Scratch,
    mut item: impl FnMut(&mut P, usize),
) {
    let has = |i| request.has(logs, i);
    for group in groups {
        if !group.iter().any(|&i| has(i)) {
            continue;
        }
        let process = &logs.events[group[0]].process;
        let placement = logs.placement(group[0]);
        let room = encode::room_for(group.len() * RECORD_BYTES);
        encode::resource_logs_message(p, room, |p| {
            encode::resource_logs_with(
                p,
                Some(|p: &mut P| match placement {
                    // An application's, as it sent it.
                    Some(placed) => encode::resource(p, &placed.resource),
                    None => resource(p, process, &logs.opts, scratch),
                }),
                |p, tag| {
                    p.message_sized(tag, room, |p| {
                        encode::scope_logs_with(
                            p,
                            Some(scope),
                            |p, tag| {
                                for &i in group.iter().filter(|&&i| has(i)) {
                                    p.message_sized(tag, encode::ROOM_RECORD, |p| item(p, i));
                                }
                            },
                            "",
                        );
                    });
                },
                "",
            );
        });
    }
}

/// The log records of `logs`' events in `groups`.
pub(super) fn records<P: Pass>(
    p: &mut P,
    logs: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
    body: &mut String,
    scratch: &Scratch,
) {
    walk(p, Request::Logs, logs, groups, scope, scratch, |p, i| {
        record(p, logs, i, body, scratch);
    });
}

/// The spans of `events`' events in `groups` that have one.
pub(super) fn spans<P: Pass>(
    p: &mut P,
    events: &KernelLogs,
    groups: &[Vec<usize>],
    scope: &InstrumentationScope,
    name: &mut String,
    scratch: &Scratch,
) {
    walk(
        p,
        Request::Traces,
        events,
        groups,
        scope,
        scratch,
        |p, i| {
            if let Some(id) = events.span_id(i) {
                span(p, &events.events[i], *id, name, scratch);
            }
        },
    );
}

/// The Resource of a process run.
fn resource<P: Pass>(p: &mut P, process: &ProcessInfo, opts: &ConvertOptions, scratch: &Scratch) {
    encode::resource_with(
        p,
        |p, tag| convert::resource_attributes(process, opts, &mut Attributes { p, tag, scratch }),
        0,
        &[],
    );
}

/// The span of event `ev`, whose id is `id`.
fn span<P: Pass>(p: &mut P, ev: &KernelEvent, id: [u8; 8], name: &mut String, scratch: &Scratch) {
    encode::kernel_span_with(p, &convert::span_head(ev, &id, name), |p, tag| {
        convert::event_attributes_into(ev, None, &mut Attributes { p, tag, scratch });
    });
}

/// The log record of `logs`' event `i`.
fn record<P: Pass>(p: &mut P, logs: &KernelLogs, i: usize, body: &mut String, scratch: &Scratch) {
    let ev = &logs.events[i];
    body.clear();
    convert::write_body(ev, body);
    encode::log_record_with(
        p,
        &convert::log_head_at(ev, logs.span_id(i), logs.placement(i)),
        Some(|p: &mut P, tag| {
            p.len_prefix(tag, encode::string_value_len(body));
            encode::string_value(p, body);
        }),
        |p, tag| {
            let mut a = Attributes { p, tag, scratch };
            convert::event_attributes_into(ev, logs.placement(i), &mut a);
            convert::log_only_attributes(ev, &mut a);
            if let Some(set) = logs.appended_set(i) {
                a.p.encoded(set.protobuf());
            }
        },
    );
}

/// Buffers the writers keep across the events of one write.
#[derive(Default)]
pub(super) struct Scratch {
    /// Where formatted values are written.
    value: Cell<String>,
    /// The facts of the last process written.
    facts: Cell<Facts>,
}

/// A process's facts ([`convert::process_attributes`]) as `KeyValue` messages, encoded once
/// and copied into each record of the process's events that follows.
#[derive(Default)]
struct Facts {
    /// The address of the process they are of, and their tag. The events borrowed for the
    /// write hold their processes, so within one write an address is one process.
    of: Option<(usize, u32)>,
    bytes: Vec<u8>,
}

/// Attributes written as `KeyValue` messages under `tag`, each with its lengths known before
/// it is written.
struct Attributes<'a, P> {
    p: &'a mut P,
    tag: u32,
    scratch: &'a Scratch,
}

impl<P: Pass> AttributeSink for Attributes<'_, P> {
    fn str(&mut self, key: &'static str, value: &str) {
        encode::key_value_sized(
            self.p,
            self.tag,
            key,
            encode::string_value_len(value),
            |p| encode::string_value(p, value),
        );
    }

    fn int(&mut self, key: &'static str, value: i64) {
        encode::key_value_sized(self.p, self.tag, key, encode::int_value_len(value), |p| {
            encode::int_value(p, value);
        });
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        encode::key_value_sized(self.p, self.tag, key, encode::bool_value_len(), |p| {
            encode::bool_value(p, value);
        });
    }

    fn double(&mut self, key: &'static str, value: f64) {
        encode::key_value_sized(self.p, self.tag, key, encode::double_value_len(), |p| {
            encode::double_value(p, value);
        });
    }

    fn strs<'v>(&mut self, key: &'static str, values: impl Iterator<Item = &'v str>) {
        self.p.message(self.tag, |p| {
            encode::key_value_with(
                p,
                key,
                Some(|p: &mut P| {
                    encode::array_value_with(p, |p, tag| {
                        for v in values {
                            p.message(tag, |p| encode::string_value(p, v));
                        }
                    });
                }),
            );
        });
    }

    fn formatted(&mut self, key: &'static str, write: impl FnOnce(&mut String)) {
        let scratch = &self.scratch.value;
        convert::formatted_in(scratch, write, |value| self.str(key, value));
    }

    fn process(&mut self, process: &ProcessInfo) {
        let of = Some((std::ptr::from_ref(process).addr(), self.tag));
        let mut facts = self.scratch.facts.take();
        if facts.of != of {
            facts.bytes.clear();
            convert::process_attributes(
                process,
                &mut Attributes {
                    p: &mut Shift {
                        out: &mut facts.bytes,
                    },
                    tag: self.tag,
                    scratch: self.scratch,
                },
            );
            facts.of = of;
        }
        self.p.encoded(&facts.bytes);
        self.scratch.facts.set(facts);
    }
}
