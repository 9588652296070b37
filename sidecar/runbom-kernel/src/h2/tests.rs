use std::{path::Path, sync::Arc};

use loona_hpack::Encoder;
use runbom_event::{Detail, HttpRequest};

use super::{connection::VALUE_MAX, frames::PREFACE, *};

mod tables;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn origin(time_ns: u64) -> Origin {
    Origin {
        tid: 9,
        cgroup_id: 0,
        process: Arc::default(),
        time_ns,
    }
}

fn detail(e: &KernelEvent) -> &HttpRequest {
    let Detail::HttpRequest(h) = &e.detail else {
        panic!("not http")
    };
    h
}

const KEY: Key = (7, 0x1000);

/// A client and server talking through `H2Tracker`, as the kernel would record it.
struct Conn {
    tracker: H2Tracker,
    client: Encoder<'static>,
    server: Encoder<'static>,
}

impl Conn {
    fn new() -> Self {
        Self::with(H2Tracker::default())
    }

    fn with(mut tracker: H2Tracker) -> Self {
        tracker.start(KEY, Capture::Openssl, None, 1);
        let mut preface = PREFACE.to_vec();
        preface.extend(frame(4, 0, 0, &[]));
        tracker.push(
            KEY,
            Direction::Write,
            &preface,
            preface.len() as u64,
            &origin(1),
        );
        Self {
            tracker,
            client: Encoder::new(),
            server: Encoder::new(),
        }
    }

    fn write(&mut self, bytes: &[u8], time: u64) {
        let o = origin(time);
        self.tracker
            .push(KEY, Direction::Write, bytes, bytes.len() as u64, &o);
    }

    fn read(&mut self, bytes: &[u8], time: u64) {
        let o = origin(time);
        self.tracker
            .push(KEY, Direction::Read, bytes, bytes.len() as u64, &o);
    }

    fn request(&mut self, stream: u32, headers: &[(&[u8], &[u8])], end_stream: bool) -> Vec<u8> {
        let block = self.client.encode(headers.iter().copied());
        frame(1, 0x4 | u8::from(end_stream), stream, &block)
    }

    fn response(&mut self, stream: u32, headers: &[(&[u8], &[u8])], end_stream: bool) -> Vec<u8> {
        let block = self.server.encode(headers.iter().copied());
        frame(1, 0x4 | u8::from(end_stream), stream, &block)
    }

    fn done(&mut self) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        self.tracker.take_ready(&mut out);
        out
    }
}

const TRACEPARENT: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn interleaved_streams_are_one_request_each() {
    let mut c = Conn::new();
    let mut w = c.request(
        1,
        &[
            (b":method", b"POST"),
            (b":path", b"/v1/chat/completions?key=secret"),
            (b":authority", b"api.example.com"),
            (b":scheme", b"https"),
            (b"content-type", b"application/json"),
            (b"traceparent", TRACEPARENT),
        ],
        false,
    );
    w.extend(c.request(
        3,
        &[
            (b":method", b"GET"),
            (b":path", b"/v1/models"),
            (b":authority", b"api.example.com"),
        ],
        true,
    ));
    // The body comes in two DATA frames; `model` is after the first.
    w.extend(frame(0, 0, 1, br#"{"messages":[],"#));
    c.write(&w, 100);
    c.write(&frame(0, 0x1, 1, br#""model":"gpt-4o"}"#), 110);
    let r3 = c.response(3, &[(b":status", b"200")], false);
    c.read(&r3, 200);
    assert!(c.done().is_empty());
    c.read(&frame(0, 0x1, 3, b"[]"), 210);
    let r1 = c.response(1, &[(b":status", b"429")], true);
    c.read(&r1, 300);
    let done = c.done();
    assert_eq!(done.len(), 2);
    let (get, post) = (detail(&done[0]), detail(&done[1]));
    assert_eq!((get.method.as_str(), get.status), ("GET", Some(200)));
    assert_eq!((done[0].start_ns, done[0].end_ns), (100, 210));
    assert_eq!(post.target, "/v1/chat/completions?key=[REDACTED]");
    assert_eq!(post.host.as_deref(), Some("api.example.com"));
    assert_eq!(post.model.as_deref(), Some("gpt-4o"));
    assert_eq!(post.status, Some(429));
    assert_eq!(post.version, runbom_event::HttpVersion::Http2);
    assert!(post.traceparent.is_some());
    assert!(!c.tracker.has_pending());
}

#[test]
fn grpc_calls_carry_service_method_and_status() {
    let mut c = Conn::new();
    // Same headers twice: the second block is mostly dynamic-table references.
    for (stream, code) in [(1_u32, &b"0"[..]), (3, b"5")] {
        let w = c.request(
            stream,
            &[
                (b":method", b"POST"),
                (b":path", b"/helloworld.Greeter/SayHello"),
                (b":authority", b"localhost:50051"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ],
            false,
        );
        c.write(&w, 1);
        c.write(&frame(0, 0x1, stream, b"\0\0\0\0\x02\x0a\0"), 2);
        let r = c.response(
            stream,
            &[(b":status", b"200"), (b"content-type", b"application/grpc")],
            false,
        );
        c.read(&r, 3);
        c.read(&frame(0, 0, stream, b"\0\0\0\0\0"), 4);
        let t = c.response(stream, &[(b"grpc-status", code)], true);
        c.read(&t, 5);
    }
    let done = c.done();
    assert_eq!(done.len(), 2);
    let codes: Vec<_> = done
        .iter()
        .map(|e| {
            let g = detail(e).grpc.clone().expect("grpc");
            assert_eq!(
                (g.service.as_str(), g.method.as_str()),
                ("helloworld.Greeter", "SayHello")
            );
            g.status
        })
        .collect();
    assert_eq!(codes, [Some(0), Some(5)]);
}

#[test]
fn a_lost_connection_releases_its_streams_and_ignores_the_rest() {
    let mut c = Conn::new();
    let w = c.request(1, &[(b":method", b"GET"), (b":path", b"/")], true);
    c.write(&w, 1);
    // A buffer whose first 5 bytes were captured of 100: a frame header was in the gap.
    c.tracker
        .push(KEY, Direction::Read, &[0, 0, 0, 0, 0], 100, &origin(2));
    assert_eq!(c.tracker.lost, 1);
    assert_eq!(c.done().len(), 1);
    let w = c.request(3, &[(b":method", b"GET"), (b":path", b"/")], true);
    c.write(&w, 3);
    c.tracker.flush(4);
    assert!(c.done().is_empty(), "no preface since: nothing is followed");
}

#[test]
fn unanswered_streams_are_released_at_flush() {
    let mut c = Conn::new();
    let w = c.request(1, &[(b":method", b"GET"), (b":path", b"/slow")], true);
    c.write(&w, 1);
    assert!(c.tracker.has_pending());
    c.tracker.flush(50);
    let done = c.done();
    assert_eq!(done.len(), 1);
    assert_eq!(detail(&done[0]).status, None);
    assert_eq!(done[0].end_ns, 50);
}

/// Hostile or garbled bytes (a process's own writes after its preface) never panic, and every
/// stream that was opened is released.
#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut c = Conn::new();
    let mut restarts = 0;
    for i in 0..20_000_u64 {
        // Mostly well-framed HEADERS/DATA/CONTINUATION with random payloads (HPACK garbage).
        let len = (next() % 40) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let kind = [0, 1, 3, 5, 9][(next() % 5) as usize];
        let stream = 1 + (next() % 8) as u32 * 2;
        let bytes = frame(kind, next() as u8, stream, &payload);
        let dir = if next() % 2 == 0 {
            Direction::Write
        } else {
            Direction::Read
        };
        let total = bytes.len() as u64 + next() % 3;
        c.tracker.push(KEY, dir, &bytes, total, &origin(i));
        if c.tracker.connections.is_empty() {
            restarts += 1;
            c = Conn::new();
        }
    }
    c.tracker.flush(0);
    assert!(restarts > 0, "garbage was noticed");
    assert!(!c.tracker.has_pending());
}

#[test]
fn open_streams_are_bounded_per_connection_and_over_all() {
    let mut t = H2Tracker::default();
    let mut preface = PREFACE.to_vec();
    preface.extend(frame(4, 0, 0, &[]));
    let mut out = Vec::new();
    for conn in 0..17_u64 {
        let key = (7, 0x1000 + conn);
        t.start(key, Capture::Openssl, None, 1);
        t.push(
            key,
            Direction::Write,
            &preface,
            preface.len() as u64,
            &origin(1),
        );
        let mut enc = Encoder::new();
        // 300 streams: the connection keeps its newest 256.
        for i in 0..300_u32 {
            let block = enc.encode([(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
            let w = frame(1, 0x5, 2 * i + 1, &block);
            t.push(key, Direction::Write, &w, w.len() as u64, &origin(2));
        }
        t.take_ready(&mut out);
        if conn < 16 {
            assert_eq!(out.len() as u64, 44 * (conn + 1), "connection {conn}");
        }
    }
    // 17 x 256 open streams is over the bound of 4096 by 256: those went too.
    assert_eq!(out.len(), 17 * 44 + 256);
    assert_eq!(t.open, STREAMS_MAX);
    t.flush(3);
    t.take_ready(&mut out);
    assert_eq!(out.len(), 17 * 300);
}

#[test]
fn a_process_exit_ends_its_connections() {
    let mut c = Conn::new();
    let w = c.request(1, &[(b":method", b"GET"), (b":path", b"/")], true);
    c.write(&w, 1);
    c.tracker.exited(8, 5);
    assert!(c.done().is_empty(), "another process");
    c.tracker.exited(7, 5);
    let done = c.done();
    assert_eq!((done.len(), done[0].end_ns), (1, 5));
    assert!(c.tracker.connections.is_empty());
}

#[test]
fn an_llm_call_over_http2_is_read_from_its_data_frames() {
    let fixture = |f: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../runbom-genai/tests/fixtures/openai-chat-stream-tool-calls")
                .join(f),
        )
        .expect("the recorded exchange")
    };
    let (request, response) = (fixture("request.json"), fixture("response.txt"));
    let mut c = Conn::with(H2Tracker::default().with_genai(Some(runbom_genai::Options::default())));
    let mut w = c.request(
        1,
        &[
            (b":method", b"POST"),
            (b":path", b"/v1/chat/completions"),
            (b":authority", b"api.openai.com"),
            (b"content-type", b"application/json"),
        ],
        false,
    );
    w.extend(frame(0, 0x1, 1, &request));
    c.write(&w, 100);
    let head = c.response(
        1,
        &[
            (b":status", b"200"),
            (b"content-type", b"text/event-stream"),
        ],
        false,
    );
    c.read(&head, 200);
    // The event stream in DATA frames of odd sizes, the last one ending the stream.
    let pieces: Vec<&[u8]> = response.chunks(301).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let end = u8::from(i + 1 == pieces.len());
        c.read(&frame(0, end, 1, piece), 300 + i as u64);
    }
    let done = c.done();
    assert_eq!(done.len(), 1);
    let h = detail(&done[0]);
    let g = h.genai.as_deref().expect("read as an LLM call");
    assert_eq!((g.provider, g.api), ("openai", "openai.chat_completions"));
    assert!(g.streamed && !g.partial, "{g:?}");
    assert_eq!(g.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(g.finish_reasons, ["tool_calls"]);
    assert_eq!(g.tool_calls[0].name, "get_capital");
    assert_eq!(h.model.as_deref(), Some("gpt-4o-mini"));
    // Without GenAI reading, nothing is kept or read.
    let mut off = Conn::new();
    let w = off.request(
        1,
        &[(b":method", b"POST"), (b":path", b"/v1/chat/completions")],
        true,
    );
    off.write(&w, 1);
    let head = off.response(1, &[(b":status", b"200")], true);
    off.read(&head, 2);
    assert!(detail(&off.done()[0]).genai.is_none());
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `flags` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A `:path` and a `user-agent` are redacted whole before they are cut, so a key that straddles
/// the cut is not exported in part.
#[test]
fn paths_and_header_values_are_redacted_before_they_are_cut() {
    let key = format!("sk-{}", "k".repeat(40));
    let pad = "a".repeat(VALUE_MAX - 10);
    let path = format!("/{pad}/{key}");
    let agent = format!("{pad}  {key}");
    let mut c = Conn::new();
    let req = c.request(
        1,
        &[
            (b":method", b"GET"),
            (b":path", path.as_bytes()),
            (b"user-agent", agent.as_bytes()),
        ],
        true,
    );
    c.write(&req, 10);
    let reply = c.response(1, &[(b":status", b"200")], true);
    c.read(&reply, 20);
    let done = c.done();
    assert_eq!(done.len(), 1, "{done:?}");
    let h = detail(&done[0]);
    for value in [&h.target, h.user_agent.as_ref().expect("user agent")] {
        assert_eq!(value.chars().count(), VALUE_MAX, "{value}");
        assert!(value.contains("[REDACTE"), "{value}");
        assert!(!value.contains("sk-"), "{value}");
    }
}

#[test]
fn a_block_repeating_a_large_table_entry_is_read_a_bounded_number_of_times() {
    // A table of 40 000 bytes, a 30 000-byte `:path` added to it, then 5 000 one-byte
    // references to that entry, then a traceparent: each reference would otherwise convert
    // the whole value again.
    let mut block = Vec::new();
    hpack_int(&mut block, 0x20, 5, 40_000);
    block.extend([0x82, 0x86]); // :method GET, :scheme http
    hpack_int(&mut block, 0x40, 6, 4); // :path, added to the table
    hpack_int(&mut block, 0, 7, 30_000);
    block.extend(std::iter::repeat_n(b'a', 30_000));
    block.extend(std::iter::repeat_n(0xBE, 5_000)); // indexed: 62, the entry just added
    block.push(0x40);
    hpack_int(&mut block, 0, 7, 11);
    block.extend(b"traceparent");
    hpack_int(&mut block, 0, 7, TRACEPARENT.len());
    block.extend(TRACEPARENT);
    let mut c = Conn::new();
    c.write(&frame(1, 0x4 | 0x1, 1, &block), 10);
    let reply = c.response(1, &[(b":status", b"200")], true);
    c.read(&reply, 20);
    let done = c.done();
    assert_eq!(done.len(), 1, "{done:?}");
    let h = detail(&done[0]);
    assert_eq!(
        h.target,
        "a".repeat(VALUE_MAX),
        "cut to VALUE_MAX characters"
    );
    assert_eq!(h.status, Some(200));
    // Past FIELDS_READ_MAX fields of kept names, the block is decoded but not read.
    assert!(h.traceparent.is_none(), "{:?}", h.traceparent);
}

/// Connections `(100 + i, 0x1000)` of processes `100 + i` through one `H2Tracker`, each with
/// its client and server encoders.
struct Many {
    tracker: H2Tracker,
    encoders: Vec<(Encoder<'static>, Encoder<'static>)>,
}

impl Many {
    fn key(i: usize) -> Key {
        (100 + i as u32, 0x1000)
    }

    fn new(connections: usize) -> Self {
        let mut tracker = H2Tracker::default().with_genai(Some(runbom_genai::Options::default()));
        for i in 0..connections {
            tracker.start(Self::key(i), Capture::Openssl, None, 1);
            let mut preface = PREFACE.to_vec();
            preface.extend(frame(4, 0, 0, &[]));
            let o = origin(1);
            tracker.push(Self::key(i), Direction::Write, &preface, 30, &o);
        }
        let encoders = (0..connections)
            .map(|_| (Encoder::new(), Encoder::new()))
            .collect();
        Self { tracker, encoders }
    }

    fn push(&mut self, i: usize, dir: Direction, bytes: &[u8]) {
        let o = origin(2);
        self.tracker
            .push(Self::key(i), dir, bytes, bytes.len() as u64, &o);
    }

    /// An LLM call on stream `id` of connection `i`, answered `200` and not yet ended.
    fn call(&mut self, i: usize, id: u32) {
        let request = self.encoders[i].0.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/v1/chat/completions"),
            (b":authority", b"api.openai.com"),
        ]);
        self.push(i, Direction::Write, &frame(1, 0x5, id, &request));
        let response = self.encoders[i].1.encode([(&b":status"[..], &b"200"[..])]);
        self.push(i, Direction::Read, &frame(1, 0x4, id, &response));
    }

    /// The LLM bytes counted by the tracker, its counts checked against the bytes its
    /// connections really hold.
    fn held(&self) -> usize {
        let held = self.tracker.held();
        assert_eq!(held, self.tracker.held_counted(), "the counts are exact");
        held.0
    }

    /// The framing bytes counted by the tracker, checked as [`Self::held`].
    fn framing(&self) -> usize {
        self.held();
        self.tracker.held().1
    }

    fn done(&mut self) -> usize {
        let mut out = Vec::new();
        self.tracker.take_ready(&mut out);
        out.len()
    }
}

#[test]
fn llm_responses_held_are_bounded_over_all_connections() {
    let (connections, streams) = (16, 8);
    let mut m = Many::new(connections);
    for i in 0..connections {
        for s in 0..streams {
            m.call(i, 2 * s + 1);
        }
    }
    // Each stream is offered more than it may hold: 16 × 8 × 1.1 MiB in all.
    let payload = vec![b'x'; 16 * 1024];
    for _ in 0..72 {
        for i in 0..connections {
            for s in 0..streams {
                m.push(i, Direction::Read, &frame(0, 0, 2 * s + 1, &payload));
                assert!(m.held() <= HELD_MAX, "{} bytes held", m.held());
            }
        }
    }
    assert_eq!(m.held(), HELD_MAX, "the budget is used, and no more");
    assert_eq!(m.done(), 0);
    // Every way a stream or a connection ends frees what it held, and only that.
    m.push(0, Direction::Read, &frame(0, 0x1, 1, b"x")); // END_STREAM
    m.push(1, Direction::Read, &frame(3, 0, 1, &[0; 4])); // RST_STREAM
    m.push(2, Direction::Read, &frame(9, 0, 1, b"x")); // malformed: the connection is lost
    m.tracker.exited(103, 3);
    m.tracker.start(Many::key(4), Capture::Openssl, None, 4); // a new connection on its key
    assert!(m.held() < HELD_MAX);
    assert_eq!(m.done(), 1 + 1 + 8 + 8 + 8);
    // Streams past a connection's bound push its oldest out.
    for s in 0..256 {
        m.call(5, 101 + 2 * s);
    }
    assert_eq!(m.done(), 8);
    m.held();
    // The budget freed is used again, by a stream with room left.
    let before = m.held();
    m.push(6, Direction::Read, &frame(0, 0, 1, &payload));
    assert_eq!(m.held(), before + payload.len());
    m.tracker.expire(Instant::now(), Duration::ZERO);
    assert_eq!(m.held(), 0);
    assert_eq!(m.done(), 7 + 7 + 256 + 10 * 8);
    // At shutdown, too.
    m.call(7, 99);
    m.push(7, Direction::Read, &frame(0, 0, 99, &payload));
    assert_eq!(m.held(), payload.len());
    m.tracker.flush(5);
    assert_eq!((m.held(), m.done()), (0, 1));
}

/// Header blocks still being assembled, frames still being read and LLM request bodies count
/// in the tracker's bounds: 4 096 connections each assembling a 256 KiB block would hold
/// 1 GiB. Past the framing bound a block or a frame loses its connection (its tables could not
/// follow), and what it held is freed.
#[test]
fn framing_and_llm_request_bodies_held_are_bounded_over_all_connections() {
    // Blocks: HEADERS without END_HEADERS, then CONTINUATIONs, 240 KiB never ended.
    let connections = 300;
    let mut m = Many::new(connections);
    let fragment = vec![0u8; 16 * 1024];
    for i in 0..connections {
        m.push(i, Direction::Write, &frame(1, 0, 1, &fragment));
        for _ in 0..14 {
            m.push(i, Direction::Write, &frame(9, 0, 1, &fragment));
            assert!(m.framing() <= FRAMING_MAX, "{} bytes held", m.framing());
        }
    }
    assert!(m.tracker.lost > 0, "connections past the bound are lost");
    assert!(m.framing() > FRAMING_MAX - 240 * 1024);
    m.tracker.flush(3);
    assert_eq!(m.framing(), 0);
    // Frames: a header announcing a 64 KiB HEADERS payload that never comes.
    let connections = 1100;
    let mut m = Many::new(connections);
    let mut head = frame(1, 0x4, 1, &[]);
    head[..3].copy_from_slice(&[0x01, 0x00, 0x00]);
    for i in 0..connections {
        m.push(i, Direction::Write, &head);
        assert!(m.framing() <= FRAMING_MAX, "{} bytes held", m.framing());
    }
    assert!(m.tracker.lost > 0, "connections past the bound are lost");
    m.tracker.exited(100, 3);
    m.tracker.flush(3);
    assert_eq!(m.framing(), 0);
    // LLM request bodies: 64 KiB on each of 8 streams of 300 connections, 150 MiB offered.
    let connections = 300;
    let mut m = Many::new(connections);
    let body = vec![b' '; 16 * 1024];
    for i in 0..connections {
        for s in 0..8 {
            let request = m.encoders[i].0.encode([
                (&b":method"[..], &b"POST"[..]),
                (b":path", b"/v1/chat/completions"),
                (b":authority", b"api.openai.com"),
            ]);
            m.push(i, Direction::Write, &frame(1, 0x4, 2 * s + 1, &request));
            for _ in 0..4 {
                m.push(i, Direction::Write, &frame(0, 0, 2 * s + 1, &body));
            }
            assert!(m.held() <= HELD_MAX, "{} bytes held", m.held());
        }
    }
    assert_eq!(m.held(), HELD_MAX, "the budget is used, and no more");
    assert_eq!(m.framing(), 0, "and framing has its own");
    m.tracker.flush(4);
    assert_eq!(m.held(), 0);
}
