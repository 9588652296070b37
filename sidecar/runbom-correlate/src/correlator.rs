//! The [`Correlator`]: feeds the span index and the event buffer, matches events to spans by
//! the contract's methods, decides stitching, and hands out what is ready.

use std::{collections::HashSet, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, resource::v1::Resource,
};
use runbom_event::{
    Detail, KernelEvent, McpSide,
    semconv::{PROCESS_PID, THREAD_ID, correlation},
};
use runbom_otlp::{ConvertOptions, Placement};

use crate::{
    IdMap, IdSet, Method, Settings, Stats,
    agentless::Agentless,
    buffer::{EventBuffer, Key},
    connections::Connections,
    spans::{SpanId, SpanIndex, SpanRec, TraceId},
    traces::{Decision, HeldSpan, HeldTrace, ResourceCtx, ScopeCtx, Traces, regroup},
};

#[path = "serving.rs"]
mod serving;

use crate::procs::{Proc, int_attr, related, sender_ancestor};

use crate::placed::Placed;
pub use crate::placed::{Decided, Output};

/// A held trace not decided yet: its id, its root (and when it arrived), its first arrival.
type Undecided = (TraceId, Option<(SpanId, u64)>, u64);

pub struct Correlator {
    settings: Settings,
    opts: ConvertOptions,
    stats: Arc<Stats>,
    index: SpanIndex,
    buffer: EventBuffer,
    traces: Traces,
    procs: IdMap<u32, Proc>,
    /// Processes with settled events that only the ancestry method can still place.
    ancestry_pending: IdSet<u32>,
    /// Held events whose `traceparent` names a span not seen yet.
    pending_tp: IdMap<SpanId, Vec<Key>>,
    /// Held connects and the first requests on their connections.
    connections: Connections,
    /// Placed events by the original trace of their span.
    placed: IdMap<TraceId, Vec<Placed>>,
    /// Spans released at once (their trace was decided), in arrival order.
    ready_spans: Vec<HeldSpan>,
    /// Events leaving without a place.
    unplaced: Vec<KernelEvent>,
    /// MCP calls a process served (its `mcp.server` events), by pid (`serving.rs`).
    serving: IdMap<u32, Vec<serving::Serving>>,
    /// `mcp.server` spans placed since the last look: what their process did meanwhile can be
    /// placed under them now.
    new_serving: Vec<(u32, u64, u64)>,
    /// Runs of agents that send no traces, built from their LLM exchanges.
    agentless: Agentless,
    /// The latest `now` given (Unix ns), for the runs' timers.
    clock: u64,
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Correlator {
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        let opts = ConvertOptions {
            host_name: settings.host_name.clone(),
            uncorrelated_spans: settings.uncorrelated_spans,
        };
        Self {
            settings,
            opts,
            stats: Arc::default(),
            index: SpanIndex::default(),
            buffer: EventBuffer::default(),
            traces: Traces::default(),
            procs: IdMap::default(),
            ancestry_pending: IdSet::default(),
            pending_tp: IdMap::default(),
            connections: Connections::default(),
            placed: IdMap::default(),
            ready_spans: Vec::new(),
            unplaced: Vec::new(),
            serving: IdMap::default(),
            new_serving: Vec::new(),
            agentless: Agentless::default(),
            clock: 0,
        }
    }

    /// The counters, to register with the process's telemetry.
    #[must_use]
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Bytes the held kernel events account for (never more than `max_buffered_bytes`).
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.bytes()
    }

    #[must_use]
    pub fn buffered_events(&self) -> usize {
        self.buffer.len()
    }

    fn wait(&self) -> u64 {
        ns(self.settings.wait)
    }

    /// Application spans, as an OTLP request from any sender. `now`: Unix ns.
    pub fn add_spans(&mut self, request: ExportTraceServiceRequest, now: u64) {
        let mut new: Vec<SpanId> = Vec::new();
        for rs in request.resource_spans {
            let pid = rs
                .resource
                .as_ref()
                .and_then(|r| int_attr(&r.attributes, PROCESS_PID));
            let resource = Arc::new(rs.resource.clone().unwrap_or_default());
            let res = Arc::new(ResourceCtx {
                resource: rs.resource,
                schema_url: rs.schema_url,
            });
            for ss in rs.scope_spans {
                let scope = Arc::new(ScopeCtx {
                    scope: ss.scope,
                    schema_url: ss.schema_url,
                });
                for span in ss.spans {
                    let (Ok(trace), Ok(id)) = (
                        TraceId::try_from(span.trace_id.as_slice()),
                        SpanId::try_from(span.span_id.as_slice()),
                    ) else {
                        // Not ours to judge: pass it on untouched.
                        self.ready_spans.push(HeldSpan {
                            res: res.clone(),
                            scope: scope.clone(),
                            span,
                        });
                        continue;
                    };
                    let parent = SpanId::try_from(span.parent_span_id.as_slice()).ok();
                    if let Some(pid) = pid {
                        self.index.insert(SpanRec {
                            trace,
                            id,
                            parent,
                            pid: pid as u32,
                            start: span.start_time_unix_nano,
                            end: span.end_time_unix_nano.max(span.start_time_unix_nano),
                            tid: int_attr(&span.attributes, THREAD_ID).map(|t| t as u32),
                            resource: resource.clone(),
                            arrived: now,
                        });
                        new.push(id);
                    }
                    self.route_span(
                        HeldSpan {
                            res: res.clone(),
                            scope: scope.clone(),
                            span,
                        },
                        trace,
                        parent.is_none(),
                        now,
                    );
                }
            }
        }
        // Every span of the request is indexed: now match the events they may contain.
        for id in new {
            if let Some(keys) = self.pending_tp.remove(&id) {
                for key in keys {
                    self.try_place(key, now);
                }
            }
            let Some(rec) = self.index.get(id) else {
                continue;
            };
            for key in self.buffer.in_range(rec.pid, rec.start, rec.end) {
                self.try_place(key, now);
            }
        }
        // Calls placed just now: what their servers did meanwhile goes with them.
        self.place_served(now);
    }

    fn route_span(&mut self, h: HeldSpan, trace: TraceId, root: bool, now: u64) {
        if !self.settings.stitch {
            self.ready_spans.push(h);
            return;
        }
        if let Some(decision) = self.traces.decisions.get(&trace).copied()
            && let Some(fin) = self.traces.final_trace(trace)
        {
            let mut h = h;
            if Traces::rewrite(&mut h.span, fin, Some(decision)) {
                self.stats.add_stitched(1);
            }
            self.ready_spans.push(h);
            return;
        }
        let held = self.traces.held.entry(trace).or_insert_with(|| HeldTrace {
            first_arrival: now,
            ..HeldTrace::default()
        });
        if root && !self.traces.decisions.contains_key(&trace) {
            held.root = SpanId::try_from(h.span.span_id.as_slice())
                .ok()
                .map(|id| (id, now));
        }
        held.spans.push(h);
    }

    /// Kernel events from the ebpf receiver. `now`: Unix ns.
    pub fn add_events(&mut self, events: Vec<KernelEvent>, now: u64) {
        self.clock = self.clock.max(now);
        for ev in events {
            self.learn(&ev, now);
            // The span a traceparent names ran in the event's thread, except for an MCP
            // server's side of a call: that one ran in the client.
            if let Some(tp) = ev.detail.traceparent()
                && !matches!(&ev.detail, Detail::Mcp(m) if m.side == McpSide::Server)
            {
                self.index.hint(tp.span_id, ev.pid, ev.tid);
            }
            let serving = self.note_serving(&ev);
            if let Some((key, span)) = self.connections.first_request(&ev, &self.buffer)
                && !self.try_place(key, now)
            {
                self.pending_tp.entry(span).or_default().push(key);
            }
            if let Some((span, method, confidence)) = self.exact_match(&ev, None, false) {
                self.place(ev, span, method, confidence);
                continue;
            }
            if let Some((span, trace, resource)) =
                self.procs.get(&ev.pid).and_then(|p| p.ancestry.clone())
            {
                self.place_at(Placed::ancestry(ev, span, trace, resource));
                continue;
            }
            let stranger = !self.related(ev.pid);
            let tp = ev.detail.traceparent().map(|tp| tp.span_id);
            self.make_room(EventBuffer::cost(&ev));
            let opened = Connections::opened(&ev);
            let key = self.buffer.insert(ev, now, stranger);
            if let Some(socket) = opened {
                self.connections.held(socket, key);
            }
            if let Some(span) = tp {
                self.pending_tp.entry(span).or_default().push(key);
            }
            if serving && let Some(s) = self.serving.get_mut(&key.0).and_then(|v| v.last_mut()) {
                s.held = Some(key);
            }
        }
        self.place_served(now);
        self.stats
            .set_buffered(self.buffer.len(), self.buffer.bytes());
    }

    /// Updates what is known of the event's process.
    fn learn(&mut self, ev: &KernelEvent, now: u64) {
        let p = self.procs.entry(ev.pid).or_default();
        p.ppid = ev.process.ppid;
        p.last_seen = now;
        if ev.process.fork_ns != 0 {
            if p.anchor_from_fork && p.anchor_ns != ev.process.fork_ns {
                p.ancestry = None; // the pid was reused by another process
            }
            p.fork_tid = ev.process.fork_tid;
            p.anchor_ns = ev.process.fork_ns;
            p.anchor_from_fork = true;
        } else if !p.anchor_from_fork
            && (p.anchor_ns == 0 || matches!(ev.detail, Detail::Exec { .. }))
        {
            p.anchor_ns = ev.start_ns;
        }
    }

    fn related(&self, pid: u32) -> bool {
        related(&self.index, &self.procs, pid)
    }

    fn sender_ancestor(&self, pid: u32) -> Option<(u32, u32)> {
        sender_ancestor(&self.index, &self.procs, pid)
    }

    /// Keeps the buffer under its caps by evicting the oldest events (strangers' first).
    fn make_room(&mut self, incoming: usize) {
        while !self.buffer.is_empty()
            && (self.buffer.len() + 1 > self.settings.max_buffered_events
                || self.buffer.bytes() + incoming > self.settings.max_buffered_bytes)
        {
            let (index, procs) = (&self.index, &self.procs);
            let related = |pid| related(index, procs, pid);
            let Some(ev) = self.buffer.evict_oldest(related) else {
                break;
            };
            self.stats.add_evicted();
            self.unplaced.push(ev);
        }
    }

    /// `traceparent` as soon as its span is known (exact): the event's own, or for a connect
    /// the one its connection's first request named (`linked`, `connections.rs`); else, once
    /// `settled` (so that every span that ends soon after the event has arrived), `thread`.
    /// When spans of several traces (as stitched so far) contain the event on its thread —
    /// asyncio tasks sharing it — the thread does not tell: the innermost is taken as a
    /// `process` match of `low` confidence.
    fn exact_match(
        &self,
        ev: &KernelEvent,
        linked: Option<SpanId>,
        settled: bool,
    ) -> Option<(SpanId, Method, &'static str)> {
        if let Some(span) = ev.detail.traceparent().map(|tp| tp.span_id).or(linked)
            && self.index.get(span).is_some()
        {
            return Some((span, Method::Traceparent, correlation::HIGH));
        }
        if !settled {
            return None;
        }
        let candidates: Vec<&SpanRec> = self
            .index
            .containing(ev.pid, ev.start_ns, Some(ev.tid))
            .collect();
        let inner = SpanIndex::innermost(candidates.iter().copied())?;
        if self.trace_count(&candidates) == 1 {
            Some((inner.id, Method::Thread, correlation::HIGH))
        } else {
            Some((inner.id, Method::Process, correlation::LOW))
        }
    }

    /// How many traces (as stitched so far) `spans` belong to.
    fn trace_count(&self, spans: &[&SpanRec]) -> usize {
        spans
            .iter()
            .map(|s| self.traces.current_trace(s.trace))
            .collect::<HashSet<_>>()
            .len()
    }

    /// `process`: the innermost span of the process containing the event. Not for an event of
    /// a thread that runs spans of its own, none of which contains it: between its spans that
    /// thread does untraced work of its own (an SDK exporter flushing on a worker thread), not
    /// the work of another thread's span.
    fn process_match(&self, ev: &KernelEvent) -> Option<(SpanId, Method, &'static str)> {
        if self.index.runs_spans(ev.pid, ev.tid) {
            return None;
        }
        let candidates: Vec<&SpanRec> = self.index.containing(ev.pid, ev.start_ns, None).collect();
        let inner = SpanIndex::innermost(candidates.iter().copied())?;
        let confidence = if self.trace_count(&candidates) > 1 {
            correlation::LOW
        } else {
            correlation::MEDIUM
        };
        Some((inner.id, Method::Process, confidence))
    }

    /// `ancestry`: where the nearest sending ancestor's forking thread was at the fork.
    fn resolve_ancestry(&mut self, pid: u32) -> Option<(SpanId, TraceId, Arc<Resource>)> {
        if let Some(found) = self.procs.get(&pid).and_then(|p| p.ancestry.clone()) {
            return Some(found);
        }
        if self.index.has_pid(pid) && !self.serving.contains_key(&pid) {
            return None; // a sender: its own spans decide
        }
        let (ancestor, child) = self.sender_ancestor(pid)?;
        let c = self.procs.get(&child)?;
        let (t, tid) = (c.anchor_ns, (c.fork_tid != 0).then_some(c.fork_tid));
        let on_thread =
            tid.and_then(|tid| SpanIndex::innermost(self.index.containing(ancestor, t, Some(tid))));
        let span =
            on_thread.or_else(|| SpanIndex::innermost(self.index.containing(ancestor, t, None)))?;
        let found = (span.id, span.trace, span.resource.clone());
        if let Some(p) = self.procs.get_mut(&pid) {
            p.ancestry = Some(found.clone());
        }
        Some(found)
    }

    /// Tries to place a held event: exact methods always, weaker ones once it waited `wait`.
    fn try_place(&mut self, key: Key, now: u64) -> bool {
        let Some(held) = self.buffer.get(&key) else {
            return false;
        };
        let settled = now >= held.arrived.saturating_add(self.wait());
        let ev = &held.event;
        if self.awaits_serving(ev) {
            return false;
        }
        let linked = self.connections.span_of(&key);
        let mut found = self.exact_match(ev, linked, settled).or_else(|| {
            self.serving_match(ev)
                .map(|span| (span, Method::Process, correlation::MEDIUM))
        });
        if found.is_none() && settled {
            found = self.process_match(ev);
        }
        if let Some((span, method, confidence)) = found {
            let ev = self.buffer.remove(&key).expect("held").event;
            self.place(ev, span, method, confidence);
            return true;
        }
        if settled && let Some((span, trace, resource)) = self.resolve_ancestry(key.0) {
            let ev = self.buffer.remove(&key).expect("held").event;
            self.place_at(Placed::ancestry(ev, span, trace, resource));
            return true;
        }
        false
    }

    fn place(&mut self, ev: KernelEvent, span: SpanId, method: Method, confidence: &'static str) {
        let Some(rec) = self.index.get(span) else {
            self.unplaced.push(ev);
            return;
        };
        let (trace, resource) = (rec.trace, rec.resource.clone());
        self.place_at(Placed {
            event: ev,
            span,
            trace,
            resource,
            method,
            confidence,
        });
    }

    fn place_at(&mut self, placed: Placed) {
        self.register_serving(&placed);
        self.stats.add_correlated(placed.method);
        self.placed.entry(placed.trace).or_default().push(placed);
    }

    /// Decides held traces: stitch a root into its container, or keep traces whose time is up
    /// (or, past `max_held_spans`, the oldest at once).
    fn decide(&mut self, now: u64) {
        let wait = self.wait();
        let mut undecided: Vec<Undecided> = self
            .traces
            .held
            .iter()
            .filter(|(t, _)| !self.traces.decisions.contains_key(*t))
            .map(|(t, h)| (*t, h.root, h.first_arrival))
            .collect();
        let mut held: usize = self.traces.held.values().map(|h| h.spans.len()).sum();
        let cap = self.settings.max_held_spans;
        if held > cap {
            undecided.sort_by_key(|u| u.2);
            let mut over = Vec::new();
            for u in &undecided {
                if held <= cap {
                    break;
                }
                held -= self.traces.held.get(&u.0).map_or(0, |h| h.spans.len());
                over.push(u.0);
            }
            for t in over {
                self.traces.decide(t, Decision::Kept, now);
            }
            undecided.retain(|u| !self.traces.decisions.contains_key(&u.0));
        }
        for (trace, root, first) in undecided {
            if let Some((root, root_arrived)) = root {
                if let Some(container) = self.container(trace, root) {
                    let into = self.index.get(container).map(|c| c.trace);
                    if let Some(into) = into {
                        let d = Decision::Stitched {
                            into,
                            root,
                            parent: container,
                        };
                        self.traces.decide(trace, d, now);
                        continue;
                    }
                }
                if now >= root_arrived.saturating_add(wait) {
                    self.traces.decide(trace, Decision::Kept, now);
                }
            } else if now >= first.saturating_add(wait) {
                self.traces.decide(trace, Decision::Kept, now);
            }
        }
    }

    /// The span of another trace, in the same process, that root span `root` ran inside.
    fn container(&self, trace: TraceId, root: SpanId) -> Option<SpanId> {
        let r = self.index.get(root)?;
        let inside = |tid: Option<u32>| {
            SpanIndex::innermost(
                self.index
                    .containing(r.pid, r.start, tid)
                    .filter(|s| s.end >= r.end && s.id != r.id)
                    .filter(|s| s.trace != trace && self.traces.current_trace(s.trace) != trace),
            )
        };
        let s = r
            .tid
            .and_then(|tid| inside(Some(tid)))
            .or_else(|| inside(None))?;
        // Another activity of S running beside the root: not a broken context, two at once.
        (!self.index.child_overlaps(s.id, r.start, r.end)).then_some(s.id)
    }

    /// Handles timers and hands out everything ready. `now`: Unix ns.
    pub fn poll(&mut self, now: u64) -> Output {
        self.poll_decided(now).convert(&self.opts)
    }

    /// [`Correlator::poll`], the kernel events not converted yet.
    pub fn poll_decided(&mut self, now: u64) -> Decided {
        let wait = self.wait();
        let window = ns(self.settings.window);
        // Events that waited `wait`: weaker methods now apply; strangers leave.
        while let Some(&(arrived, key)) = self.buffer.young.front() {
            if now < arrived.saturating_add(wait) {
                break;
            }
            self.buffer.young.pop_front();
            if self.buffer.get(&key).is_none() || self.try_place(key, now) {
                continue;
            }
            if self.related(key.0) {
                self.buffer.settled.push_back((arrived, key));
                if !self.index.has_pid(key.0) {
                    self.ancestry_pending.insert(key.0);
                }
            } else if let Some(h) = self.buffer.remove(&key) {
                self.unplaced.push(h.event);
            }
        }
        // Events of senders whose window is over leave unplaced.
        while let Some(&(arrived, key)) = self.buffer.settled.front() {
            if now < arrived.saturating_add(window) {
                break;
            }
            self.buffer.settled.pop_front();
            if let Some(h) = self.buffer.remove(&key) {
                self.unplaced.push(h.event);
            }
        }
        // Children of senders resolved by ancestry since their events settled.
        let waiting: Vec<u32> = self.ancestry_pending.iter().copied().collect();
        for pid in waiting {
            if !self.buffer.holds(pid) {
                self.ancestry_pending.remove(&pid);
            } else if self.resolve_ancestry(pid).is_some() {
                self.ancestry_pending.remove(&pid);
                for key in self.buffer.of_pid(pid) {
                    self.try_place(key, now);
                }
            }
        }
        self.place_served(now);
        self.buffer.compact();
        self.clock = self.clock.max(now);
        self.agentless.expire(now);
        self.decide(now);
        let cutoff = now.saturating_sub(window);
        self.prune_serving(cutoff);
        self.index.prune(cutoff);
        self.traces.prune(cutoff);
        self.procs
            .retain(|_, p| p.last_seen >= cutoff.saturating_sub(window));
        self.pending_tp.retain(|_, keys| {
            keys.retain(|k| self.buffer.get(k).is_some());
            !keys.is_empty()
        });
        self.connections.retain_held(&self.buffer);
        self.stats
            .set_buffered(self.buffer.len(), self.buffer.bytes());
        self.take_ready()
    }

    /// Releases everything at once (shutdown): held events are placed as well as the spans
    /// known now allow (as if they had waited), traces are decided with what is known, and
    /// the rest goes as it is.
    pub fn flush(&mut self) -> Output {
        self.flush_decided().convert(&self.opts)
    }

    /// [`Correlator::flush`], the kernel events not converted yet.
    pub fn flush_decided(&mut self) -> Decided {
        let keys: Vec<Key> = self.buffer.young.iter().map(|(_, k)| *k).collect();
        let pids: std::collections::BTreeSet<u32> = keys.iter().map(|k| k.0).collect();
        for key in keys {
            self.try_place(key, u64::MAX);
        }
        self.place_served(u64::MAX);
        self.stop_awaiting_serving();
        for pid in pids {
            if self.buffer.holds(pid) && self.resolve_ancestry(pid).is_some() {
                for key in self.buffer.of_pid(pid) {
                    self.try_place(key, u64::MAX);
                }
            }
        }
        self.decide(u64::MAX);
        let undecided: Vec<TraceId> = self.traces.held.keys().copied().collect();
        for t in undecided {
            if !self.traces.decisions.contains_key(&t) {
                self.traces.decide(t, Decision::Kept, 0);
            }
        }
        while let Some(ev) = self.buffer.evict_oldest(|_| false) {
            self.unplaced.push(ev);
        }
        let placed: Vec<TraceId> = self.placed.keys().copied().collect();
        for t in placed {
            if self.traces.final_trace(t).is_none() {
                self.traces.decide(t, Decision::Kept, 0);
            }
        }
        self.stats.set_buffered(0, 0);
        let mut out = self.take_ready();
        self.agentless.close_all();
        out.spans.extend(self.agentless.take_spans());
        out
    }

    /// Hands out what is ready without running the timers (cheap: call after every input;
    /// [`Correlator::poll`] on a timer).
    pub fn ready(&mut self) -> Output {
        self.ready_decided().convert(&self.opts)
    }

    /// [`Correlator::ready`], the kernel events not converted yet.
    pub fn ready_decided(&mut self) -> Decided {
        self.take_ready()
    }

    /// The options the kernel events of a [`Decided`] are converted with.
    #[must_use]
    pub fn convert_options(&self) -> &ConvertOptions {
        &self.opts
    }

    fn take_ready(&mut self) -> Decided {
        let (released, moved) = self.traces.release_ready();
        self.stats.add_stitched(moved);
        let mut spans = std::mem::take(&mut self.ready_spans);
        spans.extend(released);
        let mut out = Decided {
            spans: regroup(spans),
            ..Decided::default()
        };

        let mut events = Vec::new();
        let mut placements = Vec::new();
        let ready: Vec<(TraceId, TraceId)> = self
            .placed
            .keys()
            .filter_map(|t| Some((*t, self.traces.final_trace(*t)?)))
            .collect();
        for (t, fin) in ready {
            for p in self.placed.remove(&t).into_iter().flatten() {
                debug_assert_eq!(p.trace, t);
                placements.push(Some(Placement {
                    trace_id: fin,
                    parent_span_id: p.span,
                    resource: p.resource,
                    method: p.method.as_str(),
                    confidence: p.confidence,
                }));
                events.push(p.event);
            }
        }
        let unplaced = std::mem::take(&mut self.unplaced);
        self.stats.add_uncorrelated(unplaced.len() as u64);
        // Events of processes that send no traces: agents among them get their run built.
        placements.resize(events.len(), None);
        for ev in &unplaced {
            let agent = self.agentless.may_place(ev) && !related(&self.index, &self.procs, ev.pid);
            placements.push(if agent {
                self.agentless.place(ev, &self.opts, self.clock)
            } else {
                None
            });
        }
        events.extend(unplaced);
        out.spans.extend(self.agentless.take_spans());
        out.events = events;
        out.placements = placements;
        out
    }
}
