//! Drift alerts (contract §4): one OTLP log record per finding, carrying the execution chain of
//! its trace from the prompt down to the offending action.

use std::{collections::HashMap, sync::Arc};

use opentelemetry_proto::tonic::{common::v1::KeyValue, logs::v1::SeverityNumber};
use runbom_otlp::{
    AttributeSet, SharedLogs,
    shared_logs::{Head, Text},
};

use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_BOM_SERIAL_NUMBER, AIBOM_CHAIN, AIBOM_COMPONENT_REF, AIBOM_DRIFT_KINDS,
    AIBOM_DRIFT_REASON, AIBOM_DRIFT_SUBJECT, CONTAINER_ID, EVENT_NAME, GEN_AI_TOOL_NAME,
    K8S_PREFIX, SERVICE_NAME, event,
};

use crate::{
    arguments::ArgumentPolicy,
    bom::DeclaredBom,
    judged::{Earlier, Finding, Judged, depth, is_step},
    otlp::{kv_str, push_rfc3339},
    scrub,
    span::Activity,
    verdict::flag,
    view::View,
};

mod step;
pub(crate) use step::describe_into;
use step::{Who, key_str, push_identity, step_into};

/// Most steps in a chain: the prompt and the last ones before the offending action.
const MAX_STEPS: usize = 64;

/// The chain lines of one trace's steps, each written once into the alerts' request and shared
/// by all the alerts of that trace (three findings in a trace write its prompt and model calls
/// once, not three times). For one trace at a time ([`StepLines::reset`] between traces, its
/// room kept): indices are the trace's items and its remembered steps.
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
    /// Every step of the trace in chain order (by time, then depth), found at its first alert;
    /// each alert's chain is those up to its offending action.
    order: Vec<Placed>,
    ordered: bool,
    /// The lines' parts after their times, kept from trace to trace.
    tails: Tails,
}

/// A step of the trace in [`StepLines::order`].
#[derive(Clone, Copy, Debug)]
struct Placed {
    start: u64,
    depth: usize,
    origin: Origin,
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
    /// Ready for the alerts of another trace (their room kept).
    pub fn reset(&mut self) {
        self.here.clear();
        self.earlier.clear();
        self.observed = None;
        self.order.clear();
        self.ordered = false;
    }

    /// The steps of the trace `of` in chain order, into [`StepLines::order`].
    fn order(&mut self, of: &Of<'_, '_>) {
        let (items, judged) = (of.items, of.judged);
        let before = of.earlier.map_or(&[][..], |e| e.steps.as_slice());
        self.order.clear();
        self.order
            .extend(before.iter().enumerate().map(|(j, s)| Placed {
                start: s.start,
                depth: usize::from(s.depth),
                origin: Origin::Earlier(j),
            }));
        self.order.extend(
            (0..items.len())
                .filter(|&i| is_step(&judged.activities[i], items[i].is_kernel()))
                .map(|i| Placed {
                    start: items[i].span.start_time_unix_nano,
                    depth: depth(&judged.parents, i),
                    origin: Origin::Here(i),
                }),
        );
        // Stable: equal keys keep the order above, as each chain's own sort did.
        self.order.sort_by_key(|s| (s.start, s.depth));
        self.ordered = true;
    }

    /// The line of the step at `origin` (`None`: not a step), written into `logs` by `write`
    /// (given the scratch buffer and the tails) the first time.
    fn get(
        &mut self,
        origin: Origin,
        logs: &mut SharedLogs,
        write: impl FnOnce(&mut String, &mut Tails, &mut SharedLogs) -> Option<Text>,
    ) -> Option<Text> {
        let (slots, at) = match origin {
            Origin::Here(i) => (&mut self.here, i),
            Origin::Earlier(i) => (&mut self.earlier, i),
        };
        if slots.len() <= at {
            slots.resize(at + 1, Line::NotWritten);
        }
        if matches!(slots[at], Line::NotWritten) {
            slots[at] = write(&mut self.scratch, &mut self.tails, logs)
                .map_or(Line::NotAStep, Line::Written);
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
    finding: &Finding<'_>,
    lines: &mut StepLines,
    sets: &mut AlertSets,
    logs: &mut SharedLogs,
) {
    let (bom, items, judged) = (of.bom, of.items, of.judged);
    let o = finding.offender;
    let span = &*items[o].span;
    let mut chain_lines = std::mem::take(&mut lines.chain);
    chain(of, finding, lines, logs, &mut chain_lines);
    let kinds = judged.kinds(finding);
    let (severity, text) = severity(kinds);
    let tool = finding.tool.and_then(|t| judged.tool(items, of.earlier, t));
    let component = judged.verdicts[o]
        .component
        .map(|(r, _)| r)
        .filter(|r| !r.is_empty())
        .or_else(|| tool.and_then(|t| t.component));
    let head = logs.set(sets.head());
    let guardrail = logs.set(sets.guardrail(kinds, &bom.serial_number, tool.is_some()));
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
    .strs_attribute(AIBOM_DRIFT_KINDS, kinds.iter().copied())
    .attribute_with(AIBOM_DRIFT_REASON, |t| {
        scrub::push_text(t, judged.reason(finding), 1024);
    })
    .str_attribute(AIBOM_AGENT_REF, finding.agent)
    .attribute_with(AIBOM_DRIFT_SUBJECT, |t| {
        scrub::push_text(t, judged.subject(finding), 512);
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
    // The workload's identity, from the resource (or the span), each key once (the first);
    // none of these keys is among the attributes above.
    let identity = || items[o].resource_attrs().iter().chain(&span.attributes);
    for (at, kv) in identity().enumerate() {
        let k = kv.key.as_str();
        if (k == SERVICE_NAME || k == CONTAINER_ID || k.starts_with(K8S_PREFIX))
            && !identity().take(at).any(|before| before.key == k)
        {
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

/// The severity of a drift alert of `kinds`: ERROR for an undeclared endpoint or data source,
/// else WARN.
pub(crate) fn severity(kinds: &[&str]) -> (SeverityNumber, &'static str) {
    let severe = kinds
        .iter()
        .any(|k| *k == flag::UNDECLARED_ENDPOINT || *k == flag::UNDECLARED_DATA_SOURCE);
    if severe {
        (SeverityNumber::Error, "ERROR")
    } else {
        (SeverityNumber::Warn, "WARN")
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
    start: u64,
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

impl<'x> Step<'x> {
    /// The step at `origin` of the trace `of`.
    fn at(of: &Of<'x, '_>, origin: Origin) -> Self {
        let (items, judged) = (of.items, of.judged);
        match origin {
            Origin::Here(i) => Step {
                start: items[i].span.start_time_unix_nano,
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
            },
            Origin::Earlier(j) => {
                let s = &of.earlier.map_or(&[][..], |e| e.steps.as_slice())[j];
                Step {
                    start: s.start,
                    activity: &s.activity,
                    attrs: &[],
                    resource: &[],
                    name: "",
                    component: None,
                    uid: s.uid,
                    envs: &[],
                }
            }
        }
    }
}

/// The ordered steps of the trace up to the offending action, each with its time and identity:
/// their lines, held in `logs`, in `lines` (cleared first).
pub fn chain(
    of: &Of<'_, '_>,
    finding: &Finding<'_>,
    memo: &mut StepLines,
    logs: &mut SharedLogs,
    lines: &mut Vec<Text>,
) {
    let (bom, items, judged, policy) = (of.bom, of.items, of.judged, of.policy);
    let o = finding.offender;
    let until = items[o].span.start_time_unix_nano;
    if !memo.ordered {
        memo.order(of);
    }
    lines.clear();
    let order = std::mem::take(&mut memo.order);
    for p in order.iter().take_while(|p| p.start <= until) {
        if let Origin::Here(i) = p.origin
            && (i == o || judged.is_of(finding, i))
        {
            continue;
        }
        let written = memo.get(p.origin, logs, |text, tails, logs| {
            let s = Step::at(of, p.origin);
            text.clear();
            step_into(text, &s, policy).then(|| tails.line(bom, &s, text, logs))
        });
        if let Some(l) = written {
            lines.push(l);
        }
    }
    memo.order = order;
    let offender = Step::at(of, Origin::Here(o));
    let text = &mut memo.scratch;
    drift_text(text, judged, finding, &offender, policy);
    lines.push(memo.tails.line(bom, &offender, text, logs));
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
            .map(|i| Step::at(of, Origin::Here(i)))
            .collect();
        during.sort_by_key(|s| s.start);
        let text = &mut memo.scratch;
        for s in &during {
            text.clear();
            text.push_str("during the call: ");
            if step_into(text, s, policy) {
                lines.push(memo.tails.line(bom, s, text, logs));
            }
        }
    }
    if lines.len() > MAX_STEPS {
        let cut = lines.len() - (MAX_STEPS - 1);
        lines.drain(1..cut);
    }
}

/// `DRIFT <kinds>: <the offending step> — <reason>` in `text` (cleared first).
fn drift_text(
    text: &mut String,
    judged: &Judged<'_>,
    finding: &Finding<'_>,
    offender: &Step<'_>,
    policy: &ArgumentPolicy,
) {
    text.clear();
    text.push_str("DRIFT ");
    for (k, kind) in judged.kinds(finding).iter().enumerate() {
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
    text.push_str(judged.reason(finding));
}

/// The part of a step's line after its time (` <text, scrubbed> (<identity>)`), by the step's
/// text and what its identity is made of ([`Who`]): the same steps recur in trace after trace
/// (an agent's prompt, its model calls, the same drift), each at another time, and are
/// scrubbed and identified once. Bounded; for one BOM at a time (by address: the pipeline task
/// keeps the BOM in force alive until the next one is in its hands, so two BOMs in succession
/// never share one).
#[derive(Debug, Default)]
struct Tails {
    by_key: HashMap<Box<[u8]>, Box<str>, foldhash::fast::RandomState>,
    /// The key looked up: the text and the [`Who`], each prefixed by its length.
    key: Vec<u8>,
    /// The tail written when it is not kept.
    tail: String,
    bom: usize,
}

/// `<time><tail>`, written into `logs`' text.
fn timed(logs: &mut SharedLogs, start: u64, tail: &str) -> Text {
    logs.text_with(|out| {
        out.reserve(24 + tail.len());
        push_rfc3339(out, start);
        out.push_str(tail);
    })
}

/// Most tails kept (the steps of a few agents, not every text seen), and the longest text and
/// tail kept.
const TAILS: usize = 1024;
const TAIL_TEXT: usize = 256;
const TAIL_LEN: usize = 1024;

impl Tails {
    /// `<time> <text, scrubbed> (<identity>)` of the step `s` whose text is `text`, written into
    /// `logs`' text.
    fn line(&mut self, bom: &DeclaredBom, s: &Step<'_>, text: &str, logs: &mut SharedLogs) -> Text {
        let id = std::ptr::from_ref(bom) as usize;
        if id != self.bom {
            self.by_key.clear();
            self.bom = id;
        }
        let who = Who::of(s);
        let keep = text.len() <= TAIL_TEXT;
        if keep {
            self.key.clear();
            key_str(&mut self.key, text);
            who.key_into(&mut self.key);
            if let Some(tail) = self.by_key.get(self.key.as_slice()) {
                return timed(logs, s.start, tail);
            }
        }
        let tail = &mut self.tail;
        tail.clear();
        tail.reserve(text.len() + 64);
        tail.push(' ');
        scrub::push_text(tail, text, 2048);
        tail.push_str(" (");
        push_identity(tail, bom, &who);
        tail.push(')');
        let line = timed(logs, s.start, tail);
        if keep && tail.len() <= TAIL_LEN {
            if self.by_key.len() >= TAILS {
                self.by_key.clear();
            }
            self.by_key
                .insert(self.key.as_slice().into(), tail.as_str().into());
        }
        line
    }
}
