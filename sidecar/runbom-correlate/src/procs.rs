//! What the correlation knows of processes and reads from span attributes: the process facts
//! its events gave ([`Proc`]), whether a process belongs to an instrumented one
//! ([`related`], [`sender_ancestor`]), and attribute readers.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    resource::v1::Resource,
};

use crate::{
    IdMap,
    spans::{SpanId, SpanIndex, TraceId},
};

/// What the correlation knows of a process from its events.
#[derive(Default)]
pub(crate) struct Proc {
    pub ppid: u32,
    pub fork_tid: u32,
    /// The fork, else the exec, else the first event seen (Unix ns).
    pub anchor_ns: u64,
    pub anchor_from_fork: bool,
    pub last_seen: u64,
    /// Where the ancestry method put this process, once resolved.
    pub ancestry: Option<(SpanId, TraceId, Arc<Resource>)>,
}

/// Whether `pid` sends spans or descends from a process that does.
pub(crate) fn related(index: &SpanIndex, procs: &IdMap<u32, Proc>, pid: u32) -> bool {
    index.has_pid(pid) || sender_ancestor(index, procs, pid).is_some()
}

/// The nearest ancestor of `pid` that sends spans, and its child on the way down to `pid`.
pub(crate) fn sender_ancestor(
    index: &SpanIndex,
    procs: &IdMap<u32, Proc>,
    pid: u32,
) -> Option<(u32, u32)> {
    let mut child = pid;
    for _ in 0..32 {
        let parent = procs.get(&child)?.ppid;
        if parent == 0 || parent == child {
            return None;
        }
        if index.has_pid(parent) {
            return Some((parent, child));
        }
        child = parent;
    }
    None
}

/// The value of attribute `key`.
pub(crate) fn attr_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// An integer attribute (also accepted as a decimal string).
pub(crate) fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr_value(attrs, key)? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}
