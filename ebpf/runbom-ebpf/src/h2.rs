//! HTTP/2 material: every byte a client's HTTP/2 connection writes and reads, in order, for
//! userspace to parse the frames (HPACK state is per connection, so nothing can be skipped).
//!
//! A connection becomes HTTP/2 when it writes the client preface (`PRI * HTTP/2.0`): at the
//! socket (`h2c` with prior knowledge; `http.rs` hands every write that is not an HTTP/1
//! request to [`socket_write`] first) or through OpenSSL (ALPN `h2`). From then on:
//! - socket writes: one map lookup at entry (`H2_SOCKS`); the call is kept like an HTTP/1 head
//!   and its exit captures what was written, buffer by buffer for `writev`/`sendmsg`;
//! - socket reads (`read`, `recvfrom`, `readv`, `recvmsg`): one map lookup at entry, one at
//!   exit (the thread's pending read), and what was read is captured the same way;
//! - a process that never marked a socket (`capture::will_mark`) pays neither lookup: one
//!   array lookup says so at each entry and exit;
//! - `SSL_write[_ex]`/`SSL_read[_ex]`: one map lookup at entry (`H2_SSL`), captured at return
//!   when the call succeeded. `http.rs`'s OpenSSL probes call the `ssl_*` functions here (one
//!   program per hook for HTTP/1 and HTTP/2).
//!
//! The mark goes at `close(2)` (`capture::sys_enter_close`) and at `SSL_free`, so that a
//! descriptor or `SSL*` reused for something else is not captured.
//!
//! Each buffer is captured whole up to [`CHUNKS`] records of `HTTP_DATA_MAX` bytes, the last
//! with the count it really carried (`total_len`), so userspace knows how many bytes it did not
//! see (inside a large DATA frame, normally) and stays in step with the frames; buffers past
//! [`IOV_MAX`] are one gap record (`data_len` 0).

use aya_ebpf::{
    macros::{tracepoint, uprobe},
    programs::{ProbeContext, TracePointContext},
};
use runbom_common::{
    EventKind, HTTP_DATA_MAX, HTTP_H2_PREFACE, HTTP_PEER_KNOWN, HttpEvent, SockAddr, http_source,
};

use crate::{
    capture::{Capture, Write, emit, fd_arg, keep_write, may_have_marks, will_mark},
    maps::{CONN_PEERS, H2_READS, H2_SOCKS, H2_SSL, H2_SSL_CALLS, H2SslCall, SSL_STATE, SockWrite},
    util::{
        current, fd_key, first_iovec, header, is_self, keep_inflight, msghdr_iov, now, output,
        read_user, sys_arg, take, tracepoints,
    },
};

/// An HTTP/2 buffer is captured whole up to `CHUNKS * HTTP_DATA_MAX` bytes (64 KiB: a read of a
/// large response holds many frames, and a frame header in an uncaptured tail ends the
/// connection's following), whatever `http.max_header_bytes` says; an iovec up to
/// `HTTP_DATA_MAX`. A TLS record holds at most 16 KiB, so TLS reads are always whole.
const CHUNKS: u64 = 4;

/// The first four bytes of the client preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PRI: u32 = u32::from_le_bytes(*b"PRI ");
const PREFACE_LEN: u64 = 24;

/// Buffers of one `writev`/`readv`/`sendmsg`/`recvmsg` captured one by one (gRPC writes a
/// request's header block as ~25 small buffers); the rest is a gap.
pub const IOV_MAX: u64 = 32;

// --- sockets --------------------------------------------------------------------------------

/// A socket write that is not an HTTP/1 request: kept when it is the client preface or the
/// socket wrote one. `None`: not HTTP/2, the caller goes on.
#[inline(always)]
pub fn socket_write(w: &Write, first: u32) -> Option<u32> {
    let (tgid, tid) = current();
    let key = fd_key(tgid, w.fd);
    let mut flags = 0;
    let mut peer = SockAddr::default();
    if first == PRI && w.len >= PREFACE_LEN {
        if is_self(tgid) {
            return Some(0);
        }
        flags = HTTP_H2_PREFACE;
        if let Some(p) = CONN_PEERS.get_ptr(key) {
            // SAFETY: a plain map value, copied at once.
            peer = unsafe { *p };
            flags |= HTTP_PEER_KNOWN;
        }
    } else if !may_have_marks(tgid) || H2_SOCKS.get_ptr(key).is_none() {
        return None;
    }
    keep_write(tid, w, peer, http_source::H2_SOCKET_WRITE, flags);
    Some(0)
}

/// Exit of a write [`socket_write`] kept: the socket is HTTP/2 from its preface on, and what
/// the call wrote is captured.
#[inline(always)]
pub fn socket_write_exit(w: &SockWrite, ret: u64) -> u32 {
    if w.flags & HTTP_H2_PREFACE != 0 {
        let (tgid, _) = current();
        will_mark(tgid);
        let _ = H2_SOCKS.insert(&fd_key(tgid, w.fd), &1, 0);
    }
    chunks(w, ret, w.time_ns)
}

/// The `ret` bytes a call moved, one record per buffer (at most [`IOV_MAX`], then a gap).
#[inline(always)]
fn chunks(w: &SockWrite, ret: u64, time_ns: u64) -> u32 {
    let mut capture = Capture {
        ssl: 0,
        peer: w.peer,
        fd: w.fd,
        source: w.source,
        flags: w.flags,
        time_ns,
    };
    if w.iov == 0 {
        let n = if ret < w.len { ret } else { w.len };
        emit_all(&capture, w.buf as *const u8, n);
        return 0;
    }
    let iov = w.iov as *const [u64; 2];
    let mut left = ret;
    for i in 0..IOV_MAX {
        if i >= w.iov_len || left == 0 {
            break;
        }
        // SAFETY: only the address is computed here; the user read is checked.
        let Some((buf, len)) = first_iovec(unsafe { iov.add(i as usize) }) else {
            break;
        };
        let n = if len < left { len } else { left };
        if n > 0 {
            emit(&capture, buf, n, HTTP_DATA_MAX as u32);
        }
        left -= n;
        capture.flags = 0;
    }
    if left > 0 {
        gap(&capture, left);
    }
    0
}

/// `len` bytes at `buf` as up to [`CHUNKS`] records of `HTTP_DATA_MAX` bytes; the last carries
/// the count of what it could not hold.
#[inline(always)]
fn emit_all(capture: &Capture, buf: *const u8, len: u64) {
    let max = HTTP_DATA_MAX as u64;
    let mut done = 0;
    for i in 0..CHUNKS {
        if done >= len {
            break;
        }
        let left = len - done;
        let n = if i + 1 == CHUNKS || left <= max {
            left
        } else {
            max
        };
        emit(
            capture,
            buf.wrapping_add(done as usize),
            n,
            HTTP_DATA_MAX as u32,
        );
        done += n;
    }
}

/// `len` bytes of the connection's stream that were not captured.
#[inline(always)]
fn gap(c: &Capture, len: u64) {
    let (tgid, tid) = current();
    let mut header = header(
        EventKind::HttpData,
        core::mem::size_of::<HttpEvent>(),
        tgid,
        tid,
    );
    header.time_ns = c.time_ns;
    output(&HttpEvent {
        header,
        ssl: c.ssl,
        total_len: len,
        peer: SockAddr::default(),
        fd: c.fd,
        source: c.source,
        flags: 0,
        data_len: 0,
    });
}

/// How a read-family syscall passes its buffers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    /// `read(fd, buf, count)`, `recvfrom(fd, buf, size, ...)`.
    Buffer,
    /// `readv(fd, iov, iovcnt)`.
    Vector,
    /// `recvmsg(fd, msg, flags)`.
    Message,
}

#[tracepoint]
pub fn h2_sys_enter_read(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Buffer).unwrap_or(1)
}

#[tracepoint]
pub fn h2_sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Buffer).unwrap_or(1)
}

#[tracepoint]
pub fn h2_sys_enter_readv(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Vector).unwrap_or(1)
}

#[tracepoint]
pub fn h2_sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Message).unwrap_or(1)
}

/// A read on an HTTP/2 socket is kept until its exit (for every other read one array lookup, and
/// one map lookup in a process that marked a socket).
#[inline(always)]
fn read_enter(ctx: &TracePointContext, kind: ReadKind) -> Option<u32> {
    let fd = fd_arg(ctx);
    let (tgid, tid) = current();
    if !may_have_marks(tgid) {
        return None;
    }
    H2_SOCKS.get_ptr(fd_key(tgid, fd))?;
    let (buf, len, iov, iov_len) = match kind {
        ReadKind::Buffer => (sys_arg::<u64>(ctx, 1), sys_arg::<u64>(ctx, 2), 0, 0),
        ReadKind::Vector => (0, 0, sys_arg::<u64>(ctx, 1), sys_arg::<u64>(ctx, 2)),
        ReadKind::Message => {
            let (_, iov, iov_len) = msghdr_iov(sys_arg(ctx, 1))?;
            (0, 0, iov as u64, iov_len)
        }
    };
    let kept = SockWrite {
        buf,
        len,
        time_ns: 0,
        iov,
        iov_len,
        peer: SockAddr::default(),
        fd,
        source: http_source::H2_SOCKET_READ,
        flags: 0,
        _pad: 0,
    };
    keep_inflight(&H2_READS, &tid, &kept);
    Some(0)
}

tracepoints!(
    read_exit: h2_sys_exit_read,
    h2_sys_exit_recvfrom,
    h2_sys_exit_readv,
    h2_sys_exit_recvmsg,
);

/// Exit of a read-family call: what an HTTP/2 socket read is captured, stamped with now.
#[inline(always)]
fn read_exit(ctx: &TracePointContext) -> u32 {
    let (tgid, tid) = current();
    // An entry keeps a read only for a process that marked a socket.
    if !may_have_marks(tgid) {
        return 0;
    }
    let Some(r) = take(&H2_READS, &tid) else {
        return 0;
    };
    let ret: i64 = sys_arg(ctx, 0);
    if ret <= 0 {
        return 0;
    }
    chunks(&r, ret as u64, now())
}

// --- OpenSSL --------------------------------------------------------------------------------

/// `SSL_free(ssl)`: the connection's HTTP/2 mark and HTTP/1 state go with it (allocators
/// reuse addresses: a new connection at the same address must not inherit either).
#[uprobe]
pub fn h2_ssl_free(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current();
    if let Some(ssl) = ctx.arg::<u64>(0) {
        let key = [u64::from(tgid), ssl];
        let _ = H2_SSL.remove(&key);
        let _ = SSL_STATE.remove(&key);
    }
    0
}

/// Entry of `SSL_write[_ex]`, called by `http.rs`'s OpenSSL probes (one program per hook for
/// HTTP/1 and HTTP/2): the call is kept when it is HTTP/2.
#[inline(always)]
pub(crate) fn ssl_write_enter(tgid: u32, tid: u32, ssl: u64, buf: *const u8, len: u64) {
    if let Some(call) = tls_write(tgid, ssl, buf, len) {
        keep_inflight(&H2_SSL_CALLS, &tid, &call);
    }
}

/// A TLS write on `ssl` of `tgid` that HTTP/2 capture keeps: the client preface, or any write
/// of a connection that wrote it. Shared by OpenSSL's probes and Go's (`go.rs`).
#[inline(always)]
pub(crate) fn tls_write(tgid: u32, ssl: u64, buf: *const u8, len: u64) -> Option<H2SslCall> {
    if len == 0 {
        return None;
    }
    let mut flags = 0;
    if H2_SSL.get_ptr(&[u64::from(tgid), ssl]).is_none() {
        if len < PREFACE_LEN || read_user(buf.cast::<u32>())? != PRI || is_self(tgid) {
            return None;
        }
        flags = HTTP_H2_PREFACE;
    }
    Some(H2SslCall {
        ssl,
        buf: buf as u64,
        len,
        readbytes: 0,
        time_ns: now(),
        flags,
        _pad: [0; 3],
    })
}

/// Return of `SSL_write[_ex]` (> 0 on success, and without `SSL_MODE_ENABLE_PARTIAL_WRITE`
/// all was written), called by `http.rs`.
#[inline(always)]
pub(crate) fn ssl_write_exit(tgid: u32, tid: u32, ret: i64) {
    if let Some(c) = take(&H2_SSL_CALLS, &tid)
        && ret > 0
    {
        let _ = tls_write_done(tgid, &c, 0, &SockAddr::default());
    }
}

/// A write [`tls_write`] kept succeeded: a preface marks the connection, and the bytes are
/// captured (`flags`: where they were seen, e.g. `HTTP_GO_TLS`).
#[inline(always)]
pub(crate) fn tls_write_done(tgid: u32, c: &H2SslCall, flags: u16, peer: &SockAddr) -> Option<()> {
    if c.flags & HTTP_H2_PREFACE != 0 {
        let _ = H2_SSL.insert(&[u64::from(tgid), c.ssl], &1, 0);
    }
    let known = if peer.family == 0 { 0 } else { HTTP_PEER_KNOWN };
    let capture = Capture {
        ssl: c.ssl,
        peer: *peer,
        fd: -1,
        source: http_source::H2_SSL_WRITE,
        flags: c.flags | flags | known,
        time_ns: c.time_ns,
    };
    emit_all(&capture, c.buf as *const u8, c.len);
    Some(())
}

/// Entry of `SSL_read[_ex]` (`readbytes`: `SSL_read_ex`'s `size_t *`, else 0), called by
/// `http.rs`: kept when the connection is HTTP/2.
#[inline(always)]
pub(crate) fn ssl_read_enter(tgid: u32, tid: u32, ssl: u64, buf: u64, readbytes: u64) {
    if !tls_read_wanted(tgid, ssl) {
        return;
    }
    let call = H2SslCall {
        ssl,
        buf,
        len: 0,
        readbytes,
        time_ns: 0,
        flags: 0,
        _pad: [0; 3],
    };
    keep_inflight(&H2_SSL_CALLS, &tid, &call);
}

/// Whether `ssl` of `tgid` is an HTTP/2 connection (its reads are captured).
#[inline(always)]
pub(crate) fn tls_read_wanted(tgid: u32, ssl: u64) -> bool {
    H2_SSL.get_ptr(&[u64::from(tgid), ssl]).is_some()
}

/// Return of `SSL_read[_ex]` (the count, or 1 with the count in `*readbytes`; <= 0: nothing),
/// called by `http.rs`.
#[inline(always)]
pub(crate) fn ssl_read_exit(tid: u32, ret: i64) -> Option<()> {
    let c = take(&H2_SSL_CALLS, &tid)?;
    if ret <= 0 {
        return None;
    }
    let len = if c.readbytes == 0 {
        ret as u64
    } else {
        read_user(c.readbytes as *const u64)?
    };
    tls_read_done(c.ssl, c.buf as *const u8, len, 0)
}

/// `len` bytes a read on an HTTP/2 TLS connection returned in `buf`: captured.
#[inline(always)]
pub(crate) fn tls_read_done(ssl: u64, buf: *const u8, len: u64, flags: u16) -> Option<()> {
    let capture = Capture {
        ssl,
        peer: SockAddr::default(),
        fd: -1,
        source: http_source::H2_SSL_READ,
        flags,
        time_ns: now(),
    };
    emit_all(&capture, buf, len);
    Some(())
}
