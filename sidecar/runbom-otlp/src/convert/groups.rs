//! Kernel events grouped as a request holds them: one resource group per application (events
//! the correlation placed) or per process run, groups in the order their first event comes.

use std::{collections::HashMap, sync::Arc};

use opentelemetry_proto::tonic::resource::v1::Resource;
use runbom_event::{KernelEvent, ProcessInfo};

use super::Placement;

/// The indices of `events` grouped by application (placed) or process run (unplaced), groups
/// in first-seen order.
pub(crate) fn kernel_groups(
    events: &[KernelEvent],
    placements: &[Option<Placement>],
) -> Vec<Vec<usize>> {
    first_seen_groups(events.len(), |i| {
        match placements.get(i).and_then(Option::as_ref) {
            Some(p) => Group::App(Arc::as_ptr(&p.resource)),
            None => Group::Process(Arc::as_ptr(&events[i].process)),
        }
    })
}

/// What events are grouped by: the application's Resource or the process run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Group {
    App(*const Resource),
    Process(*const ProcessInfo),
}

/// The indices `0..n` grouped by `key`, groups in the order their first index comes, indices
/// in order within a group. Keys are looked up once per event: hashed with foldhash's fast
/// hasher (seeded per process), not `SipHash`.
fn first_seen_groups<K: Eq + std::hash::Hash>(
    n: usize,
    key: impl Fn(usize) -> K,
) -> Vec<Vec<usize>> {
    let mut index: HashMap<K, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let g = *index.entry(key(i)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}
