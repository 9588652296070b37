//! Small helpers shared by the probes: tracepoint arguments, the current task, user-memory reads,
//! and the few map idioms every probe repeats (keep a record between a syscall's entry and exit,
//! take it back, write it to the ring, count what is lost). All are `#[inline(always)]`: they
//! compile to exactly the helper calls they name, nothing more.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{
            bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
            bpf_probe_read_user, bpf_probe_read_user_str,
        },
    },
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use runbom_common::{EventHeader, EventKind, ProbeConfig, SHED_SLOTS, counter};

use crate::maps::{CONFIG, COUNTERS, EVENTS, WATCHED_CGROUPS, WATCHED_PIDS};

/// Declares tracepoint programs that share one body, a `fn(&TracePointContext) -> u32`:
/// `tracepoints!(open_exit: sys_exit_open, sys_exit_openat);`. Every program still needs a name
/// of its own, because userspace attaches programs to tracepoints by name.
macro_rules! tracepoints {
    ($body:ident: $($name:ident),+ $(,)?) => {
        $(
            #[aya_ebpf::macros::tracepoint]
            pub fn $name(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
                $body(&ctx)
            }
        )+
    };
}
pub(crate) use tracepoints;

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

/// [`header`] for a fixed-size record `T`: its size is the record's.
#[inline(always)]
pub fn header_of<T>(kind: EventKind, tgid: u32, tid: u32) -> EventHeader {
    header(kind, core::mem::size_of::<T>(), tgid, tid)
}

/// Adds one to a loss counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// `bpf_ringbuf_query`: bytes written and not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_output` flags.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Writes a record (every record starts with an [`EventHeader`]) to the ring buffer.
///
/// - Under overload, a record whose kind is shed at the ring's fill is dropped and counted
///   (`ProbeConfig::shed_at`, `counter::SHED + kind`).
/// - The reader is not woken (a wake-up is an inter-processor interrupt, microseconds on a VM):
///   it drains on a short timer, and only the record that crosses a multiple of
///   `ProbeConfig::wake_bytes` (a power of two) unread bytes wakes it at once, so a burst is read before the
///   ring fills. With `wake_bytes` 0 the kernel wakes a reader that had caught up.
/// - A full ring is counted (`RING_FULL`), never retried.
#[inline(always)]
pub fn output<T: ?Sized>(record: &T) {
    // SAFETY: every record starts with an `EventHeader`, whose first field is the kind.
    let kind = unsafe { *core::ptr::from_ref(record).cast::<u32>() };
    let mut flags = 0;
    if let Some(cfg) = config() {
        let avail = ring_unread();
        if shed_at(cfg, kind as usize, avail) {
            return;
        }
        flags = wake_flags(cfg, avail, core::mem::size_of_val(record) as u64);
    }
    if EVENTS.output::<T>(record, flags).is_err() {
        count(counter::RING_FULL);
    }
}

/// `bpf_ringbuf_query(BPF_RB_AVAIL_DATA)`: bytes of the ring written and not yet consumed.
#[inline(always)]
pub fn ring_unread() -> u64 {
    EVENTS.query(BPF_RB_AVAIL_DATA)
}

/// The submit flags of a record of `size` bytes written while the ring holds `avail` unread
/// bytes (see [`output`]).
#[inline(always)]
pub fn wake_flags(cfg: &ProbeConfig, avail: u64, size: u64) -> u64 {
    let wake = u64::from(cfg.wake_bytes);
    if wake == 0 {
        return 0;
    }
    // `wake_bytes` is a power of two: the record crosses a multiple of it when the unread byte
    // counts before and after it differ in a bit at or above it.
    if avail ^ (avail + size) >= wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// True (and counted) when records of shedding slot `slot` (an [`EventKind`] number, or
/// `SHED_FILE_LOW_VALUE`) are shed while the ring holds `avail` unread bytes: for programs that
/// can drop an event before doing the work of building it.
#[inline(always)]
pub fn shed_at(cfg: &ProbeConfig, slot: usize, avail: u64) -> bool {
    let slot = slot & (SHED_SLOTS - 1);
    let at = cfg.shed_at[slot];
    if at != 0 && avail >= u64::from(at) {
        count(counter::SHED + slot as u32);
        return true;
    }
    false
}

/// Writes the first `size` bytes of a record with a variable tail (exec's argv, HTTP data) to the
/// ring buffer, as [`output`] does.
///
/// # Safety
/// `size` is at most `size_of::<T>()`.
#[inline(always)]
pub unsafe fn output_prefix<T>(record: &T, size: usize) {
    // SAFETY: the caller keeps `size` within the record.
    let bytes =
        unsafe { core::slice::from_raw_parts(core::ptr::from_ref(record).cast::<u8>(), size) };
    output(bytes);
}

/// Keeps a record in an in-flight map (syscall entry → exit, or entry → return probe); a full
/// map is counted (`INFLIGHT_FULL`).
#[inline(always)]
pub fn keep_inflight<K, V>(map: &LruHashMap<K, V>, key: &K, value: &V) {
    if map.insert(key, value, 0).is_err() {
        count(counter::INFLIGHT_FULL);
    }
}

/// Removes `key` from a per-socket map when it is there: the lookup is inlined by the verifier
/// and takes no lock, a delete of an absent key takes the bucket's lock.
#[inline(always)]
pub fn forget<V>(map: &LruHashMap<u64, V>, key: u64) {
    if map.get_ptr(key).is_some() {
        let _ = map.remove(key);
    }
}

/// Takes a plain value out of a map: copied out, then removed (only when it was there).
#[inline(always)]
pub fn take<K, V: Copy>(map: &LruHashMap<K, V>, key: &K) -> Option<V> {
    // SAFETY: plain value, copied out at once.
    let value = unsafe { map.get(key).copied()? };
    let _ = map.remove(key);
    Some(value)
}

/// The per-CPU scratch record of `map`: records too large for the stack are built there.
///
/// # Safety
/// `map` is a static map, and at most one reference to the record is alive (each scratch map
/// serves one kind of record, built by one program at a time on each CPU).
#[inline(always)]
pub unsafe fn scratch<T>(map: &PerCpuArray<T>) -> Option<&'static mut T> {
    // SAFETY: exclusive by the caller's contract.
    map.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// `(tgid << 32) | fd`, the key of per-socket maps.
#[inline(always)]
pub fn fd_key(tgid: u32, fd: i32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd as u32)
}

/// Reads a `T` from user memory.
#[inline(always)]
pub fn read_user<T: Copy + Default>(ptr: *const T) -> Option<T> {
    let mut v = T::default();
    // SAFETY: writes exactly `size_of::<T>()` bytes into a stack value of that type.
    let r = unsafe {
        bpf_probe_read_user(
            core::ptr::from_mut(&mut v).cast(),
            core::mem::size_of::<T>() as u32,
            ptr.cast(),
        )
    };
    (r == 0).then_some(v)
}

/// Reads a `T` from kernel memory.
#[inline(always)]
pub fn read_kernel<T: Copy + Default>(ptr: *const T) -> Option<T> {
    let mut v = T::default();
    // SAFETY: writes exactly `size_of::<T>()` bytes into a stack value of that type.
    let r = unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(&mut v).cast(),
            core::mem::size_of::<T>() as u32,
            ptr.cast(),
        )
    };
    (r == 0).then_some(v)
}

/// Reads a NUL-terminated user string into `dst` (at most `N` bytes, NUL included); the
/// helper's result: the bytes written with the NUL, or a negative error.
#[inline(always)]
pub fn read_user_str<const N: usize>(dst: &mut [u8; N], src: *const u8) -> i64 {
    // SAFETY: the destination is a fixed-size array of `N` bytes.
    unsafe { bpf_probe_read_user_str(dst.as_mut_ptr().cast(), N as u32, src.cast()) }
}

/// The first buffer of a user `struct iovec` array as `(base, len)`.
#[inline(always)]
pub fn first_iovec(iov: *const [u64; 2]) -> Option<(*const u8, u64)> {
    let [base, len] = read_user(iov)?;
    Some((base as *const u8, len))
}

/// The address (`msg_name`, may be null) and first buffer of a user `struct msghdr`:
/// `msg_name` at 0, `msg_iov` at 16, `msg_iovlen` at 24.
#[inline(always)]
pub fn msghdr_first(msg: *const [u64; 3]) -> Option<(*const u8, *const u8, u64)> {
    let hdr = read_user(msg)?;
    let (base, len) = first_iovec(hdr[2] as *const [u64; 2])?;
    Some((hdr[0] as *const u8, base, len))
}

/// The address (`msg_name`, may be null), iovec array and iovec count of a user `struct msghdr`.
#[inline(always)]
pub fn msghdr_iov(msg: *const [u64; 4]) -> Option<(*const u8, *const [u64; 2], u64)> {
    let hdr = read_user(msg)?;
    Some((hdr[0] as *const u8, hdr[2] as *const [u64; 2], hdr[3]))
}
