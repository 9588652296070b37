//! Who sent a request: the local process at the other end of an OTLP connection.
//!
//! Correlation matches an application's spans with the kernel events of its process, so every
//! resource that arrives without `process.pid` gets the pid of the process that owns the
//! client end of the connection — found in `/proc/net/tcp{,6}` (the socket's inode) and then
//! in `/proc/*/fd` (who holds that inode). A client in another network namespace (a pod, when
//! runbom runs on the host's network or in a pod of its own) has its socket in that
//! namespace's table only: when runbom's own tables do not have it, the tables of every other
//! namespace are read (`/proc/PID/net/tcp{,6}` of one process per namespace). Agents need no configuration for it. A
//! `process.pid` the client sends is checked against that owner (contract §6): when they
//! disagree the owner's pid replaces it, the client's value is kept as
//! `received.process.pid`, and `runbom_receiver_pid_mismatch_total` counts it — otherwise any
//! local user could claim another user's process and have its kernel events placed under a
//! forged trace. When no owner is found (a remote client) the client's pid stays. The owner's
//! `container.id` is read from its cgroup at the same time and replaces the client's in the same
//! way: pod attributes are found by it once the process is gone.
//!
//! Lookups scan `/proc`, so answers are cached per connection ([`Peer`]) for [`TTL`]: the
//! requests of one connection pay one lookup. Never per client address: once a connection
//! closes, its address (the client's port) is free for any other socket, another process's or
//! one bound to it on purpose, and an answer cached by address would give that socket the first
//! one's pid. Remote (non-local) clients are never found and cost one read of the TCP tables
//! per connection and [`NEGATIVE_TTL`].

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};
use runbom_event::{
    cgroup::CgroupRef,
    semconv::{CONTAINER_ID, PROCESS_PID, RECEIVED_PREFIX},
};
use runbom_otlp::signal::Signal;

/// How long a found pid is trusted for a client address.
const TTL: Duration = Duration::from_secs(30);
/// How long "no local process" is trusted.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// Cached connections at most (old entries are dropped first when full).
const MAX_ENTRIES: usize = 4096;

/// Who sent a request, as far as runbom can tell from the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The local process that owns the connection.
    Process(u32),
    /// A local connection whose owner runbom may not read (another user's process, as beside an
    /// unprivileged sidecar): on this machine, not verified.
    Local,
    /// No local socket is this connection's: a remote client.
    Remote,
}

impl Sender {
    fn pid(self) -> Option<u32> {
        match self {
            Self::Process(pid) => Some(pid),
            Self::Local | Self::Remote => None,
        }
    }
}

/// One connection of an OTLP server, as its requests name it: the client's address, the
/// server's, and a number no other connection of this process had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub client: SocketAddr,
    pub server: Option<SocketAddr>,
    pub connection: u64,
}

impl Peer {
    /// A connection accepted just now, numbered after every earlier one.
    #[must_use]
    pub fn accepted(client: SocketAddr, server: Option<SocketAddr>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            client: canonical(client),
            server: server.map(canonical),
            connection: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The client's address, as logs name a connection.
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

/// Who sent on a connection, and the container its cgroup named when it was looked up (while
/// it was connected: a sender that exits right after its export keeps its container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub sender: Sender,
    pub container: Option<Arc<str>>,
}

/// Finds and caches the pid behind each connection.
#[derive(Default)]
pub struct SenderPids {
    cache: Mutex<HashMap<u64, (Owner, Instant)>>,
    /// Resources whose `process.pid` disagreed with the socket's owner (and was replaced).
    mismatches: AtomicU64,
}

impl SenderPids {
    /// Resources whose client-supplied `process.pid` was not the socket owner's.
    #[must_use]
    pub fn mismatches(&self) -> u64 {
        self.mismatches.load(Ordering::Relaxed)
    }

    /// The pid of the local process whose socket is the client end of `peer`. Blocking: reads
    /// `/proc` unless the answer is cached.
    pub fn lookup(&self, peer: Peer) -> Option<u32> {
        self.sender(peer).pid()
    }

    /// Who the client of `peer` is: its owning process, a local socket runbom cannot
    /// attribute, or remote. Blocking, as [`Self::lookup`].
    pub fn sender(&self, peer: Peer) -> Sender {
        self.owner(peer).sender
    }

    /// [`Self::sender`] and the owning process's container. Blocking, as [`Self::lookup`].
    pub(crate) fn owner(&self, peer: Peer) -> Owner {
        if let Some(owner) = self.cached(peer) {
            return owner;
        }
        let sender = match socket_inode(peer.client, peer.server) {
            None => Sender::Remote,
            Some(inode) => owner_of_inode(inode).map_or(Sender::Local, Sender::Process),
        };
        let container = sender.pid().and_then(container_of);
        let owner = Owner { sender, container };
        let now = Instant::now();
        let Ok(mut cache) = self.cache.lock() else {
            return owner;
        };
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(peer.connection, (owner.clone(), now));
        owner
    }

    /// The cached answer for `peer` while it is fresh; `None`: look it up.
    fn cached(&self, peer: Peer) -> Option<Owner> {
        let cache = self.cache.lock().ok()?;
        let (owner, at) = cache.get(&peer.connection)?;
        let ttl = if owner.sender.pid().is_some() {
            TTL
        } else {
            NEGATIVE_TTL
        };
        (at.elapsed() < ttl).then(|| owner.clone())
    }
}

/// The container `/proc/PID/cgroup` names, if any.
fn container_of(pid: u32) -> Option<Arc<str>> {
    let found = CgroupRef::of_process(std::path::Path::new("/proc"), pid).ok()??;
    found.container_id.map(Arc::from)
}

/// Sets the sending process's `process.pid` and `container.id` on every resource of `signal`:
/// added where there is none, replaced where the client's disagrees with the socket's owner
/// (the client's kept under `received.`, a pid mismatch counted). Reads `/proc` off the async
/// threads when the connection is not cached. Returns who the sender is.
pub async fn attribute(senders: &Arc<SenderPids>, signal: &mut Signal, peer: Peer) -> Sender {
    let owner = if let Some(owner) = senders.cached(peer) {
        owner
    } else {
        let senders = senders.clone();
        tokio::task::spawn_blocking(move || senders.owner(peer))
            .await
            .unwrap_or(Owner {
                sender: Sender::Remote,
                container: None,
            })
    };
    if let Sender::Process(pid) = owner.sender {
        let replaced = annotate(signal, pid, owner.container.as_deref());
        if replaced > 0 {
            senders.mismatches.fetch_add(replaced, Ordering::Relaxed);
        }
    }
    owner.sender
}

/// For a remote sender (no local socket is its connection's): the process identity it claims
/// (`process.pid`, `container.id`) names nothing runbom verified, so it moves under
/// `received.` and no processor places kernel events or pod attributes by it.
pub fn unverified(signal: &mut Signal) {
    for resource in resources(signal).flatten() {
        for kv in &mut resource.attributes {
            if kv.key == PROCESS_PID || kv.key == CONTAINER_ID {
                kv.key = format!("{RECEIVED_PREFIX}{}", kv.key);
            }
        }
    }
}

pub(crate) fn resources(
    signal: &mut Signal,
) -> Box<dyn Iterator<Item = &mut Option<Resource>> + '_> {
    match signal.typed_mut() {
        Signal::Traces(r) => Box::new(r.resource_spans.iter_mut().map(|r| &mut r.resource)),
        Signal::Logs(r) => Box::new(r.resource_logs.iter_mut().map(|r| &mut r.resource)),
        Signal::Metrics(r) => Box::new(r.resource_metrics.iter_mut().map(|r| &mut r.resource)),
        // built by `typed_mut`
        Signal::KernelLogs(_)
        | Signal::KernelSpans(_)
        | Signal::AnnotatedTraces(_)
        | Signal::SharedLogs(_) => Box::new(std::iter::empty()),
    }
}

/// Sets `process.pid` = `pid` and `container.id` = `container` on every resource of
/// `signal`; returns how many resources named another pid. A client's other value of either
/// moves under `received.`, and so does its `container.id` when the sender is in no container:
/// pod attributes are found by it once the process is gone, so a client's word would let it
/// name another pod.
pub fn annotate(signal: &mut Signal, pid: u32, container: Option<&str>) -> u64 {
    let mut replaced = 0;
    for resource in resources(signal) {
        let attributes = &mut resource.get_or_insert_with(Resource::default).attributes;
        if verified(attributes, PROCESS_PID, Some(Value::IntValue(pid.into()))) {
            replaced += 1;
        }
        let container = container.map(|c| Value::StringValue(c.into()));
        verified(attributes, CONTAINER_ID, container);
    }
    replaced
}

/// Sets `key` = `ours` among `attributes`: another value, or a second one, moves under
/// `received.` (every value, when `ours` is `None`). Whether any moved.
fn verified(attributes: &mut Vec<KeyValue>, key: &str, ours: Option<Value>) -> bool {
    let (mut found, mut moved) = (false, false);
    for kv in attributes.iter_mut().filter(|kv| kv.key == key) {
        let same =
            ours.is_some() && kv.value.as_ref().and_then(|v| v.value.as_ref()) == ours.as_ref();
        if found || !same {
            kv.key = format!("{RECEIVED_PREFIX}{key}");
            moved = true;
        } else {
            found = true;
        }
    }
    if !found && let Some(value) = ours {
        attributes.push(KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        });
    }
    moved
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The inode of the TCP socket whose local end is `client` (see [`find_inode`] for `server`):
/// in runbom's network namespace, else in another.
fn socket_inode(client: SocketAddr, server: Option<SocketAddr>) -> Option<u64> {
    inode_in_tables("/proc/net", client, server).or_else(|| inode_in_other_netns(client))
}

/// Looks in `<dir>/tcp` and `<dir>/tcp6`, each read once.
fn inode_in_tables(dir: &str, client: SocketAddr, server: Option<SocketAddr>) -> Option<u64> {
    // A client may also be an IPv4 socket talking to a dual-stack listener: look in both.
    let tables: &[&str] = if client.is_ipv4() {
        &["tcp", "tcp6"]
    } else {
        &["tcp6"]
    };
    tables
        .iter()
        .filter_map(|t| fs::read_to_string(format!("{dir}/{t}")).ok())
        .find_map(|text| find_inode(&text, client, server))
}

/// The socket `client` in the network namespaces other than runbom's. Only the client end is
/// matched: the server address the client sees may be another (a Service's, before DNAT).
fn inode_in_other_netns(client: SocketAddr) -> Option<u64> {
    let own = fs::read_link("/proc/self/ns/net").ok();
    let mut seen = std::collections::HashSet::new();
    pids().into_iter().find_map(|pid| {
        let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
        if Some(&ns) == own.as_ref() || !seen.insert(ns) {
            return None;
        }
        inode_in_tables(&format!("/proc/{pid}/net"), client, None)
    })
}

/// Every pid in `/proc`, lowest first.
fn pids() -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Finds the row for `client` in a `/proc/net/tcp{,6}` table: the one whose remote end is
/// `server` (one client port may be connected to two servers at once), else the first one for
/// `client` (a client that connected through a translated address sees another server address).
fn find_inode(table: &str, client: SocketAddr, server: Option<SocketAddr>) -> Option<u64> {
    let mut first = None;
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(local), Some(remote)) = (
            fields.nth(1).and_then(parse_addr),
            fields.next().and_then(parse_addr),
        ) else {
            continue;
        };
        let inode = fields.nth(6).and_then(|i| i.parse::<u64>().ok());
        let Some(inode) = inode.filter(|&i| local == client && i != 0) else {
            continue;
        };
        if server.is_none_or(|s| s == remote) {
            return Some(inode);
        }
        first.get_or_insert(inode);
    }
    first
}

/// `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6), as the kernel prints them: each
/// 32-bit word of the address in host byte order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The process holding socket `inode` open (the lowest pid when several share it: the
/// parent that created it, usually).
fn owner_of_inode(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    pids().into_iter().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
        })
    })
}

#[cfg(test)]
#[path = "sender_tests.rs"]
mod tests;
