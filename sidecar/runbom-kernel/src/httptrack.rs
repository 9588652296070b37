//! Requests waiting for the rest of what describes them: the body write that follows the head
//! (for `model`) and, inside TLS, the response's status line. Keyed by `(pid, SSL*)` or
//! `(pid, fd)` ([`socket_key`]): one connection carries one request at a time in HTTP/1.x.
//!
//! A request leaves the table when its status arrives, when the next request on the same
//! connection starts, when it waited [`RESPONSE_WAIT`], when the table is full (oldest first)
//! or at shutdown — never dropped: without a status it is exported without one.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use runbom_event::{Detail, KernelEvent, http};

/// Longest a request waits for its response's status (LLM calls take seconds).
pub const RESPONSE_WAIT: Duration = Duration::from_secs(30);
/// Longest a plaintext request waits for its body (the kernel side takes a body for a head only
/// within a second of it).
pub const BODY_WAIT: Duration = Duration::from_secs(2);
/// Most requests waiting at once.
const PENDING_MAX: usize = 4096;

/// `(pid, SSL*)`, or `(pid, fd)` marked by [`socket_key`].
pub type Key = (u32, u64);

/// The key of a plaintext request on `fd`: never equal to an `SSL*` (user pointers have the top
/// bit clear on the architectures runbom runs on).
#[must_use]
pub fn socket_key(pid: u32, fd: i32) -> Key {
    (pid, (1 << 63) | u64::from(fd as u32))
}

/// What a waiting request still waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaits {
    /// The response's status (after the body, if `need_body`).
    Status = 0,
    /// Only the body: no response is captured on this path (plaintext).
    Body = 1,
}

struct Pending {
    event: KernelEvent,
    /// The body (or its rest) is expected in the next write and `model` is still unknown.
    need_body: bool,
    awaits: Awaits,
    seq: u64,
}

#[derive(Default)]
pub struct HttpTracker {
    pending: HashMap<Key, Pending>,
    /// Arrival order per [`Awaits`] (`[Status, Body]`: each has its own wait), for expiry and
    /// eviction; entries whose `seq` no longer matches are stale.
    order: [VecDeque<(Instant, Key, u64)>; 2],
    ready: Vec<KernelEvent>,
    seq: u64,
}

impl HttpTracker {
    /// A new request head on `key`; any request still waiting there is done.
    pub fn request(&mut self, key: Key, event: KernelEvent, need_body: bool, awaits: Awaits) {
        self.finish(key);
        self.seq += 1;
        self.pending.insert(
            key,
            Pending {
                event,
                need_body,
                awaits,
                seq: self.seq,
            },
        );
        self.order[awaits as usize].push_back((Instant::now(), key, self.seq));
        while self.pending.len() > PENDING_MAX {
            let Some((_, oldest, seq)) = self.order[Awaits::Status as usize]
                .pop_front()
                .or_else(|| self.order[Awaits::Body as usize].pop_front())
            else {
                break;
            };
            if self.pending.get(&oldest).is_some_and(|p| p.seq == seq) {
                self.finish(oldest);
            }
        }
    }

    /// The write after a head on `key`: the body's start, read for `model` when still needed.
    pub fn body(&mut self, key: Key, data: &[u8]) {
        if let Some(p) = self.pending.get_mut(&key)
            && p.need_body
        {
            p.need_body = false;
            if let Detail::HttpRequest(h) = &mut p.event.detail {
                h.model = http::model(data);
            }
            if p.awaits == Awaits::Body {
                self.finish(key);
            }
        }
    }

    /// The response's status line on `key`, seen at `end_ns` (Unix): the request is complete.
    pub fn response(&mut self, key: Key, status: u16, end_ns: u64) {
        if let Some(mut p) = self.pending.remove(&key) {
            if let Detail::HttpRequest(h) = &mut p.event.detail {
                h.status = Some(status);
            }
            p.event.end_ns = end_ns.max(p.event.start_ns);
            self.ready.push(p.event);
        }
    }

    /// Releases requests that waited for their status longer than `status_wait`, or for their
    /// body longer than `body_wait`.
    pub fn expire(&mut self, now: Instant, status_wait: Duration, body_wait: Duration) {
        for (awaits, wait) in [(Awaits::Status, status_wait), (Awaits::Body, body_wait)] {
            while let Some(&(since, key, seq)) = self.order[awaits as usize].front() {
                let current = self.pending.get(&key).is_some_and(|p| p.seq == seq);
                if current && now.duration_since(since) < wait {
                    break;
                }
                self.order[awaits as usize].pop_front();
                if current {
                    self.finish(key);
                }
            }
        }
    }

    /// Releases every waiting request (shutdown).
    pub fn flush(&mut self) {
        let keys: Vec<Key> = self
            .order
            .iter_mut()
            .flat_map(|o| o.drain(..).map(|(_, k, _)| k))
            .collect();
        for key in keys {
            self.finish(key);
        }
    }

    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Moves the completed requests to `out`.
    pub fn take_ready(&mut self, out: &mut Vec<KernelEvent>) {
        out.append(&mut self.ready);
    }

    fn finish(&mut self, key: Key) {
        if let Some(p) = self.pending.remove(&key) {
            self.ready.push(p.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use runbom_event::{Capture, HttpRequest};

    fn request(start_ns: u64) -> KernelEvent {
        KernelEvent {
            pid: 1,
            tid: 1,
            cgroup_id: 0,
            start_ns,
            end_ns: start_ns,
            process: Arc::default(),
            detail: Detail::HttpRequest(Box::new(HttpRequest {
                capture: Capture::Openssl,
                method: "POST".into(),
                host: None,
                target: "/".into(),
                peer: None,
                traceparent: None,
                user_agent: None,
                body_size: Some(10),
                model: None,
                status: None,
                genai: None,
            })),
        }
    }

    fn detail(e: &KernelEvent) -> &HttpRequest {
        let Detail::HttpRequest(h) = &e.detail else {
            panic!("not http")
        };
        h
    }

    #[test]
    fn body_then_status_completes() {
        let mut t = HttpTracker::default();
        t.request((1, 7), request(100), true, Awaits::Status);
        t.body((1, 7), br#"{"model":"m1"}"#);
        t.body((1, 7), br#"{"model":"later"}"#);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert!(out.is_empty());
        t.response((1, 7), 200, 500);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(detail(&out[0]).model.as_deref(), Some("m1"));
        assert_eq!(detail(&out[0]).status, Some(200));
        assert_eq!((out[0].start_ns, out[0].end_ns), (100, 500));
        assert!(!t.has_pending());
    }

    #[test]
    fn plaintext_completes_with_its_body() {
        let mut t = HttpTracker::default();
        let key = socket_key(1, 5);
        assert_ne!(key, (1, 5));
        t.request(key, request(1), true, Awaits::Body);
        t.body(key, br#"{"model":"llama3"}"#);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(detail(&out[0]).model.as_deref(), Some("llama3"));
        assert!(!t.has_pending());
    }

    #[test]
    fn requests_are_never_lost() {
        let mut t = HttpTracker::default();
        t.request((1, 7), request(1), false, Awaits::Status);
        t.request((1, 7), request(2), false, Awaits::Status); // next request on the connection
        t.request((2, 7), request(3), false, Awaits::Status);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        t.request(socket_key(1, 3), request(5), true, Awaits::Body);
        t.expire(
            Instant::now(),
            Duration::from_mins(1),
            Duration::from_mins(1),
        );
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1, "nothing waited long enough");
        t.expire(Instant::now(), Duration::from_mins(1), Duration::ZERO);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 2, "a body is not waited for as long as a status");
        t.expire(Instant::now(), Duration::ZERO, Duration::ZERO);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|e| detail(e).status.is_none()));
        t.request((3, 7), request(4), false, Awaits::Status);
        t.request(socket_key(3, 7), request(6), true, Awaits::Body);
        t.flush();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 6);
        assert!(!t.has_pending());
    }
}
