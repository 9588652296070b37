//! Kernel events on their way out as OTLP log records and spans ([`KernelSpans`]), not yet
//! built as `opentelemetry-proto` types. An exporter writes them as protobuf or OTLP/JSON from the events themselves
//! ([`KernelLogs::write_protobuf`], [`KernelLogs::write_json`]); a component that reads or
//! edits log records builds the request first ([`KernelLogs::to_request`]). Both give the
//! same bytes: those of [`convert`](crate::convert()) on the same events.
//!
//! It holds events no application span claimed (the bulk of a busy node's events). When their
//! spans are made too, it holds those spans' ids ([`KernelLogs::with_spans`]): each log record
//! then points at its event's span, in its process's trace, as `convert`'s would. Events the
//! correlation placed in an application trace carry their placement
//! ([`KernelLogs::placed`]): their records are written under the application's resource, in
//! its trace, with the `runbom.correlation.*` attributes, as `convert` writes them.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, common::v1::KeyValue, resource::v1::Resource,
};
use runbom_event::KernelEvent;

use crate::{
    added::{Added, AttributeSet, append_column, fit, split_column},
    convert::{
        ConvertOptions, Placement, convert_logs, event_attributes_into, kernel_groups,
        kernel_scope, log_only_attributes,
    },
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
    /// Where the correlation placed `events[i]`, if it did; empty when it placed none.
    placements: Vec<Option<Placement>>,
    /// Attributes a processor appended to the records ([`KernelLogs::set_appended`]), each
    /// distinct list encoded once; boxed, as most batches have none.
    appended: Option<Box<Added>>,
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
        span_ids: Vec<Option<[u8; 8]>>,
        opts: Arc<ConvertOptions>,
    ) -> Self {
        Self::placed(events, span_ids, Vec::new(), opts)
    }

    /// `events` as log records, `events[i]` placed by the correlation where `placements[i]`
    /// says (`None`, or a shorter `placements`: not placed) and pointing at the span whose id
    /// is `span_ids[i]`: the ids [`placed_span_ids`](crate::convert::placed_span_ids) chose
    /// for the spans [`convert_placed_spans`](crate::convert::convert_placed_spans) makes. The
    /// log records [`convert`](crate::convert()) makes with those spans.
    #[must_use]
    pub fn placed(
        events: Vec<KernelEvent>,
        mut span_ids: Vec<Option<[u8; 8]>>,
        mut placements: Vec<Option<Placement>>,
        opts: Arc<ConvertOptions>,
    ) -> Self {
        fit(&mut span_ids, events.len());
        fit(&mut placements, events.len());
        Self {
            events,
            span_ids,
            placements,
            appended: None,
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
        append_column(
            &mut self.span_ids,
            self.events.len(),
            other.span_ids,
            other.events.len(),
        );
        append_column(
            &mut self.placements,
            self.events.len(),
            other.placements,
            other.events.len(),
        );
        if self.appended.is_some() || other.appended.is_some() {
            self.appended.get_or_insert_default().append(
                self.events.len(),
                other.appended.map_or_else(Added::default, |a| *a),
                other.events.len(),
            );
        }
        self.events.append(&mut other.events);
    }

    /// Room for `additional` more events, so that appending them moves none of these again.
    pub fn reserve(&mut self, additional: usize) {
        self.events.reserve(additional);
        if !self.span_ids.is_empty() {
            self.span_ids.reserve(additional);
        }
        if !self.placements.is_empty() {
            self.placements.reserve(additional);
        }
    }

    /// The events from `at` on, as their own batch (`self` keeps the first `at`).
    #[must_use]
    pub fn split_off(&mut self, at: usize) -> KernelLogs {
        let at = at.min(self.events.len());
        KernelLogs {
            events: self.events.split_off(at),
            span_ids: split_column(&mut self.span_ids, at),
            placements: split_column(&mut self.placements, at),
            appended: self.appended.as_mut().map(|a| Box::new(a.split_off(at))),
            opts: self.opts.clone(),
        }
    }

    /// The log export request these events make.
    #[must_use]
    pub fn to_request(&self) -> ExportLogsServiceRequest {
        let mut request = convert_logs(&self.events, &self.span_ids, &self.placements, &self.opts);
        if let Some(appended) = self.appended.as_deref() {
            let records = request
                .resource_logs
                .iter_mut()
                .flat_map(|r| &mut r.scope_logs)
                .flat_map(|s| &mut s.log_records)
                .map(|r| &mut r.attributes);
            appended.add_to(records.zip(self.groups().into_iter().flatten()));
        }
        request
    }

    /// Ends the records with attributes a processor gives them (replacing any it gave
    /// before): `events[i]`'s with `lists[at[i]]` (`None`, an index past the end, or a
    /// shorter `at`: none). Each distinct list is given once, and encoded once for all the
    /// records that end with it ([`AttributeSet`], as the verdicts of spans are).
    ///
    /// # Panics
    /// If `lists` holds `u32::MAX` lists or more.
    pub fn set_appended(&mut self, lists: Vec<Vec<KeyValue>>, at: Vec<Option<u32>>) {
        let sets = lists
            .into_iter()
            .map(AttributeSet::of_log_records)
            .collect();
        let appended = Added::new(sets, at, self.events.len());
        self.appended = (!appended.is_empty()).then(|| Box::new(appended));
    }

    /// The attributes a processor appended to `events[i]`'s record.
    #[must_use]
    pub fn appended(&self, i: usize) -> &[KeyValue] {
        self.appended.as_deref().map_or(&[], |a| a.attributes(i))
    }

    /// The set `events[i]`'s record ends with, if any.
    fn appended_set(&self, i: usize) -> Option<&AttributeSet> {
        self.appended.as_deref().and_then(|a| a.of(i))
    }

    /// `events[i]`'s record's attributes, as [`to_request`](Self::to_request) builds them
    /// (those a processor appended aside), into `into`.
    pub fn record_attributes(&self, i: usize, into: &mut Vec<KeyValue>) {
        let ev = &self.events[i];
        event_attributes_into(ev, self.placement(i), into);
        log_only_attributes(ev, into);
    }

    /// The resource `events[i]`'s record is written under: its application's when placed,
    /// else its process run's.
    #[must_use]
    pub fn resource_of(&self, i: usize) -> Resource {
        match self.placement(i) {
            Some(p) => (*p.resource).clone(),
            None => crate::convert::process_resource(&self.events[i].process, &self.opts),
        }
    }

    /// The id of the span `events[i]`'s log record points at, if any.
    fn span_id(&self, i: usize) -> Option<&[u8; 8]> {
        self.span_ids.get(i).and_then(Option::as_ref)
    }

    /// Where the correlation placed `events[i]`, if it did.
    #[must_use]
    pub fn placement(&self, i: usize) -> Option<&Placement> {
        self.placements.get(i).and_then(Option::as_ref)
    }

    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_logs`](crate::encode::encode_logs) on [`to_request`](Self::to_request), written
    /// from the events in one walk (each message's length written after room guessed for it,
    /// the message moved when the guess was wrong).
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        self.write_protobuf_part(&self.groups(), out);
    }

    /// One part of the request (groups of [`groups`](Self::groups), or a part
    /// [`cut_groups`] cut from them) as protobuf, appended to `out`: the request of those
    /// events alone.
    pub fn write_protobuf_part(&self, part: &[Vec<usize>], out: &mut Vec<u8>) {
        let mut body = String::with_capacity(256);
        let scratch = protobuf::Scratch::default();
        protobuf::records(
            &mut Shift { out },
            self,
            part,
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
        let scratch = protobuf::Scratch::default();
        let mut measure = Measure::default();
        protobuf::records(&mut measure, self, &groups, &scope, &mut body, &scratch);
        measure.write(out, |w| {
            protobuf::records(w, self, &groups, &scope, &mut body, &scratch);
        });
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_logs`](crate::json::write::write_logs) on
    /// [`to_request`](Self::to_request), written from the events.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write(out, self, &self.groups(), &kernel_scope());
    }

    /// The events' indices by application (placed) or process, as
    /// [`convert`](crate::convert()) groups them: each group one `ResourceLogs` of the
    /// request, its records in this order.
    #[must_use]
    pub fn groups(&self) -> Vec<Vec<usize>> {
        kernel_groups(&self.events, &self.placements)
    }
}

/// Which request the writers walk the events for: their log records (one per event) or their
/// spans (one per event that has a span id).
#[derive(Clone, Copy)]
enum Request {
    Logs,
    Traces,
}

impl Request {
    /// Whether `logs`' event `i` has an item in this request.
    fn has(self, logs: &KernelLogs, i: usize) -> bool {
        match self {
            Self::Logs => true,
            Self::Traces => logs.span_id(i).is_some(),
        }
    }
}

/// `groups` (of [`KernelLogs::groups`]) cut into parts of at most `per_part` events each, in
/// order: a group longer than what is left of a part is cut there, its rest starting the next
/// part (its resource written again there). What a request too large for its receiver is sent
/// as, each part written from the events with [`KernelLogs::write_protobuf_part`].
#[must_use]
pub fn cut_groups(groups: Vec<Vec<usize>>, per_part: usize) -> Vec<Vec<Vec<usize>>> {
    let per_part = per_part.max(1);
    let (mut parts, mut part, mut room) = (Vec::new(), Vec::new(), per_part);
    for group in groups {
        let mut rest = group.as_slice();
        while !rest.is_empty() {
            let (this, next) = rest.split_at(rest.len().min(room));
            part.push(this.to_vec());
            rest = next;
            room -= this.len();
            if room == 0 {
                parts.push(std::mem::take(&mut part));
                room = per_part;
            }
        }
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
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
