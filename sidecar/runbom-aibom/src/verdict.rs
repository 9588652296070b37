//! What judging concludes about one span (contract §3): the drift flags, the [`Verdict`], the
//! settings the judge takes, and the verdict written as the span's `aibom.*` attributes.

use std::ops::Index;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_BOM_SERIAL_NUMBER, AIBOM_COMPONENT_KIND, AIBOM_COMPONENT_REF,
    AIBOM_DECLARED, AIBOM_DRIFT, AIBOM_DRIFT_KINDS, AIBOM_DRIFT_REASON, AIBOM_IDENTITIES,
    AIBOM_PREFIX,
};

use crate::{
    bom::Kind,
    endpoint::Endpoint,
    otlp::{kv_array, kv_bool, kv_str, kv_string, kv_strings},
    view::View,
};

/// The drift flags (`undeclared_*` against the declared BOM, `baseline_*` against the learned
/// baseline): the contract's one list.
pub use runbom_event::semconv::drift as flag;

/// What the processor concluded about one span. Refs borrow from the BOM in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict<'b> {
    pub component: Option<(&'b str, Kind)>,
    /// `Some(true)`: matched a declared component; `Some(false)`: AI-relevant or judged, and
    /// undeclared.
    pub declared: Option<bool>,
    pub agent: Option<&'b str>,
    pub drift: Vec<&'static str>,
    pub reason: Option<String>,
    /// What the finding is about (destination, path, model ...): one finding per subject.
    pub subject: Option<String>,
}

/// What the judge needs besides the BOM.
#[derive(Clone, Debug, Default)]
pub struct JudgeSettings {
    /// Destinations never judged: runbom's own receivers and what the configuration adds.
    pub ignore: Vec<Endpoint>,
}

/// Replaces any `aibom.*` attributes with the verdict's (contract §3).
pub fn write(attrs: &mut Vec<KeyValue>, v: &Verdict<'_>, serial: &str) {
    if attrs.iter().any(|kv| kv.key.starts_with(AIBOM_PREFIX)) {
        strip(attrs);
    }
    put(attrs, v, serial, &[]);
}

/// Writes each span's verdict (and its process's `env:` identities) as its `aibom.*`
/// attributes, replacing any it came with.
pub(crate) fn write_all(
    items: &mut [View<'_>],
    verdicts: &Verdicts<'_>,
    serial: &str,
    envs: &[Vec<String>],
) {
    for_each(items, verdicts, envs, |it, v, _, identities| {
        put(&mut it.span.attributes, v, serial, identities);
    });
}

/// Calls `f` with each span (the `aibom.*` attributes it came with removed), its verdict, the
/// verdict's place (see [`Verdicts`]) and its process's `env:` identities (`envs[i]`, none past its end).
pub(crate) fn for_each(
    items: &mut [View<'_>],
    verdicts: &Verdicts<'_>,
    envs: &[Vec<String>],
    mut f: impl FnMut(&mut View<'_>, &Verdict<'_>, u32, &[String]),
) {
    let places = verdicts.places();
    for (i, (it, v)) in items.iter_mut().zip(verdicts.iter()).enumerate() {
        if it.is_stale() {
            strip(&mut it.span.attributes);
        }
        f(it, v, places[i], envs.get(i).map_or(&[][..], Vec::as_slice));
    }
}

/// Removes the `aibom.*` attributes a span came with.
pub(crate) fn strip(attrs: &mut Vec<KeyValue>) {
    attrs.retain(|kv| !kv.key.starts_with(AIBOM_PREFIX));
}

/// Adds the verdict's `aibom.*` attributes (none are there), and the `env:` identities
/// (variable names) the span's process presents.
pub(crate) fn put(attrs: &mut Vec<KeyValue>, v: &Verdict<'_>, serial: &str, identities: &[String]) {
    attrs.reserve_exact(
        usize::from(!serial.is_empty())
            + 2 * usize::from(v.component.is_some())
            + usize::from(v.declared.is_some())
            + 2 * usize::from(v.agent.is_some())
            + 2 * usize::from(!v.drift.is_empty())
            + usize::from(!identities.is_empty()),
    );
    if !serial.is_empty() {
        attrs.push(kv_str(AIBOM_BOM_SERIAL_NUMBER, serial));
    }
    if let Some((r, kind)) = &v.component {
        if !r.is_empty() {
            attrs.push(kv_str(AIBOM_COMPONENT_REF, r));
        }
        attrs.push(kv_str(AIBOM_COMPONENT_KIND, kind.as_str()));
    }
    if let Some(d) = v.declared {
        attrs.push(kv_bool(AIBOM_DECLARED, d));
    }
    if let Some(a) = v.agent {
        attrs.push(kv_str(AIBOM_AGENT_REF, a));
        attrs.push(kv_bool(AIBOM_DRIFT, !v.drift.is_empty()));
    }
    if !v.drift.is_empty() {
        attrs.push(kv_array(AIBOM_DRIFT_KINDS, v.drift.iter().copied()));
        if let Some(r) = &v.reason {
            attrs.push(kv_string(AIBOM_DRIFT_REASON, crate::scrub::text(r, 1024)));
        }
    }
    if !identities.is_empty() {
        let specs = identities.iter().map(|n| {
            let mut spec = String::with_capacity(4 + n.len());
            spec.push_str("env:");
            spec.push_str(n);
            spec
        });
        attrs.push(kv_strings(AIBOM_IDENTITIES, specs));
    }
}

/// The verdict on each span of a trace (`verdicts[i]`), each a place in a table of verdicts
/// (of the trace, or shared by the traces of a request through a
/// [`Memo`](crate::judged::Memo)): spans with an equal verdict share one, which is not copied
/// for each.
#[derive(Debug, Default)]
pub struct Verdicts<'b> {
    pub(crate) table: Vec<Verdict<'b>>,
    /// Of each span, its verdict's place in `table`.
    pub(crate) of: Vec<u32>,
}

impl<'b> Verdicts<'b> {
    /// Spans.
    #[must_use]
    pub fn len(&self) -> usize {
        self.of.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// Each span's verdict, in order.
    #[must_use]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Verdict<'b>> + Clone + '_ {
        self.of.iter().map(|k| &self.table[*k as usize])
    }

    /// Each span's verdict's place in the table: spans with the same place have equal
    /// verdicts.
    pub(crate) fn places(&self) -> &[u32] {
        &self.of
    }
}

impl<'b> Index<usize> for Verdicts<'b> {
    type Output = Verdict<'b>;

    fn index(&self, i: usize) -> &Verdict<'b> {
        &self.table[self.of[i] as usize]
    }
}
