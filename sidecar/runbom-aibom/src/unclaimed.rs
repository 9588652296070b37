//! Drift in the kernel log records no trace claimed of declared agents' processes (contract
//! §4): a thread with no active span, or a child process no trace claims, that connects to or
//! sends to an undeclared endpoint or data source ([`ALERTED`]). Such a record
//! carries the agent's verdict (`aibom.drift=true`, `aibom.drift.kinds`, …) like a span; no
//! trace alerts it, so this does. Per declared agent's workload (executable + container) it
//! remembers, bounded, the last steps taken, as the shadow-AI watch does for undeclared ones
//! ([`crate::workloads`]); the first time in a `window` that an agent drifts by the same kinds
//! on the same subject, it holds one alert for `hold`, so that what the workload did right
//! after shows in its chain too. Repeats in the window are counted, not alerted again.
//! `shadow_ai` is not judged here: it has its own alert ([`crate::shadow`]).
//!
//! Other drift on such records (an undeclared file or program) stays on the record and is not
//! alerted: outside a trace it is mostly the process starting (an interpreter loading its
//! modules, the agent's own exec), which only a trace's context tells apart from a tool's work.

use std::{
    collections::HashMap,
    fmt::Write as _,
    hash::{BuildHasher as _, Hash, Hasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{logs::v1::ResourceLogs, resource::v1::Resource};
use runbom_event::semconv::RUNBOM_CORRELATION_METHOD;

use crate::{
    alert,
    arguments::ArgumentPolicy,
    bom::DeclaredBom,
    otlp::{kv_int, kv_str, kv_strs, rfc3339},
    scrub,
    span::attr,
    verdict::flag,
    workloads::{self, Key, Record, Steps, Table},
};

/// The drift kinds alerted here: data leaving for a place the BOM does not declare.
pub const ALERTED: [&str; 2] = [flag::UNDECLARED_ENDPOINT, flag::UNDECLARED_DATA_SOURCE];

#[derive(Clone, Debug)]
pub struct UnclaimedSettings {
    /// One alert per agent, drift kinds and subject per window; repeats in between are
    /// counted.
    pub window: Duration,
    /// Declared agents' workloads remembered (least recently seen half forgotten past it).
    pub max_workloads: usize,
    /// Findings remembered for the window (past it, the ones alerted longest ago are
    /// forgotten first, which can alert one of them again).
    pub max_findings: usize,
}

impl Default for UnclaimedSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_hours(1),
            max_workloads: 4096,
            max_findings: 4096,
        }
    }
}

/// Counters on `/metrics`.
#[derive(Debug, Default)]
pub struct UnclaimedStats {
    /// Records of declared agents' processes no trace claimed that drifted (alerted or not).
    pub drift: AtomicU64,
}

/// A declared agent's workload: its last steps, and how many held alerts point at them.
#[derive(Debug, Default)]
struct Workload {
    steps: Steps,
    held: usize,
}

/// An alert held for what the workload does next.
#[derive(Debug)]
struct Held {
    due: Instant,
    workload: Key,
    time: u64,
    pid: u32,
    resource: Option<Resource>,
    agent: String,
    kinds: Vec<&'static str>,
    reason: String,
    subject: String,
    component: Option<String>,
    /// The finding's line in the chain (`DRIFT <kinds>: <step> — <reason>`).
    line: String,
    /// Times the finding was seen while the alert was held (the first included).
    count: u64,
}

/// The declared agents' workloads, their findings in the window and their held alerts.
#[derive(Debug, Default)]
pub struct UnclaimedDrift {
    pub settings: UnclaimedSettings,
    /// How chain steps quote arguments (the alerts' policy).
    policy: ArgumentPolicy,
    workloads: Table<Workload>,
    /// When each finding (a keyed digest of agent, kinds and subject) was last alerted.
    alerted: HashMap<u64, Instant>,
    /// The key of the findings' digests (random per process: a client cannot make two
    /// findings share one on purpose).
    key: RandomState,
    /// The held alerts, by their finding's digest.
    held: HashMap<u64, Held>,
    /// The step of the record being observed, written here (no allocation per record).
    scratch: String,
}

impl UnclaimedDrift {
    #[must_use]
    pub fn new(settings: UnclaimedSettings, policy: ArgumentPolicy) -> Self {
        Self {
            settings,
            policy,
            ..Self::default()
        }
    }

    /// Takes one judged record of a process no trace claimed. `hold`: how long a new alert
    /// waits for what the workload does next. Drifting records are counted on `stats`, and
    /// repeats of a finding alerted in the window (its alert no longer held) on `deduplicated`.
    pub fn observe(
        &mut self,
        r: &Record<'_>,
        now: Instant,
        hold: Duration,
        (stats, deduplicated): (&UnclaimedStats, &AtomicU64),
    ) {
        let Some(agent) = r.verdict.agent else {
            return;
        };
        // Placed by inference (in a run runbom built for an agent that sends no traces): that
        // run's trace, its kernel spans included, is judged and alerts its drift.
        if attr(r.attrs, RUNBOM_CORRELATION_METHOD).is_some() {
            return;
        }
        let Some(workload) = r.workload() else {
            return;
        };
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let stepped = workloads::step(&mut text, r, &self.policy);
        let drifted = r.verdict.drift.iter().any(|k| ALERTED.contains(k));
        if !stepped && !drifted {
            self.scratch = text;
            return;
        }
        if drifted {
            stats.drift.fetch_add(1, Ordering::Relaxed);
        }
        let step = if stepped { text.as_str() } else { "" };
        let opened = drifted && self.finding(r, agent, workload, step, now, hold, deduplicated);
        let w = self
            .workloads
            .entry(workload, self.settings.max_workloads, |w: &Workload| {
                w.held > 0
            });
        if opened {
            // The finding's line in the chain stands for its step.
            w.held += 1;
        } else if stepped {
            w.steps.remember(r.pid.unwrap_or(0), r.time, &text);
        }
        self.scratch = text;
    }

    /// Counts a finding on its held alert, or as deduplicated when alerted in the window, or
    /// holds a new alert for it (true).
    #[allow(
        clippy::too_many_arguments,
        reason = "the record, what it was read as, and the clock"
    )]
    fn finding(
        &mut self,
        r: &Record<'_>,
        agent: &str,
        workload: (&str, Option<&str>),
        step: &str,
        now: Instant,
        hold: Duration,
        deduplicated: &AtomicU64,
    ) -> bool {
        let v = r.verdict;
        let kinds = || v.drift.iter().copied().filter(|k| ALERTED.contains(k));
        let subject = v.subject.as_deref().unwrap_or_default();
        let mut digest = self.key.build_hasher();
        agent.hash(&mut digest);
        kinds().for_each(|k| k.hash(&mut digest));
        subject.hash(&mut digest);
        let finding = digest.finish();
        if let Some(h) = self.held.get_mut(&finding) {
            h.count += 1;
            return false;
        }
        let window = self.settings.window;
        if self
            .alerted
            .get(&finding)
            .is_some_and(|at| now.duration_since(*at) < window)
        {
            deduplicated.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.alerted.len() >= self.settings.max_findings.max(1) {
            self.forget_findings(now);
        }
        self.alerted.insert(finding, now);
        let kinds: Vec<&'static str> = kinds().collect();
        let reason = v.reason.clone().unwrap_or_default();
        let mut line = format!("{} DRIFT {}: ", rfc3339(r.time), kinds.join(","));
        if !step.is_empty() {
            line.push_str(step);
            line.push_str(" — ");
        }
        line.push_str(&reason);
        let _ = write!(line, " (pid {})", r.pid.unwrap_or(0));
        // Past `max_findings` held, a new alert is due at once (memory stays bounded by
        // what arrives between two releases; nothing is left unalerted).
        let due = if self.held.len() >= self.settings.max_findings {
            now
        } else {
            now + hold
        };
        self.held.insert(
            finding,
            Held {
                due,
                workload: Key::of(workload),
                time: r.time,
                pid: r.pid.unwrap_or(0),
                resource: r.resource.cloned(),
                agent: agent.to_owned(),
                kinds,
                reason,
                subject: subject.to_owned(),
                component: v
                    .component
                    .map(|(c, _)| c)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
                line: scrub::text(&line, 2048),
                count: 1,
            },
        );
        true
    }

    /// Forgets the findings alerted before the window; if still too many, all but the held
    /// ones.
    fn forget_findings(&mut self, now: Instant) {
        let window = self.settings.window;
        self.alerted
            .retain(|_, at| now.duration_since(*at) < window);
        if self.alerted.len() >= self.settings.max_findings.max(1) {
            let held = &self.held;
            self.alerted.retain(|f, _| held.contains_key(f));
        }
    }

    /// When the next held alert is due.
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|h| h.due).min()
    }

    /// The alerts due by `now` (all with `None`).
    pub fn due(&mut self, now: Option<Instant>, bom: &DeclaredBom) -> Vec<ResourceLogs> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| now.is_none_or(|n| h.due <= n))
            .map(|(f, _)| *f)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for h in due.iter().filter_map(|f| self.held.remove(f)) {
            let chain = match self.workloads.get_mut(&h.workload) {
                Some(w) => {
                    w.held = w.held.saturating_sub(1);
                    w.steps.chain(h.time, h.line.clone())
                }
                None => vec![h.line.clone()],
            };
            out.push(alert_of(h, &chain, bom));
        }
        out.sort_by_key(workloads::alert_time);
        out
    }
}

fn alert_of(h: Held, chain: &[String], bom: &DeclaredBom) -> ResourceLogs {
    let mut attributes = vec![
        kv_strs(
            "aibom.drift.kinds",
            &h.kinds.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>(),
        ),
        kv_str("aibom.drift.reason", &scrub::text(&h.reason, 1024)),
        kv_str("aibom.drift.subject", &scrub::text(&h.subject, 512)),
        kv_str("aibom.agent.ref", &h.agent),
    ];
    if let Some(c) = &h.component {
        attributes.push(kv_str("aibom.component.ref", c));
    }
    attributes.extend([
        kv_str("process.executable.path", &h.workload.exe),
        kv_int("process.pid", h.pid.into()),
        kv_int(
            "aibom.drift.count",
            i64::try_from(h.count).unwrap_or(i64::MAX),
        ),
    ]);
    if let Some(c) = &h.workload.container {
        attributes.push(kv_str("container.id", c));
    }
    workloads::alert_record(
        h.time,
        alert::severity(&h.kinds),
        attributes,
        &h.kinds,
        chain,
        h.resource,
        bom,
    )
}
