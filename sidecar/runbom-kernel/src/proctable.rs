//! The process table: who each pid is. Seeded from `/proc` at start, then kept current by the
//! kernel's exec, fork and exit events, so an event can name its executable, command line,
//! parent, user and container even after the process is gone.

use std::{collections::HashMap, fs, path::Path, sync::Arc};

use runbom_event::{
    ProcessInfo,
    cgroup::{CgroupRef, cgroup2_mount},
    ids::new_trace_id,
    redact,
};

use crate::containers::Containers;

/// Processes by pid.
#[derive(Default)]
pub struct ProcessTable {
    /// Hashed with foldhash (seeded per process): looked up for every event.
    procs: HashMap<u32, Arc<ProcessInfo>, foldhash::fast::RandomState>,
    /// The container of the cgroup each exec ran in.
    containers: Containers,
    proc_root: Option<std::path::PathBuf>,
}

impl ProcessTable {
    /// A table seeded from every process now in `/proc`.
    #[must_use]
    pub fn from_proc() -> Self {
        let mut table = Self {
            containers: Containers::new(cgroup2_mount()),
            proc_root: Some("/proc".into()),
            ..Self::default()
        };
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
                    && let Some(info) = read_proc(Path::new("/proc"), pid)
                {
                    table.procs.insert(pid, Arc::new(info));
                }
            }
        }
        table
    }

    /// An empty table that never reads `/proc` (tests, benchmarks).
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The process, read from `/proc` on first sight if the table missed its birth.
    pub fn get(&mut self, pid: u32) -> Arc<ProcessInfo> {
        if let Some(p) = self.procs.get(&pid) {
            return p.clone();
        }
        let info = self
            .proc_root
            .as_deref()
            .and_then(|root| read_proc(root, pid))
            .unwrap_or_else(|| ProcessInfo {
                pid,
                trace_id: new_trace_id(),
                ..ProcessInfo::default()
            });
        let info = Arc::new(info);
        self.procs.insert(pid, info.clone());
        info
    }

    /// A new process: it starts as a copy of its parent (same program until it execs).
    pub fn fork(&mut self, parent: u32, child: u32) {
        self.fork_by(parent, 0, child, 0);
    }

    /// A new process forked by thread `parent_tid` of `parent` at `time_ns` (Unix ns).
    pub fn fork_by(&mut self, parent: u32, parent_tid: u32, child: u32, time_ns: u64) {
        let mut info = (*self.get(parent)).clone();
        info.pid = child;
        info.ppid = parent;
        info.trace_id = new_trace_id();
        info.fork_tid = parent_tid;
        info.fork_ns = time_ns;
        self.procs.insert(child, Arc::new(info));
    }

    /// A new program image in `pid`, in cgroup `cgroup_id`: its container is the one that
    /// cgroup is (cgroup v2), else its parent's, else `/proc`'s when it was not seen before.
    pub fn exec(
        &mut self,
        pid: u32,
        cgroup_id: u64,
        uid: u32,
        exe: String,
        argv: &[&str],
    ) -> Arc<ProcessInfo> {
        let in_cgroup = self.containers.of(cgroup_id);
        let prev = self.procs.get(&pid);
        // Its fork unseen (before runbom started, or shed): `/proc` names the parent, which
        // MCP pairing needs to know who may answer whom.
        let parent_pid = prev.map_or_else(
            || {
                self.proc_root
                    .as_deref()
                    .and_then(|r| fs::read_to_string(r.join(pid.to_string()).join("status")).ok())
                    .and_then(|status| status_field(&status, "PPid:"))
                    .unwrap_or(0)
            },
            |p| p.ppid,
        );
        let (fork_tid, fork_ns) = prev.map_or((0, 0), |p| (p.fork_tid, p.fork_ns));
        let container_id = in_cgroup.or_else(|| {
            prev.map_or_else(
                || self.proc_root.as_deref().and_then(|r| container_id(r, pid)),
                |p| p.container_id.clone(),
            )
        });
        let info = Arc::new(ProcessInfo {
            pid,
            ppid: parent_pid,
            uid,
            exe,
            command_line: redact::command_line(argv),
            container_id,
            trace_id: new_trace_id(),
            fork_tid,
            fork_ns,
        });
        self.procs.insert(pid, info.clone());
        info
    }

    /// The process is gone; returns what was known of it.
    pub fn exit(&mut self, pid: u32) -> Arc<ProcessInfo> {
        let info = self.get(pid);
        self.procs.remove(&pid);
        info
    }
}

fn read_proc(root: &Path, pid: u32) -> Option<ProcessInfo> {
    let dir = root.join(pid.to_string());
    let status = fs::read_to_string(dir.join("status")).ok()?;
    let field = |name: &str| status_field(&status, name);
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let argv: Vec<&str> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| std::str::from_utf8(a).unwrap_or("?"))
        .collect();
    let exe = fs::read_link(dir.join("exe")).map_or_else(
        |_| argv.first().map(|s| (*s).to_owned()).unwrap_or_default(),
        |p| p.to_string_lossy().into_owned(),
    );
    Some(ProcessInfo {
        pid,
        ppid: field("PPid:").unwrap_or(0),
        uid: field("Uid:").unwrap_or(0),
        exe,
        command_line: redact::command_line(&argv),
        container_id: container_id(root, pid),
        trace_id: new_trace_id(),
        ..ProcessInfo::default()
    })
}

/// The first number after `name` in a `/proc/PID/status` text.
fn status_field(status: &str, name: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The container id in a process's cgroup path (`runbom_event::cgroup`: containerd, CRI-O,
/// Docker, Podman; not their `conmon` monitors).
fn container_id(root: &Path, pid: u32) -> Option<String> {
    CgroupRef::of_process(root, pid).ok()??.container_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_exec_exit_keep_ancestry() {
        let mut t = ProcessTable::empty();
        t.exec(
            10,
            1,
            0,
            "/usr/bin/python3".into(),
            &["python3", "agent.py"],
        );
        t.fork_by(10, 12, 11, 5_000);
        let child = t.get(11);
        assert_eq!((child.ppid, child.exe.as_str()), (10, "/usr/bin/python3"));
        assert_eq!((child.fork_tid, child.fork_ns), (12, 5_000));
        let child = t.exec(
            11,
            1,
            1000,
            "/bin/sh".into(),
            &["sh", "-c", "ls", "--password", "x"],
        );
        assert_eq!((child.ppid, child.fork_tid, child.fork_ns), (10, 12, 5_000));
        assert_eq!(child.command_line, "sh -c ls --password [REDACTED]");
        assert_eq!(t.exit(11).exe, "/bin/sh");
        assert_eq!(t.len(), 1);
    }

    /// An exec whose fork the table never saw takes its parent from `/proc`.
    #[test]
    fn an_exec_without_its_fork_has_its_parent_from_proc() {
        let mut t = ProcessTable {
            proc_root: Some("/proc".into()),
            ..ProcessTable::default()
        };
        let me = std::process::id();
        let info = t.exec(me, 1, 0, "/usr/bin/test".into(), &["test"]);
        assert_eq!(info.ppid, std::os::unix::process::parent_id());
    }

    /// A container runtime forks, moves the child into the container's cgroup, then the child
    /// execs the container's program: that program is in the container (the cgroup its exec ran
    /// in), not in its parent's, and stays so once it is gone from `/proc`.
    #[test]
    fn a_process_is_in_the_container_its_exec_ran_in() {
        use std::os::unix::fs::MetadataExt as _;
        let mount = std::env::temp_dir().join(format!("runbom-cgroups-{}", std::process::id()));
        let id = "ab".repeat(32);
        let runtime = mount.join("system.slice/containerd.service");
        let container = mount.join(format!("kubepods.slice/cri-containerd-{id}.scope"));
        for dir in [&runtime, &container] {
            fs::create_dir_all(dir).expect("cgroup dir");
        }
        let ino = |dir: &Path| fs::metadata(dir).expect("cgroup dir").ino();
        let mut t = ProcessTable {
            containers: Containers::new(Some(mount.clone())),
            ..ProcessTable::default()
        };
        t.exec(10, ino(&runtime), 0, "/usr/bin/runc".into(), &["runc"]);
        t.fork_by(10, 10, 11, 5_000);
        t.fork_by(10, 10, 12, 6_000);
        let moved = t.exec(
            11,
            ino(&container),
            0,
            "/usr/bin/python3".into(),
            &["python3"],
        );
        assert_eq!(moved.container_id.as_deref(), Some(id.as_str()));
        let stayed = t.exec(12, ino(&runtime), 0, "/bin/sh".into(), &["sh"]);
        assert_eq!(stayed.container_id, None);
        fs::remove_dir_all(mount).expect("clean up");
    }

    #[test]
    fn seeds_from_proc() {
        let mut t = ProcessTable::from_proc();
        let me = t.get(std::process::id());
        assert!(!me.exe.is_empty());
        assert!(!me.command_line.is_empty());
    }
}
