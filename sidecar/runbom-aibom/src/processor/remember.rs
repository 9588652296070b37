//! What the processor remembers, bounded: alerts already given (by digest) and the traces it
//! released (so that late spans are judged in their trace's context).

use std::hash::{BuildHasherDefault, Hasher};

use super::*;

/// Findings already alerted (trace, agent, tool span, flags, subject), bounded. Each is kept
/// as a 64-bit digest, one keyed hash (SipHash-1-3 with a random 128-bit key per process):
/// small, and holds nothing of the spans. Keyed, so a client cannot make two findings share a
/// digest on purpose to have one's alert suppressed. By accident, a new finding shares the
/// digest of one of at most 2 × [`ALERTED`] = 200 000 remembered with odds of
/// 200 000 / 2⁶⁴ ≈ 1.1 × 10⁻¹⁴: at 200 000 new alerts a second, one alert suppressed in about
/// 4.6 × 10⁸ seconds (15 years). Two generations of at most [`ALERTED`] digests each: when the
/// newer is full, the older is forgotten at once and the newer takes its place, so the last
/// [`ALERTED`] findings are always remembered and no digest is ever removed one by one (which,
/// in a full set, cost a cache miss per alert).
#[derive(Default)]
pub(super) struct Dedup {
    new: HashSet<u64, BuildHasherDefault<Digest>>,
    old: HashSet<u64, BuildHasherDefault<Digest>>,
    key: RandomState,
}

/// The hash of a digest in [`Dedup`]: the digest itself. It is already the output of a keyed
/// hash (a random key per process), so hashing it again would only cost time.
#[derive(Default)]
pub(super) struct Digest(u64);

impl Hasher for Digest {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only digests are hashed here (`write_u64`); any other input is folded in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, digest: u64) {
        self.0 = digest;
    }
}

impl Dedup {
    /// Whether `finding` is new (and remembers it).
    pub(super) fn remember(&mut self, finding: &impl Hash) -> bool {
        let digest = self.key.hash_one(finding);
        if self.old.contains(&digest) || !self.new.insert(digest) {
            return false;
        }
        if self.new.len() >= ALERTED {
            // The older generation's table, emptied, takes the newer ones (no table grown
            // from empty and rehashed on the way to `ALERTED` again).
            std::mem::swap(&mut self.old, &mut self.new);
            self.new.clear();
        }
        true
    }
}

/// What is remembered of released traces, oldest forgotten first past `capacity` spans. Agent
/// indices refer to the BOM in force: a new BOM starts afresh.
pub(super) struct Remembered {
    traces: TraceMap<Earlier>,
    order: VecDeque<TraceKey>,
    pub(super) spans: usize,
    capacity: usize,
    bom: usize,
}

impl Remembered {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            traces: TraceMap::default(),
            order: VecDeque::new(),
            spans: 0,
            capacity,
            bom: 0,
        }
    }

    /// Forgets everything when the BOM in force is another one. By address: the pipeline
    /// task keeps the old BOM alive until the new one is in its hands, so two BOMs in
    /// succession never share one.
    pub(super) fn check_bom(&mut self, bom: &DeclaredBom) {
        let id = std::ptr::from_ref(bom) as usize;
        if id != self.bom {
            self.traces.clear();
            self.order.clear();
            self.spans = 0;
            self.bom = id;
        }
    }

    pub(super) fn get(&self, k: &TraceKey) -> Option<&Earlier> {
        self.traces.get(k)
    }

    pub(super) fn remember(&mut self, k: TraceKey, items: &[View<'_>], judged: &mut Judged<'_>) {
        let e = self.traces.entry(k).or_insert_with(|| {
            self.order.push_back(k);
            Earlier::default()
        });
        let before = e.len();
        e.remember(items, judged);
        self.spans += e.len() - before;
        while self.spans > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(e) = self.traces.remove(&old) {
                self.spans -= e.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_alerted_findings_are_remembered_without_removing_one_by_one() {
        let mut d = Dedup::default();
        assert!(d.remember(&"first"));
        assert!(!d.remember(&"first"), "a finding is alerted once");
        for i in 1..ALERTED {
            assert!(d.remember(&i));
        }
        // `first` and the next ALERTED - 1: the newer generation is full, the older forgotten.
        assert!(!d.remember(&"first"), "still among the last {ALERTED}");
        for i in ALERTED..2 * ALERTED {
            assert!(d.remember(&i));
        }
        assert!(d.remember(&"first"), "forgotten after 2 x {ALERTED} others");
        assert!(d.new.len() + d.old.len() <= 2 * ALERTED);
    }
}
