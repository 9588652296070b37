//! The reference probes (`ebpf/runbom-ebpf/src/reference.rs`), loaded from runbom's own object
//! and attached by this driver, with a consumer that drains their ring buffer the way runbom's
//! reader does (sleeping in `poll` until the kernel wakes it).

use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{LpmTrie, MapData, RingBuf, lpm_trie::Key},
    programs::{Program, raw_trace_point::RawTracePointLinkId, trace_point::TracePointLinkId},
};
use runbom_common::PATH_MAX;

/// Every reference program; each is loaded once and attached per measurement.
const PROGRAMS: &[&str] = &[
    "reference_bare",
    "reference_open_enter",
    "reference_open_enter_nowake",
    "reference_ret_exit",
    "reference_ret_exit_nowake",
    "reference_read_enter",
    "reference_lpm_enter",
    "reference_socket_enter",
    "reference_socket_exit",
    "reference_connect_enter",
    "reference_connect_enter_nowake",
    "reference_open_lpm_enter",
    "reference_open_query_enter",
    "reference_open_slot_enter",
    "reference_ret_slot_exit",
    "reference_raw_bare",
    "reference_raw_enter_openat",
    "reference_raw_exit_openat",
    "reference_raw_enter_traced",
    "reference_raw_exit_traced",
    "reference_raw_enter_getppid",
    "reference_raw_exit_getppid",
];

/// A set of reference programs and the `syscalls` tracepoints they attach to (`category:name`
/// for another category; a raw tracepoint program attaches to the raw tracepoint `name`).
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// Short name used in the results table.
    pub name: &'static str,
    pub attach: &'static [(&'static str, &'static str)],
    /// The consumer stops reading while the loop runs: the kernel never wakes it (it wakes a
    /// consumer only when that consumer had read everything), so this measures the probes'
    /// own work without the cost of notifying userspace.
    pub paused: bool,
}

pub const OPEN_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sys_enter_openat"),
        ("reference_bare", "sys_exit_openat"),
    ],
    paused: false,
};
/// `ref-bare` as raw tracepoints: one program on `sys_enter` and one on `sys_exit`, which every
/// syscall passes (the loop's `close` too), returning unless the syscall is `openat`.
pub const OPEN_BARE_RAW: Variant = Variant {
    name: "ref-bare-raw",
    attach: &[
        ("reference_raw_enter_openat", "sys_enter"),
        ("reference_raw_exit_openat", "sys_exit"),
    ],
    paused: false,
};
pub const OPEN_READ: Variant = Variant {
    name: "ref-read",
    attach: &[
        ("reference_read_enter", "sys_enter_openat"),
        ("reference_bare", "sys_exit_openat"),
    ],
    paused: false,
};
pub const OPEN_LPM: Variant = Variant {
    name: "ref-lpm",
    attach: &[
        ("reference_lpm_enter", "sys_enter_openat"),
        ("reference_bare", "sys_exit_openat"),
    ],
    paused: false,
};
pub const OPEN_RECORD: Variant = Variant {
    name: "ref-record",
    attach: &[
        ("reference_open_enter", "sys_enter_openat"),
        ("reference_ret_exit", "sys_exit_openat"),
    ],
    paused: false,
};
pub const OPEN_RECORD_PAUSED: Variant = Variant {
    name: "ref-record (paused)",
    paused: true,
    ..OPEN_RECORD
};
pub const OPEN_RECORD_NOWAKE: Variant = Variant {
    name: "ref-record-nowake",
    attach: &[
        ("reference_open_enter_nowake", "sys_enter_openat"),
        ("reference_ret_exit_nowake", "sys_exit_openat"),
    ],
    paused: false,
};
/// `ref-record (paused)` plus one piece of what runbom's open does beyond it, each priced by
/// its difference from `ref-record (paused)`: the trie lookup with the record as the key, the
/// ring query before the reservation, and the per-thread slot (entry and exit).
pub const OPEN_RECORD_LPM_PAUSED: Variant = Variant {
    name: "ref-record+lpm (paused)",
    attach: &[
        ("reference_open_lpm_enter", "sys_enter_openat"),
        ("reference_ret_exit", "sys_exit_openat"),
    ],
    paused: true,
};
pub const OPEN_RECORD_QUERY_PAUSED: Variant = Variant {
    name: "ref-record+query (paused)",
    attach: &[
        ("reference_open_query_enter", "sys_enter_openat"),
        ("reference_ret_exit", "sys_exit_openat"),
    ],
    paused: true,
};
pub const OPEN_RECORD_SLOT_PAUSED: Variant = Variant {
    name: "ref-record+slot (paused)",
    attach: &[
        ("reference_open_slot_enter", "sys_enter_openat"),
        ("reference_ret_slot_exit", "sys_exit_openat"),
    ],
    paused: true,
};
/// `write(2)`: an empty program at entry (the shape of runbom's HTTP hook before its entry was
/// paired with the exit), at entry and exit (the pairing's dispatch), and a user read of the
/// buffer at entry with the exit (the work runbom's hook does for a write that is not HTTP).
pub const WRITE_BARE_ENTER: Variant = Variant {
    name: "ref-bare-enter",
    attach: &[("reference_bare", "sys_enter_write")],
    paused: false,
};
/// Empty programs at the entry and exit of `read`: the shape of runbom's HTTP/2 read hooks.
pub const READ_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sys_enter_read"),
        ("reference_bare", "sys_exit_read"),
    ],
    paused: false,
};
pub const WRITE_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sys_enter_write"),
        ("reference_bare", "sys_exit_write"),
    ],
    paused: false,
};
pub const WRITE_READ: Variant = Variant {
    name: "ref-read",
    attach: &[
        ("reference_read_enter", "sys_enter_write"),
        ("reference_bare", "sys_exit_write"),
    ],
    paused: false,
};
pub const CONNECT_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sys_enter_socket"),
        ("reference_bare", "sys_exit_socket"),
        ("reference_bare", "sys_enter_connect"),
        ("reference_bare", "sys_exit_connect"),
    ],
    paused: false,
};
pub const CONNECT_RECORD: Variant = Variant {
    name: "ref-record",
    attach: &[
        ("reference_socket_enter", "sys_enter_socket"),
        ("reference_socket_exit", "sys_exit_socket"),
        ("reference_connect_enter", "sys_enter_connect"),
        ("reference_ret_exit", "sys_exit_connect"),
    ],
    paused: false,
};

pub const CONNECT_RECORD_PAUSED: Variant = Variant {
    name: "ref-record (paused)",
    paused: true,
    ..CONNECT_RECORD
};
pub const CONNECT_RECORD_NOWAKE: Variant = Variant {
    name: "ref-record-nowake",
    attach: &[
        ("reference_socket_enter", "sys_enter_socket"),
        ("reference_socket_exit", "sys_exit_socket"),
        ("reference_connect_enter_nowake", "sys_enter_connect"),
        ("reference_ret_exit_nowake", "sys_exit_connect"),
    ],
    paused: false,
};

/// Empty programs on the tracepoints runbom's process tree uses (an exec, a fork, an exit and
/// `exit_group`), as classic tracepoints and as raw ones (`exit_group` then from the raw
/// `sys_enter`, which every syscall of the spawned child passes).
pub const EXEC_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sched:sched_process_exec"),
        ("reference_bare", "task:task_newtask"),
        ("reference_bare", "sched:sched_process_exit"),
        ("reference_bare", "sys_enter_exit_group"),
    ],
    paused: false,
};
pub const EXEC_BARE_RAW: Variant = Variant {
    name: "ref-bare-raw",
    attach: &[
        ("reference_raw_bare", "sched_process_exec"),
        ("reference_raw_bare", "task_newtask"),
        ("reference_raw_bare", "sched_process_exit"),
        ("reference_raw_enter_traced", "sys_enter"),
    ],
    paused: false,
};

/// `getppid`, which no tracer here hooks (runbom's programs on a shared machine would share
/// the record a classic tracepoint builds): empty classic programs at its entry and exit; the
/// raw `sys_enter`/`sys_exit` programs returning unless the syscall is `getppid`; and those
/// returning unless runbom traces the syscall, which `getppid` is not (what a raw port adds to
/// every syscall it does not trace).
pub const GETPPID_BARE: Variant = Variant {
    name: "ref-bare",
    attach: &[
        ("reference_bare", "sys_enter_getppid"),
        ("reference_bare", "sys_exit_getppid"),
    ],
    paused: false,
};
pub const GETPPID_BARE_RAW: Variant = Variant {
    name: "ref-bare-raw",
    attach: &[
        ("reference_raw_enter_getppid", "sys_enter"),
        ("reference_raw_exit_getppid", "sys_exit"),
    ],
    paused: false,
};
pub const GETPPID_RAW_UNTRACED: Variant = Variant {
    name: "ref-raw-untraced",
    attach: &[
        ("reference_raw_enter_traced", "sys_enter"),
        ("reference_raw_exit_traced", "sys_exit"),
    ],
    paused: false,
};

/// An attached reference program.
enum Link {
    Classic(TracePointLinkId),
    Raw(RawTracePointLinkId),
}

/// The loaded reference programs and their ring-buffer consumer.
pub struct Reference {
    ebpf: Ebpf,
    links: Vec<(&'static str, Link)>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    records: Arc<AtomicU64>,
    consumer: Option<JoinHandle<()>>,
}

impl Reference {
    /// Loads every reference program (attaching none), fills `REF_PREFIXES` with
    /// `(prefix, include)` pairs and starts the consumer, pinned to `consumer_cpu`.
    pub fn load(
        ring_bytes: u32,
        prefixes: &[(&str, bool)],
        consumer_cpu: Option<usize>,
    ) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("REF_EVENTS", ring_bytes)
            .load(runbom_kernel::probes::OBJECT)
            .context("loading runbom's eBPF object for the reference probes")?;
        {
            let map = ebpf
                .map_mut("REF_PREFIXES")
                .ok_or_else(|| anyhow!("map REF_PREFIXES missing: is the object current?"))?;
            let mut trie: LpmTrie<_, [u8; PATH_MAX], u8> = LpmTrie::try_from(map)?;
            for (prefix, include) in prefixes {
                let mut data = [0u8; PATH_MAX];
                data[..prefix.len()].copy_from_slice(prefix.as_bytes());
                let key = Key::new(prefix.len() as u32 * 8, data);
                trie.insert(&key, u8::from(*include), 0)?;
            }
        }
        for name in PROGRAMS {
            match ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
            {
                Program::TracePoint(tp) => tp.load(),
                Program::RawTracePoint(tp) => tp.load(),
                _ => bail!("{name} is not a tracepoint program"),
            }
            .with_context(|| format!("loading {name}"))?;
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("REF_EVENTS")
                .ok_or_else(|| anyhow!("map REF_EVENTS missing"))?,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let records = Arc::new(AtomicU64::new(0));
        let consumer = {
            let (stop, paused, records) = (stop.clone(), paused.clone(), records.clone());
            std::thread::Builder::new()
                .name("ref-consumer".into())
                .spawn(move || consume(ring, &stop, &paused, &records, consumer_cpu))?
        };
        Ok(Self {
            ebpf,
            links: Vec::new(),
            stop,
            paused,
            records,
            consumer: Some(consumer),
        })
    }

    /// Attaches the variant's programs (and pauses the consumer if the variant says so).
    pub fn attach(&mut self, variant: &Variant) -> Result<()> {
        if variant.paused {
            self.paused.store(true, Ordering::Relaxed);
            // Let a poll in progress time out.
            std::thread::sleep(POLL_TIMEOUT * 2);
        }
        for &(program, at) in variant.attach {
            let (category, tracepoint) = at.split_once(':').unwrap_or(("syscalls", at));
            self.attach_one(program, category, tracepoint)?;
        }
        Ok(())
    }

    /// Attaches `program` to `category:tracepoint`, or a raw tracepoint program to the raw
    /// tracepoint `tracepoint` (detached with the others by [`Self::detach`]).
    pub fn attach_one(
        &mut self,
        program: &'static str,
        category: &str,
        tracepoint: &str,
    ) -> Result<()> {
        let link = match self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} missing"))?
        {
            Program::TracePoint(tp) => tp.attach(category, tracepoint).map(Link::Classic),
            Program::RawTracePoint(tp) => tp.attach(tracepoint).map(Link::Raw),
            _ => bail!("{program} is not a tracepoint program"),
        }
        .with_context(|| format!("attaching {program} to {category}:{tracepoint}"))?;
        self.links.push((program, link));
        Ok(())
    }

    /// Detaches every attached program and lets the consumer read again.
    pub fn detach(&mut self) -> Result<()> {
        self.paused.store(false, Ordering::Relaxed);
        for (program, link) in self.links.drain(..) {
            let program = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| anyhow!("program {program} missing"))?;
            match (program, link) {
                (Program::TracePoint(tp), Link::Classic(link)) => tp.detach(link)?,
                (Program::RawTracePoint(tp), Link::Raw(link)) => tp.detach(link)?,
                _ => bail!("a link of another program type"),
            }
        }
        Ok(())
    }

    /// Full names of the reference programs by kernel program id (the kernel keeps 15 bytes).
    pub fn program_ids(&self) -> std::collections::BTreeMap<u32, String> {
        PROGRAMS
            .iter()
            .filter_map(|name| {
                let id = self.ebpf.program(name)?.info().ok()?.id();
                Some((id, (*name).to_owned()))
            })
            .collect()
    }

    /// Records the consumer has read so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Waits until the consumer has read everything (its count stops moving).
    pub fn quiesce(&self) {
        let mut last = self.records();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.records();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.detach();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.consumer.take() {
            let _ = t.join();
        }
    }
}

/// How long the consumer sleeps in `poll` when nothing wakes it.
const POLL_TIMEOUT: Duration = Duration::from_millis(10);

fn consume(
    mut ring: RingBuf<MapData>,
    stop: &AtomicBool,
    paused: &AtomicBool,
    records: &AtomicU64,
    cpu: Option<usize>,
) {
    if let Some(cpu) = cpu {
        let _ = crate::workload::pin_current_thread(cpu);
    }
    let fd = ring.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        if paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut pfd, 1, POLL_TIMEOUT.as_millis() as libc::c_int) };
        let mut n = 0;
        while let Some(item) = ring.next() {
            std::hint::black_box(item.len());
            n += 1;
        }
        records.fetch_add(n, Ordering::Relaxed);
    }
}

/// `BPF_PROG_TYPE_TRACEPOINT`.
const PROG_TYPE_TRACEPOINT: u32 = 5;
/// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// Names of tracepoint programs (classic or raw) loaded in the kernel that are not reference
/// programs: another runbom (or any tracer) on the machine would run inside every measured
/// syscall, baseline included. Our own runbom child's programs count too, so call this while it
/// is not running.
pub fn foreign_tracepoint_programs() -> Vec<String> {
    let mut names: Vec<String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            matches!(
                p.program_type() as u32,
                PROG_TYPE_TRACEPOINT | PROG_TYPE_RAW_TRACEPOINT
            )
        })
        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
        .filter(|n| !n.starts_with("reference_"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Waits (up to `max`) until no foreign tracepoint program is loaded; returns what is still
/// loaded when it gives up.
pub fn wait_for_quiet_kernel(max: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + max;
    loop {
        let names = foreign_tracepoint_programs();
        if names.is_empty() || std::time::Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
