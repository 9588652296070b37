//! Who caused a kernel event: what runbom knows of one process.

/// What runbom knows of one process (one program image: exec replaces it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Path of the executable, as exec'd (or `/proc/PID/exe` for seeded processes).
    pub exe: String,
    /// The command line with credentials redacted.
    pub command_line: String,
    /// Container id from the cgroup path, when the process runs in one.
    pub container_id: Option<String>,
    /// Events of one program run share this trace id when they are not correlated.
    pub trace_id: [u8; 16],
    /// The parent's thread that forked this process (0: not seen, e.g. seeded from `/proc`).
    /// The correlation places a child's events where that thread was at `fork_ns`.
    pub fork_tid: u32,
    /// Unix nanoseconds of the fork (0: not seen).
    pub fork_ns: u64,
}

impl ProcessInfo {
    /// The executable's file name, used as `service.name` of uncorrelated events.
    #[must_use]
    pub fn exe_name(&self) -> &str {
        self.exe.rsplit('/').next().unwrap_or(&self.exe)
    }
}
