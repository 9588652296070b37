//! Judging one trace against the declared BOM: which agent each span runs under, which declared
//! component it uses, and which drift flags it raises (contract §3). Pure: the processor calls
//! [`judge_views`] on a trace (or on the late spans of one it released, with what it remembers
//! of it as [`Earlier`]) and writes the result onto the spans. What a span is to the judge is in
//! [`crate::view`], what it concludes in [`crate::verdict`] and [`crate::judged`], and the rules
//! of one declared workload in [`crate::rules`].

use std::{borrow::Cow, time::SystemTime};

use opentelemetry_proto::tonic::{common::v1::KeyValue, resource::v1::Resource};

use runbom_event::semconv::{
    AGENT_NAME, GEN_AI_AGENT_NAME, HTTP_REQUEST_BODY_SIZE, PROCESS_EXECUTABLE_PATH,
    PROCESS_PARENT_PID, SERVICE_NAME,
};

use crate::{
    baseline::{Baseline, Behaviour},
    bom::{DeclaredBom, Kind},
    endpoint::Dest,
    judged::Memo,
    pids::PidMap,
    rules::Judge,
    span::{self, Activity, attr, attr_int},
    verdict::write_all,
};
// What the judge takes and gives, named where callers look for it (`judge::JudgeSettings`).
pub use crate::{
    judged::{
        Earlier, EarlierStep, EarlierTool, Finding, Judged, Scratch, ToolAt, ToolInfo, depth,
        is_step,
    },
    verdict::{JudgeSettings, Verdict, Verdicts, flag, write},
    view::{Item, ResourceHeader, ScopeHeader, View},
};

/// Judges `items` (one trace) and writes the `aibom.*` attributes onto their spans.
pub fn judge<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [Item],
) -> Judged<'b> {
    let mut views: Vec<View<'_>> = items.iter_mut().map(Item::view).collect();
    judge_views(
        bom,
        settings,
        pids,
        &mut views,
        None,
        None,
        &mut Scratch::default(),
    )
}

/// The learned baseline the judge checks against, and the wall clock (never a span's time,
/// which its sender chooses).
pub struct Learning<'x> {
    pub baseline: &'x mut Baseline,
    pub now: SystemTime,
}

/// Judges `items` (one trace, or the late spans of a released one with `earlier`) and writes
/// the `aibom.*` attributes onto their spans. The vectors of what it returns come from
/// `scratch` ([`Judged::recycle`] gives them back).
pub fn judge_views<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [View<'_>],
    earlier: Option<&Earlier>,
    learning: Option<Learning<'_>>,
    scratch: &mut Scratch,
) -> Judged<'b> {
    let mut memo = Memo::with_room(std::mem::take(&mut scratch.verdicts));
    let judged = judge_unwritten(
        bom, settings, pids, items, earlier, learning, scratch, &mut memo,
    );
    write_all(items, &judged.verdicts, &bom.serial_number, &judged.envs);
    judged
}

/// [`judge_views`] without writing the verdicts onto the spans; the verdicts of `memo` (reached
/// against `bom`) are taken as they are.
#[allow(
    clippy::too_many_arguments,
    reason = "what is known of the trace so far, and the scratch vectors"
)]
pub(crate) fn judge_unwritten<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    pids: &mut PidMap,
    items: &mut [View<'_>],
    earlier: Option<&Earlier>,
    mut learning: Option<Learning<'_>>,
    scratch: &mut Scratch,
    memo: &mut Memo<'b>,
) -> Judged<'b> {
    let n = items.len();
    let mut activities = std::mem::take(&mut scratch.activities);
    let texts = &mut scratch.texts;
    activities.extend(
        items.iter().map(|it| {
            span::classify_with(&it.span.attributes, &it.span.name, it.is_kernel(), texts)
        }),
    );
    let mut pid_list = std::mem::take(&mut scratch.pids);
    pid_list.extend(items.iter().map(View::pid));
    let mut uids = std::mem::take(&mut scratch.uids);
    learn_processes(pids, items, &activities, &pid_list, &mut uids);
    let parents = parents(items, std::mem::take(&mut scratch.parents));
    let outer = outer(items, &parents, earlier);
    let outer_at = |i: usize| outer.get(i).copied().flatten();
    let tools = inherit(
        &parents,
        |i| matches!(activities[i], Activity::Tool { .. }).then_some(ToolAt::Here(i)),
        |i| outer_at(i).and_then(|(_, t)| t).map(ToolAt::Earlier),
        &mut scratch.known,
        std::mem::take(&mut scratch.tools),
    );
    let agents = agents(
        bom,
        pids,
        items,
        &activities,
        &parents,
        &outer_at,
        &pid_list,
        &mut scratch.known,
        std::mem::take(&mut scratch.agents),
        &mut memo.by_resource,
    );
    for (u, p) in uids.iter_mut().zip(&pid_list) {
        if u.is_none() {
            *u = p.and_then(|p| pids.uid_of(p));
        }
    }
    let tool_name = |t: Option<ToolAt>| -> Option<&str> {
        match t? {
            ToolAt::Here(h) => match &activities[h] {
                Activity::Tool { name } => Some(name.as_str()),
                _ => None,
            },
            ToolAt::Earlier(e) => earlier.map(|x| x.tools[e].name.as_str()),
        }
    };
    let envs = env_identities(
        bom,
        pids,
        &activities,
        &pid_list,
        std::mem::take(&mut scratch.envs),
    );
    let mut places = std::mem::take(&mut scratch.places);
    places.reserve(n);
    for i in 0..n {
        let tool = tool_name(tools[i]);
        let resolved = pid_list[i].map_or(&[][..], |p| pids.names_of(p));
        let act = with_resolved(&activities[i], resolved);
        let act = act.as_ref();
        let attrs = &items[i].span.attributes;
        let mut k = memo.verdict(agents[i], act, || {
            judge_one(bom, settings, agents[i], act, tool, attrs)
        });
        if let (Some(agent), Some(l)) = (memo.get(k).agent, learning.as_mut())
            && let Some(v) = against_baseline(l, agent, settings, act, tool, attrs, memo.get(k))
        {
            // No longer the memo's verdict: the span's own.
            k = memo.add(v);
        }
        places.push(k);
    }
    let verdicts = memo.verdicts(places);
    let (findings, finding_of) = findings(
        items,
        &activities,
        &verdicts,
        &tools,
        std::mem::take(&mut scratch.findings),
        std::mem::take(&mut scratch.finding_of),
    );
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
        finding_of,
    }
}

/// For spans that use an identity (agent runs, model calls, tools, requests, connections,
/// queries, programs), the `env:` identities of the BOM their process presents.
fn env_identities(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    activities: &[Activity],
    pid_list: &[Option<u32>],
    mut out: Vec<Vec<String>>,
) -> Vec<Vec<String>> {
    let wanted = bom.env_names();
    if wanted.is_empty() {
        return out;
    }
    out.extend(
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
            }),
    );
    out
}

/// What the kernel says about processes (parents, users, names resolved) goes into `pids`;
/// each span's user as the span says it goes into `uids`.
fn learn_processes(
    pids: &mut PidMap,
    items: &[View<'_>],
    activities: &[Activity],
    pid_list: &[Option<u32>],
    uids: &mut Vec<Option<u32>>,
) {
    uids.extend(items.iter().map(View::uid));
    for (i, it) in items.iter().enumerate() {
        let Some(pid) = pid_list[i] else { continue };
        if it.is_kernel() {
            let parent = attr_int(&it.span.attributes, PROCESS_PARENT_PID)
                .and_then(|p| u32::try_from(p).ok());
            pids.learn(pid, parent, uids[i]);
        }
        if let Activity::Dns { name } = &activities[i] {
            pids.resolved(pid, name);
        }
    }
}

/// For spans whose parent is not among `items`: the (agent, tool) of that parent as
/// remembered from an earlier release (empty without an earlier release).
fn outer(
    items: &[View<'_>],
    parents: &[Option<usize>],
    earlier: Option<&Earlier>,
) -> Vec<Option<(Option<usize>, Option<usize>)>> {
    if earlier.is_none() {
        return Vec::new();
    }
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
/// baseline learns): `verdict` with the flags raised added, if any were (copied only then).
fn against_baseline<'b>(
    l: &mut Learning<'_>,
    agent: &str,
    settings: &JudgeSettings,
    act: &Activity,
    tool: Option<&str>,
    attrs: &[KeyValue],
    verdict: &Verdict<'b>,
) -> Option<Verdict<'b>> {
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
                payload: attr_int(attrs, HTTP_REQUEST_BODY_SIZE)
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
    let mut v = verdict.clone();
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
    Some(v)
}

/// The parent of each span among `items`, by span id, in `out` (empty).
fn parents(items: &[View<'_>], mut out: Vec<Option<usize>>) -> Vec<Option<usize>> {
    // Kernel log records (and requests of root spans only) have no parents to look for.
    if items.iter().all(|it| it.span.parent_span_id.is_empty()) {
        out.resize(items.len(), None);
        return out;
    }
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
    out.extend(items.iter().enumerate().map(|(i, it)| {
        let p = it.span.parent_span_id.as_slice();
        if p.is_empty() {
            return None;
        }
        find(p).filter(|p| *p != i)
    }));
    out
}

/// The declared agent each span runs under: named by the span or its resource, inherited from
/// the spans above it (here or released earlier), or (kernel spans of child processes) from
/// the process's ancestors.
#[allow(
    clippy::too_many_arguments,
    reason = "what is known of the trace so far, and the scratch vectors"
)]
fn agents(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    items: &[View<'_>],
    activities: &[Activity],
    parents: &[Option<usize>],
    outer: &dyn Fn(usize) -> Option<(Option<usize>, Option<usize>)>,
    pid_list: &[Option<u32>],
    known: &mut Vec<bool>,
    out: Vec<Option<usize>>,
    resources: &mut Vec<(usize, Option<usize>)>,
) -> Vec<Option<usize>> {
    // The resource's own agent, once per resource (of the request: `resources` is kept).
    let by_resource = std::cell::RefCell::new(std::mem::take(resources));
    let own = |i: usize| {
        let it = &items[i];
        if let Some(a) = own_agent(bom, &it.span.attributes, &activities[i], it.is_runbom()) {
            return Some(a);
        }
        let key = it
            .resource
            .map_or(0, |r| std::ptr::from_ref::<Resource>(r) as usize);
        if let Some((_, a)) = by_resource.borrow().iter().find(|(k, _)| *k == key) {
            return *a;
        }
        let a = agent_by_attrs(bom, it.resource_attrs(), true);
        by_resource.borrow_mut().push((key, a));
        a
    };
    let mut agents = inherit(parents, own, |i| outer(i).and_then(|(a, _)| a), known, out);
    *resources = by_resource.into_inner();
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

/// For each span, the value of the nearest span above it (or itself) that has one (`own`); a
/// span whose parent is not here starts from `outer`. Each span's own value is asked once.
/// `known` (which spans' value is known yet) and `out` are scratch vectors, filled anew.
fn inherit<T: Copy>(
    parents: &[Option<usize>],
    own: impl Fn(usize) -> Option<T>,
    outer: impl Fn(usize) -> Option<T>,
    known: &mut Vec<bool>,
    mut out: Vec<Option<T>>,
) -> Vec<Option<T>> {
    let n = parents.len();
    known.clear();
    known.resize(n, false);
    out.clear();
    out.resize(n, None);
    for start in 0..n {
        // Up to the first span whose value is known or its own ...
        let (mut at, mut steps, mut found) = (Some(start), 0, None);
        let mut stop = None;
        while let Some(i) = at {
            if known[i] {
                found = out[i];
                stop = Some(i);
                break;
            }
            if let Some(v) = own(i) {
                found = Some(v);
                out[i] = found;
                known[i] = true;
                stop = Some(i);
                break;
            }
            steps += 1;
            if steps > n {
                break; // a cycle in bad input
            }
            at = parents[i];
            if at.is_none() {
                found = outer(i);
            }
        }
        // ... then the spans passed on the way get that value.
        let mut at = Some(start);
        for _ in 0..steps {
            let Some(i) = at.filter(|i| Some(*i) != stop) else {
                break;
            };
            out[i] = found;
            known[i] = true;
            at = parents[i];
        }
    }
    out
}

/// The declared agent a span names by its own attributes. On a client's span (`checked`
/// false) only its agent names count: `runbom:match` on anything else (`k8s.*`, `container.*`,
/// `process.*`) is read where runbom put or checked it, on the resource and on its own spans.
fn own_agent(
    bom: &DeclaredBom,
    attrs: &[KeyValue],
    act: &Activity,
    checked: bool,
) -> Option<usize> {
    if let Activity::Agent { name: Some(name) } = act
        && let Some(i) = bom.agents.iter().position(|a| {
            a.name == *name
                || a.matchers.iter().any(|(k, g)| {
                    matches!(k.as_str(), GEN_AI_AGENT_NAME | AGENT_NAME) && g.matches(name)
                })
        })
    {
        return Some(i);
    }
    agent_by_attrs(bom, attrs, checked)
}

/// The keys that name an agent (a client's word wherever they are).
const NAME_KEYS: [&str; 3] = [SERVICE_NAME, GEN_AI_AGENT_NAME, AGENT_NAME];

/// The declared agent whose workload a span's or resource's attributes say it is; with
/// `checked` false, by `runbom:match` on [`NAME_KEYS`] only.
fn agent_by_attrs(bom: &DeclaredBom, attrs: &[KeyValue], checked: bool) -> Option<usize> {
    bom.agents.iter().position(|a| {
        if a.matchers.is_empty() {
            NAME_KEYS
                .iter()
                .any(|k| attr(attrs, k) == Some(a.name.as_str()))
        } else {
            a.matchers.iter().any(|(k, g)| {
                (checked || NAME_KEYS.contains(&k.as_str()))
                    && attr(attrs, k).is_some_and(|v| g.matches(v))
            })
        }
    })
}

/// The activity with the names its process resolved for a destination that has no name.
fn with_resolved<'x>(act: &'x Activity, names: &[String]) -> Cow<'x, Activity> {
    match act {
        Activity::Connect { dest } | Activity::Http { dest, .. }
            if dest.name.is_none() && !names.is_empty() =>
        {
            let mut a = act.clone();
            add_resolved(&mut a, names);
            Cow::Owned(a)
        }
        _ => Cow::Borrowed(act),
    }
}

/// The verdict on one span: by its agent's rules, or (no declared agent) as shadow AI.
fn judge_one<'b>(
    bom: &'b DeclaredBom,
    settings: &JudgeSettings,
    agent: Option<usize>,
    act: &Activity,
    tool: Option<&str>,
    attrs: &[KeyValue],
) -> Verdict<'b> {
    let mut v = match agent {
        Some(a) => Judge {
            bom,
            settings,
            agent: &bom.agents[a].bom_ref,
        }
        .verdict(act, tool, attrs),
        None => shadow(settings, act, attrs),
    };
    v.agent = agent.map(|a| bom.agents[a].bom_ref.as_str());
    v
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
            let exe = attr(attrs, PROCESS_EXECUTABLE_PATH).unwrap_or("");
            if span::is_model_server(exe) || port.is_some_and(span::is_model_server_port) {
                undeclared(Kind::Service)
            } else {
                Verdict::default()
            }
        }
        _ => Verdict::default(),
    }
}

/// Groups drift into findings: one per agent, tool span, flags and subject; and which finding
/// each span is in (`of`, empty, gets one entry per span).
fn findings<'b>(
    items: &[View<'_>],
    activities: &[Activity],
    verdicts: &Verdicts<'b>,
    tools: &[Option<ToolAt>],
    mut out: Vec<Finding<'b>>,
    mut of: Vec<Option<u32>>,
) -> (Vec<Finding<'b>>, Vec<Option<u32>>) {
    fn subject<'v>(v: &'v Verdict<'_>) -> &'v str {
        v.subject.as_deref().unwrap_or_default()
    }
    of.resize(verdicts.len(), None);
    for (i, v) in verdicts.iter().enumerate() {
        let (Some(agent), false) = (v.agent, v.drift.is_empty()) else {
            continue;
        };
        let existing = out.iter_mut().find(|f| {
            // A finding's flags and subject are those of each of its spans: its offender's.
            let w = &verdicts[f.offender];
            f.agent == agent && f.tool == tools[i] && w.drift == v.drift && subject(w) == subject(v)
        });
        if let Some(f) = existing {
            of[i] = Some(f.id);
            if rank(items, activities, i) < rank(items, activities, f.offender) {
                f.offender = i;
            }
        } else {
            let id = u32::try_from(out.len()).unwrap_or(u32::MAX);
            of[i] = Some(id);
            out.push(Finding {
                offender: i,
                id,
                agent,
                tool: tools[i],
            });
        }
    }
    (fold_mcp_tool_into_call(out, verdicts), of)
}

/// An agent's tool that is an MCP server's tool raises two flags for one use: `undeclared_tool`
/// on its `execute_tool` span and `undeclared_mcp_tool` on the `tools/call` under it. They are
/// one finding, the MCP call's (the more precise: which server, and what the server did while
/// serving it); the tool span stays drifted and is a step of that finding's chain.
fn fold_mcp_tool_into_call<'b>(
    mut out: Vec<Finding<'b>>,
    verdicts: &Verdicts<'_>,
) -> Vec<Finding<'b>> {
    let kinds = |f: &Finding<'_>| verdicts[f.offender].drift.as_slice();
    let subject = |f: &Finding<'_>| verdicts[f.offender].subject.as_deref();
    if !out
        .iter()
        .any(|m| kinds(m).contains(&flag::UNDECLARED_MCP_TOOL))
    {
        return out;
    }
    let folded = |f: &Finding<'_>| {
        kinds(f) == [flag::UNDECLARED_TOOL]
            && f.tool.is_some()
            && out.iter().any(|m| {
                kinds(m).contains(&flag::UNDECLARED_MCP_TOOL)
                    && m.agent == f.agent
                    && m.tool == f.tool
                    && subject(m).unwrap_or_default() == subject(f).unwrap_or_default()
            })
    };
    let keep: Vec<bool> = out.iter().map(|f| !folded(f)).collect();
    let mut keep = keep.into_iter();
    out.retain(|_| keep.next().unwrap_or(true));
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
