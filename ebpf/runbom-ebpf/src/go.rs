//! Go's `crypto/tls`: uprobes on `(*Conn).Write` and `(*Conn).Read` of Go executables feed the
//! same HTTP/1 and HTTP/2 capture as OpenSSL's (`http.rs`, `h2.rs`), the `*tls.Conn` standing
//! for the `SSL*` and `HTTP_GO_TLS` in the records' flags.
//!
//! Go passes arguments and results in registers (ABIInternal on amd64: receiver in RAX, the
//! slice's pointer and length in RBX and RCX; the result `n` in RAX) and keeps the running
//! goroutine in R14. A goroutine can move to another thread while it waits, so a call is kept
//! per `(tgid, goroutine)`, not per thread. Return probes would break Go's stack copying:
//! userspace attaches `*_ret` to every `RET` instruction of the function instead. An entry probe
//! can run twice for one call (the prologue's stack-growth path restarts the function): the
//! second only overwrites what the first kept.

use aya_ebpf::{macros::uprobe, maps::LruHashMap, programs::ProbeContext};
use runbom_common::{HTTP_GO_TLS, HTTP_H2_PREFACE, SockAddr, http_source};

use crate::{
    h2, http,
    maps::{CONN_PEERS, GO_READS, GO_WRITES},
    util::{current, fd_key, keep_inflight, read_user, take},
};

/// `(receiver, slice pointer, slice length, goroutine)` at a `(*Conn).Write/Read` entry, or
/// `(n, _, _, goroutine)` at a `RET`.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> (u64, u64, u64, u64) {
    // SAFETY: a uprobe's context is the user registers, readable directly.
    let r = unsafe { &*ctx.regs };
    (r.rax, r.rbx, r.rcx, r.r14)
}

/// `func (c *Conn) Write(b []byte) (int, error)`.
#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    let (conn, buf, len, g) = regs(&ctx);
    let (tgid, _) = current();
    keep_inflight(&GO_WRITES, &[u64::from(tgid), g], &[conn, buf, len]);
    0
}

/// The peer of the socket under a `*tls.Conn`, from the address its connect recorded
/// (`CONN_PEERS`), or family 0. The descriptor is three pointers away, at offsets that have
/// held from Go 1.12 on: `tls.Conn.conn` (an interface: its data word at +8) → `*net.TCPConn`,
/// whose first word is its `*netFD` → `netFD.pfd.Sysfd` at +16 (after `fdMutex`). Another
/// `net.Conn` behind the interface gives a number that is no socket of the process: no peer.
#[inline(always)]
fn peer(tgid: u32, conn: u64) -> SockAddr {
    let fd = read_user((conn + 8) as *const u64)
        .and_then(|tcp| read_user(tcp as *const u64))
        .and_then(|netfd| read_user((netfd + 16) as *const i64));
    let Some(fd) = fd.filter(|fd| (0..=i64::from(i32::MAX)).contains(fd)) else {
        return SockAddr::default();
    };
    // SAFETY: a plain map value, copied at once.
    CONN_PEERS
        .get_ptr(fd_key(tgid, fd as i32))
        .map_or_else(SockAddr::default, |p| unsafe { *p })
}

/// At a `RET`: the call this goroutine kept in `map` and the `n` it returns, as
/// `(tgid, conn, buf, n)`; `None` when nothing was kept or nothing was moved (`n <= 0`).
#[inline(always)]
fn returned(
    ctx: &ProbeContext,
    map: &LruHashMap<[u64; 2], [u64; 3]>,
) -> Option<(u32, u64, *const u8, u64)> {
    let (n, _, _, g) = regs(ctx);
    let (tgid, _) = current();
    let [conn, buf, len] = take(map, &[u64::from(tgid), g])?;
    let n = n as i64;
    if n <= 0 {
        return None;
    }
    Some((tgid, conn, buf as *const u8, (n as u64).min(len)))
}

/// At each `RET` of `(*Conn).Write`: `n` bytes of the kept buffer were written.
#[uprobe]
pub fn go_tls_write_ret(ctx: ProbeContext) -> u32 {
    let Some((tgid, conn, buf, n)) = returned(&ctx, &GO_WRITES) else {
        return 0;
    };
    if let Some(w) = http::tls_write(tgid, conn, buf, n) {
        let peer = if w.source == http_source::SSL_WRITE {
            peer(tgid, conn)
        } else {
            SockAddr::default()
        };
        let _ = http::tls_write_done(tgid, &w, HTTP_GO_TLS, &peer);
    }
    if let Some(c) = h2::tls_write(tgid, conn, buf, n) {
        let peer = if c.flags & HTTP_H2_PREFACE != 0 {
            peer(tgid, conn)
        } else {
            SockAddr::default()
        };
        let _ = h2::tls_write_done(tgid, &c, HTTP_GO_TLS, &peer);
    }
    0
}

/// `func (c *Conn) Read(b []byte) (int, error)`: always kept, because Go's HTTP/1 transport
/// has its reading goroutine waiting in `Read` before the request is written; what the bytes
/// are is decided at the return.
#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    let (conn, buf, len, g) = regs(&ctx);
    let (tgid, _) = current();
    keep_inflight(&GO_READS, &[u64::from(tgid), g], &[conn, buf, len]);
    0
}

/// At each `RET` of `(*Conn).Read`: `n` bytes were read into the kept buffer.
#[uprobe]
pub fn go_tls_read_ret(ctx: ProbeContext) -> u32 {
    let Some((tgid, conn, buf, n)) = returned(&ctx, &GO_READS) else {
        return 0;
    };
    if h2::tls_read_wanted(tgid, conn) {
        let _ = h2::tls_read_done(conn, buf, n, HTTP_GO_TLS);
    } else if http::tls_read_wanted(tgid, conn) {
        let _ = http::tls_read_done(tgid, conn, buf, n, HTTP_GO_TLS);
    }
    0
}
