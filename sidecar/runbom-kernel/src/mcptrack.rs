//! MCP calls paired from the JSON-RPC messages both ends write: a request waits here, keyed by
//! its sender and id, until a message with the same id comes back from another process; then
//! the call is emitted twice, as the sender's `mcp.client` and the answerer's `mcp.server`
//! event, both spanning request to response. A notification is emitted at once (its sender's
//! side only).
//!
//! Which waiting request a response answers, when several share its id (a client that spawned
//! two servers sends `id` 1 to each): the one written into the pipe the answering process reads
//! as its stdin (`/proc/PID/fd/0`); else the one from an ancestor of the answering process (a
//! stdio server is its client's child, perhaps through `npx` or `sh`; Node gives a child's
//! stdio a socket pair, whose two ends are two inodes). Else none: a process that neither reads
//! the request's pipe nor descends from its sender cannot answer it, so another process's
//! JSON-RPC with the same id never completes (or forges) a call; the request is exported
//! unanswered when its wait ends.
//!
//! A request leaves the table when answered, when it waited [`RESPONSE_WAIT`], when the table
//! is full (oldest first) or at shutdown: never dropped, exported unanswered.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use runbom_event::{
    Detail, KernelEvent, McpCall, McpSide, McpTransport, ProcessInfo,
    ids::new_span_id,
    jsonrpc::{Id, Kind, Message},
};

/// Longest a request waits for its response (tool calls may run for minutes; their span then
/// shows no end beyond this).
pub const RESPONSE_WAIT: Duration = Duration::from_mins(2);
/// Most requests waiting at once.
const PENDING_MAX: usize = 4096;

/// Where one message was written: by whom, when, through what.
pub struct Origin {
    pub pid: u32,
    pub tid: u32,
    pub cgroup_id: u64,
    /// Unix nanoseconds at the write's entry.
    pub time_ns: u64,
    pub process: Arc<ProcessInfo>,
    pub transport: McpTransport,
    /// Inode of the pipe or socket written to, when `/proc` could tell.
    pub channel: Option<u64>,
    /// The file descriptor written to.
    pub fd: i32,
}

impl Origin {
    /// What the sender wrote into: the channel's inode, else its fd (top bit set: never an
    /// inode runbom reads).
    fn conn(&self) -> u64 {
        self.channel
            .unwrap_or((1 << 63) | u64::from(self.fd as u32))
    }
}

/// A waiting request: its sender, what it was written into ([`Origin::conn`]), its id.
type Key = (u32, u64, Id);

struct Pending {
    event: KernelEvent,
    channel: Option<u64>,
    seq: u64,
}

/// What the pairing asks of the rest of the enricher: a process's stdin and ancestry.
pub trait Processes {
    /// The inode of the pipe or socket `pid` has as fd 0.
    fn stdin_channel(&self, pid: u32) -> Option<u64>;
    /// True when `ancestor` is `pid`'s parent, grandparent, …
    fn descends_from(&mut self, pid: u32, ancestor: u32) -> bool;
}

#[derive(Default)]
pub struct McpTracker {
    pending: HashMap<Key, Pending>,
    order: VecDeque<(Instant, Key, u64)>,
    ready: Vec<KernelEvent>,
    seq: u64,
}

impl McpTracker {
    /// One parsed message from `origin`.
    pub fn message(&mut self, origin: &Origin, m: &Message, procs: &mut impl Processes) {
        match (m.kind, m.id.clone()) {
            (Some(Kind::Request), Some(id)) => self.request(origin, m, id),
            (Some(Kind::Notification), _) => {
                let event = side_event(origin, call(McpSide::Client, m, origin.transport));
                self.ready.push(event);
            }
            (Some(Kind::Response) | None, Some(id)) => self.response(origin, m, &id, procs),
            _ => {}
        }
    }

    fn request(&mut self, origin: &Origin, m: &Message, id: Id) {
        let key = (origin.pid, origin.conn(), id);
        self.finish(&key);
        self.seq += 1;
        let event = side_event(origin, call(McpSide::Client, m, origin.transport));
        self.pending.insert(
            key.clone(),
            Pending {
                event,
                channel: origin.channel,
                seq: self.seq,
            },
        );
        self.order.push_back((Instant::now(), key, self.seq));
        while self.pending.len() > PENDING_MAX {
            let Some((_, oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.pending.get(&oldest).is_some_and(|p| p.seq == seq) {
                self.finish(&oldest);
            }
        }
    }

    fn response(&mut self, origin: &Origin, m: &Message, id: &Id, procs: &mut impl Processes) {
        let candidates: Vec<(u32, u64, Option<u64>, u64)> = self
            .pending
            .iter()
            .filter(|((pid, _, rid), _)| rid == id && *pid != origin.pid)
            .map(|((pid, conn, _), p)| (*pid, p.seq, p.channel, *conn))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let stdin = procs.stdin_channel(origin.pid);
        let by_seq = |a: &&(u32, u64, Option<u64>, u64)| a.1;
        let chosen = candidates
            .iter()
            .filter(|c| stdin.is_some() && c.2 == stdin)
            .min_by_key(by_seq)
            .or_else(|| {
                candidates
                    .iter()
                    .filter(|c| procs.descends_from(origin.pid, c.0))
                    .min_by_key(by_seq)
            });
        let Some(&(client_pid, _, _, conn)) = chosen else {
            tracing::debug!(
                pid = origin.pid,
                "JSON-RPC response from a process that neither reads a waiting request's pipe nor descends from its sender: not paired"
            );
            return;
        };
        let Some(p) = self.pending.remove(&(client_pid, conn, id.clone())) else {
            return;
        };
        let mut client = p.event;
        client.end_ns = origin.time_ns.max(client.start_ns);
        let Detail::Mcp(c) = &mut client.detail else {
            return;
        };
        answer(c, m);
        c.peer_pid = Some(origin.pid);
        let mut server_call = c.clone();
        c.server_command_line = Some(origin.process.command_line.clone());
        server_call.side = McpSide::Server;
        server_call.span_id = new_span_id();
        server_call.peer_pid = Some(client_pid);
        server_call.transport = origin.transport;
        let server = KernelEvent {
            pid: origin.pid,
            tid: origin.tid,
            cgroup_id: origin.cgroup_id,
            start_ns: client.start_ns,
            end_ns: client.end_ns,
            process: origin.process.clone(),
            detail: Detail::Mcp(server_call),
        };
        self.ready.push(client);
        self.ready.push(server);
    }

    /// Releases requests that waited longer than `wait`.
    pub fn expire(&mut self, now: Instant, wait: Duration) {
        while let Some((since, key, seq)) = self.order.front() {
            let current = self.pending.get(key).is_some_and(|p| p.seq == *seq);
            if current && now.duration_since(*since) < wait {
                break;
            }
            let key = key.clone();
            self.order.pop_front();
            if current {
                self.finish(&key);
            }
        }
    }

    /// Releases every waiting request (shutdown).
    pub fn flush(&mut self) {
        let keys: Vec<Key> = self.order.drain(..).map(|(_, k, _)| k).collect();
        for key in keys {
            self.finish(&key);
        }
    }

    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Moves the paired calls (and released requests) to `out`.
    pub fn take_ready(&mut self, out: &mut Vec<KernelEvent>) {
        out.append(&mut self.ready);
    }

    /// An unanswered request leaves: exported as it is.
    fn finish(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.ready.push(p.event);
        }
    }
}

/// What the response `m` tells of the call `c`.
pub(crate) fn answer(c: &mut McpCall, m: &Message) {
    c.answered = true;
    c.tool_error = m.tool_error;
    c.rpc_error_code = m.error_code;
    if m.protocol_version.is_some() {
        c.protocol_version.clone_from(&m.protocol_version);
    }
    c.server_name.clone_from(&m.server_name);
    c.tools.clone_from(&m.tools);
}

/// One side of the call that the request (or notification) `m` starts.
pub(crate) fn call(side: McpSide, m: &Message, transport: McpTransport) -> Box<McpCall> {
    Box::new(McpCall {
        side,
        span_id: new_span_id(),
        method: m.method.clone().unwrap_or_default(),
        target: m.name.clone(),
        request_id: m.id.as_ref().map(ToString::to_string),
        resource_uri: m.uri.clone(),
        session_id: None,
        protocol_version: m.protocol_version.clone(),
        transport,
        traceparent: m.traceparent,
        tool_error: false,
        rpc_error_code: None,
        arguments: m.arguments.clone(),
        peer_pid: None,
        server_command_line: None,
        server_name: None,
        server_url: None,
        tools: Vec::new(),
        answered: false,
    })
}

fn side_event(origin: &Origin, call: Box<McpCall>) -> KernelEvent {
    KernelEvent {
        pid: origin.pid,
        tid: origin.tid,
        cgroup_id: origin.cgroup_id,
        start_ns: origin.time_ns,
        end_ns: origin.time_ns,
        process: origin.process.clone(),
        detail: Detail::Mcp(call),
    }
}

#[cfg(test)]
#[path = "mcptrack_tests.rs"]
mod tests;
