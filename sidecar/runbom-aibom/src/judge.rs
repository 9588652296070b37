//! Judging one trace against the declared BOM: which agent each span runs under, which declared
//! component it uses, and which drift flags it raises (contract §3). Pure: the processor calls
//! [`judge`] on a complete (or expired) trace and writes the result onto the spans.

use std::{collections::HashMap, sync::Arc};

use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::Span,
};

use crate::{
    bom::{DeclaredBom, Kind},
    endpoint::Endpoint,
    otlp::{kv_bool, kv_str, kv_strs},
    pids::PidMap,
    rules::Judge,
    span::{self, Activity, KERNEL_SCOPE, attr, attr_int},
};

/// A resource as received, shared by the spans that came with it.
#[derive(Debug, Default, PartialEq)]
pub struct ResourceHeader {
    pub resource: Option<Resource>,
    pub schema_url: String,
}

/// An instrumentation scope as received, shared by its spans.
#[derive(Debug, Default, PartialEq)]
pub struct ScopeHeader {
    pub scope: Option<InstrumentationScope>,
    pub schema_url: String,
}

/// One span with where it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub resource: Arc<ResourceHeader>,
    pub scope: Arc<ScopeHeader>,
    pub span: Span,
}

impl Item {
    #[must_use]
    pub fn resource_attrs(&self) -> &[KeyValue] {
        self.resource
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice())
    }

    #[must_use]
    pub fn is_kernel(&self) -> bool {
        self.scope
            .scope
            .as_ref()
            .is_some_and(|s| s.name == KERNEL_SCOPE)
            || attr(&self.span.attributes, "runbom.event").is_some()
    }
}

/// Drift flags against the declared BOM.
pub mod flag {
    pub const UNDECLARED_MODEL: &str = "undeclared_model";
    pub const UNDECLARED_TOOL: &str = "undeclared_tool";
    pub const UNDECLARED_ENDPOINT: &str = "undeclared_endpoint";
    pub const UNDECLARED_DATA_SOURCE: &str = "undeclared_data_source";
    pub const UNDECLARED_EXEC: &str = "undeclared_exec";
    pub const UNDECLARED_FILE: &str = "undeclared_file";
}

/// What the processor concluded about one span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub component: Option<(String, Kind)>,
    /// `Some(true)`: matched a declared component; `Some(false)`: AI-relevant or judged, and
    /// undeclared.
    pub declared: Option<bool>,
    pub agent: Option<String>,
    pub drift: Vec<&'static str>,
    pub reason: Option<String>,
    /// What the finding is about (destination, path, model ...): one finding per subject.
    pub subject: Option<String>,
}

/// Everything judged about a trace, for the alerts' chains.
#[derive(Debug)]
pub struct Judged {
    pub activities: Vec<Activity>,
    pub verdicts: Vec<Verdict>,
    pub parents: Vec<Option<usize>>,
    /// Index of the nearest tool span above (or at) each span.
    pub tools: Vec<Option<usize>>,
    pub uids: Vec<Option<u32>>,
    pub findings: Vec<Finding>,
}

/// One drift finding: possibly several spans (the kernel `net.connect`, `http.request` and the
/// HTTP client span of one request), reported once.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The span the alert points at.
    pub offender: usize,
    pub spans: Vec<usize>,
    pub kinds: Vec<&'static str>,
    pub reason: String,
    pub agent: String,
    pub tool: Option<usize>,
    pub subject: String,
}

/// What the judge needs besides the BOM.
#[derive(Clone, Debug, Default)]
pub struct JudgeSettings {
    /// Destinations never judged: runbom's own receivers and what the configuration adds.
    pub ignore: Vec<Endpoint>,
}

/// Judges `items` (one trace) and writes the `aibom.*` attributes onto their spans.
pub fn judge(
    bom: &DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [Item],
) -> Judged {
    let n = items.len();
    let activities: Vec<Activity> = items
        .iter()
        .map(|it| span::classify(&it.span.attributes, &it.span.name, it.is_kernel()))
        .collect();
    // What the kernel says about processes: parents, users, names resolved.
    for (it, act) in items.iter().zip(&activities) {
        let Some(pid) = pid_of(it) else { continue };
        let parent =
            attr_int(&it.span.attributes, "process.parent_pid").and_then(|p| u32::try_from(p).ok());
        let uid =
            attr_int(&it.span.attributes, "process.user.id").and_then(|u| u32::try_from(u).ok());
        pids.learn(pid, parent, uid);
        if let Activity::Dns { name } = act {
            pids.resolved(pid, name);
        }
    }
    let index: HashMap<&[u8], usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.span.span_id.as_slice(), i))
        .collect();
    let parents: Vec<Option<usize>> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            index
                .get(it.span.parent_span_id.as_slice())
                .copied()
                .filter(|p| *p != i)
        })
        .collect();
    let tools = inherit(
        &parents,
        &activities
            .iter()
            .enumerate()
            .map(|(i, a)| matches!(a, Activity::Tool { .. }).then_some(i))
            .collect::<Vec<_>>(),
    );
    let agents = agents(bom, pids, items, &activities, &parents);
    let uids: Vec<Option<u32>> = items
        .iter()
        .map(|it| {
            attr_int(&it.span.attributes, "process.user.id")
                .and_then(|u| u32::try_from(u).ok())
                .or_else(|| pid_of(it).and_then(|p| pids.uid_of(p)))
        })
        .collect();
    let mut verdicts = Vec::with_capacity(n);
    for i in 0..n {
        let mut act = activities[i].clone();
        if let Some(pid) = pid_of(&items[i]) {
            add_resolved(&mut act, pids.names_of(pid));
        }
        let tool = tools[i].and_then(|t| match &activities[t] {
            Activity::Tool { name } => Some(name.as_str()),
            _ => None,
        });
        let mut v = match &agents[i] {
            Some(agent) => Judge {
                bom,
                settings,
                agent,
            }
            .verdict(&act, tool, &items[i]),
            None => shadow(settings, &act, &items[i]),
        };
        v.agent.clone_from(&agents[i]);
        verdicts.push(v);
    }
    let findings = findings(items, &activities, &verdicts, &tools);
    for (it, v) in items.iter_mut().zip(&verdicts) {
        write(&mut it.span.attributes, v, &bom.serial_number);
    }
    Judged {
        activities,
        verdicts,
        parents,
        tools,
        uids,
        findings,
    }
}

/// The declared agent each span runs under: named by the span or its resource, inherited from
/// the spans above it, or (kernel spans of child processes) from the process's ancestors.
fn agents(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    items: &[Item],
    activities: &[Activity],
    parents: &[Option<usize>],
) -> Vec<Option<String>> {
    let own: Vec<Option<usize>> = items
        .iter()
        .zip(activities)
        .map(|(it, act)| own_agent(bom, it, act))
        .collect();
    let mut agents: Vec<Option<String>> = inherit(parents, &own)
        .iter()
        .map(|a| a.map(|a| bom.agents[a].bom_ref.clone()))
        .collect();
    for (i, it) in items.iter().enumerate() {
        if let (Some(a), Some(pid)) = (&agents[i], pid_of(it)) {
            pids.set_agent(pid, a);
        }
    }
    for (i, it) in items.iter().enumerate() {
        if agents[i].is_none()
            && let Some(pid) = pid_of(it)
        {
            agents[i] = pids.agent_of(pid);
        }
    }
    agents
}

fn pid_of(it: &Item) -> Option<u32> {
    attr_int(&it.span.attributes, "process.pid")
        .or_else(|| attr_int(it.resource_attrs(), "process.pid"))
        .and_then(|p| u32::try_from(p).ok())
}

/// For each span, the value of the nearest span above it (or itself) that has one.
fn inherit(parents: &[Option<usize>], own: &[Option<usize>]) -> Vec<Option<usize>> {
    let mut out: Vec<Option<Option<usize>>> = vec![None; own.len()];
    for start in 0..own.len() {
        let mut path = Vec::new();
        let mut at = Some(start);
        let mut found = None;
        while let Some(i) = at {
            if let Some(known) = out[i] {
                found = known;
                break;
            }
            if own[i].is_some() {
                found = own[i];
                out[i] = Some(found);
                break;
            }
            path.push(i);
            if path.len() > own.len() {
                break; // a cycle in bad input
            }
            at = parents[i];
        }
        for i in path {
            out[i] = Some(found);
        }
    }
    out.into_iter().map(Option::flatten).collect()
}

/// The declared agent a span names or whose workload it belongs to by its own attributes.
fn own_agent(bom: &DeclaredBom, it: &Item, act: &Activity) -> Option<usize> {
    let attrs = &it.span.attributes;
    let res = it.resource_attrs();
    if let Activity::Agent { name: Some(name) } = act
        && let Some(i) = bom.agents.iter().position(|a| {
            a.name == *name
                || a.matchers.iter().any(|(k, g)| {
                    matches!(k.as_str(), "gen_ai.agent.name" | "agent.name") && g.matches(name)
                })
        })
    {
        return Some(i);
    }
    bom.agents.iter().position(|a| {
        if a.matchers.is_empty() {
            ["service.name", "gen_ai.agent.name", "agent.name"]
                .iter()
                .any(|k| attr(attrs, k).or_else(|| attr(res, k)) == Some(a.name.as_str()))
        } else {
            a.matchers.iter().any(|(k, g)| {
                attr(attrs, k)
                    .or_else(|| attr(res, k))
                    .is_some_and(|v| g.matches(v))
            })
        }
    })
}

fn add_resolved(act: &mut Activity, names: &[String]) {
    if let Activity::Connect { dest } | Activity::Http { dest, .. } = act
        && dest.name.is_none()
    {
        dest.resolved = names.to_vec();
    }
}

/// Outside declared workloads nothing is flagged, but AI-relevant activity is marked undeclared
/// (shadow AI), unless it matches a declared component.
fn shadow(settings: &JudgeSettings, act: &Activity, it: &Item) -> Verdict {
    let undeclared = |kind| {
        Verdict {
            component: None,
            declared: Some(false),
            subject: None,
            ..Verdict::default()
        }
        .with_kind(kind)
    };
    match act {
        Activity::Model { .. } => undeclared(Kind::Model),
        Activity::Http { dest, .. }
            if span::is_llm_traffic(&it.span.attributes, dest)
                && !settings.ignore.iter().any(|e| e.matches(dest)) =>
        {
            undeclared(Kind::Service)
        }
        Activity::Exec { path } if span::is_model_server(path) => undeclared(Kind::Process),
        Activity::Accept { port } => {
            let exe = attr(&it.span.attributes, "process.executable.path").unwrap_or("");
            if span::is_model_server(exe) || port.is_some_and(span::is_model_server_port) {
                undeclared(Kind::Service)
            } else {
                Verdict::default()
            }
        }
        _ => Verdict::default(),
    }
}

impl Verdict {
    fn with_kind(mut self, kind: Kind) -> Self {
        self.component = Some((String::new(), kind));
        self
    }
}

/// Groups drift into findings: one per agent, tool span, flags and subject.
fn findings(
    items: &[Item],
    activities: &[Activity],
    verdicts: &[Verdict],
    tools: &[Option<usize>],
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for (i, v) in verdicts.iter().enumerate() {
        let (Some(agent), false) = (&v.agent, v.drift.is_empty()) else {
            continue;
        };
        let subject = v.subject.clone().unwrap_or_default();
        let existing = out.iter_mut().find(|f| {
            f.agent == *agent && f.tool == tools[i] && f.kinds == v.drift && f.subject == subject
        });
        match existing {
            Some(f) => {
                f.spans.push(i);
                if rank(items, activities, i) < rank(items, activities, f.offender) {
                    f.offender = i;
                    f.reason = v.reason.clone().unwrap_or_default();
                }
            }
            None => out.push(Finding {
                offender: i,
                spans: vec![i],
                kinds: v.drift.clone(),
                reason: v.reason.clone().unwrap_or_default(),
                agent: agent.clone(),
                tool: tools[i],
                subject,
            }),
        }
    }
    out
}

/// Which span of a finding the alert points at: the application's span of the request (the
/// kernel events hang under it), else the captured request, else the connection.
fn rank(items: &[Item], activities: &[Activity], i: usize) -> (u8, u64) {
    let class = if items[i].is_kernel() {
        match activities[i] {
            Activity::Http { .. } => 1,
            _ => 2,
        }
    } else {
        0
    };
    (class, items[i].span.start_time_unix_nano)
}

/// Replaces any `aibom.*` attributes with the verdict's.
fn write(attrs: &mut Vec<KeyValue>, v: &Verdict, serial: &str) {
    attrs.retain(|kv| !kv.key.starts_with("aibom."));
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
    if let Some(a) = &v.agent {
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
}
