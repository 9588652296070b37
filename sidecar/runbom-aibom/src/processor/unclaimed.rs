//! The kernel log records no trace claimed ([`Processor::judge_logs`]): judged as spans, and
//! watched for shadow AI ([`crate::shadow`]) and for declared agents' drift
//! ([`crate::unclaimed`]), whose held alerts [`Processor::release_due`] hands on.

use std::{sync::atomic::Ordering, time::Instant};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, logs::v1::ResourceLogs, resource::v1::Resource,
    trace::v1::Span,
};

use super::{Processor, Released, Stats};
use crate::{
    bom::DeclaredBom,
    judge,
    shadow::Record,
    span,
    view::{self, View},
    workloads,
};

impl Processor {
    /// Judges the kernel log records of `req` that no trace claimed (the correlation's
    /// per-process groups): writes the `aibom.*` attributes as on spans (declared agents'
    /// processes, AI-relevant activity of undeclared ones), watches undeclared workloads
    /// for shadow AI and declared agents' workloads for drift. Their alerts come out of
    /// [`Processor::release_due`] once held for `wait`. Records placed in a trace
    /// (`runbom.correlation.method`) are left as they are: their spans are judged; but for
    /// `inferred` (runs runbom built for agents that send no traces, judged here as well).
    pub fn judge_logs(
        &mut self,
        req: &mut ExportLogsServiceRequest,
        now: Instant,
        bom: &DeclaredBom,
    ) {
        self.earlier.check_bom(bom);
        let mut spans: Vec<Span> = Vec::new();
        let mut at: Vec<usize> = Vec::new();
        for rl in &mut req.resource_logs {
            let resource = rl.resource.as_ref();
            for sl in &mut rl.scope_logs {
                if sl
                    .scope
                    .as_ref()
                    .is_none_or(|s| s.name != runbom_event::semconv::scope::KERNEL)
                {
                    continue;
                }
                spans.clear();
                at.clear();
                for (i, l) in sl.log_records.iter_mut().enumerate() {
                    // Placed by inference (a run runbom built for an agent that sends no
                    // traces) is not claimed by the agent's own trace: judged here too.
                    let method = span::attr(
                        &l.attributes,
                        runbom_event::semconv::RUNBOM_CORRELATION_METHOD,
                    );
                    let unclaimed = l.trace_id.is_empty()
                        || method.is_none_or(|m| m == runbom_event::semconv::correlation::INFERRED);
                    if !unclaimed || span::attr(&l.attributes, "runbom.event").is_none() {
                        continue;
                    }
                    at.push(i);
                    spans.push(Span {
                        start_time_unix_nano: l.time_unix_nano,
                        attributes: std::mem::take(&mut l.attributes),
                        ..Span::default()
                    });
                }
                if spans.is_empty() {
                    continue;
                }
                let mut views: Vec<View<'_>> = spans
                    .iter_mut()
                    .map(|s| {
                        View::new(resource, &rl.schema_url, sl.scope.as_ref(), s, || {
                            view::resource_pid(resource)
                        })
                    })
                    .collect();
                self.judge_unclaimed(&mut views, resource, now, bom);
                drop(views);
                for (i, s) in at.iter().zip(spans.drain(..)) {
                    sl.log_records[*i].attributes = s.attributes;
                }
            }
        }
    }

    /// Judges one group's kernel log records no trace claimed (as spans: `views`) and
    /// watches them for shadow AI and for declared agents' drift.
    pub(super) fn judge_unclaimed(
        &mut self,
        views: &mut [View<'_>],
        resource: Option<&Resource>,
        now: Instant,
        bom: &DeclaredBom,
    ) {
        let judged = judge::judge_views(
            bom,
            &self.settings.judge,
            &mut self.pids,
            views,
            None,
            None,
            &mut self.scratch,
        );
        let hold = self.settings.wait;
        for (i, v) in views.iter().enumerate() {
            let record = Record {
                time: v.span.start_time_unix_nano,
                pid: judged.pids[i],
                activity: &judged.activities[i],
                verdict: &judged.verdicts[i],
                attrs: &v.span.attributes,
                resource,
            };
            self.shadow.observe(&record, now, hold, &self.stats.shadow);
            let counters = (&self.stats.unclaimed, &self.stats.alerts_deduplicated);
            self.unclaimed.observe(&record, now, hold, counters);
        }
        judged.recycle(&mut self.scratch);
    }

    /// The alerts held on unclaimed records that are due by `now` (all with `None`), in time
    /// order.
    pub(super) fn unclaimed_due(
        &mut self,
        now: Option<Instant>,
        bom: &DeclaredBom,
    ) -> Vec<ResourceLogs> {
        let mut out = self.shadow.due(now, bom, &self.pids);
        let drift = self.unclaimed.due(now, bom);
        if !drift.is_empty() {
            out.extend(drift);
            out.sort_by_key(workloads::alert_time);
        }
        out
    }
}

/// `out` with the alerts of unclaimed records added (and counted).
pub(super) fn with_alerts(
    mut out: Released,
    unclaimed: Vec<ResourceLogs>,
    stats: &Stats,
) -> Released {
    if unclaimed.is_empty() {
        return out;
    }
    stats
        .alerts
        .fetch_add(unclaimed.len() as u64, Ordering::Relaxed);
    out.alerts
        .get_or_insert_with(ExportLogsServiceRequest::default)
        .resource_logs
        .extend(unclaimed);
    out
}
