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
    SOCK_TYPE_DGRAM, SOCK_TYPE_UNKNOWN, SockAddr, counter, http_source,
};

use crate::{
    maps::{CONN_PEERS, EVENTS, HTTP_SCRATCH, SOCK_BODY, SOCK_TYPES, SSL_READS, SSL_STATE},
    net::read_sockaddr,
    util::{config, count, current, fd_key, header, now},
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

/// Reads a `T` from user memory.
#[inline(always)]
fn read_user<T: Copy + Default>(ptr: *const T) -> Option<T> {
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
    let rec = HTTP_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let rec = unsafe { &mut *rec };
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
    // SAFETY: `size` is at most the size of the `HttpBuffer` the pointer refers to.
    let bytes = unsafe { core::slice::from_raw_parts(core::ptr::from_ref(rec).cast::<u8>(), size) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count(counter::RING_FULL);
    }
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

#[tracepoint]
pub fn http_sys_enter_write(ctx: TracePointContext) -> u32 {
    // write(fd, buf, count)
    let (fd, buf, len): (i64, *const u8, u64) = (arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    socket_write(fd as i32, buf, len, core::ptr::null()).unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_sendto(ctx: TracePointContext) -> u32 {
    // sendto(fd, buff, len, flags, addr, addr_len)
    let (fd, buf, len): (i64, *const u8, u64) = (arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    socket_write(fd as i32, buf, len, arg(&ctx, 4)).unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_writev(ctx: TracePointContext) -> u32 {
    // writev(fd, vec, vlen): the request head is in the first buffer.
    let (fd, iov): (i64, *const [u64; 2]) = (arg(&ctx, 0), arg(&ctx, 1));
    first_iov(fd as i32, iov, core::ptr::null()).unwrap_or(1)
}

#[tracepoint]
pub fn http_sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    // sendmsg(fd, msg, flags); `struct msghdr`: msg_name at 0, msg_iov at 16.
    let (fd, msg): (i64, *const [u64; 3]) = (arg(&ctx, 0), arg(&ctx, 1));
    let Some(hdr) = read_user(msg) else {
        return 1;
    };
    first_iov(fd as i32, hdr[2] as *const [u64; 2], hdr[0] as *const u8).unwrap_or(1)
}

#[inline(always)]
fn arg<T: Copy>(ctx: &TracePointContext, n: usize) -> T {
    crate::util::sys_arg(ctx, n)
}

#[inline(always)]
fn first_iov(fd: i32, iov: *const [u64; 2], addr: *const u8) -> Option<u32> {
    let v = read_user(iov)?;
    socket_write(fd, v[0] as *const u8, v[1], addr)
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
    // SAFETY: a plain integer, copied out at once.
    let head_ns = unsafe { SOCK_BODY.get(key).copied()? };
    let _ = SOCK_BODY.remove(key);
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
    if SSL_READS.insert(&tid, &[ssl, buf, readbytes], 0).is_err() {
        count(counter::INFLIGHT_FULL);
    }
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
    // SAFETY: plain integers, copied out at once.
    let [ssl, buf, readbytes] = unsafe { SSL_READS.get(&tid).copied()? };
    let _ = SSL_READS.remove(&tid);
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
