//! `receivers.ebpf.sidecars`: the node agent serves the kernel events of pods with a runbom
//! sidecar on a Unix socket (docs/sidecar.md).

use std::path::PathBuf;

use serde::Deserialize;

use super::hub::HubSettings;
use crate::config::section::{ConfigError, Section};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarsConfig {
    /// The Unix socket sidecars connect to (a hostPath shared with the pods that opt in).
    pub socket: PathBuf,
    /// Its permission bits (`0o666`: any local user may connect; what each gets is decided
    /// by its cgroup).
    pub socket_mode: u32,
    /// cgroup v2 paths under which the kubelet puts pods' cgroups.
    pub pod_cgroup_roots: Vec<String>,
    /// Where cgroup v2 is mounted (found in `/proc/self/mountinfo` when unset).
    pub cgroup_mount: Option<PathBuf>,
    /// Kernel events kept per pod for a sidecar that restarts (what it missed beyond them is
    /// counted, not replayed).
    pub backlog_events: usize,
    /// Events queued per sidecar; past that it falls behind and is fed from the backlog as it
    /// drains its queue (what the backlog lost meanwhile is counted, and told).
    pub subscriber_queue_events: usize,
}

impl Default for SidecarsConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/runbom/node-agent.sock"),
            socket_mode: 0o666,
            pod_cgroup_roots: vec!["/kubepods.slice".into(), "/kubepods".into()],
            cgroup_mount: None,
            backlog_events: 4096,
            subscriber_queue_events: 16_384,
        }
    }
}

/// Most events a pod's backlog may hold.
const BACKLOG_MAX: usize = 1 << 20;

impl SidecarsConfig {
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if !self.socket.is_absolute() {
            return Err(at.at("socket").error(format!(
                "{} must be an absolute path",
                self.socket.display()
            )));
        }
        if self.socket_mode > 0o777 {
            return Err(at.at("socket_mode").error(format!(
                "{:#o} is not a permission mode (at most 0o777)",
                self.socket_mode
            )));
        }
        if self.pod_cgroup_roots.is_empty() {
            return Err(at
                .at("pod_cgroup_roots")
                .error("lists no root: no caller could ever be served"));
        }
        for (i, root) in self.pod_cgroup_roots.iter().enumerate() {
            if !root.starts_with('/') || root.trim_end_matches('/').is_empty() {
                return Err(at.at(&format!("pod_cgroup_roots[{i}]")).error(format!(
                    "{root:?} must be a cgroup v2 path below the root, such as \"/kubepods.slice\""
                )));
            }
        }
        if self.backlog_events > BACKLOG_MAX {
            return Err(at.at("backlog_events").error(format!(
                "{} is more than {BACKLOG_MAX} events",
                self.backlog_events
            )));
        }
        if !(1..=BACKLOG_MAX).contains(&self.subscriber_queue_events) {
            return Err(at.at("subscriber_queue_events").error(format!(
                "{} is outside 1 to {BACKLOG_MAX} events",
                self.subscriber_queue_events
            )));
        }
        Ok(())
    }

    /// The hub's settings; fails when no cgroup v2 mount was given or found.
    pub fn hub_settings(&self) -> Result<HubSettings, std::io::Error> {
        let cgroup_mount = match &self.cgroup_mount {
            Some(m) => m.clone(),
            None => super::caller::cgroup2_mount().ok_or_else(|| {
                std::io::Error::other(
                    "receivers.ebpf.sidecars: no cgroup v2 mount on this host (set cgroup_mount)",
                )
            })?,
        };
        Ok(HubSettings {
            cgroup_mount,
            backlog_events: self.backlog_events,
            subscriber_queue_events: self.subscriber_queue_events,
        })
    }
}
