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
//! whether a process is a model server is asked once per process. The workloads, their steps
//! and the alert's record are [`crate::workloads`]'s, shared with [`crate::unclaimed`].

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    logs::v1::{ResourceLogs, SeverityNumber},
    resource::v1::Resource,
};

use crate::{
    arguments::ArgumentPolicy,
    bom::{DeclaredBom, Kind},
    otlp::{kv_int, kv_str, kv_strs, rfc3339},
    pids::PidMap,
    scrub,
    span::{self, Activity, attr},
    verdict::flag,
    workloads::{self, Key, Steps, Table},
};
// What the watch takes, named where callers look for it (`shadow::Record`).
pub use crate::workloads::Record;

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

    pub(crate) fn otlp(self) -> (SeverityNumber, &'static str) {
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

/// Processes remembered per workload (an alert is dropped when one of them turns out to be a
/// declared agent's).
const PIDS: usize = 16;

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
    steps: Steps,
    pids: Vec<u32>,
    /// When the current window's alert was decided (`None`: never alerted).
    alerted_at: Option<Instant>,
    pending: Option<Pending>,
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
    workloads: Table<Workload>,
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
        let Some((exe, container)) = r.workload() else {
            return;
        };
        let used = self.ai_use(r, exe);
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let stepped = workloads::step(&mut text, r, &self.policy);
        if used.is_none() && !stepped {
            self.scratch = text;
            return;
        }
        let window = self.settings.window;
        let pid = r.pid.unwrap_or(0);
        let w = self.workloads.entry(
            (exe, container),
            self.settings.max_workloads,
            |w: &Workload| w.pending.is_some(),
        );
        if stepped {
            w.steps.remember(pid, r.time, &text);
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
        for (key, w) in self.workloads.iter_mut() {
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
        self.workloads.forget(&declared);
        out.sort_by_key(workloads::alert_time);
        out
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
    let chain = w.steps.chain(
        p.time,
        format!(
            "{} SHADOW AI {}: {who} used {what} (pid {})",
            rfc3339(p.time),
            flag::SHADOW_AI,
            p.pid
        ),
    );
    let calls = i64::try_from(p.calls).unwrap_or(i64::MAX);
    let mut attributes = vec![
        kv_strs("aibom.drift.kinds", &[flag::SHADOW_AI.to_owned()]),
        kv_str("aibom.drift.reason", &scrub::text(&reason, 1024)),
        kv_str("aibom.drift.subject", &scrub::text(&p.what.subject(), 512)),
        kv_str("aibom.component.kind", component_kind(&p.what)),
        kv_str("process.executable.path", &key.exe),
        kv_int("process.pid", p.pid.into()),
        kv_int("aibom.shadow.calls", calls),
        kv_int("aibom.drift.count", calls),
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
    workloads::alert_record(
        p.time,
        severity.otlp(),
        attributes,
        &[flag::SHADOW_AI],
        &chain,
        p.resource,
        bom,
    )
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
