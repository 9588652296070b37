//! The AI-BOM processor's state: spans held per trace for `wait` (bounded), judged when their
//! trace is released, and the drift alerts of what was judged. Pure and synchronous: the
//! pipeline's task feeds it requests and a clock.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::InstrumentationScope,
    logs::v1::{ResourceLogs, ScopeLogs},
    trace::v1::{ResourceSpans, ScopeSpans},
};

use crate::{
    alert,
    bom::DeclaredBom,
    judge::{self, Item, JudgeSettings, ResourceHeader, ScopeHeader},
    pids::PidMap,
};

#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a trace is held after its latest span arrived, for the rest of it to arrive
    /// (the root span of a conversation ends, and so arrives, last) ...
    pub wait: Duration,
    /// ... but never longer than this after its first span.
    pub max_hold: Duration,
    /// Most spans held at once; past it the oldest traces are released early.
    pub max_spans: usize,
    pub judge: JudgeSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(5),
            max_hold: Duration::from_mins(1),
            max_spans: 100_000,
            judge: JudgeSettings::default(),
        }
    }
}

/// Counters the processor keeps (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    pub spans_held: AtomicU64,
    pub traces_released_early: AtomicU64,
    pub spans_with_drift: AtomicU64,
    pub alerts: AtomicU64,
    pub alerts_deduplicated: AtomicU64,
    /// Alerts that could not be handed to a logs pipeline.
    pub alerts_dropped: AtomicU64,
}

struct Held {
    items: Vec<Item>,
    first: Instant,
    /// Arrival order, for a deterministic release order.
    seq: u64,
    deadline: Instant,
}

/// What a release produced: the spans (annotated) and the alerts.
#[derive(Debug, Default)]
pub struct Released {
    pub traces: Option<ExportTraceServiceRequest>,
    pub alerts: Option<ExportLogsServiceRequest>,
}

pub struct Processor {
    settings: Settings,
    held: HashMap<Vec<u8>, Held>,
    /// Deadlines, soonest first; an entry whose trace has a later deadline by now (or is gone)
    /// is stale and skipped.
    deadlines: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    spans: usize,
    pids: PidMap,
    /// Findings already alerted (trace, agent, tool span, flags, subject), bounded.
    alerted: HashSet<String>,
    alerted_order: VecDeque<String>,
    pub stats: Arc<Stats>,
}

/// Alert keys remembered for deduplication.
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
            settings,
            held: HashMap::new(),
            deadlines: BinaryHeap::new(),
            seq: 0,
            spans: 0,
            pids: PidMap::default(),
            alerted: HashSet::new(),
            alerted_order: VecDeque::new(),
            stats,
        }
    }

    /// Holds the request's spans by trace. Returns what had to be released early to stay
    /// within `max_spans`.
    pub fn push(
        &mut self,
        req: ExportTraceServiceRequest,
        now: Instant,
        bom: &DeclaredBom,
    ) -> Released {
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for rs in req.resource_spans {
            let resource = Arc::new(ResourceHeader {
                resource: rs.resource,
                schema_url: rs.schema_url,
            });
            for ss in rs.scope_spans {
                let scope = Arc::new(ScopeHeader {
                    scope: ss.scope,
                    schema_url: ss.schema_url,
                });
                for span in ss.spans {
                    let key = span.trace_id.clone();
                    let seq = &mut self.seq;
                    let held = self.held.entry(key.clone()).or_insert_with(|| {
                        *seq += 1;
                        Held {
                            items: Vec::new(),
                            first: now,
                            seq: *seq,
                            deadline: now,
                        }
                    });
                    touched.insert(key);
                    held.items.push(Item {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        span,
                    });
                    self.spans += 1;
                }
            }
        }
        for key in touched {
            if let Some(h) = self.held.get_mut(&key) {
                let due = (now + self.settings.wait).min(h.first + self.settings.max_hold);
                if due > h.deadline {
                    h.deadline = due;
                    self.deadlines.push(Reverse((due, h.seq, key)));
                }
            }
        }
        let mut early = Vec::new();
        while self.spans > self.settings.max_spans {
            let Some(h) = self.pop_next(None) else { break };
            self.stats
                .traces_released_early
                .fetch_add(1, Ordering::Relaxed);
            early.push(h);
        }
        self.stats
            .spans_held
            .store(self.spans as u64, Ordering::Relaxed);
        self.release(early, bom)
    }

    /// When the next trace may be due (an earlier, stale time only costs a wake-up).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes the trace due soonest, if it is due by `now` (any, with `None`).
    fn pop_next(&mut self, now: Option<Instant>) -> Option<Held> {
        while let Some(Reverse((at, _, _))) = self.deadlines.peek() {
            if now.is_some_and(|now| *at > now) {
                return None;
            }
            let Some(Reverse((at, _, key))) = self.deadlines.pop() else {
                break;
            };
            if self.held.get(&key).is_some_and(|h| h.deadline == at) {
                let h = self.held.remove(&key)?;
                self.spans -= h.items.len();
                return Some(h);
            }
        }
        None
    }

    /// Releases every trace whose wait is over.
    pub fn release_due(&mut self, now: Instant, bom: &DeclaredBom) -> Released {
        let mut due = Vec::new();
        while let Some(h) = self.pop_next(Some(now)) {
            due.push(h);
        }
        self.stats
            .spans_held
            .store(self.spans as u64, Ordering::Relaxed);
        self.release(due, bom)
    }

    /// Releases everything held (shutdown).
    pub fn release_all(&mut self, bom: &DeclaredBom) -> Released {
        let mut all: Vec<Held> = self.held.drain().map(|(_, h)| h).collect();
        all.sort_by_key(|h| h.seq);
        self.deadlines.clear();
        self.spans = 0;
        self.stats.spans_held.store(0, Ordering::Relaxed);
        self.release(all, bom)
    }

    fn release(&mut self, traces: Vec<Held>, bom: &DeclaredBom) -> Released {
        if traces.is_empty() {
            return Released::default();
        }
        let mut out = Regroup::default();
        let mut logs: Vec<ResourceLogs> = Vec::new();
        for mut held in traces {
            let judged = judge::judge(bom, &self.settings.judge, &mut self.pids, &mut held.items);
            let drifted = judged
                .verdicts
                .iter()
                .filter(|v| !v.drift.is_empty())
                .count();
            self.stats
                .spans_with_drift
                .fetch_add(drifted as u64, Ordering::Relaxed);
            for f in &judged.findings {
                let o = &held.items[f.offender];
                let key = format!(
                    "{}|{}|{}|{}|{}",
                    hex::encode(&o.span.trace_id),
                    f.agent,
                    f.tool
                        .map(|t| hex::encode(&held.items[t].span.span_id))
                        .unwrap_or_default(),
                    f.kinds.join(","),
                    f.subject
                );
                if !self.remember(key) {
                    self.stats
                        .alerts_deduplicated
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let record = alert::alert(bom, &held.items, &judged, f);
                self.stats.alerts.fetch_add(1, Ordering::Relaxed);
                logs.push(ResourceLogs {
                    resource: o.resource.resource.clone(),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: alert::SCOPE.into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        log_records: vec![record],
                        schema_url: String::new(),
                    }],
                    schema_url: o.resource.schema_url.clone(),
                });
            }
            for item in held.items {
                out.push(item);
            }
        }
        Released {
            traces: Some(out.finish()),
            alerts: (!logs.is_empty()).then_some(ExportLogsServiceRequest {
                resource_logs: logs,
            }),
        }
    }

    /// Whether `key` is new (and remembers it).
    fn remember(&mut self, key: String) -> bool {
        if self.alerted.contains(&key) {
            return false;
        }
        if self.alerted_order.len() == ALERTED
            && let Some(old) = self.alerted_order.pop_front()
        {
            self.alerted.remove(&old);
        }
        self.alerted.insert(key.clone());
        self.alerted_order.push_back(key);
        true
    }

    /// Spans held now.
    #[must_use]
    pub fn held_spans(&self) -> usize {
        self.spans
    }
}

type ScopeGroup = (Arc<ScopeHeader>, ScopeSpans);

/// Rebuilds `ResourceSpans`/`ScopeSpans` from items, one per resource and scope as received.
#[derive(Default)]
struct Regroup {
    resources: Vec<(Arc<ResourceHeader>, Vec<ScopeGroup>)>,
    by_resource: HashMap<*const ResourceHeader, usize>,
}

impl Regroup {
    fn push(&mut self, item: Item) {
        let rp = Arc::as_ptr(&item.resource);
        let ri = *self.by_resource.entry(rp).or_insert_with(|| {
            self.resources.push((item.resource.clone(), Vec::new()));
            self.resources.len() - 1
        });
        let scopes = &mut self.resources[ri].1;
        let sp = Arc::as_ptr(&item.scope);
        let found = scopes.iter().position(|(s, _)| Arc::as_ptr(s) == sp);
        let si = found.unwrap_or_else(|| {
            scopes.push((
                item.scope.clone(),
                ScopeSpans {
                    scope: item.scope.scope.clone(),
                    spans: Vec::new(),
                    schema_url: item.scope.schema_url.clone(),
                },
            ));
            scopes.len() - 1
        });
        scopes[si].1.spans.push(item.span);
    }

    fn finish(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self
                .resources
                .into_iter()
                .map(|(r, scopes)| ResourceSpans {
                    resource: r.resource.clone(),
                    scope_spans: scopes.into_iter().map(|(_, s)| s).collect(),
                    schema_url: r.schema_url.clone(),
                })
                .collect(),
        }
    }
}
