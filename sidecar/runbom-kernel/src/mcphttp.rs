//! MCP over streamable HTTP: a JSON-RPC request (or notification) in the body of an HTTP
//! request becomes the sender's `mcp.client` event, paired with the message that answers its
//! `id` in the response — an `application/json` body, or one of the `data:` events of a
//! `text/event-stream` body — read from the response captures of the request's connection
//! ([`crate::httptrack`] hands them over, unchunked and decompressed here). `mcp.session.id` is
//! the digest of the request's `Mcp-Session-Id` header, or for `initialize` of the one the
//! response assigns.
//!
//! Where no response is captured (a plaintext request whose response the kernel does not
//! read), the call is exported unanswered when its request completes.

use runbom_event::{
    Capture, Detail, KernelEvent, McpTransport,
    jsonrpc::{self, Kind, Message},
};
use runbom_genai::framing;

use crate::mcptrack;

/// Most bytes of a response kept to find the answer (an MCP answer is small; a tool's large
/// result is read for what its prefix says).
const RESPONSE_MAX: usize = 256 << 10;

/// An MCP message in an HTTP request, waiting for its answer.
#[derive(Debug)]
pub struct McpHttp {
    request: Message,
    session_id: Option<String>,
    response: Vec<u8>,
    complete: framing::Completion,
    /// How much of `response` the last look for the answer read (0: none yet).
    read_at: usize,
    answer: Option<Message>,
    /// Bytes read by all looks for the answer.
    #[cfg(test)]
    bytes_read: usize,
}

impl McpHttp {
    /// The JSON-RPC request or notification `body` carries (the first, of a batch), with the
    /// request's `Mcp-Session-Id`; `None` when the body is no JSON-RPC request.
    #[must_use]
    pub fn from_body(body: &[u8], session_id: Option<String>) -> Option<Box<Self>> {
        if body.trim_ascii_start().first() != Some(&b'{') && body.first() != Some(&b'[') {
            return None;
        }
        let request = jsonrpc::parse_messages(body, true, &[])
            .into_iter()
            .find(|m| matches!(m.kind, Some(Kind::Request | Kind::Notification)))?;
        Some(Box::new(Self {
            request,
            session_id,
            response: Vec::new(),
            complete: framing::Completion::default(),
            read_at: 0,
            answer: None,
            #[cfg(test)]
            bytes_read: 0,
        }))
    }

    /// Whether an answer is expected (a request; a notification has none).
    #[must_use]
    pub fn awaits_answer(&self) -> bool {
        self.request.kind == Some(Kind::Request)
    }

    /// More bytes of the response (status line first); true once the answer was found, or
    /// nothing more can tell it (the response is whole, or the budget is spent).
    pub fn response_data(&mut self, data: &[u8]) -> bool {
        let room = RESPONSE_MAX.saturating_sub(self.response.len());
        self.response
            .extend_from_slice(&data[..data.len().min(room)]);
        let full = data.len() > room;
        let whole = self.complete.check(&self.response);
        // A message still being received is read only when nothing more will come.
        let last = whole || full;
        // Looking for the answer reads everything captured so far (the body unchunked and
        // inflated, each message parsed), and a response can arrive one byte per read: looking
        // on every read would cost the square of its size on the ring reader's thread. So it
        // looks at the first bytes, when nothing more will come, and when the response has
        // grown by an eighth since the last look. The sizes looked at then grow by at least
        // 9/8 each time, so all looks together read at most about ten times the response, and
        // an answer is found by the time the response is an eighth longer than where the
        // answer ends (or when the response is whole, or the call leaves: [`Self::event`]).
        // The head is parsed once, by `complete`.
        let grown = self.response.len() - self.read_at;
        if last || grown >= (self.read_at / 8).max(1) {
            self.read_answer(last);
        }
        self.answer.is_some() || last
    }

    /// Looks for the answer in the whole response captured so far; `last`: nothing more will
    /// come, so a message cut short is taken as it is.
    fn read_answer(&mut self, last: bool) {
        self.read_at = self.response.len();
        #[cfg(test)]
        {
            self.bytes_read += self.response.len();
        }
        let Some(head) = self.complete.head() else {
            return;
        };
        if self.session_id.is_none() {
            self.session_id = session_header(&self.response[..head.body_offset]);
        }
        let (body, cut) = framing::body(&self.response, head, RESPONSE_MAX);
        let id = &self.request.id;
        self.answer = jsonrpc::parse_messages(&body, !cut, &[])
            .into_iter()
            .find(|m| {
                m.kind != Some(Kind::Request)
                    && m.id.is_some()
                    && m.id == *id
                    && (last || !m.truncated)
            });
    }

    /// The `mcp.client` event of the call whose HTTP request is `http` (its process, thread and
    /// times; the end is the response's when one was read). Bytes of the response captured
    /// since the last look are looked at first.
    #[must_use]
    pub fn event(&mut self, http: &KernelEvent) -> KernelEvent {
        if self.answer.is_none() && self.read_at < self.response.len() {
            self.read_answer(false);
        }
        let mut call = mcptrack::call(
            runbom_event::McpSide::Client,
            &self.request,
            McpTransport::Tcp,
        );
        call.session_id.clone_from(&self.session_id);
        call.server_url = server_url(http);
        if let Some(a) = &self.answer {
            mcptrack::answer(&mut call, a);
        }
        KernelEvent {
            pid: http.pid,
            tid: http.tid,
            cgroup_id: http.cgroup_id,
            start_ns: http.start_ns,
            end_ns: if self.answer.is_some() {
                http.end_ns
            } else {
                http.start_ns
            },
            process: http.process.clone(),
            detail: Detail::Mcp(call),
        }
    }
}

/// Where the HTTP request `http` went: `https://` inside TLS, its `Host` (else its peer) and
/// its target (query values redacted).
fn server_url(http: &KernelEvent) -> Option<String> {
    let Detail::HttpRequest(h) = &http.detail else {
        return None;
    };
    let host = h.host.clone().or_else(|| h.peer.map(|p| p.to_string()))?;
    let scheme = if matches!(h.capture, Capture::Socket) {
        "http"
    } else {
        "https"
    };
    Some(format!("{scheme}://{host}{}", h.target))
}

/// The `Mcp-Session-Id` of a response head, as its digest, like a request's
/// ([`runbom_event::http::Head::mcp_session_id`]).
fn session_header(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("mcp-session-id")
            .then(|| runbom_event::redact::digest(value.trim()))
    })
}

#[cfg(test)]
#[path = "mcphttp_tests.rs"]
mod tests;
