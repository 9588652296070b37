//! Who is calling: a subscriber is identified by the kernel, not by what it says. The socket's
//! peer credentials (`SO_PEERCRED`) give its pid and uid; `/proc/PID/cgroup` gives its cgroup
//! v2 path, the container's; the pod is that cgroup's parent (Kubernetes lays a pod out as one
//! cgroup holding one child per container), and it must lie under one of the configured pod
//! roots (`kubepods.slice`, `kubepods`, ...). Everything under the pod cgroup is served, except
//! the caller's own container.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// A subscriber, as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub pid: u32,
    pub uid: u32,
    /// Its own cgroup v2 path (`/kubepods/pod<uid>/<container>`): its container.
    pub cgroup: String,
    /// The parent of `cgroup`: its pod.
    pub pod: String,
}

/// Why a caller is not served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerError {
    #[error("the connection carries no peer credentials (not a Unix socket peer)")]
    NoCredentials,
    #[error("caller pid {pid} (uid {uid}): cannot read /proc/{pid}/cgroup: {reason}")]
    NoCgroup { pid: u32, uid: u32, reason: String },
    #[error(
        "caller pid {pid} (uid {uid}) is in cgroup {cgroup:?}, not in a container of a pod under \
         {roots}: only a pod's sidecar container may subscribe"
    )]
    NotInPod {
        pid: u32,
        uid: u32,
        cgroup: String,
        roots: String,
    },
    #[error(
        "caller pid {pid} (uid {uid}) asked for pod cgroup {claimed:?} but is in pod cgroup \
         {actual:?}: a sidecar gets only its own pod's events"
    )]
    WrongPod {
        pid: u32,
        uid: u32,
        claimed: String,
        actual: String,
    },
}

/// The cgroup v2 path of process `pid` (the `0::` line of `/proc/PID/cgroup`).
pub fn cgroup_of(proc_root: &Path, pid: u32) -> Result<String, String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .ok_or_else(|| "no cgroup v2 entry (a cgroup v1-only host)".into())
}

/// Identifies the caller `pid`/`uid` (from `SO_PEERCRED`): its cgroup, read from `proc_root`,
/// must be a child of a pod cgroup strictly under one of `pod_roots` (cgroup v2 paths); and
/// when it claims a pod (`claimed`, non-empty), the claim must be that pod.
pub fn identify(
    proc_root: &Path,
    pid: u32,
    uid: u32,
    pod_roots: &[String],
    claimed: &str,
) -> Result<Caller, CallerError> {
    check(pid, uid, cgroup_of(proc_root, pid), pod_roots, claimed)
}

/// [`identify`] with the caller's cgroup already read (as the server does when it accepts the
/// connection, [`super::peer`]): `Err` is why it could not be read.
pub fn check(
    pid: u32,
    uid: u32,
    cgroup: Result<String, String>,
    pod_roots: &[String],
    claimed: &str,
) -> Result<Caller, CallerError> {
    let cgroup = cgroup.map_err(|reason| CallerError::NoCgroup { pid, uid, reason })?;
    let pod = parent(&cgroup);
    let under_root = pod.as_deref().is_some_and(|pod| {
        pod_roots
            .iter()
            .any(|root| is_strictly_under(pod, root.trim_end_matches('/')))
    });
    let Some(pod) = pod.filter(|_| under_root) else {
        return Err(CallerError::NotInPod {
            pid,
            uid,
            cgroup,
            roots: pod_roots.join(", "),
        });
    };
    let claimed = claimed.trim_end_matches('/');
    if !claimed.is_empty() && claimed != pod {
        return Err(CallerError::WrongPod {
            pid,
            uid,
            claimed: claimed.to_owned(),
            actual: pod,
        });
    }
    Ok(Caller {
        pid,
        uid,
        cgroup,
        pod,
    })
}

fn parent(cgroup: &str) -> Option<String> {
    let (parent, leaf) = cgroup.rsplit_once('/')?;
    (!leaf.is_empty() && !parent.is_empty()).then(|| parent.to_owned())
}

fn is_strictly_under(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// The cgroup ids (directory inode numbers) of `cgroup` (a cgroup v2 path) and every cgroup
/// below it, under the cgroup v2 mount `mount`, but not those of `except` and below it.
pub fn cgroup_ids(mount: &Path, cgroup: &str, except: &str) -> std::io::Result<Vec<u64>> {
    let root = mount.join(cgroup.trim_start_matches('/'));
    let skip = mount.join(except.trim_start_matches('/'));
    let mut ids = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root];
    while let Some(dir) = dirs.pop() {
        if dir == skip {
            continue;
        }
        let meta = std::fs::metadata(&dir)?;
        ids.push(meta.ino());
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    Ok(ids)
}

pub use runbom_event::cgroup::cgroup2_mount;

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with(cgroup: &str) -> (runbom_testkit::TempDir, PathBuf) {
        let dir = runbom_testkit::TempDir::new("caller");
        let p = dir.path().join("77");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("cgroup"), format!("4:memory:/x\n0::{cgroup}\n")).unwrap();
        let root = dir.path().to_owned();
        (dir, root)
    }

    #[test]
    fn a_container_of_a_pod_under_a_root_is_served_its_pod() {
        let roots = vec!["/kubepods".to_owned()];
        let (_d, proc_root) = proc_with("/kubepods/burstable/pod1/sidecar");
        let c = identify(&proc_root, 77, 1000, &roots, "").unwrap();
        assert_eq!(c.pod, "/kubepods/burstable/pod1");
        assert_eq!(c.cgroup, "/kubepods/burstable/pod1/sidecar");
        assert!(identify(&proc_root, 77, 1000, &roots, "/kubepods/burstable/pod1/").is_ok());
    }

    #[test]
    fn other_pods_and_callers_outside_pods_are_refused_with_the_reason() {
        let roots = vec!["/kubepods".to_owned()];
        let (_d, proc_root) = proc_with("/kubepods/pod1/sidecar");
        let e = identify(&proc_root, 77, 1000, &roots, "/kubepods/pod2").unwrap_err();
        assert!(matches!(e, CallerError::WrongPod { .. }), "{e}");
        assert!(e.to_string().contains("\"/kubepods/pod2\""), "{e}");
        for outside in [
            "/",
            "/kubepods/sidecar",
            "/system.slice/x/y",
            "/kubepodsX/pod/c",
        ] {
            let (_d, proc_root) = proc_with(outside);
            let e = identify(&proc_root, 77, 1000, &roots, "").unwrap_err();
            assert!(matches!(e, CallerError::NotInPod { .. }), "{outside}: {e}");
        }
        let e = identify(Path::new("/nonexistent"), 77, 1000, &roots, "").unwrap_err();
        assert!(matches!(e, CallerError::NoCgroup { .. }), "{e}");
    }
}
