//! The buffer against an ordered map of the same events: every lookup, range and removal
//! agrees, whatever the order events arrive and leave in.

use std::{collections::BTreeMap, sync::Arc};

use runbom_event::{Detail, KernelEvent, ProcessInfo};

use super::{EventBuffer, Key};

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn open(pid: u32, start_ns: u64) -> KernelEvent {
    KernelEvent {
        pid,
        tid: pid,
        cgroup_id: 1,
        start_ns,
        end_ns: start_ns + 10,
        process: Arc::new(ProcessInfo {
            pid,
            ..ProcessInfo::default()
        }),
        detail: Detail::FileOpen {
            path: format!("/f/{start_ns}"),
            flags: 0,
            error: None,
        },
    }
}

#[test]
fn runs_agree_with_an_ordered_map() {
    for seed in 1..=20u64 {
        let mut draw = Draw(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut buffer = EventBuffer::default();
        let mut model: BTreeMap<Key, u64> = BTreeMap::new();
        let mut clock = [1_000u64; 3];
        for step in 0..600u64 {
            match draw.below(10) {
                // Mostly in order, sometimes earlier than what the process already has held.
                0..=5 => {
                    let pid = 1 + draw.below(3) as u32;
                    let c = &mut clock[pid as usize - 1];
                    *c += 1 + draw.below(5);
                    // Now and then far earlier: held beside the run (`FAR`).
                    let start = match draw.below(12) {
                        0..=2 => c.saturating_sub(draw.below(40)),
                        3 => c.saturating_sub(draw.below(2_000)),
                        _ => *c,
                    };
                    let key = buffer.insert(open(pid, start), step, draw.below(2) == 0);
                    assert_eq!(key.1.0, start);
                    model.insert(key, start);
                }
                // The oldest of a process leaves, or one from anywhere in it.
                6..=8 if !model.is_empty() => {
                    let keys: Vec<Key> = model.keys().copied().collect();
                    let key = if draw.below(2) == 0 {
                        let pid = keys[draw.below(keys.len() as u64) as usize].0;
                        *keys.iter().find(|k| k.0 == pid).expect("a key of pid")
                    } else {
                        keys[draw.below(keys.len() as u64) as usize]
                    };
                    let held = buffer.remove(&key).expect("held");
                    assert_eq!(held.event.start_ns, model.remove(&key).expect("modelled"));
                    assert!(buffer.remove(&key).is_none(), "removed twice");
                }
                _ => buffer.compact(),
            }
            assert_eq!(buffer.len(), model.len());
            for pid in 1..=3u32 {
                let (a, b) = (draw.below(3_000), draw.below(3_000));
                let (lo, hi) = (a.min(b), a.max(b));
                let want: Vec<Key> = model
                    .range((pid, (lo, 0))..=(pid, (hi, u64::MAX)))
                    .map(|(k, _)| *k)
                    .collect();
                assert_eq!(
                    buffer.in_range(pid, lo, hi),
                    want,
                    "seed {seed} step {step}"
                );
                let all: Vec<Key> = model
                    .range((pid, (0, 0))..=(pid, (u64::MAX, u64::MAX)))
                    .map(|(k, _)| *k)
                    .collect();
                assert_eq!(buffer.of_pid(pid), all);
                assert_eq!(buffer.holds(pid), !all.is_empty());
                for k in all {
                    assert_eq!(buffer.get(&k).map(|h| h.event.start_ns), Some(k.1.0));
                }
            }
        }
        while let Some(ev) = buffer.evict_oldest(|_| false) {
            let key = *model
                .iter()
                .find(|(k, s)| k.0 == ev.pid && **s == ev.start_ns)
                .expect("evicted a held event")
                .0;
            model.remove(&key);
        }
        assert!(model.is_empty() && buffer.is_empty() && buffer.bytes() == 0);
    }
}

/// A flood of strangers at the cap: each event evicts the oldest, and the queues keep no
/// entries of evicted events at their fronts (they stay as long as what is held).
#[test]
fn evicting_at_the_cap_keeps_the_queues_as_long_as_the_buffer() {
    let mut buffer = EventBuffer::default();
    for n in 0..10_000u64 {
        if buffer.len() == 100 {
            let ev = buffer.evict_oldest(|_| false).expect("held");
            assert_eq!(ev.start_ns, n - 100, "the oldest leaves first");
        }
        buffer.insert(open(7, n), n, true);
        assert!(buffer.young.len() <= 100 && buffer.strangers.len() <= 100);
    }
    assert_eq!(buffer.of_pid(7).len(), 100);
}

/// Events arriving far out of order (opens that blocked, released together) are held beside
/// the run rather than moved into its middle, and found, ranged and removed in order with it.
#[test]
fn far_late_arrivals_are_held_beside_the_run() {
    let mut buffer = EventBuffer::default();
    for n in 0..1_000u64 {
        buffer.insert(open(9, 10 * n + 5), n, false);
    }
    // 100 late ones, each between two held events of the run's middle.
    for n in 0..100u64 {
        buffer.insert(open(9, 4_000 + 10 * n), 1_000 + n, false);
    }
    let run = &buffer.by_pid[&9];
    assert_eq!(
        run.slots.len(),
        1_000,
        "no late arrival was moved into the run"
    );
    assert_eq!(run.late.len(), 100);
    let keys: Vec<u64> = buffer
        .in_range(9, 3_990, 5_020)
        .iter()
        .map(|k| k.1.0)
        .collect();
    let want: Vec<u64> = (3_990..=5_020)
        .filter(|t| t % 10 == 5 || (4_000..5_000).contains(t) && t % 10 == 0)
        .collect();
    assert_eq!(keys, want);
    for key in buffer.of_pid(9) {
        assert!(buffer.remove(&key).is_some());
    }
    assert!(buffer.is_empty() && !buffer.holds(9));
}
