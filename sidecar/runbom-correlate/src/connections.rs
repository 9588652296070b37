//! Connections: a held `net.connect` takes the `traceparent` of the first request written on
//! the connection it opened (same process and socket, to the peer it connected to). Time cannot
//! place a connect when two traces share a thread (asyncio tasks, Node's event loop): the
//! connect of one conversation's request may fall inside another's span. The request names its
//! span; the connect was made for it.
//!
//! Only plaintext HTTP/1.x requests name their socket (`HttpRequest::fd`): inside TLS the probe
//! sees the library's buffer, not the socket, and those connects are still placed by time.

use runbom_event::{Capture, Detail, KernelEvent};

use crate::{
    IdMap,
    buffer::{EventBuffer, Key},
    spans::SpanId,
};

#[derive(Default)]
pub(crate) struct Connections {
    /// Held connects by (pid, fd), until the first request on their connection.
    open: IdMap<(u32, i32), Key>,
    /// Held connects whose first request named a span, by the connect's key.
    linked: IdMap<Key, SpanId>,
}

impl Connections {
    /// The process and socket of a connect that opened a connection.
    pub fn opened(ev: &KernelEvent) -> Option<(u32, i32)> {
        match ev.detail {
            Detail::Connect {
                fd: Some(fd),
                error: None,
                ..
            } => Some((ev.pid, fd)),
            _ => None,
        }
    }

    /// The connect that opened `socket` is held under `key` (it replaces an earlier connect
    /// of that socket: the fd was closed and reused).
    pub fn held(&mut self, socket: (u32, i32), key: Key) {
        self.open.insert(socket, key);
    }

    /// When `ev` is the first request on the connection of a held connect and names its span:
    /// that connect's key and the span.
    pub fn first_request(
        &mut self,
        ev: &KernelEvent,
        buffer: &EventBuffer,
    ) -> Option<(Key, SpanId)> {
        let Detail::HttpRequest(h) = &ev.detail else {
            return None;
        };
        if h.capture != Capture::Socket {
            return None;
        }
        let key = self.open.remove(&(ev.pid, h.fd?))?;
        let span = h.traceparent?.span_id;
        let connect = &buffer.get(&key)?.event;
        let Detail::Connect { remote, .. } = connect.detail else {
            return None;
        };
        let same_peer = h.peer.is_none_or(|p| {
            p.port() == remote.port() && p.ip().to_canonical() == remote.ip().to_canonical()
        });
        if !same_peer || connect.start_ns > ev.start_ns {
            return None;
        }
        self.linked.insert(key, span);
        Some((key, span))
    }

    /// The span the held event under `key` was linked to by its connection's first request.
    pub fn span_of(&self, key: &Key) -> Option<SpanId> {
        self.linked.get(key).copied()
    }

    /// Forgets connects that left the buffer (keys are never reused: each holds its arrival's
    /// sequence number).
    pub fn retain_held(&mut self, buffer: &EventBuffer) {
        self.open.retain(|_, k| buffer.get(k).is_some());
        self.linked.retain(|k, _| buffer.get(k).is_some());
    }
}
