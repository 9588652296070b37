//! What judging concludes about one span (contract §3): the drift flags, the [`Verdict`], the
//! settings the judge takes, and the verdict written as the span's `aibom.*` attributes.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::{
    bom::Kind,
    endpoint::Endpoint,
    otlp::{kv_bool, kv_str, kv_strs},
};

/// Drift flags against the declared BOM.
pub mod flag {
    pub const UNDECLARED_MODEL: &str = "undeclared_model";
    pub const UNDECLARED_TOOL: &str = "undeclared_tool";
    pub const UNDECLARED_ENDPOINT: &str = "undeclared_endpoint";
    pub const UNDECLARED_DATA_SOURCE: &str = "undeclared_data_source";
    pub const UNDECLARED_EXEC: &str = "undeclared_exec";
    pub const UNDECLARED_FILE: &str = "undeclared_file";
    /// An undeclared workload used an AI provider, model or model server.
    pub const SHADOW_AI: &str = "shadow_ai";
}

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
    if attrs.iter().any(|kv| kv.key.starts_with("aibom.")) {
        strip(attrs);
    }
    put(attrs, v, serial, &[]);
}

/// Removes the `aibom.*` attributes a span came with.
pub(crate) fn strip(attrs: &mut Vec<KeyValue>) {
    attrs.retain(|kv| !kv.key.starts_with("aibom."));
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
        attrs.push(kv_str("aibom.bom.serial_number", serial));
    }
    if let Some((r, kind)) = &v.component {
        if !r.is_empty() {
            attrs.push(kv_str("aibom.component.ref", r));
        }
        attrs.push(kv_str("aibom.component.kind", kind.as_str()));
    }
    if let Some(d) = v.declared {
        attrs.push(kv_bool("aibom.declared", d));
    }
    if let Some(a) = v.agent {
        attrs.push(kv_str("aibom.agent.ref", a));
        attrs.push(kv_bool("aibom.drift", !v.drift.is_empty()));
    }
    if !v.drift.is_empty() {
        let kinds: Vec<String> = v.drift.iter().map(|s| (*s).to_owned()).collect();
        attrs.push(kv_strs("aibom.drift.kinds", &kinds));
        if let Some(r) = &v.reason {
            attrs.push(kv_str("aibom.drift.reason", &crate::scrub::text(r, 1024)));
        }
    }
    if !identities.is_empty() {
        let specs: Vec<String> = identities.iter().map(|n| format!("env:{n}")).collect();
        attrs.push(kv_strs("aibom.identities", &specs));
    }
}
