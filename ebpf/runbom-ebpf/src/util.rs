//! Small helpers shared by the probes.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
    programs::TracePointContext,
};
use runbom_common::{EventHeader, EventKind, ProbeConfig};

use crate::maps::{CONFIG, COUNTERS, WATCHED_CGROUPS, WATCHED_PIDS};

/// Reads the `n`th argument of a `syscalls:sys_enter_*` tracepoint (or `ret` of a
/// `sys_exit_*` one, n = 0): every field is 8 bytes wide and they start at offset 16.
#[inline(always)]
pub fn sys_arg<T: Copy>(ctx: &TracePointContext, n: usize) -> T {
    // SAFETY: tracepoint contexts are readable directly; the verifier checks the offset
    // against the context size.
    unsafe { *(ctx.as_ptr().cast::<u8>().add(16 + 8 * n).cast::<T>()) }
}

/// Reads a field of a non-syscall tracepoint at `offset`.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: as for `sys_arg`.
    unsafe { *(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

/// The current task as `(tgid, tid)`.
#[inline(always)]
pub fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
pub fn config() -> Option<&'static ProbeConfig> {
    CONFIG.get(0)
}

/// True for runbom's own process, whose activity is never reported.
#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    config().is_some_and(|c| c.self_pid == tgid)
}

/// True when the task is a watched process (or descends from one) or runs in a watched cgroup.
#[inline(always)]
pub fn is_watched(tgid: u32, cgroup_id: u64) -> bool {
    // SAFETY: the values are plain bytes, read and dropped at once.
    unsafe { WATCHED_PIDS.get(tgid).is_some() || WATCHED_CGROUPS.get(cgroup_id).is_some() }
}

#[inline(always)]
pub fn cgroup_id() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_cgroup_id() }
}

/// A header for an event of the current task at the current time.
#[inline(always)]
pub fn header(kind: EventKind, size: usize, tgid: u32, tid: u32) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        pid: tgid,
        tid,
        time_ns: now(),
        cgroup_id: cgroup_id(),
    }
}

/// Adds one to a loss counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// `(tgid << 32) | fd`, the key of per-socket maps.
#[inline(always)]
pub fn fd_key(tgid: u32, fd: i32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd as u32)
}
