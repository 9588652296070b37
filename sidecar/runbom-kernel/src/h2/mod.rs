//! HTTP/2 and gRPC requests from the bytes the kernel captured on client connections that
//! wrote the HTTP/2 preface (plaintext `h2c` at the socket, or `h2` inside TLS at OpenSSL).
//! One `http.request` per stream, released when its response ends (`END_STREAM` or
//! `RST_STREAM`), when it waited [`crate::httptrack::RESPONSE_WAIT`], when its connection can
//! no longer be followed, or at shutdown — never dropped.

mod connection;
pub mod frames;
mod llm;
mod tables;

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use runbom_event::{Capture, KernelEvent};
use tracing::debug;

use connection::{Connection, Shared};
pub use connection::{Direction, Origin};

use crate::httptrack::Key;

/// Most connections followed at once (the least recently used is released past it).
const CONNECTIONS_MAX: usize = 4096;
/// Most streams waiting for their response over all connections (each may hold up to
/// [`frames::DATA_KEEP`] bytes of its body): past it, the busiest connection's oldest goes.
const STREAMS_MAX: usize = 4096;
/// Most bytes held for LLM calls (request bodies and responses) over all connections (as
/// HTTP/1's tracker-wide bound).
const HELD_MAX: usize = 64 << 20;
/// Most bytes held for framing over all connections: header blocks still being assembled
/// (up to 256 KiB each) and frames still being read (up to 64 KiB each).
const FRAMING_MAX: usize = 64 << 20;
/// Most bytes the HPACK dynamic tables may hold over all connections, counted at each table's
/// maximum size (4 KiB until the peer raises it, at most 64 KiB): [`CONNECTIONS_MAX`] at the
/// default take half.
const TABLES_MAX: usize = 64 << 20;

#[derive(Default)]
pub struct H2Tracker {
    connections: HashMap<Key, Connection>,
    /// The requests completed, and the bytes held over all connections.
    shared: Shared,
    /// Connections that could no longer be followed (gap over a frame header, not HTTP/2, past
    /// a bound over all connections).
    pub lost: u64,
    /// Streams open over all connections.
    open: usize,
    /// GenAI reading of LLM calls (`None`: off).
    genai: Option<runbom_genai::Options>,
}

impl H2Tracker {
    /// Reads LLM calls (request and response bodies) with `options` (`None`: off).
    #[must_use]
    pub fn with_genai(mut self, options: Option<runbom_genai::Options>) -> Self {
        self.genai = options;
        self
    }

    /// A connection wrote the client preface: whatever was followed on `key` ends.
    pub fn start(&mut self, key: Key, capture: Capture, peer: Option<SocketAddr>, now_ns: u64) {
        if let Some(mut old) = self.connections.remove(&key) {
            old.finish_all(now_ns, &mut self.shared);
        }
        if self.connections.len() >= CONNECTIONS_MAX
            && let Some(oldest) = self
                .connections
                .iter()
                .min_by_key(|(_, c)| c.last_seen)
                .map(|(k, _)| *k)
            && let Some(mut c) = self.connections.remove(&oldest)
        {
            c.finish_all(now_ns, &mut self.shared);
        }
        // Its tables must fit too: past the bound, the connection with the largest goes.
        while self.shared.tables + 2 * tables::TABLE_DEFAULT > TABLES_MAX
            && let Some(largest) = self
                .connections
                .iter()
                .max_by_key(|(_, c)| c.tables())
                .map(|(k, _)| *k)
            && let Some(mut c) = self.connections.remove(&largest)
        {
            self.lost += 1;
            debug!(
                pid = c.pid,
                "HTTP/2 connection no longer followed: HPACK tables"
            );
            c.finish_all(now_ns, &mut self.shared);
        }
        let c = Connection::new(key.0, capture, peer, self.genai, &mut self.shared);
        self.connections.insert(key, c);
        self.recount();
    }

    /// One captured buffer of `key`'s connection; ignored when no preface was seen on it.
    pub fn push(&mut self, key: Key, dir: Direction, data: &[u8], total: u64, origin: &Origin) {
        let Some(c) = self.connections.get_mut(&key) else {
            return;
        };
        let before = c.open();
        let pushed = c.push(dir, data, total, origin, &mut self.shared);
        self.open = (self.open + c.open()).saturating_sub(before);
        if let Err(lost) = pushed {
            self.lost += 1;
            debug!(pid = c.pid, ?lost, "HTTP/2 connection no longer followed");
            self.connections.remove(&key);
        }
        while self.open > STREAMS_MAX {
            let Some(busiest) = self.connections.values_mut().max_by_key(|c| c.open()) else {
                break;
            };
            busiest.finish_oldest(origin.time_ns, &mut self.shared);
            self.open -= 1;
        }
    }

    fn recount(&mut self) {
        self.open = self.connections.values().map(Connection::open).sum();
    }

    /// Releases streams that waited longer than `wait`. Idle connections stay (a gRPC channel
    /// may be quiet for hours, and its HPACK tables are needed when it speaks again) until
    /// their process exits or [`CONNECTIONS_MAX`] pushes them out.
    pub fn expire(&mut self, now: Instant, wait: Duration) {
        for c in self.connections.values_mut() {
            c.expire(now, wait, &mut self.shared);
        }
        self.recount();
    }

    /// Process `pid` exited at `end_ns`: its connections end.
    pub fn exited(&mut self, pid: u32, end_ns: u64) {
        let shared = &mut self.shared;
        self.connections.retain(|_, c| {
            if c.pid == pid {
                c.finish_all(end_ns, shared);
            }
            c.pid != pid
        });
        self.recount();
    }

    /// Releases every open stream (shutdown).
    pub fn flush(&mut self, now_ns: u64) {
        for (_, mut c) in self.connections.drain() {
            c.finish_all(now_ns, &mut self.shared);
        }
        self.open = 0;
    }

    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.connections.values().any(|c| !c.is_idle())
    }

    /// Bytes held over every connection: for LLM calls, for framing.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.shared.held, self.shared.framing)
    }

    /// [`Self::held`], counted connection by connection.
    #[cfg(test)]
    pub(crate) fn held_counted(&self) -> (usize, usize) {
        self.connections
            .values()
            .map(Connection::held_counted)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// The HPACK tables' maximum sizes over every connection: as counted, and connection by
    /// connection.
    #[cfg(test)]
    pub(crate) fn tables(&self) -> (usize, usize) {
        let counted = self.connections.values().map(Connection::tables).sum();
        (self.shared.tables, counted)
    }

    /// Moves the completed requests to `out`.
    pub fn take_ready(&mut self, out: &mut Vec<KernelEvent>) {
        out.append(&mut self.shared.done);
    }
}

#[cfg(test)]
mod tests;
