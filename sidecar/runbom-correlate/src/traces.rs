//! Application spans on their way through: held while their trace may still be stitched,
//! rewritten when it is, and regrouped by Resource and scope when released.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link},
};

use runbom_event::semconv::{RUNBOM_STITCHED_ORIGINAL_SPAN_ID, RUNBOM_STITCHED_ORIGINAL_TRACE_ID};

use crate::{
    IdMap,
    spans::{SpanId, TraceId},
};

/// The Resource (and schema) a span came with.
#[derive(Debug)]
pub struct ResourceCtx {
    pub resource: Option<Resource>,
    pub schema_url: String,
}

/// The scope (and schema) a span came with.
#[derive(Debug)]
pub struct ScopeCtx {
    pub scope: Option<InstrumentationScope>,
    pub schema_url: String,
}

pub struct HeldSpan {
    pub res: Arc<ResourceCtx>,
    pub scope: Arc<ScopeCtx>,
    pub span: Span,
}

/// What became of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Released with its own ids.
    Kept,
    /// Adopted: `root` becomes a child of `parent`, in trace `into` (itself perhaps stitched).
    Stitched {
        into: TraceId,
        root: SpanId,
        parent: SpanId,
    },
}

#[derive(Default)]
pub struct HeldTrace {
    pub spans: Vec<HeldSpan>,
    pub first_arrival: u64,
    /// The root span and when it arrived.
    pub root: Option<(SpanId, u64)>,
}

#[derive(Default)]
pub struct Traces {
    pub held: IdMap<TraceId, HeldTrace>,
    pub decisions: IdMap<TraceId, Decision>,
    decided_order: VecDeque<(u64, TraceId)>,
}

impl Traces {
    /// The trace `t` ends up in: `None` while undecided.
    #[must_use]
    pub fn final_trace(&self, mut t: TraceId) -> Option<TraceId> {
        for _ in 0..16 {
            match self.decisions.get(&t) {
                Some(Decision::Stitched { into, .. }) => t = *into,
                None if self.held.contains_key(&t) => return None,
                // Kept, or never held (passed on at once, or forgotten after `window`).
                Some(Decision::Kept) | None => return Some(t),
            }
        }
        Some(t)
    }

    /// The trace `t` goes into as far as decided now (following stitches whose target is
    /// itself undecided).
    #[must_use]
    pub fn current_trace(&self, mut t: TraceId) -> TraceId {
        for _ in 0..16 {
            match self.decisions.get(&t) {
                Some(Decision::Stitched { into, .. }) => t = *into,
                _ => return t,
            }
        }
        t
    }

    pub fn decide(&mut self, t: TraceId, d: Decision, now: u64) {
        self.decisions.insert(t, d);
        self.decided_order.push_back((now, t));
    }

    pub fn prune(&mut self, cutoff: u64) {
        while let Some(&(at, t)) = self.decided_order.front() {
            if at >= cutoff {
                break;
            }
            self.decided_order.pop_front();
            self.decisions.remove(&t);
        }
    }

    /// Spans of the held traces now decided and whose final trace is known, rewritten.
    /// Returns them and how many moved to another trace.
    pub fn release_ready(&mut self) -> (Vec<HeldSpan>, u64) {
        let ready: Vec<(TraceId, TraceId)> = self
            .held
            .keys()
            .filter(|t| self.decisions.contains_key(*t))
            .filter_map(|t| Some((*t, self.final_trace(*t)?)))
            .collect();
        let mut out = Vec::new();
        let mut moved = 0;
        for (t, fin) in ready {
            let Some(held) = self.held.remove(&t) else {
                continue;
            };
            let decision = self.decisions.get(&t).copied();
            for mut h in held.spans {
                moved += u64::from(Self::rewrite(&mut h.span, fin, decision));
                out.push(h);
            }
        }
        (out, moved)
    }

    /// Gives `span` its final trace id; a stitched root also its new parent, attributes and
    /// link. Returns whether it moved.
    pub fn rewrite(span: &mut Span, fin: TraceId, decision: Option<Decision>) -> bool {
        if span.trace_id.as_slice() == fin.as_slice() {
            return false;
        }
        let original_trace = std::mem::replace(&mut span.trace_id, fin.to_vec());
        if let Some(Decision::Stitched { root, parent, .. }) = decision
            && span.span_id.as_slice() == root.as_slice()
        {
            span.parent_span_id = parent.to_vec();
            span.attributes.push(kv(
                RUNBOM_STITCHED_ORIGINAL_TRACE_ID,
                hex::encode(&original_trace),
            ));
            span.attributes.push(kv(
                RUNBOM_STITCHED_ORIGINAL_SPAN_ID,
                hex::encode(&span.span_id),
            ));
            span.links.push(Link {
                trace_id: original_trace,
                span_id: span.span_id.clone(),
                ..Default::default()
            });
        }
        true
    }
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
    }
}

/// Regroups spans by the Resource and scope they came with.
#[must_use]
pub fn regroup(spans: Vec<HeldSpan>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut at: HashMap<(*const ResourceCtx, *const ScopeCtx), (usize, usize)> = HashMap::new();
    let mut res_at: HashMap<*const ResourceCtx, usize> = HashMap::new();
    for h in spans {
        let key = (Arc::as_ptr(&h.res), Arc::as_ptr(&h.scope));
        let (ri, si) = *at.entry(key).or_insert_with(|| {
            let ri = *res_at.entry(key.0).or_insert_with(|| {
                out.push(ResourceSpans {
                    resource: h.res.resource.clone(),
                    scope_spans: Vec::new(),
                    schema_url: h.res.schema_url.clone(),
                });
                out.len() - 1
            });
            out[ri].scope_spans.push(ScopeSpans {
                scope: h.scope.scope.clone(),
                spans: Vec::new(),
                schema_url: h.scope.schema_url.clone(),
            });
            (ri, out[ri].scope_spans.len() - 1)
        });
        out[ri].scope_spans[si].spans.push(h.span);
    }
    out
}
