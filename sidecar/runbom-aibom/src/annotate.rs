//! Verdicts kept beside a request instead of written onto its spans: the distinct verdicts of
//! the request, each built once as its `aibom.*` attributes ([`AttributeSet`], encoded once),
//! and each span's. runbom's exporters append a set's bytes to its spans' own attributes
//! ([`AnnotatedTraces`]); what reads spans after the processor gets them built. Either way the
//! request is the one [`crate::verdict::put`] on every span makes.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span,
};
use runbom_otlp::{AnnotatedTraces, AttributeSet};

use crate::{
    bom::Kind,
    verdict::{self, Verdict, put},
    view::View,
};

/// What a set of attributes was made of: a verdict's written parts (not its subject) and the
/// process's identities.
#[derive(Debug)]
struct Key {
    component: Option<(String, Kind)>,
    declared: Option<bool>,
    agent: Option<String>,
    drift: Vec<&'static str>,
    reason: Option<String>,
    identities: Vec<String>,
}

impl Key {
    fn of(v: &Verdict<'_>, identities: &[String]) -> Self {
        Self {
            component: v.component.map(|(r, k)| (r.to_owned(), k)),
            declared: v.declared,
            agent: v.agent.map(str::to_owned),
            drift: v.drift.clone(),
            reason: v.reason.clone().filter(|_| !v.drift.is_empty()),
            identities: identities.to_vec(),
        }
    }

    /// Whether `v` with `identities` writes the same attributes.
    fn matches(&self, v: &Verdict<'_>, identities: &[String]) -> bool {
        self.declared == v.declared
            && self.component.as_ref().map(|(r, k)| (r.as_str(), *k)) == v.component
            && self.agent.as_deref() == v.agent
            && self.drift == v.drift
            && (v.drift.is_empty() || self.reason == v.reason)
            && self.identities == identities
    }
}

/// Sets looked through for a span's verdict, most recent first; past them a set is made again
/// (the same attributes twice in the table cost room, never a wrong attribute).
const RECENT: usize = 16;

/// The verdicts of one request's spans, judged where they sit in it. The BOM (its serial
/// number) is the same for all.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    sets: Vec<AttributeSet>,
    keys: Vec<Key>,
    /// Each span's set, by its position in the request.
    index: Vec<Option<u32>>,
    /// The set found last.
    last: usize,
}

impl Annotations {
    /// For a request of `spans` spans, none judged yet.
    pub(crate) fn new(spans: usize) -> Self {
        Self {
            index: vec![None; spans],
            ..Self::default()
        }
    }

    /// Keeps each item's verdict for its span (removing the `aibom.*` attributes it came
    /// with, as [`crate::judge`] does when it writes them). `items[i]` sits at position
    /// [`View::at`] in the request; its process's identities are `envs[i]`.
    pub(crate) fn record(
        &mut self,
        items: &mut [View<'_>],
        verdicts: &[Verdict<'_>],
        serial: &str,
        envs: &[Vec<String>],
    ) {
        verdict::for_each(items, verdicts, envs, |it, v, identities| {
            let set = self.set_of(v, serial, identities);
            if let Some(slot) = self.index.get_mut(it.at) {
                *slot = Some(set);
            }
        });
    }

    /// The set of `v`'s attributes, made if none of the recent ones is.
    fn set_of(&mut self, v: &Verdict<'_>, serial: &str, identities: &[String]) -> u32 {
        let recent = self.keys.len().saturating_sub(RECENT);
        let found = std::iter::once(self.last)
            .chain((recent..self.keys.len()).rev())
            .find(|k| self.keys.get(*k).is_some_and(|k| k.matches(v, identities)));
        let at = found.unwrap_or_else(|| {
            let mut attributes = Vec::new();
            put(&mut attributes, v, serial, identities);
            self.sets.push(AttributeSet::new(attributes));
            self.keys.push(Key::of(v, identities));
            self.keys.len() - 1
        });
        self.last = at;
        // As many sets as spans at most, and a request's spans are counted in `u32`.
        u32::try_from(at).unwrap_or(u32::MAX)
    }

    /// The positions of the spans `held` leaves in `req` once they are taken out: to be
    /// called before they are.
    pub(crate) fn remove_held(
        &mut self,
        req: &ExportTraceServiceRequest,
        held: impl Fn(&Span) -> bool,
    ) {
        let spans = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        let mut kept = spans.map(|s| !held(s));
        self.index.retain(|_| kept.next().unwrap_or(true));
    }

    /// `req` (whose first spans are the ones recorded, in order) with the verdicts beside it.
    pub(crate) fn finish(self, req: ExportTraceServiceRequest) -> AnnotatedTraces {
        AnnotatedTraces::new(req, self.sets, self.index)
    }
}
