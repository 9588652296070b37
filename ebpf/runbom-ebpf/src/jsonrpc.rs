//! `jsonrpc.message` material: writes that carry one JSON-RPC 2.0 message, as MCP's stdio
//! transport sends them (newline-delimited JSON written with `write(2)` to a pipe, or to the
//! socketpair Node uses for a child's stdio). Userspace parses and pairs requests with responses.
//!
//! The HTTP write path (`http.rs`) already reads every write's first four bytes; only a write
//! starting `{` that is not an HTTP body reaches [`write`]. It reads at most
//! [`JSONRPC_WINDOW`] bytes at the start and at the end of the buffer onto the stack and looks
//! for `"jsonrpc` in them (the Python SDK writes the key first, the TypeScript SDK last): JSON
//! that does not name it (a JSON log line) costs those two reads and is never copied. A match is
//! kept in `SOCK_WRITES` like a request head, and the exit copies at most
//! [`JSONRPC_DATA_MAX`] bytes into a per-CPU scratch record only when the call wrote.

use aya_ebpf::helpers::generated::bpf_probe_read_user;
use runbom_common::{
    EventKind, JSONRPC_DATA_MAX, JSONRPC_FD_IS_SOCKET, JSONRPC_WINDOW, JsonRpcEvent,
    SOCK_TYPE_UNKNOWN, SockAddr, http_source,
};

use crate::{
    http::{Write, keep_write},
    maps::{JSONRPC_SCRATCH, SOCK_TYPES, SockWrite},
    util::{current, fd_key, header, is_self, output_prefix, scratch},
};

/// The shortest message worth looking at: `{"jsonrpc":"2.0"` alone is 16 bytes.
const MIN_MESSAGE: u64 = 16;

/// `"jsonrpc` as a little-endian `u64`.
const KEY: u64 = u64::from_le_bytes(*b"\"jsonrpc");

/// Reads `n` (at most [`JSONRPC_WINDOW`]) bytes at `src` into `win`.
#[inline(always)]
fn read_window(win: &mut [u8; JSONRPC_WINDOW], src: *const u8, n: u64) -> Option<()> {
    let n = (n as u32) & (2 * JSONRPC_WINDOW as u32 - 1);
    if n > JSONRPC_WINDOW as u32 {
        return None;
    }
    // SAFETY: `n <= JSONRPC_WINDOW`, the window's size.
    (unsafe { bpf_probe_read_user(win.as_mut_ptr().cast(), n, src.cast()) } == 0).then_some(())
}

/// True when `"jsonrpc` starts at one of the first `n - 7` bytes of `win`.
#[inline(always)]
fn names_jsonrpc(win: &[u8; JSONRPC_WINDOW], n: usize) -> bool {
    let mut i = 0;
    while i + 8 <= JSONRPC_WINDOW {
        if i + 8 > n {
            return false;
        }
        // SAFETY: `i + 8 <= JSONRPC_WINDOW`: inside the stack array.
        let v = unsafe { core::ptr::read_unaligned(win.as_ptr().add(i).cast::<u64>()) };
        if v == KEY {
            return true;
        }
        i += 1;
    }
    false
}

/// A write starting `{` that is no HTTP body: kept until its exit when it names `"jsonrpc` near
/// either end.
#[inline(always)]
pub fn write(w: &Write) -> Option<u32> {
    if w.len < MIN_MESSAGE {
        return Some(0);
    }
    let (tgid, tid) = current();
    if is_self(tgid) {
        return Some(0);
    }
    let mut win = [0u8; JSONRPC_WINDOW];
    let head = w.len.min(JSONRPC_WINDOW as u64);
    read_window(&mut win, w.buf, head)?;
    let mut found = names_jsonrpc(&win, head as usize);
    if !found && w.len > JSONRPC_WINDOW as u64 {
        // SAFETY: only the address is computed; the user read is checked.
        let tail = unsafe { w.buf.add((w.len - JSONRPC_WINDOW as u64) as usize) };
        read_window(&mut win, tail, JSONRPC_WINDOW as u64)?;
        found = names_jsonrpc(&win, JSONRPC_WINDOW);
    }
    if !found {
        return Some(0);
    }
    // SAFETY: plain value, copied out at once.
    let sock_type =
        unsafe { SOCK_TYPES.get(fd_key(tgid, w.fd)).copied() }.unwrap_or(SOCK_TYPE_UNKNOWN);
    let flags = if sock_type == SOCK_TYPE_UNKNOWN {
        0
    } else {
        JSONRPC_FD_IS_SOCKET
    };
    keep_write(tid, w, SockAddr::default(), http_source::JSONRPC, flags);
    Some(0)
}

/// Exit of a write kept by [`write`] that wrote something: its first bytes to the ring.
#[inline(always)]
pub fn emit(w: &SockWrite) -> Option<()> {
    let (tgid, tid) = current();
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let rec = unsafe { scratch(&JSONRPC_SCRATCH) }?;
    let n = if w.len > JSONRPC_DATA_MAX as u64 {
        JSONRPC_DATA_MAX as u32
    } else {
        w.len as u32
    };
    // Through memory so that LLVM cannot drop the mask the verifier needs, then bounded.
    // SAFETY: a field of the scratch record, which we own.
    unsafe { core::ptr::write_volatile(&raw mut rec.event.data_len, n) };
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&raw const rec.event.data_len) }
        & (2 * JSONRPC_DATA_MAX as u32 - 1);
    if n == 0 || n > JSONRPC_DATA_MAX as u32 {
        return None;
    }
    // SAFETY: `n <= JSONRPC_DATA_MAX`, the data array's size.
    if unsafe { bpf_probe_read_user(rec.data.as_mut_ptr().cast(), n, w.buf as *const _) } != 0 {
        return None;
    }
    let size = core::mem::size_of::<JsonRpcEvent>() + n as usize;
    let mut header = header(EventKind::JsonRpc, size, tgid, tid);
    header.time_ns = w.time_ns;
    rec.event.header = header;
    rec.event.total_len = w.len;
    rec.event.fd = w.fd;
    rec.event.flags = w.flags;
    rec.event._pad = 0;
    rec.event._pad2 = 0;
    rec.event.tail = [0; JSONRPC_WINDOW];
    if w.len > u64::from(n) && w.len >= JSONRPC_WINDOW as u64 {
        // SAFETY: only the address is computed; the user read is checked (a failed read leaves
        // zeros, the tail is a hint).
        let tail = unsafe { (w.buf as *const u8).add((w.len - JSONRPC_WINDOW as u64) as usize) };
        let _ = read_window(&mut rec.event.tail, tail, JSONRPC_WINDOW as u64);
    }
    // SAFETY: `size` is at most the size of the `JsonRpcBuffer`.
    unsafe { output_prefix(rec, size) };
    Some(())
}
