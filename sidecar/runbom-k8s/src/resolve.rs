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

/// Where a process is, as far as this node can tell ([`Resolver::place`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place<A = Vec<(String, String)>> {
    /// In a pod of the index: its `k8s.*` and `container.*` attributes.
    Pod(A),
    /// A live process whose cgroup names no pod: the node's own, or a container's no pod holds.
    NoPod,
    /// A process gone, or in a pod the index does not have (yet).
    Unknown,
}

impl<A> Place<A> {
    /// The same place, the pod's attributes turned by `f`.
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> Place<B> {
        match self {
            Self::Pod(a) => Place::Pod(f(a)),
            Self::NoPod => Place::NoPod,
            Self::Unknown => Place::Unknown,
        }
    }
}

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

    /// Where process `pid` is (its cgroup read from `/proc`) or, when that process is gone,
    /// the container `container_id`: a known pod of this node with its attributes, no pod at
    /// all, or not known.
    #[must_use]
    pub fn place(&self, pid: Option<u32>, container_id: Option<&str>) -> Place {
        let read = pid.map(|p| self.cgroup(p));
        let live = matches!(read, Some(Ok(_)));
        let cgroup = read.and_then(Result::ok).flatten();
        let id = cgroup
            .as_ref()
            .and_then(|c| c.container_id.as_deref())
            .or(container_id);
        let uid = cgroup.as_ref().and_then(|c| c.pod_uid.as_deref());
        let found = self.index.read().ok().and_then(|index| index.find(id, uid));
        let Some((pod, container)) = found else {
            // A cgroup that names no pod is the node's own process (or a container no pod
            // holds); one naming a pod not indexed yet, or a gone process, is not known.
            return if live && cgroup.is_none_or(|c| c.pod_uid.is_none()) {
                Place::NoPod
            } else {
                Place::Unknown
            };
        };
        let mut attrs = pod.attributes(container.as_ref());
        if let Some(id) = id
            && !attrs.iter().any(|(k, _)| k == "container.id")
        {
            attrs.push(("container.id".into(), id.to_owned()));
        }
        Place::Pod(attrs)
    }

    /// What process `pid`'s cgroup names (`Ok(None)`: neither a container nor a pod); `Err`
    /// when it cannot be read (the process is gone).
    fn cgroup(&self, pid: u32) -> std::io::Result<Option<CgroupRef>> {
        let now = Instant::now();
        if let Ok(cache) = self.cgroups.lock()
            && let Some((found, at)) = cache.get(&pid)
            && now.duration_since(*at) < CGROUP_TTL
        {
            return Ok(found.clone());
        }
        let found = CgroupRef::of_process(&self.proc_root, pid)?;
        if let Ok(mut cache) = self.cgroups.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(pid, (found.clone(), now));
        }
        Ok(found)
    }
}
