//! Drift alerts (contract §4): one OTLP log record per finding, carrying the execution chain of
//! its trace from the prompt down to the offending action.

use opentelemetry_proto::tonic::{common::v1::KeyValue, logs::v1::SeverityNumber};
use runbom_otlp::{
    AttributeSet, SharedLogs,
    shared_logs::{Head, Text},
};
use std::{fmt::Write as _, sync::Arc};

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
    otlp::{kv_str, push_rfc3339},
    scrub,
    span::{Activity, attr},
    verdict::flag,
    view::View,
};

/// Most steps in a chain: the prompt and the last ones before the offending action.
const MAX_STEPS: usize = 64;

/// The chain lines of one trace's steps, each written once into the alerts' request and shared
/// by all the alerts of that trace (three findings in a trace write its prompt and model calls
/// once, not three times). One per trace: indices are the trace's items and its remembered
/// steps.
#[derive(Debug, Default)]
pub struct StepLines {
    here: Vec<Line>,
    earlier: Vec<Line>,
    /// Where a step's text is written before it becomes a line (one buffer for all).
    scratch: String,
    /// The lines of the chain being written.
    chain: Vec<Text>,
    /// When the trace's alerts were written (their observed time): read once for them all.
    observed: Option<u64>,
}

/// One step's line in [`StepLines`].
#[derive(Clone, Copy, Debug, Default)]
enum Line {
    #[default]
    NotWritten,
    NotAStep,
    Written(Text),
}

impl StepLines {
    /// The line of step `s` (`None`: not a step), written into `logs` by `write` (given the
    /// scratch buffer) the first time.
    fn get(
        &mut self,
        s: &Step<'_>,
        logs: &mut SharedLogs,
        write: impl FnOnce(&mut String, &mut SharedLogs) -> Option<Text>,
    ) -> Option<Text> {
        let (slots, at) = match s.origin {
            Origin::Here(i) => (&mut self.here, i),
            Origin::Earlier(i) => (&mut self.earlier, i),
        };
        if slots.len() <= at {
            slots.resize(at + 1, Line::NotWritten);
        }
        if matches!(slots[at], Line::NotWritten) {
            slots[at] = write(&mut self.scratch, logs).map_or(Line::NotAStep, Line::Written);
        }
        match slots[at] {
            Line::Written(line) => Some(line),
            Line::NotWritten | Line::NotAStep => None,
        }
    }
}

/// The attributes every alert of a kind carries alike, made and encoded once per processor:
/// the event's name and runbom's instance (first), the guardrail's (after the alert's own).
#[derive(Debug, Default)]
pub struct AlertSets {
    head: Option<Arc<AttributeSet>>,
    /// By the finding's rule and whether it is on a tool's action, under `serial`.
    guardrail: Vec<(Option<&'static str>, bool, Arc<AttributeSet>)>,
    serial: String,
}

/// Most guardrail sets kept (kinds of rules times tool or not: a few).
const GUARDRAIL_SETS: usize = 64;

impl AlertSets {
    fn head(&mut self) -> &Arc<AttributeSet> {
        self.head.get_or_insert_with(|| {
            Arc::new(AttributeSet::of_log_records(vec![
                kv_str(EVENT_NAME, event::AIBOM_DRIFT),
                // Contract §6: which runbom emitted it.
                kv_str(
                    runbom_event::semconv::RUNBOM_INSTANCE_ID,
                    runbom_event::ids::instance_id(),
                ),
            ]))
        })
    }

    fn guardrail(
        &mut self,
        kinds: &[&'static str],
        serial: &str,
        tool: bool,
    ) -> &Arc<AttributeSet> {
        if self.serial != serial {
            self.guardrail.clear();
            serial.clone_into(&mut self.serial);
        }
        // The guardrail's attributes name only the first kind (the rule).
        let rule = kinds.first().copied();
        let found = self
            .guardrail
            .iter()
            .position(|(r, t, _)| *r == rule && *t == tool);
        let at = found.unwrap_or_else(|| {
            if self.guardrail.len() >= GUARDRAIL_SETS {
                self.guardrail.clear();
            }
            let set = crate::guardrail::attributes(kinds, serial, tool);
            self.guardrail
                .push((rule, tool, Arc::new(AttributeSet::of_log_records(set))));
            self.guardrail.len() - 1
        });
        &self.guardrail[at].2
    }
}

/// The trace an alert is of, and how its chain quotes tool arguments (and the prompt).
pub struct Of<'a, 'v> {
    pub bom: &'a DeclaredBom,
    pub items: &'a [View<'v>],
    pub judged: &'a Judged<'v>,
    /// What was released of the trace before.
    pub earlier: Option<&'a Earlier>,
    pub policy: &'a ArgumentPolicy,
}

/// The alert of `finding` in the trace `of`, written into `logs` as a record of its last
/// group: its own attributes there, the ones alike for its kind from `sets`, its chain's lines
/// from `lines` (one [`StepLines`] for all the alerts of a trace, written into the same
/// `logs`).
pub fn alert(
    of: &Of<'_, '_>,
    finding: &Finding,
    lines: &mut StepLines,
    sets: &mut AlertSets,
    logs: &mut SharedLogs,
) {
    let (bom, items, judged) = (of.bom, of.items, of.judged);
    let o = finding.offender;
    let span = &*items[o].span;
    let mut chain_lines = std::mem::take(&mut lines.chain);
    chain(of, finding, lines, logs, &mut chain_lines);
    let severe = finding
        .kinds
        .iter()
        .any(|k| *k == flag::UNDECLARED_ENDPOINT || *k == flag::UNDECLARED_DATA_SOURCE);
    let (severity, text) = if severe {
        (SeverityNumber::Error, "ERROR")
    } else {
        (SeverityNumber::Warn, "WARN")
    };
    let tool = finding.tool.and_then(|t| judged.tool(items, of.earlier, t));
    let component = judged.verdicts[o]
        .component
        .map(|(r, _)| r)
        .filter(|r| !r.is_empty())
        .or_else(|| tool.and_then(|t| t.component));
    let head = logs.set(sets.head());
    let guardrail = logs.set(sets.guardrail(&finding.kinds, &bom.serial_number, tool.is_some()));
    logs.record(&Head {
        time_unix_nano: span.start_time_unix_nano,
        observed_time_unix_nano: *lines.observed.get_or_insert_with(now_ns),
        severity_number: severity as i32,
        severity_text: text,
        event_name: event::AIBOM_DRIFT,
        trace_id: &span.trace_id,
        span_id: &span.span_id,
    })
    .body_lines(&chain_lines)
    .shared(head)
    .strs_attribute(AIBOM_DRIFT_KINDS, finding.kinds.iter().copied())
    .attribute_with(AIBOM_DRIFT_REASON, |t| {
        scrub::push_text(t, &finding.reason, 1024);
    })
    .str_attribute(AIBOM_AGENT_REF, &finding.agent)
    .attribute_with(AIBOM_DRIFT_SUBJECT, |t| {
        scrub::push_text(t, &finding.subject, 512);
    });
    if let Some(r) = component {
        logs.str_attribute(AIBOM_COMPONENT_REF, r);
    }
    if !bom.serial_number.is_empty() {
        logs.str_attribute(AIBOM_BOM_SERIAL_NUMBER, &bom.serial_number);
    }
    if let Some(t) = tool {
        logs.str_attribute(GEN_AI_TOOL_NAME, t.name);
    }
    // The workload's identity, from the resource (or the span); none of these keys is among
    // the attributes above.
    let mut copied: Vec<&str> = Vec::new();
    for kv in items[o].resource_attrs().iter().chain(&span.attributes) {
        let k = kv.key.as_str();
        if (k == SERVICE_NAME || k == CONTAINER_ID || k.starts_with(K8S_PREFIX))
            && !copied.contains(&k)
        {
            copied.push(k);
            match crate::span::str_value(kv) {
                Some(v) => logs.str_attribute(k, v),
                None => logs.other_attribute(kv.clone()),
            };
        }
    }
    logs.shared(guardrail)
        .lines_attribute(AIBOM_CHAIN, &chain_lines);
    lines.chain = chain_lines;
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

/// The ordered steps of the trace up to the offending action, each with its time and identity:
/// their lines, held in `logs`, in `lines` (cleared first).
pub fn chain(
    of: &Of<'_, '_>,
    finding: &Finding,
    memo: &mut StepLines,
    logs: &mut SharedLogs,
    lines: &mut Vec<Text>,
) {
    let (bom, items, judged, policy) = (of.bom, of.items, of.judged, of.policy);
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
    let before = of.earlier.map_or(&[][..], |e| e.steps.as_slice());
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
    lines.clear();
    lines.reserve(steps.len() + 1);
    for s in &steps {
        let written = memo.get(s, logs, |text, logs| {
            text.clear();
            step_into(text, s, policy).then(|| line(bom, s, text, logs))
        });
        if let Some(l) = written {
            lines.push(l);
        }
    }
    let text = &mut memo.scratch;
    drift_text(text, finding, &offender, policy);
    lines.push(line(bom, &offender, text, logs));
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
        let text = &mut memo.scratch;
        for s in &during {
            text.clear();
            text.push_str("during the call: ");
            if step_into(text, s, policy) {
                lines.push(line(bom, s, text, logs));
            }
        }
    }
    if lines.len() > MAX_STEPS {
        let cut = lines.len() - (MAX_STEPS - 1);
        lines.drain(1..cut);
    }
}

/// `DRIFT <kinds>: <the offending step> — <reason>` in `text` (cleared first).
fn drift_text(text: &mut String, finding: &Finding, offender: &Step<'_>, policy: &ArgumentPolicy) {
    text.clear();
    text.push_str("DRIFT ");
    for (k, kind) in finding.kinds.iter().enumerate() {
        if k > 0 {
            text.push(',');
        }
        text.push_str(kind);
    }
    text.push_str(": ");
    if !step_into(text, offender, policy) {
        text.push_str(offender.name);
    }
    text.push_str(" — ");
    text.push_str(&finding.reason);
}

/// `<time> <text, scrubbed> (<identity>)`, written into `logs`' text.
fn line(bom: &DeclaredBom, s: &Step<'_>, text: &str, logs: &mut SharedLogs) -> Text {
    logs.text_with(|out| {
        out.reserve(text.len() + 64);
        push_rfc3339(out, s.start);
        out.push(' ');
        scrub::push_text(out, text, 2048);
        out.push_str(" (");
        push_identity(out, bom, s);
        out.push(')');
    })
}

/// What a span or kernel log record did, as a chain step's text, written at the end of `text`
/// (false: not a step, nothing written).
pub(crate) fn describe_into(
    text: &mut String,
    activity: &Activity,
    attrs: &[KeyValue],
    name: &str,
    policy: &ArgumentPolicy,
) -> bool {
    step_into(
        text,
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
fn mcp_step(t: &mut String, act: &Activity) {
    let Activity::Mcp {
        method,
        tool,
        server,
        url,
    } = act
    else {
        return;
    };
    let _ = write!(t, "mcp: {method}");
    if let Some(tool) = tool {
        let _ = write!(t, " {tool}");
    }
    match (server, url) {
        (Some(c), _) => {
            let _ = write!(t, " (server {})", scrub::command_line(c));
        }
        (None, Some(u)) => {
            let _ = write!(t, " (server {})", scrub::url(u));
        }
        (None, None) => {}
    }
}

/// One step as text, written at the end of `t`; false (nothing written) for spans that are
/// not steps of the chain.
fn step_into(t: &mut String, s: &Step<'_>, policy: &ArgumentPolicy) -> bool {
    let a = s.attrs;
    let declared = |t: &mut String| {
        if let Some(r) = s.component {
            let _ = write!(t, " [{r}]");
        }
    };
    match s.activity {
        Activity::Agent { name } => {
            let _ = write!(t, "prompt: {}", name.as_deref().unwrap_or(s.name));
            declared(t);
            prompt_step(t, a, policy);
        }
        Activity::Model {
            model,
            provider,
            operation,
        } => {
            let _ = write!(
                t,
                "model call: {operation} {}",
                model.as_deref().unwrap_or("?")
            );
            if let Some(p) = provider {
                let _ = write!(t, " (provider {p})");
            }
            declared(t);
        }
        Activity::Tool { name } => {
            let _ = write!(t, "tool: {name}");
            declared(t);
            if let Some(args) = attr(a, GEN_AI_TOOL_CALL_ARGUMENTS).or_else(|| attr(a, INPUT_VALUE))
            {
                t.push_str(" arguments ");
                scrub::push_text(t, &arguments::quote(args, policy), 2000);
            }
        }
        Activity::Http {
            dest,
            method,
            kernel,
        } => {
            let _ = write!(
                t,
                "{}: {method} {}",
                if *kernel {
                    "captured request"
                } else {
                    "api request"
                },
                scrub::url(&dest.display())
            );
            declared(t);
        }
        Activity::Connect { dest } => {
            let _ = write!(t, "connect: {}", dest.host_port());
            declared(t);
        }
        Activity::Db {
            system,
            namespace,
            collection,
            ..
        } => {
            db_step(t, system, namespace.as_deref(), collection.as_deref(), a);
            declared(t);
        }
        Activity::File { path } => {
            let _ = write!(
                t,
                "data access: file.open {path} {}",
                attr(a, RUNBOM_FILE_FLAGS).unwrap_or("")
            );
            declared(t);
        }
        Activity::Exec { path } => {
            let _ = write!(t, "process: exec {path}");
            if let Some(c) = attr(a, PROCESS_COMMAND_LINE) {
                let _ = write!(t, " ({})", scrub::command_line(c));
            }
            declared(t);
        }
        Activity::Mcp { .. } => {
            mcp_step(t, s.activity);
            declared(t);
        }
        Activity::Dns { .. } | Activity::Accept { .. } | Activity::Other => return false,
    }
    true
}

/// What an agent invocation's step says after its name: the prompt, quoted masked, and the
/// provider, model and conversation.
fn prompt_step(t: &mut String, a: &[KeyValue], policy: &ArgumentPolicy) {
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
}

/// `data access: postgresql shop.orders "SELECT …"`.
fn db_step(
    t: &mut String,
    system: &str,
    namespace: Option<&str>,
    collection: Option<&str>,
    a: &[KeyValue],
) {
    let _ = write!(t, "data access: {system} {}", namespace.unwrap_or(""));
    if let Some(c) = collection {
        let _ = write!(t, ".{c}");
    }
    if let Some(q) = attr(a, DB_QUERY_TEXT).or_else(|| attr(a, DB_STATEMENT)) {
        let _ = write!(t, " {:?}", scrub::text(q, 300));
    }
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
/// the declared identities it used, at the end of `out`.
fn push_identity(out: &mut String, bom: &DeclaredBom, step: &Step<'_>) {
    let start = out.len();
    let next = |out: &mut String| {
        out.push_str(if out.len() == start { "as " } else { ", " });
    };
    let res = step.resource;
    let uid = step.uid;
    if let Some(u) = uid {
        next(out);
        let _ = write!(out, "uid {u}");
    }
    let sa = attr(res, K8S_SERVICEACCOUNT_NAME).or_else(|| attr(res, K8S_POD_SERVICE_ACCOUNT_NAME));
    let ns = attr(res, K8S_NAMESPACE_NAME);
    if let Some(sa) = sa {
        next(out);
        let _ = write!(out, "service account {}/{sa}", ns.unwrap_or("?"));
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
            next(out);
            out.push_str(&id.bom_ref);
            out.push_str(" (");
            for (k, spec) in id.specs.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{spec}");
            }
            out.push(')');
        }
    }
    if out.len() == start {
        out.push_str("identity unknown");
    }
}
