//! Verdicts kept beside a request instead of written onto its spans: the distinct verdicts of
//! the request, each built once as its `aibom.*` attributes ([`AttributeSet`], encoded once),
//! and each span's. runbom's exporters append a set's bytes to its spans' own attributes
//! ([`AnnotatedTraces`]); what reads spans after the processor gets them built. Either way the
//! request is the one [`crate::verdict::put`] on every span makes.

use std::{cell::RefCell, rc::Rc};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span,
};
use runbom_otlp::{AnnotatedTraces, AttributeSet};

use crate::{
    bom::Kind,
    verdict::{self, Verdict, Verdicts, put},
    view::View,
};

/// What a set of attributes was made of: a verdict's written parts (not its subject) and the
/// process's identities.
#[derive(Clone, Debug)]
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
        // The cheap comparisons first: most verdicts that differ differ in kind.
        self.component.as_ref().map(|(_, k)| *k) == v.component.map(|(_, k)| k)
            && self.declared == v.declared
            && self.drift.len() == v.drift.len()
            && self.identities.len() == identities.len()
            && self.component.as_ref().map(|(r, k)| (r.as_str(), *k)) == v.component
            && self.agent.as_deref() == v.agent
            && self.drift == v.drift
            && (v.drift.is_empty() || self.reason == v.reason)
            && self.identities == identities
    }
}

thread_local! {
    /// Sets made for earlier requests, with the serial number they were made with, oldest
    /// first: a pipeline's requests repeat a few verdicts, and copying a set costs less than
    /// writing and encoding it again. Per thread, as the processor runs on one.
    static MADE: RefCell<Vec<(String, Rc<Key>, AttributeSet)>> = const { RefCell::new(Vec::new()) };
}

/// Sets [`MADE`] keeps.
const MADE_MAX: usize = 64;

/// The set of `v`'s attributes (and what it was made of): a copy of one made before (sharing
/// it), or made.
fn made(v: &Verdict<'_>, serial: &str, identities: &[String]) -> (Rc<Key>, AttributeSet) {
    let found = MADE.with_borrow(|m| {
        m.iter()
            .rev()
            .find(|(s, k, _)| k.matches(v, identities) && s == serial)
            .map(|(_, k, set)| (Rc::clone(k), set.clone()))
    });
    found.unwrap_or_else(|| {
        let mut attributes = Vec::new();
        put(&mut attributes, v, serial, identities);
        let (key, set) = (
            Rc::new(Key::of(v, identities)),
            AttributeSet::new(attributes),
        );
        MADE.with_borrow_mut(|m| {
            if m.len() >= MADE_MAX {
                m.remove(0);
            }
            m.push((serial.to_owned(), Rc::clone(&key), set.clone()));
        });
        (key, set)
    })
}

/// Sets looked through for a span's verdict, most recent first; past them a set is made again
/// (the same attributes twice in the table cost room, never a wrong attribute).
const RECENT: usize = 16;

/// The verdicts of one request's spans, judged where they sit in it. The BOM (its serial
/// number) is the same for all.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    sets: Vec<AttributeSet>,
    keys: Vec<Rc<Key>>,
    /// Each span's set, by its position in the request.
    index: Vec<Option<u32>>,
    /// The set found last.
    last: usize,
    /// The set of each verdict of the request's judging (by its place, see
    /// [`Verdicts`]), once found.
    by_place: Vec<Option<u32>>,
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
    /// [`View::at`] in the request and its process's identities are `envs[i]`; `verdicts`
    /// have their places in the table of the request's judging (the same place, the same
    /// verdict).
    pub(crate) fn record(
        &mut self,
        items: &mut [View<'_>],
        verdicts: &Verdicts<'_>,
        serial: &str,
        envs: &[Vec<String>],
    ) {
        verdict::for_each(items, verdicts, envs, |it, v, place, identities| {
            let place = usize::try_from(place)
                .ok()
                .filter(|_| identities.is_empty());
            let known = place.and_then(|k| self.by_place.get(k).copied().flatten());
            let set = known.unwrap_or_else(|| self.set_of(v, serial, identities));
            if let Some(k) = place {
                if self.by_place.len() <= k {
                    self.by_place.resize(k + 1, None);
                }
                self.by_place[k] = Some(set);
            }
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
            let (key, set) = made(v, serial, identities);
            self.sets.push(set);
            self.keys.push(key);
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
