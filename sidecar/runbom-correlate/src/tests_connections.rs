//! Connections: a connect goes with the first request written on the connection it opened,
//! where time would put it under another trace's span on the same thread.

use super::*;

const EXFIL: &str = "127.0.0.1:18099";

/// A TCP connect by thread 1 of `agent` on socket `fd` to `remote`, at `at` seconds.
fn connect_at(agent: &Arc<ProcessInfo>, at: f64, fd: i32, remote: &str) -> KernelEvent {
    let mut ev = open_at(agent, 1, at, "");
    ev.detail = Detail::Connect {
        remote: remote.parse().expect("address"),
        local: Some("127.0.0.1:40000".parse().expect("address")),
        transport: Some(runbom_event::Transport::Tcp),
        error: None,
        fd: Some(fd),
    };
    ev
}

/// A plaintext `POST /upload` written by thread 1 on socket `fd` to `peer`, for span `tp`.
fn post_at(agent: &Arc<ProcessInfo>, at: f64, fd: i32, peer: &str, tp: (u8, u8)) -> KernelEvent {
    let mut ev = http_at(agent, 1, at, Some(tp));
    if let Detail::HttpRequest(h) = &mut ev.detail {
        h.capture = Capture::Socket;
        h.target = "/upload".into();
        h.peer = Some(peer.parse().expect("address"));
        h.fd = Some(fd);
    }
    ev
}

/// Two conversations on thread 1: conversation 0xa's `POST` (span 0x13, 3.0–3.3 s) connects at
/// 3.1 s, inside conversation 0xb's span 0x22 (3.05–4.0 s), the innermost there in time.
fn interleaved(events: Vec<KernelEvent>) -> Vec<KSpan> {
    let mut c = Correlator::new(settings());
    c.add_events(events, secs(3.5));
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x12, Some(0x11), 2.0, 5.0, Some(1)),
                span(0xa, 0x13, Some(0x12), 3.0, 3.3, Some(1)),
                span(0xb, 0x22, Some(0x21), 3.05, 4.0, Some(1)),
            ],
        ),
        secs(5.5),
    );
    kernel_spans(&merge([c.poll(secs(6.0)), c.poll(secs(12.0)), c.flush()]))
}

fn placed(k: &KSpan) -> (u8, u8, &str, &str) {
    (k.trace, k.parent, k.method.as_str(), k.confidence.as_str())
}

#[test]
fn a_connect_goes_with_the_first_request_on_its_connection() {
    let agent = process(AGENT, 1, None);
    let k = interleaved(vec![
        connect_at(&agent, 3.1, 23, EXFIL),
        post_at(&agent, 3.11, 23, EXFIL, (0xa, 0x13)),
    ]);
    assert_eq!(k.len(), 2, "{k:?}");
    assert_eq!(placed(find(&k, "")), (0xa, 0x13, "traceparent", "high"));
    assert_eq!(
        placed(find(&k, "/upload")),
        (0xa, 0x13, "traceparent", "high")
    );
}

#[test]
fn a_connect_whose_span_arrives_later_waits_for_it() {
    // The request arrives with its span unknown; the connect is placed when the span comes.
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(
        vec![
            connect_at(&agent, 3.1, 23, EXFIL),
            post_at(&agent, 3.11, 23, EXFIL, (0xa, 0x13)),
        ],
        secs(3.2),
    );
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x13, Some(0x12), 3.0, 3.3, Some(1))]),
        secs(3.4),
    );
    let k = kernel_spans(&merge([c.poll(secs(3.5)), c.poll(secs(12.0))]));
    assert_eq!(placed(find(&k, "")), (0xa, 0x13, "traceparent", "high"));
    assert_eq!(c.buffered_events(), 0);
}

#[test]
fn another_socket_or_peer_is_not_the_connection() {
    // Time decides, as before: the innermost span containing the connect, among two traces.
    let agent = process(AGENT, 1, None);
    for request in [
        post_at(&agent, 3.11, 24, EXFIL, (0xa, 0x13)),
        post_at(&agent, 3.11, 23, "127.0.0.1:18080", (0xa, 0x13)),
    ] {
        let k = interleaved(vec![connect_at(&agent, 3.1, 23, EXFIL), request]);
        assert_eq!(placed(find(&k, "")), (0xb, 0x22, "process", "low"), "{k:?}");
    }
    // Only the first request on a connection names the connect's span.
    let k = interleaved(vec![
        connect_at(&agent, 3.1, 23, EXFIL),
        post_at(&agent, 3.11, 23, EXFIL, (0xb, 0x22)),
        post_at(&agent, 3.12, 23, EXFIL, (0xa, 0x13)),
    ]);
    assert_eq!(placed(find(&k, "")), (0xb, 0x22, "traceparent", "high"));
}
