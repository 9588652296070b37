//! Streamable-HTTP MCP calls paired through the HTTP tracker, on bytes the official Python SDK
//! (client and server) wrote (`fixtures/mcp-http/`); and what looking for an answer costs when
//! a large response arrives one byte per read.

use std::sync::Arc;

use runbom_event::{
    Capture, Detail, HttpRequest, KernelEvent, McpCall, McpTransport, http, redact,
};

use super::McpHttp;
use crate::httptrack::{Awaits, HttpTracker, Key, socket_key};

const SSE_INIT_REQ: &[u8] = include_bytes!("../fixtures/mcp-http/sse-initialize.req");
const SSE_INIT_RESP: &[u8] = include_bytes!("../fixtures/mcp-http/sse-initialize.resp");
const SSE_NOTE_REQ: &[u8] = include_bytes!("../fixtures/mcp-http/sse-initialized.req");
const SSE_NOTE_RESP: &[u8] = include_bytes!("../fixtures/mcp-http/sse-initialized.resp");
const SSE_CALL_REQ: &[u8] = include_bytes!("../fixtures/mcp-http/sse-tools-call.req");
const SSE_CALL_RESP: &[u8] = include_bytes!("../fixtures/mcp-http/sse-tools-call.resp");
const JSON_REQS: &[u8] = include_bytes!("../fixtures/mcp-http/json-keepalive.req");
const JSON_RESPS: &[u8] = include_bytes!("../fixtures/mcp-http/json-keepalive.resp");
const SESSION: &str = "bc13c781d8024b7d92bed6f1aff773d1";
const KEY: Key = (1, 7);

/// The HTTP event enrich makes of a request head, its `Mcp-Session-Id` and body bytes.
fn head(req: &[u8], start_ns: u64) -> (KernelEvent, Option<String>, &[u8]) {
    let h = http::parse_head(req).expect("a request head");
    let body = &req[h.body_offset.expect("a whole head")..];
    let event = KernelEvent {
        pid: 1,
        tid: 1,
        cgroup_id: 0,
        start_ns,
        end_ns: start_ns,
        process: Arc::default(),
        detail: Detail::HttpRequest(Box::new(HttpRequest {
            capture: Capture::Openssl,
            method: h.method,
            host: h.host,
            target: h.target,
            peer: None,
            traceparent: None,
            user_agent: h.user_agent,
            body_size: h.content_length,
            model: None,
            status: None,
            version: runbom_event::HttpVersion::Http1,
            grpc: None,
            genai: None,
            fd: None,
        })),
    };
    (event, h.mcp_session_id, body)
}

/// The request as a TLS capture sees it (head, then body in the next write), then its response
/// in reads of `piece` bytes; the events released.
fn exchange(req: &[u8], resp: &[u8], piece: usize) -> Vec<KernelEvent> {
    let mut t = HttpTracker::default();
    let (event, session, body) = head(req, 100);
    t.request(KEY, event, true, Awaits::Status, b"", session);
    t.body(KEY, body);
    let status = http::status(resp).expect("a status line");
    let mut pieces = resp.chunks(piece);
    t.response(KEY, status, pieces.next().unwrap_or_default(), 200);
    for (i, p) in pieces.enumerate() {
        t.response_data(KEY, p, 300 + i as u64);
    }
    let mut out = Vec::new();
    t.take_ready(&mut out);
    out
}

fn mcp(events: &[KernelEvent]) -> &McpCall {
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::Mcp(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    calls[0]
}

#[test]
fn initialize_over_an_event_stream_is_paired_and_takes_the_session_it_is_given() {
    for piece in [64, 4096] {
        let out = exchange(SSE_INIT_REQ, SSE_INIT_RESP, piece);
        assert_eq!(out.len(), 2, "the HTTP request and its MCP call: {out:?}");
        let c = mcp(&out);
        assert_eq!(c.method, "initialize");
        assert_eq!(c.request_id.as_deref(), Some("1"));
        assert!(c.answered, "{c:?}");
        assert_eq!(c.transport, McpTransport::Tcp);
        assert_eq!(c.server_name.as_deref(), Some("runbom-helpdesk"));
        assert_eq!(c.protocol_version.as_deref(), Some("2025-11-25"));
        // The response assigns the session (the request had none).
        assert_eq!(
            c.session_id,
            Some(redact::digest(SESSION)),
            "exported as its digest"
        );
        let call = out
            .iter()
            .find(|e| matches!(e.detail, Detail::Mcp(_)))
            .unwrap();
        assert_eq!(call.start_ns, 100);
        assert!(call.end_ns >= 200, "ends at the response: {call:?}");
    }
}

#[test]
fn a_tool_call_carries_its_session_and_tool_and_is_answered_from_the_stream() {
    let out = exchange(SSE_CALL_REQ, SSE_CALL_RESP, 100);
    let c = mcp(&out);
    assert_eq!(c.span_name(), "tools/call add_ticket_comment");
    assert_eq!(c.target.as_deref(), Some("add_ticket_comment"));
    assert_eq!(c.request_id.as_deref(), Some("3"));
    assert_eq!(
        c.session_id,
        Some(redact::digest(SESSION)),
        "exported as its digest"
    );
    assert!(c.answered && !c.tool_error, "{c:?}");
    // Which server: where the request went (inside TLS here).
    assert_eq!(c.server_url.as_deref(), Some("https://127.0.0.1:18792/mcp"));
}

#[test]
fn a_notification_is_its_senders_call_at_once() {
    let out = exchange(SSE_NOTE_REQ, SSE_NOTE_RESP, 4096);
    let c = mcp(&out);
    assert_eq!(c.method, "notifications/initialized");
    assert_eq!(c.request_id, None);
    assert_eq!(
        c.session_id,
        Some(redact::digest(SESSION)),
        "exported as its digest"
    );
}

/// `application/json` answers on one keep-alive connection: each request is paired with the
/// response read after it, the next request releases nothing early.
#[test]
fn json_answers_on_a_keep_alive_connection() {
    let split = |all: &'static [u8], at: &[&[u8]]| -> Vec<&'static [u8]> {
        let mut starts: Vec<usize> = (0..all.len())
            .filter(|&i| at.iter().any(|m| all[i..].starts_with(m)))
            .collect();
        starts.push(all.len());
        starts.windows(2).map(|w| &all[w[0]..w[1]]).collect()
    };
    let reqs = split(JSON_REQS, &[b"POST /mcp", b"DELETE /mcp"]);
    let resps = split(JSON_RESPS, &[b"HTTP/1.1 "]);
    assert_eq!((reqs.len(), resps.len()), (3, 3));
    let mut t = HttpTracker::default();
    let mut out = Vec::new();
    for (i, (req, resp)) in reqs.iter().zip(&resps).enumerate() {
        let (event, session, body) = head(req, 100 * i as u64);
        t.request(KEY, event, false, Awaits::Status, body, session);
        t.response(
            KEY,
            http::status(resp).expect("status"),
            resp,
            100 * i as u64 + 50,
        );
        t.take_ready(&mut out);
    }
    let calls: Vec<&McpCall> = out
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::Mcp(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    let names: Vec<String> = calls.iter().map(|c| c.span_name()).collect();
    assert_eq!(
        names,
        ["tools/list", "tools/call add_ticket_comment"],
        "the DELETE is no call"
    );
    assert!(calls.iter().all(|c| c.answered), "{calls:?}");
    assert_eq!(calls[0].tools, ["add_ticket_comment"]);
    assert_eq!(out.len(), 5, "three HTTP requests, two MCP calls");
}

/// Plaintext: no response is captured (yet); the call leaves with its request, unanswered.
#[test]
fn a_plaintext_call_without_a_response_capture_leaves_with_its_request() {
    let mut t = HttpTracker::default();
    let key = socket_key(1, 9);
    let (event, session, body) = head(SSE_CALL_REQ, 100);
    // Head and body in separate writes, as httpx writes them.
    t.request(key, event, true, Awaits::Body, b"", session.clone());
    t.body(key, body);
    let mut out = Vec::new();
    t.take_ready(&mut out);
    let c = mcp(&out);
    assert!(!c.answered);
    assert_eq!(
        c.session_id,
        Some(redact::digest(SESSION)),
        "exported as its digest"
    );
    // Head and body in one write.
    let (event, _, body) = head(SSE_CALL_REQ, 200);
    t.request(key, event, false, Awaits::Body, body, session);
    let mut out = Vec::new();
    t.take_ready(&mut out);
    assert_eq!(mcp(&out).span_name(), "tools/call add_ticket_comment");
}

#[test]
fn bodies_that_are_no_json_rpc_make_no_call() {
    let mut t = HttpTracker::default();
    let req = b"POST /v1/x HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"b\",\"c\"}";
    let (event, session, body) = head(req, 1);
    t.request(KEY, event, false, Awaits::Status, body, session);
    t.response(
        KEY,
        200,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        2,
    );
    let mut out = Vec::new();
    t.take_ready(&mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].detail, Detail::HttpRequest(_)));
}

/// `response` given to `m` one byte per read: the length at which `m` said it was done. After
/// every read, the bytes all looks for the answer read so far must stay within a few times the
/// bytes captured, not grow with their square.
fn one_byte_per_read(m: &mut McpHttp, response: &[u8]) -> Option<usize> {
    for (i, b) in response.iter().enumerate() {
        let done = m.response_data(std::slice::from_ref(b));
        let captured = i + 1;
        assert!(
            m.bytes_read <= 10 * captured + 256,
            "{} bytes read looking for the answer in {captured} captured",
            m.bytes_read
        );
        if done {
            return Some(captured);
        }
    }
    None
}

/// Close to the most bytes of a response kept ([`super::RESPONSE_MAX`]).
const LARGE: usize = 250 << 10;

/// The tool call of `SSE_CALL_REQ` (id 3), waiting for its answer.
fn tool_call() -> Box<McpHttp> {
    let (_, _, body) = head(SSE_CALL_REQ, 100);
    McpHttp::from_body(body, None).expect("a JSON-RPC request")
}

/// An event stream as the fixture's server writes it (one chunk per event): the fixture's head,
/// progress notifications up to `before` bytes, the answer, then notifications up to `after`
/// bytes, and no last chunk (the stream stays open). Also where the answer ends.
fn progress_stream(before: usize, after: usize) -> (Vec<u8>, usize) {
    let head_end = body_start(SSE_CALL_RESP);
    let answer = &SSE_CALL_RESP[head_end..SSE_CALL_RESP.len() - b"0\r\n\r\n".len()];
    let mut out = SSE_CALL_RESP[..head_end].to_vec();
    let mut n = 0;
    let mut events_to = |out: &mut Vec<u8>, until: usize| {
        while out.len() < until {
            n += 1;
            let event = format!(
                concat!(
                    "event: message\r\ndata: ",
                    r#"{{"jsonrpc":"2.0","method":"notifications/progress","#,
                    r#""params":{{"progressToken":3,"progress":{}}}}}"#,
                    "\r\n\r\n"
                ),
                n
            );
            out.extend(format!("{:x}\r\n{event}\r\n", event.len()).into_bytes());
        }
    };
    events_to(&mut out, before);
    out.extend_from_slice(answer);
    let answer_end = out.len();
    events_to(&mut out, after);
    (out, answer_end)
}

/// Where the body of a response starts.
fn body_start(response: &[u8]) -> usize {
    runbom_genai::framing::parse_head(response)
        .expect("a response head")
        .body_offset
}

/// Whether the call `m` stands for leaves answered.
fn answered(m: &mut McpHttp) -> bool {
    let (http, _, _) = head(SSE_CALL_REQ, 100);
    match m.event(&http).detail {
        Detail::Mcp(c) => c.answered,
        _ => false,
    }
}

#[test]
fn an_event_stream_one_byte_per_read_is_read_a_bounded_number_of_times() {
    // The answer after 64 KiB of progress, the stream still open: found soon after it came.
    let (stream, answer_end) = progress_stream(64 << 10, LARGE);
    let mut m = tool_call();
    let found = one_byte_per_read(&mut m, &stream).expect("the answer is found");
    assert!(
        (answer_end..=answer_end + answer_end / 8 + 1).contains(&found),
        "the answer ends at {answer_end}, found at {found}"
    );
    assert!(answered(&mut m));
    // The answer last, the stream still open: found by the time the call leaves.
    let (stream, answer_end) = progress_stream(LARGE, 0);
    assert_eq!(answer_end, stream.len());
    let mut m = tool_call();
    one_byte_per_read(&mut m, &stream);
    assert!(answered(&mut m));
    assert!(m.bytes_read <= 11 * stream.len(), "{}", m.bytes_read);
}

#[test]
fn a_large_json_answer_one_byte_per_read_is_found_when_whole() {
    let text = "a".repeat(LARGE);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":3,"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":false}}}}"#
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut m = tool_call();
    // A message cut short is not taken while more of it may come.
    assert_eq!(
        one_byte_per_read(&mut m, response.as_bytes()),
        Some(response.len())
    );
    assert!(answered(&mut m));
}
