//! Shadow AI (`shadow_ai`, contract §3/§4): AI-relevant activity of workloads no declared agent
//! covers. The processor judges the kernel log records that no trace claimed (one
//! `ResourceLogs` per program run, as the correlation emits them) and hands each record's
//! verdict here. Per undeclared workload (executable + container) this remembers, bounded, the
//! last steps it took (connections, requests, file accesses, programs) and, the first time in a
//! `window` that it uses an AI provider, model or model server, holds one alert for `hold`, so
//! that what the workload did right after shows in its chain too. Repeated use in the window is
//! counted, not alerted again.
//!
//! It is asked about every kernel log record no trace claimed, so what it does per record is
//! kept small: no allocation unless the workload is new or its step differs from the one
//! before (a step repeated by the same process is counted on the step already remembered), and
//! whether a process is a model server is asked once per process.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    hash::{Hash, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};

use crate::{
    alert,
    arguments::ArgumentPolicy,
    bom::{DeclaredBom, Kind},
    otlp::{any_str, kv_int, kv_str, kv_strs, rfc3339},
    pids::PidMap,
    scrub,
    span::{self, Activity, attr},
    verdict::{Verdict, flag},
};

/// Severity of a `shadow_ai` alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Severity {
    Info,
    #[default]
    Warn,
    Error,
}

impl Severity {
    /// `INFO`, `WARN` or `ERROR` (any case).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "INFO" => Some(Self::Info),
            "WARN" | "WARNING" => Some(Self::Warn),
            "ERROR" => Some(Self::Error),
            _ => None,
        }
    }

    fn otlp(self) -> (SeverityNumber, &'static str) {
        match self {
            Self::Info => (SeverityNumber::Info, "INFO"),
            Self::Warn => (SeverityNumber::Warn, "WARN"),
            Self::Error => (SeverityNumber::Error, "ERROR"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ShadowSettings {
    pub severity: Severity,
    /// A workload is alerted at most once per window; its uses in between are counted.
    pub window: Duration,
    /// Undeclared workloads remembered (least recently seen half forgotten past it).
    pub max_workloads: usize,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        Self {
            severity: Severity::Warn,
            window: Duration::from_hours(1),
            max_workloads: 4096,
        }
    }
}

/// Steps remembered per workload (the chain of an alert: these and the AI use).
const STEPS: usize = 63;
/// Processes remembered per workload (an alert is dropped when one of them turns out to be a
/// declared agent's).
const PIDS: usize = 16;

/// An undeclared workload: executable and container.
#[derive(Clone, Debug)]
struct Key {
    exe: String,
    container: Option<String>,
}

/// A workload's executable and container, owned ([`Key`]) or borrowed from a record (looked up
/// without allocating).
trait WorkloadKey {
    fn parts(&self) -> (&str, Option<&str>);
}

impl WorkloadKey for Key {
    fn parts(&self) -> (&str, Option<&str>) {
        (&self.exe, self.container.as_deref())
    }
}

impl WorkloadKey for (&str, Option<&str>) {
    fn parts(&self) -> (&str, Option<&str>) {
        *self
    }
}

impl<'a> Borrow<dyn WorkloadKey + 'a> for Key {
    fn borrow(&self) -> &(dyn WorkloadKey + 'a) {
        self
    }
}

impl Hash for dyn WorkloadKey + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl PartialEq for dyn WorkloadKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn WorkloadKey + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // As the borrowed form hashes: the map is looked up by either.
        (self as &dyn WorkloadKey).hash(h);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for Key {}

impl Key {
    fn describe(&self) -> String {
        let name = self.exe.rsplit('/').next().unwrap_or(&self.exe);
        let mut s = format!("{name} ({})", self.exe);
        if let Some(c) = &self.container {
            let short: String = c.chars().take(12).collect();
            let _ = write!(s, " in container {short}");
        }
        s
    }
}

#[derive(Debug)]
struct Step {
    time: u64,
    pid: u32,
    text: String,
    /// Times the same process did the same again right after (not remembered as steps of
    /// their own), and when it did so last.
    repeats: u64,
    last: u64,
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    time: u64,
    pid: u32,
    resource: Option<Resource>,
    what: Use,
    calls: u64,
}

/// What an AI use was: the component (provider, model, endpoint or model server).
#[derive(Clone, Debug, Default)]
struct Use {
    provider: Option<String>,
    model: Option<String>,
    endpoint: Option<String>,
    server: Option<String>,
}

impl Use {
    fn subject(&self) -> String {
        self.model
            .clone()
            .or_else(|| self.endpoint.clone())
            .or_else(|| self.server.clone())
            .or_else(|| self.provider.clone())
            .unwrap_or_default()
    }

    fn sentence(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.model {
            parts.push(format!("model {m}"));
        }
        if let Some(p) = &self.provider {
            parts.push(format!("provider {p}"));
        }
        if let Some(e) = &self.endpoint {
            parts.push(format!("LLM API {e}"));
        }
        if let Some(s) = &self.server {
            parts.push(format!("model server {s}"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Default)]
struct Workload {
    steps: VecDeque<Step>,
    pids: Vec<u32>,
    /// When the current window's alert was decided (`None`: never alerted).
    alerted_at: Option<Instant>,
    pending: Option<Pending>,
    seen: u64,
}

/// Counters on `/metrics`.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Undeclared workloads seen using AI (each counted once).
    pub workloads: AtomicU64,
    /// AI uses (model calls, LLM API requests, model-server activity) of undeclared workloads.
    pub calls: AtomicU64,
}

/// The undeclared workloads and their pending alerts.
#[derive(Debug, Default)]
pub struct Shadow {
    pub settings: ShadowSettings,
    /// How chain steps quote arguments (the alerts' policy).
    policy: ArgumentPolicy,
    /// The workloads, and where each is in it by its key.
    workloads: Vec<(Key, Workload)>,
    index: HashMap<Key, usize>,
    /// Where the last workload looked up is (records come grouped by process: the next record
    /// is most often the same workload's, found without hashing its key).
    last: Option<usize>,
    tick: u64,
    /// Alerts held now (so that the trace path pays nothing when there is none).
    pending: usize,
    /// The step of the record being observed, written here (no allocation per record).
    scratch: String,
    /// The last process asked about and whether it is a model server (by its executable or
    /// command line): records come grouped by process.
    server: Option<ServerMemo>,
}

#[derive(Debug)]
struct ServerMemo {
    pid: Option<u32>,
    exe: String,
    server: bool,
}

/// One judged kernel log record, as the shadow watch reads it.
pub struct Record<'x> {
    pub time: u64,
    pub pid: Option<u32>,
    pub activity: &'x Activity,
    pub verdict: &'x Verdict<'x>,
    pub attrs: &'x [KeyValue],
    pub resource: Option<&'x Resource>,
}

impl Shadow {
    #[must_use]
    pub fn new(settings: ShadowSettings, policy: ArgumentPolicy) -> Self {
        Self {
            settings,
            policy,
            ..Self::default()
        }
    }

    /// Takes one judged record of a process no trace claimed. `hold`: how long a new alert
    /// waits for what the workload does next.
    pub fn observe(&mut self, r: &Record<'_>, now: Instant, hold: Duration, stats: &ShadowStats) {
        if r.verdict.agent.is_some() {
            return;
        }
        let res = crate::otlp::resource_attrs(r.resource);
        let Some(exe) = attr(r.attrs, "process.executable.path")
            .or_else(|| attr(res, "process.executable.path"))
        else {
            return;
        };
        let used = self.ai_use(r, exe);
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let stepped = step(&mut text, r, &self.policy);
        if used.is_none() && !stepped {
            self.scratch = text;
            return;
        }
        let container = attr(r.attrs, "container.id").or_else(|| attr(res, "container.id"));
        let window = self.settings.window;
        let pid = r.pid.unwrap_or(0);
        let w = self.entry((exe, container));
        if stepped {
            remember_step(&mut w.steps, pid, r.time, &text);
        }
        let opened = used.is_some_and(|used| {
            if !w.pids.contains(&pid) {
                if w.pids.len() == PIDS {
                    w.pids.remove(0);
                }
                w.pids.push(pid);
            }
            stats.calls.fetch_add(1, Ordering::Relaxed);
            if w.alerted_at.is_none() {
                stats.workloads.fetch_add(1, Ordering::Relaxed);
            }
            match (&mut w.pending, w.alerted_at) {
                (Some(p), _) => {
                    p.calls += 1;
                    false
                }
                (None, Some(at)) if now.duration_since(at) < window => false,
                (None, _) => {
                    w.alerted_at = Some(now);
                    w.pending = Some(Pending {
                        due: now + hold,
                        time: r.time,
                        pid,
                        resource: r.resource.cloned(),
                        what: used,
                        calls: 1,
                    });
                    true
                }
            }
        });
        self.scratch = text;
        if opened {
            self.pending += 1;
        }
    }

    /// The AI use a record shows, if any.
    fn ai_use(&mut self, r: &Record<'_>, exe: &str) -> Option<Use> {
        let mut u = Use::default();
        match r.activity {
            Activity::Model {
                model, provider, ..
            } => {
                u.model.clone_from(model);
                u.provider.clone_from(provider);
            }
            Activity::Http { dest, .. } if r.verdict.declared == Some(false) => {
                u.model = attr(r.attrs, "gen_ai.request.model").map(str::to_owned);
                u.provider = span::provider_of_host(dest);
                u.endpoint = Some(scrub::url(&dest.display()));
            }
            Activity::Exec { path } if span::is_model_server(path) => {
                u.server = Some(path.clone());
            }
            _ => {
                // A model server's events, or any other AI-relevant undeclared activity.
                if !(r.verdict.declared == Some(false) || self.is_model_server(r, exe)) {
                    return None;
                }
                u.server = Some(exe.to_owned());
            }
        }
        Some(u)
    }

    /// Whether the record's process is a model server, by its executable or command line;
    /// asked again only when the process differs from the last one asked about.
    fn is_model_server(&mut self, r: &Record<'_>, exe: &str) -> bool {
        if let Some(m) = &self.server
            && m.pid == r.pid
            && m.exe == exe
        {
            return m.server;
        }
        let cmd = attr(r.attrs, "process.command_line").unwrap_or("");
        let server = span::is_model_server(exe) || span::is_model_server_command(cmd);
        let mut exe_owned = self.server.take().map(|m| m.exe).unwrap_or_default();
        exe_owned.clear();
        exe_owned.push_str(exe);
        self.server = Some(ServerMemo {
            pid: r.pid,
            exe: exe_owned,
            server,
        });
        server
    }

    /// The workload of `exe` in `container`, remembered from now on (allocating only the first
    /// time it is seen).
    fn entry(&mut self, (exe, container): (&str, Option<&str>)) -> &mut Workload {
        self.tick += 1;
        let tick = self.tick;
        let same = |i: &usize| {
            self.workloads
                .get(*i)
                .is_some_and(|(k, _)| k.parts() == (exe, container))
        };
        let key: &dyn WorkloadKey = &(exe, container);
        let at = if let Some(i) = self.last.filter(same) {
            i
        } else if let Some(&i) = self.index.get(key) {
            i
        } else {
            let cap = self.settings.max_workloads.max(2);
            if self.workloads.len() >= cap {
                let mut ages: Vec<u64> = self.workloads.iter().map(|(_, w)| w.seen).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                self.workloads
                    .retain(|(_, w)| w.seen > cut || w.pending.is_some());
                self.reindex();
            }
            let key = Key {
                exe: exe.to_owned(),
                container: container.map(str::to_owned),
            };
            self.index.insert(key.clone(), self.workloads.len());
            self.workloads.push((key, Workload::default()));
            self.workloads.len() - 1
        };
        self.last = Some(at);
        let w = &mut self.workloads[at].1;
        w.seen = tick;
        w
    }

    /// Rebuilds where each workload is, after some were forgotten.
    fn reindex(&mut self) {
        self.index.clear();
        for (i, (k, _)) in self.workloads.iter().enumerate() {
            self.index.insert(k.clone(), i);
        }
        self.last = None;
    }

    /// When the next held alert is due.
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        if self.pending == 0 {
            return None;
        }
        self.workloads
            .iter()
            .filter_map(|(_, w)| w.pending.as_ref().map(|p| p.due))
            .min()
    }

    /// The alerts due by `now` (all with `None`). An alert whose process turned out to be a
    /// declared agent's (its traces were judged since) is dropped, and the workload forgotten.
    pub fn due(
        &mut self,
        now: Option<Instant>,
        bom: &DeclaredBom,
        pids: &PidMap,
    ) -> Vec<ResourceLogs> {
        let mut out = Vec::new();
        if self.pending == 0 {
            return out;
        }
        let mut declared = Vec::new();
        for (key, w) in &mut self.workloads {
            let due = w
                .pending
                .as_ref()
                .is_some_and(|p| now.is_none_or(|n| p.due <= n));
            if !due {
                continue;
            }
            let Some(p) = w.pending.take() else { continue };
            self.pending -= 1;
            if pids.agent_of(p.pid).is_some() {
                declared.push(key.clone());
                continue;
            }
            out.push(alert_of(key, w, p, bom, self.settings.severity));
        }
        if !declared.is_empty() {
            self.workloads.retain(|(k, _)| !declared.contains(k));
            self.reindex();
        }
        out.sort_by_key(|r| {
            r.scope_logs
                .first()
                .and_then(|s| s.log_records.first())
                .map_or(0, |l| l.time_unix_nano)
        });
        out
    }
}

/// Remembers a workload's step: on the last step when the same process did the same again,
/// else as a new one (the oldest forgotten past [`STEPS`]).
fn remember_step(steps: &mut VecDeque<Step>, pid: u32, time: u64, text: &str) {
    if let Some(last) = steps.back_mut()
        && last.pid == pid
        && last.text == text
    {
        last.repeats += 1;
        last.last = time;
        return;
    }
    if steps.len() == STEPS {
        steps.pop_front();
    }
    steps.push_back(Step {
        time,
        pid,
        text: text.to_owned(),
        repeats: 0,
        last: time,
    });
}

/// What a record did, as a chain step (connections, requests, files, programs), written into
/// `text`; false when the record is not a step.
fn step(text: &mut String, r: &Record<'_>, policy: &ArgumentPolicy) -> bool {
    match r.activity {
        Activity::Connect { dest } if dest.port == Some(53) => false,
        Activity::File { path } if span::is_library_path(path) => false,
        Activity::File { .. }
            if attr(r.attrs, "runbom.file.flags").is_some_and(|f| f.contains("O_DIRECTORY")) =>
        {
            false
        }
        Activity::Connect { .. }
        | Activity::Http { .. }
        | Activity::File { .. }
        | Activity::Exec { .. }
        | Activity::Db { .. } => {
            if !alert::describe_into(text, r.activity, r.attrs, "", policy) {
                return false;
            }
            if let Some((_, Kind::Service | Kind::Model | Kind::Process)) = r.verdict.component
                && r.verdict.declared == Some(false)
            {
                text.push_str(" [AI]");
            }
            true
        }
        _ => false,
    }
}

fn alert_of(
    key: &Key,
    w: &Workload,
    p: Pending,
    bom: &DeclaredBom,
    severity: Severity,
) -> ResourceLogs {
    let who = key.describe();
    let what = p.what.sentence();
    let reason =
        format!("undeclared workload {who} used {what}; no declared agent covers it (shadow AI)");
    let mut chain: Vec<String> = w
        .steps
        .iter()
        .map(|s| {
            let mut line = format!(
                "{} {} (pid {}",
                rfc3339(s.time),
                scrub::text(&s.text, 2048),
                s.pid
            );
            if s.repeats > 0 {
                let _ = write!(line, "; {} times, the last at ", s.repeats + 1);
                crate::otlp::push_rfc3339(&mut line, s.last);
            }
            line.push(')');
            line
        })
        .collect();
    let at = w.steps.iter().filter(|s| s.time <= p.time).count();
    chain.insert(
        at,
        format!(
            "{} SHADOW AI {}: {who} used {what} (pid {})",
            rfc3339(p.time),
            flag::SHADOW_AI,
            p.pid
        ),
    );
    let (number, text) = severity.otlp();
    let mut attributes = vec![
        kv_str("event.name", "aibom.drift"),
        kv_strs("aibom.drift.kinds", &[flag::SHADOW_AI.to_owned()]),
        kv_str("aibom.drift.reason", &scrub::text(&reason, 1024)),
        kv_str("aibom.drift.subject", &scrub::text(&p.what.subject(), 512)),
        kv_str("aibom.component.kind", component_kind(&p.what)),
        kv_str("process.executable.path", &key.exe),
        kv_int("process.pid", p.pid.into()),
        kv_int(
            "aibom.shadow.calls",
            i64::try_from(p.calls).unwrap_or(i64::MAX),
        ),
    ];
    if let Some(m) = &p.what.model {
        attributes.push(kv_str("gen_ai.request.model", m));
    }
    if let Some(pr) = &p.what.provider {
        attributes.push(kv_str("gen_ai.provider.name", pr));
    }
    if let Some(e) = &p.what.endpoint {
        attributes.push(kv_str("url.full", e));
    }
    if let Some(c) = &key.container {
        attributes.push(kv_str("container.id", c));
    }
    crate::guardrail::push_attributes(
        &mut attributes,
        &[flag::SHADOW_AI],
        &bom.serial_number,
        false,
    );
    if !bom.serial_number.is_empty() {
        attributes.push(kv_str("aibom.bom.serial_number", &bom.serial_number));
    }
    for kv in crate::otlp::resource_attrs(p.resource.as_ref()) {
        let k = kv.key.as_str();
        if (k == "service.name" || k.starts_with("k8s.")) && !attributes.iter().any(|a| a.key == k)
        {
            attributes.push(kv.clone());
        }
    }
    attributes.push(kv_strs("aibom.chain", &chain));
    let record = LogRecord {
        time_unix_nano: p.time,
        observed_time_unix_nano: alert::now_ns(),
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(any_str(&chain.join("\n"))),
        attributes,
        event_name: "aibom.drift".into(),
        ..Default::default()
    };
    ResourceLogs {
        resource: p.resource,
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: runbom_event::semconv::scope::AIBOM.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            log_records: vec![record],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn component_kind(u: &Use) -> &'static str {
    if u.model.is_some() {
        Kind::Model.as_str()
    } else if u.server.is_some() && u.endpoint.is_none() {
        Kind::Process.as_str()
    } else {
        Kind::Service.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn a_workload_is_described_with_any_container_id() {
        // A container id is whatever the record said: cut by characters, never inside one.
        let key = Key {
            exe: "/usr/bin/python3".into(),
            container: Some("ééééééééééééé".into()),
        };
        assert_eq!(
            key.describe(),
            "python3 (/usr/bin/python3) in container éééééééééééé"
        );
    }
}
