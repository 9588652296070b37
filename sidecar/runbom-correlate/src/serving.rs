//! MCP calls a process served (architecture, "MCP"): an `mcp.server` event is also a span of
//! the serving process once it is placed, so that what the process did while serving the call
//! (its file opens, connects, execs) finds that span as its innermost; until it is placed,
//! those events wait for it rather than take a weaker place.

use runbom_event::{Detail, KernelEvent, McpSide};

use super::{Correlator, Placed};
use crate::{
    buffer::Key,
    spans::{SpanId, SpanRec},
};

/// An MCP call a process served: what it does in that time belongs under the call's
/// `mcp.server` span, once that span is placed (architecture, "MCP").
pub(super) struct Serving {
    pub start: u64,
    pub end: u64,
    pub span: SpanId,
    /// The `mcp.server` event while it waits in the buffer.
    pub held: Option<Key>,
    /// Placed, and in the index as a span of the serving process.
    pub registered: bool,
}

impl Correlator {
    /// Notes an `mcp.server` event's call (true when `ev` is one).
    pub(super) fn note_serving(&mut self, ev: &KernelEvent) -> bool {
        let Detail::Mcp(m) = &ev.detail else {
            return false;
        };
        if m.side != McpSide::Server {
            return false;
        }
        self.serving.entry(ev.pid).or_default().push(Serving {
            start: ev.start_ns,
            end: ev.end_ns,
            span: m.span_id,
            held: None,
            registered: false,
        });
        true
    }

    /// Forgets calls that ended before `cutoff`.
    pub(super) fn prune_serving(&mut self, cutoff: u64) {
        self.serving.retain(|_, v| {
            v.retain(|s| s.end >= cutoff);
            !v.is_empty()
        });
    }

    /// Shutdown: what still waits for a call's span that will not be placed now goes as it can.
    pub(super) fn stop_awaiting_serving(&mut self) {
        for s in self.serving.values_mut().flatten() {
            s.held = None;
        }
    }

    /// Whether `ev` happened while its process served an MCP call whose `mcp.server` span is
    /// not placed yet but may still be: it waits for that span rather than take a weaker place.
    pub(super) fn awaits_serving(&self, ev: &KernelEvent) -> bool {
        if matches!(&ev.detail, Detail::Mcp(m) if m.side == McpSide::Server) {
            return false;
        }
        self.serving.get(&ev.pid).is_some_and(|v| {
            v.iter().any(|s| {
                !s.registered
                    && s.start <= ev.start_ns
                    && ev.start_ns <= s.end
                    && s.held.is_some_and(|k| self.buffer.get(&k).is_some())
            })
        })
    }

    /// The placed call `ev`'s process was serving when `ev` happened: as sure as it gets for a
    /// process that sends no spans of its own, so taken at once (no `wait`).
    pub(super) fn serving_match(&self, ev: &KernelEvent) -> Option<SpanId> {
        if matches!(&ev.detail, Detail::Mcp(m) if m.side == McpSide::Server) {
            return None;
        }
        self.serving
            .get(&ev.pid)?
            .iter()
            .filter(|s| s.registered && s.start <= ev.start_ns && ev.start_ns <= s.end)
            .max_by_key(|s| s.start)
            .map(|s| s.span)
    }

    /// An `mcp.server` event was placed: its span joins the index as a span of the serving
    /// process (under the span the call was placed under), so that the process's events in
    /// that time find it as their innermost span.
    pub(super) fn register_serving(&mut self, placed: &Placed) {
        let Detail::Mcp(m) = &placed.event.detail else {
            return;
        };
        if m.side != McpSide::Server {
            return;
        }
        let ev = &placed.event;
        self.index.insert(SpanRec {
            trace: placed.trace,
            id: m.span_id,
            parent: Some(placed.span),
            pid: ev.pid,
            start: ev.start_ns,
            end: ev.end_ns.max(ev.start_ns),
            tid: None,
            resource: placed.resource.clone(),
            arrived: ev.end_ns,
        });
        if let Some(s) = self
            .serving
            .get_mut(&ev.pid)
            .and_then(|v| v.iter_mut().find(|s| s.span == m.span_id))
        {
            s.registered = true;
        }
        self.new_serving.push((ev.pid, ev.start_ns, ev.end_ns));
    }

    /// Places the held events of processes whose served calls were placed since the last look.
    pub(super) fn place_served(&mut self, now: u64) {
        while let Some((pid, start, end)) = self.new_serving.pop() {
            for key in self.buffer.in_range(pid, start, end) {
                self.try_place(key, now);
            }
        }
    }
}
