//! What the processor remembers about processes across traces: parent, user, the declared agent
//! whose workload it belongs to, and the DNS names it asked for. Bounded: the least recently
//! seen half is forgotten when it is full.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
struct Info {
    ppid: Option<u32>,
    uid: Option<u32>,
    agent: Option<String>,
    names: Vec<String>,
    /// Which of the asked-for environment variable names the process has (`None`: not read
    /// yet).
    env: Option<Vec<String>>,
    /// When the environment last read empty (see [`present_names`]): it is read again only
    /// [`ENV_RETRY`] later, so a process with an empty environment costs no read per span.
    env_empty_at: Option<Instant>,
    seen: u64,
}

#[derive(Debug)]
pub struct PidMap {
    map: HashMap<u32, Info>,
    tick: u64,
    capacity: usize,
}

impl Default for PidMap {
    fn default() -> Self {
        Self::with_capacity(65_536)
    }
}

/// Names remembered per process.
const NAMES: usize = 16;
/// How far up the parent chain a child process is attributed to an agent.
const DEPTH: usize = 16;
/// How long an environment that read empty is taken as unknown before it is read again.
const ENV_RETRY: Duration = Duration::from_secs(1);

impl PidMap {
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            tick: 0,
            capacity: capacity.max(2),
        }
    }

    fn entry(&mut self, pid: u32) -> &mut Info {
        self.tick += 1;
        if self.map.len() >= self.capacity && !self.map.contains_key(&pid) {
            let mut ages: Vec<u64> = self.map.values().map(|i| i.seen).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.map.retain(|_, i| i.seen > cut);
        }
        let tick = self.tick;
        let info = self.map.entry(pid).or_default();
        info.seen = tick;
        info
    }

    pub fn learn(&mut self, pid: u32, parent: Option<u32>, uid: Option<u32>) {
        let info = self.entry(pid);
        if parent.is_some() {
            info.ppid = parent;
        }
        if uid.is_some() {
            info.uid = uid;
        }
    }

    pub fn resolved(&mut self, pid: u32, name: &str) {
        let info = self.entry(pid);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !info.names.contains(&name) {
            if info.names.len() == NAMES {
                info.names.remove(0);
            }
            info.names.push(name);
        }
    }

    pub fn set_agent(&mut self, pid: u32, agent: &str) {
        let info = self.entry(pid);
        if info.agent.as_deref() != Some(agent) {
            info.agent = Some(agent.to_owned());
        }
    }

    /// The agent of `pid` or of its nearest known ancestor.
    #[must_use]
    pub fn agent_of(&self, pid: u32) -> Option<String> {
        let mut at = pid;
        for _ in 0..DEPTH {
            let info = self.map.get(&at)?;
            if let Some(a) = &info.agent {
                return Some(a.clone());
            }
            at = info.ppid.filter(|p| *p != at && *p > 1)?;
        }
        None
    }

    /// Which of `wanted` (environment variable names) are set in `pid`'s environment: only the
    /// names are read from `/proc/PID/environ`, never the values; read once per process.
    /// Empty when the process is gone or not visible from here.
    pub fn env_of(&mut self, pid: u32, wanted: &[String]) -> &[String] {
        let info = self.entry(pid);
        if info.env.is_none() && info.env_empty_at.is_none_or(|t| t.elapsed() >= ENV_RETRY) {
            match present_names(pid, wanted) {
                Some(names) => info.env = Some(names),
                None => info.env_empty_at = Some(Instant::now()),
            }
        }
        info.env.as_deref().unwrap_or_default()
    }

    #[must_use]
    pub fn uid_of(&self, pid: u32) -> Option<u32> {
        self.map.get(&pid).and_then(|i| i.uid)
    }

    #[must_use]
    pub fn names_of(&self, pid: u32) -> &[String] {
        self.map.get(&pid).map_or(&[], |i| i.names.as_slice())
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The names of `wanted` that `pid`'s environment sets; `None` while it cannot be known yet:
/// the environment reads empty in the moment a process is between `execve` and its new image.
fn present_names(pid: u32, wanted: &[String]) -> Option<Vec<String>> {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return Some(Vec::new()); // gone, or not ours to read
    };
    if environ.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for entry in environ.split(|b| *b == 0) {
        let name = entry.split(|b| *b == b'=').next().unwrap_or_default();
        if let Some(w) = wanted.iter().find(|w| w.as_bytes() == name)
            && !out.contains(w)
        {
            out.push(w.clone());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_environment_is_not_read_for_every_span() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .spawn()
            .unwrap();
        let pid = child.id();
        let wanted = ["OPENAI_API_KEY".to_owned()];
        let mut m = PidMap::default();
        assert!(m.env_of(pid, &wanted).is_empty());
        let info = &m.map[&pid];
        assert!(info.env.is_none(), "unknown, not remembered as empty");
        let first = info.env_empty_at.expect("the empty read is timed");
        assert!(m.env_of(pid, &wanted).is_empty());
        assert_eq!(
            m.map[&pid].env_empty_at,
            Some(first),
            "not read again at once"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn children_inherit_the_agent_and_memory_is_bounded() {
        let mut m = PidMap::with_capacity(8);
        m.set_agent(100, "agent:a");
        m.learn(200, Some(100), Some(1000));
        m.learn(300, Some(200), None);
        assert_eq!(m.agent_of(300).as_deref(), Some("agent:a"));
        assert_eq!(m.agent_of(999), None);
        assert_eq!(m.uid_of(200), Some(1000));
        for pid in 1000..1100 {
            m.learn(pid, None, None);
        }
        assert!(m.len() <= 8);
    }

    #[test]
    fn environment_names_are_read_never_values() {
        // PATH is set in any test environment; the other name surely is not.
        let me = std::process::id();
        let mut m = PidMap::default();
        let wanted = vec!["PATH".to_owned(), "RUNBOM_SURELY_UNSET_VAR".to_owned()];
        assert_eq!(m.env_of(me, &wanted), ["PATH".to_owned()]);
        assert!(
            m.env_of(u32::MAX - 1, &wanted).is_empty(),
            "no such process"
        );
    }
}
