//! `http.request` material: the first bytes of plaintext socket writes and of OpenSSL's
//! plaintext that start an HTTP/1.x request, the body write that follows a TLS request head,
//! and the status line a TLS read returns after one. Userspace parses, pairs and redacts.
//!
//! The hot path is every `write(2)`: before anything else it looks at the call's length and the
//! buffer's first four bytes (one 4-byte user read), and returns unless they are an HTTP method
//! (or a `{` on a socket that just sent a request head: the body, for `model`).
//! Only then is the budget (`ProbeConfig::http_max`) copied into a per-CPU scratch record and the
//! used prefix written to the ring.
//!
//! TLS state is per `(tgid, SSL*)` in `SSL_STATE`: after a request head the next `SSL_write` is
//! captured as the body's start and the next read that begins with `HTTP/` as the status line.
//! Reads of connections without a pending request cost one map lookup at entry.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user,
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use runbom_common::{
    EventKind, HTTP_DATA_MAX, HTTP_FD_IS_SOCKET, HTTP_PEER_KNOWN, HTTP_STATUS_BYTES, HttpEvent,
    SOCK_TYPE_DGRAM, SOCK_TYPE_UNKNOWN, SockAddr, http_source,
};

use crate::{
    maps::{CONN_PEERS, HTTP_SCRATCH, SOCK_BODY, SOCK_TYPES, SSL_READS, SSL_STATE},
    net::read_sockaddr,
    util::{
        config, current, fd_key, first_iovec, header, keep_inflight, msghdr_first, now,
        output_prefix, read_user, scratch, sys_arg, take,
    },
};

/// `SSL_STATE` bits: the next write is the request body; a response is awaited.
const EXPECT_BODY: u32 = 1;
const EXPECT_RESPONSE: u32 = 2;

/// How soon after its head a plaintext body must be written to be taken for it.
const BODY_WINDOW_NS: u64 = 1_000_000_000;

/// The shortest request line: `GET / HTTP/1.1\r\n`.
const MIN_REQUEST: u64 = 16;

/// First four bytes of the methods we recognise, as little-endian `u32`s.
const METHODS: [u32; 7] = [
    u32::from_le_bytes(*b"GET "),
    u32::from_le_bytes(*b"POST"),
    u32::from_le_bytes(*b"PUT "),
    u32::from_le_bytes(*b"DELE"),
    u32::from_le_bytes(*b"PATC"),
    u32::from_le_bytes(*b"HEAD"),
    u32::from_le_bytes(*b"OPTI"),
];

/// True when the buffer starts with a method we recognise (one 4-byte read).
#[inline(always)]
fn starts_request(buf: *const u8, len: u64) -> bool {
    if len < MIN_REQUEST {
        return false;
    }
    let Some(head) = read_user(buf.cast::<u32>()) else {
        return false;
    };
    METHODS.contains(&head)
}

/// Copies at most `cap` bytes of `buf` into a record and writes it to the ring.
#[inline(always)]
fn emit(capture: &Capture, buf: *const u8, len: u64, cap: u32) -> Option<()> {
    let (tgid, tid) = current();
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let rec = unsafe { scratch(&HTTP_SCRATCH) }?;
    let n = if len > u64::from(cap) {
        cap
    } else {
        len as u32
    };
    // Through memory so that LLVM cannot drop the mask the verifier needs, then bounded.
    // SAFETY: a field of the scratch record, which we own.
    unsafe { core::ptr::write_volatile(&raw mut rec.event.data_len, n) };
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&raw const rec.event.data_len) }
        & (2 * HTTP_DATA_MAX as u32 - 1);
    if n == 0 || n > HTTP_DATA_MAX as u32 {
        return None;
    }
    // SAFETY: `n <= HTTP_DATA_MAX`, the data array's size.
    if unsafe { bpf_probe_read_user(rec.data.as_mut_ptr().cast(), n, buf.cast()) } != 0 {
        return None;
    }
    let size = core::mem::size_of::<HttpEvent>() + n as usize;
    rec.event = HttpEvent {
        header: header(EventKind::HttpData, size, tgid, tid),
        ssl: capture.ssl,
        total_len: len,
        peer: capture.peer,
        fd: capture.fd,
        source: capture.source,
        flags: capture.flags,
        data_len: n,
    };
    // SAFETY: `size` is at most the size of the `HttpBuffer`.
    unsafe { output_prefix(rec, size) };
    Some(())
}

/// What a record says about where its bytes went.
struct Capture {
    ssl: u64,
    peer: SockAddr,
    fd: i32,
    source: u16,
    flags: u16,
}

// --- plaintext socket writes ----------------------------------------------------------------

/// The socket argument of every write-family syscall (`fd`, always first).
#[inline(always)]
fn fd_arg(ctx: &TracePointContext) -> i32 {
    sys_arg::<i64>(ctx, 0) as i32
}

/// write(fd, buf, count) and sendto(fd, buff, len, flags, addr, addr_len): the buffer and its
/// length are the second and third arguments.
#[inline(always)]
fn buffer_write(ctx: &TracePointContext, addr: *const u8) -> u32 {
    socket_write(fd_arg(ctx), sys_arg(ctx, 1), sys_arg(ctx, 2), addr).unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_write(ctx: TracePointContext) -> u32 {
    buffer_write(&ctx, core::ptr::null())
}

#[tracepoint]
pub fn http_sys_enter_sendto(ctx: TracePointContext) -> u32 {
    buffer_write(&ctx, sys_arg(&ctx, 4))
}

#[tracepoint]
pub fn http_sys_enter_writev(ctx: TracePointContext) -> u32 {
    // writev(fd, vec, vlen): the request head is in the first buffer.
    let Some((buf, len)) = first_iovec(sys_arg(&ctx, 1)) else {
        return 1;
    };
    socket_write(fd_arg(&ctx), buf, len, core::ptr::null()).unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    // sendmsg(fd, msg, flags)
    let fd = fd_arg(&ctx);
    let Some((addr, buf, len)) = msghdr_first(sys_arg(&ctx, 1)) else {
        return 1;
    };
    socket_write(fd, buf, len, addr).unwrap_or(1)
}

#[inline(always)]
fn socket_write(fd: i32, buf: *const u8, len: u64, addr: *const u8) -> Option<u32> {
    if len < 4 {
        return Some(0);
    }
    let first = read_user(buf.cast::<u32>())?;
    if len < MIN_REQUEST || !METHODS.contains(&first) {
        // A JSON body written after its request head (httpx/h11 and the OpenAI SDK over plain
        // HTTP, e.g. to a local model server): one map lookup, only for writes starting `{`.
        if first as u8 == b'{' {
            return socket_body(fd, buf, len);
        }
        return Some(0);
    }
    let (tgid, _) = current();
    let cfg = config()?;
    if cfg.self_pid == tgid {
        return Some(0);
    }
    let key = fd_key(tgid, fd);
    // Plain integers, no `Option` comparisons: LLVM lowers those to reads the verifier refuses.
    // SAFETY: plain value, copied out at once.
    let sock_type = unsafe { SOCK_TYPES.get(key).copied() }.unwrap_or(SOCK_TYPE_UNKNOWN);
    if sock_type == SOCK_TYPE_DGRAM {
        return Some(0);
    }
    let mut flags = if sock_type == SOCK_TYPE_UNKNOWN {
        0
    } else {
        HTTP_FD_IS_SOCKET
    };
    let mut peer = SockAddr::default();
    if let Some(p) = read_sockaddr(addr) {
        peer = p;
        flags |= HTTP_PEER_KNOWN;
    } else if let Some(p) = CONN_PEERS.get_ptr(key) {
        // SAFETY: a plain map value, copied at once.
        peer = unsafe { *p };
        flags |= HTTP_PEER_KNOWN;
    }
    let capture = Capture {
        ssl: 0,
        peer,
        fd,
        source: http_source::SOCKET_WRITE,
        flags,
    };
    emit(&capture, buf, len, cfg.http_max);
    let _ = SOCK_BODY.insert(key, now(), 0);
    Some(0)
}

/// The first `{` write after a request head on the same socket: the body's start.
#[inline(always)]
fn socket_body(fd: i32, buf: *const u8, len: u64) -> Option<u32> {
    let (tgid, _) = current();
    let key = fd_key(tgid, fd);
    let head_ns = take(&SOCK_BODY, &key)?;
    // Only right after the head: the fd may have been closed and reused for a file meanwhile.
    if now().wrapping_sub(head_ns) > BODY_WINDOW_NS {
        return Some(0);
    }
    let capture = Capture {
        ssl: 0,
        peer: SockAddr::default(),
        fd,
        source: http_source::SOCKET_BODY,
        flags: 0,
    };
    emit(&capture, buf, len, config()?.http_max);
    Some(0)
}

// --- OpenSSL --------------------------------------------------------------------------------

/// `SSL_write(ssl, buf, int num)`.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    let num = ctx.arg::<i32>(2).unwrap_or(0);
    if num <= 0 {
        return 0;
    }
    ssl_write_common(&ctx, num as u64).unwrap_or(1)
}

/// `SSL_write_ex(ssl, buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    let num = ctx.arg::<u64>(2).unwrap_or(0);
    ssl_write_common(&ctx, num).unwrap_or(1)
}

#[inline(always)]
fn ssl_write_common(ctx: &ProbeContext, len: u64) -> Option<u32> {
    let ssl: u64 = ctx.arg(0)?;
    let buf: *const u8 = ctx.arg(1)?;
    if len == 0 {
        return Some(0);
    }
    let (tgid, _) = current();
    let key = [u64::from(tgid), ssl];
    let source = if starts_request(buf, len) {
        let _ = SSL_STATE.insert(&key, &(EXPECT_BODY | EXPECT_RESPONSE), 0);
        http_source::SSL_WRITE
    } else {
        let state = SSL_STATE.get_ptr_mut(&key)?;
        // SAFETY: a plain integer in the map's value; a racing writer on the same SSL* would
        // be the application's own bug.
        let state = unsafe { &mut *state };
        if *state & EXPECT_BODY == 0 {
            return Some(0);
        }
        *state &= !EXPECT_BODY;
        http_source::SSL_BODY
    };
    let cfg = config()?;
    if cfg.self_pid == tgid {
        return Some(0);
    }
    let capture = Capture {
        ssl,
        peer: SockAddr::default(),
        fd: -1,
        source,
        flags: 0,
    };
    emit(&capture, buf, len, cfg.http_max);
    Some(0)
}

/// `SSL_read(ssl, buf, int num)`: remember the buffer for the return probe.
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    ssl_read_enter(&ctx, 0).unwrap_or(1)
}

/// `SSL_read_ex(ssl, buf, size_t num, size_t *readbytes)`.
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    let readbytes = ctx.arg::<u64>(3).unwrap_or(0);
    if readbytes == 0 {
        return 0;
    }
    ssl_read_enter(&ctx, readbytes).unwrap_or(1)
}

#[inline(always)]
fn ssl_read_enter(ctx: &ProbeContext, readbytes: u64) -> Option<u32> {
    let ssl: u64 = ctx.arg(0)?;
    let (tgid, tid) = current();
    // SAFETY: plain integer value, copied out at once.
    let state = unsafe { SSL_STATE.get(&[u64::from(tgid), ssl]).copied()? };
    if state & EXPECT_RESPONSE == 0 {
        return Some(0);
    }
    let buf: u64 = ctx.arg(1)?;
    keep_inflight(&SSL_READS, &tid, &[ssl, buf, readbytes]);
    Some(0)
}

/// Return of `SSL_read`: the byte count, or <= 0.
#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret::<i32>().into();
    ssl_read_exit(ret).unwrap_or(1)
}

/// Return of `SSL_read_ex`: 1 on success, the count in `*readbytes`.
#[uretprobe]
pub fn ssl_read_ex_ret(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret::<i32>().into();
    ssl_read_exit(ret).unwrap_or(1)
}

#[inline(always)]
fn ssl_read_exit(ret: i64) -> Option<u32> {
    let (tgid, tid) = current();
    let [ssl, buf, readbytes] = take(&SSL_READS, &tid)?;
    if ret <= 0 {
        return Some(0);
    }
    let len = if readbytes == 0 {
        ret as u64
    } else {
        read_user(readbytes as *const u64)?
    };
    let buf = buf as *const u8;
    if len < 12 || read_user(buf.cast::<[u8; 5]>())? != *b"HTTP/" {
        return Some(0);
    }
    let state = SSL_STATE.get_ptr_mut(&[u64::from(tgid), ssl])?;
    // SAFETY: as in `ssl_write_common`.
    unsafe { *state &= !EXPECT_RESPONSE };
    let capture = Capture {
        ssl,
        peer: SockAddr::default(),
        fd: -1,
        source: http_source::SSL_READ,
        flags: 0,
    };
    emit(&capture, buf, len, HTTP_STATUS_BYTES);
    Some(0)
}
