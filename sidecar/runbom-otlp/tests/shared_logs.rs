//! Log records held as their parts (`SharedLogs`) are written as the request they build is:
//! the protobuf of `prost` and of `encode_logs`, the OTLP/JSON of `write_logs` and of
//! `serde_json`, with every kind of part (shared runs, empty ones too, strings, string arrays,
//! other values), texts that need escaping, bodies of lines (none, one, several, empty ones),
//! groups with and without a resource, and two requests appended.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
};
use prost::Message as _;
use runbom_otlp::{
    AttributeSet, SharedLogs, encode::encode_logs, json::write::write_logs, shared_logs::Head,
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn head<'a>(trace_id: &'a [u8], severity: &'a str) -> Head<'a> {
    Head {
        time_unix_nano: 1_700_000_000_000_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_001,
        severity_number: 13,
        severity_text: severity,
        event_name: "aibom.drift",
        trace_id,
        span_id: &[7; 8],
    }
}

/// One request's records: `n` of them in two groups.
fn logs(n: usize, tag: &str) -> SharedLogs {
    let shared = Arc::new(AttributeSet::of_log_records(vec![
        kv("event.name", Value::StringValue("aibom.drift".into())),
        kv("n", Value::IntValue(-3)),
    ]));
    let empty = Arc::new(AttributeSet::of_log_records(Vec::new()));
    let mut logs = SharedLogs::default();
    let lines = [
        logs.text(&format!("line \"one\" {tag}\n\twith\u{1} escapes")),
        logs.text(""),
        logs.text("é — 😀 \\ end"),
    ];
    for i in 0..n {
        if i % 3 == 0 {
            let resource = (i % 2 == 0).then(|| Resource {
                attributes: vec![kv("service.name", Value::StringValue(tag.into()))],
                ..Resource::default()
            });
            logs.group(
                resource,
                if i == 0 {
                    "https://schema".into()
                } else {
                    String::new()
                },
                InstrumentationScope {
                    name: "runbom.aibom".into(),
                    version: "1".into(),
                    ..InstrumentationScope::default()
                },
            );
        }
        let (s, e) = (logs.set(&shared), logs.set(&empty));
        let trace_id = [u8::try_from(i).expect("few"); 16];
        logs.record(&head(if i == 4 { &[] } else { &trace_id }, "WARN"));
        match i % 4 {
            0 => logs.body_lines(&lines),
            1 => logs.body_lines(&lines[..1]),
            2 => logs.body_lines(&[]),
            _ => &mut logs,
        };
        logs.shared(s)
            .strs_attribute("kinds", ["undeclared_model", "a\"b"])
            .strs_attribute("none", [])
            .attribute_with("reason", |t| t.push_str("why\n"))
            .shared(e)
            .str_attribute("agent", "agent:x")
            .other_attribute(kv("flag", Value::BoolValue(true)))
            .other_attribute(KeyValue {
                key: "unset".into(),
                value: None,
            })
            .lines_attribute("aibom.chain", &lines[i % 3..]);
    }
    logs
}

fn written_alike(logs: &SharedLogs) -> ExportLogsServiceRequest {
    let built = logs.to_request();
    let mut protobuf = Vec::new();
    logs.write_protobuf(&mut protobuf);
    assert_eq!(protobuf, built.encode_to_vec(), "prost's protobuf");
    let mut ours = Vec::new();
    encode_logs(&built, &mut ours);
    assert_eq!(protobuf, ours, "encode_logs' protobuf");
    let (mut json, mut reference) = (Vec::new(), Vec::new());
    logs.write_json(&mut json);
    write_logs(&built, &mut reference);
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&reference),
        "write_logs' OTLP/JSON"
    );
    assert_eq!(
        String::from_utf8_lossy(&json),
        serde_json::to_string(&built).expect("serializes"),
        "serde's OTLP/JSON"
    );
    built
}

#[test]
fn records_of_parts_are_written_as_the_request_they_build() {
    let one = logs(7, "a");
    let built = written_alike(&one);
    assert_eq!(one.len(), 7);
    let records: Vec<_> = built
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), 7);
    let body = |i: usize| match records[i].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    };
    assert_eq!(
        body(0).as_deref(),
        Some("line \"one\" a\n\twith\u{1} escapes\n\né — 😀 \\ end")
    );
    assert_eq!(body(2).as_deref(), Some(""));
    assert_eq!(body(3), None);
    assert_eq!(records[0].attributes.len(), 9);

    let mut both = one.clone();
    both.append(logs(5, "b"));
    let mut expected = built;
    expected
        .resource_logs
        .extend(logs(5, "b").to_request().resource_logs);
    assert_eq!(written_alike(&both), expected, "appended");
    written_alike(&SharedLogs::default());
}

#[test]
fn records_read_as_built() {
    let logs = logs(2, "a");
    let r = logs.records().next().expect("a record");
    assert_eq!(r.severity_text(), "WARN");
    assert_eq!(r.str_attribute("agent"), Some("agent:x"));
    assert_eq!(r.str_attribute("event.name"), Some("aibom.drift"));
    assert_eq!(r.str_attribute("n"), None);
    assert_eq!(r.strs_attribute("kinds"), ["undeclared_model", "a\"b"]);
    assert_eq!(r.strs_attribute("agent"), ["agent:x"]);
    assert_eq!(r.resource_attributes().len(), 1);
}
