//! `file.open`: open, openat and openat2, filtered here in the kernel so that a busy host does
//! not flood the ring. A path is kept when the longest configured prefix that matches it is an
//! include (LPM trie), and — when workload filtering is on — the task is a watched pid or runs in
//! a watched cgroup. An include can be low-value (`PREFIX_LOW_VALUE`): its opens are shed first
//! when the ring fills. The path's first two bytes index `FILE_HEADS` (userspace computes it from
//! the same prefixes): its entry is the verdict when those bytes decide it (with the embedded
//! defaults: every path outside `/p`, `/s`, `/d`, `/u`, `/l`, `/e`, `/o`, `/v`), or a short list
//! of the longer prefixes that start with them (`HEAD_RULES`), compared word by word; only a head
//! with more or longer prefixes than a list holds asks the trie.
//!
//! An open is two records, joined per thread in userspace: the entry reserves the
//! [`FileOpenEvent`] in the ring, reads the path straight into it (the record doubles as the
//! LPM key) and submits it, or discards the reservation when the path is not included. Once the
//! ring is as full as opens start to be shed (a discarded reservation holds its room until the
//! reader passes it), the path is read into per-CPU scratch instead, and a kept open is shed or
//! copied into the ring. The exit writes a 24-byte [`FileOpenResult`], but only when this
//! thread's entry wrote a record: the entry leaves its tid in `OPEN_SLOTS[tid & mask]` (an
//! array, whose lookups the verifier inlines), the exit finds it there and clears it. No map
//! round trip for the record itself, and a filtered open's exit costs one inlined lookup. The
//! result never wakes the reader (unless every record does, `wake_bytes` 0): the entry's record
//! that crosses a wake-up mark does, and the reader's drain timer collects the rest.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user, macros::tracepoint, maps::lpm_trie::Key,
    programs::TracePointContext,
};
use runbom_common::{
    EventKind, FILTER_BY_WORKLOAD, FileOpenEvent, FileOpenResult, HEAD_ASK_TRIE, HEAD_EXCLUDE,
    HEAD_INCLUDE, HEAD_LIST, HEAD_LOW_VALUE, HeadRules, OPEN_SLOTS_LEN, PATH_HEADS, PATH_MAX,
    PREFIX_INCLUDE, PREFIX_LOW_VALUE, ProbeConfig, SHED_FILE_LOW_VALUE, counter,
};

use crate::{
    maps::{EVENTS, FILE_HEADS, FILE_PREFIXES, HEAD_RULES, OPEN_SCRATCH, OPEN_SLOTS},
    util::{
        BPF_RB_NO_WAKEUP, cgroup_id, config, count, current, header_of, is_watched, now,
        read_user_str, ring_unread, scratch, shed_at, sys_arg, tracepoints, wake_flags,
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
    let slot = stale_slot_forgotten(tid)?;
    let cfg = config()?;
    if cfg.self_pid == tgid {
        return Some(0);
    }
    if cfg.file_filter & FILTER_BY_WORKLOAD != 0 && !is_watched(tgid, cgroup_id()) {
        return Some(0);
    }
    // A discarded reservation keeps its room in the ring until the reader passes it: once the
    // ring is as full as opens start to be shed (or half full, when they are never shed), they
    // are classified outside the ring.
    let avail = ring_unread();
    if avail >= u64::from(cfg.open_scratch_at) {
        return open_under_pressure(cfg, filename, flags, (tgid, tid, slot), avail);
    }
    let Some(mut entry) = EVENTS.reserve::<FileOpenEvent>(0) else {
        return open_under_pressure(cfg, filename, flags, (tgid, tid, slot), avail);
    };
    // SAFETY: the reservation is a `FileOpenEvent`'s worth of ring memory (bytes of earlier
    // records), ours until it is submitted or discarded; every field is written below before
    // it is submitted.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    let Some((_, len)) = classify(ev, filename) else {
        entry.discard(BPF_RB_NO_WAKEUP);
        return Some(0);
    };
    fill(ev, flags, len, (tgid, tid));
    entry.submit(wake_flags(
        cfg,
        avail,
        core::mem::size_of::<FileOpenEvent>() as u64,
    ));
    // SAFETY: see `stale_slot_forgotten`.
    unsafe { *slot = tid };
    Some(0)
}

/// An open while the ring is filling up (or full): the path is read and looked up in per-CPU
/// scratch, the open shed (before it is written: low-value paths first) or written with a
/// copy.
#[inline(always)]
fn open_under_pressure(
    cfg: &ProbeConfig,
    filename: *const u8,
    flags: u32,
    (tgid, tid, open_slot): (u32, u32, *mut u32),
    avail: u64,
) -> Option<u32> {
    count(counter::OPEN_SCRATCH);
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let ev = unsafe { scratch(&OPEN_SCRATCH) }?;
    let Some((slot, len)) = classify(ev, filename) else {
        return Some(0);
    };
    if shed_at(cfg, slot, avail) {
        return Some(0);
    }
    fill(ev, flags, len, (tgid, tid));
    if EVENTS
        .output::<FileOpenEvent>(
            &*ev,
            wake_flags(cfg, avail, core::mem::size_of::<FileOpenEvent>() as u64),
        )
        .is_err()
    {
        count(counter::RING_FULL);
        return Some(0);
    }
    // SAFETY: see `stale_slot_forgotten`.
    unsafe { *open_slot = tid };
    Some(0)
}

/// Everything of a kept open's record but the path.
#[inline(always)]
fn fill(ev: &mut FileOpenEvent, flags: u32, len: u32, (tgid, tid): (u32, u32)) {
    ev.header = header_of::<FileOpenEvent>(EventKind::FileOpen, tgid, tid);
    ev.end_ns = 0;
    ev.flags = flags;
    ev.ret = 0;
    ev.path_len = len;
}

/// This thread's slot, cleared if it still holds the thread: an earlier open's exit was missed
/// (the exit program was attached after the entry's), and this open's exit must not write a
/// result for it. A kept open writes its tid there, for its exit.
///
/// The slot is a plain u32 of an array map; a racing thread of the same slot only makes one of
/// the two lose its result record (userspace reports that open without it).
#[inline(always)]
fn stale_slot_forgotten(tid: u32) -> Option<*mut u32> {
    let s = OPEN_SLOTS.get_ptr_mut(tid & (OPEN_SLOTS_LEN - 1))?;
    // SAFETY: as above.
    unsafe {
        if *s == tid {
            *s = 0;
        }
    }
    Some(s)
}

/// Reads the path into `ev.path` and looks it up among the prefixes: the shedding slot and the
/// path's length when it is included, `None` otherwise. Leaves `ev._pad` 0.
#[inline(always)]
fn classify(ev: &mut FileOpenEvent, filename: *const u8) -> Option<(usize, u32)> {
    let n = read_user_str(&mut ev.path, filename);
    if n <= 1 {
        ev._pad = 0;
        return None;
    }
    let len = n as u32 - 1;
    ev._pad = 0;
    let head = if len >= 2 {
        let i = ((usize::from(ev.path[0]) << 8) | usize::from(ev.path[1])) & (PATH_HEADS - 1);
        FILE_HEADS.get(0).map_or(HEAD_ASK_TRIE, |heads| heads[i])
    } else {
        HEAD_ASK_TRIE
    };
    let class = match head {
        HEAD_ASK_TRIE => {
            ev._pad = len * 8;
            // SAFETY: `_pad` and `path` form a `Key<[u8; PATH_MAX]>` (checked above; the key
            // is packed, so any address is aligned), inside the record we own.
            let key = unsafe { &*(&raw const ev._pad).cast::<Key<[u8; PATH_MAX]>>() };
            let class = FILE_PREFIXES.get(key).copied();
            ev._pad = 0;
            class
        }
        HEAD_INCLUDE => Some(PREFIX_INCLUDE),
        HEAD_LOW_VALUE => Some(PREFIX_LOW_VALUE),
        HEAD_EXCLUDE => None,
        list => HEAD_RULES
            .get(u32::from(list - HEAD_LIST))
            .and_then(|rules| by_rules(rules, &ev.path, len)),
    };
    match class {
        Some(PREFIX_INCLUDE) => Some((EventKind::FileOpen as usize, len)),
        Some(PREFIX_LOW_VALUE) => Some((SHED_FILE_LOW_VALUE, len)),
        _ => None,
    }
}

/// The trie's class of `path` (`len` bytes) by the rules of `list` ([`HeadRules::verdict`]).
#[inline(always)]
fn by_rules(list: &HeadRules, path: &[u8; PATH_MAX], len: u32) -> Option<u8> {
    let words = path.as_ptr().cast::<u64>();
    // SAFETY: `verdict` reads word `w` only when `w * 8 < len < PATH_MAX`: inside the path
    // array, which sits at an 8-byte aligned offset of the record.
    head_class(list.verdict(len, |w| unsafe { words.add(w).read() }) as u8)
}

/// The trie's class of a `HEAD_*` verdict.
#[inline(always)]
fn head_class(head: u8) -> Option<u8> {
    match head {
        HEAD_INCLUDE => Some(PREFIX_INCLUDE),
        HEAD_LOW_VALUE => Some(PREFIX_LOW_VALUE),
        _ => None,
    }
}

tracepoints!(open_exit: sys_exit_open, sys_exit_openat, sys_exit_openat2);

#[inline(always)]
fn open_exit(ctx: &TracePointContext) -> u32 {
    let (_, tid) = current();
    let Some(s) = OPEN_SLOTS.get_ptr_mut(tid & (OPEN_SLOTS_LEN - 1)) else {
        return 0;
    };
    // SAFETY: a plain u32 of an array map (see `open_enter`).
    unsafe {
        if *s != tid {
            return 0;
        }
        *s = 0;
    }
    // Never shed (no setting names it), and woken for only when every record wakes the reader.
    let flags = match config() {
        Some(cfg) if cfg.wake_bytes != 0 => BPF_RB_NO_WAKEUP,
        _ => 0,
    };
    let result = FileOpenResult {
        kind: EventKind::FileOpenResult as u32,
        tid,
        end_ns: now(),
        ret: sys_arg::<i64>(ctx, 0) as i32,
        _pad: 0,
    };
    if EVENTS.output::<FileOpenResult>(&result, flags).is_err() {
        count(counter::RING_FULL);
    }
    0
}
