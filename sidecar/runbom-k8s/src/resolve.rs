//! From a process to its pod's attributes.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use runbom_event::cgroup::CgroupRef;

use crate::PodIndex;

/// How long what a pid's cgroup said is reused (a process does not change container).
const CGROUP_TTL: Duration = Duration::from_secs(10);
/// Cached pids at most (the cache starts over when full).
const MAX_CACHED: usize = 16_384;

/// Answers "which pod is this process in" from its cgroup and the pod index.
pub struct Resolver {
    index: Arc<RwLock<PodIndex>>,
    proc_root: PathBuf,
    cgroups: Mutex<HashMap<u32, (Option<CgroupRef>, Instant)>>,
}

impl Resolver {
    #[must_use]
    pub fn new(index: Arc<RwLock<PodIndex>>) -> Self {
        Self::with_proc_root(index, "/proc".into())
    }

    #[must_use]
    pub fn with_proc_root(index: Arc<RwLock<PodIndex>>, proc_root: PathBuf) -> Self {
        Self {
            index,
            proc_root,
            cgroups: Mutex::new(HashMap::new()),
        }
    }

    #[must_use]
    pub fn index(&self) -> &Arc<RwLock<PodIndex>> {
        &self.index
    }

    /// The `k8s.*` and `container.*` attributes of process `pid` (its cgroup read from
    /// `/proc`) or, when that process is gone, of the container `container_id` (as the kernel
    /// events of an exited process carry it). `None`: not in a pod of this node.
    #[must_use]
    pub fn attributes(
        &self,
        pid: Option<u32>,
        container_id: Option<&str>,
    ) -> Option<Vec<(String, String)>> {
        let cgroup = pid.and_then(|p| self.cgroup(p));
        let id = cgroup
            .as_ref()
            .and_then(|c| c.container_id.as_deref())
            .or(container_id);
        let uid = cgroup.as_ref().and_then(|c| c.pod_uid.as_deref());
        let (pod, container) = self.index.read().ok()?.find(id, uid)?;
        let mut attrs = pod.attributes(container.as_ref());
        if let Some(id) = id
            && !attrs.iter().any(|(k, _)| k == "container.id")
        {
            attrs.push(("container.id".into(), id.to_owned()));
        }
        Some(attrs)
    }

    fn cgroup(&self, pid: u32) -> Option<CgroupRef> {
        let now = Instant::now();
        if let Ok(cache) = self.cgroups.lock()
            && let Some((found, at)) = cache.get(&pid)
            && now.duration_since(*at) < CGROUP_TTL
        {
            return found.clone();
        }
        let found = CgroupRef::of_process(&self.proc_root, pid).ok()?;
        if let Ok(mut cache) = self.cgroups.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(pid, (found.clone(), now));
        }
        found
    }
}
