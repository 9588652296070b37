//! What judging found about one trace ([`Judged`], grouped into [`Finding`]s) for the alerts'
//! chains, and what the processor remembers of a trace it released ([`Earlier`]), so that spans
//! arriving after it are judged in context.

use crate::{
    span::{Activity, Texts},
    verdict::{Verdict, Verdicts},
    view::View,
};

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
    pub verdicts: Verdicts<'b>,
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
    pub findings: Vec<Finding<'b>>,
    /// Of each span, the [`Finding::id`] of the finding it was grouped into (drifting spans
    /// only).
    pub finding_of: Vec<Option<u32>>,
}

/// The vectors judging fills for each trace, kept by the processor between traces (cleared,
/// not freed), so that the traces of a request do not each allocate them.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) activities: Vec<Activity>,
    /// The room of a verdicts' table, empty between requests; `Verdict<'static>` only so
    /// that it can be kept.
    pub(crate) verdicts: Vec<Verdict<'static>>,
    pub(crate) parents: Vec<Option<usize>>,
    pub(crate) tools: Vec<Option<ToolAt>>,
    pub(crate) agents: Vec<Option<usize>>,
    pub(crate) uids: Vec<Option<u32>>,
    pub(crate) pids: Vec<Option<u32>>,
    pub(crate) envs: Vec<Vec<String>>,
    /// Empty between traces; `Finding<'static>` only so that it can be kept.
    pub(crate) findings: Vec<Finding<'static>>,
    pub(crate) finding_of: Vec<Option<u32>>,
    /// Of each span, its verdict's place (see [`Verdicts`]).
    pub(crate) places: Vec<u32>,
    /// Which spans' value is known yet, while values are inherited.
    pub(crate) known: Vec<bool>,
    /// The strings of the last trace's activities, for the next one's.
    pub(crate) texts: Texts,
}

/// Verdicts already reached against one BOM, in one table (its places are the spans'
/// [`Verdicts`]), and for spans whose verdict is a function of their agent and activity alone
/// (agent runs, model calls, tools, MCP requests) the place of the verdict of the last few
/// (agent, activity) pairs: the spans of a request repeat a few of them, and matching a model
/// against the BOM's globs, or a tool or component against an agent's allowed refs, costs more
/// than comparing activities; a span that repeats one gets its place, not a copy.
#[derive(Debug, Default)]
pub(crate) struct Memo<'b> {
    /// (agent, activity, the verdict's place in `table`).
    entries: Vec<(usize, Activity, u32)>,
    /// The entry replaced next once full.
    next: usize,
    /// Every verdict reached (while [`Judged`] holds it, empty).
    table: Vec<Verdict<'b>>,
    /// The declared agent each resource seen names (by the resource's address: the memo
    /// lives while the resources it saw do, so no address is another resource's).
    pub(crate) by_resource: Vec<(usize, Option<usize>)>,
}

/// Verdicts a [`Memo`] keeps: the last this many distinct ones.
const MEMO: usize = 16;

impl<'b> Memo<'b> {
    /// A memo whose table takes `room` (emptied: [`Memo::into_room`] gives it back).
    pub(crate) fn with_room(room: Vec<Verdict<'static>>) -> Self {
        Self {
            table: emptied(room),
            ..Self::default()
        }
    }

    /// The room of the table, emptied, for the next memo.
    pub(crate) fn into_room(self) -> Vec<Verdict<'static>> {
        emptied(self.table)
    }

    /// Whether the verdict on `act` depends on nothing but it and its agent.
    fn kept(act: &Activity) -> bool {
        matches!(
            act,
            Activity::Agent { .. }
                | Activity::Model { .. }
                | Activity::Tool { .. }
                | Activity::Mcp { .. }
        )
    }

    /// The place of the verdict on `act` of `agent`: the one reached before, else `judge`'s
    /// (added, and kept for the next equal activity of that agent).
    pub(crate) fn verdict(
        &mut self,
        agent: Option<usize>,
        act: &Activity,
        judge: impl FnOnce() -> Verdict<'b>,
    ) -> u32 {
        let Some(agent) = agent.filter(|_| Self::kept(act)) else {
            return self.add(judge());
        };
        if let Some((_, _, k)) = self
            .entries
            .iter()
            .find(|(a, x, _)| *a == agent && x == act)
        {
            return *k;
        }
        let k = self.add(judge());
        let entry = (agent, act.clone(), k);
        if self.entries.len() < MEMO {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % MEMO;
        }
        k
    }

    /// The verdict at place `k`.
    pub(crate) fn get(&self, k: u32) -> &Verdict<'b> {
        &self.table[k as usize]
    }

    /// Adds `v` to the table: its place.
    pub(crate) fn add(&mut self, v: Verdict<'b>) -> u32 {
        // At most one verdict per span of a request, whose spans are counted in `u32`.
        let k = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(v);
        k
    }

    /// The verdicts of a trace's spans (`places`, filled with each one's place): the table
    /// goes with them until [`Memo::take_back`].
    pub(crate) fn verdicts(&mut self, places: Vec<u32>) -> Verdicts<'b> {
        Verdicts {
            table: std::mem::take(&mut self.table),
            of: places,
        }
    }

    /// Takes the table back from `judged`, for the next trace of the request.
    pub(crate) fn take_back(&mut self, judged: &mut Judged<'b>) {
        self.table = std::mem::take(&mut judged.verdicts.table);
    }
}

/// `v`, emptied (its room kept).
fn cleared<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    v
}

/// `v` emptied, as a vector of `U`: of values that borrow the BOM, one of values of any
/// lifetime, in place (the same layout, so the allocation is kept).
fn emptied<T, U>(v: Vec<T>) -> Vec<U> {
    cleared(v)
        .into_iter()
        .filter(|_| false)
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

impl Judged<'_> {
    /// Gives the vectors back to `scratch`, emptied, for the next trace.
    pub fn recycle(self, scratch: &mut Scratch) {
        let mut activities = self.activities;
        for act in activities.drain(..) {
            scratch.texts.recycle(act);
        }
        scratch.activities = activities;
        // (The table's room is the scratch's unless a memo took it back.)
        if self.verdicts.table.capacity() > 0 {
            scratch.verdicts = emptied(self.verdicts.table);
        }
        scratch.places = cleared(self.verdicts.of);
        scratch.parents = cleared(self.parents);
        scratch.tools = cleared(self.tools);
        scratch.agents = cleared(self.agents);
        scratch.uids = cleared(self.uids);
        scratch.pids = cleared(self.pids);
        scratch.envs = cleared(self.envs);
        scratch.findings = emptied(self.findings);
        scratch.finding_of = cleared(self.finding_of);
    }

    /// The drift flags of `f` (those of each of its spans).
    #[must_use]
    pub fn kinds(&self, f: &Finding<'_>) -> &[&'static str] {
        &self.verdicts[f.offender].drift
    }

    /// Why `f` drifted: the reason given on the span the alert points at.
    #[must_use]
    pub fn reason(&self, f: &Finding<'_>) -> &str {
        self.verdicts[f.offender]
            .reason
            .as_deref()
            .unwrap_or_default()
    }

    /// What `f` is about (the same for each of its spans).
    #[must_use]
    pub fn subject(&self, f: &Finding<'_>) -> &str {
        self.verdicts[f.offender]
            .subject
            .as_deref()
            .unwrap_or_default()
    }

    /// Whether span `i` is one of `f`'s.
    #[must_use]
    pub fn is_of(&self, f: &Finding<'_>, i: usize) -> bool {
        self.finding_of.get(i).copied().flatten() == Some(f.id)
    }

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
/// HTTP client span of one request), reported once. Its spans are those whose
/// [`Judged::finding_of`] is its `id`; its flags, reason and subject are its offender's
/// verdict's ([`Judged::kinds`], [`Judged::reason`], [`Judged::subject`]), not copied.
#[derive(Clone, Copy, Debug)]
pub struct Finding<'b> {
    /// The span the alert points at.
    pub offender: usize,
    /// Which finding of the trace it is, in the order they were found.
    pub id: u32,
    /// The declared agent (its ref, from the BOM).
    pub agent: &'b str,
    pub tool: Option<ToolAt>,
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
    /// The (agent, tool) remembered of the span `span_id`.
    pub(crate) fn find(&self, span_id: &[u8]) -> Option<(Option<usize>, Option<usize>)> {
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
        let mut activities = std::mem::take(&mut judged.activities);
        let mut local_tools: Vec<Option<usize>> = vec![None; items.len()];
        for (i, act) in activities.drain(..).enumerate() {
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
        // The emptied vector goes back, for the scratch.
        judged.activities = activities;
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
        | Activity::Exec { .. }
        | Activity::Mcp { .. } => true,
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
