//! Decoded kernel records enriched into [`KernelEvent`]s: Unix times, the process they belong
//! to, names for errnos and flags, DNS questions parsed out of datagrams.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::mpsc::SyncSender,
    time::Instant,
};

use runbom_common::{
    EXEC_ARGV_TRUNCATED, HTTP_FD_IS_SOCKET, HTTP_GO_TLS, HTTP_H2_PREFACE, HTTP_PEER_KNOWN,
    HttpEvent, SOCK_TYPE_DGRAM, SOCK_TYPE_STREAM, SockAddr, SockEvent, decode::Event, http_source,
};
use runbom_event::{Capture, Detail, HttpRequest, KernelEvent, Transport, http, names, redact};
use runbom_event::{McpTransport, jsonrpc};

use crate::{
    clock::BootClock,
    h2::{self, H2Tracker},
    httptrack::{self, Awaits, HttpTracker, socket_key},
    mcptrack::{self, McpTracker, Origin},
    proctable::ProcessTable,
};

/// Turns decoded records into [`KernelEvent`]s and keeps the process table current.
pub struct Enricher {
    pub procs: ProcessTable,
    clock: BootClock,
    /// TLS requests waiting for their body and status; completed ones wait for [`Self::take_ready`].
    http: HttpTracker,
    /// HTTP/2 connections and their open streams.
    h2: H2Tracker,
    /// MCP requests waiting for their responses; paired calls wait for [`Self::take_ready`].
    mcp: McpTracker,
    /// Keep a `tools/call`'s arguments (`McpCapture::capture_arguments`).
    mcp_arguments: bool,
    /// Where pids that may have loaded a new libssl are sent (see `crate::openssl`).
    libssl: Option<SyncSender<u32>>,
    /// Pids sent since their last exec (bounded by the live processes: exit removes).
    libssl_sent: HashSet<u32>,
    /// What each JSON-RPC fd of a live process was when `/proc` could still tell (records are
    /// read in batches, so a process's last messages may be read after it exited); exit
    /// removes a process's entries; at most [`FD_CHANNELS_MAX`] processes and as many fds
    /// each are kept.
    fd_channels: HashMap<u32, HashMap<i32, (Channel, u64)>>,
    /// The last `file.open` path that needed no change (valid UTF-8, nothing redacted): a
    /// path opened again and again (a log, a lock, a configuration file) is checked once.
    last_path: String,
}

/// `error.type` of a `file.open` whose result was lost: the name `names::errno` gives an errno it
/// does not know, which is what the result is.
pub const OPEN_RESULT_UNKNOWN_ERROR: &str = "EUNKNOWN";

/// Processes, and JSON-RPC fds per process, remembered (a full table is started afresh).
const FD_CHANNELS_MAX: usize = 1024;

impl Enricher {
    #[must_use]
    pub fn new(procs: ProcessTable, clock: BootClock) -> Self {
        Self {
            procs,
            clock,
            http: HttpTracker::default(),
            h2: H2Tracker::default(),
            mcp: McpTracker::default(),
            mcp_arguments: false,
            libssl: None,
            libssl_sent: HashSet::new(),
            fd_channels: HashMap::new(),
            last_path: String::new(),
        }
    }

    /// Keeps each `tools/call`'s (redacted) arguments; by default they are dropped at once.
    #[must_use]
    pub fn with_mcp_arguments(mut self, keep: bool) -> Self {
        self.mcp_arguments = keep;
        self
    }

    /// Reads LLM exchanges into `gen_ai.*` attributes with `options` (`None`: off).
    #[must_use]
    pub fn with_genai(mut self, options: Option<runbom_genai::Options>) -> Self {
        self.http = std::mem::take(&mut self.http).with_genai(options);
        self.h2 = std::mem::take(&mut self.h2).with_genai(options);
        self
    }

    /// Sends each process that execs or first connects to `tx`, for an OpenSSL rescan.
    #[must_use]
    pub fn with_libssl_watch(mut self, tx: SyncSender<u32>) -> Self {
        self.libssl = Some(tx);
        self
    }

    /// Moves the HTTP requests that are complete (or waited long enough) to `out`.
    pub fn take_ready(&mut self, out: &mut Vec<KernelEvent>) {
        self.http.expire(
            Instant::now(),
            httptrack::RESPONSE_WAIT,
            httptrack::BODY_WAIT,
        );
        self.http.take_ready(out);
        self.h2.expire(Instant::now(), httptrack::RESPONSE_WAIT);
        self.h2.take_ready(out);
        self.mcp.expire(Instant::now(), mcptrack::RESPONSE_WAIT);
        self.mcp.take_ready(out);
    }

    /// Moves the HTTP requests completed so far to `out`, without looking for expired ones
    /// (cheap: after every record).
    pub fn take_completed(&mut self, out: &mut Vec<KernelEvent>) {
        self.http.take_ready(out);
    }

    /// True while TLS requests (or MCP requests) wait for their response.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.http.has_pending() || self.h2.has_pending() || self.mcp.has_pending()
    }

    /// Releases every waiting request (shutdown).
    pub fn flush(&mut self, out: &mut Vec<KernelEvent>) {
        self.http.flush();
        self.http.take_ready(out);
        self.h2.flush(unix_now_ns());
        self.h2.take_ready(out);
        self.mcp.flush();
        self.mcp.take_ready(out);
    }

    /// HTTP/2 connections that could no longer be followed since start.
    #[must_use]
    pub fn h2_lost(&self) -> u64 {
        self.h2.lost
    }

    fn libssl_watch(&mut self, pid: u32, exec: bool) {
        let Some(tx) = &self.libssl else { return };
        if exec {
            self.libssl_sent.remove(&pid);
        }
        if self.libssl_sent.insert(pid) {
            // A full queue drops the hint: the watcher is busy rescanning already.
            let _ = tx.try_send(pid);
        }
    }

    /// Enriches one record; `None` for records that only update the process table (fork) or
    /// that carry nothing exportable (a DNS datagram with no parsable question).
    pub fn enrich(&mut self, event: &Event<'_>) -> Option<KernelEvent> {
        let h = *event.header();
        let start_ns = self.clock.to_unix_ns(h.time_ns);
        match event {
            Event::Exec(..) => self.libssl_watch(h.pid, true),
            Event::Connect(_) => self.libssl_watch(h.pid, false),
            Event::Exit(_) => {
                self.libssl_sent.remove(&h.pid);
                self.fd_channels.remove(&h.pid);
                self.h2.exited(h.pid, start_ns);
            }
            _ => {}
        }
        let (process, end_boot, detail) = match event {
            Event::Http(e, data) => return self.http(e, data, start_ns),
            Event::JsonRpc(e, data) => {
                self.jsonrpc(e, data, start_ns);
                return None;
            }
            Event::Fork(f) => {
                self.procs.fork_by(h.pid, h.tid, f.child_pid, start_ns);
                return None;
            }
            Event::Exec(e, argv) => {
                let path = cstr(&e.filename[..(e.filename_len as usize).min(e.filename.len())]);
                let arguments: Vec<&str> = argv
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| std::str::from_utf8(a).unwrap_or("?"))
                    .collect();
                let process = self
                    .procs
                    .exec(h.pid, h.cgroup_id, e.uid, path.clone(), &arguments);
                let detail = Detail::Exec {
                    path,
                    argv_truncated: e.flags & EXEC_ARGV_TRUNCATED != 0,
                };
                (process, e.end_ns, detail)
            }
            Event::Exit(e) => {
                let code = (e.exit_code_known != 0).then_some(e.exit_code);
                (self.procs.exit(h.pid), 0, Detail::Exit { code })
            }
            Event::Connect(s) => {
                let remote = socket_addr(&s.remote)?;
                let error =
                    (s.ret < 0 && -s.ret != libc::EINPROGRESS).then(|| names::errno(-s.ret));
                let detail = Detail::Connect {
                    remote,
                    local: socket_addr(&s.local).filter(|a| a.port() != 0),
                    transport: transport(s),
                    error,
                    fd: Some(s.fd),
                };
                (self.procs.get(h.pid), s.end_ns, detail)
            }
            Event::Accept(s) => {
                let detail = Detail::Accept {
                    peer: socket_addr(&s.remote),
                };
                (self.procs.get(h.pid), s.end_ns, detail)
            }
            Event::FileOpen(f) => {
                let path = self.open_path(&f.path[..(f.path_len as usize).min(f.path.len())]);
                // An open whose result record was lost (`crate::openjoin`): its errno is
                // unknown, and so is whether it failed.
                let error = if f.ret == runbom_common::OPEN_RESULT_UNKNOWN {
                    Some(OPEN_RESULT_UNKNOWN_ERROR)
                } else {
                    (f.ret < 0).then(|| names::errno(-f.ret))
                };
                let detail = Detail::FileOpen {
                    path,
                    flags: f.flags,
                    error,
                };
                (self.procs.get(h.pid), f.end_ns, detail)
            }
            Event::Dns(d) => {
                let payload = &d.payload[..(d.payload_len as usize).min(d.payload.len())];
                let (name, qtype) = names::dns_question(payload)?;
                let detail = Detail::DnsQuery {
                    name,
                    qtype,
                    server: socket_addr(&d.server)?,
                };
                (self.procs.get(h.pid), 0, detail)
            }
        };
        let end_ns = match self.clock.to_unix_ns(end_boot) {
            0 => start_ns,
            t => t.max(start_ns),
        };
        Some(KernelEvent {
            pid: h.pid,
            tid: h.tid,
            cgroup_id: h.cgroup_id,
            start_ns,
            end_ns,
            process,
            detail,
        })
    }
}

impl Enricher {
    /// An HTTP capture: a TLS head waits in the tracker for its body and status, a plaintext
    /// one for its body when the head did not hold it, and, when it is an LLM call that GenAI
    /// reading reads, for its response (the kernel side captures what the socket reads back
    /// after a head: `SOCKET_READ`, `SOCKET_RESPONSE`).
    fn http(&mut self, e: &HttpEvent, data: &[u8], time_ns: u64) -> Option<KernelEvent> {
        let h = e.header;
        if let Some(dir) = h2_direction(e.source) {
            self.h2(e, data, time_ns, dir);
            return None;
        }
        let socket = matches!(
            e.source,
            http_source::SOCKET_WRITE
                | http_source::SOCKET_BODY
                | http_source::SOCKET_READ
                | http_source::SOCKET_RESPONSE
        );
        let key = if socket {
            socket_key(h.pid, e.fd)
        } else {
            (h.pid, e.ssl)
        };
        match e.source {
            http_source::SSL_BODY => {
                self.http.body(key, data);
                return None;
            }
            // The fd may have been reused for a file since the head: a file is no body.
            http_source::SOCKET_BODY if is_socket(h.pid, e.fd) => {
                self.http.body(key, data);
                return None;
            }
            http_source::SOCKET_BODY => return None,
            http_source::SSL_READ | http_source::SOCKET_READ => {
                self.http.response(key, http::status(data)?, data, time_ns);
                return None;
            }
            http_source::SSL_RESPONSE | http_source::SOCKET_RESPONSE => {
                self.http.response_data(key, data, time_ns);
                return None;
            }
            _ => {}
        }
        if socket && e.flags & HTTP_FD_IS_SOCKET == 0 && !is_socket(h.pid, e.fd) {
            return None;
        }
        let head = http::parse_head(data)?;
        let body = head.body_offset.map(|at| &data[at..]);
        let model = body.and_then(http::model);
        // The body (or its rest) comes in the next write when this one did not hold it all. At
        // the socket only a JSON body is captured (the kernel side looks for its `{`).
        let need_body = model.is_none()
            && (!socket || head.json)
            && head.content_length.unwrap_or(0) > body.map_or(0, |b| b.len() as u64);
        let peer = if e.flags & HTTP_PEER_KNOWN != 0 {
            socket_addr(&e.peer)
        } else {
            None
        };
        let event = KernelEvent {
            pid: h.pid,
            tid: h.tid,
            cgroup_id: h.cgroup_id,
            start_ns: time_ns,
            end_ns: time_ns,
            process: self.procs.get(h.pid),
            detail: Detail::HttpRequest(Box::new(HttpRequest {
                capture: capture_of(socket, e.flags),
                method: head.method,
                host: head.host.or_else(|| peer.map(|p| p.to_string())),
                target: head.target,
                peer,
                traceparent: head.traceparent,
                user_agent: head.user_agent,
                body_size: head.content_length,
                model,
                status: None,
                version: runbom_event::HttpVersion::Http1,
                grpc: None,
                genai: None,
                fd: socket.then_some(e.fd),
            })),
        };
        // A body that may be an MCP message (streamable HTTP) goes through the tracker, which
        // reads it and pairs it with its answer; a plaintext LLM call waits for its response (a
        // local model server: Ollama, vLLM) as well; any other plaintext request only for its
        // body, if that.
        let maybe_mcp = head.mcp_session_id.is_some()
            || body.is_some_and(|b| b.trim_ascii_start().first() == Some(&b'{'));
        let response = !socket || maybe_mcp || self.http.reads_response(&event);
        if !response && !need_body {
            return Some(event);
        }
        let awaits = if response {
            Awaits::Status
        } else {
            Awaits::Body
        };
        self.http.request(
            key,
            event,
            need_body,
            awaits,
            body.unwrap_or_default(),
            head.mcp_session_id,
        );
        None
    }
}

impl Enricher {
    /// A buffer of an HTTP/2 connection: its preface starts the connection.
    fn h2(&mut self, e: &HttpEvent, data: &[u8], time_ns: u64, dir: h2::Direction) {
        let h = e.header;
        let socket = matches!(
            e.source,
            http_source::H2_SOCKET_WRITE | http_source::H2_SOCKET_READ
        );
        let key = if socket {
            socket_key(h.pid, e.fd)
        } else {
            (h.pid, e.ssl)
        };
        if e.flags & HTTP_H2_PREFACE != 0 {
            let peer = if e.flags & HTTP_PEER_KNOWN != 0 {
                socket_addr(&e.peer)
            } else {
                None
            };
            self.h2
                .start(key, capture_of(socket, e.flags), peer, time_ns);
        }
        let origin = h2::Origin {
            tid: h.tid,
            cgroup_id: h.cgroup_id,
            process: self.procs.get(h.pid),
            time_ns,
        };
        self.h2.push(key, dir, data, e.total_len, &origin);
    }
}

/// Where a capture's bytes were seen.
fn capture_of(socket: bool, flags: u16) -> Capture {
    if socket {
        Capture::Socket
    } else if flags & HTTP_GO_TLS != 0 {
        Capture::GoTls
    } else {
        Capture::Openssl
    }
}

/// The direction of an HTTP/2 capture; `None` for HTTP/1 material.
fn h2_direction(source: u16) -> Option<h2::Direction> {
    match source {
        http_source::H2_SOCKET_WRITE | http_source::H2_SSL_WRITE => Some(h2::Direction::Write),
        http_source::H2_SOCKET_READ | http_source::H2_SSL_READ => Some(h2::Direction::Read),
        _ => None,
    }
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Enricher {
    /// A captured JSON-RPC write: its messages go to the MCP pairing, whose calls come out of
    /// [`Self::take_ready`].
    fn jsonrpc(&mut self, e: &runbom_common::JsonRpcEvent, data: &[u8], time_ns: u64) {
        let h = e.header;
        let complete = u64::from(e.data_len) >= e.total_len;
        let tail: &[u8] = if complete { &[] } else { &e.tail };
        let messages = jsonrpc::parse_messages(data, complete, tail);
        if messages.is_empty() {
            return;
        }
        let link = match fd_channel(h.pid, e.fd) {
            Some(link) => {
                if self.fd_channels.len() >= FD_CHANNELS_MAX {
                    self.fd_channels.clear();
                }
                let fds = self.fd_channels.entry(h.pid).or_default();
                if fds.len() >= FD_CHANNELS_MAX {
                    fds.clear();
                }
                fds.insert(e.fd, link);
                Some(link)
            }
            None => self
                .fd_channels
                .get(&h.pid)
                .and_then(|fds| fds.get(&e.fd))
                .copied(),
        };
        // An fd `/proc` could never tell about is a pipe unless the kernel saw a socket.
        let socket = match link {
            Some((channel, _)) => channel == Channel::Socket,
            None => e.flags & runbom_common::JSONRPC_FD_IS_SOCKET != 0,
        };
        let transport = if socket {
            McpTransport::Unix
        } else {
            McpTransport::Pipe
        };
        let origin = Origin {
            pid: h.pid,
            tid: h.tid,
            cgroup_id: h.cgroup_id,
            time_ns,
            process: self.procs.get(h.pid),
            transport,
            channel: link.map(|(_, inode)| inode),
            fd: e.fd,
        };
        for mut m in messages {
            if !self.mcp_arguments {
                m.arguments = None;
            }
            self.mcp.message(&origin, &m, &mut self.procs);
        }
    }
}

impl mcptrack::Processes for crate::proctable::ProcessTable {
    fn stdin_channel(&self, pid: u32) -> Option<u64> {
        fd_channel(pid, 0).map(|(_, inode)| inode)
    }

    fn descends_from(&mut self, pid: u32, ancestor: u32) -> bool {
        let mut at = pid;
        // Bounded: a table seeded from a racing /proc could hold a cycle.
        for _ in 0..32 {
            let parent = self.get(at).ppid;
            if parent == ancestor {
                return true;
            }
            if parent <= 1 {
                return false;
            }
            at = parent;
        }
        false
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Pipe,
    Socket,
}

/// What `fd` of `pid` is (`pipe:[N]`, `socket:[N]`) and its inode, when `/proc` can tell.
fn fd_channel(pid: u32, fd: i32) -> Option<(Channel, u64)> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    let (kind, rest) = if let Some(rest) = link.strip_prefix("pipe:[") {
        (Channel::Pipe, rest)
    } else {
        (Channel::Socket, link.strip_prefix("socket:[")?)
    };
    Some((kind, rest.strip_suffix(']')?.parse().ok()?))
}

/// Whether `fd` of `pid` is a socket, for writes on descriptors created before runbom started.
/// When `/proc` cannot tell (the fd is closed already), the request line decides alone.
fn is_socket(pid: u32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map_or(true, |l| l.to_string_lossy().starts_with("socket:"))
}

fn transport(s: &SockEvent) -> Option<Transport> {
    match s.sock_type {
        SOCK_TYPE_STREAM => Some(Transport::Tcp),
        SOCK_TYPE_DGRAM => Some(Transport::Udp),
        _ => None,
    }
}

impl Enricher {
    /// A `file.open` path as [`cstr`] makes it; the same bytes as the last path that needed no
    /// change are that path again.
    fn open_path(&mut self, bytes: &[u8]) -> String {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let bytes = &bytes[..end];
        if self.last_path.as_bytes() == bytes {
            return self.last_path.clone();
        }
        let path = cstr(bytes);
        if path.as_bytes() == bytes {
            self.last_path.clone_from(&path);
        }
        path
    }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    // Checked at once when it is UTF-8 (nearly every path), decoded lossily when not.
    match std::str::from_utf8(bytes) {
        Ok(text) => redact::text(text).into_owned(),
        Err(_) => redact::text(&String::from_utf8_lossy(bytes)).into_owned(),
    }
}

/// The socket address of a kernel record; `None` for families other than IPv4 and IPv6.
#[must_use]
pub fn socket_addr(a: &SockAddr) -> Option<SocketAddr> {
    let ip = match i32::from(a.family) {
        libc::AF_INET => std::net::IpAddr::from([a.addr[0], a.addr[1], a.addr[2], a.addr[3]]),
        libc::AF_INET6 => std::net::IpAddr::from(a.addr),
        _ => return None,
    };
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; say what they are.
    Some(SocketAddr::new(ip.to_canonical(), a.port))
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
