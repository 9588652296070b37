//! The container a cgroup is, by cgroup id: the inode number of a cgroup v2 directory, which
//! every kernel event carries. A process's container is the one its exec ran in, read from that
//! cgroup's path rather than from `/proc/PID/cgroup`, so it is known when the process is gone
//! by the time its events are read, and when it joined the cgroup between its fork and its exec
//! (as a container runtime starts a container's program) rather than being its parent's.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use runbom_event::cgroup::CgroupRef;

/// Cgroups remembered at most (forgotten all at once past it: the next lookups walk again).
const MAX_KNOWN: usize = 65_536;

#[derive(Default)]
pub struct Containers {
    /// Where cgroup v2 is mounted; `None`: not known (cgroup v1 only, tests).
    mount: Option<PathBuf>,
    /// The container id of each cgroup seen (`None`: not a container's).
    known: HashMap<u64, Option<String>, foldhash::fast::RandomState>,
}

impl Containers {
    #[must_use]
    pub fn new(mount: Option<PathBuf>) -> Self {
        Self {
            mount,
            known: HashMap::default(),
        }
    }

    /// The container cgroup `id` is, when cgroup v2 is mounted and the cgroup's path there
    /// names one. `None` also for a cgroup v2 tree that does not mirror the containers (a
    /// cgroup v1 node's `unified` hierarchy): the caller then keeps what it knew. A cgroup not
    /// seen before has the hierarchy walked once (every cgroup in it is remembered); cgroup ids
    /// are never reused.
    pub fn of(&mut self, id: u64) -> Option<String> {
        let mount = self.mount.as_deref()?;
        if let Some(found) = self.known.get(&id) {
            return found.clone();
        }
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        walk(mount, &mut self.known);
        self.known.entry(id).or_insert(None).clone()
    }
}

/// Remembers every cgroup under `mount` with the container its path names.
fn walk(mount: &Path, known: &mut HashMap<u64, Option<String>, foldhash::fast::RandomState>) {
    let mut dirs = vec![mount.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue; // removed meanwhile
        };
        let path = dir.strip_prefix(mount).unwrap_or(&dir).to_string_lossy();
        let container = CgroupRef::from_path(&path).and_then(|c| c.container_id);
        known.insert(meta.ino(), container);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
}
