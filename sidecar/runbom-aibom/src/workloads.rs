//! The workloads of the kernel log records no trace claimed, and the alerts held on them: what
//! the shadow-AI watch ([`crate::shadow`]) and the unclaimed-drift watch ([`crate::unclaimed`])
//! share. A *workload* is an executable in a container (when known); of each, bounded, the
//! last steps it took (connections, requests, file accesses, programs) are remembered, so that
//! an alert held for a while shows in its chain what the workload did before and right after
//! its finding.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    hash::{Hash, Hasher},
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
    otlp::{any_str, kv_str, kv_strs, rfc3339},
    scrub,
    span::{self, Activity, attr},
    verdict::Verdict,
};

/// Steps remembered per workload (the chain of an alert: these and the finding).
const STEPS: usize = 63;

/// One judged kernel log record no trace claimed, as the watches read it.
pub struct Record<'x> {
    pub time: u64,
    pub pid: Option<u32>,
    pub activity: &'x Activity,
    pub verdict: &'x Verdict<'x>,
    pub attrs: &'x [KeyValue],
    pub resource: Option<&'x Resource>,
}

impl Record<'_> {
    /// The record's executable and container (from the record, else its resource).
    pub(crate) fn workload(&self) -> Option<(&str, Option<&str>)> {
        let res = crate::otlp::resource_attrs(self.resource);
        let exe = attr(self.attrs, "process.executable.path")
            .or_else(|| attr(res, "process.executable.path"))?;
        let container = attr(self.attrs, "container.id").or_else(|| attr(res, "container.id"));
        Some((exe, container))
    }
}

/// A workload: executable and container.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub(crate) exe: String,
    pub(crate) container: Option<String>,
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
    pub(crate) fn of((exe, container): (&str, Option<&str>)) -> Self {
        Self {
            exe: exe.to_owned(),
            container: container.map(str::to_owned),
        }
    }

    /// `python3 (/usr/bin/python3) in container 0123456789ab`.
    pub(crate) fn describe(&self) -> String {
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

/// A workload's last steps, at most [`STEPS`].
#[derive(Debug, Default)]
pub(crate) struct Steps(VecDeque<Step>);

impl Steps {
    /// Remembers a step: on the last one when the same process did the same again, else as a
    /// new one (the oldest forgotten past [`STEPS`]).
    pub(crate) fn remember(&mut self, pid: u32, time: u64, text: &str) {
        if let Some(last) = self.0.back_mut()
            && last.pid == pid
            && last.text == text
        {
            last.repeats += 1;
            last.last = time;
            return;
        }
        if self.0.len() == STEPS {
            self.0.pop_front();
        }
        self.0.push_back(Step {
            time,
            pid,
            text: text.to_owned(),
            repeats: 0,
            last: time,
        });
    }

    /// An alert's chain: a line per step, with `finding` (its line, time first) among them
    /// at its time `at`.
    pub(crate) fn chain(&self, at: u64, finding: String) -> Vec<String> {
        let mut chain: Vec<String> = self
            .0
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
        let before = self.0.iter().filter(|s| s.time <= at).count();
        chain.insert(before, finding);
        chain
    }
}

/// What a record did, as a chain step (connections, requests, files, programs), written into
/// `text`; false when the record is not a step.
pub(crate) fn step(text: &mut String, r: &Record<'_>, policy: &ArgumentPolicy) -> bool {
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

/// The workloads, each with what a watch keeps of it (`W`), bounded.
#[derive(Debug)]
pub(crate) struct Table<W> {
    /// The workloads, when each was last seen (a tick), and where each is by its key.
    workloads: Vec<(Key, u64, W)>,
    index: HashMap<Key, usize>,
    /// Where the last workload looked up is (records come grouped by process: the next record
    /// is most often the same workload's, found without hashing its key).
    last: Option<usize>,
    tick: u64,
}

impl<W> Default for Table<W> {
    fn default() -> Self {
        Self {
            workloads: Vec::new(),
            index: HashMap::new(),
            last: None,
            tick: 0,
        }
    }
}

impl<W: Default> Table<W> {
    /// The workload of `exe` in `container`, remembered from now on (allocating only the first
    /// time it is seen). Past `max` workloads, the least recently seen half is forgotten but
    /// for those `keep` keeps (the ones with a held alert).
    pub(crate) fn entry(
        &mut self,
        (exe, container): (&str, Option<&str>),
        max: usize,
        keep: impl Fn(&W) -> bool,
    ) -> &mut W {
        self.tick += 1;
        let tick = self.tick;
        let same = |i: &usize| {
            self.workloads
                .get(*i)
                .is_some_and(|(k, _, _)| k.parts() == (exe, container))
        };
        let key: &dyn WorkloadKey = &(exe, container);
        let at = if let Some(i) = self.last.filter(same) {
            i
        } else if let Some(&i) = self.index.get(key) {
            i
        } else {
            let cap = max.max(2);
            if self.workloads.len() >= cap {
                let mut ages: Vec<u64> = self.workloads.iter().map(|(_, seen, _)| *seen).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                self.workloads.retain(|(_, seen, w)| *seen > cut || keep(w));
                self.reindex();
            }
            let key = Key::of((exe, container));
            self.index.insert(key.clone(), self.workloads.len());
            self.workloads.push((key, tick, W::default()));
            self.workloads.len() - 1
        };
        self.last = Some(at);
        let slot = &mut self.workloads[at];
        slot.1 = tick;
        &mut slot.2
    }
}

impl<W> Table<W> {
    /// The workload of `key`, if remembered.
    pub(crate) fn get_mut(&mut self, key: &Key) -> Option<&mut W> {
        self.index
            .get(key)
            .and_then(|i| self.workloads.get_mut(*i))
            .map(|(_, _, w)| w)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &W)> {
        self.workloads.iter().map(|(k, _, w)| (k, w))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut W)> {
        self.workloads.iter_mut().map(|(k, _, w)| (&*k, w))
    }

    /// Forgets the workloads of `keys`.
    pub(crate) fn forget(&mut self, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        self.workloads.retain(|(k, _, _)| !keys.contains(k));
        self.reindex();
    }

    /// Rebuilds where each workload is, after some were forgotten.
    fn reindex(&mut self) {
        self.index.clear();
        for (i, (k, _, _)) in self.workloads.iter().enumerate() {
            self.index.insert(k.clone(), i);
        }
        self.last = None;
    }
}

/// A held alert of a workload, as a `ResourceLogs` of its own: `attributes` (its own, from
/// `aibom.drift.kinds` on) followed by the guardrail attributes of `kinds`, the BOM's serial
/// number, the resource's `service.name` and `k8s.*`, and `chain`; the body is the chain.
pub(crate) fn alert_record(
    time: u64,
    severity: (SeverityNumber, &'static str),
    mut attributes: Vec<KeyValue>,
    kinds: &[&str],
    chain: &[String],
    resource: Option<Resource>,
    bom: &DeclaredBom,
) -> ResourceLogs {
    attributes.insert(0, kv_str("event.name", "aibom.drift"));
    crate::guardrail::push_attributes(&mut attributes, kinds, &bom.serial_number, false);
    if !bom.serial_number.is_empty() {
        attributes.push(kv_str("aibom.bom.serial_number", &bom.serial_number));
    }
    for kv in crate::otlp::resource_attrs(resource.as_ref()) {
        let k = kv.key.as_str();
        if (k == "service.name" || k.starts_with("k8s.")) && !attributes.iter().any(|a| a.key == k)
        {
            attributes.push(kv.clone());
        }
    }
    attributes.push(kv_strs("aibom.chain", chain));
    let (number, text) = severity;
    let record = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: alert::now_ns(),
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(any_str(&chain.join("\n"))),
        attributes,
        event_name: "aibom.drift".into(),
        ..Default::default()
    };
    ResourceLogs {
        resource,
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

/// The time of an alert built by [`alert_record`] (alerts are released in its order).
pub(crate) fn alert_time(r: &ResourceLogs) -> u64 {
    r.scope_logs
        .first()
        .and_then(|s| s.log_records.first())
        .map_or(0, |l| l.time_unix_nano)
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
