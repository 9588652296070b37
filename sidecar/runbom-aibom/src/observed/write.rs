//! Writing the inventory as CycloneDX: properties, evidence, serial number, times.

use super::{Entry, Value, json, rfc3339};

pub(super) fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

pub(super) fn prepend(first: impl Iterator<Item = Value>, rest: Vec<Value>) -> Vec<Value> {
    first.chain(rest).collect()
}

pub(super) fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

pub(super) fn evidence(e: &Entry) -> Vec<Value> {
    let p = |n: &str, v: String| json!({"name": format!("runbom:evidence:{n}"), "value": v});
    let mut out = vec![
        p("first_seen", rfc3339(e.first_ns)),
        p("last_seen", rfc3339(e.last_ns)),
        p("count", e.count.to_string()),
    ];
    out.extend(e.traces.iter().map(|t| p("trace_id", t.clone())));
    out.extend(e.workloads.iter().map(|w| p("workload", w.clone())));
    out.extend(e.agent_refs.iter().map(|a| p("agent_ref", a.clone())));
    out.extend(e.declared_refs.iter().map(|a| p("declared_ref", a.clone())));
    if e.ai {
        out.push(p("ai", "true".into()));
    }
    if e.drift_alerts > 0 {
        out.push(p("drift_alerts", e.drift_alerts.to_string()));
    }
    if e.shadow {
        out.push(p("shadow_ai", "true".into()));
    }
    out
}

/// A random `urn:uuid:` (version 4).
pub(super) fn serial() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(super) fn rfc3339_secs() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = rfc3339(now * 1_000_000_000);
    format!("{}Z", &s[..19])
}
