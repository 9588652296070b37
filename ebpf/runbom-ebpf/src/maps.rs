//! Every map of the object. Names are the userspace contract (`runbom-kernel` looks them up).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use runbom_common::{
    DnsEvent, ExecBuffer, FileOpenEvent, HttpBuffer, JsonRpcBuffer, OPEN_SLOTS_LEN, PATH_MAX,
    ProbeConfig, SockAddr, SockEvent, counter,
};

/// The one ring buffer every event goes through. Userspace sets its size at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU loss counters, indexed by [`runbom_common::counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Index 0: the [`ProbeConfig`] pushed by userspace.
#[map]
pub static CONFIG: Array<ProbeConfig> = Array::with_max_entries(1, 0);

/// Path prefixes for `file.open`: value [`runbom_common::PREFIX_INCLUDE`] or `PREFIX_EXCLUDE`.
#[map]
pub static FILE_PREFIXES: LpmTrie<[u8; PATH_MAX], u8> = LpmTrie::with_max_entries(1024, 0);

/// Watched process ids (their forks are added as they happen).
#[map]
pub static WATCHED_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// Watched cgroup v2 ids.
#[map]
pub static WATCHED_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// UDP destination ports whose datagrams are DNS queries (53 unless configured).
#[map]
pub static DNS_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(16, 0);

/// `(tgid << 32) | fd` → `SOCK_TYPE_*` for sockets created while runbom runs.
#[map]
pub static SOCK_TYPES: LruHashMap<u64, u16> = LruHashMap::with_max_entries(65536, 0);

/// `(tgid << 32) | fd` → DNS server of a UDP socket connected to a DNS port.
#[map]
pub static DNS_SOCKS: LruHashMap<u64, SockAddr> = LruHashMap::with_max_entries(4096, 0);

/// `(tgid << 32) | fd` → the address a socket connected to (successfully or in progress), for
/// the peer of `http.request`.
#[map]
pub static CONN_PEERS: LruHashMap<u64, SockAddr> = LruHashMap::with_max_entries(65536, 0);

/// `(tgid << 32) | fd` of a socket whose last HTTP write was a request head → when: its next
/// write starting `{` soon after is the body (`http.rs`).
#[map]
pub static SOCK_BODY: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// `[tgid, SSL*]` → what is awaited on that TLS connection (`http.rs`: body, response).
#[map]
pub static SSL_STATE: LruHashMap<[u64; 2], u32> = LruHashMap::with_max_entries(16384, 0);

/// tid → a socket write that starts a request (or its body), between entry and exit (`http.rs`).
#[map]
pub static SOCK_WRITES: LruHashMap<u32, SockWrite> = LruHashMap::with_max_entries(4096, 0);

/// tid → an `SSL_write[_ex]` that starts a request (or its body), between entry and return.
#[map]
pub static SSL_WRITES: LruHashMap<u32, SslWrite> = LruHashMap::with_max_entries(4096, 0);

/// tid → `[SSL*, buf, readbytes*]` of an `SSL_read[_ex]` between entry and return.
#[map]
pub static SSL_READS: LruHashMap<u32, [u64; 3]> = LruHashMap::with_max_entries(4096, 0);

/// tgid → status passed to `exit_group()`.
#[map]
pub static EXIT_CODES: LruHashMap<u32, i32> = LruHashMap::with_max_entries(4096, 0);

/// Slot `tid & (OPEN_SLOTS_LEN - 1)` → `tid` while that thread's open, whose record its entry
/// wrote, has not returned (`file.rs`). An array: the verifier inlines its lookups.
#[map]
pub static OPEN_SLOTS: Array<u32> = Array::with_max_entries(OPEN_SLOTS_LEN, 0);

/// Slot `tid & (SOCK_SLOTS_LEN - 1)` → a `socket`, `connect` or `accept` of thread `tid`
/// between the syscall's entry and exit (`net.rs`). An array: the verifier inlines its lookups,
/// and nothing is allocated or freed per call.
#[map]
pub static SOCK_SLOTS: Array<SockSlot> = Array::with_max_entries(SOCK_SLOTS_LEN, 0);

/// Slots of `SOCK_SLOTS` (a power of two): the kernel's default `pid_max`, so that on a host
/// that keeps it every thread has a slot of its own. Beyond it, two threads whose ids differ by
/// a multiple of it share a slot, and of two of their calls in flight at once one is lost, and
/// counted (`INFLIGHT_FULL`).
pub const SOCK_SLOTS_LEN: u32 = 1 << 15;

/// A socket call in flight, kept in `SOCK_SLOTS` from the syscall's entry to its exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockSlot {
    /// The thread whose call this is; 0 when the slot is free (no thread has id 0).
    pub tid: u32,
    /// `EventKind::Connect`, `EventKind::Accept`, or [`SOCK_SLOT_SOCKET`].
    pub call: u32,
    /// connect: the `struct sock` at its `TCP_SYN_SENT` transition (0 before), whose local port
    /// the exit reads.
    pub sk: u64,
    /// The record being built (socket: only `sock_type`, the requested type; accept:
    /// `remote.addr` holds the user pointer to the peer address until the exit reads it).
    pub ev: SockEvent,
}

/// `SockSlot::call` of a `socket()` call.
pub const SOCK_SLOT_SOCKET: u32 = u32::MAX;

/// Per-CPU scratch space: records too large for the 512-byte BPF stack are built here.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecBuffer> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static OPEN_SCRATCH: PerCpuArray<FileOpenEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static HTTP_SCRATCH: PerCpuArray<HttpBuffer> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static JSONRPC_SCRATCH: PerCpuArray<JsonRpcBuffer> = PerCpuArray::with_max_entries(1, 0);

// Values of the maps above that only the HTTP programs read and write.

/// A socket write that starts a request (or its body), kept from the syscall's entry to its
/// exit in `SOCK_WRITES`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockWrite {
    pub buf: u64,
    pub len: u64,
    /// The call's entry (`CLOCK_BOOTTIME`).
    pub time_ns: u64,
    /// The `struct iovec` array of a `writev`/`sendmsg` (0 otherwise).
    pub iov: u64,
    /// How many buffers that array holds.
    pub iov_len: u64,
    pub peer: SockAddr,
    pub fd: i32,
    pub source: u16,
    pub flags: u16,
    pub _pad: u32,
}

/// An `SSL_write[_ex]` that starts a request (or its body), kept from entry to return in
/// `SSL_WRITES`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslWrite {
    pub ssl: u64,
    pub buf: u64,
    pub len: u64,
    pub time_ns: u64,
    pub source: u16,
    pub _pad: [u16; 3],
}

// HTTP/2 (`h2.rs`).

/// `(tgid << 32) | fd` of a socket that wrote the HTTP/2 client preface: its writes and reads
/// are captured (userspace parses the frames).
#[map]
pub static H2_SOCKS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// `[tgid, SSL*]` of a TLS connection that wrote the HTTP/2 client preface.
#[map]
pub static H2_SSL: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(16384, 0);

/// tid → a read on an HTTP/2 socket between the syscall's entry and exit.
#[map]
pub static H2_READS: LruHashMap<u32, SockWrite> = LruHashMap::with_max_entries(4096, 0);

/// tid → an `SSL_write[_ex]`/`SSL_read[_ex]` on an HTTP/2 `SSL*` between entry and return.
#[map]
pub static H2_SSL_CALLS: LruHashMap<u32, H2SslCall> = LruHashMap::with_max_entries(4096, 0);

/// An OpenSSL call on an HTTP/2 connection, kept from entry to return in `H2_SSL_CALLS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct H2SslCall {
    pub ssl: u64,
    pub buf: u64,
    /// Bytes given (writes) or the buffer's size (reads).
    pub len: u64,
    /// `SSL_read_ex`'s `size_t *readbytes` (0 otherwise).
    pub readbytes: u64,
    pub time_ns: u64,
    pub flags: u16,
    pub _pad: [u16; 3],
}

// Go's crypto/tls (`go.rs`).

/// `[tgid, g]` (the goroutine, R14 in Go's register ABI) → `[*tls.Conn, buf, len]` of a
/// `(*Conn).Write` between its entry and one of its `RET`s.
#[map]
pub static GO_WRITES: LruHashMap<[u64; 2], [u64; 3]> = LruHashMap::with_max_entries(4096, 0);

/// The same for `(*Conn).Read`.
#[map]
pub static GO_READS: LruHashMap<[u64; 2], [u64; 3]> = LruHashMap::with_max_entries(4096, 0);

// Plaintext HTTP/1 responses (`response.rs`).

/// `(tgid << 32) | fd` of a socket that wrote a request head → what its reads are awaited for
/// (the status, or the response's rest within the budget in the upper bits).
#[map]
pub static SOCK_RESPONSE: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// tid → a read on such a socket between the syscall's entry and exit (buffer: the first).
#[map]
pub static SOCK_READS: LruHashMap<u32, SockWrite> = LruHashMap::with_max_entries(4096, 0);

// The path filter's first level (`file.rs`).

/// Index 0: one [`runbom_common`] `HEAD_*` verdict per value of a path's first two bytes, which
/// decides most opens without a lookup in `FILE_PREFIXES` (filled by userspace from the same
/// prefixes; an unfilled entry asks the trie).
#[map]
pub static FILE_HEADS: Array<[u8; runbom_common::PATH_HEADS]> = Array::with_max_entries(1, 0);

/// The rule lists `FILE_HEADS` entries from `HEAD_LIST` on point to.
#[map]
pub static HEAD_RULES: Array<runbom_common::HeadRules> =
    Array::with_max_entries(runbom_common::HEAD_LISTS as u32, 0);

// Which processes `close(2)` looks up (`capture.rs`).

/// Slot `tgid & (MARKING_PROCS_LEN - 1)` → the process id (a u64: the eBPF target's atomics are
/// 64 bits wide) that marked a socket in `H2_SOCKS`
/// or `SOCK_RESPONSE`, [`MARKING_PROCS_SHARED`] once two ids sharing the slot have, 0 while none
/// has. `close` looks in those maps only for a process its slot names, so the closes of every
/// other process cost one inlined array lookup. A slot is claimed atomically and freed when
/// the process it names exits (a shared slot stays shared). With the kernel's default
/// `pid_max` (the slots' number) every id has a slot of its own.
#[map]
pub static MARKING_PROCS: Array<u64> = Array::with_max_entries(MARKING_PROCS_LEN, 0);

/// Slots of `MARKING_PROCS` (a power of two): the kernel's default `pid_max`.
pub const MARKING_PROCS_LEN: u32 = 1 << 15;

/// A `MARKING_PROCS` slot two process ids have marked from: every process of the slot is looked up.
pub const MARKING_PROCS_SHARED: u64 = u64::MAX;
