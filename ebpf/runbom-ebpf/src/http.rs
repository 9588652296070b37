//! `http.request` material: the first bytes of plaintext socket writes and of OpenSSL's
//! plaintext that start an HTTP/1.x request, the body write that follows a request head, and the
//! status line a TLS read returns after one. Userspace parses, pairs and redacts.
//!
//! The hot path is every `write(2)`: before anything else it looks at the call's length and the
//! buffer's first four bytes (one 4-byte user read), and returns unless they are an HTTP method
//! (or a `{` on a socket that just sent a request head: the body, for `model`; or a DNS header
//! on a connected UDP socket: `dns.query`). Only then is the call kept per thread
//! (`SOCK_WRITES`) until its exit, and only when the call wrote something (result > 0) is the
//! budget (`ProbeConfig::http_max`) copied into a per-CPU scratch record and the used prefix
//! written to the ring: a non-blocking write that failed with `EAGAIN` and was retried is one
//! request, not two. Every write's exit pays one map lookup for that.
//!
//! `writev`/`sendmsg` heads are in the first buffer; a JSON body in one of the next
//! [`IOV_BODY_MAX`] buffers (undici writes `writev([head, body])`) is captured with the head.
//!
//! TLS state is per `(tgid, SSL*)` in `SSL_STATE`: after a request head the next `SSL_write` is
//! captured as the body's start and the next read that begins with `HTTP/` as the response's
//! start; the reads after it are captured too (`SSL_RESPONSE`) until the response budget
//! (`ProbeConfig::http_response_max`, kept in the state's upper bits) is spent or the next
//! request starts. A budget of 0 captures the status line only.
//! `SSL_write[_ex]` is paired with its return the same way (`SSL_WRITES`): a call that returns
//! <= 0 (a non-blocking client's writes before the handshake completes) captures nothing. Reads
//! of connections without a pending request cost one map lookup at entry. The TLS steps
//! (`tls_write`, `tls_write_done`, `tls_read_wanted`, `tls_read_done`) take values, not a probe's
//! context: Go's `crypto/tls` probes (`go.rs`) share them, and OpenSSL's probes here also do
//! HTTP/2's (`h2.rs`), one program per hook.

use aya_ebpf::{
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use runbom_common::{
    HTTP_DATA_MAX, HTTP_FD_IS_SOCKET, HTTP_PEER_KNOWN, HTTP_STATUS_BYTES, SOCK_TYPE_DGRAM,
    SOCK_TYPE_UNKNOWN, SockAddr, http_source,
};

use crate::{
    capture::{Capture, Write, emit, fd_arg, keep_write},
    maps::{
        CONN_PEERS, SOCK_BODY, SOCK_TYPES, SOCK_WRITES, SSL_READS, SSL_STATE, SSL_WRITES,
        SockWrite, SslWrite,
    },
    net::{dns_send, read_sockaddr},
    util::{
        config, current, fd_key, first_iovec, is_self, keep_inflight, msghdr_iov, now, read_user,
        sys_arg, take, tracepoints,
    },
};

/// `SSL_STATE` bits: the next write is the request body; a response is awaited; the response
/// started and its next reads are captured, within the budget left in the bits above
/// [`BUDGET_SHIFT`].
const EXPECT_BODY: u32 = 1;
const EXPECT_RESPONSE: u32 = 2;
const RESPONSE_DATA: u32 = 4;
const BUDGET_SHIFT: u32 = 8;

/// How soon after its head a plaintext body must be written to be taken for it.
const BODY_WINDOW_NS: u64 = 1_000_000_000;

/// The shortest request line: `GET / HTTP/1.1\r\n`.
const MIN_REQUEST: u64 = 16;

/// Buffers after the first of a `writev`/`sendmsg` searched for a JSON body.
pub const IOV_BODY_MAX: u64 = 3;

/// A DNS query: a 12-byte header and at least a one-label question with type and class.
const DNS_MIN: u64 = 17;
const DNS_MAX: u64 = 512;

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

/// True when the first four bytes of a write can be a DNS query's header: `QR` = 0, opcode 0
/// (standard query) and `RCODE` 0. Text never passes (its third byte would be below 8).
#[inline(always)]
fn dns_like(first: u32, len: u64) -> bool {
    (DNS_MIN..=DNS_MAX).contains(&len) && (first >> 16) & 0x0ff8 == 0
}

// --- plaintext socket writes ----------------------------------------------------------------

#[tracepoint]
pub fn http_sys_enter_write(ctx: TracePointContext) -> u32 {
    // write(fd, buf, count)
    socket_write(&Write {
        fd: fd_arg(&ctx),
        buf: sys_arg(&ctx, 1),
        len: sys_arg(&ctx, 2),
        addr: core::ptr::null(),
        iov: 0,
        iov_len: 0,
        dns: true,
    })
    .unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_sendto(ctx: TracePointContext) -> u32 {
    // sendto(fd, buff, len, flags, addr, addr_len)
    socket_write(&Write {
        fd: fd_arg(&ctx),
        buf: sys_arg(&ctx, 1),
        len: sys_arg(&ctx, 2),
        addr: sys_arg(&ctx, 4),
        iov: 0,
        iov_len: 0,
        dns: false,
    })
    .unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_writev(ctx: TracePointContext) -> u32 {
    // writev(fd, vec, vlen): the request head is in the first buffer.
    let iov: *const [u64; 2] = sys_arg(&ctx, 1);
    let Some((buf, len)) = first_iovec(iov) else {
        return 1;
    };
    socket_write(&Write {
        fd: fd_arg(&ctx),
        buf,
        len,
        addr: core::ptr::null(),
        iov: iov as u64,
        iov_len: sys_arg(&ctx, 2),
        dns: true,
    })
    .unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    // sendmsg(fd, msg, flags)
    let Some((addr, iov, iov_len)) = msghdr_iov(sys_arg(&ctx, 1)) else {
        return 1;
    };
    let Some((buf, len)) = first_iovec(iov) else {
        return 1;
    };
    socket_write(&Write {
        fd: fd_arg(&ctx),
        buf,
        len,
        addr,
        iov: iov as u64,
        iov_len,
        dns: false,
    })
    .unwrap_or(1)
}

#[inline(always)]
fn socket_write(w: &Write) -> Option<u32> {
    if w.len < 4 {
        return Some(0);
    }
    let first = read_user(w.buf.cast::<u32>())?;
    if w.len < MIN_REQUEST || !METHODS.contains(&first) {
        // HTTP/2: the client preface, or any write on a connection that wrote it.
        if let Some(r) = crate::h2::socket_write(w, first) {
            return Some(r);
        }
        // A JSON body written after its request head (httpx/h11 and the OpenAI SDK over plain
        // HTTP, e.g. to a local model server): one map lookup, only for writes starting `{`.
        // Else it may be a JSON-RPC message (MCP over stdio or a socket): `jsonrpc.rs`.
        if first as u8 == b'{' {
            return socket_body(w).or_else(|| crate::jsonrpc::write(w));
        }
        if w.dns && dns_like(first, w.len) {
            return dns_write(w);
        }
        return Some(0);
    }
    let (tgid, tid) = current();
    if is_self(tgid) {
        return Some(0);
    }
    let key = fd_key(tgid, w.fd);
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
    if let Some(p) = read_sockaddr(w.addr) {
        peer = p;
        flags |= HTTP_PEER_KNOWN;
    } else if let Some(p) = CONN_PEERS.get_ptr(key) {
        // SAFETY: a plain map value, copied at once.
        peer = unsafe { *p };
        flags |= HTTP_PEER_KNOWN;
    }
    keep_write(tid, w, peer, http_source::SOCKET_WRITE, flags);
    Some(0)
}

/// A `{` write soon after a request head on the same socket: the body's start, kept until the
/// call's exit says it was written.
#[inline(always)]
fn socket_body(w: &Write) -> Option<u32> {
    let (tgid, tid) = current();
    // SAFETY: plain value, copied out at once.
    let head_ns = unsafe { SOCK_BODY.get(fd_key(tgid, w.fd)).copied() }?;
    // Only right after the head: the fd may have been closed and reused for a file meanwhile.
    if now().wrapping_sub(head_ns) > BODY_WINDOW_NS {
        return Some(0);
    }
    keep_write(tid, w, SockAddr::default(), http_source::SOCKET_BODY, 0);
    Some(0)
}

/// A write on a UDP socket connected to a DNS port (Go's resolver): `dns.query`, as `send`
/// (one map lookup: the socket is in `DNS_SOCKS` or nothing happens).
#[inline(always)]
fn dns_write(w: &Write) -> Option<u32> {
    dns_send(w.fd, core::ptr::null(), w.buf, w.len)
}

tracepoints!(
    socket_write_exit: http_sys_exit_write,
    http_sys_exit_writev,
    http_sys_exit_sendto,
    http_sys_exit_sendmsg,
);

/// Exit of a write-family call: what its entry kept is captured only when the call wrote.
#[inline(always)]
fn socket_write_exit(ctx: &TracePointContext) -> u32 {
    let (tgid, tid) = current();
    let Some(w) = take(&SOCK_WRITES, &tid) else {
        return 0;
    };
    let ret: i64 = sys_arg(ctx, 0);
    if ret <= 0 {
        return 0;
    }
    if w.source == http_source::JSONRPC {
        return crate::jsonrpc::emit(&w).map_or(1, |()| 0);
    }
    let Some(cfg) = config() else {
        return 1;
    };
    if w.source == http_source::H2_SOCKET_WRITE {
        return crate::h2::socket_write_exit(&w, ret as u64);
    }
    let key = fd_key(tgid, w.fd);
    let capture = Capture {
        ssl: 0,
        peer: w.peer,
        fd: w.fd,
        source: w.source,
        flags: w.flags,
        time_ns: w.time_ns,
    };
    emit(&capture, w.buf as *const u8, w.len, cfg.http_max);
    if w.source == http_source::SOCKET_WRITE {
        crate::response::request_sent(tgid, w.fd, w.buf as *const u8);
    }
    if w.source == http_source::SOCKET_BODY {
        let _ = SOCK_BODY.remove(key);
    } else if iov_body(&w, cfg.http_max).is_none() {
        let _ = SOCK_BODY.insert(key, now(), 0);
    }
    0
}

/// The JSON body of a `writev`/`sendmsg` whose first buffer was the head: the first of the next
/// [`IOV_BODY_MAX`] buffers that starts with `{`, captured as the body. `None` when there is
/// none (the body, if any, comes in a later write).
#[inline(always)]
fn iov_body(w: &SockWrite, cap: u32) -> Option<()> {
    let iov = w.iov as *const [u64; 2];
    for i in 1..=IOV_BODY_MAX {
        if i >= w.iov_len {
            return None;
        }
        // SAFETY: only the address is computed here; the user read is checked.
        let (buf, len) = first_iovec(unsafe { iov.add(i as usize) })?;
        if len == 0 {
            continue;
        }
        if read_user(buf)? == b'{' {
            let capture = Capture {
                ssl: 0,
                peer: SockAddr::default(),
                fd: w.fd,
                source: http_source::SOCKET_BODY,
                flags: 0,
                time_ns: w.time_ns,
            };
            return emit(&capture, buf, len, cap);
        }
    }
    None
}

// --- OpenSSL --------------------------------------------------------------------------------

/// `SSL_write(ssl, buf, int num)`.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    let num = ctx.arg::<i32>(2).unwrap_or(0);
    if num <= 0 {
        return 0;
    }
    ssl_write_enter(&ctx, num as u64).unwrap_or(1)
}

/// `SSL_write_ex(ssl, buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    let num = ctx.arg::<u64>(2).unwrap_or(0);
    ssl_write_enter(&ctx, num).unwrap_or(1)
}

/// Keeps a write that starts a request (or is the body a request awaits) until the return.
#[inline(always)]
fn ssl_write_enter(ctx: &ProbeContext, len: u64) -> Option<u32> {
    let ssl: u64 = ctx.arg(0)?;
    let buf: *const u8 = ctx.arg(1)?;
    let (tgid, tid) = current();
    crate::h2::ssl_write_enter(tgid, tid, ssl, buf, len);
    let kept = tls_write(tgid, ssl, buf, len)?;
    keep_inflight(&SSL_WRITES, &tid, &kept);
    Some(0)
}

/// What a TLS write on `ssl` of `tgid` is to HTTP/1 capture: a request head, the body a head
/// awaits, or nothing (`None`). Shared by OpenSSL's probes and Go's (`go.rs`).
#[inline(always)]
pub(crate) fn tls_write(tgid: u32, ssl: u64, buf: *const u8, len: u64) -> Option<SslWrite> {
    if len == 0 {
        return None;
    }
    let source = if starts_request(buf, len) {
        http_source::SSL_WRITE
    } else {
        // SAFETY: plain integer value, copied out at once.
        let state = unsafe { SSL_STATE.get(&[u64::from(tgid), ssl]).copied() }?;
        if state & EXPECT_BODY == 0 {
            return None;
        }
        http_source::SSL_BODY
    };
    if is_self(tgid) {
        return None;
    }
    Some(SslWrite {
        ssl,
        buf: buf as u64,
        len,
        time_ns: now(),
        source,
        _pad: [0; 3],
    })
}

// Returns of `SSL_write` (the byte count, or <= 0) and `SSL_write_ex` (1 on success, else 0):
// both succeeded when positive.
#[uretprobe]
pub fn ssl_write_ret(ctx: RetProbeContext) -> u32 {
    ssl_write_exit(ctx.ret::<i32>().into()).unwrap_or(1)
}

#[uretprobe]
pub fn ssl_write_ex_ret(ctx: RetProbeContext) -> u32 {
    ssl_write_exit(ctx.ret::<i32>().into()).unwrap_or(1)
}

#[inline(always)]
fn ssl_write_exit(ret: i64) -> Option<u32> {
    let (tgid, tid) = current();
    crate::h2::ssl_write_exit(tgid, tid, ret);
    let w = take(&SSL_WRITES, &tid)?;
    if ret <= 0 {
        return Some(0);
    }
    tls_write_done(tgid, &w, 0, &SockAddr::default())?;
    Some(0)
}

/// A TLS write [`tls_write`] kept succeeded: the connection's state moves on and the bytes
/// are captured (`flags`: where they were seen, e.g. `HTTP_GO_TLS`; `peer`: the socket's peer
/// when known, else family 0).
#[inline(always)]
pub(crate) fn tls_write_done(tgid: u32, w: &SslWrite, flags: u16, peer: &SockAddr) -> Option<()> {
    let key = [u64::from(tgid), w.ssl];
    if w.source == http_source::SSL_WRITE {
        let _ = SSL_STATE.insert(&key, &(EXPECT_BODY | EXPECT_RESPONSE), 0);
    } else if let Some(state) = SSL_STATE.get_ptr_mut(&key) {
        // SAFETY: a plain integer in the map's value; a racing writer on the same SSL* would
        // be the application's own bug.
        unsafe { *state &= !EXPECT_BODY };
    }
    let capture = Capture {
        ssl: w.ssl,
        peer: *peer,
        fd: -1,
        source: w.source,
        flags: if peer.family == 0 {
            flags
        } else {
            flags | HTTP_PEER_KNOWN
        },
        time_ns: w.time_ns,
    };
    emit(&capture, w.buf as *const u8, w.len, config()?.http_max)
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
    let buf: u64 = ctx.arg(1)?;
    let (tgid, tid) = current();
    crate::h2::ssl_read_enter(tgid, tid, ssl, buf, readbytes);
    if !tls_read_wanted(tgid, ssl) {
        return Some(0);
    }
    keep_inflight(&SSL_READS, &tid, &[ssl, buf, readbytes]);
    Some(0)
}

/// Whether a read on `ssl` may carry an awaited response's status line or, after it, the
/// response's body (within its budget).
#[inline(always)]
pub(crate) fn tls_read_wanted(tgid: u32, ssl: u64) -> bool {
    // SAFETY: plain integer value, copied out at once.
    unsafe { SSL_STATE.get(&[u64::from(tgid), ssl]).copied() }
        .is_some_and(|state| state & (EXPECT_RESPONSE | RESPONSE_DATA) != 0)
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
    let _ = crate::h2::ssl_read_exit(tid, ret);
    let [ssl, buf, readbytes] = take(&SSL_READS, &tid)?;
    if ret <= 0 {
        return Some(0);
    }
    let len = if readbytes == 0 {
        ret as u64
    } else {
        read_user(readbytes as *const u64)?
    };
    tls_read_done(tgid, ssl, buf as *const u8, len, 0)?;
    Some(0)
}

/// `len` bytes a TLS read on `ssl` returned in `buf`: captured when they start a response's
/// status line, then the response's following reads within `http_response_max` (`flags` as
/// for [`tls_write_done`]).
#[inline(always)]
pub(crate) fn tls_read_done(
    tgid: u32,
    ssl: u64,
    buf: *const u8,
    len: u64,
    flags: u16,
) -> Option<()> {
    let state = SSL_STATE.get_ptr_mut(&[u64::from(tgid), ssl])?;
    // SAFETY: as in `tls_write_done`.
    let current = unsafe { *state };
    let (source, budget) = if current & EXPECT_RESPONSE != 0 {
        if len < 12 || read_user(buf.cast::<[u8; 5]>())? != *b"HTTP/" {
            return None;
        }
        (http_source::SSL_READ, config()?.http_response_max)
    } else if current & RESPONSE_DATA != 0 {
        (http_source::SSL_RESPONSE, current >> BUDGET_SHIFT)
    } else {
        return None;
    };
    // No budget: the status line only.
    let cap = if budget == 0 {
        HTTP_STATUS_BYTES
    } else if budget > HTTP_DATA_MAX as u32 {
        HTTP_DATA_MAX as u32
    } else {
        budget
    };
    let sent = if len < u64::from(cap) {
        len as u32
    } else {
        cap
    };
    let left = budget.saturating_sub(sent);
    let next = if left > 0 {
        RESPONSE_DATA | (left << BUDGET_SHIFT)
    } else {
        0
    };
    // SAFETY: as above.
    unsafe { *state = (current & EXPECT_BODY) | next };
    let capture = Capture {
        ssl,
        peer: SockAddr::default(),
        fd: -1,
        source,
        flags,
        time_ns: now(),
    };
    emit(&capture, buf, len, cap)
}
