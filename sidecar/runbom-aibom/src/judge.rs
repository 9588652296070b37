//! Judging one trace against the declared BOM: which agent each span runs under, which declared
//! component it uses, and which drift flags it raises (contract §3). Pure: the processor calls
//! [`judge_views`] on a trace (or on the late spans of one it released, with what it remembers
//! of it as [`Earlier`]) and writes the result onto the spans.

use std::{sync::Arc, time::SystemTime};

use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::Span,
};

use crate::{
    baseline::{Baseline, Behaviour},
    bom::{DeclaredBom, Kind},
    endpoint::{Dest, Endpoint},
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

/// One span held apart from its request, with where it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub resource: Arc<ResourceHeader>,
    pub scope: Arc<ScopeHeader>,
    pub span: Span,
}

impl Item {
    /// The span as the judge sees it.
    pub fn view(&mut self) -> View<'_> {
        View::new(
            self.resource.resource.as_ref(),
            &self.resource.schema_url,
            self.scope.scope.as_ref(),
            &mut self.span,
        )
    }
}

/// One span being judged, wherever it sits: in a request passing through, or held.
#[derive(Debug)]
pub struct View<'a> {
    pub resource: Option<&'a Resource>,
    pub resource_schema: &'a str,
    /// A kernel event's span (runbom's kernel scope or a `runbom.event` attribute).
    kernel: bool,
    /// The span's own `process.pid` and `process.user.id`.
    pid: Option<u32>,
    uid: Option<u32>,
    /// The span came with `aibom.*` attributes (from an earlier processor or its sender):
    /// they are replaced.
    stale: bool,
    pub span: &'a mut Span,
}

impl<'a> View<'a> {
    #[must_use]
    pub fn new(
        resource: Option<&'a Resource>,
        resource_schema: &'a str,
        scope: Option<&InstrumentationScope>,
        span: &'a mut Span,
    ) -> Self {
        let mut kernel = scope.is_some_and(|s| s.name == KERNEL_SCOPE);
        let (mut pid, mut uid, mut stale) = (None, None, false);
        // One pass over the attributes for what every span needs.
        for kv in &span.attributes {
            let int = || span::int_value(kv).and_then(|v| u32::try_from(v).ok());
            match kv.key.as_str() {
                "runbom.event" => kernel |= span::str_value(kv).is_some(),
                "process.pid" => pid = pid.or_else(int),
                "process.user.id" => uid = uid.or_else(int),
                k => stale |= k.starts_with("aibom."),
            }
        }
        Self {
            resource,
            resource_schema,
            kernel,
            pid,
            uid,
            stale,
            span,
        }
    }

    #[must_use]
    pub fn resource_attrs(&self) -> &[KeyValue] {
        self.resource.map_or(&[], |r| r.attributes.as_slice())
    }

    #[must_use]
    pub fn is_kernel(&self) -> bool {
        self.kernel
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

/// A tool span as an alert shows it.
#[derive(Clone, Copy, Debug)]
pub struct ToolInfo<'x> {
    pub name: &'x str,
    pub span_id: &'x [u8],
    pub component: Option<&'x str>,
}

/// The nearest tool span above a span: in the trace being judged, or one released earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolAt {
    Here(usize),
    Earlier(usize),
}

/// Everything judged about a trace, for the alerts' chains.
#[derive(Debug)]
pub struct Judged<'b> {
    pub activities: Vec<Activity>,
    pub verdicts: Vec<Verdict<'b>>,
    pub parents: Vec<Option<usize>>,
    /// The nearest tool span above (or at) each span.
    pub tools: Vec<Option<ToolAt>>,
    /// The declared agent (index into the BOM's agents) each span runs under.
    pub agents: Vec<Option<usize>>,
    pub uids: Vec<Option<u32>>,
    /// The process of each span, when known.
    pub pids: Vec<Option<u32>>,
    /// The `env:` identities of the BOM whose variable the span's process has (empty when the
    /// BOM declares none).
    pub envs: Vec<Vec<String>>,
    pub findings: Vec<Finding>,
}

impl Judged<'_> {
    /// The tool span `t` refers to.
    #[must_use]
    pub fn tool<'x>(
        &'x self,
        items: &'x [View<'_>],
        earlier: Option<&'x Earlier>,
        t: ToolAt,
    ) -> Option<ToolInfo<'x>> {
        match t {
            ToolAt::Here(h) => match &self.activities[h] {
                Activity::Tool { name } => Some(ToolInfo {
                    name,
                    span_id: &items[h].span.span_id,
                    component: self.verdicts[h]
                        .component
                        .map(|(r, _)| r)
                        .filter(|r| !r.is_empty()),
                }),
                _ => None,
            },
            ToolAt::Earlier(e) => earlier.and_then(|x| x.tools.get(e)).map(|t| ToolInfo {
                name: &t.name,
                span_id: &t.span_id,
                component: t.component.as_deref(),
            }),
        }
    }
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
    pub tool: Option<ToolAt>,
    pub subject: String,
}

/// What the judge needs besides the BOM.
#[derive(Clone, Debug, Default)]
pub struct JudgeSettings {
    /// Destinations never judged: runbom's own receivers and what the configuration adds.
    pub ignore: Vec<Endpoint>,
}

/// A tool span of a released trace.
#[derive(Clone, Debug)]
pub struct EarlierTool {
    pub name: String,
    pub span_id: Vec<u8>,
    pub component: Option<String>,
}

/// A step of a released trace's chain (see [`crate::alert::chain`]).
#[derive(Clone, Debug)]
pub struct EarlierStep {
    pub start: u64,
    pub depth: u16,
    pub activity: Activity,
    pub uid: Option<u32>,
}

/// What the processor remembers of a trace it released: per span, its agent and nearest tool
/// (so late spans below it are judged in context), and the chain's steps.
#[derive(Clone, Debug, Default)]
pub struct Earlier {
    /// `(span id, agent, tool)`, in release order.
    pub spans: Vec<([u8; 8], Option<usize>, Option<usize>)>,
    pub tools: Vec<EarlierTool>,
    pub steps: Vec<EarlierStep>,
}

impl Earlier {
    fn find(&self, span_id: &[u8]) -> Option<(Option<usize>, Option<usize>)> {
        let id: [u8; 8] = span_id.try_into().ok()?;
        self.spans
            .iter()
            .rev()
            .find(|(s, _, _)| *s == id)
            .map(|(_, a, t)| (*a, *t))
    }

    /// Spans remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Remembers what `judged` found about `items` (moving the activities out of it).
    pub fn remember(&mut self, items: &[View<'_>], judged: &mut Judged<'_>) {
        let activities = std::mem::take(&mut judged.activities);
        let mut local_tools: Vec<Option<usize>> = vec![None; items.len()];
        for (i, act) in activities.into_iter().enumerate() {
            let span = &*items[i].span;
            if let Activity::Tool { name } = &act {
                local_tools[i] = Some(self.tools.len());
                self.tools.push(EarlierTool {
                    name: name.clone(),
                    span_id: span.span_id.clone(),
                    component: judged.verdicts[i].component.map(|(r, _)| r.to_owned()),
                });
            }
            if is_step(&act, items[i].is_kernel()) {
                self.steps.push(EarlierStep {
                    start: span.start_time_unix_nano,
                    depth: u16::try_from(depth(&judged.parents, i)).unwrap_or(u16::MAX),
                    activity: act,
                    uid: judged.uids[i],
                });
            }
        }
        for (i, it) in items.iter().enumerate() {
            let Ok(id) = <[u8; 8]>::try_from(it.span.span_id.as_slice()) else {
                continue;
            };
            let tool = judged.tools[i].and_then(|t| match t {
                ToolAt::Here(h) => local_tools[h],
                ToolAt::Earlier(e) => Some(e),
            });
            self.spans.push((id, judged.agents[i], tool));
        }
    }
}

/// Whether a span is a step of an alert's chain (connections and captured requests are shown
/// by the application's own spans; plain internal spans, DNS and listeners are not steps).
#[must_use]
pub fn is_step(act: &Activity, kernel: bool) -> bool {
    match act {
        Activity::Agent { .. }
        | Activity::Tool { .. }
        | Activity::Db { .. }
        | Activity::File { .. }
        | Activity::Exec { .. } => true,
        Activity::Model { .. } | Activity::Http { .. } => !kernel,
        Activity::Connect { .. }
        | Activity::Dns { .. }
        | Activity::Accept { .. }
        | Activity::Other => false,
    }
}

/// How many spans of the trace are above span `i`.
#[must_use]
pub fn depth(parents: &[Option<usize>], mut i: usize) -> usize {
    let mut d = 0;
    while let Some(p) = parents[i] {
        d += 1;
        i = p;
        if d > parents.len() {
            break;
        }
    }
    d
}

/// Judges `items` (one trace) and writes the `aibom.*` attributes onto their spans.
pub fn judge<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [Item],
) -> Judged<'b> {
    let mut views: Vec<View<'_>> = items.iter_mut().map(Item::view).collect();
    judge_views(bom, settings, pids, &mut views, None, None)
}

/// The learned baseline the judge checks against, and the wall clock (never a span's time,
/// which its sender chooses).
pub struct Learning<'x> {
    pub baseline: &'x mut Baseline,
    pub now: SystemTime,
}

/// Judges `items` (one trace, or the late spans of a released one with `earlier`) and writes
/// the `aibom.*` attributes onto their spans.
pub fn judge_views<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [View<'_>],
    earlier: Option<&Earlier>,
    mut learning: Option<Learning<'_>>,
) -> Judged<'b> {
    let n = items.len();
    let activities: Vec<Activity> = items
        .iter()
        .map(|it| span::classify(&it.span.attributes, &it.span.name, it.is_kernel()))
        .collect();
    let pid_list: Vec<Option<u32>> = items.iter().map(pid_of).collect();
    let uids = learn_processes(pids, items, &activities, &pid_list);
    let parents = parents(items);
    let outer = outer(items, &parents, earlier);
    let own_tools: Vec<Option<ToolAt>> = activities
        .iter()
        .enumerate()
        .map(|(i, a)| matches!(a, Activity::Tool { .. }).then_some(ToolAt::Here(i)))
        .collect();
    let outer_tools: Vec<Option<ToolAt>> = outer
        .iter()
        .map(|o| o.and_then(|(_, t)| t).map(ToolAt::Earlier))
        .collect();
    let tools = inherit(&parents, &own_tools, &outer_tools);
    let agents = agents(bom, pids, items, &activities, &parents, &outer, &pid_list);
    let uids: Vec<Option<u32>> = uids
        .into_iter()
        .zip(&pid_list)
        .map(|(u, p)| u.or_else(|| p.and_then(|p| pids.uid_of(p))))
        .collect();
    let tool_name = |t: Option<ToolAt>| -> Option<&str> {
        match t? {
            ToolAt::Here(h) => match &activities[h] {
                Activity::Tool { name } => Some(name.as_str()),
                _ => None,
            },
            ToolAt::Earlier(e) => earlier.map(|x| x.tools[e].name.as_str()),
        }
    };
    let envs = env_identities(bom, pids, &activities, &pid_list);
    let mut verdicts = Vec::with_capacity(n);
    for i in 0..n {
        let tool = tool_name(tools[i]);
        let resolved = pid_list[i].map_or(&[][..], |p| pids.names_of(p));
        let resolved_act;
        let act = match &activities[i] {
            a @ (Activity::Connect { dest } | Activity::Http { dest, .. })
                if dest.name.is_none() && !resolved.is_empty() =>
            {
                let mut a = a.clone();
                add_resolved(&mut a, resolved);
                resolved_act = a;
                &resolved_act
            }
            a => a,
        };
        let mut v = match agents[i] {
            Some(agent) => Judge {
                bom,
                settings,
                agent: &bom.agents[agent].bom_ref,
            }
            .verdict(act, tool, &items[i].span.attributes),
            None => shadow(settings, act, &items[i].span.attributes),
        };
        v.agent = agents[i].map(|a| bom.agents[a].bom_ref.as_str());
        if let (Some(agent), Some(l)) = (v.agent, learning.as_mut()) {
            let _ = against_baseline(
                l,
                agent,
                settings,
                act,
                tool,
                &items[i].span.attributes,
                &mut v,
            );
        }
        verdicts.push(v);
    }
    let findings = findings(items, &activities, &verdicts, &tools);
    for (i, (it, v)) in items.iter_mut().zip(&verdicts).enumerate() {
        if it.stale {
            strip(&mut it.span.attributes);
        }
        let identities = envs.get(i).map_or(&[][..], Vec::as_slice);
        put(&mut it.span.attributes, v, &bom.serial_number, identities);
    }
    Judged {
        activities,
        verdicts,
        parents,
        tools,
        agents,
        uids,
        pids: pid_list,
        envs,
        findings,
    }
}

/// For spans that use an identity (agent runs, model calls, tools, requests, connections,
/// queries, programs), the `env:` identities of the BOM their process presents.
fn env_identities(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    activities: &[Activity],
    pid_list: &[Option<u32>],
) -> Vec<Vec<String>> {
    let wanted = bom.env_names();
    if wanted.is_empty() {
        return Vec::new();
    }
    activities
        .iter()
        .zip(pid_list)
        .map(|(act, pid)| match (act, pid) {
            (
                Activity::Agent { .. }
                | Activity::Model { .. }
                | Activity::Tool { .. }
                | Activity::Http { .. }
                | Activity::Connect { .. }
                | Activity::Db { .. }
                | Activity::Exec { .. },
                Some(pid),
            ) => pids.env_of(*pid, wanted).to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

/// What the kernel says about processes (parents, users, names resolved) goes into `pids`;
/// returns each span's user as the span says it.
fn learn_processes(
    pids: &mut PidMap,
    items: &[View<'_>],
    activities: &[Activity],
    pid_list: &[Option<u32>],
) -> Vec<Option<u32>> {
    let uids: Vec<Option<u32>> = items.iter().map(|it| it.uid).collect();
    for (i, it) in items.iter().enumerate() {
        let Some(pid) = pid_list[i] else { continue };
        if it.is_kernel() {
            let parent = attr_int(&it.span.attributes, "process.parent_pid")
                .and_then(|p| u32::try_from(p).ok());
            pids.learn(pid, parent, uids[i]);
        }
        if let Activity::Dns { name } = &activities[i] {
            pids.resolved(pid, name);
        }
    }
    uids
}

/// For spans whose parent is not among `items`: the (agent, tool) of that parent as
/// remembered from an earlier release.
fn outer(
    items: &[View<'_>],
    parents: &[Option<usize>],
    earlier: Option<&Earlier>,
) -> Vec<Option<(Option<usize>, Option<usize>)>> {
    items
        .iter()
        .zip(parents)
        .map(|(it, p)| match (p, earlier) {
            (None, Some(e)) if !it.span.parent_span_id.is_empty() => {
                e.find(&it.span.parent_span_id)
            }
            _ => None,
        })
        .collect()
}

/// Checks what a span of `agent` did against the learned baseline (learning it while the
/// baseline learns) and adds the flags raised to its verdict.
fn against_baseline(
    l: &mut Learning<'_>,
    agent: &str,
    settings: &JudgeSettings,
    act: &Activity,
    tool: Option<&str>,
    attrs: &[KeyValue],
    v: &mut Verdict<'_>,
) -> Option<()> {
    let dest = |d: &Dest| -> Option<String> {
        if d.port == Some(53) || settings.ignore.iter().any(|e| e.matches(d)) {
            return None;
        }
        let mut d = d.clone();
        if d.name.is_none() {
            d.name = d.resolved.first().cloned();
        }
        Some(d.host_port())
    };
    let target;
    let what = match act {
        Activity::Http { dest: d, .. } | Activity::Connect { dest: d } => {
            target = dest(d);
            Behaviour::Destination {
                dest: target.as_deref()?,
                tool,
                payload: attr_int(attrs, "http.request.body.size")
                    .and_then(|b| u64::try_from(b).ok()),
            }
        }
        Activity::Db { dest: Some(d), .. } => {
            target = dest(d);
            Behaviour::Destination {
                dest: target.as_deref()?,
                tool,
                payload: None,
            }
        }
        Activity::Model { model: Some(m), .. } => Behaviour::Model { model: m },
        Activity::Exec { path } => Behaviour::Exec { path },
        Activity::File { path } => Behaviour::File { path },
        _ => return None,
    };
    let flags = l.baseline.observe(agent, &what, l.now);
    if flags.is_empty() {
        return None;
    }
    let reasons: Vec<String> = flags
        .iter()
        .map(|f| l.baseline.reason(agent, f, &what))
        .collect();
    let reasons = reasons.join("; ");
    v.reason = Some(match v.reason.take() {
        Some(r) => format!("{r}; {reasons}"),
        None => reasons,
    });
    v.drift.extend(flags);
    v.subject.get_or_insert_with(|| match what {
        Behaviour::Destination { dest, .. } => dest.to_owned(),
        Behaviour::Model { model } => model.to_owned(),
        Behaviour::Exec { path } | Behaviour::File { path } => path.to_owned(),
    });
    Some(())
}

/// The parent of each span among `items`, by span id.
fn parents(items: &[View<'_>]) -> Vec<Option<usize>> {
    // Traces are small: comparing every pair beats an index for the usual sizes.
    let mut index: Vec<(&[u8], usize)> = Vec::new();
    if items.len() > 32 {
        index = items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.span.span_id.as_slice(), i))
            .collect();
        index.sort_unstable();
    }
    let find = |id: &[u8]| -> Option<usize> {
        if index.is_empty() {
            items.iter().position(|x| x.span.span_id == id)
        } else {
            let k = index.binary_search_by(|(s, _)| (*s).cmp(id)).ok()?;
            Some(index[k].1)
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let p = it.span.parent_span_id.as_slice();
            if p.is_empty() {
                return None;
            }
            find(p).filter(|p| *p != i)
        })
        .collect()
}

/// The declared agent each span runs under: named by the span or its resource, inherited from
/// the spans above it (here or released earlier), or (kernel spans of child processes) from
/// the process's ancestors.
fn agents(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    items: &[View<'_>],
    activities: &[Activity],
    parents: &[Option<usize>],
    outer: &[Option<(Option<usize>, Option<usize>)>],
    pid_list: &[Option<u32>],
) -> Vec<Option<usize>> {
    // The resource's own agent, once per resource.
    let mut by_resource: Vec<(*const Resource, Option<usize>)> = Vec::new();
    let own: Vec<Option<usize>> = items
        .iter()
        .zip(activities)
        .map(|(it, act)| {
            if let Some(a) = own_agent(bom, &it.span.attributes, act) {
                return Some(a);
            }
            let key = it.resource.map_or(std::ptr::null(), std::ptr::from_ref);
            if let Some((_, a)) = by_resource.iter().find(|(k, _)| *k == key) {
                return *a;
            }
            let a = agent_by_attrs(bom, it.resource_attrs());
            by_resource.push((key, a));
            a
        })
        .collect();
    let outer_agents: Vec<Option<usize>> = outer.iter().map(|o| o.and_then(|(a, _)| a)).collect();
    let mut agents = inherit(parents, &own, &outer_agents);
    let mut last: Option<(u32, usize)> = None;
    for (i, a) in agents.iter().enumerate() {
        if let (Some(a), Some(pid)) = (a, pid_list[i])
            && last != Some((pid, *a))
        {
            pids.set_agent(pid, &bom.agents[*a].bom_ref);
            last = Some((pid, *a));
        }
    }
    for (i, a) in agents.iter_mut().enumerate() {
        if a.is_none()
            && let Some(pid) = pid_list[i]
        {
            *a = pids
                .agent_of(pid)
                .and_then(|r| bom.agents.iter().position(|x| x.bom_ref == r));
        }
    }
    agents
}

fn pid_of(it: &View<'_>) -> Option<u32> {
    it.pid.or_else(|| {
        attr_int(it.resource_attrs(), "process.pid").and_then(|p| u32::try_from(p).ok())
    })
}

/// For each span, the value of the nearest span above it (or itself) that has one; a span
/// whose parent is not here starts from `outer`.
fn inherit<T: Copy>(
    parents: &[Option<usize>],
    own: &[Option<T>],
    outer: &[Option<T>],
) -> Vec<Option<T>> {
    let mut out: Vec<Option<Option<T>>> = vec![None; own.len()];
    let mut path = Vec::new();
    for start in 0..own.len() {
        path.clear();
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
            if at.is_none() {
                found = outer[i];
            }
        }
        for &i in &path {
            out[i] = Some(found);
        }
    }
    out.into_iter().map(Option::flatten).collect()
}

/// The declared agent a span names by its own attributes.
fn own_agent(bom: &DeclaredBom, attrs: &[KeyValue], act: &Activity) -> Option<usize> {
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
    agent_by_attrs(bom, attrs)
}

/// The declared agent whose workload a span's or resource's attributes say it is.
fn agent_by_attrs(bom: &DeclaredBom, attrs: &[KeyValue]) -> Option<usize> {
    bom.agents.iter().position(|a| {
        if a.matchers.is_empty() {
            ["service.name", "gen_ai.agent.name", "agent.name"]
                .iter()
                .any(|k| attr(attrs, k) == Some(a.name.as_str()))
        } else {
            a.matchers
                .iter()
                .any(|(k, g)| attr(attrs, k).is_some_and(|v| g.matches(v)))
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
fn shadow(settings: &JudgeSettings, act: &Activity, attrs: &[KeyValue]) -> Verdict<'static> {
    let undeclared = |kind| Verdict {
        component: Some(("", kind)),
        declared: Some(false),
        ..Verdict::default()
    };
    match act {
        Activity::Model { .. } => undeclared(Kind::Model),
        Activity::Http { dest, .. }
            if span::is_llm_traffic(attrs, dest)
                && !settings.ignore.iter().any(|e| e.matches(dest)) =>
        {
            undeclared(Kind::Service)
        }
        Activity::Exec { path } if span::is_model_server(path) => undeclared(Kind::Process),
        Activity::Accept { port } => {
            let exe = attr(attrs, "process.executable.path").unwrap_or("");
            if span::is_model_server(exe) || port.is_some_and(span::is_model_server_port) {
                undeclared(Kind::Service)
            } else {
                Verdict::default()
            }
        }
        _ => Verdict::default(),
    }
}

/// Groups drift into findings: one per agent, tool span, flags and subject.
fn findings(
    items: &[View<'_>],
    activities: &[Activity],
    verdicts: &[Verdict<'_>],
    tools: &[Option<ToolAt>],
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for (i, v) in verdicts.iter().enumerate() {
        let (Some(agent), false) = (v.agent, v.drift.is_empty()) else {
            continue;
        };
        let subject = v.subject.clone().unwrap_or_default();
        let existing = out.iter_mut().find(|f| {
            f.agent == agent && f.tool == tools[i] && f.kinds == v.drift && f.subject == subject
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
                agent: agent.to_owned(),
                tool: tools[i],
                subject,
            }),
        }
    }
    out
}

/// Which span of a finding the alert points at: the application's span of the request (the
/// kernel events hang under it), else the captured request, else the connection.
fn rank(items: &[View<'_>], activities: &[Activity], i: usize) -> (u8, u64) {
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

/// Replaces any `aibom.*` attributes with the verdict's (contract §3).
pub fn write(attrs: &mut Vec<KeyValue>, v: &Verdict<'_>, serial: &str) {
    if attrs.iter().any(|kv| kv.key.starts_with("aibom.")) {
        strip(attrs);
    }
    put(attrs, v, serial, &[]);
}

fn strip(attrs: &mut Vec<KeyValue>) {
    attrs.retain(|kv| !kv.key.starts_with("aibom."));
}

/// Adds the verdict's `aibom.*` attributes (none are there), and the `env:` identities
/// (variable names) the span's process presents.
fn put(attrs: &mut Vec<KeyValue>, v: &Verdict<'_>, serial: &str, identities: &[String]) {
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
