//! Drift alerts (contract §4): one OTLP log record per finding, carrying the execution chain of
//! its trace from the prompt down to the offending action.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value},
    logs::v1::{LogRecord, SeverityNumber},
};
use std::fmt::Write as _;

use serde_json::Value;

use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_BOM_SERIAL_NUMBER, AIBOM_CHAIN, AIBOM_COMPONENT_REF, AIBOM_DRIFT_KINDS,
    AIBOM_DRIFT_REASON, AIBOM_DRIFT_SUBJECT, CONTAINER_ID, DB_QUERY_TEXT, DB_STATEMENT, EVENT_NAME,
    GEN_AI_CONVERSATION_ID, GEN_AI_INPUT_MESSAGES, GEN_AI_PROMPT, GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL, GEN_AI_TOOL_CALL_ARGUMENTS, GEN_AI_TOOL_NAME, INPUT_VALUE,
    K8S_NAMESPACE_NAME, K8S_POD_SERVICE_ACCOUNT_NAME, K8S_PREFIX, K8S_SERVICEACCOUNT_NAME,
    PROCESS_COMMAND_LINE, RUNBOM_FILE_FLAGS, SERVICE_NAME, TRACELOOP_ENTITY_INPUT, event,
};

use crate::{
    arguments::{self, ArgumentPolicy},
    bom::{DeclaredBom, IdentitySpec},
    judged::{Earlier, Finding, Judged, depth, is_step},
    otlp::{any_str, kv_str, kv_strs, rfc3339},
    scrub,
    span::{Activity, attr},
    verdict::flag,
    view::View,
};

/// Most steps in a chain: the prompt and the last ones before the offending action.
const MAX_STEPS: usize = 64;

/// The chain lines of one trace's steps, each written once and shared by all the alerts of
/// that trace (three findings in a trace format its prompt and model calls once, not three
/// times). One per trace: indices are the trace's items and its remembered steps.
#[derive(Debug, Default)]
pub struct StepLines {
    here: Vec<Line>,
    earlier: Vec<Line>,
}

/// One step's line in [`StepLines`].
#[derive(Clone, Debug, Default)]
enum Line {
    #[default]
    NotWritten,
    NotAStep,
    Written(String),
}

impl StepLines {
    /// The line of step `s` (`None`: not a step), written by `write` the first time.
    fn get(&mut self, s: &Step<'_>, write: impl FnOnce() -> Option<String>) -> Option<&String> {
        let (slots, at) = match s.origin {
            Origin::Here(i) => (&mut self.here, i),
            Origin::Earlier(i) => (&mut self.earlier, i),
        };
        if slots.len() <= at {
            slots.resize(at + 1, Line::NotWritten);
        }
        if matches!(slots[at], Line::NotWritten) {
            slots[at] = write().map_or(Line::NotAStep, Line::Written);
        }
        match &slots[at] {
            Line::Written(line) => Some(line),
            Line::NotWritten | Line::NotAStep => None,
        }
    }
}

/// The alert of `finding` in the trace `items` (with what was released of it before); tool
/// arguments (and the prompt) are quoted under `policy`. `lines`: the trace's step lines so
/// far (one [`StepLines`] for all the alerts of a trace).
#[must_use]
pub fn alert(
    bom: &DeclaredBom,
    items: &[View<'_>],
    judged: &Judged<'_>,
    finding: &Finding,
    earlier: Option<&Earlier>,
    policy: &ArgumentPolicy,
    lines: &mut StepLines,
) -> LogRecord {
    let o = finding.offender;
    let span = &*items[o].span;
    let chain = chain(bom, items, judged, finding, earlier, policy, lines);
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
        kv_str(EVENT_NAME, event::AIBOM_DRIFT),
        // Contract §6: which runbom emitted it.
        kv_str(
            runbom_event::semconv::RUNBOM_INSTANCE_ID,
            runbom_event::ids::instance_id(),
        ),
        kv_strs(AIBOM_DRIFT_KINDS, &kinds),
        kv_str(AIBOM_DRIFT_REASON, &scrub::text(&finding.reason, 1024)),
        kv_str(AIBOM_AGENT_REF, &finding.agent),
        kv_str(AIBOM_DRIFT_SUBJECT, &scrub::text(&finding.subject, 512)),
    ];
    let tool = finding.tool.and_then(|t| judged.tool(items, earlier, t));
    let component = judged.verdicts[o]
        .component
        .map(|(r, _)| r)
        .filter(|r| !r.is_empty())
        .or_else(|| tool.and_then(|t| t.component));
    if let Some(r) = component {
        attributes.push(kv_str(AIBOM_COMPONENT_REF, r));
    }
    if !bom.serial_number.is_empty() {
        attributes.push(kv_str(AIBOM_BOM_SERIAL_NUMBER, &bom.serial_number));
    }
    if let Some(t) = tool {
        attributes.push(kv_str(GEN_AI_TOOL_NAME, t.name));
    }
    for kv in items[o].resource_attrs().iter().chain(&span.attributes) {
        let k = kv.key.as_str();
        if (k == SERVICE_NAME || k == CONTAINER_ID || k.starts_with(K8S_PREFIX))
            && !attributes.iter().any(|a| a.key == k)
        {
            attributes.push(kv.clone());
        }
    }
    let kind_names: Vec<&str> = finding.kinds.iter().map(|k| &**k).collect();
    attributes.extend(crate::guardrail::attributes(
        &kind_names,
        &bom.serial_number,
        tool.is_some(),
    ));
    let body = any_str(&chain.join("\n"));
    attributes.push(KeyValue {
        key: AIBOM_CHAIN.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: chain
                    .into_iter()
                    .map(|line| AnyValue {
                        value: Some(any_value::Value::StringValue(line)),
                    })
                    .collect(),
            })),
        }),
    });
    LogRecord {
        time_unix_nano: span.start_time_unix_nano,
        observed_time_unix_nano: now_ns(),
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(body),
        attributes,
        event_name: event::AIBOM_DRIFT.into(),
        trace_id: span.trace_id.clone(),
        span_id: span.span_id.clone(),
        ..Default::default()
    }
}

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A step of the chain: a span of the trace, or one remembered from an earlier release (then
/// without its attributes).
struct Step<'x> {
    /// Where the step comes from (which line of [`StepLines`] is its).
    origin: Origin,
    start: u64,
    depth: usize,
    activity: &'x Activity,
    attrs: &'x [KeyValue],
    resource: &'x [KeyValue],
    name: &'x str,
    component: Option<&'x str>,
    uid: Option<u32>,
    /// `env:` identities the step's process presents.
    envs: &'x [String],
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The trace's item at this index.
    Here(usize),
    /// The remembered step at this index of the trace released before.
    Earlier(usize),
}

/// The ordered steps of the trace up to the offending action, each with its time and identity.
#[must_use]
pub fn chain(
    bom: &DeclaredBom,
    items: &[View<'_>],
    judged: &Judged<'_>,
    finding: &Finding,
    earlier: Option<&Earlier>,
    policy: &ArgumentPolicy,
    memo: &mut StepLines,
) -> Vec<String> {
    let here = |i: usize| Step {
        origin: Origin::Here(i),
        start: items[i].span.start_time_unix_nano,
        depth: depth(&judged.parents, i),
        activity: &judged.activities[i],
        attrs: &items[i].span.attributes,
        resource: items[i].resource_attrs(),
        name: &items[i].span.name,
        component: judged.verdicts[i]
            .component
            .map(|(r, _)| r)
            .filter(|r| !r.is_empty()),
        uid: judged.uids[i],
        envs: judged.envs.get(i).map_or(&[], Vec::as_slice),
    };
    let o = finding.offender;
    let until = items[o].span.start_time_unix_nano;
    let before = earlier.map_or(&[][..], |e| e.steps.as_slice());
    let mut steps: Vec<Step<'_>> = before
        .iter()
        .enumerate()
        .filter(|(_, s)| s.start <= until)
        .map(|(j, s)| Step {
            origin: Origin::Earlier(j),
            start: s.start,
            depth: usize::from(s.depth),
            activity: &s.activity,
            attrs: &[],
            resource: &[],
            name: "",
            component: None,
            uid: s.uid,
            envs: &[],
        })
        .chain(
            (0..items.len())
                .filter(|&i| {
                    i != o
                        && !finding.spans.contains(&i)
                        && items[i].span.start_time_unix_nano <= until
                        && is_step(&judged.activities[i], items[i].is_kernel())
                })
                .map(here),
        )
        .collect();
    steps.sort_by_key(|s| (s.start, s.depth));
    let offender = here(o);
    let mut lines: Vec<String> = Vec::with_capacity(steps.len() + 1);
    for s in &steps {
        if let Some(l) = memo.get(s, || step(s, policy).map(|text| line(bom, s, &text))) {
            lines.push(l.clone());
        }
    }
    let text = format!(
        "DRIFT {}: {} — {}",
        finding.kinds.join(","),
        step(&offender, policy).unwrap_or_else(|| offender.name.to_owned()),
        finding.reason
    );
    lines.push(line(bom, &offender, &text));
    // The drift of an MCP call: what was done while it was served (the server's file access,
    // connects, execs) follows it.
    if matches!(judged.activities[o], Activity::Mcp { .. }) {
        let end = items[o].span.end_time_unix_nano;
        let mut during: Vec<Step<'_>> = (0..items.len())
            .filter(|&i| {
                i != o
                    && items[i].is_kernel()
                    && (until..=end).contains(&items[i].span.start_time_unix_nano)
                    && !matches!(judged.activities[i], Activity::Mcp { .. })
                    && is_step(&judged.activities[i], true)
            })
            .map(here)
            .collect();
        during.sort_by_key(|s| s.start);
        lines.extend(during.iter().filter_map(|s| {
            step(s, policy).map(|t| line(bom, s, &format!("during the call: {t}")))
        }));
    }
    if lines.len() > MAX_STEPS {
        let tail = lines.split_off(lines.len() - (MAX_STEPS - 1));
        lines.truncate(1);
        lines.extend(tail);
    }
    lines
}

fn line(bom: &DeclaredBom, s: &Step<'_>, text: &str) -> String {
    format!(
        "{} {} ({})",
        rfc3339(s.start),
        scrub::text(text, 2048),
        identity(bom, s)
    )
}

/// What a span or kernel log record did, as a chain step's text (`None`: not a step).
pub(crate) fn describe(
    activity: &Activity,
    attrs: &[KeyValue],
    name: &str,
    policy: &ArgumentPolicy,
) -> Option<String> {
    step(
        &Step {
            origin: Origin::Here(0),
            start: 0,
            depth: 0,
            activity,
            attrs,
            resource: &[],
            name,
            component: None,
            uid: None,
            envs: &[],
        },
        policy,
    )
}

/// `mcp: tools/call write_file (server node …/server-filesystem/dist/index.js /data)`, or
/// `(server https://mcp.example.com/mcp)` for a streamable-HTTP server.
fn mcp_step(act: &Activity) -> String {
    let Activity::Mcp {
        method,
        tool,
        server,
        url,
    } = act
    else {
        return String::new();
    };
    let server = match (server, url) {
        (Some(c), _) => format!(" (server {})", scrub::command_line(c)),
        (None, Some(u)) => format!(" (server {})", scrub::url(u)),
        (None, None) => String::new(),
    };
    let tool = tool.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
    format!("mcp: {method}{tool}{server}")
}

/// One step as text, or `None` for spans that are not steps of the chain.
fn step(s: &Step<'_>, policy: &ArgumentPolicy) -> Option<String> {
    let a = s.attrs;
    let declared = s.component.map(|r| format!(" [{r}]")).unwrap_or_default();
    Some(match s.activity {
        Activity::Agent { name } => {
            let mut t = format!("prompt: {}{declared}", name.as_deref().unwrap_or(s.name));
            if let Some(p) = prompt(a) {
                let _ = write!(t, ": {:?}", arguments::mask(&p, &policy.mask));
            }
            for k in [
                GEN_AI_PROVIDER_NAME,
                GEN_AI_REQUEST_MODEL,
                GEN_AI_CONVERSATION_ID,
            ] {
                if let Some(v) = attr(a, k) {
                    let _ = write!(t, ", {k}={v}");
                }
            }
            t
        }
        Activity::Model {
            model,
            provider,
            operation,
        } => format!(
            "model call: {operation} {}{}{declared}",
            model.as_deref().unwrap_or("?"),
            provider
                .as_deref()
                .map(|p| format!(" (provider {p})"))
                .unwrap_or_default()
        ),
        Activity::Tool { name } => {
            let mut t = format!("tool: {name}{declared}");
            if let Some(args) = attr(a, GEN_AI_TOOL_CALL_ARGUMENTS).or_else(|| attr(a, INPUT_VALUE))
            {
                let _ = write!(
                    t,
                    " arguments {}",
                    scrub::text(&arguments::quote(args, policy), 2000)
                );
            }
            t
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
            if let Some(q) = attr(a, DB_QUERY_TEXT).or_else(|| attr(a, DB_STATEMENT)) {
                let _ = write!(s, " {:?}", scrub::text(q, 300));
            }
            s.push_str(&declared);
            s
        }
        Activity::File { path } => format!(
            "data access: file.open {path} {}{declared}",
            attr(a, RUNBOM_FILE_FLAGS).unwrap_or("")
        ),
        Activity::Exec { path } => format!(
            "process: exec {path}{}{declared}",
            attr(a, PROCESS_COMMAND_LINE)
                .map(|c| format!(" ({})", scrub::command_line(c)))
                .unwrap_or_default()
        ),
        Activity::Mcp { .. } => mcp_step(s.activity) + &declared,
        Activity::Dns { .. } | Activity::Accept { .. } | Activity::Other => {
            return None;
        }
    })
}

/// The prompt of an agent invocation: the last user message of `gen_ai.input.messages` (or the
/// OpenInference / OpenLLMetry input), redacted.
fn prompt(a: &[KeyValue]) -> Option<String> {
    let from_messages = attr(a, GEN_AI_INPUT_MESSAGES).and_then(|m| {
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
                GEN_AI_PROMPT,
                INPUT_VALUE,
                TRACELOOP_ENTITY_INPUT,
                "gen_ai.prompt.0.content",
            ]
            .iter()
            .find_map(|k| attr(a, k).map(str::to_owned))
        })
        .map(|p| scrub::text(&p, 2000))
}

/// `as uid 1000, identity:openai-api-key (env:OPENAI_API_KEY)`: the user the step ran as and
/// the declared identities it used.
fn identity(bom: &DeclaredBom, step: &Step<'_>) -> String {
    let mut parts = Vec::new();
    let res = step.resource;
    let uid = step.uid;
    if let Some(u) = uid {
        parts.push(format!("uid {u}"));
    }
    let sa = attr(res, K8S_SERVICEACCOUNT_NAME).or_else(|| attr(res, K8S_POD_SERVICE_ACCOUNT_NAME));
    let ns = attr(res, K8S_NAMESPACE_NAME);
    if let Some(sa) = sa {
        parts.push(format!("service account {}/{sa}", ns.unwrap_or("?")));
    }
    // The step's component and what it depends on.
    let uses = |r: &str| {
        step.component
            .is_some_and(|c| c == r || bom.reach(c).is_some_and(|set| set.contains(r)))
    };
    for id in &bom.identities {
        let by_process = id.specs.iter().any(|s| match s {
            IdentitySpec::Uid(u) => uid == Some(*u),
            IdentitySpec::K8sServiceAccount { namespace, name } => {
                sa == Some(name.as_str()) && ns == Some(namespace.as_str())
            }
            IdentitySpec::Env(name) => step.envs.contains(name),
        });
        if by_process || uses(&id.bom_ref) {
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
