//! `process.exec`, fork and `process.exit`.
//!
//! exec: `sys_enter_execve[at]` reads the filename and argv (user memory, still valid there) into
//! `EXECS[tid]`; `sched_process_exec` completes and emits it; a failed exec's `sys_exit` drops it.

use aya_ebpf::{
    helpers::{bpf_get_current_uid_gid, generated::bpf_probe_read_user_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use runbom_common::{
    ARGC_MAX, ARGV_MAX, EXEC_ARGV_TRUNCATED, EventKind, ExecEvent, ExitEvent, ForkEvent,
};

use crate::{
    maps::{EXEC_SCRATCH, EXECS, EXIT_CODES, WATCHED_PIDS},
    util::{
        config, current, field, header, header_of, is_self, keep_inflight, now, output,
        output_prefix, pending, read_user, read_user_str, scratch, sys_arg, take, tracepoints,
    },
};

const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    // execve(filename, argv, envp)
    exec_enter(&ctx, sys_arg(&ctx, 0), sys_arg(&ctx, 1)).unwrap_or(1)
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    // execveat(dfd, filename, argv, envp, flags)
    exec_enter(&ctx, sys_arg(&ctx, 1), sys_arg(&ctx, 2)).unwrap_or(1)
}

#[inline(always)]
fn exec_enter(_ctx: &TracePointContext, filename: *const u8, argv: *const u64) -> Option<u32> {
    let (tgid, tid) = current();
    if is_self(tgid) {
        return Some(0);
    }
    let budget = config().map_or(1024, |c| c.argv_max);
    let budget = if budget as usize >= ARGV_MAX {
        ARGV_MAX as u32 - 1
    } else {
        budget
    };
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let buf = unsafe { scratch(&EXEC_SCRATCH) }?;
    let ids = bpf_get_current_uid_gid();
    let ev = &mut buf.event;
    ev.header = header(EventKind::Exec, 0, tgid, tid);
    ev.end_ns = 0;
    ev.uid = ids as u32;
    ev.gid = (ids >> 32) as u32;
    ev.flags = 0;
    let n = read_user_str(&mut ev.filename, filename);
    ev.filename_len = if n > 0 { n as u32 - 1 } else { 0 };

    let mut off: u32 = 0;
    let mut argc: u32 = 0;
    for i in 0..ARGC_MAX {
        // One pointer of the user's argv array; a null one ends it.
        let ptr = match read_user(argv.wrapping_add(i as usize)) {
            Some(ptr) if ptr != 0 => ptr,
            _ => break,
        };
        // The offset goes through memory so that LLVM cannot drop the mask (it knows
        // `off < budget`; the verifier does not), then is masked below ARGV_MAX.
        // SAFETY: a field of the scratch record, which we own.
        unsafe { core::ptr::write_volatile(&raw mut buf.event.argv_len, off) };
        // SAFETY: as above.
        let at = (unsafe { core::ptr::read_volatile(&raw const buf.event.argv_len) }
            & (ARGV_MAX as u32 - 1)) as usize;
        // A constant size keeps the verifier's bounds simple: `at < ARGV_MAX` and the buffer is
        // 2 * ARGV_MAX long. The budget is applied to the total below.
        // SAFETY: the destination range lies inside the buffer, as above.
        let n = unsafe {
            bpf_probe_read_user_str(
                buf.argv.as_mut_ptr().add(at).cast(),
                ARGV_MAX as u32,
                ptr as *const _,
            )
        };
        if n <= 0 {
            break;
        }
        off += n as u32;
        argc = i + 1;
        if off >= budget {
            off = budget;
            buf.event.flags |= EXEC_ARGV_TRUNCATED;
            break;
        }
    }
    let ev = &mut buf.event;
    ev.argc = argc;
    ev.argv_len = off;
    keep_inflight(&EXECS, &tid, buf);
    Some(0)
}

tracepoints!(exec_exit: sys_exit_execve, sys_exit_execveat);

#[inline(always)]
fn exec_exit(ctx: &TracePointContext) -> u32 {
    // On success `sched_process_exec` already emitted and removed the entry.
    let ret: i64 = sys_arg(ctx, 0);
    if ret < 0 {
        let (_, tid) = current();
        let _ = EXECS.remove(tid);
    }
    0
}

/// `sched_process_exec`: `filename` (data_loc) at 8, `pid` at 12, `old_pid` at 16.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    try_sched_process_exec(&ctx).unwrap_or(1)
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Option<u32> {
    let old_pid: u32 = field(ctx, 16);
    // SAFETY: kept by the exec's entry under the thread id the task had then; ours until we
    // remove it below.
    let buf = unsafe { pending(&EXECS, old_pid) }?;
    let (tgid, tid) = current();
    let ev = &mut buf.event;
    ev.end_ns = now();
    ev.header.pid = tgid;
    ev.header.tid = tid;
    let mut argv_len = ev.argv_len as usize;
    if argv_len > ARGV_MAX {
        argv_len = ARGV_MAX;
    }
    let size = core::mem::size_of::<ExecEvent>() + argv_len;
    ev.header.size = size as u32;
    // SAFETY: `size` is at most the size of the `ExecBuffer`.
    unsafe { output_prefix(buf, size) };
    let _ = EXECS.remove(old_pid);
    Some(0)
}

/// `task_newtask`: `pid` (the new task) at 8, `clone_flags` at 32; runs in the parent.
#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let flags: u64 = field(&ctx, 32);
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    let child_pid: u32 = field(&ctx, 8);
    let (tgid, tid) = current();
    if is_self(tgid) {
        return 0;
    }
    // SAFETY: plain byte value, read and dropped at once.
    if unsafe { WATCHED_PIDS.get(tgid).is_some() } {
        let _ = WATCHED_PIDS.insert(child_pid, 1, 0);
    }
    output(&ForkEvent {
        header: header_of::<ForkEvent>(EventKind::Fork, tgid, tid),
        child_pid,
        _pad: 0,
    });
    0
}

#[tracepoint]
pub fn sys_enter_exit_group(ctx: TracePointContext) -> u32 {
    let code: i64 = sys_arg(&ctx, 0);
    let (tgid, _) = current();
    let _ = EXIT_CODES.insert(tgid, code as i32, 0);
    0
}

/// `sched_process_exit`: `group_dead` (bool) at 32 is set when the last thread exits.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let group_dead: u8 = field(&ctx, 32);
    if group_dead == 0 {
        return 0;
    }
    let (tgid, tid) = current();
    let _ = WATCHED_PIDS.remove(tgid);
    if is_self(tgid) {
        return 0;
    }
    let code = take(&EXIT_CODES, &tgid);
    output(&ExitEvent {
        header: header_of::<ExitEvent>(EventKind::Exit, tgid, tid),
        exit_code: code.unwrap_or(0),
        exit_code_known: u32::from(code.is_some()),
    });
    0
}
