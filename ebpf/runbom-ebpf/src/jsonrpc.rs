//! `jsonrpc.message` material: writes that carry one JSON-RPC 2.0 message, as MCP's stdio
//! transport sends them (newline-delimited JSON written with `write(2)` to a pipe, or to the
//! socketpair Node uses for a child's stdio). Userspace parses and pairs requests with responses.
//!
//! The HTTP write path (`http.rs`) already reads every write's first four bytes; only a write
//! starting `{` that is not an HTTP body reaches [`write`]. It reads at most
//! [`JSONRPC_WINDOW`] bytes at the start and at the end of the buffer onto the stack and looks
//! for `"jsonrpc"` in them, a word at a time (the Python SDK writes the key first, the
//! TypeScript SDK last): JSON that does not name it (a JSON log line) costs those two reads and
//! a few dozen instructions, and is never copied. A match is
//! kept in `SOCK_WRITES` like a request head, and the exit copies at most
//! [`JSONRPC_DATA_MAX`] bytes into a per-CPU scratch record only when the call wrote.

use aya_ebpf::helpers::generated::bpf_probe_read_user;
use runbom_common::{
    EventKind, JSONRPC_DATA_MAX, JSONRPC_FD_IS_SOCKET, JSONRPC_WINDOW, JsonRpcEvent,
    SOCK_TYPE_UNKNOWN, SockAddr, http_source,
};

use crate::{
    capture::{Write, keep_write},
    maps::{JSONRPC_SCRATCH, SOCK_TYPES, SockWrite},
    util::{config, current, fd_key, header, output_prefix, scratch},
};

/// The shortest message worth looking at: `{"jsonrpc":"2.0"` alone is 16 bytes.
const MIN_MESSAGE: u64 = 16;

/// A window of a write's bytes, 8-aligned so that it can be read a word at a time (the
/// verifier refuses misaligned stack reads, which LLVM would otherwise split into bytes).
#[repr(C, align(8))]
struct Window([u8; JSONRPC_WINDOW]);

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
/// `j` in every byte.
const J: u64 = ONES * b'j' as u64;

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

/// True when `"jsonrpc"` lies within the first `n` bytes of `win`. A word at a time: bytes
/// equal to `j` are found with the has-zero-byte trick on `word ^ J` (eight words, a handful
/// of instructions each); only those are checked byte by byte. JSON without a `j` costs the
/// eight word tests alone.
#[inline(always)]
fn names_jsonrpc(win: &Window, n: usize) -> bool {
    for w in 0..JSONRPC_WINDOW / 8 {
        if w * 8 >= n {
            return false;
        }
        // SAFETY: an aligned word inside the window.
        let word = unsafe { win.0.as_ptr().add(w * 8).cast::<u64>().read() };
        let x = word ^ J;
        let hits = x.wrapping_sub(ONES) & !x & HIGHS;
        if hits == 0 {
            continue;
        }
        for b in 0..8 {
            if hits & (0x80 << (8 * b)) != 0 && key_at(win, w * 8 + b, n) {
                return true;
            }
        }
    }
    false
}

/// True when `"jsonrpc"` starts one byte before `p` (where a `j` is) inside the first `n` bytes.
#[inline(always)]
fn key_at(win: &Window, p: usize, n: usize) -> bool {
    const REST: &[u8; 8] = b"jsonrpc\"";
    if p == 0 || p + REST.len() > n || p + REST.len() > JSONRPC_WINDOW {
        return false;
    }
    if win.0[p - 1] != b'"' {
        return false;
    }
    for (i, &c) in REST.iter().enumerate() {
        if win.0[p + i] != c {
            return false;
        }
    }
    true
}

/// A write starting `{` that is no HTTP body: kept until its exit when it names `"jsonrpc` near
/// either end.
#[inline(always)]
pub fn write(w: &Write) -> Option<u32> {
    if w.len < MIN_MESSAGE {
        return Some(0);
    }
    let (tgid, tid) = current();
    let cfg = config()?;
    if cfg.jsonrpc == 0 || cfg.self_pid == tgid {
        return Some(0);
    }
    let mut win = Window([0; JSONRPC_WINDOW]);
    let head = w.len.min(JSONRPC_WINDOW as u64);
    read_window(&mut win.0, w.buf, head)?;
    let mut found = names_jsonrpc(&win, head as usize);
    if !found && w.len > JSONRPC_WINDOW as u64 {
        // SAFETY: only the address is computed; the user read is checked.
        let tail = unsafe { w.buf.add((w.len - JSONRPC_WINDOW as u64) as usize) };
        read_window(&mut win.0, tail, JSONRPC_WINDOW as u64)?;
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
