//! Kernel event records shared by runbom's eBPF programs and its userspace.
//!
//! Every record written to the ring buffer starts with an [`EventHeader`] whose `kind` is an
//! [`EventKind`] (stable numbers: they are the wire format between kernel and userspace) and whose
//! `size` is the length of the whole record. Records with a variable tail ([`ExecEvent`]'s argv)
//! carry the tail's length in the fixed part; the decoder checks both before it reads.
#![no_std]
// Padding fields are public so that records can be built with struct literals on both sides.
#![allow(clippy::pub_underscore_fields)]

#[cfg(feature = "user")]
pub mod decode;

/// Longest path kept for `file.open`, `process.exec` and path-prefix matching. The kernel's
/// LPM trie limits a key to 256 bytes, so prefixes beyond this length cannot be matched anyway.
pub const PATH_MAX: usize = 256;
/// Largest argv budget (bytes, NUL-separated arguments); the configured budget is capped here.
/// A power of two: the kernel masks lengths with `2 * ARGV_MAX - 1`.
pub const ARGV_MAX: usize = 4096;
/// Bytes of a DNS datagram kept: enough for the header and a question of any legal name.
pub const DNS_PAYLOAD_MAX: usize = 512;
/// Most bytes of one captured HTTP write (head, or body start); the configured budget is capped
/// here. A power of two: the kernel masks lengths with `2 * HTTP_DATA_MAX - 1`.
pub const HTTP_DATA_MAX: usize = 16384;
/// Bytes of a TLS read kept: enough for a response's status line.
pub const HTTP_STATUS_BYTES: u32 = 32;

/// Kind of a kernel event. The numbers are stable: they are the ring buffer's wire format.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Connect = 4,
    Accept = 5,
    FileOpen = 6,
    DnsQuery = 7,
    HttpData = 8,
    JsonRpc = 9,
    /// Not an event: the result of a `file.open` whose record its entry wrote
    /// ([`FileOpenResult`], no [`EventHeader`]).
    FileOpenResult = 10,
}

impl EventKind {
    #[must_use]
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Fork,
            3 => Self::Exit,
            4 => Self::Connect,
            5 => Self::Accept,
            6 => Self::FileOpen,
            7 => Self::DnsQuery,
            8 => Self::HttpData,
            9 => Self::JsonRpc,
            10 => Self::FileOpenResult,
            _ => return None,
        })
    }
}

/// First field of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// Length of the whole record in bytes, header included.
    pub size: u32,
    /// Thread-group id (the process id as userspace knows it).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds at the syscall's entry (or the event itself).
    pub time_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
}

/// `process.exec`: a successful exec, seen once the kernel committed it (`sched_process_exec`).
/// The NUL-separated argv (`argv_len` bytes) follows the fixed part directly; `header.size`
/// covers both.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// `CLOCK_BOOTTIME` nanoseconds when the new program image was in place (`header.time_ns`
    /// too: the exec is one instant).
    pub end_ns: u64,
    /// The real user and group ids (a set-user-ID program does not change them).
    pub uid: u32,
    pub gid: u32,
    /// Arguments in the captured argv, a cut last one included. The kernel sends 0; the
    /// decoder counts them.
    pub argc: u32,
    pub argv_len: u32,
    pub filename_len: u32,
    /// `EXEC_ARGV_TRUNCATED` when the budget cut argv short (or it could not be read).
    pub flags: u32,
    pub filename: [u8; PATH_MAX],
}

pub const EXEC_ARGV_TRUNCATED: u32 = 1;

/// Fixed part of an exec record followed by room for the largest argv: the kernel builds the
/// record here before it writes the used prefix to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecBuffer {
    pub event: ExecEvent,
    pub argv: [u8; ARGV_MAX],
}

/// A new process (not a thread): `header.pid` is the parent, `child_pid` the child.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
}

/// `process.exit`: the last thread of a process ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// The status passed to `exit_group`, when one was seen.
    pub exit_code: i32,
    /// 1 when `exit_code` is known (the process called `exit_group`), 0 when it was killed.
    pub exit_code_known: u32,
}

/// Socket type as the kernel event records it (`SOCK_STREAM`, `SOCK_DGRAM`); 0 when unknown.
pub const SOCK_TYPE_UNKNOWN: u16 = 0;
pub const SOCK_TYPE_STREAM: u16 = 1;
pub const SOCK_TYPE_DGRAM: u16 = 2;

/// An IPv4 or IPv6 socket address as read from a `struct sockaddr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddr {
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Port in host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes, or the IPv6 address; network byte order.
    pub addr: [u8; 16],
}

/// `net.connect` (from `connect(2)`) and `net.accept` (from `accept(2)`/`accept4(2)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEvent {
    pub header: EventHeader,
    pub end_ns: u64,
    /// Remote address: the destination of a connect, the peer of an accept.
    pub remote: SockAddr,
    /// Local end of a TCP connect (`family` 0 when unknown: UDP, or a socket that was already
    /// connecting); `port` 0 when the kernel had not bound one (a failed connect).
    pub local: SockAddr,
    /// The socket's file descriptor (for accept: the new one).
    pub fd: i32,
    /// The syscall's return value (`-errno` on failure).
    pub ret: i32,
    /// One of the `SOCK_TYPE_*` constants.
    pub sock_type: u16,
    pub _pad: [u8; 6],
}

/// `file.open`: an open/openat/openat2 whose path passed the in-kernel filter. The syscall's
/// entry writes it with `end_ns` and `ret` 0; its exit writes a [`FileOpenResult`] for the same
/// thread, which userspace joins into it (`end_ns` 0 and `ret` [`OPEN_RESULT_UNKNOWN`] when the
/// result was lost).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    pub end_ns: u64,
    /// The `O_*` flags passed to the call.
    pub flags: u32,
    /// The syscall's return value: the new fd, or `-errno`.
    pub ret: i32,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_MAX],
}

/// `FileOpenEvent::ret` of an open whose result record was lost (joined in userspace; the
/// kernel never writes it).
pub const OPEN_RESULT_UNKNOWN: i32 = i32::MIN;

/// The result of an open, written by the syscall's exit only when this thread's entry wrote a
/// [`FileOpenEvent`] (`OPEN_SLOTS` in the eBPF crate): 24 bytes, no [`EventHeader`] — the
/// thread's open record carries the rest. `kind` is [`EventKind::FileOpenResult`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOpenResult {
    pub kind: u32,
    pub tid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds at the syscall's exit.
    pub end_ns: u64,
    /// The syscall's return value: the new fd, or `-errno`.
    pub ret: i32,
    pub _pad: u32,
}

/// Slots of the eBPF crate's `OPEN_SLOTS` array (a power of two): the exit of thread `tid`
/// writes a result only when slot `tid & (OPEN_SLOTS_LEN - 1)` holds `tid`, which its entry
/// put there. Two threads that share a slot and open at the same time lose one result, which
/// userspace reports (never silently).
pub const OPEN_SLOTS_LEN: u32 = 1 << 14;

/// `dns.query`: the start of a UDP datagram sent to a watched DNS port.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    pub header: EventHeader,
    pub server: SockAddr,
    /// Bytes of `payload` that hold the datagram (at most [`DNS_PAYLOAD_MAX`]).
    pub payload_len: u32,
    pub _pad: u32,
    pub payload: [u8; DNS_PAYLOAD_MAX],
}

/// Where an [`HttpEvent`]'s bytes come from (`HttpEvent::source`).
pub mod http_source {
    /// The start of a plaintext socket write (`write`, `writev`, `sendto`, `sendmsg`) that
    /// begins with an HTTP method.
    pub const SOCKET_WRITE: u16 = 1;
    /// The plaintext of `SSL_write`/`SSL_write_ex` that begins with an HTTP method.
    pub const SSL_WRITE: u16 = 2;
    /// The next `SSL_write` on the same `SSL*` after a request head: the body's start.
    pub const SSL_BODY: u16 = 3;
    /// What `SSL_read`/`SSL_read_ex` returned after a request, starting with `HTTP/`.
    pub const SSL_READ: u16 = 4;
    /// The first socket write starting `{` after a plaintext request head: the body's start.
    pub const SOCKET_BODY: u16 = 5;
    /// Bytes a plaintext HTTP/2 connection wrote (the client preface, then frames): one record
    /// per buffer of the call, in order; `data_len` 0 with `total_len` > 0 is a gap (buffers
    /// past the capture bound).
    pub const H2_SOCKET_WRITE: u16 = 6;
    /// Bytes a plaintext HTTP/2 connection read, recorded as [`H2_SOCKET_WRITE`] is.
    pub const H2_SOCKET_READ: u16 = 7;
    /// Plaintext of `SSL_write[_ex]` on an `SSL*` that wrote the HTTP/2 client preface.
    pub const H2_SSL_WRITE: u16 = 8;
    /// Plaintext `SSL_read[_ex]` returned on such an `SSL*`.
    pub const H2_SSL_READ: u16 = 9;
    /// A write kept for a `jsonrpc.message` record ([`super::JsonRpcEvent`]), never an HTTP
    /// record: only the kernel side's in-flight state uses it.
    pub const JSONRPC: u16 = 10;
    /// What a later `SSL_read`/`SSL_read_ex` returned of the same response (its body), within
    /// `ProbeConfig::http_response_max`.
    pub const SSL_RESPONSE: u16 = 11;
    /// What a read on a plaintext socket returned after a request head was written on it,
    /// starting with `HTTP/` (the status line first), within `ProbeConfig::http_response_max`.
    pub const SOCKET_READ: u16 = 12;
    /// What the later reads of that socket returned of the same response (its body).
    pub const SOCKET_RESPONSE: u16 = 13;
}

/// `HttpEvent::flags`: the fd is a socket the kernel side saw created (else: not known).
pub const HTTP_FD_IS_SOCKET: u16 = 1;
/// `HttpEvent::flags`: `peer` holds the address the socket connected to.
pub const HTTP_PEER_KNOWN: u16 = 2;
/// `HttpEvent::flags`: the bytes start with the HTTP/2 client preface (`PRI * HTTP/2.0`).
pub const HTTP_H2_PREFACE: u16 = 4;
/// `HttpEvent::flags`: the bytes went through Go's `crypto/tls` (`ssl` is the `*tls.Conn`).
pub const HTTP_GO_TLS: u16 = 8;

/// `http.request` material: the first bytes of a write (or TLS read) as captured; userspace
/// parses, pairs and redacts them. `data_len` bytes follow the fixed part directly;
/// `header.size` covers both. `header.time_ns` is the call's entry (for reads: its return).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpEvent {
    pub header: EventHeader,
    /// The `SSL*` the bytes went through (0 for socket captures).
    pub ssl: u64,
    /// Bytes the call was given (writes) or returned (reads); `data_len` may be less.
    pub total_len: u64,
    /// The connected peer when `flags` has [`HTTP_PEER_KNOWN`].
    pub peer: SockAddr,
    /// The socket's file descriptor (-1 for TLS captures: a memory BIO has none).
    pub fd: i32,
    /// One of the [`http_source`] constants.
    pub source: u16,
    /// Bit set of `HTTP_FD_IS_SOCKET`, `HTTP_PEER_KNOWN`.
    pub flags: u16,
    pub data_len: u32,
}

/// Fixed part of an HTTP record followed by room for the largest capture: built here (per-CPU
/// scratch) before the used prefix is written to the ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpBuffer {
    pub event: HttpEvent,
    pub data: [u8; HTTP_DATA_MAX],
}

/// Most bytes of one captured JSON-RPC message (MCP over stdio or a socket): a `tools/list`
/// result of a server with a dozen tools fits. A power of two, as [`HTTP_DATA_MAX`].
pub const JSONRPC_DATA_MAX: usize = 16384;

/// `JsonRpcEvent::flags`: the fd is a socket the kernel side saw created (else: a pipe, a
/// socket created before runbom started, or a file; userspace looks).
pub const JSONRPC_FD_IS_SOCKET: u16 = 1;

/// `jsonrpc.message`: the start of a write (`write`, `writev`'s first buffer, `sendto`,
/// `sendmsg`) that begins `{` and names `"jsonrpc"` within its first or last
/// [`JSONRPC_WINDOW`] bytes: one JSON-RPC 2.0 message, as MCP's stdio transport writes them
/// (newline-delimited). `data_len` bytes follow the fixed part directly; `header.size` covers
/// both. `header.time_ns` is the call's entry; the record is written only when the call wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonRpcEvent {
    pub header: EventHeader,
    /// Bytes the call was given; `data_len` may be less.
    pub total_len: u64,
    /// The file descriptor written to (a pipe or a socket).
    pub fd: i32,
    /// Bit set of [`JSONRPC_FD_IS_SOCKET`].
    pub flags: u16,
    pub _pad: u16,
    pub data_len: u32,
    pub _pad2: u32,
    /// The write's last [`JSONRPC_WINDOW`] bytes when `data_len` did not reach them (the
    /// TypeScript SDK writes `"jsonrpc"` and `"id"` last); zeros otherwise.
    pub tail: [u8; JSONRPC_WINDOW],
}

/// Bytes at each end of a write searched for `"jsonrpc"`: the Python SDK writes the key first,
/// the TypeScript SDK last (before a short `id`).
pub const JSONRPC_WINDOW: usize = 64;

/// Fixed part of a JSON-RPC record followed by room for the largest capture (per-CPU scratch).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct JsonRpcBuffer {
    pub event: JsonRpcEvent,
    pub data: [u8; JSONRPC_DATA_MAX],
}

/// Settings pushed from userspace into the `CONFIG` array map (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Bytes of argv to capture per exec (capped at [`ARGV_MAX`]).
    pub argv_max: u32,
    /// runbom's own pid: its events are never reported.
    pub self_pid: u32,
    /// Bit set of `FILTER_*` flags.
    pub file_filter: u32,
    /// Bytes captured of a write that starts an HTTP request (capped at [`HTTP_DATA_MAX`]).
    pub http_max: u32,
    /// Non-zero: writes that carry a JSON-RPC message are captured (`jsonrpc.message`).
    pub jsonrpc: u32,
    /// Bytes captured of a TLS response, status line first (0: the status line only; capped
    /// at [`HTTP_RESPONSE_MAX`]). Each read contributes at most [`HTTP_DATA_MAX`].
    pub http_response_max: u32,
    /// Records go to the ring without waking the reader (it drains on a short timer), except
    /// the one whose bytes cross a multiple of this many unread bytes (a power of two): that one
    /// wakes it at once. 0: every record wakes a reader that had caught up (the kernel's default).
    pub wake_bytes: u32,
    /// Overload shedding: records of [`EventKind`] `k` are dropped (and counted in
    /// `counter::SHED + k`) while the ring holds at least `shed_at[k]` unread bytes; slot
    /// [`SHED_FILE_LOW_VALUE`] is for `file.open` under a low-value prefix. 0: never shed.
    pub shed_at: [u32; SHED_SLOTS],
    /// Unread bytes from which an open's path is classified in per-CPU scratch instead of in a
    /// ring reservation: a discarded reservation keeps its room until the reader passes it, so
    /// excluded opens must not reserve in a filling ring (the lower of the opens' shedding
    /// levels, and at most half the ring even when shedding is off).
    pub open_scratch_at: u32,
    /// Byte offsets of `task_struct.mm`, `mm_struct.arg_start` and `mm_struct.arg_end` in the
    /// running kernel (from its BTF): where `process.exec` reads the new image's argv.
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
}

/// Slots of [`ProbeConfig::shed_at`] and of the shed counters: one per [`EventKind`] number,
/// and slot 0 (no kind has it) for [`SHED_FILE_LOW_VALUE`].
pub const SHED_SLOTS: usize = 16;
/// The shedding slot of `file.open` under a prefix configured as low-value
/// ([`PREFIX_LOW_VALUE`]): shed before other opens.
pub const SHED_FILE_LOW_VALUE: usize = 0;

/// The largest response budget: the kernel keeps what is left of it in 24 bits.
pub const HTTP_RESPONSE_MAX: u32 = (1 << 24) - 1;

/// `file.open` is reported only for watched pids (and their descendants) or watched cgroups.
pub const FILTER_BY_WORKLOAD: u32 = 1;

/// Key of the path-prefix LPM trie: `prefix_len` is in bits, `data` holds the path bytes.
/// The value is 1 for an included prefix and 0 for an excluded one; the longest match wins.
pub const PREFIX_INCLUDE: u8 = 1;
pub const PREFIX_EXCLUDE: u8 = 0;
/// An included prefix whose opens are shed first under overload ([`SHED_FILE_LOW_VALUE`]).
pub const PREFIX_LOW_VALUE: u8 = 2;

/// Entries of the eBPF crate's `FILE_HEADS` table, one per value of a path's first two bytes
/// (`path[0] << 8 | path[1]`): the verdict of the path-prefix trie for every path of two or
/// more bytes that starts with them, when those two bytes decide it (no prefix of three or more
/// bytes starts with them), so that most opens are classified without the trie lookup.
/// Userspace computes it from the same prefixes as the trie (`runbom-kernel`'s `filter`).
pub const PATH_HEADS: usize = 1 << 16;
/// A `FILE_HEADS` entry: the trie decides (also what an unfilled table holds).
pub const HEAD_ASK_TRIE: u8 = 0;
/// A `FILE_HEADS` entry: not reported (no prefix matches, or the longest is an exclude).
pub const HEAD_EXCLUDE: u8 = 1;
/// A `FILE_HEADS` entry: reported ([`PREFIX_INCLUDE`]).
pub const HEAD_INCLUDE: u8 = 2;
/// A `FILE_HEADS` entry: reported, shed first ([`PREFIX_LOW_VALUE`]).
pub const HEAD_LOW_VALUE: u8 = 3;
/// `FILE_HEADS` entries from this value on: the path is compared with the rules of list
/// `entry - HEAD_LIST` of `HEAD_RULES` ([`HeadRules`]), the few longer prefixes that start with
/// the same two bytes, instead of being looked up in the trie.
pub const HEAD_LIST: u8 = 4;
/// Entries of `HEAD_RULES`.
pub const HEAD_LISTS: usize = 256 - HEAD_LIST as usize;
/// Most rules in one list (a head with more asks the trie).
pub const HEAD_RULES_MAX: usize = 4;
/// Longest rule in a list, in 8-byte words (a head with a longer one asks the trie).
pub const HEAD_RULE_WORDS: usize = 8;

/// One prefix of a [`HeadRules`] list: its `len` bytes as little-endian words (the bytes past
/// `len` zero), and its verdict (`HEAD_EXCLUDE`, `HEAD_INCLUDE` or `HEAD_LOW_VALUE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadRule {
    pub len: u32,
    pub class: u32,
    pub words: [u64; HEAD_RULE_WORDS],
}

/// The prefixes of three or more bytes that start with one value of a path's first two bytes,
/// longest first: the first that the path starts with decides; `default` (a `HEAD_*` verdict:
/// the shorter prefixes') when none does. `count` rules are set; the kernel stops at the first
/// of length 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadRules {
    pub count: u32,
    pub default: u32,
    pub rules: [HeadRule; HEAD_RULES_MAX],
}

impl HeadRules {
    /// The `HEAD_*` verdict for a path of `len` bytes whose 8-byte word `w` (little-endian) is
    /// `word(w)`: the first (longest) rule the path starts with, else `default`. Word by word,
    /// the last word masked to the rule's length, so bytes past `len` never count. The kernel
    /// runs exactly this; userspace tests hold it to the trie.
    // Inlined into the eBPF programs like every other step of theirs (`util.rs`).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn verdict(&self, len: u32, word: impl Fn(usize) -> u64) -> u32 {
        for r in &self.rules {
            if r.len == 0 {
                break;
            }
            if r.len > len {
                continue;
            }
            let mut matched = true;
            for (w, want) in r.words.iter().enumerate() {
                let start = (w * 8) as u32;
                if start >= r.len {
                    break;
                }
                let rest = r.len - start;
                let mask = if rest >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (rest * 8)) - 1
                };
                if word(w) & mask != *want {
                    matched = false;
                    break;
                }
            }
            if matched {
                return r.class;
            }
        }
        self.default
    }
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const RING_FULL: u32 = 0;
    /// Events lost because an in-flight map (syscall entry → exit) was full, or a socket call's
    /// per-thread slot was taken by another thread's call (`SOCK_SLOTS` in the eBPF crate).
    pub const INFLIGHT_FULL: u32 = 1;
    /// First of [`super::SHED_SLOTS`] counters of records shed under overload, by shedding
    /// slot (`SHED + kind`, `SHED + SHED_FILE_LOW_VALUE`).
    pub const SHED: u32 = 2;
    /// Opens classified in per-CPU scratch rather than in a ring reservation (the ring was as
    /// full as `ProbeConfig::open_scratch_at`, or the reservation failed): not a loss, the
    /// pressure path's count.
    pub const OPEN_SCRATCH: u32 = SHED + super::SHED_SLOTS as u32;
    /// Number of counters.
    pub const COUNT: u32 = OPEN_SCRATCH + 1;
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        DnsEvent, EventHeader, ExecEvent, ExitEvent, FileOpenEvent, FileOpenResult, ForkEvent,
        HttpEvent, JsonRpcEvent, ProbeConfig, SockEvent,
    };
    // SAFETY: all of these are `repr(C)`, made only of integers and byte arrays, and have no
    // padding that the compiler could leave uninitialised (explicit `_pad` fields fill it).
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for ExecEvent {}
    unsafe impl aya::Pod for ForkEvent {}
    unsafe impl aya::Pod for ExitEvent {}
    unsafe impl aya::Pod for SockEvent {}
    unsafe impl aya::Pod for FileOpenEvent {}
    unsafe impl aya::Pod for FileOpenResult {}
    unsafe impl aya::Pod for DnsEvent {}
    unsafe impl aya::Pod for HttpEvent {}
    unsafe impl aya::Pod for JsonRpcEvent {}
    unsafe impl aya::Pod for ProbeConfig {}
    unsafe impl aya::Pod for super::HeadRules {}
}
