//! `file.open`: open, openat and openat2, filtered here in the kernel so that a busy host does
//! not flood the ring. A path is kept when the longest configured prefix that matches it is an
//! include (LPM trie), and — when workload filtering is on — the task is a watched pid or runs in
//! a watched cgroup. Kept opens wait in `OPENS[tid]` for the syscall's result. An include can
//! be low-value (`PREFIX_LOW_VALUE`): its opens are shed first when the ring fills.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user, macros::tracepoint, maps::lpm_trie::Key,
    programs::TracePointContext,
};
use runbom_common::{
    EventKind, FILTER_BY_WORKLOAD, FileOpenEvent, PATH_MAX, PREFIX_INCLUDE, PREFIX_LOW_VALUE,
    SHED_FILE_LOW_VALUE,
};

use crate::{
    maps::{FILE_PREFIXES, OPEN_SCRATCH, OPENS},
    util::{
        cgroup_id, config, current, header_of, is_watched, keep_inflight, now, output, pending,
        read_user_str, scratch, shed, sys_arg, tracepoints,
    },
};

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    // open(filename, flags, mode)
    open_enter(sys_arg(&ctx, 0), sys_arg::<u64>(&ctx, 1) as u32).unwrap_or(1)
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    // openat(dfd, filename, flags, mode)
    open_enter(sys_arg(&ctx, 1), sys_arg::<u64>(&ctx, 2) as u32).unwrap_or(1)
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // openat2(dfd, filename, how, usize); `how->flags` is the first u64 of `struct open_how`.
    let how: *const u64 = sys_arg(&ctx, 2);
    let mut flags: u64 = 0;
    // SAFETY: reads 8 bytes of user memory into a stack slot (zeroed if the read fails).
    unsafe { bpf_probe_read_user(core::ptr::from_mut(&mut flags).cast(), 8, how.cast()) };
    open_enter(sys_arg(&ctx, 1), flags as u32).unwrap_or(1)
}

// `_pad` and `path` of a `FileOpenEvent` have the layout of an LPM-trie key (prefix length in
// bits, then the bytes), so the record being built doubles as the lookup key: the path is read
// once, straight into the record, and never copied.
const _: () = assert!(
    core::mem::offset_of!(FileOpenEvent, path) == core::mem::offset_of!(FileOpenEvent, _pad) + 4
        && core::mem::offset_of!(FileOpenEvent, path) + PATH_MAX
            == core::mem::size_of::<FileOpenEvent>()
);

#[inline(always)]
fn open_enter(filename: *const u8, flags: u32) -> Option<u32> {
    let (tgid, tid) = current();
    let cfg = config()?;
    if cfg.self_pid == tgid {
        return Some(0);
    }
    if cfg.file_filter & FILTER_BY_WORKLOAD != 0 && !is_watched(tgid, cgroup_id()) {
        return Some(0);
    }
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let ev = unsafe { scratch(&OPEN_SCRATCH) }?;
    let n = read_user_str(&mut ev.path, filename);
    if n <= 1 {
        return Some(0);
    }
    let len = n as u32 - 1;
    ev._pad = len * 8;
    // SAFETY: `_pad` and `path` form a `Key<[u8; PATH_MAX]>` (checked above; the key is
    // packed, so any address is aligned), inside the scratch record we own.
    let key = unsafe { &*(&raw const ev._pad).cast::<Key<[u8; PATH_MAX]>>() };
    let class = FILE_PREFIXES.get(key).copied();
    ev._pad = 0;
    // Under overload an open is shed here, before it is kept: low-value paths first.
    let slot = match class {
        Some(PREFIX_INCLUDE) => EventKind::FileOpen as usize,
        Some(PREFIX_LOW_VALUE) => SHED_FILE_LOW_VALUE,
        _ => return Some(0),
    };
    if shed(slot) {
        return Some(0);
    }
    ev.header = header_of::<FileOpenEvent>(EventKind::FileOpen, tgid, tid);
    ev.flags = flags;
    ev.path_len = len;
    keep_inflight(&OPENS, &tid, ev);
    Some(0)
}

tracepoints!(open_exit: sys_exit_open, sys_exit_openat, sys_exit_openat2);

#[inline(always)]
fn open_exit(ctx: &TracePointContext) -> u32 {
    let (_, tid) = current();
    // SAFETY: the entry is keyed by our thread id; nobody else touches it.
    let Some(ev) = (unsafe { pending(&OPENS, tid) }) else {
        return 0;
    };
    ev.end_ns = now();
    ev.ret = sys_arg::<i64>(ctx, 0) as i32;
    output(ev);
    let _ = OPENS.remove(tid);
    0
}
