//! Requests waiting for the rest of what describes them: the body write that follows the head
//! (for `model`) and, inside TLS, the response. Keyed by `(pid, SSL*)` or `(pid, fd)`
//! ([`socket_key`]): one connection carries one request at a time in HTTP/1.x.
//!
//! A request to an LLM API (`runbom_genai::detect`) keeps its body's start and, with GenAI
//! reading on, what the capture saw of its response (bounded per response and in total): it
//! completes when the response is whole (`Content-Length`, the last chunk) and is then read into
//! `gen_ai.*` attributes. Any other request completes at its status.
//!
//! A request leaves the table when it completes, when the next request on the same connection
//! starts, when it waited [`RESPONSE_WAIT`] without news, when the table is full (oldest first)
//! or at shutdown — never dropped: without a status it is exported without one, and an LLM
//! response seen in part is read for what it holds (`runbom.gen_ai.partial`).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use runbom_event::{Detail, KernelEvent, http};
use runbom_genai::{Completion, Exchange, Options};

use crate::mcphttp::McpHttp;

/// Longest a request waits for its response's status, or for the next bytes of its response
/// (LLM calls take seconds; streams pause between events).
pub const RESPONSE_WAIT: Duration = Duration::from_secs(30);
/// Longest a plaintext request waits for its body (the kernel side takes a body for a head only
/// within a second of it).
pub const BODY_WAIT: Duration = Duration::from_secs(2);
/// Most requests waiting at once.
const PENDING_MAX: usize = 4096;
/// Most bytes of one LLM response held (the kernel's budget is the other bound).
const RESPONSE_MAX: usize = 1 << 20;
/// Most bytes of LLM calls (request bodies and responses) held at once, over every waiting
/// request.
const HELD_MAX: usize = 64 << 20;
/// Most entries in one expiry order: past it, the stale ones (requests that left while an
/// older one held the front) are dropped.
const ORDER_MAX: usize = 2 * PENDING_MAX;
/// Most bytes of an LLM request body held.
const REQUEST_BODY_MAX: usize = 64 << 10;

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
    /// The response's status (after the body, if `need_body`), or the rest of an LLM response.
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
    /// When the request last had news (its head, bytes of its response): its wait runs from
    /// there. Its entry in the order is moved up to it only when the entry comes due.
    news: Instant,
    /// Set for requests to an LLM API when GenAI reading is on.
    llm: Option<Box<Llm>>,
    /// An MCP message in the body (streamable HTTP), waiting for its answer.
    mcp: Option<Box<McpHttp>>,
    /// The head's `Mcp-Session-Id`, until the body tells whether this is MCP.
    session: Option<String>,
}

/// What an LLM request keeps until its response is whole.
#[derive(Default)]
struct Llm {
    request_body: Vec<u8>,
    response: Vec<u8>,
    completion: Completion,
    /// Bytes of the response were not kept (budget, order).
    cut: bool,
}

#[derive(Default)]
pub struct HttpTracker {
    pending: HashMap<Key, Pending>,
    /// Arrival order per [`Awaits`] (`[Status, Body]`: each has its own wait), for expiry and
    /// eviction, oldest first: one entry per waiting request, queued at its head and requeued
    /// at its last news when it comes due. Entries whose `seq` no longer matches are stale
    /// (the request left) and are dropped at the front, or all at once past [`ORDER_MAX`].
    order: [VecDeque<(Instant, Key, u64)>; 2],
    ready: Vec<KernelEvent>,
    seq: u64,
    /// GenAI reading (`None`: off).
    genai: Option<Options>,
    /// LLM request body and response bytes held over every waiting request.
    held: usize,
}

impl HttpTracker {
    /// Reads LLM exchanges with `options` (`None`: requests complete at their status).
    #[must_use]
    pub fn with_genai(mut self, options: Option<Options>) -> Self {
        self.genai = options;
        self
    }

    /// Whether `event` is a request to an LLM API whose response is read (GenAI reading on).
    #[must_use]
    pub fn reads_response(&self, event: &KernelEvent) -> bool {
        self.genai.is_some()
            && matches!(&event.detail, Detail::HttpRequest(h)
                if runbom_genai::detect(h.host.as_deref(), &h.target).is_some())
    }

    /// A new request head on `key` with the body bytes its write held and its
    /// `Mcp-Session-Id`; any request still waiting there is done.
    pub fn request(
        &mut self,
        key: Key,
        event: KernelEvent,
        need_body: bool,
        awaits: Awaits,
        body: &[u8],
        session: Option<String>,
    ) {
        self.finish(key);
        let mcp = McpHttp::from_body(body, session.clone());
        self.seq += 1;
        let llm = match (&event.detail, self.genai) {
            (Detail::HttpRequest(h), Some(_))
                if runbom_genai::detect(h.host.as_deref(), &h.target).is_some() =>
            {
                let mut llm = Box::<Llm>::default();
                self.held += llm.request_data(body, self.held);
                Some(llm)
            }
            _ => None,
        };
        let now = Instant::now();
        self.pending.insert(
            key,
            Pending {
                event,
                need_body,
                awaits,
                seq: self.seq,
                news: now,
                llm,
                mcp,
                session,
            },
        );
        let order = &mut self.order[awaits as usize];
        if order.len() >= ORDER_MAX {
            let pending = &self.pending;
            order.retain(|&(_, k, seq)| pending.get(&k).is_some_and(|p| p.seq == seq));
        }
        order.push_back((now, key, self.seq));
        if awaits == Awaits::Body && !need_body {
            // Its body was in the head's write (an MCP message, read above): nothing to wait for.
            self.finish(key);
        }
        // The request with the oldest news goes first.
        while self.pending.len() > PENDING_MAX {
            let Some(a) = [Awaits::Status as usize, Awaits::Body as usize]
                .into_iter()
                .find(|&a| !self.order[a].is_empty())
            else {
                break;
            };
            let (since, oldest, seq) = self.order[a][0];
            match self.news(oldest, seq) {
                Some(news) if news > since => self.requeue(a, news),
                news => {
                    self.order[a].pop_front();
                    if news.is_some() {
                        self.finish(oldest);
                    }
                }
            }
        }
    }

    /// The write after a head on `key`: the body's start, read for `model` when still needed
    /// and for an MCP message.
    pub fn body(&mut self, key: Key, data: &[u8]) {
        if let Some(p) = self.pending.get_mut(&key)
            && p.need_body
        {
            p.need_body = false;
            if let Detail::HttpRequest(h) = &mut p.event.detail
                && h.model.is_none()
            {
                h.model = http::model(data);
            }
            if p.mcp.is_none() {
                p.mcp = McpHttp::from_body(data, p.session.take());
            }
            if let Some(llm) = &mut p.llm {
                self.held += llm.request_data(data, self.held);
            }
            if p.awaits == Awaits::Body {
                self.finish(key);
            }
        }
    }

    /// The response's first bytes on `key` (status line first), seen at `end_ns` (Unix): a
    /// request that is no LLM call is complete; an LLM call waits for the rest.
    pub fn response(&mut self, key: Key, status: u16, data: &[u8], end_ns: u64) {
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        if let Detail::HttpRequest(h) = &mut p.event.detail {
            h.status = Some(status);
        }
        p.event.end_ns = end_ns.max(p.event.start_ns);
        if p.llm.is_some() || p.mcp.as_ref().is_some_and(|m| m.awaits_answer()) {
            self.response_data(key, data, end_ns);
        } else {
            self.finish(key);
        }
    }

    /// More bytes of the response on `key` (its body, read after the status).
    pub fn response_data(&mut self, key: Key, data: &[u8], end_ns: u64) {
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        let status_seen = matches!(&p.event.detail, Detail::HttpRequest(h) if h.status.is_some());
        if !status_seen {
            // Bytes of a response whose status was not seen: nothing to read them against.
            return;
        }
        if let Some(m) = &mut p.mcp
            && p.llm.is_none()
        {
            p.event.end_ns = end_ns.max(p.event.start_ns);
            if m.response_data(data) {
                self.finish(key);
            } else {
                p.news = Instant::now();
            }
            return;
        }
        let Some(llm) = &mut p.llm else { return };
        p.event.end_ns = end_ns.max(p.event.start_ns);
        let keep = keep_within(
            &mut llm.response,
            data,
            RESPONSE_MAX,
            HELD_MAX.saturating_sub(self.held),
        );
        llm.cut |= keep < data.len();
        self.held += keep;
        if llm.completion.check(&llm.response) || llm.cut {
            self.finish(key);
            return;
        }
        // Waiting is for news: the wait starts again.
        p.news = Instant::now();
    }

    /// Releases requests that had no news for longer than `status_wait` while waiting for
    /// their status or response, or than `body_wait` while waiting for their body.
    pub fn expire(&mut self, now: Instant, status_wait: Duration, body_wait: Duration) {
        for (awaits, wait) in [(Awaits::Status, status_wait), (Awaits::Body, body_wait)] {
            let a = awaits as usize;
            while let Some(&(since, key, seq)) = self.order[a].front() {
                let news = self.news(key, seq);
                match news {
                    Some(_) if now.duration_since(since) < wait => break,
                    // Due, but it had news since: its wait runs from there.
                    Some(news) if news > since => self.requeue(a, news),
                    _ => {
                        self.order[a].pop_front();
                        if news.is_some() {
                            self.finish(key);
                        }
                    }
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

    /// The last news of the request an entry `(_, key, seq)` stands for (`None`: stale).
    fn news(&self, key: Key, seq: u64) -> Option<Instant> {
        self.pending
            .get(&key)
            .filter(|p| p.seq == seq)
            .map(|p| p.news)
    }

    /// Moves the front entry of order `a` to the place of its request's last news, `news`
    /// (the order stays oldest first; news is recent, so the place is near the back).
    fn requeue(&mut self, a: usize, news: Instant) {
        let order = &mut self.order[a];
        if let Some((_, key, seq)) = order.pop_front() {
            let at = order.partition_point(|&(t, _, _)| t <= news);
            order.insert(at, (news, key, seq));
        }
    }

    fn finish(&mut self, key: Key) {
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        if let (Some(llm), Some(options), Detail::HttpRequest(h)) =
            (p.llm, self.genai, &mut p.event.detail)
        {
            self.held -= llm.request_body.len() + llm.response.len();
            let complete = !llm.cut && llm.completion.clone().check(&llm.response);
            let genai = runbom_genai::parse(
                &Exchange {
                    host: h.host.as_deref(),
                    target: &h.target,
                    request_body: &llm.request_body,
                    response: &llm.response,
                    response_cut: !complete,
                },
                options,
            );
            if let Some(g) = genai {
                if h.model.is_none() {
                    h.model.clone_from(&g.request_model);
                }
                h.genai = Some(Box::new(g));
            }
        }
        let mcp = p.mcp.map(|mut m| m.event(&p.event));
        self.ready.push(p.event);
        self.ready.extend(mcp);
    }
}

impl Llm {
    /// Bytes of the request body, within its bound and what the tracker may still hold (it
    /// holds `held`); returns the bytes kept.
    fn request_data(&mut self, data: &[u8], held: usize) -> usize {
        keep_within(
            &mut self.request_body,
            data,
            REQUEST_BODY_MAX,
            HELD_MAX.saturating_sub(held),
        )
    }
}

/// Appends to `to` what of `data` keeps it within `max` bytes and takes at most `room` more;
/// returns the bytes kept.
pub(crate) fn keep_within(to: &mut Vec<u8>, data: &[u8], max: usize, room: usize) -> usize {
    let keep = data.len().min(room.min(max.saturating_sub(to.len())));
    to.extend_from_slice(&data[..keep]);
    keep
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
                version: runbom_event::HttpVersion::Http1,
                grpc: None,
                genai: None,
                fd: None,
            })),
        }
    }

    fn llm_request(start_ns: u64) -> KernelEvent {
        let mut e = request(start_ns);
        if let Detail::HttpRequest(h) = &mut e.detail {
            h.host = Some("api.openai.com".into());
            h.target = "/v1/chat/completions".into();
        }
        e
    }

    #[test]
    fn llm_calls_wait_for_their_whole_response_and_are_read() {
        let mut t = HttpTracker::default().with_genai(Some(Options::default()));
        t.request((1, 7), llm_request(100), true, Awaits::Status, b"", None);
        t.body((1, 7), br#"{"model":"gpt-4o-mini","max_tokens":50}"#);
        let body = br#"{"id":"chatcmpl-1","model":"gpt-4o-mini-2024-07-18","choices":[{"finish_reason":"stop","message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut out = Vec::new();
        t.response((1, 7), 200, head.as_bytes(), 200);
        t.response_data((1, 7), &body[..40], 300);
        t.take_ready(&mut out);
        assert!(out.is_empty(), "the response is not whole yet");
        t.response_data((1, 7), &body[40..], 400);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_ns, 400);
        let g = detail(&out[0])
            .genai
            .as_deref()
            .expect("read as an LLM call");
        assert_eq!((g.input_tokens, g.output_tokens), (Some(9), Some(2)));
        assert_eq!(g.max_tokens, Some(50));
        assert_eq!(g.finish_reasons, ["stop"]);
        assert!(!g.partial);
        assert_eq!(t.held, 0);
        // Cut short (the next request on the connection): read for what was seen.
        t.request((1, 7), llm_request(500), false, Awaits::Status, b"", None);
        t.response((1, 7), 200, head.as_bytes(), 600);
        t.request((1, 7), request(700), false, Awaits::Status, b"", None);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 2);
        assert!(detail(&out[1]).genai.as_ref().is_some_and(|g| g.partial));
        // Without GenAI reading, an LLM call completes at its status.
        let mut t = HttpTracker::default();
        t.request((1, 7), llm_request(100), false, Awaits::Status, b"", None);
        t.response((1, 7), 200, head.as_bytes(), 200);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 3);
        assert!(detail(&out[2]).genai.is_none());
    }

    /// LLM request bodies count in the tracker's bound with the responses: 4 096 requests of
    /// 64 KiB would hold 256 MiB.
    #[test]
    fn llm_request_bodies_held_are_bounded_over_all_requests() {
        let mut t = HttpTracker::default().with_genai(Some(Options::default()));
        let body = vec![b' '; REQUEST_BODY_MAX];
        for fd in 0..PENDING_MAX as u64 {
            t.request((1, fd), llm_request(fd), true, Awaits::Status, b"{", None);
            t.body((1, fd), &body);
            assert!(t.held <= HELD_MAX, "{} bytes held", t.held);
        }
        assert_eq!(t.held, HELD_MAX, "the budget is used, and no more");
        t.flush();
        assert_eq!(t.held, 0);
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
        t.request((1, 7), request(100), true, Awaits::Status, b"", None);
        t.body((1, 7), br#"{"model":"m1"}"#);
        t.body((1, 7), br#"{"model":"later"}"#);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert!(out.is_empty());
        t.response((1, 7), 200, b"HTTP/1.1 200 OK\r\n", 500);
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
        t.request(key, request(1), true, Awaits::Body, b"", None);
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
        t.request((1, 7), request(1), false, Awaits::Status, b"", None);
        t.request((1, 7), request(2), false, Awaits::Status, b"", None); // next request on the connection
        t.request((2, 7), request(3), false, Awaits::Status, b"", None);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        t.request(socket_key(1, 3), request(5), true, Awaits::Body, b"", None);
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
        t.request((3, 7), request(4), false, Awaits::Status, b"", None);
        t.request(socket_key(3, 7), request(6), true, Awaits::Body, b"", None);
        t.flush();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 6);
        assert!(!t.has_pending());
    }

    #[test]
    fn response_chunks_keep_one_entry_and_each_restarts_the_wait() {
        let mut t = HttpTracker::default().with_genai(Some(Options::default()));
        // An older request holds the front of the queue, as a hostile process's would.
        t.request((1, 5), request(50), false, Awaits::Status, b"", None);
        let key = (1, 7);
        t.request(key, llm_request(100), false, Awaits::Status, b"", None);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        t.response(key, 200, head.as_bytes(), 200);
        for i in 0..100_000 {
            t.response_data(key, b":\n", 300 + i);
            t.expire(Instant::now(), RESPONSE_WAIT, BODY_WAIT);
        }
        let queued = t.order[Awaits::Status as usize].len();
        assert!(queued <= 3, "{queued} entries queued for two requests");
        let wait = Duration::from_millis(20);
        std::thread::sleep(wait * 2);
        t.response_data(key, b":\n", 200_000);
        let last = Instant::now();
        let mut out = Vec::new();
        t.expire(last, wait, wait);
        t.take_ready(&mut out);
        assert_eq!(
            out.len(),
            1,
            "the wait runs from the last chunk, not the first"
        );
        assert_eq!(
            out[0].start_ns, 50,
            "only the silent request waited long enough"
        );
        assert!(t.order[Awaits::Status as usize].len() <= 2);
        t.expire(last + wait, wait, wait);
        t.take_ready(&mut out);
        assert_eq!(out.len(), 2, "released a wait after its last chunk");
        assert_eq!(out[1].end_ns, 200_000);
        assert!(detail(&out[1]).genai.as_ref().is_none_or(|g| g.partial));
        assert!(t.order.iter().all(VecDeque::is_empty));
        assert_eq!(t.held, 0);
    }

    #[test]
    fn requests_that_left_leave_a_bounded_order() {
        let mut t = HttpTracker::default();
        // An older request holds the front while 100,000 others come and complete.
        t.request((1, 5), request(1), false, Awaits::Status, b"", None);
        for i in 0..100_000 {
            t.request((2, 7), request(i), false, Awaits::Status, b"", None);
            t.response((2, 7), 200, b"HTTP/1.1 200 OK\r\n", i);
            t.expire(Instant::now(), RESPONSE_WAIT, BODY_WAIT);
        }
        let queued = t.order[Awaits::Status as usize].len();
        assert!(
            queued <= ORDER_MAX,
            "{queued} entries queued for one request"
        );
        t.expire(Instant::now(), Duration::ZERO, Duration::ZERO);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 100_001);
        assert!(t.order.iter().all(VecDeque::is_empty));
    }

    #[test]
    fn a_full_table_lets_the_request_with_the_oldest_news_go() {
        let mut t = HttpTracker::default().with_genai(Some(Options::default()));
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        t.request((1, 0), llm_request(1), false, Awaits::Status, b"", None);
        t.response((1, 0), 200, head.as_bytes(), 2);
        for i in 1..PENDING_MAX as u64 {
            t.request((1, i), request(10 + i), false, Awaits::Status, b"", None);
        }
        // The first request is still streaming: the first silent one goes in its place.
        t.response_data((1, 0), b":\n", 3);
        t.request((2, 0), request(1), false, Awaits::Status, b"", None);
        let mut out = Vec::new();
        t.take_ready(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start_ns, 11);
        assert!(t.pending.contains_key(&(1, 0)));
    }
}
