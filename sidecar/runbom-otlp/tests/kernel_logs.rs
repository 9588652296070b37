//! Kernel log records and spans written from the events (`KernelLogs::write_protobuf`,
//! `write_json`, and `KernelSpans`' same) are those of the typed path (`convert` /
//! `convert_spans` → `encode_logs` / `write_logs`, `encode_traces` / `write_traces`), byte for
//! byte: over
//! every kind of event and every optional part, strings that need escaping, processes
//! interleaved, the empty batch, and random batches, each with and without the ids of the
//! events' spans. The protobuf is also decoded with prost and compared with the request field
//! by field (log records) or whole (spans), so that a failure names the field. Spans made apart (`convert_spans`) and log
//! records pointing at them are `convert`'s, but for the random span ids.

use std::sync::Arc;

use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};
use prost::Message as _;
use runbom_event::{Detail, KernelEvent, ProcessInfo};
use runbom_otlp::{
    ConvertOptions, KernelLogs, KernelSpans, Placement, convert, convert_placed_spans,
    convert_spans,
    encode::{encode_logs, encode_traces},
    json::write::{write_logs, write_traces},
    placed_span_ids, span_ids,
};
use runbom_testkit::{
    random_events::RandomEvents,
    shadow_run::{event, process, request},
};

fn opts() -> Arc<ConvertOptions> {
    Arc::new(ConvertOptions {
        host_name: "node-\"1\"".into(),
        uncorrelated_spans: true,
    })
}

/// Both writers give the typed path's bytes for `events`, without spans and with them; the
/// spans and log records made apart are `convert`'s.
fn same_as_typed(events: Vec<KernelEvent>) {
    let ids = span_ids(&events);
    same_as_convert(&events, &ids);
    same_as_typed_logs(&KernelLogs::new(events.clone(), opts()));
    let with_spans = KernelLogs::with_spans(events, ids, opts());
    same_as_typed_logs(&with_spans);
    same_as_typed_spans(&KernelSpans::of(with_spans));
}

/// `convert_spans` and `KernelLogs::with_spans` with the ids `span_ids` chose make what
/// `convert` makes with `uncorrelated_spans`, span ids aside; every log record but an exit's
/// points at exactly one span, of its own event, in its process's trace.
fn same_as_convert(events: &[KernelEvent], ids: &[Option<[u8; 8]>]) {
    let mut traces = convert_spans(events, ids, &opts());
    let mut logs = KernelLogs::with_spans(events.to_vec(), ids.to_vec(), opts()).to_request();
    let mut typed = convert(events, &[], &opts());

    let spans: Vec<_> = traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let records: Vec<_> = logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), events.len());
    for record in &records {
        let pointed: Vec<_> = spans
            .iter()
            .filter(|s| !record.span_id.is_empty() && s.span_id == record.span_id)
            .collect();
        if record.event_name == "process.exit" {
            assert!(record.span_id.is_empty() && record.trace_id.is_empty());
            continue;
        }
        // MCP messages carry their own span ids: an event's, shared by no other here.
        let own: Vec<_> = pointed
            .iter()
            .filter(|s| s.start_time_unix_nano == record.time_unix_nano)
            .collect();
        assert_eq!(own.len(), 1, "{record:?} points at {} spans", own.len());
        assert_eq!(own[0].trace_id, record.trace_id, "{record:?}");
    }

    let (a, b) = (renumbered(&mut traces, &mut logs, |_| false), {
        renumbered(&mut typed.traces, &mut typed.logs, |_| false)
    });
    assert_eq!(a, b, "the same spans pointed at");
    assert_eq!(traces, typed.traces, "convert_spans differs from convert");
    assert_eq!(logs, typed.logs, "the log records differ from convert's");
}

/// Replaces every span id with its span's ordinal (in the order the spans come), in the spans
/// and in the log records pointing at them; returns how many distinct ids there were. A record
/// may point at no span made only with an id `outside` allows (an application's span).
fn renumbered(
    traces: &mut ExportTraceServiceRequest,
    logs: &mut ExportLogsServiceRequest,
    outside: impl Fn(&[u8]) -> bool,
) -> usize {
    let mut ordinal: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for span in traces
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
    {
        let n = ordinal.len() as u64;
        let id = ordinal
            .entry(std::mem::take(&mut span.span_id))
            .or_insert_with(|| n.to_be_bytes().to_vec());
        span.span_id.clone_from(id);
    }
    for record in logs
        .resource_logs
        .iter_mut()
        .flat_map(|r| &mut r.scope_logs)
        .flat_map(|s| &mut s.log_records)
    {
        if let Some(n) = ordinal.get(&record.span_id) {
            record.span_id.clone_from(n);
        } else {
            assert!(
                record.span_id.is_empty() || outside(&record.span_id),
                "a record points at no span made"
            );
        }
    }
    ordinal.len()
}

fn same_as_typed_logs(logs: &KernelLogs) {
    let request = logs.to_request();

    let mut typed = Vec::new();
    encode_logs(&request, &mut typed);
    for (way, write) in [
        (
            "one walk",
            KernelLogs::write_protobuf as fn(&KernelLogs, &mut Vec<u8>),
        ),
        ("measured", KernelLogs::write_protobuf_measured),
    ] {
        // Appended after what `out` holds.
        let mut ours = b"prefix".to_vec();
        write(logs, &mut ours);
        assert_eq!(&ours[..6], b"prefix");
        let ours = &ours[6..];
        let decoded = ExportLogsServiceRequest::decode(ours).expect("decodes");
        same_request(&decoded, &request, way);
        assert!(
            ours == typed,
            "{way}: the protobuf differs from encode_logs's"
        );
    }

    let mut typed = Vec::new();
    write_logs(&request, &mut typed);
    let mut ours = b"[".to_vec();
    logs.write_json(&mut ours);
    same_json(&ours[1..], &typed);
}

/// The spans written from the events are `convert_spans`' request as `encode_traces` and
/// `write_traces` write it.
fn same_as_typed_spans(spans: &KernelSpans) {
    let request = spans.to_request();
    let n: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans.len(), n);

    let mut typed = Vec::new();
    encode_traces(&request, &mut typed);
    for (way, write) in [
        (
            "one walk",
            KernelSpans::write_protobuf as fn(&KernelSpans, &mut Vec<u8>),
        ),
        ("measured", KernelSpans::write_protobuf_measured),
    ] {
        let mut ours = b"prefix".to_vec();
        write(spans, &mut ours);
        assert_eq!(&ours[..6], b"prefix");
        let ours = &ours[6..];
        let decoded = ExportTraceServiceRequest::decode(ours).expect("decodes");
        assert_eq!(decoded, request, "{way}: the spans decoded");
        assert!(
            ours == typed,
            "{way}: the protobuf differs from encode_traces's"
        );
    }

    let mut typed = Vec::new();
    write_traces(&request, &mut typed);
    let mut ours = b"[".to_vec();
    spans.write_json(&mut ours);
    same_json(&ours[1..], &typed);
}

fn same_json(ours: &[u8], typed: &[u8]) {
    if ours != typed {
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("JSON");
        assert_eq!(parse(ours), parse(typed), "the JSON differs");
        panic!(
            "the JSON differs only in its bytes:\n{}\n{}",
            String::from_utf8_lossy(ours),
            String::from_utf8_lossy(typed)
        );
    }
}

/// `ours` is `typed`, compared record by record and attribute by attribute first.
fn same_request(ours: &ExportLogsServiceRequest, typed: &ExportLogsServiceRequest, way: &str) {
    assert_eq!(
        ours.resource_logs.len(),
        typed.resource_logs.len(),
        "{way}: groups"
    );
    for (g, (o, t)) in ours
        .resource_logs
        .iter()
        .zip(&typed.resource_logs)
        .enumerate()
    {
        assert_eq!(o.resource, t.resource, "{way}: group {g}'s resource");
        assert_eq!(o.scope_logs.len(), t.scope_logs.len(), "{way}: group {g}");
        for (os, ts) in o.scope_logs.iter().zip(&t.scope_logs) {
            assert_eq!(os.scope, ts.scope, "{way}: group {g}'s scope");
            assert_eq!(
                os.log_records.len(),
                ts.log_records.len(),
                "{way}: group {g}"
            );
            for (r, (ol, tl)) in os.log_records.iter().zip(&ts.log_records).enumerate() {
                assert_eq!(ol.body, tl.body, "{way}: group {g} record {r}: body");
                for (oa, ta) in ol.attributes.iter().zip(&tl.attributes) {
                    assert_eq!(oa, ta, "{way}: group {g} record {r}: attribute");
                }
                assert_eq!(ol, tl, "{way}: group {g} record {r}");
            }
        }
    }
    assert_eq!(ours, typed, "{way}");
}

#[path = "kernel_logs/every_kind.rs"]
mod every_kind;
use every_kind::every_kind;

#[test]
fn every_kind_of_event_is_written_as_the_typed_path_writes_it() {
    let p = process(40, 1, "/usr/bin/python3");
    for (i, detail) in every_kind().into_iter().enumerate() {
        same_as_typed(vec![event(&p, 1 + i as u64, detail)]);
    }
}

#[test]
fn processes_interleaved_group_as_the_typed_path_groups_them() {
    let unnamed = Arc::new(ProcessInfo {
        pid: 7,
        container_id: Some("c0ffee\"".into()),
        ..ProcessInfo::default()
    });
    let (a, b) = (
        process(40, 1, "/usr/bin/python3"),
        process(41, 0, "/bin/sh"),
    );
    let ps = [&a, &b, &unnamed];
    let events = every_kind()
        .into_iter()
        .enumerate()
        .map(|(i, d)| event(ps[i % 3], i as u64 * 1_000_000_007, d))
        .chain([event(&a, 0, request(8080, "GET", "/", None))])
        .collect();
    same_as_typed(events);
}

#[test]
fn an_empty_batch_is_an_empty_request() {
    same_as_typed(Vec::new());
}

/// A record past 16 KiB, one under 128 bytes and a process's share past 2 MiB: every length
/// whose room [`KernelLogs::write_protobuf`] guesses wrong.
#[test]
fn lengths_of_every_varint_size() {
    let p = process(40, 1, "/usr/bin/python3");
    let short = Arc::new(ProcessInfo {
        pid: 1,
        ..ProcessInfo::default()
    });
    same_as_typed(vec![
        event(&short, 0, Detail::Exit { code: None }),
        event(
            &p,
            1,
            Detail::FileOpen {
                path: "p".repeat(20_000),
                flags: 0,
                error: None,
            },
        ),
    ]);
    let big = (0..300)
        .map(|i| {
            event(
                &p,
                i,
                Detail::FileOpen {
                    path: "q".repeat(8_000),
                    flags: 0,
                    error: None,
                },
            )
        })
        .collect();
    same_as_typed(big);
}

#[test]
fn random_batches_are_written_as_the_typed_path_writes_them() {
    for seed in 0..60 {
        let mut random = RandomEvents::new(seed, 1 + seed as usize % 5);
        let n = [0, 1, 3, 40][seed as usize % 4];
        same_as_typed(random.batch(n));
    }
    same_as_typed(RandomEvents::new(99, 8).realistic(1024));
}

#[test]
fn appended_and_split_batches_write_as_their_events() {
    let mut random = RandomEvents::new(7, 4);
    let mut logs = KernelLogs::new(random.batch(30), opts());
    logs.append(KernelLogs::new(random.batch(10), opts()));
    let tail = logs.split_off(25);
    assert_eq!((logs.len(), tail.len()), (25, 15));
    for part in [&logs, &tail] {
        same_as_typed_logs(part);
    }

    // With span ids, appended to and after batches without: each record keeps its own.
    let with = |events: Vec<KernelEvent>| {
        let ids = span_ids(&events);
        KernelLogs::with_spans(events, ids, opts())
    };
    let (a, b, c) = (random.batch(20), random.batch(20), random.batch(20));
    let mut logs = KernelLogs::new(a.clone(), opts());
    let (b, c) = (with(b), with(c));
    logs.append(b.clone());
    logs.append(c.clone());
    let mut want = KernelLogs::new(a, opts()).to_request();
    for part in [&b, &c] {
        let part = part.to_request();
        want.resource_logs.extend(part.resource_logs);
    }
    let records = |r: &ExportLogsServiceRequest| {
        let mut all: Vec<_> = r
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| s.log_records.clone())
            .map(|l| (l.time_unix_nano, l.span_id, l.trace_id))
            .collect();
        all.sort();
        all
    };
    assert_eq!(records(&logs.to_request()), records(&want));
    let tail = logs.split_off(30);
    assert_eq!((logs.len(), tail.len()), (30, 30));
    for part in [&logs, &tail] {
        same_as_typed_logs(part);
    }
}

#[test]
fn appended_spans_write_as_their_events() {
    let mut random = RandomEvents::new(11, 4);
    let with = |events: Vec<KernelEvent>| {
        let ids = span_ids(&events);
        KernelSpans::of(KernelLogs::with_spans(events, ids, opts()))
    };
    let mut spans = with(random.batch(30));
    let more = with(random.batch(10));
    let want = spans.len() + more.len();
    spans.append(more);
    // Events without span ids add no span.
    spans.append(KernelSpans::of(KernelLogs::new(random.batch(5), opts())));
    assert_eq!(spans.len(), want);
    same_as_typed_spans(&spans);
}

/// Events the correlation placed in two applications' traces, mixed with unplaced ones:
/// `convert_placed_spans` and `KernelLogs::placed` with the ids `placed_span_ids` chose make
/// what `convert` makes (span ids aside), with and without spans for the unplaced events; the
/// writers write that request, also appended to unplaced events and split.
#[test]
fn placed_events_are_written_as_convert_writes_them() {
    const PARENT: u8 = 0xa5;
    let apps: Vec<Arc<Resource>> = (0..2)
        .map(|n| {
            Arc::new(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(format!("app \"{n}\""))),
                    }),
                }],
                ..Resource::default()
            })
        })
        .collect();
    let methods = [
        ("thread", "high"),
        ("process", "medium"),
        ("inferred", "low"),
    ];
    for seed in 0..30u64 {
        let mut random = RandomEvents::new(seed, 1 + seed as usize % 4);
        let events = random.batch([1, 7, 40][seed as usize % 3]);
        let placements: Vec<Option<Placement>> = (0..events.len() as u64)
            .map(|i| {
                let app = usize::try_from((i + seed) % 3).ok()?.checked_sub(1)?;
                let (method, confidence) = methods[usize::try_from(i).ok()? % 3];
                Some(Placement {
                    trace_id: [app as u8 + 1; 16],
                    parent_span_id: [PARENT; 8],
                    resource: apps[app].clone(),
                    method,
                    confidence,
                })
            })
            .collect();
        for uncorrelated_spans in [true, false] {
            let o = ConvertOptions {
                uncorrelated_spans,
                ..(*opts()).clone()
            };
            let ids = placed_span_ids(&events, &placements, &o);
            let mut traces = convert_placed_spans(&events, &ids, &placements, &o);
            let mut logs =
                KernelLogs::placed(events.clone(), ids, placements.clone(), Arc::new(o.clone()));
            same_as_typed_logs(&logs);
            let mut request = logs.to_request();
            let mut typed = convert(&events, &placements, &o);
            let parent = |id: &[u8]| id == [PARENT; 8];
            let (a, b) = (renumbered(&mut traces, &mut request, parent), {
                renumbered(&mut typed.traces, &mut typed.logs, parent)
            });
            assert_eq!(a, b, "the same spans pointed at");
            assert_eq!(
                traces, typed.traces,
                "convert_placed_spans differs from convert"
            );
            assert_eq!(request, typed.logs, "the log records differ from convert's");

            // Attributes a processor appends (two lists, most records one of them), written
            // after the event's own, kept through a split and an append.
            let lists = vec![
                vec![KeyValue {
                    key: "aibom.bom.serial_number".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("urn:\"x\"".into())),
                    }),
                }],
                vec![KeyValue {
                    key: "aibom.declared".into(),
                    value: Some(AnyValue {
                        value: Some(Value::BoolValue(false)),
                    }),
                }],
            ];
            let at = (0..events.len() as u32).map(|i| (i % 3 != 0).then_some(i % 2));
            logs.set_appended(lists.clone(), at.collect());
            same_as_typed_logs(&logs);
            let records: Vec<_> = logs
                .to_request()
                .resource_logs
                .into_iter()
                .flat_map(|r| r.scope_logs)
                .flat_map(|s| s.log_records)
                .collect();
            for (record, i) in records.iter().zip(logs.groups().into_iter().flatten()) {
                assert!(record.attributes.ends_with(logs.appended(i)));
                assert_eq!(logs.appended(i).is_empty(), i % 3 == 0);
            }

            let tail = logs.split_off(events.len() / 2);
            let mut unplaced = KernelLogs::new(random.batch(5), Arc::new(o));
            unplaced.append(tail);
            for part in [&logs, &unplaced] {
                same_as_typed_logs(part);
            }
        }
    }
}
