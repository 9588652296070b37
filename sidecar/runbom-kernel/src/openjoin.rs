//! `file.open` arrives from the kernel as two records per thread: the open (path, flags, entry
//! time), written by the syscall's entry, and a 24-byte result (fd or errno, exit time), written
//! by its exit. [`OpenJoin`] joins them before anything is enriched, so everything downstream
//! sees one `file.open` event per open, as if the kernel had written one record.
//!
//! Records of one thread reach the ring in the order the thread wrote them, and nothing else of
//! that thread is written between an open's entry and its exit; records of different threads
//! interleave freely. So an open waits (per thread) for the next record of its thread: its
//! result joins it; anything else (another open, any other record) means the result was lost
//! (the kernel's per-thread slot was taken by a thread sharing it, or the ring was full at the
//! exit). Such an open is still emitted, with [`OPEN_RESULT_UNKNOWN`] as its result, and
//! counted; so is an open still waiting after [`OPEN_RESULT_WAIT`] (a thread that never
//! returned), or when more than [`PENDING_MAX`] wait. A result with no open waiting (its open was
//! already emitted as unknown) is counted and dropped: it has nothing to report on its own.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use runbom_common::{
    FileOpenEvent, FileOpenResult, OPEN_RESULT_UNKNOWN,
    decode::{Event, Record},
};

/// How long an open waits for its result before it is emitted without it. An open that blocks
/// longer (a FIFO with no writer) is reported with its result unknown.
pub const OPEN_RESULT_WAIT: Duration = Duration::from_secs(10);
/// Most opens waiting at once (threads inside an open syscall); beyond it the oldest is emitted
/// without its result.
pub const PENDING_MAX: usize = 16384;

/// Opens waiting for their result, by thread id: the latest in `last` until another record
/// follows it (nearly always its result, which then joins it without a map, and the joined open
/// is handed on from there, not copied), the others in `pending`. A thread has at most one open
/// waiting in the two.
#[derive(Debug, Default)]
pub struct OpenJoin {
    /// Always an [`Event::FileOpen`].
    last: Option<(Event<'static>, Instant)>,
    /// Hashed with foldhash (seeded per process), not `SipHash`: an open that waits here is
    /// inserted and removed again.
    pending: HashMap<u32, (FileOpenEvent, Instant), foldhash::fast::RandomState>,
    /// Opens emitted without their result.
    pub results_lost: u64,
    /// Results that found no open waiting (dropped).
    pub results_unmatched: u64,
}

impl OpenJoin {
    /// Takes one record in ring order; calls `emit` with every event that is complete: the
    /// record itself when it is neither an open nor its result, a joined open, and before
    /// either an open of the same thread that will get no result.
    pub fn push<'a>(&mut self, record: Record<'a>, now: Instant, mut emit: impl FnMut(&Event<'a>)) {
        match record {
            Record::OpenResult(r) => self.result(&r, &mut emit),
            Record::Event(Event::FileOpen(open)) => {
                if let Some((earlier, _)) = self.take(open.header.tid) {
                    emit(&self.unknown(earlier));
                }
                self.spill();
                self.last = Some((Event::FileOpen(open), now));
                if self.pending.len() + 1 > PENDING_MAX {
                    self.evict_oldest(&mut emit);
                }
            }
            Record::Event(event) => {
                if let Some((earlier, _)) = self.take(event.header().tid) {
                    emit(&self.unknown(earlier));
                }
                emit(&event);
            }
        }
    }

    /// True while opens wait for their result.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.last.is_some() || !self.pending.is_empty()
    }

    /// The open waiting for thread `tid`'s result, taken out.
    fn take(&mut self, tid: u32) -> Option<(FileOpenEvent, Instant)> {
        match &self.last {
            Some((Event::FileOpen(open), since)) if open.header.tid == tid => {
                let taken = (*open, *since);
                self.last = None;
                Some(taken)
            }
            _ if self.pending.is_empty() => None,
            _ => self.pending.remove(&tid),
        }
    }

    /// Moves the latest open into the map (no other open of its thread is there).
    fn spill(&mut self) {
        if let Some((Event::FileOpen(open), since)) = self.last.take() {
            self.pending.insert(open.header.tid, (open, since));
        }
    }

    /// Emits the opens that waited longer than `wait` without their result.
    pub fn expire(&mut self, now: Instant, wait: Duration, mut emit: impl FnMut(&Event<'static>)) {
        self.spill();
        if self.pending.is_empty() {
            return;
        }
        let mut old: Vec<(u32, FileOpenEvent)> = self
            .pending
            .iter()
            .filter(|(_, (_, since))| now.saturating_duration_since(*since) >= wait)
            .map(|(tid, (open, _))| (*tid, *open))
            .collect();
        old.sort_by_key(|(_, open)| open.header.time_ns);
        for (tid, open) in old {
            self.pending.remove(&tid);
            emit(&self.unknown(open));
        }
    }

    /// Emits every waiting open without its result (shutdown).
    pub fn flush(&mut self, emit: impl FnMut(&Event<'static>)) {
        self.expire(Instant::now(), Duration::ZERO, emit);
    }

    fn result<'a>(&mut self, r: &FileOpenResult, emit: &mut impl FnMut(&Event<'a>)) {
        // Nearly always the latest open: joined where it waits.
        if let Some((event, _)) = &mut self.last
            && let Event::FileOpen(open) = event
            && open.header.tid == r.tid
        {
            open.ret = r.ret;
            open.end_ns = r.end_ns;
            emit(event);
            self.last = None;
            return;
        }
        let Some((mut open, _)) = self.take(r.tid) else {
            self.results_unmatched += 1;
            return;
        };
        open.ret = r.ret;
        open.end_ns = r.end_ns;
        emit(&Event::FileOpen(open));
    }

    fn unknown(&mut self, mut open: FileOpenEvent) -> Event<'static> {
        self.results_lost += 1;
        open.ret = OPEN_RESULT_UNKNOWN;
        open.end_ns = 0;
        Event::FileOpen(open)
    }

    fn evict_oldest<'a>(&mut self, emit: &mut impl FnMut(&Event<'a>)) {
        self.spill();
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, (open, _))| open.header.time_ns)
            .map(|(tid, _)| *tid);
        if let Some((open, _)) = oldest.and_then(|tid| self.pending.remove(&tid)) {
            emit(&self.unknown(open));
        }
    }
}

#[cfg(test)]
#[path = "openjoin_tests.rs"]
mod tests;
