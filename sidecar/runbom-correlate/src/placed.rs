//! What the correlator hands out ([`Output`], or [`Decided`] with the kernel events still to
//! convert) and what it holds placed until a trace is decided.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    resource::v1::Resource,
    trace::v1::ResourceSpans,
};
use runbom_event::{KernelEvent, semconv::correlation};
use runbom_otlp::{
    ConvertOptions, KernelLogs, Placement, convert, convert_placed_spans, placed_span_ids,
};

use crate::{
    Method,
    spans::{SpanId, TraceId},
};

/// What is ready to go on: application and kernel spans, and kernel log records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub traces: ExportTraceServiceRequest,
    pub logs: ExportLogsServiceRequest,
}

impl Output {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.traces.resource_spans.is_empty() && self.logs.resource_logs.is_empty()
    }
}

/// What is ready to go on, with the kernel log records still as the events they are written
/// from ([`KernelLogs`]: written to the wire from the events, built only for a component that
/// reads records): what [`Output`] holds, with the same records.
#[derive(Clone, Debug)]
pub struct Converted {
    /// Application spans and kernel spans, as in [`Output::traces`].
    pub traces: ExportTraceServiceRequest,
    /// The kernel log records, placed ones with their placements.
    pub logs: KernelLogs,
}

/// What is ready to go on, with every decision made but the kernel events not yet converted:
/// converting is the expensive part, and it can be shared by several tasks ([`Decided::split`]),
/// while the decisions (which trace, which parent) stay with the one correlator.
#[derive(Clone, Debug, Default)]
pub struct Decided {
    /// Application spans (stitched where decided) and the spans of agents without an SDK.
    pub spans: Vec<ResourceSpans>,
    /// The kernel events leaving, in the order the single-task path converts them.
    pub events: Vec<KernelEvent>,
    /// Where each of `events` goes (`None`: no application trace claimed it).
    pub placements: Vec<Option<Placement>>,
}

/// A share of [`Decided::events`] with their placements, to convert on its own.
#[derive(Debug, Default)]
pub struct Share {
    pub events: Vec<KernelEvent>,
    pub placements: Vec<Option<Placement>>,
}

impl Share {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The share cut into shares of at most `most` events, in order (none when empty). The
    /// pieces are cut off the end, so that each event is moved once, with its piece.
    #[must_use]
    pub fn pieces(mut self, most: usize) -> Vec<Share> {
        let most = most.max(1);
        if self.is_empty() {
            return Vec::new();
        }
        let len = self.events.len();
        self.placements.resize(len, None);
        let mut out = Vec::with_capacity(len.div_ceil(most));
        let mut end = len;
        while end > 0 {
            let start = (end - 1) / most * most;
            out.push(Share {
                events: self.events.split_off(start),
                placements: self.placements.split_off(start),
            });
            end = start;
        }
        out.reverse();
        out
    }

    /// The share's kernel spans, and its log records as the events ([`Converted`]): the
    /// spans and records [`Share::convert`] makes.
    #[must_use]
    pub fn into_kernel(self, opts: &Arc<ConvertOptions>) -> Converted {
        let ids = placed_span_ids(&self.events, &self.placements, opts);
        let traces = if ids.iter().any(Option::is_some) {
            convert_placed_spans(&self.events, &ids, &self.placements, opts)
        } else {
            ExportTraceServiceRequest::default()
        };
        Converted {
            traces,
            logs: KernelLogs::placed(self.events, ids, self.placements, opts.clone()),
        }
    }

    /// The share's kernel spans and log records.
    #[must_use]
    pub fn convert(&self, opts: &ConvertOptions) -> Output {
        if self.events.is_empty() {
            return Output::default();
        }
        let batch = convert(&self.events, &self.placements, opts);
        Output {
            traces: batch.traces,
            logs: batch.logs,
        }
    }
}

/// The worker that converts `pid`'s events when `workers` share them: always the same one,
/// so that a process's events keep their order.
#[must_use]
pub fn worker_of(pid: u32, workers: usize) -> usize {
    // A u32 always fits in usize on the targets runbom builds for (64-bit Linux).
    pid as usize % workers.max(1)
}

impl Decided {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.events.is_empty()
    }

    /// Converts in this task: what [`crate::Correlator::poll`] returns.
    #[must_use]
    pub fn convert(self, opts: &ConvertOptions) -> Output {
        let mut out = Output::default();
        out.traces.resource_spans = self.spans;
        let kernel = Share {
            events: self.events,
            placements: self.placements,
        }
        .convert(opts);
        out.traces
            .resource_spans
            .extend(kernel.traces.resource_spans);
        out.logs = kernel.logs;
        out
    }

    /// [`Decided::convert`] with the log records as the events ([`Share::into_kernel`]).
    #[must_use]
    pub fn into_kernel(self, opts: &Arc<ConvertOptions>) -> Converted {
        let mut out = Share {
            events: self.events,
            placements: self.placements,
        }
        .into_kernel(opts);
        let kernel = std::mem::replace(&mut out.traces.resource_spans, self.spans);
        out.traces.resource_spans.extend(kernel);
        out
    }

    /// Takes the kernel events out, shared over `workers` by process ([`worker_of`]), each
    /// share in the order of `events`; the spans stay.
    pub fn split(&mut self, workers: usize) -> Vec<Share> {
        let workers = workers.max(1);
        let mut shares: Vec<Share> = (0..workers).map(|_| Share::default()).collect();
        let events = std::mem::take(&mut self.events);
        // All of one worker's (one busy process, as a rule): the share is the whole release.
        if let Some(first) = events.first().map(|e| worker_of(e.pid, workers))
            && events.iter().all(|e| worker_of(e.pid, workers) == first)
        {
            shares[first] = Share {
                events,
                placements: std::mem::take(&mut self.placements),
            };
            return shares;
        }
        let mut placements = std::mem::take(&mut self.placements).into_iter();
        for ev in events {
            let share = &mut shares[worker_of(ev.pid, workers)];
            share.placements.push(placements.next().flatten());
            share.events.push(ev);
        }
        shares
    }
}

/// An event placed under a span, waiting for the span's trace to be decided.
pub(crate) struct Placed {
    pub(crate) event: KernelEvent,
    pub(crate) span: SpanId,
    pub(crate) trace: TraceId,
    pub(crate) resource: Arc<Resource>,
    pub(crate) method: Method,
    pub(crate) confidence: &'static str,
}

impl Placed {
    pub(crate) fn ancestry(
        event: KernelEvent,
        span: SpanId,
        trace: TraceId,
        resource: Arc<Resource>,
    ) -> Self {
        Self {
            event,
            span,
            trace,
            resource,
            method: Method::Ancestry,
            confidence: correlation::MEDIUM,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        resource::v1::Resource,
        trace::v1::ResourceSpans,
    };
    use runbom_event::{Detail, KernelEvent, ProcessInfo};
    use runbom_otlp::{ConvertOptions, Placement};

    use super::{Decided, Share};

    fn exit(pid: u32, n: u64) -> KernelEvent {
        KernelEvent {
            pid,
            tid: pid,
            cgroup_id: 0,
            start_ns: n,
            end_ns: n,
            process: Arc::new(ProcessInfo::default()),
            detail: Detail::Exit { code: Some(0) },
        }
    }

    /// Pieces of `most` from the front (the last one shorter), every event once, in order.
    #[test]
    fn pieces_and_shares_keep_every_event_in_order() {
        for len in 0..40u64 {
            for most in 1..12usize {
                let share = Share {
                    events: (0..len).map(|n| exit(1, n)).collect(),
                    placements: Vec::new(),
                };
                let pieces = share.pieces(most);
                let lens: Vec<usize> = pieces.iter().map(|p| p.events.len()).collect();
                let want: Vec<usize> = (0..len as usize)
                    .collect::<Vec<_>>()
                    .chunks(most)
                    .map(<[usize]>::len)
                    .collect();
                assert_eq!(lens, want);
                let starts: Vec<u64> = pieces
                    .iter()
                    .flat_map(|p| &p.events)
                    .map(|e| e.start_ns)
                    .collect();
                assert_eq!(starts, (0..len).collect::<Vec<_>>());
                assert!(pieces.iter().all(|p| p.placements.len() == p.events.len()));
            }
        }
        for pids in [vec![4, 6, 8], vec![4, 5, 6, 7]] {
            let mut d = Decided {
                events: (0..30)
                    .map(|n| exit(pids[n as usize % pids.len()], n))
                    .collect(),
                ..Decided::default()
            };
            let shares = d.split(2);
            for (w, share) in shares.iter().enumerate() {
                assert!(share.events.iter().all(|e| e.pid as usize % 2 == w));
                assert!(
                    share
                        .events
                        .windows(2)
                        .all(|p| p[0].start_ns < p[1].start_ns)
                );
            }
            assert_eq!(shares.iter().map(|s| s.events.len()).sum::<usize>(), 30);
        }
    }

    /// Span ids erased from kernel spans and from the records pointing at them (random ids,
    /// chosen apart by each way).
    fn without_span_ids(
        traces: &mut ExportTraceServiceRequest,
        logs: &mut ExportLogsServiceRequest,
    ) {
        let mut made = Vec::new();
        for span in traces
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .filter(|s| s.scope.as_ref().is_some_and(|s| s.name == "runbom.kernel"))
            .flat_map(|s| &mut s.spans)
        {
            made.push(std::mem::take(&mut span.span_id));
        }
        for record in logs
            .resource_logs
            .iter_mut()
            .flat_map(|r| &mut r.scope_logs)
            .flat_map(|s| &mut s.log_records)
        {
            if made.contains(&record.span_id) {
                record.span_id.clear();
            }
        }
    }

    /// The spans and records as events make what converting makes (span ids aside), with
    /// placed and unplaced events of several processes mixed, with and without spans for the
    /// unplaced ones.
    #[test]
    fn into_kernel_makes_what_convert_makes() {
        let app = Arc::new(Resource::default());
        let processes: Vec<_> = (1..4)
            .map(|pid| {
                Arc::new(ProcessInfo {
                    pid,
                    exe: format!("/bin/p{pid}"),
                    ..ProcessInfo::default()
                })
            })
            .collect();
        let events: Vec<KernelEvent> = (0..24u64)
            .map(|n| {
                let process = processes[n as usize % 3].clone();
                KernelEvent {
                    detail: if n % 4 == 0 {
                        Detail::Exit { code: Some(0) }
                    } else {
                        Detail::FileOpen {
                            path: format!("/tmp/{n}"),
                            flags: 0,
                            error: None,
                        }
                    },
                    process,
                    ..exit(1 + n as u32 % 3, n)
                }
            })
            .collect();
        let placements: Vec<Option<Placement>> = (0..24u8)
            .map(|n| {
                (n % 3 == 1).then(|| Placement {
                    trace_id: [7; 16],
                    parent_span_id: [n; 8],
                    resource: app.clone(),
                    method: "thread",
                    confidence: "high",
                })
            })
            .collect();
        for uncorrelated_spans in [true, false] {
            let opts = ConvertOptions {
                host_name: "node".into(),
                uncorrelated_spans,
            };
            let decided = Decided {
                spans: vec![ResourceSpans::default()],
                events: events.clone(),
                placements: placements.clone(),
            };
            let mut want = decided.clone().convert(&opts);
            let mut got = decided.into_kernel(&Arc::new(opts));
            let mut logs = got.logs.to_request();
            without_span_ids(&mut want.traces, &mut want.logs);
            without_span_ids(&mut got.traces, &mut logs);
            assert_eq!(got.traces, want.traces);
            assert_eq!(logs, want.logs);
        }
    }
}
