//! Kernel events waiting for their span: per process, ordered by time (so that a new span finds
//! the events inside it by range), with their size accounted so that the buffer never holds
//! more than its caps.
//!
//! A process's events are a run ordered by (start time, arrival): almost every event starts
//! after those of its process already held, so it is appended, and events mostly leave from
//! the front (the oldest, after `wait` or when evicted), so a run is a ring that holds its
//! events inline and reuses its room: no allocation per event. An event arriving out of order
//! is inserted where it belongs (near the end, as a rule), or, when that is far from both ends
//! of the run, held beside it in an ordered map ([`FAR`]); one leaving from the middle (placed
//! by a span) leaves a hole, skipped by lookups, until holes are most of the run. The queues and
//! runs give back what they grew to once a burst is gone ([`EventBuffer::compact`]).

use std::collections::{BTreeMap, VecDeque};

use runbom_event::{Detail, KernelEvent};

use crate::IdMap;

/// Where a held event is: its process and its key there (start time, arrival sequence).
pub type Key = (u32, (u64, u64));

pub struct Held {
    pub event: KernelEvent,
    pub arrived: u64,
    bytes: usize,
}

/// Bytes one held event accounts for: the record, its strings, and the index entries.
#[must_use]
pub fn event_bytes(ev: &KernelEvent) -> usize {
    const INDEX: usize = 96;
    let detail = match &ev.detail {
        Detail::Exec { path, .. } | Detail::FileOpen { path, .. } => path.capacity(),
        Detail::DnsQuery { name, .. } => name.capacity(),
        Detail::HttpRequest(h) => {
            std::mem::size_of_val(h.as_ref())
                + h.method.capacity()
                + h.target.capacity()
                + h.host.as_ref().map_or(0, String::capacity)
                + h.user_agent.as_ref().map_or(0, String::capacity)
                + h.model.as_ref().map_or(0, String::capacity)
        }
        Detail::Mcp(m) => {
            std::mem::size_of_val(m.as_ref())
                + m.method.capacity()
                + [&m.target, &m.request_id, &m.resource_uri, &m.session_id]
                    .iter()
                    .chain([&m.protocol_version, &m.arguments, &m.server_name].iter())
                    .chain([&m.server_command_line].iter())
                    .map(|s| s.as_ref().map_or(0, String::capacity))
                    .sum::<usize>()
                + m.tools.iter().map(String::capacity).sum::<usize>()
        }
        Detail::Exit { .. } | Detail::Connect { .. } | Detail::Accept { .. } => 0,
    };
    std::mem::size_of::<Held>() + detail + INDEX
}

/// An event that would be inserted further than this from both ends of its process's run is
/// held beside the run instead ([`Run::late`]): no arrival moves more than this many slots. A
/// process whose events arrive far out of order (opens that blocked, released together) would
/// otherwise make each one move half its run.
const FAR: usize = 32;

/// A held event's place in its process's run; `held` is `None` once it left (a hole).
struct Slot {
    key: (u64, u64),
    held: Option<Held>,
}

/// The events of one process, ordered by key, with the holes left by events that left from
/// inside the run.
#[derive(Default)]
struct Run {
    slots: VecDeque<Slot>,
    /// Events held in `slots` (not the holes).
    live: usize,
    /// Events that arrived too far out of order for `slots` ([`FAR`]).
    late: BTreeMap<(u64, u64), Held>,
}

impl Run {
    fn insert(&mut self, key: (u64, u64), held: Held) {
        let slot = Slot {
            key,
            held: Some(held),
        };
        if self.slots.back().is_none_or(|last| last.key < key) {
            self.slots.push_back(slot);
        } else {
            let at = self.slots.partition_point(|s| s.key < key);
            if at.min(self.slots.len() - at) > FAR {
                if let Some(held) = slot.held {
                    self.late.insert(key, held);
                }
                return;
            }
            self.slots.insert(at, slot);
        }
        self.live += 1;
    }

    fn is_empty(&self) -> bool {
        self.live == 0 && self.late.is_empty()
    }

    /// Where `key` is. The ends are looked at first: the front is the event leaving first, as a
    /// rule, and a key before it (an event evicted or placed already) cannot be in the run.
    fn position(&self, key: (u64, u64)) -> Option<usize> {
        let (front, back) = (self.slots.front()?, self.slots.back()?);
        if key <= front.key || key >= back.key {
            return if key == front.key {
                Some(0)
            } else {
                (key == back.key).then(|| self.slots.len() - 1)
            };
        }
        self.slots.binary_search_by(|s| s.key.cmp(&key)).ok()
    }

    fn get(&self, key: (u64, u64)) -> Option<&Held> {
        match self.position(key) {
            Some(at) => self.slots[at].held.as_ref(),
            None => self.late.get(&key),
        }
    }

    fn remove(&mut self, key: (u64, u64)) -> Option<Held> {
        let Some(at) = self.position(key) else {
            return self.late.remove(&key);
        };
        let held = self.slots[at].held.take()?;
        self.live -= 1;
        while self.slots.front().is_some_and(|s| s.held.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|s| s.held.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + 16 {
            self.slots.retain(|s| s.held.is_some());
        }
        Some(held)
    }

    /// Keys of the events held that started within `[start, end]`, in order.
    fn range(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let from = self.slots.partition_point(|s| s.key.0 < start);
        let mut keys: Vec<(u64, u64)> = self
            .slots
            .range(from..)
            .take_while(move |s| s.key.0 <= end)
            .filter(|s| s.held.is_some())
            .map(|s| s.key)
            .collect();
        if !self.late.is_empty() {
            keys.extend(
                self.late
                    .range((start, 0)..=(end, u64::MAX))
                    .map(|(k, _)| *k),
            );
            keys.sort_unstable();
        }
        keys
    }

    /// Gives back the room of a run that was longer (after a burst).
    fn compact(&mut self) {
        if self.slots.capacity() > 4 * self.slots.len() + 64 {
            self.slots.shrink_to(2 * self.slots.len() + 16);
        }
    }
}

#[derive(Default)]
pub struct EventBuffer {
    by_pid: IdMap<u32, Run>,
    /// Every event in arrival order, until it has been held for `wait`.
    pub(crate) young: VecDeque<(u64, Key)>,
    /// Events of processes related to a sender, after `wait`, until `window`.
    pub(crate) settled: VecDeque<(u64, Key)>,
    /// Events of processes unrelated to any sender when they arrived: evicted first.
    pub(crate) strangers: VecDeque<(u64, Key)>,
    seq: u64,
    bytes: usize,
    len: usize,
}

impl EventBuffer {
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What `event` would account for if held.
    #[must_use]
    pub fn cost(event: &KernelEvent) -> usize {
        event_bytes(event)
    }

    /// Holds `event`; the caller has made room for it.
    pub fn insert(&mut self, event: KernelEvent, arrived: u64, stranger: bool) -> Key {
        self.seq += 1;
        let key = (event.pid, (event.start_ns, self.seq));
        let bytes = event_bytes(&event);
        self.bytes += bytes;
        self.len += 1;
        self.by_pid.entry(event.pid).or_default().insert(
            key.1,
            Held {
                event,
                arrived,
                bytes,
            },
        );
        self.young.push_back((arrived, key));
        if stranger {
            self.strangers.push_back((arrived, key));
        }
        key
    }

    #[must_use]
    pub fn get(&self, key: &Key) -> Option<&Held> {
        self.by_pid.get(&key.0)?.get(key.1)
    }

    pub fn remove(&mut self, key: &Key) -> Option<Held> {
        let run = self.by_pid.get_mut(&key.0)?;
        let held = run.remove(key.1)?;
        if run.is_empty() {
            self.by_pid.remove(&key.0);
        }
        self.bytes -= held.bytes;
        self.len -= 1;
        Some(held)
    }

    /// Keys of the events of `pid` that started within `[start, end]`.
    #[must_use]
    pub fn in_range(&self, pid: u32, start: u64, end: u64) -> Vec<Key> {
        self.by_pid.get(&pid).map_or_else(Vec::new, |run| {
            run.range(start, end)
                .into_iter()
                .map(|k| (pid, k))
                .collect()
        })
    }

    /// Whether events of `pid` are held.
    #[must_use]
    pub fn holds(&self, pid: u32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// Keys of every held event of `pid`.
    #[must_use]
    pub fn of_pid(&self, pid: u32) -> Vec<Key> {
        self.in_range(pid, 0, u64::MAX)
    }

    /// Takes the oldest held event, strangers' first; `related(pid)` tells a stranger that
    /// has since become a sender (or the child of one), which is then not evicted first.
    pub fn evict_oldest(&mut self, related: impl Fn(u32) -> bool) -> Option<KernelEvent> {
        for queue in [0, 1, 2] {
            loop {
                let q = match queue {
                    0 => &mut self.strangers,
                    1 => &mut self.settled,
                    _ => &mut self.young,
                };
                let Some((_, key)) = q.pop_front() else { break };
                if queue == 0 && related(key.0) {
                    continue; // still queued as young or settled
                }
                if let Some(held) = self.remove(&key) {
                    self.forget_left_fronts();
                    return Some(held.event);
                }
            }
        }
        None
    }

    /// Pops the entries at the queues' fronts whose events have left already. Under a flood of
    /// strangers every event is evicted before its `wait` is over, so the oldest entry of every
    /// queue is soon one of an evicted event: forgetting them here keeps the queues as long as
    /// what is held, instead of [`EventBuffer::compact`] searching all of them for such entries.
    fn forget_left_fronts(&mut self) {
        let Self {
            by_pid,
            young,
            settled,
            strangers,
            ..
        } = self;
        for q in [young, settled, strangers] {
            while let Some((_, k)) = q.front() {
                if by_pid.get(&k.0).is_some_and(|r| r.get(k.1).is_some()) {
                    break;
                }
                q.pop_front();
            }
        }
    }

    /// Forgets queue entries of events that left, once the queues are mostly such entries, and
    /// gives back a queue's or a run's room once it is mostly unused (after a burst).
    pub fn compact(&mut self) {
        let live = self.len;
        let by_pid = &self.by_pid;
        for q in [&mut self.young, &mut self.settled, &mut self.strangers] {
            if q.len() > 2 * live + 1024 {
                q.retain(|(_, k)| by_pid.get(&k.0).is_some_and(|r| r.get(k.1).is_some()));
            }
            if q.capacity() > 4 * q.len() + 1024 {
                q.shrink_to(2 * q.len() + 256);
            }
        }
        self.by_pid.values_mut().for_each(Run::compact);
        if self.by_pid.capacity() > 4 * self.by_pid.len() + 64 {
            self.by_pid.shrink_to(2 * self.by_pid.len() + 16);
        }
    }
}

#[cfg(test)]
#[path = "buffer_tests.rs"]
mod tests;
