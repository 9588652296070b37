//! The alerts of one request (or one release), grouped by the resource they come from, held as
//! their parts ([`SharedLogs`]).

use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::InstrumentationScope,
    resource::v1::Resource,
};
use runbom_event::semconv::scope;
use runbom_otlp::{SharedLogs, shared_logs::Room};

use super::{Dedup, Released, Stats};
use crate::{alert, view::View};

/// The alerts of the findings of the trace `of` not alerted before (`alerted`), into `logs`:
/// its step lines written once (`lines`, emptied first) and shared by its alerts; alerts from
/// one resource share one copy of it.
pub(super) fn findings(
    of: &alert::Of<'_, '_>,
    alerted: &mut Dedup,
    lines: &mut alert::StepLines,
    sets: &mut alert::AlertSets,
    stats: &Stats,
    logs: &mut Alerts,
) {
    let (items, judged) = (of.items, of.judged);
    lines.reset();
    for f in &judged.findings {
        let o = &items[f.offender];
        let tool = f
            .tool
            .and_then(|t| judged.tool(items, of.earlier, t))
            .map(|t| t.span_id);
        let finding = (
            &o.span.trace_id,
            f.agent,
            tool,
            judged.kinds(f),
            judged.subject(f),
        );
        if !alerted.remember(&finding) {
            stats.alerts_deduplicated.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        alert::alert(of, f, lines, sets, logs.of(o));
        stats.alerts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The alerts of one request (or one release): the alerts from one resource, one trace after
/// the other, share one group (one copy of the resource).
#[derive(Default)]
pub(super) struct Alerts {
    pub(super) logs: SharedLogs,
    /// The resource of the last group. An address in the request (or in the held items being
    /// released), which outlive this.
    last: Option<*const Resource>,
}

impl Alerts {
    /// No alerts yet, their parts to be given `room` at once (the last request's).
    pub(super) fn with_room(room: Room) -> Self {
        Self {
            logs: SharedLogs::with_room(room),
            last: None,
        }
    }

    /// The alerts, the next one to be of the span `o`'s resource.
    pub(super) fn of(&mut self, o: &View<'_>) -> &mut SharedLogs {
        let from = o.resource.map(std::ptr::from_ref);
        if self.last.is_none() || self.last != from {
            self.last = from;
            self.logs.group(
                o.resource.cloned(),
                o.resource_schema.to_owned(),
                InstrumentationScope {
                    name: scope::AIBOM.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                },
            );
        }
        &mut self.logs
    }
}

/// [`Released`] with the alerts as their parts.
#[derive(Default)]
pub(super) struct Out {
    pub(super) traces: Option<ExportTraceServiceRequest>,
    pub(super) alerts: SharedLogs,
}

impl Out {
    /// The alerts built.
    pub(super) fn built(self) -> Released {
        Released {
            traces: self.traces,
            alerts: (!self.alerts.is_empty()).then(|| self.alerts.into_request()),
        }
    }
}
