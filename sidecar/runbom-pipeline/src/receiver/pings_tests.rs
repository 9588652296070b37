use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).expect("small").to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ping() -> Vec<u8> {
    frame(PING, 0, 0, &[7; 8])
}

fn policy(min_time_ms: u64, permit_without_stream: bool) -> PingWatch {
    let mut w = PingWatch::new(PingPolicy {
        min_time: Duration::from_millis(min_time_ms),
        permit_without_stream,
    });
    let mut start = PREFACE.to_vec();
    start.extend(frame(0x4, 0, 0, &[]));
    assert!(!w.received(&start, Instant::now()));
    w
}

/// Pings at `every` apart from `t0`; the 1-based number of the ping that ends the connection.
fn ends_at(w: &mut PingWatch, t0: Instant, every: Duration, pings: u32) -> Option<u32> {
    (1..=pings).find(|&i| w.received(&ping(), t0 + every * i))
}

#[test]
fn a_fourth_early_ping_ends_the_connection_as_in_grpc_go() {
    let mut w = policy(1_000, true);
    let t0 = Instant::now();
    assert_eq!(ends_at(&mut w, t0, Duration::from_millis(10), 10), Some(4));
    let goaway = w.goaway().expect("the server's output is between frames");
    assert_eq!(&goaway[3..5], &[GOAWAY, 0]);
    assert_eq!(&goaway[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
    assert_eq!(&goaway[17..], b"too_many_pings");
}

#[test]
fn pings_min_time_apart_are_allowed() {
    let mut w = policy(100, true);
    assert_eq!(
        ends_at(&mut w, Instant::now(), Duration::from_millis(150), 20),
        None
    );
}

#[test]
fn without_a_stream_pings_need_two_hours_unless_permitted() {
    let mut w = policy(100, false);
    let t0 = Instant::now();
    assert_eq!(ends_at(&mut w, t0, Duration::from_millis(150), 10), Some(4));

    // With a stream open (HEADERS from the client, not yet answered), min_time applies.
    let mut w = policy(100, false);
    assert!(!w.received(&frame(HEADERS, 0x4, 1, &[]), t0));
    assert_eq!(ends_at(&mut w, t0, Duration::from_millis(150), 10), None);
    // Once the server ended the stream, the connection has none again.
    w.sent(&frame(HEADERS, 0x4 | END_STREAM, 1, &[]));
    let t1 = t0 + Duration::from_secs(10);
    assert!(
        !w.received(&ping(), t1),
        "forgiven: the server sent HEADERS"
    );
    assert_eq!(ends_at(&mut w, t1, Duration::from_millis(150), 10), Some(3));
    assert_eq!(w.goaway().expect("goaway")[9..13], 1_u32.to_be_bytes());
}

#[test]
fn the_server_sending_data_forgives_the_strikes() {
    let mut w = policy(1_000, true);
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    for i in 0..50 {
        // Two early pings (strikes), then the server sends DATA: never the third.
        assert!(!w.received(&ping(), t0 + ms(i * 30)));
        assert!(!w.received(&ping(), t0 + ms(i * 30 + 10)));
        assert!(!w.received(&ping(), t0 + ms(i * 30 + 20)));
        w.sent(&frame(DATA, 0, 1, b"x"));
    }
}

#[test]
fn frames_split_anywhere_are_followed() {
    let mut w = policy(1_000, true);
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(ping());
    }
    let t0 = Instant::now();
    let ended = bytes.chunks(5).any(|c| w.received(c, t0));
    assert!(ended, "four pings at once, fed five bytes at a time");
}

#[test]
fn no_goaway_in_the_middle_of_a_frame_and_nothing_judged_without_http2() {
    let mut w = policy(1_000, true);
    w.sent(&frame(DATA, 0, 1, b"hello")[..10]);
    assert_eq!(w.goaway(), None, "the server is writing a frame");
    w.sent(b"ello");
    assert!(w.goaway().is_some());

    let mut h1 = PingWatch::new(PingPolicy::default());
    let t0 = Instant::now();
    assert!(!h1.received(b"POST /v1/traces HTTP/1.1\r\n\r\n", t0));
    assert!((0..10).all(|_| !h1.received(&ping(), t0)));
}
