//! Reference probes for the benchmarks (`docs/benchmarks.md`, `sidecar/runbom-bench`). runbom
//! never attaches these (it attaches only the names in `runbom-kernel`'s `TRACEPOINTS`); the
//! benchmark driver loads them from the same object and attaches them itself, so that runbom's
//! per-syscall cost can be compared with a minimal probe doing the same work, side by side.
//!
//! What "the same work" means here:
//! - a *watched* `openat`: the entry reads the user path and writes a fixed-size record (the
//!   size of a `file.open` record) straight into a ring buffer; the exit writes the return value
//!   as a small record. No maps besides the ring: the cheapest way to get path, flags, result and
//!   times out of the kernel.
//! - a *filtered-out* `openat`: nothing at all (`reference_bare` on entry and exit), the floor
//!   that any probe seeing every `openat` and its result pays. Two steps up that ladder isolate
//!   what a path filter needs: reading the path (`reference_read_enter`) and reading it plus one
//!   LPM-trie lookup (`reference_lpm_enter`).
//! - a `connect`: the transport is not among connect's arguments, so `socket()` is tracked the
//!   plain way (type per thread between entry and exit, then per `(tgid, fd)`); connect's entry
//!   reads the address and writes a connect-sized record, its exit writes the result.
//!
//! - an `SSL_write` (uprobes, `ssl` benchmark): nothing at all at entry, and at entry and return
//!   (`reference_uprobe_bare`, `reference_uretprobe_bare`): what any hook that pairs a call
//!   with its result pays.
//!
//! - raw tracepoints (`raw_tracepoint` programs, called with the tracepoint's own arguments,
//!   where a classic tracepoint program is called after the kernel built the tracepoint's
//!   record): `reference_raw_bare` returns at once; `reference_raw_enter_openat` and
//!   `reference_raw_exit_openat`, on the one `sys_enter`/`sys_exit` every syscall passes, return
//!   unless the syscall is `openat`, and `reference_raw_enter_traced`/`reference_raw_exit_traced`
//!   unless it is one runbom traces: the floor of a port of the syscall programs;
//!   `reference_raw_enter_getppid`/`reference_raw_exit_getppid` the same for `getppid`, a
//!   syscall no other tracer hooks.
//!
//! Records are submitted like runbom's (the kernel wakes the reader when it had caught up); the
//! `*_nowake` twins submit with `BPF_RB_NO_WAKEUP`, to measure what waking the reader costs.
//! The maps are the reference's own (`REF_*`): nothing here touches runbom's maps.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_user, bpf_probe_read_user_str},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{RawTracePointContext, TracePointContext},
};
use runbom_common::{EventKind, FileOpenEvent, PATH_MAX, SOCK_TYPE_UNKNOWN, SockAddr, SockEvent};

use crate::util::{current, fd_key, header, now, read_kernel, sys_arg};

/// Every reference record. The driver sets its size at load time.
#[map]
static REF_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Path prefixes, filled by the driver with the same prefixes runbom is given.
#[map]
static REF_PREFIXES: LpmTrie<[u8; PATH_MAX], u8> = LpmTrie::with_max_entries(1024, 0);

#[map]
static REF_KEY_SCRATCH: PerCpuArray<Key<[u8; PATH_MAX]>> = PerCpuArray::with_max_entries(1, 0);

/// tid → requested socket type between `socket()` entry and exit.
#[map]
static REF_SOCKET_CALLS: HashMap<u32, u16> = HashMap::with_max_entries(1024, 0);

/// `(tgid << 32) | fd` → socket type.
#[map]
static REF_SOCK_TYPES: LruHashMap<u64, u16> = LruHashMap::with_max_entries(65536, 0);

/// Kind of the small record the exit programs write (outside runbom's `EventKind` numbers).
pub const REF_RET_KIND: u32 = 100;

/// The result of a syscall, written by its exit.
#[repr(C)]
struct RefRet {
    kind: u32,
    tid: u32,
    ret: i64,
    end_ns: u64,
}

/// Does nothing: the cost of a tracepoint program being attached at all.
#[tracepoint]
pub fn reference_bare(_ctx: TracePointContext) -> u32 {
    0
}

/// Does nothing at a function's entry: the cost of a uprobe being attached at all (the shape of
/// runbom's `SSL_write` hook before it was paired with a return probe).
#[aya_ebpf::macros::uprobe]
pub fn reference_uprobe_bare(_ctx: aya_ebpf::programs::ProbeContext) -> u32 {
    0
}

/// Does nothing at a function's return: the cost of a return probe being attached at all.
#[aya_ebpf::macros::uretprobe]
pub fn reference_uretprobe_bare(_ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
    0
}

/// Does nothing: the cost of a raw tracepoint program being attached at all.
#[raw_tracepoint]
pub fn reference_raw_bare(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The `n`th argument of a raw tracepoint (its `TP_PROTO` arguments, each widened to 64 bits).
#[inline(always)]
fn raw_arg(ctx: &RawTracePointContext, n: usize) -> u64 {
    // SAFETY: the context is an array of the tracepoint's arguments; the verifier checks the
    // offset against their number.
    unsafe { *aya_ebpf::EbpfContext::as_ptr(ctx).cast::<u64>().add(n) }
}

/// The syscall number at a raw `sys_exit` (`regs, ret`): `regs->orig_ax` (x86-64).
#[inline(always)]
fn raw_exit_id(ctx: &RawTracePointContext) -> u64 {
    /// `offsetof(struct pt_regs, orig_ax)` on x86-64.
    const ORIG_AX: usize = 15 * 8;
    let regs = raw_arg(ctx, 0) as *const u8;
    read_kernel(regs.wrapping_add(ORIG_AX).cast::<u64>()).unwrap_or(u64::MAX)
}

/// x86-64 `openat`.
const NR_OPENAT: u64 = 257;

/// Whether runbom hooks syscall `id` (x86-64 numbers: read, write, open, close, readv, writev,
/// socket, connect, accept, sendto, recvfrom, sendmsg, recvmsg, exit_group, openat, accept4,
/// sendmmsg, openat2).
#[inline(always)]
fn traced(id: u64) -> bool {
    matches!(
        id,
        0 | 1 | 2 | 3 | 19 | 20 | 41 | 42 | 43 | 44 | 45 | 46 | 47 | 231 | 257 | 288 | 307 | 437
    )
}

/// Raw `sys_enter` (`regs, id`): returns unless the syscall is `openat`.
#[raw_tracepoint]
pub fn reference_raw_enter_openat(ctx: RawTracePointContext) -> i32 {
    i32::from(raw_arg(&ctx, 1) == NR_OPENAT)
}

/// Raw `sys_exit` (`regs, ret`): returns unless the syscall is `openat`.
#[raw_tracepoint]
pub fn reference_raw_exit_openat(ctx: RawTracePointContext) -> i32 {
    i32::from(raw_exit_id(&ctx) == NR_OPENAT)
}

/// x86-64 `getppid`, a syscall no tracer here hooks: classic and raw dispatch compared on it.
const NR_GETPPID: u64 = 110;

/// Raw `sys_enter`: returns unless the syscall is `getppid`.
#[raw_tracepoint]
pub fn reference_raw_enter_getppid(ctx: RawTracePointContext) -> i32 {
    i32::from(raw_arg(&ctx, 1) == NR_GETPPID)
}

/// Raw `sys_exit`: returns unless the syscall is `getppid`.
#[raw_tracepoint]
pub fn reference_raw_exit_getppid(ctx: RawTracePointContext) -> i32 {
    i32::from(raw_exit_id(&ctx) == NR_GETPPID)
}

/// Raw `sys_enter`: returns unless runbom traces the syscall.
#[raw_tracepoint]
pub fn reference_raw_enter_traced(ctx: RawTracePointContext) -> i32 {
    i32::from(traced(raw_arg(&ctx, 1)))
}

/// Raw `sys_exit`: returns unless runbom traces the syscall.
#[raw_tracepoint]
pub fn reference_raw_exit_traced(ctx: RawTracePointContext) -> i32 {
    i32::from(traced(raw_exit_id(&ctx)))
}

/// `bpf_ringbuf_submit` flag: do not wake the consumer (it polls on a timer instead).
const BPF_RB_NO_WAKEUP: u64 = 1;

/// `sys_enter_openat`: path read into a ring record, record submitted (the kernel wakes the
/// consumer when it had caught up, as for runbom's records).
#[tracepoint]
pub fn reference_open_enter(ctx: TracePointContext) -> u32 {
    open_record(&ctx, 0)
}

/// As `reference_open_enter`, without waking the consumer.
#[tracepoint]
pub fn reference_open_enter_nowake(ctx: TracePointContext) -> u32 {
    open_record(&ctx, BPF_RB_NO_WAKEUP)
}

#[inline(always)]
fn open_record(ctx: &TracePointContext, flags: u64) -> u32 {
    open_record_with(ctx, flags, Piece::Nothing)
}

/// Any `sys_exit_*`: the result as a small record.
#[tracepoint]
pub fn reference_ret_exit(ctx: TracePointContext) -> u32 {
    ret_record(&ctx, 0)
}

/// As `reference_ret_exit`, without waking the consumer.
#[tracepoint]
pub fn reference_ret_exit_nowake(ctx: TracePointContext) -> u32 {
    ret_record(&ctx, BPF_RB_NO_WAKEUP)
}

#[inline(always)]
fn ret_record(ctx: &TracePointContext, flags: u64) -> u32 {
    let (_, tid) = current();
    let ret: i64 = sys_arg(ctx, 0);
    if let Some(mut entry) = REF_EVENTS.reserve::<RefRet>(0) {
        entry.write(RefRet {
            kind: REF_RET_KIND,
            tid,
            ret,
            end_ns: now(),
        });
        entry.submit(flags);
    }
    0
}

/// Reads the `openat` path into per-CPU scratch; returns the key with its prefix length set.
#[inline(always)]
fn read_path(ctx: &TracePointContext) -> Option<&'static mut Key<[u8; PATH_MAX]>> {
    let filename: *const u8 = sys_arg(ctx, 1);
    let key = REF_KEY_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let key = unsafe { &mut *key };
    // SAFETY: the destination is the key's fixed-size data array.
    let n = unsafe {
        bpf_probe_read_user_str(
            key.data.as_mut_ptr().cast(),
            PATH_MAX as u32,
            filename.cast(),
        )
    };
    key.prefix_len = if n > 1 { (n as u32 - 1) * 8 } else { 0 };
    Some(key)
}

/// `sys_enter_openat`, diagnostic: the path read alone.
#[tracepoint]
pub fn reference_read_enter(ctx: TracePointContext) -> u32 {
    u32::from(read_path(&ctx).is_none())
}

/// `sys_enter_openat`, diagnostic: the path read plus the longest-prefix lookup, the work a
/// path filter needs before it can drop an open.
#[tracepoint]
pub fn reference_lpm_enter(ctx: TracePointContext) -> u32 {
    let Some(key) = read_path(&ctx) else {
        return 1;
    };
    REF_PREFIXES.get(&*key).map_or(0, |v| u32::from(*v))
}

#[tracepoint]
pub fn reference_socket_enter(ctx: TracePointContext) -> u32 {
    // socket(family, type, protocol)
    let kind = (sys_arg::<u64>(&ctx, 1) & 0xf) as u16;
    let (_, tid) = current();
    let _ = REF_SOCKET_CALLS.insert(tid, kind, 0);
    0
}

#[tracepoint]
pub fn reference_socket_exit(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    // SAFETY: plain integer value, copied out at once.
    let Some(kind) = (unsafe { REF_SOCKET_CALLS.get(tid).copied() }) else {
        return 0;
    };
    let _ = REF_SOCKET_CALLS.remove(tid);
    let fd: i64 = sys_arg(&ctx, 0);
    if fd >= 0 {
        let _ = REF_SOCK_TYPES.insert(fd_key(tgid, fd as i32), kind, 0);
    }
    0
}

/// `sys_enter_connect`: the address read, a connect-sized record submitted.
#[tracepoint]
pub fn reference_connect_enter(ctx: TracePointContext) -> u32 {
    connect_record(&ctx, 0)
}

/// As `reference_connect_enter`, without waking the consumer.
#[tracepoint]
pub fn reference_connect_enter_nowake(ctx: TracePointContext) -> u32 {
    connect_record(&ctx, BPF_RB_NO_WAKEUP)
}

#[inline(always)]
fn connect_record(ctx: &TracePointContext, flags: u64) -> u32 {
    // connect(fd, uservaddr, addrlen)
    let fd = sys_arg::<i64>(ctx, 0) as i32;
    let addr: *const u8 = sys_arg(ctx, 1);
    let (tgid, tid) = current();
    let mut raw = [0u8; 24];
    // SAFETY: reads at most 24 bytes of user memory into a stack array.
    if unsafe { bpf_probe_read_user(raw.as_mut_ptr().cast(), 24, addr.cast()) } != 0 {
        return 0;
    }
    let mut remote = SockAddr {
        family: u16::from_ne_bytes([raw[0], raw[1]]),
        port: u16::from_be_bytes([raw[2], raw[3]]),
        addr: [0; 16],
    };
    remote.addr[..4].copy_from_slice(&raw[4..8]);
    // SAFETY: plain integer value, copied out at once.
    let sock_type = unsafe { REF_SOCK_TYPES.get(fd_key(tgid, fd)).copied() };
    if let Some(mut entry) = REF_EVENTS.reserve::<SockEvent>(0) {
        entry.write(SockEvent {
            header: header(
                EventKind::Connect,
                core::mem::size_of::<SockEvent>(),
                tgid,
                tid,
            ),
            end_ns: 0,
            remote,
            local: SockAddr::default(),
            fd,
            ret: 0,
            sock_type: sock_type.unwrap_or(SOCK_TYPE_UNKNOWN),
            _pad: [0; 6],
        });
        entry.submit(flags);
    }
    0
}

// Pricing runbom's watched open piece by piece: `reference_open_enter` plus one piece of what
// runbom's `sys_enter_openat` does beyond it (the benchmark's `ref-record+*` variants, readers
// stopped), and `reference_ret_exit` plus the `OPEN_SLOTS` check of runbom's exit.

/// The reference's own `OPEN_SLOTS`: slot `tid & mask` → tid of an open whose record was written.
#[map]
static REF_SLOTS: Array<u32> = Array::with_max_entries(runbom_common::OPEN_SLOTS_LEN, 0);

/// What [`open_record_with`] adds to the reference's entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Nothing: the reference itself.
    Nothing,
    /// The LPM-trie lookup of the path, with the record as the key (discarded when excluded).
    Lpm,
    /// `bpf_ringbuf_query` of the unread bytes before the reservation.
    Query,
    /// The thread's `REF_SLOTS` entry, checked at the start and written once submitted.
    Slot,
}

/// `reference_open_enter` + the trie lookup on the record.
#[tracepoint]
pub fn reference_open_lpm_enter(ctx: TracePointContext) -> u32 {
    open_record_with(&ctx, 0, Piece::Lpm)
}

/// `reference_open_enter` + the ring query.
#[tracepoint]
pub fn reference_open_query_enter(ctx: TracePointContext) -> u32 {
    open_record_with(&ctx, 0, Piece::Query)
}

/// `reference_open_enter` + the slot for the exit.
#[tracepoint]
pub fn reference_open_slot_enter(ctx: TracePointContext) -> u32 {
    open_record_with(&ctx, 0, Piece::Slot)
}

/// The reference's entry (`piece` `Nothing`): the path read into a reserved record, submitted
/// with `flags`.
#[inline(always)]
fn open_record_with(ctx: &TracePointContext, flags: u64, piece: Piece) -> u32 {
    // openat(dfd, filename, flags, mode)
    let filename: *const u8 = sys_arg(ctx, 1);
    let open_flags = sys_arg::<u64>(ctx, 2) as u32;
    let (tgid, tid) = current();
    let slot = if piece == Piece::Slot {
        REF_SLOTS.get_ptr_mut(tid & (runbom_common::OPEN_SLOTS_LEN - 1))
    } else {
        None
    };
    if let Some(s) = slot {
        // SAFETY: a plain u32 of an array map.
        unsafe {
            if *s == tid {
                *s = 0;
            }
        }
    }
    if piece == Piece::Query {
        core::hint::black_box(REF_EVENTS.query(0));
    }
    let Some(mut entry) = REF_EVENTS.reserve::<FileOpenEvent>(0) else {
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved record of the right size, ours until submitted; the
    // path read writes at most PATH_MAX bytes into its path array; `_pad` and `path` form an
    // LPM key (checked in `file.rs`).
    unsafe {
        let n = bpf_probe_read_user_str(
            (*ev).path.as_mut_ptr().cast(),
            PATH_MAX as u32,
            filename.cast(),
        );
        let len = if n > 0 { n as u32 - 1 } else { 0 };
        if piece == Piece::Lpm {
            (*ev)._pad = len * 8;
            let key = &*(&raw const (*ev)._pad).cast::<Key<[u8; PATH_MAX]>>();
            if REF_PREFIXES.get(key).copied() != Some(1) {
                entry.discard(BPF_RB_NO_WAKEUP);
                return 0;
            }
        }
        (*ev).header = header(
            EventKind::FileOpen,
            core::mem::size_of::<FileOpenEvent>(),
            tgid,
            tid,
        );
        (*ev).end_ns = 0;
        (*ev).flags = open_flags;
        (*ev).ret = 0;
        (*ev)._pad = 0;
        (*ev).path_len = len;
    }
    entry.submit(flags);
    if let Some(s) = slot {
        // SAFETY: as above.
        unsafe { *s = tid };
    }
    0
}

/// `reference_ret_exit` behind the slot check of runbom's exit.
#[tracepoint]
pub fn reference_ret_slot_exit(ctx: TracePointContext) -> u32 {
    let (_, tid) = current();
    let Some(s) = REF_SLOTS.get_ptr_mut(tid & (runbom_common::OPEN_SLOTS_LEN - 1)) else {
        return 0;
    };
    // SAFETY: a plain u32 of an array map.
    unsafe {
        if *s != tid {
            return 0;
        }
        *s = 0;
    }
    ret_record(&ctx, 0)
}
