//! What an OTLP receiver got, flattened: one [`Item`] per span or log record, with its
//! resource, scope and attributes as plain JSON values (`tests/otlp_sink.py`'s output).

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;

/// One span or log record from the receiver, flattened with its resource and scope.
#[derive(Clone, Debug)]
pub struct Item {
    /// `span` or `log`.
    pub signal: &'static str,
    pub transport: String,
    pub compression: String,
    pub resource: BTreeMap<String, Value>,
    pub scope: String,
    /// Span name, or the log record's `event_name`.
    pub name: String,
    pub kind: String,
    pub status_code: String,
    pub trace_id: String,
    pub span_id: String,
    /// Span start / log time, span end / log observed time.
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: BTreeMap<String, Value>,
    pub body: String,
}

impl Item {
    #[must_use]
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs.get(key)
    }

    #[must_use]
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    #[must_use]
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(Value::as_i64)
    }

    #[must_use]
    pub fn pid(&self) -> Option<i64> {
        self.attr_int("process.pid")
    }

    #[must_use]
    pub fn event(&self) -> &str {
        self.attr_str("runbom.event").unwrap_or("")
    }

    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{:<4} pid={:<7} {:<60} kind={} status={} error.type={}",
            self.signal,
            self.pid().map_or_else(|| "?".into(), |p| p.to_string()),
            self.name,
            self.kind,
            self.status_code,
            self.attr_str("error.type").unwrap_or("-"),
        )
    }
}

#[must_use]
pub fn summaries(items: &[&Item]) -> String {
    items.iter().fold(String::new(), |mut out, i| {
        let _ = writeln!(out, "    {}", i.summary());
        out
    })
}

/// An OTLP attribute value as plain JSON (ints arrive as strings in the protobuf JSON mapping).
#[must_use]
pub fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("string_value") {
        return s.clone();
    }
    if let Some(i) = v.get("int_value") {
        let n = i
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| i.as_i64())
            .unwrap_or_else(|| panic!("bad int_value {i}"));
        return Value::from(n);
    }
    if let Some(b) = v.get("bool_value") {
        return b.clone();
    }
    if let Some(d) = v.get("double_value") {
        return d.clone();
    }
    if let Some(a) = v.get("array_value") {
        return Value::Array(
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    v.clone()
}

#[must_use]
pub fn attributes(v: Option<&Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for kv in v.and_then(Value::as_array).into_iter().flatten() {
        let key = kv["key"].as_str().expect("attribute key").to_owned();
        let value = kv.get("value").map_or(Value::Null, any_value);
        assert!(
            out.insert(key.clone(), value).is_none(),
            "attribute {key} appears twice in {kv}"
        );
    }
    out
}

#[must_use]
pub fn nanos(v: Option<&Value>) -> u64 {
    v.and_then(|t| {
        t.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| t.as_u64())
    })
    .unwrap_or(0)
}

#[must_use]
pub fn text_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Every span and log record the receiver got.
#[must_use]
pub fn flatten(records: &[Value]) -> Vec<Item> {
    let mut items = Vec::new();
    for record in records {
        let signal = record["signal"].as_str().expect("signal");
        let transport = text_of(record.get("transport"));
        let compression = text_of(record.get("compression"));
        let (outer, middle, inner, kind) = match signal {
            "traces" => ("resource_spans", "scope_spans", "spans", "span"),
            "logs" => ("resource_logs", "scope_logs", "log_records", "log"),
            other => panic!("unexpected signal {other} in the sink output"),
        };
        for rs in record["request"][outer].as_array().into_iter().flatten() {
            let resource = attributes(rs.pointer("/resource/attributes"));
            for ss in rs[middle].as_array().into_iter().flatten() {
                let scope = text_of(ss.pointer("/scope/name"));
                for x in ss[inner].as_array().into_iter().flatten() {
                    let (name, start, end) = if kind == "span" {
                        (
                            text_of(x.get("name")),
                            nanos(x.get("start_time_unix_nano")),
                            nanos(x.get("end_time_unix_nano")),
                        )
                    } else {
                        (
                            text_of(x.get("event_name")),
                            nanos(x.get("time_unix_nano")),
                            nanos(x.get("observed_time_unix_nano")),
                        )
                    };
                    items.push(Item {
                        signal: kind,
                        transport: transport.clone(),
                        compression: compression.clone(),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        name,
                        kind: text_of(x.get("kind")),
                        status_code: text_of(x.pointer("/status/code")),
                        trace_id: text_of(x.get("trace_id")),
                        span_id: text_of(x.get("span_id")),
                        start_ns: start,
                        end_ns: end,
                        attrs: attributes(x.get("attributes")),
                        body: text_of(x.pointer("/body/string_value")),
                    });
                }
            }
        }
    }
    items
}
