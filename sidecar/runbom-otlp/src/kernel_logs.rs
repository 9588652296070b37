//! Kernel events on their way out as OTLP log records and spans ([`KernelSpans`]), not yet
//! built as `opentelemetry-proto` types. An exporter writes them as protobuf or OTLP/JSON from the events themselves
//! ([`KernelLogs::write_protobuf`], [`KernelLogs::write_json`]); a component that reads or
//! edits log records builds the request first ([`KernelLogs::to_request`]). Both give the
//! same bytes: those of [`convert`](crate::convert()) on the same events.
//!
//! It holds events no application span claimed (the bulk of a busy node's events). When their
//! spans are made too, it holds those spans' ids ([`KernelLogs::with_spans`]): each log record
//! then points at its event's span, in its process's trace, as `convert`'s would.

use std::{cell::Cell, sync::Arc};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use runbom_event::KernelEvent;

use crate::{
    convert::{ConvertOptions, convert_logs, first_seen_groups, kernel_scope},
    encode::{Measure, Shift},
};

mod json;
mod protobuf;
mod spans;

pub use spans::KernelSpans;

/// Events to be exported as log records, grouped by process as [`convert`](crate::convert())
/// groups them.
#[derive(Clone, Debug)]
pub struct KernelLogs {
    events: Vec<KernelEvent>,
    /// The id of `events[i]`'s span, if it has one; empty when none has.
    span_ids: Vec<Option<[u8; 8]>>,
    opts: Arc<ConvertOptions>,
}

impl KernelLogs {
    /// `events` as log records under the resources `opts` describes, pointing at no span.
    #[must_use]
    pub fn new(events: Vec<KernelEvent>, opts: Arc<ConvertOptions>) -> Self {
        Self::with_spans(events, Vec::new(), opts)
    }

    /// `events` as log records, `events[i]`'s pointing at the span whose id is `span_ids[i]`
    /// (in its process's trace): the ids [`span_ids`](crate::convert::span_ids) chose for the
    /// spans [`convert_spans`](crate::convert::convert_spans) makes. A shorter `span_ids`
    /// leaves the events past its end without a span.
    #[must_use]
    pub fn with_spans(
        events: Vec<KernelEvent>,
        mut span_ids: Vec<Option<[u8; 8]>>,
        opts: Arc<ConvertOptions>,
    ) -> Self {
        if span_ids.iter().all(Option::is_none) {
            span_ids.clear();
        } else {
            span_ids.resize(events.len(), None);
        }
        Self {
            events,
            span_ids,
            opts,
        }
    }

    /// The events, in the order their log records are written within their process.
    #[must_use]
    pub fn events(&self) -> &[KernelEvent] {
        &self.events
    }

    /// Log records (one per event).
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends `other`'s events (written under `self`'s options).
    pub fn append(&mut self, mut other: KernelLogs) {
        if !(self.span_ids.is_empty() && other.span_ids.is_empty()) {
            self.span_ids.resize(self.events.len(), None);
            other.span_ids.resize(other.events.len(), None);
            self.span_ids.append(&mut other.span_ids);
        }
        self.events.append(&mut other.events);
    }

    /// The events from `at` on, as their own batch (`self` keeps the first `at`).
    #[must_use]
    pub fn split_off(&mut self, at: usize) -> KernelLogs {
        let at = at.min(self.events.len());
        KernelLogs {
            events: self.events.split_off(at),
            span_ids: if self.span_ids.is_empty() {
                Vec::new()
            } else {
                self.span_ids.split_off(at)
            },
            opts: self.opts.clone(),
        }
    }

    /// The log export request these events make.
    #[must_use]
    pub fn to_request(&self) -> ExportLogsServiceRequest {
        convert_logs(&self.events, &self.span_ids, &self.opts)
    }

    /// The id of the span `events[i]`'s log record points at, if any.
    fn span_id(&self, i: usize) -> Option<&[u8; 8]> {
        self.span_ids.get(i).and_then(Option::as_ref)
    }

    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_logs`](crate::encode::encode_logs) on [`to_request`](Self::to_request), written
    /// from the events in one walk (each message's length written after room guessed for it,
    /// the message moved when the guess was wrong).
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        let mut body = String::with_capacity(256);
        let scratch = Cell::new(String::with_capacity(64));
        protobuf::walk(
            &mut Shift { out },
            self,
            &self.groups(),
            &kernel_scope(),
            &mut body,
            &scratch,
        );
    }

    /// The same bytes as [`write_protobuf`](Self::write_protobuf), written in two walks: the
    /// first measures every message, the second writes. Kept to compare the two ways in the
    /// benchmark.
    #[doc(hidden)]
    pub fn write_protobuf_measured(&self, out: &mut Vec<u8>) {
        let (groups, scope) = (self.groups(), kernel_scope());
        let mut body = String::with_capacity(256);
        let scratch = Cell::new(String::with_capacity(64));
        let mut measure = Measure::default();
        protobuf::walk(&mut measure, self, &groups, &scope, &mut body, &scratch);
        measure.write(out, |w| {
            protobuf::walk(w, self, &groups, &scope, &mut body, &scratch);
        });
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_logs`](crate::json::write::write_logs) on
    /// [`to_request`](Self::to_request), written from the events.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write(out, self, &self.groups(), &kernel_scope());
    }

    /// The events' indices by process, as [`convert`](crate::convert()) groups them.
    fn groups(&self) -> Vec<Vec<usize>> {
        first_seen_groups(self.events.len(), |i| Arc::as_ptr(&self.events[i].process))
    }
}

impl PartialEq for KernelLogs {
    /// Equal when they make the same request.
    fn eq(&self, other: &Self) -> bool {
        self.to_request() == other.to_request()
    }
}

impl KernelLogs {
    /// Whether `other`'s events are written under the same resources as these (the same
    /// options), so that [`KernelLogs::append`] changes nothing either would write.
    #[must_use]
    pub fn writes_like(&self, other: &KernelLogs) -> bool {
        // Every option named, so that a new one is compared here too.
        let ConvertOptions {
            host_name,
            uncorrelated_spans: _, // the span ids are the events', not chosen by the options
        } = &*self.opts;
        Arc::ptr_eq(&self.opts, &other.opts) || *host_name == other.opts.host_name
    }
}
