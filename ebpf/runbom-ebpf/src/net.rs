//! `net.connect`, `net.accept` and `dns.query`.
//!
//! The socket type (TCP or UDP) is not in the connect syscall's arguments, so `socket()` calls
//! are remembered per `(tgid, fd)`; a socket created before runbom started reports type unknown.
//! Between a call's entry and exit, `socket`, `connect` and `accept` keep what they know in this
//! thread's slot of `SOCK_SLOTS` (an array indexed by thread id: inlined lookups, nothing
//! allocated or freed per call); the exit writes the one record.
//! A UDP socket connected to a DNS port is remembered too, so that `send()` on it (no address)
//! is still seen as a DNS query.
//!
//! The local end of a TCP connect (`client.address`/`client.port`) is in no syscall argument.
//! `sock:inet_sock_set_state` fires in the connecting thread on `TCP_CLOSE → TCP_SYN_SENT`
//! with the source address already chosen but the source port not yet bound (the kernel binds
//! it right after, still inside `connect()`): that program adds the address to the pending
//! record and keeps the socket's pointer (both in the slot), and the exit reads the bound port from the socket
//! (`skc_num`). A UDP connect changes no TCP state, so its local end stays unknown.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use core::ptr::{read_volatile, write_volatile};
use runbom_common::{
    DNS_PAYLOAD_MAX, DnsEvent, EventKind, SOCK_TYPE_DGRAM, SOCK_TYPE_STREAM, SOCK_TYPE_UNKNOWN,
    SockAddr, SockEvent, counter,
};

use crate::{
    maps::{
        CONN_PEERS, DNS_PORTS, DNS_SCRATCH, DNS_SOCKS, EVENTS, SOCK_BODY, SOCK_SLOT_SOCKET,
        SOCK_SLOTS, SOCK_SLOTS_LEN, SOCK_TYPES, SockSlot,
    },
    util::{
        BPF_RB_NO_WAKEUP, config, count, current, fd_key, field, forget, header_of, is_self,
        msghdr_first, now, output, ring_unread, scratch, shed_at, sys_arg, tracepoints, wake_flags,
    },
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
/// Offset of `skc_num` (the bound local port, host order) in `struct sock`: `struct
/// sock_common` comes first and starts `skc_daddr`, `skc_rcv_saddr`, `skc_hash`, `skc_dport`,
/// `skc_num` (the kernel's socket lookup reads the first two and the last two as pairs, so
/// this layout does not move).
const SKC_NUM_OFFSET: u64 = 14;

/// Reads an IPv4 or IPv6 `struct sockaddr` from user memory; `None` for other families.
#[inline(always)]
pub fn read_sockaddr(ptr: *const u8) -> Option<SockAddr> {
    if ptr.is_null() {
        return None;
    }
    let mut raw = [0u8; 24];
    // SAFETY: reads at most 24 bytes of user memory into a stack array.
    let r = unsafe { bpf_probe_read_user(raw.as_mut_ptr().cast(), 24, ptr.cast()) };
    if r != 0 {
        return None;
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => addr[..4].copy_from_slice(&raw[4..8]),
        AF_INET6 => addr.copy_from_slice(&raw[8..24]),
        _ => return None,
    }
    Some(SockAddr { family, port, addr })
}

// The slots. A thread writes its id into its slot first and the rest after it; an exit copies
// the rest out and reads the id again, so that a thread sharing the slot (only beyond the
// default `pid_max`, see `SOCK_SLOTS_LEN`) that claimed it meanwhile makes the exit drop its
// call rather than write a record mixed from two calls.

#[inline(always)]
fn slot_of(tid: u32) -> Option<*mut SockSlot> {
    SOCK_SLOTS.get_ptr_mut(tid & (SOCK_SLOTS_LEN - 1))
}

/// Claims this thread's slot for `call`, with `sk` 0. A slot that still holds another thread's
/// call loses that call: counted (`INFLIGHT_FULL`).
#[inline(always)]
fn claim(tid: u32, call: u32) -> Option<*mut SockSlot> {
    let slot = slot_of(tid)?;
    // SAFETY: a slot of an array map (plain integers and bytes); the id is written first.
    unsafe {
        let held = read_volatile(&raw const (*slot).tid);
        if held != 0 && held != tid {
            count(counter::INFLIGHT_FULL);
        }
        write_volatile(&raw mut (*slot).tid, tid);
        write_volatile(&raw mut (*slot).call, call);
        write_volatile(&raw mut (*slot).sk, 0);
    }
    Some(slot)
}

/// This thread's slot when it holds this thread's `call`.
#[inline(always)]
fn held(tid: u32, call: u32) -> Option<*mut SockSlot> {
    let slot = slot_of(tid)?;
    // SAFETY: as in `claim`.
    let mine = unsafe {
        read_volatile(&raw const (*slot).tid) == tid
            && read_volatile(&raw const (*slot).call) == call
    };
    mine.then_some(slot)
}

/// Frees this thread's slot after its call was copied out: `false` when another thread claimed
/// it meanwhile (what was copied may be partly that thread's: dropped; the claim counted it).
/// A release that races such a claim can free the other thread's call: its exit then finds no
/// call and writes nothing; that loss was counted by the claim too.
#[inline(always)]
fn release(slot: *mut SockSlot, tid: u32) -> bool {
    // SAFETY: as in `claim`.
    unsafe {
        if read_volatile(&raw const (*slot).tid) != tid {
            return false;
        }
        write_volatile(&raw mut (*slot).tid, 0);
    }
    true
}

#[tracepoint]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    // socket(family, type, protocol)
    let family: u64 = sys_arg(&ctx, 0);
    if family != u64::from(AF_INET) && family != u64::from(AF_INET6) {
        return 0;
    }
    let kind = match sys_arg::<u64>(&ctx, 1) & 0xf {
        1 => SOCK_TYPE_STREAM,
        2 => SOCK_TYPE_DGRAM,
        _ => return 0,
    };
    let (tgid, tid) = current();
    if is_self(tgid) {
        return 0;
    }
    if let Some(slot) = claim(tid, SOCK_SLOT_SOCKET) {
        // SAFETY: as in `claim`.
        unsafe { write_volatile(&raw mut (*slot).ev.sock_type, kind) };
    }
    0
}

#[tracepoint]
pub fn sys_exit_socket(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    let Some(slot) = held(tid, SOCK_SLOT_SOCKET) else {
        return 0;
    };
    // SAFETY: as in `claim`.
    let kind = unsafe { read_volatile(&raw const (*slot).ev.sock_type) };
    if !release(slot, tid) {
        return 0;
    }
    let fd: i64 = sys_arg(&ctx, 0);
    if fd >= 0 {
        let key = fd_key(tgid, fd as i32);
        // Descriptor numbers are reused lowest first, so a process that opens and closes sockets
        // mostly finds its key here already: written in place, without the LRU map's insert
        // (a node taken from the free list, the old one given back).
        match SOCK_TYPES.get_ptr_mut(key) {
            // SAFETY: a plain u16 of a map value.
            Some(p) => unsafe {
                if *p != kind {
                    *p = kind;
                }
            },
            None => {
                let _ = SOCK_TYPES.insert(key, kind, 0);
            }
        }
        // A new socket under a reused fd number: what was known of the old one is void.
        forget(&CONN_PEERS, key);
        forget(&SOCK_BODY, key);
        forget(&DNS_SOCKS, key);
    }
    0
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    // connect(fd, uservaddr, addrlen)
    let (tgid, tid) = current();
    if is_self(tgid) {
        return 0;
    }
    let Some(remote) = read_sockaddr(sys_arg(&ctx, 1)) else {
        return 0;
    };
    let fd = sys_arg::<i64>(&ctx, 0) as i32;
    // SAFETY: plain integer value, copied out at once.
    let sock_type = unsafe { SOCK_TYPES.get(fd_key(tgid, fd)).copied() };
    let sock_type = sock_type.unwrap_or(SOCK_TYPE_UNKNOWN);
    sock_enter(EventKind::Connect, (tgid, tid), remote, fd, sock_type);
    0
}

/// Keeps a connect or accept record in this thread's slot until the syscall's exit completes it.
#[inline(always)]
fn sock_enter(kind: EventKind, (tgid, tid): (u32, u32), remote: SockAddr, fd: i32, sock_type: u16) {
    let ev = SockEvent {
        header: header_of::<SockEvent>(kind, tgid, tid),
        end_ns: 0,
        remote,
        local: SockAddr::default(),
        fd,
        ret: 0,
        sock_type,
        _pad: [0; 6],
    };
    if let Some(slot) = claim(tid, kind as u32) {
        // SAFETY: as in `claim`.
        unsafe { write_volatile(&raw mut (*slot).ev, ev) };
    }
}

/// Writes the record this thread's call completed in its slot to the ring, as `util::output`
/// does (shed under overload, wake-ups by `wake_bytes`, a full ring counted), and frees the slot.
/// The record is copied into its reservation before the slot is released: a slot another thread
/// claimed meanwhile discards it.
#[inline(always)]
fn emit(slot: *mut SockSlot, tid: u32, kind: EventKind) {
    let cfg = config();
    let avail = ring_unread();
    if let Some(cfg) = cfg
        && shed_at(cfg, kind as usize, avail)
    {
        release(slot, tid);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count(counter::RING_FULL);
        release(slot, tid);
        return;
    };
    // SAFETY: the reservation is a `SockEvent`'s worth of ring memory, ours until submitted or
    // discarded; the slot is an array map value (plain integers and bytes).
    unsafe { *entry.as_mut_ptr() = (*slot).ev };
    if !release(slot, tid) {
        entry.discard(BPF_RB_NO_WAKEUP);
        return;
    }
    let size = core::mem::size_of::<SockEvent>() as u64;
    entry.submit(cfg.map_or(0, |cfg| wake_flags(cfg, avail, size)));
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    let Some(slot) = held(tid, EventKind::Connect as u32) else {
        return 0;
    };
    // SAFETY: the slot holds this thread's call (see `claim`); only this thread writes it.
    let ev = unsafe { &mut (*slot).ev };
    ev.end_ns = now();
    ev.ret = sys_arg::<i64>(&ctx, 0) as i32;
    // SAFETY: as above.
    let sk = unsafe { (*slot).sk };
    if ev.local.family != 0 && sk != 0 {
        // SAFETY: a fault-checked read of two bytes of the socket this thread is connecting.
        ev.local.port =
            unsafe { bpf_probe_read_kernel((sk + SKC_NUM_OFFSET) as *const u16) }.unwrap_or(0);
    }
    let key = fd_key(tgid, ev.fd);
    // SAFETY: plain byte value, read and dropped at once.
    if ev.ret == 0
        && ev.sock_type == SOCK_TYPE_DGRAM
        && unsafe { DNS_PORTS.get(ev.remote.port).is_some() }
    {
        let _ = DNS_SOCKS.insert(key, ev.remote, 0);
    } else if ev.sock_type != SOCK_TYPE_STREAM {
        // A stream socket was created while runbom runs, and its `socket()` exit cleared what
        // an earlier socket under the same fd number left here; others may have left it.
        forget(&DNS_SOCKS, key);
    }
    // Non-blocking connects return EINPROGRESS (-115); the peer is known either way.
    if (ev.ret == 0 || ev.ret == -115) && ev.sock_type != SOCK_TYPE_DGRAM {
        let _ = CONN_PEERS.insert(key, ev.remote, 0);
    }
    emit(slot, tid, EventKind::Connect);
    0
}

/// `sock:inet_sock_set_state`: `skaddr` at 8, `oldstate` 16, `newstate` 20, `family` 28,
/// `protocol` 30, `saddr` 32, `saddr_v6` 40. Fires on every TCP state change of the machine,
/// mostly in softirq: anything but `TCP_CLOSE → TCP_SYN_SENT` returns after two context reads,
/// and that transition happens only inside `connect()`, in the connecting thread.
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if field::<i32>(&ctx, 16) != TCP_CLOSE || field::<i32>(&ctx, 20) != TCP_SYN_SENT {
        return 0;
    }
    if field::<u16>(&ctx, 30) != IPPROTO_TCP {
        return 0;
    }
    let (_, tid) = current();
    let Some(slot) = held(tid, EventKind::Connect as u32) else {
        return 0;
    };
    let v4: [u8; 4] = field(&ctx, 32);
    let v6: [u8; 16] = field(&ctx, 40);
    let mut local = SockAddr::default();
    // A dual-stack socket connecting to an IPv4 peer has no IPv6 source yet: its IPv4 one is it.
    if field::<u16>(&ctx, 28) == AF_INET6 && v6 != [0; 16] {
        local.family = AF_INET6;
        local.addr = v6;
    } else {
        local.family = AF_INET;
        local.addr[..4].copy_from_slice(&v4);
    }
    // SAFETY: as in `claim`; only this thread writes its call's fields.
    unsafe {
        write_volatile(&raw mut (*slot).ev.local, local);
        // Only TCP reaches SYN_SENT: a socket created before runbom started is now known.
        if read_volatile(&raw const (*slot).ev.sock_type) == SOCK_TYPE_UNKNOWN {
            write_volatile(&raw mut (*slot).ev.sock_type, SOCK_TYPE_STREAM);
        }
        write_volatile(&raw mut (*slot).sk, field::<u64>(&ctx, 8));
    }
    0
}

tracepoints!(accept_enter: sys_enter_accept, sys_enter_accept4);

/// accept[4](fd, upeer_sockaddr, upeer_addrlen[, flags]): the peer address is written by the
/// kernel, so its user pointer is kept (in `remote.addr`) until the exit reads it.
#[inline(always)]
fn accept_enter(ctx: &TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if is_self(tgid) {
        return 0;
    }
    let peer: u64 = sys_arg(ctx, 1);
    let mut remote = SockAddr::default();
    remote.addr[..8].copy_from_slice(&peer.to_ne_bytes());
    sock_enter(EventKind::Accept, (tgid, tid), remote, 0, SOCK_TYPE_STREAM);
    0
}

tracepoints!(accept_exit: sys_exit_accept, sys_exit_accept4);

#[inline(always)]
fn accept_exit(ctx: &TracePointContext) -> u32 {
    let (_, tid) = current();
    let Some(slot) = held(tid, EventKind::Accept as u32) else {
        return 0;
    };
    let ret = sys_arg::<i64>(ctx, 0) as i32;
    // Failed accepts (EAGAIN on a non-blocking listener) are noise, not events.
    if ret < 0 {
        release(slot, tid);
        return 0;
    }
    // SAFETY: the slot holds this thread's call (see `claim`); only this thread writes it.
    let ev = unsafe { &mut (*slot).ev };
    let mut ptr = [0u8; 8];
    ptr.copy_from_slice(&ev.remote.addr[..8]);
    ev.remote = read_sockaddr(u64::from_ne_bytes(ptr) as *const u8).unwrap_or_default();
    ev.end_ns = now();
    ev.ret = ret;
    ev.fd = ret;
    emit(slot, tid, EventKind::Accept);
    0
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    // sendto(fd, buff, len, flags, addr, addr_len)
    let fd = sys_arg::<i64>(&ctx, 0) as i32;
    dns_send(fd, sys_arg(&ctx, 4), sys_arg(&ctx, 1), sys_arg(&ctx, 2)).unwrap_or(1)
}

// sendmsg(fd, msg, flags) and sendmmsg(fd, mmsg, vlen, flags): for sendmmsg the first message
// holds the question (the resolver sends A and AAAA for the same name together).
tracepoints!(dns_msghdr: sys_enter_sendmsg, sys_enter_sendmmsg);

#[inline(always)]
fn dns_msghdr(ctx: &TracePointContext) -> u32 {
    let fd = sys_arg::<i64>(ctx, 0) as i32;
    let Some((addr, buf, len)) = msghdr_first(sys_arg(ctx, 1)) else {
        return 1;
    };
    dns_send(fd, addr, buf, len).unwrap_or(1)
}

/// A DNS datagram to `addr`, or (null) on a socket connected to a DNS server; also called by
/// `http` for `write`/`writev` on such a socket.
#[inline(always)]
pub fn dns_send(fd: i32, addr: *const u8, buf: *const u8, len: u64) -> Option<u32> {
    let (tgid, tid) = current();
    let server = match read_sockaddr(addr) {
        // SAFETY: plain byte value, read and dropped at once.
        Some(a) if unsafe { DNS_PORTS.get(a.port).is_some() } => a,
        Some(_) => return Some(0),
        // SAFETY: plain value, copied out at once.
        None => unsafe { DNS_SOCKS.get(fd_key(tgid, fd)).copied()? },
    };
    if is_self(tgid) || len == 0 {
        return Some(0);
    }
    // SAFETY: per-CPU scratch, exclusively ours for the duration of this program.
    let ev = unsafe { scratch(&DNS_SCRATCH) }?;
    let n = if len > DNS_PAYLOAD_MAX as u64 {
        DNS_PAYLOAD_MAX as u32
    } else {
        len as u32
    };
    let n = n & (2 * DNS_PAYLOAD_MAX as u32 - 1);
    if n == 0 || n > DNS_PAYLOAD_MAX as u32 {
        return Some(0);
    }
    // SAFETY: `n <= DNS_PAYLOAD_MAX`, the payload array's size.
    if unsafe { bpf_probe_read_user(ev.payload.as_mut_ptr().cast(), n, buf.cast()) } != 0 {
        return Some(0);
    }
    ev.header = header_of::<DnsEvent>(EventKind::DnsQuery, tgid, tid);
    ev.server = server;
    ev.payload_len = n;
    output(ev);
    Some(0)
}
