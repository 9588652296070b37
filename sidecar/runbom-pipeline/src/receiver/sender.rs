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
//! forged trace. When no owner is found (a remote client) the client's pid stays.
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
use runbom_event::semconv::{CONTAINER_ID, PROCESS_PID, RECEIVED_PREFIX};
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

/// Finds and caches the pid behind each connection.
#[derive(Default)]
pub struct SenderPids {
    cache: Mutex<HashMap<u64, (Sender, Instant)>>,
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
        if let Some(sender) = self.cached(peer) {
            return sender;
        }
        let sender = match socket_inode(peer.client, peer.server) {
            None => Sender::Remote,
            Some(inode) => owner_of_inode(inode).map_or(Sender::Local, Sender::Process),
        };
        let now = Instant::now();
        let Ok(mut cache) = self.cache.lock() else {
            return sender;
        };
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(peer.connection, (sender, now));
        sender
    }

    /// The cached answer for `peer` while it is fresh; `None`: look it up.
    fn cached(&self, peer: Peer) -> Option<Sender> {
        let cache = self.cache.lock().ok()?;
        let (sender, at) = cache.get(&peer.connection)?;
        let ttl = if sender.pid().is_some() {
            TTL
        } else {
            NEGATIVE_TTL
        };
        (at.elapsed() < ttl).then_some(*sender)
    }
}

/// Sets the sending process's `process.pid` on every resource of `signal`: added where there
/// is none, replaced where the client's disagrees with the socket's owner (the client's kept as
/// `received.process.pid`, the mismatch counted). Reads `/proc` off the async threads when the
/// connection is not cached. Returns who the sender is.
pub async fn attribute(senders: &Arc<SenderPids>, signal: &mut Signal, peer: Peer) -> Sender {
    let sender = if let Some(sender) = senders.cached(peer) {
        sender
    } else {
        let senders = senders.clone();
        tokio::task::spawn_blocking(move || senders.sender(peer))
            .await
            .unwrap_or(Sender::Remote)
    };
    if let Sender::Process(pid) = sender {
        let replaced = annotate(signal, pid);
        if replaced > 0 {
            senders.mismatches.fetch_add(replaced, Ordering::Relaxed);
        }
    }
    sender
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

fn int_value(v: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(v)),
    }
}

/// Sets `process.pid` = `pid` on every resource of `signal`; returns how many resources named
/// another pid (theirs is moved to `received.process.pid`).
pub fn annotate(signal: &mut Signal, pid: u32) -> u64 {
    let mut replaced = 0;
    for resource in resources(signal) {
        let attributes = &mut resource.get_or_insert_with(Resource::default).attributes;
        let mut found = false;
        let mut moved = false;
        for kv in attributes.iter_mut().filter(|kv| kv.key == PROCESS_PID) {
            let same = matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(Value::IntValue(p)) if *p == i64::from(pid)
            );
            if found || !same {
                // A second `process.pid`, or one that is not the owner's: not the sender's.
                kv.key = format!("{RECEIVED_PREFIX}{PROCESS_PID}");
                moved = true;
            } else {
                found = true;
            }
        }
        if moved {
            replaced += 1;
        }
        if !found {
            attributes.push(KeyValue {
                key: PROCESS_PID.into(),
                value: Some(int_value(pid.into())),
            });
        }
    }
    replaced
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
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn parses_kernel_addresses() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("127.0.0.1:80".parse().unwrap()),
            "IPv4-mapped addresses are reported as IPv4"
        );
        assert_eq!(parse_addr("zz:1"), None);
    }

    #[test]
    fn finds_the_process_behind_a_loopback_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let pids = SenderPids::default();
        assert_eq!(
            pids.lookup(Peer::accepted(peer, Some(server))),
            Some(std::process::id())
        );
        // The server's own end does not match the client address.
        assert_eq!(
            pids.lookup(Peer::accepted("127.0.0.1:1".parse().unwrap(), Some(server))),
            None
        );
    }

    /// A client in a network namespace of its own (as a pod's is): its socket is only in that
    /// namespace's table, and is found there.
    #[test]
    fn an_unverified_senders_claimed_identity_moves_under_received() {
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
        };
        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
        };
        let mut signal = Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(PROCESS_PID, Value::IntValue(1)),
                        kv(CONTAINER_ID, Value::StringValue("abc".into())),
                        kv("service.name", Value::StringValue("agent".into())),
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        });
        unverified(&mut signal);
        let Signal::Traces(t) = signal else {
            unreachable!()
        };
        let keys: Vec<_> = t.resource_spans[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "received.process.pid",
                "received.container.id",
                "service.name"
            ]
        );
    }

    #[test]
    fn finds_the_process_behind_a_connection_in_another_network_namespace() {
        use std::io::{BufRead as _, BufReader};
        use std::process::{Command, Stdio};
        if !nix_root() {
            eprintln!("skipped: needs root (unshare -n)");
            return;
        }
        let script = "import socket,sys,time\n\
            l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen()\n\
            c=socket.create_connection(l.getsockname()); a,_=l.accept()\n\
            print(c.getsockname()[1], flush=True); sys.stdin.read()\n";
        let mut child = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && exec python3 -c \"$0\"",
                script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the client's port");
        let client = SocketAddr::from(([127, 0, 0, 1], port));
        // unshare and sh exec: the child's pid is the python's.
        let found = SenderPids::default().lookup(Peer::accepted(client, None));
        drop(child.stdin.take());
        let _ = child.wait();
        assert_eq!(
            found,
            Some(child.id()),
            "the client's process, in its own namespace"
        );
    }

    /// A client's port is free again once its connection closes: another process's socket
    /// bound to it (here on purpose, as a forger would) is a new connection, whose owner is
    /// looked up, never the first one's answer.
    #[test]
    fn a_new_connection_from_a_reused_client_address_is_looked_up_again() {
        use std::io::{BufRead as _, BufReader, Write as _};
        use std::process::{Child, Command, Stdio};
        // Connects from the port given (0: any), prints it, and holds on until stdin closes.
        const CLIENT: &str = "import socket,sys\n\
            s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
            s.bind(('127.0.0.1',int(sys.argv[1]))); s.connect(('127.0.0.1',int(sys.argv[2])))\n\
            print(s.getsockname()[1], flush=True); sys.stdin.read()\n";
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let connect = |port: u16| -> (Child, SocketAddr, TcpStream) {
            let mut child = Command::new("python3")
                .args(["-c", CLIENT, &port.to_string(), &server.port().to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let (accepted, client) = listener.accept().unwrap();
            assert_eq!(client.port(), line.trim().parse::<u16>().unwrap());
            (child, client, accepted)
        };
        let finish = |mut child: Child| {
            child.stdin.take().unwrap().flush().unwrap();
            child.wait().unwrap();
        };
        let pids = SenderPids::default();
        let (first, client, accepted) = connect(0);
        let first_peer = Peer::accepted(client, Some(server));
        assert_eq!(pids.lookup(first_peer), Some(first.id()));
        // The server closes first: the client's end leaves no TIME_WAIT behind.
        drop(accepted);
        let first_pid = first.id();
        finish(first);
        let (second, again, _accepted) = connect(client.port());
        assert_eq!(
            again, client,
            "the second socket has the first one's address"
        );
        let found = pids.lookup(Peer::accepted(again, Some(server)));
        let second_pid = second.id();
        finish(second);
        assert_ne!(first_pid, second_pid);
        assert_eq!(
            found,
            Some(second_pid),
            "the second connection's own process"
        );
    }

    fn nix_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn annotates_resources_and_replaces_a_pid_that_is_not_the_senders() {
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
        };
        let with_pid = |pid: i64| Resource {
            attributes: vec![KeyValue {
                key: "process.pid".into(),
                value: Some(int_value(pid)),
            }],
            ..Default::default()
        };
        let mut signal = Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(with_pid(42)),
                    ..Default::default()
                },
                ResourceSpans::default(),
                ResourceSpans {
                    resource: Some(with_pid(1)),
                    ..Default::default()
                },
            ],
        });
        assert_eq!(
            annotate(&mut signal, 42),
            1,
            "one resource claimed another pid"
        );
        let Signal::Traces(r) = signal else {
            unreachable!()
        };
        let attrs = |i: usize| -> Vec<(String, Option<Value>)> {
            r.resource_spans[i]
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
                .collect()
        };
        let pid = |k: &str, v: i64| (k.to_owned(), Some(Value::IntValue(v)));
        assert_eq!(
            attrs(0),
            vec![pid("process.pid", 42)],
            "the sender's own pid is kept"
        );
        assert_eq!(
            attrs(1),
            vec![pid("process.pid", 42)],
            "a missing pid is added"
        );
        assert_eq!(
            attrs(2),
            vec![pid("received.process.pid", 1), pid("process.pid", 42)],
            "a forged pid is replaced and kept under received."
        );
    }
}
