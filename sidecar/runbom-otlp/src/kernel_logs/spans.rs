//! The spans of kernel events no application span claimed, held as the events and the ids
//! chosen for their spans (those their log records point at), not yet built as
//! `opentelemetry-proto` types: the trace request [`convert_spans`] makes, written to the wire
//! from the events. The same walk as the log records', over the same events and groups.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use runbom_event::KernelEvent;

use super::{KernelLogs, json, protobuf};
use crate::{
    convert::{convert_spans, kernel_scope},
    encode::{Measure, Shift},
};

/// Kernel events to be exported as spans: the events of a [`KernelLogs`] with the ids of
/// their spans ([`KernelLogs::with_spans`]), one span per event that has an id.
#[derive(Clone, Debug)]
pub struct KernelSpans {
    /// The events and their spans' ids, grouped by process as their log records are.
    events: KernelLogs,
    /// How many of the events have a span.
    spans: usize,
}

impl KernelSpans {
    /// The spans of `events`' events that have a span id: events as a receiver holds them,
    /// under their processes' resources (the spans of placed events are the correlate
    /// stage's, built where it places them).
    #[must_use]
    pub fn of(events: KernelLogs) -> Self {
        debug_assert!(
            events.placements.is_empty(),
            "kernel spans of placed events"
        );
        let spans = events.span_ids.iter().filter(|id| id.is_some()).count();
        Self { events, spans }
    }

    /// The events (those without a span too).
    #[must_use]
    pub fn events(&self) -> &[KernelEvent] {
        self.events.events()
    }

    /// Spans (one per event that has a span id).
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    /// Appends `other`'s spans (written under `self`'s options).
    pub fn append(&mut self, other: KernelSpans) {
        self.events.append(other.events);
        self.spans += other.spans;
    }

    /// Room for `additional` more events, so that appending them moves none of these again.
    pub fn reserve(&mut self, additional: usize) {
        self.events.reserve(additional);
    }

    /// Whether `other`'s spans are written under the same resources as these, so that
    /// [`KernelSpans::append`] changes nothing either would write.
    #[must_use]
    pub fn writes_like(&self, other: &KernelSpans) -> bool {
        self.events.writes_like(&other.events)
    }

    /// The trace export request these spans make: [`convert_spans`]'s.
    #[must_use]
    pub fn to_request(&self) -> ExportTraceServiceRequest {
        let e = &self.events;
        convert_spans(&e.events, &e.span_ids, &e.opts)
    }

    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_traces`](crate::encode::encode_traces) on [`to_request`](Self::to_request),
    /// written from the events in one walk (as [`KernelLogs::write_protobuf`]).
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        self.write_protobuf_part(&self.events.groups(), out);
    }

    /// The spans of one part of the events (as [`KernelLogs::write_protobuf_part`]) as
    /// protobuf, appended to `out`; nothing when none of those events has a span.
    pub fn write_protobuf_part(&self, part: &[Vec<usize>], out: &mut Vec<u8>) {
        let mut name = String::with_capacity(128);
        let scratch = protobuf::Scratch::default();
        protobuf::spans(
            &mut Shift { out },
            &self.events,
            part,
            &kernel_scope(),
            &mut name,
            &scratch,
        );
    }

    /// The events' groups ([`KernelLogs::groups`]).
    #[must_use]
    pub fn groups(&self) -> Vec<Vec<usize>> {
        self.events.groups()
    }

    /// The same bytes as [`write_protobuf`](Self::write_protobuf), in two walks (the first
    /// measures). Kept to compare the two ways in the benchmark.
    #[doc(hidden)]
    pub fn write_protobuf_measured(&self, out: &mut Vec<u8>) {
        let (groups, scope) = (self.events.groups(), kernel_scope());
        let mut name = String::with_capacity(128);
        let scratch = protobuf::Scratch::default();
        let mut measure = Measure::default();
        protobuf::spans(
            &mut measure,
            &self.events,
            &groups,
            &scope,
            &mut name,
            &scratch,
        );
        measure.write(out, |w| {
            protobuf::spans(w, &self.events, &groups, &scope, &mut name, &scratch);
        });
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_traces`](crate::json::write::write_traces) on
    /// [`to_request`](Self::to_request), written from the events.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_spans(out, &self.events, &self.events.groups(), &kernel_scope());
    }
}

impl PartialEq for KernelSpans {
    /// Equal when they make the same request.
    fn eq(&self, other: &Self) -> bool {
        self.to_request() == other.to_request()
    }
}
