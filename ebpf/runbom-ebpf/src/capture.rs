//! What every capture of written or read bytes shares: the per-thread record of a write-family
//! call between its entry and exit ([`Write`], [`keep_write`]), and the ring record of captured
//! bytes ([`Capture`], [`emit`]). The HTTP/1 (`http.rs`), HTTP/2 (`h2.rs`) and JSON-RPC
//! (`jsonrpc.rs`) captures build on these; none of them on each other's internals.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext,
};
use runbom_common::{EventKind, HTTP_DATA_MAX, HttpEvent, SockAddr};

use crate::{
    maps::{
        H2_SOCKS, HTTP_SCRATCH, MARKING_PROCS, MARKING_PROCS_LEN, MARKING_PROCS_SHARED,
        SOCK_RESPONSE, SOCK_WRITES, SockWrite,
    },
    util::{current, fd_key, forget, header, keep_inflight, now, output_prefix, scratch, sys_arg},
};

/// Copies at most `cap` bytes of `buf` into a record stamped `time_ns` and writes it to the
/// ring.
#[inline(always)]
pub(crate) fn emit(capture: &Capture, buf: *const u8, len: u64, cap: u32) -> Option<()> {
    let (tgid, tid) = current();
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let rec = unsafe { scratch(&HTTP_SCRATCH) }?;
    let n = if len > u64::from(cap) {
        cap
    } else {
        len as u32
    };
    // Through memory so that LLVM cannot drop the mask the verifier needs, then bounded.
    // SAFETY: a field of the scratch record, which we own.
    unsafe { core::ptr::write_volatile(&raw mut rec.event.data_len, n) };
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&raw const rec.event.data_len) }
        & (2 * HTTP_DATA_MAX as u32 - 1);
    if n == 0 || n > HTTP_DATA_MAX as u32 {
        return None;
    }
    // SAFETY: `n <= HTTP_DATA_MAX`, the data array's size.
    if unsafe { bpf_probe_read_user(rec.data.as_mut_ptr().cast(), n, buf.cast()) } != 0 {
        return None;
    }
    let size = core::mem::size_of::<HttpEvent>() + n as usize;
    let mut header = header(EventKind::HttpData, size, tgid, tid);
    header.time_ns = capture.time_ns;
    rec.event = HttpEvent {
        header,
        ssl: capture.ssl,
        total_len: len,
        peer: capture.peer,
        fd: capture.fd,
        source: capture.source,
        flags: capture.flags,
        data_len: n,
    };
    // SAFETY: `size` is at most the size of the `HttpBuffer`.
    unsafe { output_prefix(rec, size) };
    Some(())
}

/// What a record says about where its bytes went, and when the call started.
pub(crate) struct Capture {
    pub ssl: u64,
    pub peer: SockAddr,
    pub fd: i32,
    pub source: u16,
    pub flags: u16,
    pub time_ns: u64,
}

/// The socket argument of every write-family syscall (`fd`, always first).
#[inline(always)]
pub(crate) fn fd_arg(ctx: &TracePointContext) -> i32 {
    sys_arg::<i64>(ctx, 0) as i32
}

/// A write-family call as its entry sees it.
pub(crate) struct Write {
    pub fd: i32,
    pub buf: *const u8,
    pub len: u64,
    /// The destination address (`sendto`, `sendmsg`), may be null.
    pub addr: *const u8,
    pub iov: u64,
    pub iov_len: u64,
    /// A DNS query on a connected UDP socket is looked for here (`write`, `writev`: `sendto`
    /// and `sendmsg` have their own DNS probes in `net`).
    pub dns: bool,
}

#[inline(always)]
pub(crate) fn keep_write(tid: u32, w: &Write, peer: SockAddr, source: u16, flags: u16) {
    let kept = SockWrite {
        buf: w.buf as u64,
        len: w.len,
        time_ns: now(),
        iov: w.iov,
        iov_len: w.iov_len,
        peer,
        fd: w.fd,
        source,
        flags,
        _pad: 0,
    };
    keep_inflight(&SOCK_WRITES, &tid, &kept);
}

/// `close(fd)`: what the HTTP/2 (`H2_SOCKS`) and HTTP/1 response (`SOCK_RESPONSE`) captures
/// know of the socket goes with it, so that a file or socket that reuses the descriptor number
/// is not captured. One program for both (one dispatch per `close`, the commonest syscall
/// runbom hooks), deleting only what is there, and only for a process that has marked a socket
/// ([`may_have_marks`]: one inlined array lookup for every other close). Named after its
/// tracepoint: the kernel keeps 15 characters of a program's name, and `http_sys_enter_` would
/// be `http_sys_enter_write`'s too.
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current();
    if !may_have_marks(tgid) {
        return 0;
    }
    let key = fd_key(tgid, fd_arg(&ctx));
    forget(&H2_SOCKS, key);
    forget(&SOCK_RESPONSE, key);
    0
}

/// Notes, before `tgid` marks a socket in `H2_SOCKS` or `SOCK_RESPONSE`, that its closes must
/// look there (`MARKING_PROCS`). A free slot is claimed with a compare-and-exchange, so two ids
/// of one slot (only beyond the default `pid_max`) marking in the same instant cannot both
/// believe they hold it: the one that loses makes the slot shared. Storing "shared" needs no
/// exchange: it covers every id of the slot, so it never loses a mark.
#[inline(always)]
pub(crate) fn will_mark(tgid: u32) {
    let Some(slot) = MarkingSlot::of(tgid) else {
        return;
    };
    let id = u64::from(tgid);
    let seen = slot.load();
    if seen == id || seen == MARKING_PROCS_SHARED {
        return;
    }
    if seen == 0 {
        let now = slot.compare_exchange(0, id);
        if now == 0 || now == id || now == MARKING_PROCS_SHARED {
            return;
        }
    }
    slot.store(MARKING_PROCS_SHARED);
}

/// A process's last thread exited: its slot is freed if it still names it (not when shared),
/// so that the slots of a busy node's short-lived clients do not stay looked up.
#[inline(always)]
pub(crate) fn exited(tgid: u32) {
    let id = u64::from(tgid);
    if let Some(slot) = MarkingSlot::of(tgid)
        && slot.load() == id
    {
        slot.compare_exchange(id, 0);
    }
}

/// Whether `tgid` may have a socket marked in `H2_SOCKS` or `SOCK_RESPONSE` ([`will_mark`]):
/// when not, none of its reads, writes or closes need look there (nor for a read kept at entry).
#[inline(always)]
pub(crate) fn may_have_marks(tgid: u32) -> bool {
    match MarkingSlot::of(tgid) {
        Some(slot) => {
            let seen = slot.load();
            seen == u64::from(tgid) || seen == MARKING_PROCS_SHARED
        }
        None => true,
    }
}

/// A process's slot of `MARKING_PROCS`, shared with programs on other CPUs. Loads and stores
/// are single aligned 64-bit accesses (volatile: the eBPF backend has no atomic load or store
/// before its v4 instruction set); the exchange is one `BPF_CMPXCHG`, through the intrinsic
/// because the eBPF target's specification leaves `AtomicU64::compare_exchange` out.
struct MarkingSlot(*mut u64);

impl MarkingSlot {
    #[inline(always)]
    fn of(tgid: u32) -> Option<Self> {
        MARKING_PROCS
            .get_ptr_mut(tgid & (MARKING_PROCS_LEN - 1))
            .map(Self)
    }

    #[inline(always)]
    fn load(&self) -> u64 {
        // SAFETY: an aligned u64 of an array map, which lives as long as the program.
        unsafe { core::ptr::read_volatile(self.0) }
    }

    #[inline(always)]
    fn store(&self, value: u64) {
        // SAFETY: as for `load`.
        unsafe { core::ptr::write_volatile(self.0, value) }
    }

    /// Stores `new` if the slot holds `old`; the value it held.
    #[inline(always)]
    fn compare_exchange(&self, old: u64, new: u64) -> u64 {
        // SAFETY: as for `load`.
        unsafe {
            core::intrinsics::atomic_cxchg::<
                u64,
                { AtomicOrdering::Relaxed },
                { AtomicOrdering::Relaxed },
            >(self.0, old, new)
            .0
        }
    }
}
