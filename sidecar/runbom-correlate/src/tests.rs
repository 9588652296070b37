//! The methods and arrival orders, on hand-made spans and events (the kit the other test
//! modules share).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use runbom_event::{
    Capture, Detail, HttpRequest, KernelEvent, ProcessInfo, TraceParent,
    semconv::scope::KERNEL as SCOPE_NAME,
};
use runbom_otlp::ConvertOptions;

use crate::{Correlator, Method, Output, Settings};

const AGENT: u32 = 100;

fn kv_int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
    }
}

/// A span of trace `[trace; 16]` with id `[id; 8]`, from `start` to `end` seconds.
fn span(trace: u8, id: u8, parent: Option<u8>, start: f64, end: f64, tid: Option<u32>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span {id}"),
        start_time_unix_nano: secs(start),
        end_time_unix_nano: secs(end),
        attributes: tid
            .map(|t| vec![kv_int("thread.id", t.into())])
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn secs(s: f64) -> u64 {
    (s * 1e9) as u64
}

fn request(pid: u32, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", "support-agent"),
                    kv_int("process.pid", pid.into()),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn process(pid: u32, parent: u32, fork: Option<(u32, f64)>) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        pid,
        ppid: parent,
        exe: "/usr/bin/python3".into(),
        trace_id: [pid as u8; 16],
        fork_tid: fork.map_or(0, |f| f.0),
        fork_ns: fork.map_or(0, |f| secs(f.1)),
        ..ProcessInfo::default()
    })
}

fn open_at(process: &Arc<ProcessInfo>, tid: u32, at: f64, path: &str) -> KernelEvent {
    KernelEvent {
        pid: process.pid,
        tid,
        cgroup_id: 1,
        start_ns: secs(at),
        end_ns: secs(at) + 1000,
        process: process.clone(),
        detail: Detail::FileOpen {
            path: path.into(),
            flags: 0,
            error: None,
        },
    }
}

fn http_at(process: &Arc<ProcessInfo>, tid: u32, at: f64, tp: Option<(u8, u8)>) -> KernelEvent {
    let mut ev = open_at(process, tid, at, "");
    let peer: SocketAddr = "127.0.0.1:18443".parse().expect("address");
    ev.detail = Detail::HttpRequest(Box::new(HttpRequest {
        capture: Capture::Openssl,
        method: "POST".into(),
        host: Some("127.0.0.1:18443".into()),
        target: "/v1/chat/completions".into(),
        peer: Some(peer),
        traceparent: tp.map(|(trace, span)| TraceParent {
            trace_id: [trace; 16],
            span_id: [span; 8],
            sampled: true,
        }),
        user_agent: None,
        body_size: None,
        model: None,
        status: None,
        version: runbom_event::HttpVersion::Http1,
        grpc: None,
        genai: None,
        fd: None,
    }));
    ev
}

fn settings() -> Settings {
    Settings {
        wait: Duration::from_secs(6),
        window: Duration::from_secs(30),
        host_name: "node-1".into(),
        ..Settings::default()
    }
}

/// A kernel span as a test sees it.
#[derive(Debug)]
struct KSpan {
    trace: u8,
    parent: u8,
    path: String,
    method: String,
    confidence: String,
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match crate::procs::attr_value(attrs, key)? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn kernel_spans(out: &Output) -> Vec<KSpan> {
    out.traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .filter(|s| s.scope.as_ref().is_some_and(|s| s.name == SCOPE_NAME))
        .flat_map(|s| &s.spans)
        .map(|s| KSpan {
            trace: s.trace_id[0],
            parent: s.parent_span_id.first().copied().unwrap_or(0),
            path: attr(&s.attributes, "file.path")
                .or_else(|| attr(&s.attributes, "url.path"))
                .unwrap_or_default(),
            method: attr(&s.attributes, "runbom.correlation.method").unwrap_or_default(),
            confidence: attr(&s.attributes, "runbom.correlation.confidence").unwrap_or_default(),
        })
        .collect()
}

fn app_spans(out: &Output) -> Vec<&Span> {
    out.traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .filter(|s| s.scope.as_ref().is_none_or(|s| s.name != SCOPE_NAME))
        .flat_map(|s| &s.spans)
        .collect()
}

fn merge(outs: impl IntoIterator<Item = Output>) -> Output {
    let mut all = Output::default();
    for o in outs {
        all.traces.resource_spans.extend(o.traces.resource_spans);
        all.logs.resource_logs.extend(o.logs.resource_logs);
    }
    all
}

fn find<'a>(spans: &'a [KSpan], path: &str) -> &'a KSpan {
    spans
        .iter()
        .find(|k| k.path == path)
        .unwrap_or_else(|| panic!("no kernel span for {path} in {spans:?}"))
}

#[test]
fn thread_method_picks_the_innermost_span_of_the_events_thread() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    // Two conversations at once on threads 1 and 2.
    c.add_events(
        vec![
            open_at(&agent, 1, 3.0, "/a"),
            open_at(&agent, 2, 3.0, "/b"),
            open_at(&agent, 1, 6.0, "/c"),
        ],
        secs(9.0),
    );
    let spans = vec![
        span(0xa, 0x11, None, 0.0, 10.0, Some(1)),
        span(0xa, 0x12, Some(0x11), 2.0, 4.0, Some(1)),
        span(0xb, 0x21, None, 1.0, 9.0, Some(2)),
        span(0xb, 0x22, Some(0x21), 2.5, 5.0, Some(2)),
    ];
    c.add_spans(request(AGENT, spans), secs(11.0));
    let out = merge([c.poll(secs(11.0)), c.poll(secs(18.0))]);
    let k = kernel_spans(&out);
    assert_eq!(k.len(), 3, "{k:?}");
    assert_eq!((find(&k, "/a").trace, find(&k, "/a").parent), (0xa, 0x12));
    assert_eq!((find(&k, "/b").trace, find(&k, "/b").parent), (0xb, 0x22));
    assert_eq!((find(&k, "/c").trace, find(&k, "/c").parent), (0xa, 0x11));
    for ks in &k {
        assert_eq!(
            (ks.method.as_str(), ks.confidence.as_str()),
            ("thread", "high")
        );
    }
    assert_eq!(app_spans(&out).len(), 4, "every application span goes on");
    // The roots overlap but each has children beside the other: no stitching.
    assert!(app_spans(&out).iter().all(|s| s.links.is_empty()));
    assert_eq!(c.stats().correlated(Method::Thread), 3);
    // Log records point at the kernel spans.
    let logs: Vec<_> = out
        .logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(logs.len(), 3);
    assert!(
        logs.iter()
            .all(|l| l.trace_id.len() == 16 && l.span_id.len() == 8)
    );
}

#[test]
fn traceparent_places_a_request_across_threads() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    // The request is written by thread 7 (a worker), on behalf of span 0x12 of thread 1;
    // a span of thread 7 also contains it in time.
    c.add_events(vec![http_at(&agent, 7, 3.0, Some((0xa, 0x12)))], secs(4.0));
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x12, Some(0x11), 2.0, 4.0, Some(1)),
                span(0xc, 0x31, None, 2.9, 3.5, Some(7)),
            ],
        ),
        secs(5.0),
    );
    let out = merge([c.poll(secs(5.0)), c.poll(secs(12.0))]);
    let k = kernel_spans(&out);
    assert_eq!(k.len(), 1, "{k:?}");
    assert_eq!((k[0].trace, k[0].parent), (0xa, 0x12));
    assert_eq!(
        (k[0].method.as_str(), k[0].confidence.as_str()),
        ("traceparent", "high")
    );
}

#[test]
fn a_traceparent_tells_the_thread_of_spans_without_thread_id() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    // Two concurrent conversations whose spans carry no thread.id; thread 5 sent a request
    // for span 0x12 (conversation a), and opened a file that both conversations' spans
    // contain in time.
    c.add_events(
        vec![
            http_at(&agent, 5, 2.5, Some((0xa, 0x12))),
            open_at(&agent, 5, 3.0, "/notes"),
        ],
        secs(4.0),
    );
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x12, Some(0x11), 2.0, 4.0, None),
                span(0xb, 0x22, Some(0x21), 2.1, 3.9, None),
            ],
        ),
        secs(5.0),
    );
    let k = kernel_spans(&merge([c.poll(secs(5.0)), c.poll(secs(12.0))]));
    let notes = find(&k, "/notes");
    assert_eq!((notes.trace, notes.parent), (0xa, 0x12));
    assert_eq!(notes.method, "thread");
}

#[test]
fn process_method_is_medium_alone_and_low_among_traces() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(
        vec![
            open_at(&agent, 9, 1.5, "/one"),
            open_at(&agent, 9, 3.0, "/two"),
        ],
        secs(4.0),
    );
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x12, Some(0x11), 1.0, 4.0, None),
                span(0xb, 0x22, Some(0x21), 2.0, 3.5, None),
            ],
        ),
        secs(5.0),
    );
    // Not before `wait`: a thread match could still come.
    assert!(kernel_spans(&c.poll(secs(6.0))).is_empty());
    let k = kernel_spans(&merge([c.poll(secs(10.0)), c.poll(secs(12.0))]));
    let one = find(&k, "/one");
    assert_eq!(
        (one.parent, one.method.as_str(), one.confidence.as_str()),
        (0x12, "process", "medium")
    );
    let two = find(&k, "/two");
    assert_eq!(
        (two.parent, two.method.as_str(), two.confidence.as_str()),
        (0x22, "process", "low")
    );
}

#[test]
fn a_subprocess_tree_lands_under_its_tool_span() {
    let mut c = Correlator::new(settings());
    // The agent is a known sender (an earlier batch).
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x10, Some(0x11), 0.1, 0.2, Some(1))]),
        secs(0.5),
    );
    // Thread 1 runs the tool (conversation a), thread 2 another conversation (b) at the same
    // time; thread 1 forks `sh`, which forks `wc`.
    let sh = process(200, AGENT, Some((1, 3.0)));
    let wc = process(300, 200, Some((200, 3.2)));
    c.add_events(
        vec![
            open_at(&sh, 200, 3.1, "/bin/sh-lib"),
            open_at(&wc, 300, 3.3, "/data/notes"),
        ],
        secs(4.0),
    );
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x13, Some(0x11), 2.0, 5.0, Some(1)),
                span(0xb, 0x23, Some(0x21), 2.0, 5.0, Some(2)),
            ],
        ),
        secs(6.0),
    );
    let out = merge([c.poll(secs(6.0)), c.poll(secs(11.0)), c.poll(secs(13.0))]);
    let k = kernel_spans(&out);
    assert_eq!(k.len(), 2, "{k:?}");
    for ks in &k {
        assert_eq!((ks.trace, ks.parent), (0xa, 0x13), "{ks:?}");
        assert_eq!(
            (ks.method.as_str(), ks.confidence.as_str()),
            ("ancestry", "medium")
        );
    }
    // A later event of the same child goes straight there.
    c.add_events(vec![open_at(&wc, 300, 3.4, "/data/more")], secs(14.0));
    let k = kernel_spans(&c.poll(secs(14.0)));
    assert_eq!((k[0].parent, k[0].method.as_str()), (0x13, "ancestry"));
    assert_eq!(c.stats().correlated(Method::Ancestry), 3);
}

#[test]
fn a_thread_with_spans_of_its_own_is_not_placed_under_another_threads_span() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    // Thread 1 finished its conversation (span 0x11, until 2 s) and then flushes its exporter
    // (at 3 s) while thread 2's conversation (span 0x21) still runs; thread 9 has no spans of
    // its own (a pool thread) and works for whoever is running.
    c.add_events(
        vec![
            open_at(&agent, 1, 3.0, "/flush"),
            open_at(&agent, 9, 3.0, "/pool"),
        ],
        secs(4.0),
    );
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x11, None, 0.5, 2.0, Some(1)),
                span(0xb, 0x21, None, 1.0, 5.0, Some(2)),
            ],
        ),
        secs(5.0),
    );
    let k = kernel_spans(&merge([c.poll(secs(10.0)), c.poll(secs(12.0))]));
    let pool = find(&k, "/pool");
    assert_eq!(
        (pool.parent, pool.method.as_str(), pool.confidence.as_str()),
        (0x21, "process", "medium")
    );
    assert!(
        k.iter().all(|s| s.path != "/flush"),
        "thread 1's own work between its spans stays out of thread 2's trace: {k:?}"
    );
    let out = c.flush();
    assert!(kernel_spans(&out).is_empty());
    assert_eq!(c.stats().uncorrelated(), 1);
}

#[test]
fn events_before_the_agent_started_stay_uncorrelated() {
    let s = settings();
    let mut c = Correlator::new(s.clone());
    let agent = process(AGENT, 1, None);
    let early = open_at(&agent, 1, 0.5, "/early");
    c.add_events(vec![early.clone()], secs(1.0));
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x11, None, 1.0, 4.0, Some(1))]),
        secs(5.0),
    );
    let before = merge([c.poll(secs(5.0)), c.poll(secs(12.0)), c.poll(secs(30.0))]);
    assert!(kernel_spans(&before).is_empty());
    assert!(before.logs.resource_logs.is_empty(), "held for the window");
    let out = c.poll(secs(31.5));
    // Exactly what the ebpf receiver makes of it without correlation.
    let opts = ConvertOptions {
        host_name: s.host_name,
        uncorrelated_spans: false,
    };
    assert_eq!(out.logs, runbom_otlp::convert(&[early], &[], &opts).logs);
    assert!(kernel_spans(&out).is_empty());
    assert_eq!(c.stats().uncorrelated(), 1);
    assert_eq!(c.buffered_events(), 0);
}

#[test]
fn children_before_parents_keep_the_innermost_span() {
    let mut c = Correlator::new(settings());
    let agent = process(AGENT, 1, None);
    c.add_events(vec![open_at(&agent, 1, 3.0, "/inner")], secs(3.5));
    // The child ends first, so arrives first (an earlier SDK batch).
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x12, Some(0x11), 2.0, 4.0, Some(1))]),
        secs(5.0),
    );
    let first = c.poll(secs(5.0));
    c.add_events(vec![open_at(&agent, 1, 6.0, "/outer")], secs(6.5));
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x11, None, 0.0, 10.0, Some(1))]),
        secs(10.5),
    );
    let out = merge([first, c.poll(secs(10.5)), c.poll(secs(17.0))]);
    let k = kernel_spans(&out);
    assert_eq!(find(&k, "/inner").parent, 0x12);
    assert_eq!(find(&k, "/outer").parent, 0x11);
    assert_eq!(app_spans(&out).len(), 2);
    assert!(app_spans(&out).iter().all(|s| s.trace_id == vec![0xa; 16]));
}

#[path = "tests_bounds.rs"]
mod bounds;

#[path = "tests_mcp.rs"]
mod mcp;

#[path = "tests_connections.rs"]
mod connections;
