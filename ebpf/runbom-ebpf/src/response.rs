//! Plaintext HTTP/1 responses: what a socket that just sent a request head reads back (a local
//! model server over plain HTTP: Ollama, vLLM), recorded as the TLS path records what
//! `SSL_read` returns, so that userspace pairs and reads both alike.
//!
//! - `http.rs` marks a socket in `SOCK_RESPONSE` when a request head was written on it
//!   ([`request_sent`]: the response is awaited, with the budget `http_response_max` for a
//!   `POST`, as every LLM API call is, and the status line only for any other method: a
//!   download's body is never copied);
//! - read-family entries (`read`, `recvfrom`, `readv`, `recvmsg`) pay one map lookup of that
//!   mark and keep the call only for a marked socket (`SOCK_READS`); their exits pay one lookup
//!   of the thread's kept call; a process that never marked a socket (`capture::will_mark`)
//!   pays one array lookup instead of each;
//! - the first read that returns bytes starting `HTTP/` is the status (`SOCKET_READ`), the
//!   reads after it the response's rest (`SOCKET_RESPONSE`) until the budget is spent, one
//!   record of at most `HTTP_DATA_MAX` bytes per read (the first buffer of a vector read);
//! - the mark goes at the next request head (replaced), when the budget is spent, and at
//!   `close(2)` (`capture::sys_enter_close`), so that a reused descriptor is not read.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use runbom_common::{HTTP_DATA_MAX, HTTP_STATUS_BYTES, SockAddr, http_source};

use crate::{
    capture::{Capture, emit, fd_arg, may_have_marks, will_mark},
    maps::{SOCK_READS, SOCK_RESPONSE, SockWrite},
    util::{
        config, current, fd_key, first_iovec, keep_inflight, msghdr_iov, now, read_user, sys_arg,
        take, tracepoints,
    },
};

/// `SOCK_RESPONSE` values: the status is awaited; the response started and its next reads
/// are captured, within the budget left in the bits above [`BUDGET_SHIFT`]; only the status
/// line is wanted (not a `POST`).
const EXPECT_STATUS: u32 = 2;
const RESPONSE_DATA: u32 = 4;
const STATUS_ONLY: u32 = 8;
const POST: u32 = u32::from_le_bytes(*b"POST");
const BUDGET_SHIFT: u32 = 8;

/// How a read-family syscall passes its buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    /// `read(fd, buf, count)`, `recvfrom(fd, buf, size, ...)`.
    Buffer,
    /// `readv(fd, iov, iovcnt)`.
    Vector,
    /// `recvmsg(fd, msg, flags)`.
    Message,
}

/// A request head starting at `head` was written on `fd` of `tgid`: its response is awaited
/// (one 4-byte user read for its method).
#[inline(always)]
pub(crate) fn request_sent(tgid: u32, fd: i32, head: *const u8) {
    let state = if read_user(head.cast::<u32>()) == Some(POST) {
        EXPECT_STATUS
    } else {
        EXPECT_STATUS | STATUS_ONLY
    };
    will_mark(tgid);
    let _ = SOCK_RESPONSE.insert(&fd_key(tgid, fd), &state, 0);
}

#[tracepoint]
pub fn resp_sys_enter_read(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Buffer).unwrap_or(1)
}

#[tracepoint]
pub fn resp_sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Buffer).unwrap_or(1)
}

#[tracepoint]
pub fn resp_sys_enter_readv(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Vector).unwrap_or(1)
}

#[tracepoint]
pub fn resp_sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    read_enter(&ctx, ReadKind::Message).unwrap_or(1)
}

/// A read on a socket awaiting a response is kept until its exit (for every other read one
/// array lookup, and one map lookup in a process that marked a socket).
#[inline(always)]
fn read_enter(ctx: &TracePointContext, kind: ReadKind) -> Option<u32> {
    let fd = fd_arg(ctx);
    let (tgid, tid) = current();
    if !may_have_marks(tgid) {
        return None;
    }
    SOCK_RESPONSE.get_ptr(fd_key(tgid, fd))?;
    let (buf, len) = match kind {
        ReadKind::Buffer => (sys_arg::<u64>(ctx, 1), sys_arg::<u64>(ctx, 2)),
        ReadKind::Vector => {
            let (buf, len) = first_iovec(sys_arg::<u64>(ctx, 1) as *const [u64; 2])?;
            (buf as u64, len)
        }
        ReadKind::Message => {
            let (_, iov, iov_len) = msghdr_iov(sys_arg(ctx, 1))?;
            if iov_len == 0 {
                return Some(0);
            }
            let (buf, len) = first_iovec(iov)?;
            (buf as u64, len)
        }
    };
    let kept = SockWrite {
        buf,
        len,
        time_ns: 0,
        iov: 0,
        iov_len: 0,
        peer: SockAddr::default(),
        fd,
        source: http_source::SOCKET_READ,
        flags: 0,
        _pad: 0,
    };
    keep_inflight(&SOCK_READS, &tid, &kept);
    Some(0)
}

tracepoints!(
    read_exit: resp_sys_exit_read,
    resp_sys_exit_recvfrom,
    resp_sys_exit_readv,
    resp_sys_exit_recvmsg,
);

/// Exit of a read-family call kept at entry: the status line, or the response's next bytes
/// within what is left of the budget.
#[inline(always)]
fn read_exit(ctx: &TracePointContext) -> u32 {
    let (tgid, tid) = current();
    // An entry keeps a read only for a process that marked a socket.
    if !may_have_marks(tgid) {
        return 0;
    }
    let Some(r) = take(&SOCK_READS, &tid) else {
        return 0;
    };
    let ret: i64 = sys_arg(ctx, 0);
    if ret <= 0 {
        return 0;
    }
    // The first buffer of a vector read holds at most its length.
    let len = if (ret as u64) < r.len {
        ret as u64
    } else {
        r.len
    };
    read_done(tgid, &r, len).map_or(1, |()| 0)
}

#[inline(always)]
fn read_done(tgid: u32, r: &SockWrite, len: u64) -> Option<()> {
    let key = fd_key(tgid, r.fd);
    let state = SOCK_RESPONSE.get_ptr_mut(key)?;
    // SAFETY: a plain integer in the map's value; a racing reader of the same socket would be
    // the application's own bug.
    let current = unsafe { *state };
    let (source, budget) = if current & EXPECT_STATUS != 0 {
        if len < 12 || read_user(r.buf as *const [u8; 5])? != *b"HTTP/" {
            return None;
        }
        let budget = if current & STATUS_ONLY == 0 {
            config()?.http_response_max
        } else {
            0
        };
        (http_source::SOCKET_READ, budget)
    } else if current & RESPONSE_DATA != 0 {
        (http_source::SOCKET_RESPONSE, current >> BUDGET_SHIFT)
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
    if left > 0 {
        // SAFETY: as above.
        unsafe { *state = RESPONSE_DATA | (left << BUDGET_SHIFT) };
    } else {
        let _ = SOCK_RESPONSE.remove(key);
    }
    let capture = Capture {
        ssl: 0,
        peer: SockAddr::default(),
        fd: r.fd,
        source,
        flags: 0,
        time_ns: now(),
    };
    emit(&capture, r.buf as *const u8, len, cap)
}
