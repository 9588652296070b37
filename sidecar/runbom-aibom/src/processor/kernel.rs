//! Kernel log records judged while still held as their events ([`KernelLogs`]): what
//! [`Processor::judge_logs`] does to the records [`KernelLogs::to_request`] would build, without
//! building them. The `aibom.*` attributes judging gives each record are kept beside the
//! events, each distinct list once ([`KernelLogs::set_appended`]); the exporters write them
//! after the event's own attributes, as the built records carry them.

use std::time::Instant;

use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    trace::v1::Span,
};
use runbom_event::semconv::{correlation, scope};
use runbom_otlp::KernelLogs;

use super::Processor;
use crate::{
    bom::DeclaredBom,
    view::{self, View},
};

/// How many of the latest distinct lists a record's is looked for among before it is kept
/// as a new one (a repeat only costs its memory).
const LOOK_BACK: usize = 16;

/// How many of the spans records are judged as are kept between requests.
const KEEP_SPANS: usize = 64;

impl Processor {
    /// [`Processor::judge_logs`] on kernel log records still held as their events: the
    /// same records judged in the same groups (one per process run or application), the same
    /// processes learnt and shadow AI watched, and each record given the same `aibom.*`
    /// attributes, kept beside the events. Records placed in a trace are left as they are,
    /// but for `inferred` ones.
    pub fn judge_kernel_logs(&mut self, logs: &mut KernelLogs, now: Instant, bom: &DeclaredBom) {
        self.earlier.check_bom(bom);
        let scope = InstrumentationScope {
            name: scope::KERNEL.into(),
            ..InstrumentationScope::default()
        };
        let mut lists: Vec<Vec<KeyValue>> = Vec::new();
        let mut at: Vec<Option<u32>> = vec![None; logs.len()];
        // Each judged record's span (its attributes and time, as `judge_logs` makes it), the
        // event it is, and how many attributes are the event's own; kept across groups.
        let mut spans = std::mem::take(&mut self.kernel_spans);
        let mut which: Vec<(usize, usize)> = Vec::new();
        for group in logs.groups() {
            which.clear();
            for &i in &group {
                let unclaimed = logs
                    .placement(i)
                    .is_none_or(|p| p.method == correlation::INFERRED);
                if !unclaimed {
                    continue;
                }
                if which.len() == spans.len() {
                    spans.push(Span::default());
                }
                let span = &mut spans[which.len()];
                span.attributes.clear();
                span.start_time_unix_nano = logs.events()[i].start_ns;
                logs.record_attributes(i, &mut span.attributes);
                which.push((i, span.attributes.len()));
            }
            if which.is_empty() {
                continue;
            }
            let resource = logs.resource_of(group[0]);
            let mut views: Vec<View<'_>> = spans[..which.len()]
                .iter_mut()
                .map(|s| {
                    View::new(Some(&resource), "", Some(&scope), s, || {
                        view::resource_pid(Some(&resource))
                    })
                })
                .collect();
            self.judge_unclaimed(&mut views, Some(&resource), now, bom);
            drop(views);
            for (span, &(i, own)) in spans.iter().zip(&which) {
                // Judging appends the verdict's attributes (a kernel event's own are never
                // `aibom.*`, so none is replaced).
                let verdict = span.attributes.get(own..).unwrap_or_default();
                if verdict.is_empty() {
                    continue;
                }
                let known = lists.len().saturating_sub(LOOK_BACK);
                let list = if let Some(l) = lists[known..].iter().position(|l| l == verdict) {
                    known + l
                } else {
                    lists.push(verdict.to_vec());
                    lists.len() - 1
                };
                at[i] = u32::try_from(list).ok();
            }
        }
        // A few kept for the next request; a flood's thousand are let go (idle memory).
        spans.truncate(KEEP_SPANS);
        self.kernel_spans = spans;
        logs.set_appended(lists, at);
    }
}
