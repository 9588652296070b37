//! Loading the eBPF object, configuring its maps and attaching its tracepoints.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{
        ProgramError, TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeScope},
    },
};
use runbom_common::{
    ARGV_MAX, FILTER_BY_WORKLOAD, HTTP_DATA_MAX, HTTP_RESPONSE_MAX, HeadRules, PATH_HEADS,
    PATH_MAX, ProbeConfig, SHED_SLOTS, counter,
};

use crate::{btf::ExecOffsets, filter::PrefixRules, overload::Overload};
use tracing::debug;

/// The eBPF object built by `build.rs` from `ebpf/runbom-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/runbom"));

/// Every program of the object and the tracepoint it attaches to.
const TRACEPOINTS: &[(&str, &str)] = &[
    ("sched_process_exec", "sched"),
    ("task_newtask", "task"),
    ("sys_enter_exit_group", "syscalls"),
    ("sched_process_exit", "sched"),
    ("sys_enter_open", "syscalls"),
    ("sys_enter_openat", "syscalls"),
    ("sys_enter_openat2", "syscalls"),
    ("sys_exit_open", "syscalls"),
    ("sys_exit_openat", "syscalls"),
    ("sys_exit_openat2", "syscalls"),
    ("sys_enter_socket", "syscalls"),
    ("sys_exit_socket", "syscalls"),
    ("sys_enter_connect", "syscalls"),
    ("sys_exit_connect", "syscalls"),
    ("inet_sock_set_state", "sock"),
    ("sys_enter_accept", "syscalls"),
    ("sys_enter_accept4", "syscalls"),
    ("sys_exit_accept", "syscalls"),
    ("sys_exit_accept4", "syscalls"),
    ("sys_enter_sendto", "syscalls"),
    ("sys_enter_sendmsg", "syscalls"),
    ("sys_enter_sendmmsg", "syscalls"),
];

/// HTTP capture programs and the syscall tracepoints they share with other programs.
/// (Entry and exit are paired: a request is captured when the call wrote it.)
const HTTP_TRACEPOINTS: &[(&str, &str)] = &[
    ("http_sys_enter_write", "sys_enter_write"),
    ("http_sys_enter_writev", "sys_enter_writev"),
    ("http_sys_enter_sendto", "sys_enter_sendto"),
    ("http_sys_enter_sendmsg", "sys_enter_sendmsg"),
    ("http_sys_exit_write", "sys_exit_write"),
    ("http_sys_exit_writev", "sys_exit_writev"),
    ("http_sys_exit_sendto", "sys_exit_sendto"),
    ("http_sys_exit_sendmsg", "sys_exit_sendmsg"),
    // HTTP/2: reads of sockets that wrote the client preface (its writes go through the above).
    ("h2_sys_enter_read", "sys_enter_read"),
    ("h2_sys_enter_recvfrom", "sys_enter_recvfrom"),
    ("h2_sys_enter_readv", "sys_enter_readv"),
    ("h2_sys_enter_recvmsg", "sys_enter_recvmsg"),
    ("h2_sys_exit_read", "sys_exit_read"),
    ("h2_sys_exit_recvfrom", "sys_exit_recvfrom"),
    ("h2_sys_exit_readv", "sys_exit_readv"),
    ("h2_sys_exit_recvmsg", "sys_exit_recvmsg"),
    // Plaintext HTTP/1 responses: reads of sockets that wrote a request head.
    ("resp_sys_enter_read", "sys_enter_read"),
    ("resp_sys_enter_recvfrom", "sys_enter_recvfrom"),
    ("resp_sys_enter_readv", "sys_enter_readv"),
    ("resp_sys_enter_recvmsg", "sys_enter_recvmsg"),
    ("resp_sys_exit_read", "sys_exit_read"),
    ("resp_sys_exit_recvfrom", "sys_exit_recvfrom"),
    ("resp_sys_exit_readv", "sys_exit_readv"),
    ("resp_sys_exit_recvmsg", "sys_exit_recvmsg"),
    // Both captures forget a socket at its `close`.
    ("sys_enter_close", "sys_enter_close"),
];

/// `(category, tracepoint)` of every tracepoint program [`Probes::load`] attaches with the
/// HTTP captures on (`http`) or off, one entry per program (a tracepoint with two programs is
/// listed twice): what a benchmark attaches its reference programs to, to price the same
/// dispatches.
#[must_use]
pub fn attached_tracepoints(http: bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = TRACEPOINTS.iter().map(|&(p, c)| (c, p)).collect();
    if http {
        out.extend(HTTP_TRACEPOINTS.iter().map(|&(_, t)| ("syscalls", t)));
    }
    out
}

/// The OpenSSL functions hooked, wherever a file defines them (see [`crate::openssl`]).
pub const SSL_SYMBOLS: [&str; 5] = [
    "SSL_write",
    "SSL_write_ex",
    "SSL_read",
    "SSL_read_ex",
    "SSL_free",
];

/// OpenSSL uprobes (program, index of its symbol in [`SSL_SYMBOLS`]), attached to every file
/// that exports the symbols.
const SSL_UPROBES: &[(&str, usize)] = &[
    ("ssl_write", 0),
    ("ssl_write_ex", 1),
    ("ssl_read", 2),
    ("ssl_read_ex", 3),
    ("ssl_write_ret", 0),
    ("ssl_write_ex_ret", 1),
    ("ssl_read_ret", 2),
    ("ssl_read_ex_ret", 3),
    // HTTP/2 inside TLS: the programs above serve it too; `SSL_free` forgets an `SSL*`.
    ("h2_ssl_free", 4),
];

/// Go `crypto/tls` uprobes: at the entries of `(*Conn).Write`/`Read` and at each of their `RET`s
/// (see [`crate::gotls`]).
const GO_UPROBES: [&str; 4] = [
    "go_tls_write",
    "go_tls_write_ret",
    "go_tls_read",
    "go_tls_read_ret",
];

/// Where the kernel publishes its BTF; `RUNBOM_KERNEL_BTF` overrides it (for tests of the
/// error path and for kernels that ship BTF elsewhere).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the probes should watch, as pushed into their maps.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Bytes of argv captured per exec.
    pub argv_max: u32,
    /// Path prefixes whose opens are reported.
    pub file_include: Vec<String>,
    /// Path prefixes under an include that are not reported (longest prefix wins).
    pub file_exclude: Vec<String>,
    /// Reported prefixes whose opens are shed first under overload (`file.open.low_value`).
    pub file_low_value: Vec<String>,
    /// When non-empty (or `watch_cgroups` is), only these processes' opens are reported.
    pub watch_pids: Vec<u32>,
    /// cgroup v2 directories whose processes' opens are reported.
    pub watch_cgroups: Vec<std::path::PathBuf>,
    /// UDP destination ports whose datagrams are DNS queries.
    pub dns_ports: Vec<u16>,
    pub http: HttpCapture,
    /// MCP calls (JSON-RPC at the same socket and pipe writes as `http.plaintext`).
    pub mcp: McpCapture,
    /// When the reader is woken, and what is shed first when the ring fills.
    pub overload: Overload,
}

/// What of MCP calls is exported beyond the contract's identifying attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpCapture {
    /// Look for JSON-RPC messages in socket and pipe writes (needs `HttpCapture::plaintext`,
    /// whose hooks they ride on).
    pub enabled: bool,
    /// Export a `tools/call`'s arguments (`gen_ai.tool.call.arguments`, redacted).
    pub capture_arguments: bool,
}

impl Default for McpCapture {
    fn default() -> Self {
        Self {
            enabled: true,
            capture_arguments: false,
        }
    }
}

/// What of HTTP traffic is captured (`http.request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCapture {
    /// Capture HTTP requests at all (`plaintext` and `openssl` choose where).
    pub enabled: bool,
    /// At socket writes (`write`, `writev`, `sendto`, `sendmsg`): every such call then pays a
    /// tracepoint hit, whatever it writes.
    pub plaintext: bool,
    /// Bytes copied of a write that starts a request (head and the body's start): enough to
    /// reach `Host` and `traceparent` past long headers, and an LLM request's `model`.
    pub max_bytes: u32,
    /// Capture inside TLS with uprobes on every OpenSSL library processes load.
    pub openssl: bool,
    /// Bytes captured of a TLS response from its status line on (the body, for the
    /// `gen_ai.*` attributes of LLM calls); 0: the status line only.
    pub max_response_bytes: u32,
    /// Read requests to LLM APIs and their responses into `gen_ai.*` attributes, so
    /// (`None`: not at all).
    pub genai: Option<runbom_genai::Options>,
}

impl Default for HttpCapture {
    fn default() -> Self {
        Self {
            enabled: true,
            plaintext: true,
            max_bytes: 8192,
            openssl: true,
            max_response_bytes: 256 * 1024,
            genai: Some(runbom_genai::Options::default()),
        }
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            ring_bytes: 4 << 20,
            argv_max: 1024,
            file_include: vec!["/".into()],
            file_exclude: [
                "/proc/",
                "/sys/",
                "/dev/",
                "/usr/lib/",
                "/lib/",
                "/usr/share/",
                // The dynamic loader reads it at every exec of a dynamically linked program.
                "/etc/ld.so.cache",
            ]
            .map(String::from)
            .to_vec(),
            // Libraries, packages and caches: what every interpreter opens by the hundred.
            file_low_value: ["/usr/", "/opt/", "/var/cache/", "/var/lib/", "/etc/ssl/"]
                .map(String::from)
                .to_vec(),
            watch_pids: Vec::new(),
            watch_cgroups: Vec::new(),
            dns_ports: vec![53],
            http: HttpCapture::default(),
            mcp: McpCapture::default(),
            overload: Overload::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "loading the eBPF probes needs root (or CAP_BPF and CAP_PERFMON): run runbom with sudo"
    )]
    NotPrivileged,
    #[error(
        "this kernel publishes no BTF at {path} (CONFIG_DEBUG_INFO_BTF=y is required); use a kernel built with BTF"
    )]
    NoBtf { path: String },
    #[error("reading the kernel's BTF: {0}")]
    Btf(String),
    #[error("loading the eBPF object failed: {0}")]
    Object(Box<aya::EbpfError>),
    #[error(
        "the kernel's verifier rejected probe `{program}`; this kernel may be too old or configured differently (tracepoints, ring buffers and BPF loops are required)\n{log}"
    )]
    Verifier { program: String, log: String },
    #[error("probe `{program}`: {source}")]
    Program {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "attaching probe `{program}` to tracepoint {category}:{name} failed (is tracefs mounted at /sys/kernel/tracing?): {source}"
    )]
    Attach {
        program: String,
        category: String,
        name: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    #[error("file filter: {0}")]
    Filter(String),
    #[error("watched cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The loaded, attached probes. Dropping it detaches them.
pub struct Probes {
    ebpf: Ebpf,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map {
        name,
        source: Box::new(source),
    }
}

impl Probes {
    /// Loads the object, fills its maps from `settings` and attaches every program.
    pub fn load(settings: &ProbeSettings) -> Result<Self, ProbeError> {
        check_privileges()?;
        let btf = std::env::var("RUNBOM_KERNEL_BTF").unwrap_or_else(|_| KERNEL_BTF.into());
        if !Path::new(&btf).exists() {
            return Err(ProbeError::NoBtf { path: btf });
        }
        // This kernel charges BPF memory to the memory cgroup; an old one needs MEMLOCK raised.
        raise_memlock();

        let ebpf =
            EbpfLoader::new()
                .map_max_entries("EVENTS", settings.ring_bytes)
                .load(OBJECT)
                .map_err(|e| match e {
                    aya::EbpfError::MapError(aya::maps::MapError::CreateError {
                        io_error, ..
                    }) if io_error.raw_os_error() == Some(libc::EPERM) => ProbeError::NotPrivileged,
                    e => ProbeError::Object(Box::new(e)),
                })?;
        let exec = ExecOffsets::from_file(Path::new(&btf)).map_err(ProbeError::Btf)?;
        let mut probes = Self { ebpf };
        probes.configure(settings, exec)?;
        let mut programs = TRACEPOINTS.to_vec();
        if std::env::var_os("RUNBOM_SELFTEST_VERIFIER_REJECT").is_some() {
            // A program the verifier must refuse: proves the error path end to end.
            programs.insert(0, ("selftest_verifier_reject", "syscalls"));
        }
        for (program, category) in programs {
            probes.attach(program, category, program)?;
        }
        if settings.http.enabled && settings.http.plaintext {
            for (program, tracepoint) in HTTP_TRACEPOINTS {
                probes.attach(program, "syscalls", tracepoint)?;
            }
        }
        if settings.http.enabled && settings.http.openssl {
            for program in GO_UPROBES {
                probes
                    .program::<UProbe>(program)?
                    .load()
                    .map_err(load_error(program))?;
            }
            for (program, _) in SSL_UPROBES {
                probes
                    .program::<UProbe>(program)?
                    .load()
                    .map_err(load_error(program))?;
            }
        }
        Ok(probes)
    }

    fn configure(&mut self, s: &ProbeSettings, exec: ExecOffsets) -> Result<(), ProbeError> {
        let watch = !s.watch_pids.is_empty() || !s.watch_cgroups.is_empty();
        let cfg = ProbeConfig {
            argv_max: s.argv_max.min(ARGV_MAX as u32),
            self_pid: std::process::id(),
            file_filter: if watch { FILTER_BY_WORKLOAD } else { 0 },
            http_max: s.http.max_bytes.min(HTTP_DATA_MAX as u32),
            jsonrpc: u32::from(s.mcp.enabled),
            http_response_max: s.http.max_response_bytes.min(HTTP_RESPONSE_MAX),
            wake_bytes: s.overload.wake_bytes(s.ring_bytes),
            shed_at: s.overload.shed_at(s.ring_bytes),
            open_scratch_at: s.overload.open_scratch_at(s.ring_bytes),
            task_mm: exec.task_mm,
            mm_arg_start: exec.mm_arg_start,
            mm_arg_end: exec.mm_arg_end,
        };
        let mut config: Array<_, ProbeConfig> =
            Array::try_from(self.map_mut("CONFIG")?).map_err(map_err("CONFIG"))?;
        config.set(0, cfg, 0).map_err(map_err("CONFIG"))?;

        let rules = PrefixRules::new(&s.file_include, &s.file_exclude, &s.file_low_value)
            .map_err(ProbeError::Filter)?;
        let mut prefixes: LpmTrie<_, [u8; PATH_MAX], u8> =
            LpmTrie::try_from(self.map_mut("FILE_PREFIXES")?).map_err(map_err("FILE_PREFIXES"))?;
        for (bytes, class) in rules.iter() {
            let mut data = [0u8; PATH_MAX];
            data[..bytes.len()].copy_from_slice(bytes);
            let key = Key::new(bytes.len() as u32 * 8, data);
            prefixes
                .insert(&key, class, 0)
                .map_err(map_err("FILE_PREFIXES"))?;
        }
        let table = rules.table();
        let mut lists: Array<_, HeadRules> =
            Array::try_from(self.map_mut("HEAD_RULES")?).map_err(map_err("HEAD_RULES"))?;
        for (i, list) in table.lists.iter().enumerate() {
            lists
                .set(i as u32, list, 0)
                .map_err(map_err("HEAD_RULES"))?;
        }
        let mut heads: Array<_, [u8; PATH_HEADS]> =
            Array::try_from(self.map_mut("FILE_HEADS")?).map_err(map_err("FILE_HEADS"))?;
        let entries: &[u8; PATH_HEADS] =
            table.heads.as_slice().try_into().map_err(|_| {
                ProbeError::Filter("the first-level table has the wrong size".into())
            })?;
        heads.set(0, entries, 0).map_err(map_err("FILE_HEADS"))?;

        let mut pids: HashMap<_, u32, u8> =
            HashMap::try_from(self.map_mut("WATCHED_PIDS")?).map_err(map_err("WATCHED_PIDS"))?;
        for pid in &s.watch_pids {
            pids.insert(pid, 1, 0).map_err(map_err("WATCHED_PIDS"))?;
        }
        let mut cgroups: HashMap<_, u64, u8> = HashMap::try_from(self.map_mut("WATCHED_CGROUPS")?)
            .map_err(map_err("WATCHED_CGROUPS"))?;
        for dir in &s.watch_cgroups {
            let id = cgroup_id(dir).map_err(|source| ProbeError::Cgroup {
                path: dir.display().to_string(),
                source,
            })?;
            cgroups
                .insert(id, 1, 0)
                .map_err(map_err("WATCHED_CGROUPS"))?;
        }
        let mut ports: HashMap<_, u16, u8> =
            HashMap::try_from(self.map_mut("DNS_PORTS")?).map_err(map_err("DNS_PORTS"))?;
        for port in &s.dns_ports {
            ports.insert(port, 1, 0).map_err(map_err("DNS_PORTS"))?;
        }
        Ok(())
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, ProbeError> {
        self.ebpf.map_mut(name).ok_or(ProbeError::MissingMap(name))
    }

    /// The program named `program`, as its type.
    fn program<'a, T>(&'a mut self, program: &str) -> Result<&'a mut T, ProbeError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let err = |source| ProbeError::Program {
            program: program.to_owned(),
            source: Box::new(source),
        };
        self.ebpf
            .program_mut(program)
            .ok_or_else(|| err(ProgramError::UnexpectedProgramType))?
            .try_into()
            .map_err(err)
    }

    /// Attaches the OpenSSL uprobes to one file (for every process that maps it): `offsets`
    /// holds the file offset of each of [`SSL_SYMBOLS`] it defines ([`crate::elf`]).
    /// Returns the symbols that could not be hooked with why (a `BoringSSL` build may lack the
    /// `_ex` functions); an error only when none could.
    pub fn attach_openssl(
        &mut self,
        library: &Path,
        offsets: &[Option<u64>],
    ) -> Result<Vec<String>, String> {
        let mut missing = Vec::new();
        for &(program, index) in SSL_UPROBES {
            let symbol = SSL_SYMBOLS[index];
            let Some(offset) = offsets.get(index).copied().flatten() else {
                missing.push(format!("{symbol} ({program}): not exported"));
                continue;
            };
            let attached = self
                .program::<UProbe>(program)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.attach(
                        UProbeAttachLocation::AbsoluteOffset(offset),
                        library,
                        UProbeScope::AllProcesses,
                    )
                    .map(drop)
                    .map_err(|e| e.to_string())
                });
            if let Err(e) = attached {
                missing.push(format!("{symbol} ({program}): {e}"));
            }
        }
        if missing.len() == SSL_UPROBES.len() {
            return Err(missing.join("; "));
        }
        Ok(missing)
    }

    /// Attaches the Go `crypto/tls` uprobes to one executable: its `(*Conn).Write` and `Read`
    /// entries and every `RET` of each.
    pub fn attach_go(&mut self, executable: &Path, go: &crate::gotls::GoTls) -> Result<(), String> {
        let [write, write_ret, read, read_ret] = GO_UPROBES;
        let places = [
            (write, vec![go.write.entry]),
            (write_ret, go.write.returns.clone()),
            (read, vec![go.read.entry]),
            (read_ret, go.read.returns.clone()),
        ];
        for (program, offsets) in places {
            let p = self.program::<UProbe>(program).map_err(|e| e.to_string())?;
            for offset in offsets {
                p.attach(
                    UProbeAttachLocation::AbsoluteOffset(offset),
                    executable,
                    UProbeScope::AllProcesses,
                )
                .map_err(|e| format!("{program} at {offset:#x}: {e}"))?;
            }
        }
        Ok(())
    }

    fn attach(&mut self, program: &str, category: &str, name: &str) -> Result<(), ProbeError> {
        let tp = self.program::<TracePoint>(program)?;
        tp.load().map_err(load_error(program))?;
        // The self-test program never gets this far (the verifier refuses it); its name is not a
        // tracepoint, so give it one in case a kernel ever accepts it.
        let name = if program == "selftest_verifier_reject" {
            "sys_enter_openat"
        } else {
            name
        };
        tp.attach(category, name)
            .map_err(|source| ProbeError::Attach {
                program: program.to_owned(),
                category: category.to_owned(),
                name: name.to_owned(),
                source: Box::new(source),
            })?;
        debug!(program, "attached to {category}:{name}");
        Ok(())
    }

    /// Takes the ring buffer out of the object, for [`crate::reader`].
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(map_err("EVENTS"))
    }

    /// What the kernel's `MARKING_PROCS` slot of process `pid` holds: the id of the process
    /// that claimed it by marking a socket for the HTTP captures (0: none, `u64::MAX`: shared
    /// by several ids). Only processes a slot names have their closes and reads look up those
    /// marks; a slot is freed when its process exits.
    pub fn marking_slot(&self, pid: u32) -> Result<u64, ProbeError> {
        let map = self
            .ebpf
            .map("MARKING_PROCS")
            .ok_or(ProbeError::MissingMap("MARKING_PROCS"))?;
        let slots: Array<_, u64> = Array::try_from(map).map_err(map_err("MARKING_PROCS"))?;
        slots
            .get(&(pid % slots.len()), 0)
            .map_err(map_err("MARKING_PROCS"))
    }

    /// Takes the loss counters out of the object.
    pub fn take_counters(&mut self) -> Result<LossCounters, ProbeError> {
        let map = self
            .ebpf
            .take_map("COUNTERS")
            .ok_or(ProbeError::MissingMap("COUNTERS"))?;
        Ok(LossCounters {
            map: PerCpuArray::try_from(map).map_err(map_err("COUNTERS"))?,
        })
    }
}

/// The kernel side's per-CPU loss counters.
pub struct LossCounters {
    map: PerCpuArray<MapData, u64>,
}

/// Totals of [`LossCounters`] over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Records dropped because the ring buffer was full.
    pub ring_full: u64,
    /// Events lost because an in-flight map was full (or, for socket calls, their per-thread
    /// slot was taken by another thread's call).
    pub inflight_full: u64,
    /// Events shed under overload, by shedding slot (`crate::overload::SHEDDABLE`).
    pub shed: [u64; SHED_SLOTS],
}

impl Losses {
    /// Every event the kernel side did not deliver: ring full, in-flight map full, shed.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.ring_full + self.inflight_full + self.shed.iter().sum::<u64>()
    }
}

impl LossCounters {
    #[must_use]
    pub fn read(&self) -> Losses {
        let sum = |i| self.map.get(&i, 0).map_or(0, |v| v.iter().sum());
        Losses {
            ring_full: sum(counter::RING_FULL),
            inflight_full: sum(counter::INFLIGHT_FULL),
            shed: std::array::from_fn(|i| sum(counter::SHED + i as u32)),
        }
    }

    /// Opens the kernel classified outside the ring because it was filling up (not a loss:
    /// the pressure path was taken, `counter::OPEN_SCRATCH`).
    #[must_use]
    pub fn opens_in_scratch(&self) -> u64 {
        self.map
            .get(&counter::OPEN_SCRATCH, 0)
            .map_or(0, |v| v.iter().sum())
    }
}

fn check_privileges() -> Result<(), ProbeError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    // Not root: CAP_BPF (39) and CAP_PERFMON (38) in the effective set are enough.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << 39) != 0 && eff & (1 << 38) != 0 {
        Ok(())
    } else {
        Err(ProbeError::NotPrivileged)
    }
}

fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) } != 0 {
        debug!("RLIMIT_MEMLOCK not raised (this kernel charges BPF memory to the cgroup)");
    }
}

/// The cgroup v2 id of a cgroup directory is its inode number.
fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a cgroup directory"));
    }
    Ok(meta.ino())
}

/// A program's load failure: the verifier's last words when it refused, else the error.
fn load_error(program: &str) -> impl FnOnce(ProgramError) -> ProbeError {
    move |e| match e {
        ProgramError::LoadError { verifier_log, .. } => ProbeError::Verifier {
            program: program.to_owned(),
            log: last_lines(&verifier_log.to_string(), 12),
        },
        e => ProbeError::Program {
            program: program.to_owned(),
            source: Box::new(e),
        },
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
