//! The index of application spans: per process, their ids, parent, interval and thread, kept
//! for `window` after they arrived, and the lookups the methods need (innermost containing span
//! of a process or of one of its threads).

use std::{collections::VecDeque, sync::Arc};

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::IdMap;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// What the correlation keeps of one application span.
#[derive(Clone, Debug)]
pub struct SpanRec {
    pub trace: TraceId,
    pub id: SpanId,
    pub parent: Option<SpanId>,
    pub pid: u32,
    pub start: u64,
    pub end: u64,
    /// `thread.id`, or the thread inferred from a `traceparent` seen on it.
    pub tid: Option<u32>,
    pub resource: Arc<Resource>,
    pub arrived: u64,
}

/// What a lookup scans: a span's interval and thread, inline (no hashing per span scanned).
#[derive(Clone, Copy, Debug)]
struct Slot {
    start: u64,
    end: u64,
    tid: Option<u32>,
    id: SpanId,
}

/// The spans of one process, ordered by start, and the longest of them: a lookup at time `t`
/// scans only the spans that started within that length before `t`.
#[derive(Default)]
struct PidSpans {
    slots: Vec<Slot>,
    longest: u64,
}

impl PidSpans {
    fn insert(&mut self, slot: Slot) {
        let at = self.slots.partition_point(|s| s.start <= slot.start);
        self.slots.insert(at, slot);
        self.longest = self.longest.max(slot.end - slot.start);
    }

    fn around(&self, t: u64) -> &[Slot] {
        let from = self
            .slots
            .partition_point(|s| s.start < t.saturating_sub(self.longest));
        let to = self.slots.partition_point(|s| s.start <= t);
        &self.slots[from..to.max(from)]
    }
}

#[derive(Default)]
pub struct SpanIndex {
    spans: IdMap<SpanId, SpanRec>,
    by_pid: IdMap<u32, PidSpans>,
    children: IdMap<SpanId, Vec<SpanId>>,
    /// Threads learnt from `traceparent`s for spans that have not arrived (or lack `thread.id`).
    hints: IdMap<SpanId, (u32, u32)>,
    /// How many indexed spans each `(pid, tid)` is known to have run.
    threads: IdMap<(u32, u32), usize>,
    order: VecDeque<(u64, SpanId)>,
}

impl SpanIndex {
    #[must_use]
    pub fn get(&self, id: SpanId) -> Option<&SpanRec> {
        self.spans.get(&id)
    }

    pub fn insert(&mut self, mut rec: SpanRec) {
        if rec.tid.is_none()
            && let Some(&(pid, tid)) = self.hints.get(&rec.id)
            && pid == rec.pid
        {
            rec.tid = Some(tid);
        }
        let (id, pid, parent, tid) = (rec.id, rec.pid, rec.parent, rec.tid);
        let slot = Slot {
            start: rec.start,
            end: rec.end,
            tid,
            id,
        };
        self.order.push_back((rec.arrived, id));
        if self.spans.insert(id, rec).is_none() {
            self.by_pid.entry(pid).or_default().insert(slot);
            if let Some(tid) = tid {
                *self.threads.entry((pid, tid)).or_default() += 1;
            }
            if let Some(p) = parent {
                self.children.entry(p).or_default().push(id);
            }
        }
        // A thread inferred for this span holds for its ancestors in the process too.
        if let (Some(p), Some(tid)) = (parent, tid)
            && self.hints.get(&id).is_some_and(|h| h.1 == tid)
        {
            self.hint(p, pid, tid);
        }
    }

    /// Span `id` (and its ancestors in `pid`) ran on thread `tid`: an `http.request` on `tid`
    /// carried its `traceparent`.
    pub fn hint(&mut self, id: SpanId, pid: u32, tid: u32) {
        let mut next = Some(id);
        for _ in 0..64 {
            let Some(id) = next.take() else { return };
            if self.hints.insert(id, (pid, tid)) == Some((pid, tid)) {
                return;
            }
            if let Some(rec) = self.spans.get_mut(&id) {
                if rec.pid != pid {
                    return;
                }
                if rec.tid.is_none() {
                    rec.tid = Some(tid);
                    if let Some(slot) = self
                        .by_pid
                        .get_mut(&pid)
                        .and_then(|v| v.slots.iter_mut().find(|s| s.id == id))
                    {
                        slot.tid = Some(tid);
                        *self.threads.entry((pid, tid)).or_default() += 1;
                    }
                }
                next = rec.parent;
            }
        }
    }

    /// Whether `pid` sent spans that are still indexed.
    #[must_use]
    pub fn has_pid(&self, pid: u32) -> bool {
        self.by_pid.get(&pid).is_some_and(|v| !v.slots.is_empty())
    }

    /// Whether thread `tid` of `pid` is known to have run spans that are still indexed.
    #[must_use]
    pub fn runs_spans(&self, pid: u32, tid: u32) -> bool {
        self.threads.contains_key(&(pid, tid))
    }

    /// Spans of `pid` whose interval contains `t` (on thread `tid` when given).
    pub fn containing(&self, pid: u32, t: u64, tid: Option<u32>) -> impl Iterator<Item = &SpanRec> {
        self.by_pid
            .get(&pid)
            .map(|p| p.around(t))
            .into_iter()
            .flatten()
            .filter(move |s| s.start <= t && t <= s.end && (tid.is_none() || s.tid == tid))
            .filter_map(|s| self.spans.get(&s.id))
    }

    /// The innermost of `spans`: latest start, then earliest end.
    pub fn innermost<'a>(spans: impl Iterator<Item = &'a SpanRec>) -> Option<&'a SpanRec> {
        spans.max_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)))
    }

    /// Whether a child of `parent` overlaps `[start, end]`.
    #[must_use]
    pub fn child_overlaps(&self, parent: SpanId, start: u64, end: u64) -> bool {
        self.children.get(&parent).into_iter().flatten().any(|c| {
            self.spans
                .get(c)
                .is_some_and(|c| c.start <= end && start <= c.end)
        })
    }

    /// Forgets spans that arrived before `cutoff`.
    pub fn prune(&mut self, cutoff: u64) {
        while let Some(&(arrived, id)) = self.order.front() {
            if arrived >= cutoff {
                break;
            }
            self.order.pop_front();
            let Some(rec) = self.spans.get(&id) else {
                continue;
            };
            if rec.arrived >= cutoff {
                continue; // the same span again, arrived later
            }
            let rec = self.spans.remove(&id).expect("checked above");
            self.hints.remove(&id);
            self.children.remove(&id);
            if let Some(v) = self.by_pid.get_mut(&rec.pid) {
                let before = v.slots.len();
                v.slots.retain(|s| s.id != id);
                if let (Some(tid), true) = (rec.tid, v.slots.len() < before)
                    && let Some(n) = self.threads.get_mut(&(rec.pid, tid))
                {
                    *n -= 1;
                    if *n == 0 {
                        self.threads.remove(&(rec.pid, tid));
                    }
                }
                if rec.end - rec.start == v.longest {
                    v.longest = v.slots.iter().map(|s| s.end - s.start).max().unwrap_or(0);
                }
                if v.slots.is_empty() {
                    self.by_pid.remove(&rec.pid);
                }
            }
            if let Some(p) = rec.parent
                && let Some(v) = self.children.get_mut(&p)
            {
                v.retain(|s| *s != id);
            }
        }
        // Hints for spans that never arrived: keep them bounded too.
        if self.hints.len() > 4 * self.spans.len() + 4096 {
            let spans = &self.spans;
            self.hints.retain(|id, _| spans.contains_key(id));
        }
    }
}
