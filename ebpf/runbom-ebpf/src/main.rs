//! runbom's kernel side: tracepoint programs that write [`runbom_common`] records into one
//! ring buffer. Entry points stay thin (`try_*` does the work); a failed helper drops the event
//! and, where the loss is worth knowing, bumps a per-CPU counter that userspace exports.
#![no_std]
#![no_main]
// Map values are passed by reference on purpose: passing a record by value (what this lint
// suggests for `impl Borrow` arguments) copies it onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod file;
mod http;
mod maps;
mod net;
mod process;
mod reference;
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
