//! The AI-BOM processor's state. Pure and synchronous: the pipeline's task feeds it requests
//! and a clock.
//!
//! A trace is judged as soon as its root span is there (the root of a conversation ends, and so
//! arrives, last): then its spans are annotated where they sit in the request and pass on at
//! once. The spans of a trace whose root has not arrived yet are held, for `wait` after the
//! latest of them arrived (at most `max_hold`, at most `max_spans` in all), and judged together
//! when the root comes or the wait is over. Of every released trace the processor remembers
//! (bounded) each span's agent and tool and the chain's steps, so spans that arrive after it
//! (kernel spans correlated late, a slow service) are judged in context and their alerts tell
//! the whole story.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    hash::{BuildHasher as _, Hash, RandomState},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    trace::v1::Span,
};

use crate::{
    alert,
    annotate::Annotations,
    arguments::ArgumentPolicy,
    baseline::Baseline,
    bom::DeclaredBom,
    judge,
    judged::{Earlier, Judged, Memo, Scratch},
    pids::PidMap,
    shadow::{Shadow, ShadowSettings, ShadowStats},
    unclaimed::{UnclaimedDrift, UnclaimedSettings, UnclaimedStats},
    verdict::{self, JudgeSettings},
    view::{self, Item, ResourceHeader, ScopeHeader, View},
};

mod alerts;
use alerts::{Alerts, Out};
mod annotated;
pub use annotated::AnnotatedRelease;
mod kernel;
mod regroup;
mod unclaimed;
use regroup::Regroup;
use unclaimed::with_alerts;
mod remember;
use remember::{Dedup, Remembered};

#[derive(Clone, Debug)]
pub struct Settings {
    /// How long the spans of a trace whose root has not arrived are held after the latest of
    /// them arrived ...
    pub wait: Duration,
    /// ... but never longer than this after the first.
    pub max_hold: Duration,
    /// Most spans held at once; past it the oldest traces are released early. Also how many
    /// spans of released traces are remembered for the spans that arrive after them.
    pub max_spans: usize,
    pub judge: JudgeSettings,
    /// The learned baseline (`baseline_*` flags), if configured; shared with whoever saves it.
    pub baseline: Option<Arc<Mutex<Baseline>>>,
    /// How alert chains quote tool arguments.
    pub alert_arguments: ArgumentPolicy,
    /// Shadow AI in the kernel log records no trace claimed ([`Processor::judge_logs`]).
    pub shadow: ShadowSettings,
    /// Drift in those of declared agents' processes.
    pub unclaimed: UnclaimedSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(5),
            max_hold: Duration::from_mins(1),
            max_spans: 100_000,
            judge: JudgeSettings::default(),
            baseline: None,
            alert_arguments: ArgumentPolicy::default(),
            shadow: ShadowSettings::default(),
            unclaimed: UnclaimedSettings::default(),
        }
    }
}

/// Counters the processor keeps (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    pub spans_held: AtomicU64,
    pub traces_released_early: AtomicU64,
    /// Spans judged in the context of a trace released before they arrived.
    pub spans_late: AtomicU64,
    pub spans_with_drift: AtomicU64,
    pub alerts: AtomicU64,
    pub alerts_deduplicated: AtomicU64,
    /// Alerts that could not be handed to a logs pipeline.
    pub alerts_dropped: AtomicU64,
    /// Undeclared workloads seen using AI, and their AI uses.
    pub shadow: ShadowStats,
    /// Declared agents' drifting records no trace claimed.
    pub unclaimed: UnclaimedStats,
}

type TraceKey = [u8; 16];

/// Keyed by trace id, looked up per trace: foldhash (seeded per process), not `SipHash`.
type TraceMap<V> = HashMap<TraceKey, V, foldhash::fast::RandomState>;
type TraceSet = HashSet<TraceKey, foldhash::fast::RandomState>;

fn key(trace_id: &[u8]) -> TraceKey {
    // A trace id has 16 bytes: then the key is the id (a load, not a copy of unknown length).
    if let Ok(k) = TraceKey::try_from(trace_id) {
        return k;
    }
    let mut k = [0; 16];
    let n = trace_id.len().min(16);
    k[..n].copy_from_slice(&trace_id[..n]);
    k
}

/// Whether the spans of each trace are next to each other.
fn grouped(views: &[View<'_>]) -> bool {
    let starts = |i: &usize| *i == 0 || views[*i].span.trace_id != views[*i - 1].span.trace_id;
    let runs = (0..views.len()).filter(starts).count();
    if runs <= 1 {
        return true;
    }
    // A trace that comes back after another is a key seen twice.
    let mut keys: Vec<TraceKey> = Vec::with_capacity(runs);
    keys.extend(
        (0..views.len())
            .filter(starts)
            .map(|i| key(&views[i].span.trace_id)),
    );
    keys.sort_unstable();
    keys.windows(2).all(|w| w[0] != w[1])
}

/// A span with no parent, or whose parent is in another process (W3C `is_remote` in the span's
/// flags): the local root of its trace.
fn is_root(span: &Span) -> bool {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    span.parent_span_id.is_empty()
        || span.parent_span_id.iter().all(|b| *b == 0)
        || span.flags & (HAS_IS_REMOTE | IS_REMOTE) == HAS_IS_REMOTE | IS_REMOTE
}

struct Held {
    items: Vec<Item>,
    first: Instant,
    /// Arrival order, for a deterministic release order.
    seq: u64,
    deadline: Instant,
    root: bool,
}

/// What a release produced: the spans (annotated) and the alerts.
#[derive(Debug, Default)]
pub struct Released {
    pub traces: Option<ExportTraceServiceRequest>,
    pub alerts: Option<ExportLogsServiceRequest>,
}

pub struct Processor {
    settings: Settings,
    held: TraceMap<Held>,
    /// Deadlines, soonest first; stale (skipped) once its trace has a later one or is gone.
    deadlines: BinaryHeap<Reverse<(Instant, u64, TraceKey)>>,
    seq: u64,
    spans: usize,
    pids: PidMap,
    earlier: Remembered,
    alerted: Dedup,
    shadow: Shadow,
    unclaimed: UnclaimedDrift,
    /// Judging's per-trace vectors, kept between traces.
    scratch: Scratch,
    /// The spans kernel log records held as events are judged as, kept between requests.
    kernel_spans: Vec<Span>,
    /// The attributes alike in every alert of a kind.
    alert_sets: alert::AlertSets,
    /// The step lines of the trace being alerted, kept between traces (emptied).
    step_lines: alert::StepLines,
    /// The parts of the last request's alerts: the room the next one's get at once.
    alert_room: runbom_otlp::shared_logs::Room,
    pub stats: Arc<Stats>,
}

/// Alert keys remembered for deduplication: the last this many at least, twice that at most.
const ALERTED: usize = 100_000;

impl Processor {
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self::with_stats(settings, Arc::default())
    }

    /// A processor counting into `stats` (shared with `/metrics`).
    #[must_use]
    pub fn with_stats(settings: Settings, stats: Arc<Stats>) -> Self {
        Self {
            earlier: Remembered::new(settings.max_spans),
            shadow: Shadow::new(settings.shadow.clone(), settings.alert_arguments.clone()),
            unclaimed: UnclaimedDrift::new(
                settings.unclaimed.clone(),
                settings.alert_arguments.clone(),
            ),
            settings,
            held: TraceMap::default(),
            deadlines: BinaryHeap::new(),
            seq: 0,
            spans: 0,
            pids: PidMap::default(),
            alerted: Dedup::default(),
            scratch: Scratch::default(),
            kernel_spans: Vec::new(),
            alert_sets: alert::AlertSets::default(),
            step_lines: alert::StepLines::default(),
            alert_room: runbom_otlp::shared_logs::Room::default(),
            stats,
        }
    }

    /// Judges in place the traces of `req` whose root is there (and late spans of released
    /// traces), holds the rest, and returns what can go on: `req`, the held traces its spans
    /// completed, and what had to be released early to stay within `max_spans`.
    pub fn push(
        &mut self,
        req: ExportTraceServiceRequest,
        now: Instant,
        bom: &DeclaredBom,
    ) -> Released {
        self.push_with(req, now, bom, None).built()
    }

    /// [`Processor::push`], the verdicts of the spans judged in place kept in `annotations`
    /// instead of written onto them (the spans of traces released with them are written).
    fn push_with(
        &mut self,
        mut req: ExportTraceServiceRequest,
        now: Instant,
        bom: &DeclaredBom,
        mut annotations: Option<&mut Annotations>,
    ) -> Out {
        self.earlier.check_bom(bom);
        let mut alerts = Alerts::with_room(self.alert_room);
        let hold = self.judge_in_place(&mut req, bom, &mut alerts, annotations.as_deref_mut());
        let mut logs = alerts.logs;
        if !logs.is_empty() {
            self.alert_room = logs.room();
        }
        let mut due = Vec::new();
        if !hold.is_empty() {
            if let Some(a) = annotations {
                a.remove_held(&req, |s| hold.contains(&key(&s.trace_id)));
            }
            self.hold(&mut req, &hold, now);
            for k in &hold {
                if self.held.get(k).is_some_and(|h| h.root)
                    && let Some(h) = self.held.remove(k)
                {
                    self.spans -= h.items.len();
                    due.push(h);
                }
            }
        }
        while self.spans > self.settings.max_spans {
            let Some(h) = self.pop_next(None) else { break };
            self.stats
                .traces_released_early
                .fetch_add(1, Ordering::Relaxed);
            due.push(h);
        }
        self.stats
            .spans_held
            .store(self.spans as u64, Ordering::Relaxed);
        let more = self.release(due, bom);
        logs.append(more.alerts);
        if let Some(t) = more.traces {
            req.resource_spans.extend(t.resource_spans);
        }
        Out {
            traces: (!req.resource_spans.is_empty()).then_some(req),
            alerts: logs,
        }
    }

    /// Judges, where they sit in `req`, the traces that can be judged now; returns the keys
    /// of the traces whose spans must be held.
    fn judge_in_place(
        &mut self,
        req: &mut ExportTraceServiceRequest,
        bom: &DeclaredBom,
        logs: &mut Alerts,
        mut annotations: Option<&mut Annotations>,
    ) -> TraceSet {
        let mut hold = TraceSet::default();
        let mut memo = Memo::with_room(std::mem::take(&mut self.scratch.verdicts));
        let mut views: Vec<View<'_>> = Vec::new();
        for rs in &mut req.resource_spans {
            let resource = rs.resource.as_ref();
            // Read once for the resource's spans that name no process of their own.
            let pid = std::cell::OnceCell::new();
            let resource_pid = || *pid.get_or_init(|| view::resource_pid(resource));
            for ss in &mut rs.scope_spans {
                let scope = ss.scope.as_ref();
                views.extend(
                    ss.spans
                        .iter_mut()
                        .map(|span| View::new(resource, &rs.schema_url, scope, span, resource_pid)),
                );
            }
        }
        for (at, v) in views.iter_mut().enumerate() {
            v.at = at;
        }
        // One run per trace, in arrival order within it (SDKs and runbom send a trace's spans
        // together: then nothing moves).
        if !grouped(&views) {
            views.sort_by_key(|v| key(&v.span.trace_id));
        }
        let mut at = 0;
        while at < views.len() {
            let k = key(&views[at].span.trace_id);
            let len = views[at..]
                .iter()
                .position(|v| key(&v.span.trace_id) != k)
                .unwrap_or(views.len() - at);
            let run = &mut views[at..at + len];
            at += len;
            if self.held.contains_key(&k) {
                hold.insert(k);
                continue;
            }
            let late = self.earlier.get(&k).is_some();
            if !late && !run.iter().any(|v| is_root(v.span)) {
                hold.insert(k);
                continue;
            }
            if late {
                self.stats
                    .spans_late
                    .fetch_add(run.len() as u64, Ordering::Relaxed);
            }
            self.judge_trace(bom, k, run, logs, annotations.as_deref_mut(), &mut memo);
        }
        self.scratch.verdicts = memo.into_room();
        hold
    }

    /// Judges one trace (or late spans of a released one), collects its alerts and remembers
    /// it; `memo` keeps verdicts for the other traces of the request.
    fn judge_trace<'b>(
        &mut self,
        bom: &'b DeclaredBom,
        k: TraceKey,
        items: &mut [View<'_>],
        logs: &mut Alerts,
        annotations: Option<&mut Annotations>,
        memo: &mut Memo<'b>,
    ) {
        let earlier = self.earlier.get(&k);
        let mut baseline = self
            .settings
            .baseline
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(PoisonError::into_inner));
        let learning = baseline.as_deref_mut().map(|baseline| judge::Learning {
            baseline,
            now: SystemTime::now(),
        });
        let mut judged = judge::judge_unwritten(
            bom,
            &self.settings.judge,
            &mut self.pids,
            items,
            earlier,
            learning,
            &mut self.scratch,
            memo,
        );
        let serial = &bom.serial_number;
        match annotations {
            None => verdict::write_all(items, &judged.verdicts, serial, &judged.envs),
            Some(a) => a.record(items, &judged.verdicts, serial, &judged.envs),
        }
        drop(baseline);
        let drifted = judged
            .verdicts
            .iter()
            .filter(|v| !v.drift.is_empty())
            .count();
        if drifted > 0 {
            self.stats
                .spans_with_drift
                .fetch_add(drifted as u64, Ordering::Relaxed);
        }
        let of = alert::Of {
            bom,
            items,
            judged: &judged,
            earlier,
            policy: &self.settings.alert_arguments,
        };
        alerts::findings(
            &of,
            &mut self.alerted,
            &mut self.step_lines,
            &mut self.alert_sets,
            &self.stats,
            logs,
        );
        // Late spans are kernel spans correlated after their trace left (and a process's spans
        // only get kernel children when its pid is known): remember traces of declared agents
        // with a known process.
        if judged.agents.iter().any(Option::is_some) && judged.pids.iter().any(Option::is_some) {
            self.earlier.remember(k, items, &mut judged);
        }
        memo.take_back(&mut judged);
        judged.recycle(&mut self.scratch);
    }

    /// Moves the spans of the traces in `hold` out of `req` into `held`.
    fn hold(&mut self, req: &mut ExportTraceServiceRequest, hold: &TraceSet, now: Instant) {
        let mut touched: Vec<TraceKey> = Vec::new();
        for rs in &mut req.resource_spans {
            let mut resource: Option<Arc<ResourceHeader>> = None;
            for ss in &mut rs.scope_spans {
                if !ss.spans.iter().any(|s| hold.contains(&key(&s.trace_id))) {
                    continue;
                }
                let resource = resource
                    .get_or_insert_with(|| {
                        Arc::new(ResourceHeader {
                            resource: rs.resource.clone(),
                            schema_url: rs.schema_url.clone(),
                        })
                    })
                    .clone();
                let scope = Arc::new(ScopeHeader {
                    scope: ss.scope.clone(),
                    schema_url: ss.schema_url.clone(),
                });
                let (keep, moved): (Vec<Span>, Vec<Span>) = std::mem::take(&mut ss.spans)
                    .into_iter()
                    .partition(|s| !hold.contains(&key(&s.trace_id)));
                ss.spans = keep;
                for span in moved {
                    let k = key(&span.trace_id);
                    let seq = &mut self.seq;
                    let trace = self.held.entry(k).or_insert_with(|| {
                        *seq += 1;
                        Held {
                            items: Vec::new(),
                            first: now,
                            seq: *seq,
                            deadline: now,
                            root: false,
                        }
                    });
                    trace.root |= is_root(&span);
                    trace.items.push(Item {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        span,
                    });
                    self.spans += 1;
                    if touched.last() != Some(&k) {
                        touched.push(k);
                    }
                }
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        req.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        touched.sort_unstable();
        touched.dedup();
        for k in touched {
            if let Some(h) = self.held.get_mut(&k) {
                let due = (now + self.settings.wait).min(h.first + self.settings.max_hold);
                if due > h.deadline {
                    h.deadline = due;
                    self.deadlines.push(Reverse((due, h.seq, k)));
                }
            }
        }
    }

    /// When the next held trace may be due (an earlier, stale time only costs a wake-up).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let traces = self.deadlines.peek().map(|Reverse((at, _, _))| *at);
        [traces, self.shadow.next_due(), self.unclaimed.next_due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Removes the trace due soonest, if it is due by `now` (any, with `None`).
    fn pop_next(&mut self, now: Option<Instant>) -> Option<Held> {
        while let Some(Reverse((at, _, _))) = self.deadlines.peek() {
            if now.is_some_and(|now| *at > now) {
                return None;
            }
            let Some(Reverse((at, _, k))) = self.deadlines.pop() else {
                break;
            };
            if self.held.get(&k).is_some_and(|h| h.deadline == at) {
                let h = self.held.remove(&k)?;
                self.spans -= h.items.len();
                return Some(h);
            }
        }
        None
    }

    /// Releases every held trace whose wait is over.
    pub fn release_due(&mut self, now: Instant, bom: &DeclaredBom) -> Released {
        self.earlier.check_bom(bom);
        let mut due = Vec::new();
        while let Some(h) = self.pop_next(Some(now)) {
            due.push(h);
        }
        self.stats
            .spans_held
            .store(self.spans as u64, Ordering::Relaxed);
        let unclaimed = self.unclaimed_due(Some(now), bom);
        with_alerts(self.release(due, bom).built(), unclaimed, &self.stats)
    }

    /// Releases everything held (shutdown).
    pub fn release_all(&mut self, bom: &DeclaredBom) -> Released {
        self.earlier.check_bom(bom);
        let mut all: Vec<Held> = self.held.drain().map(|(_, h)| h).collect();
        all.sort_by_key(|h| h.seq);
        self.deadlines.clear();
        self.spans = 0;
        self.stats.spans_held.store(0, Ordering::Relaxed);
        let out = self.release(all, bom).built();
        let unclaimed = self.unclaimed_due(None, bom);
        with_alerts(out, unclaimed, &self.stats)
    }

    fn release(&mut self, traces: Vec<Held>, bom: &DeclaredBom) -> Out {
        if traces.is_empty() {
            return Out::default();
        }
        let mut out = Regroup::default();
        let mut logs = Alerts::default();
        let mut memo = Memo::with_room(std::mem::take(&mut self.scratch.verdicts));
        for mut held in traces {
            let Some(first) = held.items.first() else {
                continue;
            };
            let k = key(&first.span.trace_id);
            let mut views: Vec<View<'_>> = held.items.iter_mut().map(Item::view).collect();
            self.judge_trace(bom, k, &mut views, &mut logs, None, &mut memo);
            drop(views);
            for item in held.items {
                out.push(item);
            }
        }
        self.scratch.verdicts = memo.into_room();
        Out {
            traces: Some(out.finish()),
            alerts: logs.logs,
        }
    }

    /// Spans held now.
    #[must_use]
    pub fn held_spans(&self) -> usize {
        self.spans
    }

    /// Spans of released traces remembered now.
    #[must_use]
    pub fn remembered_spans(&self) -> usize {
        self.earlier.spans
    }
}
