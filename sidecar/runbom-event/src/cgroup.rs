//! A process's container, read from its cgroup path (`/proc/PID/cgroup`).
//!
//! Container runtimes name the cgroup of a container after its id, and the kubelet names the
//! cgroup of a pod after its uid; both drivers (systemd: `*.slice`/`*.scope` units, cgroupfs:
//! plain directories) and both cgroup versions (v2's single `0::` line, v1's one line per
//! hierarchy) keep those names:
//!
//! | runtime, driver | container's cgroup (last components) |
//! |---|---|
//! | containerd, systemd | `kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope` |
//! | containerd, cgroupfs | `kubepods/burstable/pod<uid>/<id>` |
//! | CRI-O, systemd | `kubepods-pod<uid with _>.slice/crio-<id>.scope` (`…/container` below it with crun) |
//! | CRI-O, cgroupfs | `kubepods/pod<uid>/crio-<id>` |
//! | Docker, systemd | `system.slice/docker-<id>.scope` (`kubepods-…-pod<uid>.slice/docker-<id>.scope` under cri-dockerd) |
//! | Docker, cgroupfs | `docker/<id>` (`kubepods/…/pod<uid>/<id>` under cri-dockerd) |
//!
//! CRI-O's and Podman's `conmon` monitor runs beside the container in `crio-conmon-<id>.scope`
//! (`libpod-conmon-<id>.scope`): it is not the container, and gets no container id (its pod is
//! still known).

/// The runtime that named a container's cgroup, when the name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
}

impl Runtime {
    /// The prefix of `containerStatuses[].containerID` in a Pod (`containerd://<id>`).
    #[must_use]
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Docker => "docker",
            Self::Podman => "podman",
        }
    }
}

/// What a cgroup path says of the process in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupRef {
    /// The container's id (64 lowercase hex digits).
    pub container_id: Option<String>,
    /// Which runtime named it, when its name says.
    pub runtime: Option<Runtime>,
    /// The Kubernetes pod's uid (`metadata.uid`, with dashes), when the kubelet made the cgroup.
    pub pod_uid: Option<String>,
}

/// Where cgroup v2 is mounted (the first `cgroup2` line of `/proc/self/mountinfo`).
#[must_use]
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(std::path::PathBuf::from))?
    })
}

impl CgroupRef {
    /// What `<proc_root>/PID/cgroup` names (`Ok(None)`: neither a container nor a pod); `Err`
    /// when it cannot be read (the process is gone).
    pub fn of_process(proc_root: &std::path::Path, pid: u32) -> std::io::Result<Option<Self>> {
        let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
        Ok(Self::from_proc_cgroup(&text))
    }

    /// Reads the content of `/proc/PID/cgroup` (one `hierarchy:controllers:path` line per
    /// hierarchy): the first line that names a container or a pod.
    #[must_use]
    pub fn from_proc_cgroup(text: &str) -> Option<Self> {
        text.lines().find_map(|line| {
            // `0::/path` (v2) or `4:memory:/path`, `1:name=systemd:/path` (v1).
            let path = line.splitn(3, ':').nth(2).unwrap_or(line);
            Self::from_path(path)
        })
    }

    /// What one cgroup path names; `None` when neither a container nor a pod.
    #[must_use]
    pub fn from_path(path: &str) -> Option<Self> {
        let mut found = Self::default();
        let mut conmon = false;
        for component in path.split('/').filter(|c| !c.is_empty()).rev() {
            if found.container_id.is_none() && !conmon && found.pod_uid.is_none() {
                match container(component) {
                    Some(Container::Id(id, runtime)) => {
                        found.container_id = Some(id.to_owned());
                        found.runtime = runtime;
                        continue;
                    }
                    Some(Container::Monitor) => {
                        conmon = true;
                        continue;
                    }
                    None => {}
                }
            }
            if let Some(uid) = pod_uid(component) {
                found.pod_uid = Some(uid);
                break;
            }
        }
        (found.container_id.is_some() || found.pod_uid.is_some()).then_some(found)
    }
}

enum Container<'a> {
    Id(&'a str, Option<Runtime>),
    /// A runtime's monitor process beside the container (conmon).
    Monitor,
}

/// Scope prefixes of the systemd driver (and CRI-O's cgroupfs directory), longest first.
const PREFIXES: &[(&str, Option<Runtime>)] = &[
    ("crio-conmon-", None),
    ("libpod-conmon-", None),
    ("cri-containerd-", Some(Runtime::Containerd)),
    ("crio-", Some(Runtime::CriO)),
    ("docker-", Some(Runtime::Docker)),
    ("libpod-", Some(Runtime::Podman)),
];

fn container(component: &str) -> Option<Container<'_>> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            if !is_id(id) {
                return None;
            }
            return Some(match runtime {
                Some(r) => Container::Id(id, Some(*r)),
                None => Container::Monitor,
            });
        }
    }
    // cgroupfs: the id alone (containerd, Docker).
    (name.len() == component.len() && is_id(name)).then_some(Container::Id(name, None))
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd).
fn pod_uid(component: &str) -> Option<String> {
    let uid = if let Some(slice) = component.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        if !slice.starts_with("kubepods") && !slice.contains("-kubepods") {
            return None;
        }
        uid.replace('_', "-")
    } else {
        component.strip_prefix("pod")?.to_owned()
    };
    is_uid(&uid).then_some(uid)
}

/// A UUID as Kubernetes writes `metadata.uid` (8-4-4-4-12 hex digits).
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
