//! Stitching orphans to their parents, memory bounds, and what leaves on wait and on flush.

use super::*;

#[test]
fn an_orphan_root_its_descendant_and_its_kernel_event_are_stitched() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(vec![open_at(&agent, 1, 7.5, "/orphan-io")], secs(8.0));
    // Orphan trace 0xb: GET (0x31) with a child (0x32), inside tool span 0x12 of trace 0xa.
    c.add_spans(
        request(AGENT, vec![span(0xb, 0x32, Some(0x31), 7.0, 8.0, Some(1))]),
        secs(9.0),
    );
    c.add_spans(
        request(AGENT, vec![span(0xb, 0x31, None, 6.0, 9.0, Some(1))]),
        secs(9.5),
    );
    let early = c.poll(secs(9.5));
    assert!(
        app_spans(&early).is_empty(),
        "held until the trace is decided"
    );
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x12, Some(0x11), 5.0, 10.0, Some(1))]),
        secs(10.5),
    );
    let out = merge([early, c.poll(secs(10.5)), c.poll(secs(17.0))]);
    let app = app_spans(&out);
    assert_eq!(app.len(), 3);
    assert!(app.iter().all(|s| s.trace_id == vec![0xa; 16]), "{app:?}");
    let get = app
        .iter()
        .find(|s| s.span_id == vec![0x31; 8])
        .expect("GET");
    assert_eq!(get.parent_span_id, vec![0x12; 8]);
    assert_eq!(
        attr(&get.attributes, "runbom.stitched.original_trace_id"),
        Some("0b".repeat(16))
    );
    assert_eq!(
        attr(&get.attributes, "runbom.stitched.original_span_id"),
        Some("31".repeat(8))
    );
    assert_eq!(get.links.len(), 1);
    assert_eq!(
        (get.links[0].trace_id.clone(), get.links[0].span_id.clone()),
        (vec![0xb; 16], vec![0x31; 8])
    );
    let child = app
        .iter()
        .find(|s| s.span_id == vec![0x32; 8])
        .expect("child");
    assert_eq!(
        child.parent_span_id,
        vec![0x31; 8],
        "descendants keep their parent"
    );
    let k = kernel_spans(&out);
    assert_eq!((k[0].trace, k[0].parent), (0xa, 0x32));
    assert_eq!(c.stats().stitched(), 2);
    // The root of trace 0xa comes last and goes on at once.
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x11, None, 0.0, 20.0, Some(1))]),
        secs(21.0),
    );
    assert_eq!(app_spans(&c.poll(secs(21.0))).len(), 1);
}

#[test]
fn stitching_can_be_turned_off() {
    let mut c = Correlator::new(Settings {
        stitch: false,
        ..settings()
    });
    c.add_spans(
        request(AGENT, vec![span(0xb, 0x31, None, 6.0, 9.0, Some(1))]),
        secs(9.5),
    );
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x12, Some(0x11), 5.0, 10.0, Some(1))]),
        secs(10.5),
    );
    let out = merge([c.poll(secs(9.5)), c.poll(secs(10.5))]);
    let get = app_spans(&out)
        .into_iter()
        .find(|s| s.span_id == vec![0x31; 8])
        .expect("GET");
    assert_eq!(get.trace_id, vec![0xb; 16]);
    assert!(get.parent_span_id.is_empty());
}

#[test]
fn a_flood_from_an_unrelated_process_stays_under_the_cap() {
    let cap = 256 << 10;
    let mut c = Correlator::new(Settings {
        max_buffered_bytes: cap,
        ..settings()
    });
    let agent = process(AGENT, 1, None);
    let noisy = process(4242, 1, None);
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x10, Some(0x11), 0.1, 0.2, Some(1))]),
        secs(0.5),
    );
    c.add_events(vec![open_at(&agent, 1, 3.0, "/agent-file")], secs(3.0));
    let mut max = 0;
    for batch in 0..200 {
        let t = 3.0 + f64::from(batch) * 0.01;
        let events: Vec<KernelEvent> = (0..100)
            .map(|i| open_at(&noisy, 4242, t, &format!("/var/log/noise-{batch}-{i}")))
            .collect();
        c.add_events(events, secs(t));
        max = max.max(c.buffered_bytes());
        assert!(c.buffered_bytes() <= cap, "{} > {cap}", c.buffered_bytes());
        let _ = c.poll(secs(t));
    }
    assert!(max > cap / 2, "the flood filled the buffer ({max})");
    assert!(c.stats().evicted() > 10_000, "{}", c.stats().evicted());
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x12, Some(0x11), 2.0, 6.0, Some(1))]),
        secs(6.5),
    );
    let k = kernel_spans(&merge([c.poll(secs(6.5)), c.poll(secs(13.0))]));
    let agent_file = find(&k, "/agent-file");
    assert_eq!(
        (agent_file.parent, agent_file.method.as_str()),
        (0x12, "thread")
    );
    assert!(c.buffered_bytes() <= cap);
}

#[test]
fn strangers_leave_after_wait_and_everything_leaves_on_flush() {
    let mut c = Correlator::new(settings());
    let noisy = process(4242, 1, None);
    let agent = process(AGENT, 1, None);
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x10, Some(0x11), 0.1, 0.2, Some(1))]),
        secs(0.5),
    );
    c.add_events(
        vec![
            open_at(&noisy, 4242, 1.0, "/x"),
            open_at(&agent, 1, 1.0, "/y"),
        ],
        secs(1.0),
    );
    assert!(c.poll(secs(6.0)).logs.resource_logs.is_empty());
    let out = c.poll(secs(7.5));
    assert_eq!(
        out.logs.resource_logs.len(),
        1,
        "the stranger's event left after wait"
    );
    assert_eq!(
        c.buffered_events(),
        1,
        "the sender's event waits for its span"
    );
    let out = c.flush();
    assert_eq!(out.logs.resource_logs.len(), 1);
    assert_eq!(c.buffered_events(), 0);
}

#[test]
fn two_traces_on_one_thread_are_not_a_thread_match() {
    // asyncio: two conversations interleave on thread 1; time alone cannot tell them apart.
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(vec![open_at(&agent, 1, 3.0, "/which")], secs(3.5));
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x12, Some(0x11), 2.0, 5.0, Some(1)),
                span(0xb, 0x22, Some(0x21), 2.5, 4.0, Some(1)),
            ],
        ),
        secs(5.5),
    );
    assert!(
        kernel_spans(&c.poll(secs(6.0))).is_empty(),
        "waits for stitching"
    );
    let k = kernel_spans(&merge([c.poll(secs(10.0)), c.poll(secs(12.0))]));
    let which = find(&k, "/which");
    assert_eq!(
        (
            which.parent,
            which.method.as_str(),
            which.confidence.as_str()
        ),
        (0x22, "process", "low")
    );
}

#[test]
fn an_orphan_on_the_containers_thread_is_a_thread_match_once_stitched() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(vec![open_at(&agent, 1, 7.5, "/orphan-io")], secs(8.0));
    // Container and orphan arrive together: two traces on the thread until stitched.
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xb, 0x31, None, 7.0, 8.0, Some(1)),
                span(0xa, 0x12, Some(0x11), 5.0, 10.0, Some(1)),
            ],
        ),
        secs(10.5),
    );
    let k = kernel_spans(&merge([
        c.poll(secs(10.5)),
        c.poll(secs(14.0)),
        c.poll(secs(17.0)),
    ]));
    let io = find(&k, "/orphan-io");
    assert_eq!(
        (
            io.trace,
            io.parent,
            io.method.as_str(),
            io.confidence.as_str()
        ),
        (0xa, 0x31, "thread", "high")
    );
}

#[test]
fn held_application_spans_are_capped() {
    let mut c = Correlator::new(Settings {
        max_held_spans: 10,
        ..settings()
    });
    // 30 root-less traces of one span each: all held for stitching, until the cap.
    for i in 0..30u8 {
        let s = span(i + 1, i + 1, Some(0xee), 1.0, 2.0, Some(1));
        c.add_spans(request(AGENT, vec![s]), secs(3.0) + u64::from(i));
    }
    let out = c.poll(secs(3.5));
    assert_eq!(app_spans(&out).len(), 20, "the oldest go on at once");
    assert_eq!(
        app_spans(&c.poll(secs(10.0))).len(),
        10,
        "the rest after `wait`"
    );
}

#[test]
fn a_flush_places_what_the_known_spans_allow() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    let child = process(200, AGENT, Some((1, 3.0)));
    c.add_events(
        vec![
            open_at(&agent, 1, 3.0, "/mine"),
            open_at(&child, 200, 3.1, "/child"),
        ],
        secs(3.5),
    );
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x12, Some(0x11), 2.0, 4.0, Some(1))]),
        secs(4.5),
    );
    // Shutdown before `wait`: the events are placed all the same, the trace goes on.
    let out = c.flush();
    let k = kernel_spans(&out);
    assert_eq!(
        (find(&k, "/mine").parent, find(&k, "/mine").method.as_str()),
        (0x12, "thread")
    );
    assert_eq!(
        (
            find(&k, "/child").parent,
            find(&k, "/child").method.as_str()
        ),
        (0x12, "ancestry")
    );
    assert_eq!(app_spans(&out).len(), 1);
    assert_eq!(c.buffered_events(), 0);
}
