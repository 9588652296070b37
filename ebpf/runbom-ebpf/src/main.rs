//! runbom's kernel side: tracepoint programs that write [`runbom_common`] records into one
//! ring buffer. Entry points stay thin (`try_*` does the work); a failed helper drops the event
//! and, where the loss is worth knowing, bumps a per-CPU counter that userspace exports.
//!
//! One module per area (`process`, `file`, `net`, `http`), every map in `maps`, and the steps
//! all probes share in `util`. A syscall probe follows one pattern:
//! - entry (`sys_enter_*`): read the arguments with `util::sys_arg`, return early for runbom
//!   itself (`util::is_self`) or anything filtered out, build the record with
//!   `util::header_of` (per-CPU `util::scratch` when it is too large for the 512-byte stack) and
//!   keep it per thread with `util::keep_inflight`;
//! - exit (`sys_exit_*`): find it (`util::take`, or the thread's slot of an array), fill in
//!   `end_ns` and `ret`, write it with `util::output` and free its place.
//!
//! A single event (no entry/exit pair) builds its record and calls `util::output` at once
//! (`task_newtask`). Programs with the same body are declared together with
//! `util::tracepoints!`. A new record also needs its `EventKind`, its decoder arm and a round
//! trip test in `runbom-common`; userspace attaches each program by its name.
#![no_std]
#![no_main]
// `core::intrinsics::atomic_cxchg`: the eBPF target has the instruction but not `compare_exchange`.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// Map values are passed by reference on purpose: passing a record by value (what this lint
// suggests for `impl Borrow` arguments) copies it onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod capture;
mod file;
mod go;
mod h2;
mod http;
mod jsonrpc;
mod maps;
mod net;
mod process;
mod reference;
mod response;
mod util;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Never attached in normal operation: runbom loads it only when `RUNBOM_SELFTEST_VERIFIER_REJECT`
/// is set, to prove that a probe the verifier rejects produces a clear error. It reads past the
/// end of the largest tracepoint context the kernel allows (8 KiB), which the verifier must
/// refuse; the read is volatile because the macro discards the return value.
#[aya_ebpf::macros::tracepoint]
pub fn selftest_verifier_reject(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
    let ctx = aya_ebpf::EbpfContext::as_ptr(&ctx).cast::<u8>();
    // SAFETY: never executed: the verifier refuses the program.
    unsafe { core::ptr::read_volatile(ctx.add(8192).cast::<u32>()) }
}
