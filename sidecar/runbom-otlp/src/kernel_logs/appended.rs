//! Attributes a processor appends to kernel log records after the event's own (the `aibom`
//! processor's verdicts), kept beside the events: each distinct list once, and each event's
//! index into the lists. Most records of a batch share one or two lists (a BOM's serial
//! number, a shadow-AI verdict), so they are built once per batch, not once per record.

use opentelemetry_proto::tonic::common::v1::KeyValue;

/// The lists, and which one each event's record ends with.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Appended {
    lists: Vec<Vec<KeyValue>>,
    /// `at[i]`: the list `events[i]`'s record ends with; empty when no record has one.
    at: Vec<Option<u32>>,
}

impl Appended {
    /// `at[i]` indexes `lists` (an index past its end: nothing appended).
    pub(super) fn new(lists: Vec<Vec<KeyValue>>, mut at: Vec<Option<u32>>, events: usize) -> Self {
        let n = lists.len();
        for a in &mut at {
            *a = a.filter(|a| (*a as usize) < n);
        }
        super::fit(&mut at, events);
        Self { lists, at }
    }

    /// Whether no record has any.
    pub(super) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// What `events[i]`'s record ends with.
    pub(super) fn of(&self, i: usize) -> &[KeyValue] {
        match self.at.get(i).copied().flatten() {
            Some(l) => &self.lists[l as usize],
            None => &[],
        }
    }

    /// `other`'s (for `other_len` events) after these (for `len`).
    pub(super) fn append(&mut self, len: usize, other: Appended, other_len: usize) {
        let offset = u32::try_from(self.lists.len()).unwrap_or(u32::MAX);
        let at = other
            .at
            .into_iter()
            .map(|a| a.map(|a| a.saturating_add(offset)))
            .collect();
        self.lists.extend(other.lists);
        super::append_column(&mut self.at, len, at, other_len);
    }

    /// The indices from `at` on, with the lists (`self` keeps the first `at`).
    pub(super) fn split_off(&mut self, at: usize) -> Appended {
        Appended {
            lists: self.lists.clone(),
            at: super::split_column(&mut self.at, at),
        }
    }
}
