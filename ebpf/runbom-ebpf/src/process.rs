//! `process.exec`, fork and `process.exit`.
//!
//! exec: one program, `sched_process_exec`, once the kernel has committed the new image. The
//! filename is the tracepoint's own (`bprm->filename`, kernel memory) and argv is the new
//! image's argument area (`current->mm->arg_start .. arg_end`), the bytes the kernel copied
//! and the program runs with, what `/proc/PID/cmdline` shows: no other thread of the caller
//! can change them any more, and a failed exec never reaches this tracepoint.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_uid_gid,
        generated::{bpf_get_current_task, bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use runbom_common::{
    ARGV_MAX, EXEC_ARGV_TRUNCATED, EventKind, ExecEvent, ExitEvent, ForkEvent, PATH_MAX,
};

use crate::{
    capture,
    maps::{EXEC_SCRATCH, EXIT_CODES, WATCHED_PIDS},
    util::{
        config, current, field, header, header_of, is_self, output, output_prefix, read_kernel,
        scratch, sys_arg, take,
    },
};

const CLONE_THREAD: u64 = 0x0001_0000;

/// `sched_process_exec`: `filename` (`__data_loc char[]`: offset in the low 16 bits, length
/// in the high ones) at 8, `pid` at 12, `old_pid` at 16.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    try_sched_process_exec(&ctx).unwrap_or(1)
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Option<u32> {
    let (tgid, tid) = current();
    if is_self(tgid) {
        return Some(0);
    }
    let cfg = config()?;
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let buf = unsafe { scratch(&EXEC_SCRATCH) }?;
    let ids = bpf_get_current_uid_gid();
    let ev = &mut buf.event;
    ev.header = header(EventKind::Exec, 0, tgid, tid);
    ev.end_ns = ev.header.time_ns;
    ev.uid = ids as u32;
    ev.gid = (ids >> 32) as u32;
    ev.argc = 0;
    ev.flags = 0;
    let loc: u32 = field(ctx, 8);
    let filename = ctx
        .as_ptr()
        .cast::<u8>()
        .wrapping_add((loc & 0xffff) as usize);
    // SAFETY: the destination is the record's filename array; the source is the tracepoint's
    // own record, kernel memory.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.filename.as_mut_ptr().cast(),
            PATH_MAX as u32,
            filename.cast(),
        )
    };
    ev.filename_len = if n > 0 { n as u32 - 1 } else { 0 };

    let argv_len = match argument_area(cfg.task_mm, cfg.mm_arg_start, cfg.mm_arg_end) {
        Some((start, len)) => {
            let budget = u64::from(cfg.argv_max).min(ARGV_MAX as u64);
            if len > budget {
                buf.event.flags |= EXEC_ARGV_TRUNCATED;
            }
            read_argv(buf, start, len.min(budget))
        }
        None => None,
    };
    let argv_len = argv_len.unwrap_or_else(|| {
        buf.event.flags |= EXEC_ARGV_TRUNCATED;
        0
    });
    let ev = &mut buf.event;
    ev.argv_len = argv_len;
    let size = core::mem::size_of::<ExecEvent>() + argv_len as usize;
    ev.header.size = size as u32;
    // SAFETY: `argv_len <= ARGV_MAX`, so `size` is at most the size of the `ExecBuffer`.
    unsafe { output_prefix(buf, size) };
    Some(0)
}

/// The current task's argument area, `(mm->arg_start, mm->arg_end - mm->arg_start)`, at the
/// member offsets userspace found in the kernel's BTF.
#[inline(always)]
fn argument_area(task_mm: u32, arg_start: u32, arg_end: u32) -> Option<(u64, u64)> {
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm: u64 = read_kernel(task.wrapping_add(task_mm as usize).cast())?;
    if mm == 0 {
        return None;
    }
    let mm = mm as *const u8;
    let start: u64 = read_kernel(mm.wrapping_add(arg_start as usize).cast())?;
    let end: u64 = read_kernel(mm.wrapping_add(arg_end as usize).cast())?;
    Some((start, end.checked_sub(start)?))
}

/// Copies `len` (at most [`ARGV_MAX`]) bytes of user memory at `start` into the record's argv;
/// the bytes copied.
#[inline(always)]
fn read_argv(buf: &mut runbom_common::ExecBuffer, start: u64, len: u64) -> Option<u32> {
    // Through memory so that LLVM cannot drop the mask the verifier needs, then bounded.
    // SAFETY: a field of the scratch record, which we own.
    unsafe { core::ptr::write_volatile(&raw mut buf.event.argv_len, len as u32) };
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&raw const buf.event.argv_len) }
        & (2 * ARGV_MAX as u32 - 1);
    if n == 0 || n > ARGV_MAX as u32 {
        return (n == 0).then_some(0);
    }
    // SAFETY: `n <= ARGV_MAX`, the argv array's size. The pages were written by the kernel
    // during the exec, so they are present.
    let r = unsafe { bpf_probe_read_user(buf.argv.as_mut_ptr().cast(), n, start as *const _) };
    (r == 0).then_some(n)
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
    capture::exited(tgid);
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
