//! Drift alerts (contract §4): one OTLP log record per finding, carrying the execution chain of
//! its trace from the prompt down to the offending action.

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    logs::v1::{LogRecord, SeverityNumber},
};
use std::{collections::BTreeSet, fmt::Write as _};

use serde_json::Value;

use crate::{
    bom::{DeclaredBom, IdentitySpec},
    judge::{Finding, Item, Judged, flag},
    otlp::{any_str, kv_str, kv_strs, rfc3339},
    scrub,
    span::{Activity, attr},
};

/// Scope name of the alerts' log records.
pub const SCOPE: &str = "runbom.aibom";
/// Most steps in a chain: the prompt and the last ones before the offending action.
const MAX_STEPS: usize = 64;

/// The alert of `finding`.
#[must_use]
pub fn alert(bom: &DeclaredBom, items: &[Item], judged: &Judged, finding: &Finding) -> LogRecord {
    let o = finding.offender;
    let span = &items[o].span;
    let chain = chain(bom, items, judged, finding);
    let severe = finding
        .kinds
        .iter()
        .any(|k| *k == flag::UNDECLARED_ENDPOINT || *k == flag::UNDECLARED_DATA_SOURCE);
    let (severity, text) = if severe {
        (SeverityNumber::Error, "ERROR")
    } else {
        (SeverityNumber::Warn, "WARN")
    };
    let kinds: Vec<String> = finding.kinds.iter().map(|k| (*k).to_owned()).collect();
    let mut attributes = vec![
        kv_str("event.name", "aibom.drift"),
        kv_strs("aibom.drift.kinds", &kinds),
        kv_str("aibom.drift.reason", &scrub::text(&finding.reason, 1024)),
        kv_str("aibom.agent.ref", &finding.agent),
        kv_str("aibom.drift.subject", &scrub::text(&finding.subject, 512)),
    ];
    let component = judged.verdicts[o]
        .component
        .as_ref()
        .map(|(r, _)| r.clone())
        .filter(|r| !r.is_empty())
        .or_else(|| {
            finding
                .tool
                .and_then(|t| judged.verdicts[t].component.as_ref())
                .map(|(r, _)| r.clone())
        });
    if let Some(r) = component.filter(|r| !r.is_empty()) {
        attributes.push(kv_str("aibom.component.ref", &r));
    }
    if !bom.serial_number.is_empty() {
        attributes.push(kv_str("aibom.bom.serial_number", &bom.serial_number));
    }
    if let Some(t) = finding.tool
        && let Activity::Tool { name } = &judged.activities[t]
    {
        attributes.push(kv_str("gen_ai.tool.name", name));
    }
    for kv in items[o].resource_attrs().iter().chain(&span.attributes) {
        let k = kv.key.as_str();
        if (k == "service.name" || k == "container.id" || k.starts_with("k8s."))
            && !attributes.iter().any(|a| a.key == k)
        {
            attributes.push(kv.clone());
        }
    }
    attributes.push(kv_strs("aibom.chain", &chain));
    LogRecord {
        time_unix_nano: span.start_time_unix_nano,
        observed_time_unix_nano: now_ns(),
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(any_str(&chain.join("\n"))),
        attributes,
        event_name: "aibom.drift".into(),
        trace_id: span.trace_id.clone(),
        span_id: span.span_id.clone(),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The ordered steps of the trace up to the offending action, each with its time and identity.
#[must_use]
pub fn chain(bom: &DeclaredBom, items: &[Item], judged: &Judged, finding: &Finding) -> Vec<String> {
    let o = finding.offender;
    let until = items[o].span.start_time_unix_nano;
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| {
            i != o
                && !finding.spans.contains(&i)
                && items[i].span.start_time_unix_nano <= until
                && !matches!(
                    judged.activities[i],
                    Activity::Connect { .. } | Activity::Http { kernel: true, .. }
                )
                && step(items, judged, i).is_some()
        })
        .collect();
    order.sort_by_key(|&i| (items[i].span.start_time_unix_nano, depth(judged, i)));
    order.push(o);
    let mut lines: Vec<String> = order
        .iter()
        .map(|&i| {
            let text = if i == o {
                format!(
                    "DRIFT {}: {} — {}",
                    finding.kinds.join(","),
                    step(items, judged, i).unwrap_or_else(|| items[i].span.name.clone()),
                    finding.reason
                )
            } else {
                step(items, judged, i).unwrap_or_default()
            };
            format!(
                "{} {} ({})",
                rfc3339(items[i].span.start_time_unix_nano),
                scrub::text(&text, 2048),
                identity(bom, items, judged, i)
            )
        })
        .collect();
    if lines.len() > MAX_STEPS {
        let tail = lines.split_off(lines.len() - (MAX_STEPS - 1));
        lines.truncate(1);
        lines.extend(tail);
    }
    lines
}

fn depth(judged: &Judged, mut i: usize) -> usize {
    let mut d = 0;
    while let Some(p) = judged.parents[i] {
        d += 1;
        i = p;
        if d > judged.parents.len() {
            break;
        }
    }
    d
}

/// One step as text, or `None` for spans that are not steps of the chain (connections and
/// captured requests the application's own spans already show, plain internal spans).
fn step(items: &[Item], judged: &Judged, i: usize) -> Option<String> {
    let a = &items[i].span.attributes;
    let kernel = items[i].is_kernel();
    let declared = judged.verdicts[i]
        .component
        .as_ref()
        .filter(|(r, _)| !r.is_empty())
        .map(|(r, _)| format!(" [{r}]"))
        .unwrap_or_default();
    Some(match &judged.activities[i] {
        Activity::Agent { name } => {
            let mut s = format!(
                "prompt: {}{declared}",
                name.as_deref().unwrap_or(&items[i].span.name)
            );
            if let Some(p) = prompt(a) {
                let _ = write!(s, ": {p:?}");
            }
            for k in [
                "gen_ai.provider.name",
                "gen_ai.request.model",
                "gen_ai.conversation.id",
            ] {
                if let Some(v) = attr(a, k) {
                    let _ = write!(s, ", {k}={v}");
                }
            }
            s
        }
        Activity::Model {
            model,
            provider,
            operation,
        } if !kernel => format!(
            "model call: {operation} {}{}{declared}",
            model.as_deref().unwrap_or("?"),
            provider
                .as_deref()
                .map(|p| format!(" (provider {p})"))
                .unwrap_or_default()
        ),
        Activity::Tool { name } => {
            let mut s = format!("tool: {name}{declared}");
            if let Some(args) =
                attr(a, "gen_ai.tool.call.arguments").or_else(|| attr(a, "input.value"))
            {
                let _ = write!(s, " arguments {}", scrub::text(args, 300));
            }
            s
        }
        Activity::Http {
            dest,
            method,
            kernel,
        } => format!(
            "{}: {method} {}{declared}",
            if *kernel {
                "captured request"
            } else {
                "api request"
            },
            scrub::url(&dest.display())
        ),
        Activity::Connect { dest } => format!("connect: {}{declared}", dest.host_port()),
        Activity::Db {
            system,
            namespace,
            collection,
            ..
        } => {
            let mut s = format!(
                "data access: {system} {}{}",
                namespace.as_deref().unwrap_or(""),
                collection
                    .as_deref()
                    .map(|c| format!(".{c}"))
                    .unwrap_or_default()
            );
            if let Some(q) = attr(a, "db.query.text").or_else(|| attr(a, "db.statement")) {
                let _ = write!(s, " {:?}", scrub::text(q, 300));
            }
            s.push_str(&declared);
            s
        }
        Activity::File { path } => format!(
            "data access: file.open {path} {}{declared}",
            attr(a, "runbom.file.flags").unwrap_or("")
        ),
        Activity::Exec { path } => format!(
            "process: exec {path}{}{declared}",
            attr(a, "process.command_line")
                .map(|c| format!(" ({})", scrub::command_line(c)))
                .unwrap_or_default()
        ),
        Activity::Model { .. }
        | Activity::Dns { .. }
        | Activity::Accept { .. }
        | Activity::Other => {
            return None;
        }
    })
}

/// The prompt of an agent invocation: the last user message of `gen_ai.input.messages` (or the
/// OpenInference / OpenLLMetry input), redacted.
fn prompt(a: &[KeyValue]) -> Option<String> {
    let from_messages = attr(a, "gen_ai.input.messages").and_then(|m| {
        let v: Value = serde_json::from_str(m).ok()?;
        let msgs = v.as_array()?;
        let user = msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        match user.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => user.get("parts").and_then(Value::as_array).map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        }
    });
    from_messages
        .or_else(|| {
            [
                "gen_ai.prompt",
                "input.value",
                "traceloop.entity.input",
                "gen_ai.prompt.0.content",
            ]
            .iter()
            .find_map(|k| attr(a, k).map(str::to_owned))
        })
        .map(|p| scrub::text(&p, 2000))
}

/// `as uid 1000, identity:openai-api-key (env:OPENAI_API_KEY)`: the user the step ran as and
/// the declared identities it used.
fn identity(bom: &DeclaredBom, items: &[Item], judged: &Judged, i: usize) -> String {
    let mut parts = Vec::new();
    let res = items[i].resource_attrs();
    let uid = judged.uids[i];
    if let Some(u) = uid {
        parts.push(format!("uid {u}"));
    }
    let sa =
        attr(res, "k8s.serviceaccount.name").or_else(|| attr(res, "k8s.pod.service_account.name"));
    let ns = attr(res, "k8s.namespace.name");
    if let Some(sa) = sa {
        parts.push(format!("service account {}/{sa}", ns.unwrap_or("?")));
    }
    let mut used = match judged.verdicts[i].component.as_ref() {
        Some((r, _)) if !r.is_empty() => bom.closure(r),
        _ => BTreeSet::default(),
    };
    if let Some((r, _)) = judged.verdicts[i].component.as_ref() {
        used.insert(r.clone());
    }
    for id in &bom.identities {
        let by_process = id.specs.iter().any(|s| match s {
            IdentitySpec::Uid(u) => uid == Some(*u),
            IdentitySpec::K8sServiceAccount { namespace, name } => {
                sa == Some(name.as_str()) && ns == Some(namespace.as_str())
            }
            IdentitySpec::Env(_) => false,
        });
        if by_process || used.contains(&id.bom_ref) {
            let specs: Vec<String> = id.specs.iter().map(ToString::to_string).collect();
            parts.push(format!("{} ({})", id.bom_ref, specs.join(", ")));
        }
    }
    if parts.is_empty() {
        "identity unknown".into()
    } else {
        format!("as {}", parts.join(", "))
    }
}
