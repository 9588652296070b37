//! Counters whose new series start at zero.
//!
//! Prometheus' `increase()` and `rate()` see an increment only between two samples of a
//! series, so a series that first appears with the value 1 (the first drift alert of an agent,
//! the first use of an undeclared endpoint) looks like no increase at all. A [`FreshCounter`]
//! therefore records 0 for an attribute set it has not reported before and holds the increment
//! until the next collection has shown that zero ([`SelfMetrics::collect`] releases it;
//! [`SelfMetrics::release_pending`] before a final export). Later increments of a known series
//! go straight to the SDK counter.
//!
//! [`SelfMetrics::collect`]: super::SelfMetrics::collect
//! [`SelfMetrics::release_pending`]: super::SelfMetrics::release_pending

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use opentelemetry::{KeyValue, metrics::Counter};

/// Attribute sets remembered per counter; past this, new series are not held back.
const REMEMBERED: usize = 10_000;

#[derive(Debug)]
struct State {
    counter: Counter<u64>,
    seen: HashSet<String>,
    /// Increments of series not collected yet: series key → (sum, attributes).
    pending: HashMap<String, (u64, Vec<KeyValue>)>,
}

/// A monotonic counter that shows every new series at 0 first.
#[derive(Clone, Debug)]
pub struct FreshCounter(Arc<Mutex<State>>);

/// The fresh counters of one provider, released after each collection.
#[derive(Debug, Default)]
pub struct Registry(Mutex<Vec<Weak<Mutex<State>>>>);

impl Registry {
    /// Wraps `counter`, registered for release.
    pub fn wrap(&self, counter: Counter<u64>) -> FreshCounter {
        let state = Arc::new(Mutex::new(State {
            counter,
            seen: HashSet::new(),
            pending: HashMap::new(),
        }));
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&state));
        FreshCounter(state)
    }

    /// Hands every held increment to its counter (the zeros have been collected).
    pub fn release(&self) {
        let states: Vec<_> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for state in states {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, (n, attributes)) in std::mem::take(&mut state.pending) {
                state.counter.add(n, &attributes);
            }
        }
    }
}

impl FreshCounter {
    /// Adds `n` to the series of `attributes`.
    pub fn add(&self, n: u64, attributes: &[KeyValue]) {
        let key = series_key(attributes);
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((sum, _)) = state.pending.get_mut(&key) {
            *sum += n;
            return;
        }
        if state.seen.contains(&key) || state.seen.len() >= REMEMBERED {
            state.counter.add(n, attributes);
            return;
        }
        state.seen.insert(key.clone());
        state.pending.insert(key, (n, attributes.to_vec()));
        state.counter.add(0, attributes);
    }
}

fn series_key(attributes: &[KeyValue]) -> String {
    let mut key = String::new();
    for kv in attributes {
        let _ = write!(key, "{}\u{1f}{}\u{1e}", kv.key, kv.value);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{SelfMetrics, prometheus::render};

    #[test]
    fn a_new_series_shows_zero_before_its_first_increment() {
        let metrics = SelfMetrics::private();
        let c = metrics.fresh(metrics.meter().u64_counter("t.fresh").build());
        let a = [KeyValue::new("k", "a")];
        c.add(1, &a);
        c.add(2, &a);
        assert!(render(&metrics.collect()).contains("t_fresh_total{k=\"a\"} 0"));
        // Released after that collection: the next one sees the increments.
        assert!(render(&metrics.collect()).contains("t_fresh_total{k=\"a\"} 3"));
        c.add(4, &a);
        assert!(render(&metrics.collect()).contains("t_fresh_total{k=\"a\"} 7"));
        // A final export releases before it collects.
        c.add(1, &[KeyValue::new("k", "b")]);
        metrics.release_pending();
        assert!(render(&metrics.collect()).contains("t_fresh_total{k=\"b\"} 1"));
    }
}
