//! This node's name, as runbom's resources and its own telemetry carry it (`host.name`).

/// The kernel's host name (`/proc/sys/kernel/hostname`), `unknown` when it cannot be read.
#[must_use]
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}
