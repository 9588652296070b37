//! OTLP/JSON requests and responses, read through `opentelemetry-proto`'s serde support.
//!
//! That support is stricter than OTLP/JSON in ways real senders trip over, so a request is
//! first read as a JSON tree and normalised ([`normalize`]) before it is deserialised:
//! - 64-bit integers may be strings or numbers in OTLP/JSON, but the crate wants strings for
//!   span, event, log and number/histogram point timestamps, and numbers everywhere else
//!   (`asInt`, counts, bucket counts, exemplar and exponential-histogram/summary times);
//! - enums may be given by name (`"SPAN_KIND_SERVER"`), the crate takes only integers;
//! - some messages (`KeyValue`, `ArrayValue`, exemplars, exponential-histogram and summary
//!   points, ...) have every field mandatory, where OTLP/JSON senders omit default values;
//!   missing ones are filled in;
//! - an exemplar's value is read from a nested object instead of `asInt`/`asDouble`;
//! - a metric's data and a point's value are `serde(flatten)`ed oneofs, which the crate
//!   drops *silently* when they do not parse. After deserialising, [`check_metrics`] makes
//!   such a loss an error instead.
//!
//! Trace and span ids are hex, as OTLP/JSON requires (upper or lower case).

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    logs::v1::{ResourceLogs, SeverityNumber},
    metrics::v1::{AggregationTemporality, ResourceMetrics, metric::Data},
    trace::v1::{ResourceSpans, span::SpanKind, status::StatusCode},
};
use runbom_otlp::signal::{Signal, SignalKind};
use serde_json::{Map, Value};

use super::validate::PartialSuccess;

/// Why an OTLP/JSON body was not understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonError {
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
    #[error("{0}")]
    Field(#[from] serde_path_to_error::Error<serde_json::Error>),
    #[error("{0}")]
    Unreadable(String),
}

/// Decodes an OTLP/JSON export request of `kind`.
pub(crate) fn decode(kind: SignalKind, body: &[u8]) -> Result<Signal, JsonError> {
    let mut tree: Value = serde_json::from_slice(body)?;
    let mut expected = Vec::new();
    if let Some(root) = tree.as_object_mut() {
        normalize(kind, root, &mut expected);
    }
    Ok(match kind {
        SignalKind::Traces => Signal::Traces(ExportTraceServiceRequest {
            resource_spans: serde_path_to_error::deserialize::<_, TracesJson>(tree)?.resource_spans,
        }),
        SignalKind::Logs => Signal::Logs(ExportLogsServiceRequest {
            resource_logs: serde_path_to_error::deserialize::<_, LogsJson>(tree)?.resource_logs,
        }),
        SignalKind::Metrics => {
            let resource_metrics =
                serde_path_to_error::deserialize::<_, MetricsJson>(tree)?.resource_metrics;
            check_metrics(&resource_metrics, &expected)?;
            Signal::Metrics(ExportMetricsServiceRequest { resource_metrics })
        }
    })
}

// The generated requests make their one field mandatory in JSON; OTLP/JSON lets a sender
// omit it (`{}` is an empty request), so the top level is read through these.

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TracesJson {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsJson {
    #[serde(default)]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricsJson {
    #[serde(default)]
    resource_metrics: Vec<ResourceMetrics>,
}

/// What a metric in the JSON carried, to check that deserialising kept it.
struct ExpectedMetric {
    has_data: bool,
    /// Per gauge or sum point: whether it had `asInt` or `asDouble`.
    has_value: Vec<bool>,
}

/// The form a 64-bit integer field must take for the crate's serde.
#[derive(Clone, Copy)]
enum Int64 {
    String,
    Number,
}

/// The default value of a field the crate wants present although OTLP/JSON may omit it.
#[derive(Clone, Copy)]
enum Missing {
    Zero,
    Float,
    Text,
    List,
}

type Object = Map<String, Value>;

fn normalize(kind: SignalKind, root: &mut Object, expected: &mut Vec<ExpectedMetric>) {
    match kind {
        SignalKind::Traces => each_item(root, ["resourceSpans", "scopeSpans", "spans"], span),
        SignalKind::Logs => each_item(root, ["resourceLogs", "scopeLogs", "logRecords"], log),
        SignalKind::Metrics => each_item(
            root,
            ["resourceMetrics", "scopeMetrics", "metrics"],
            |metric| expected.push(self::metric(metric)),
        ),
    }
}

/// Normalises each resource and scope and calls `item` on every span, log record or metric.
fn each_item(
    root: &mut Object,
    [resources, scopes, items]: [&str; 3],
    mut item: impl FnMut(&mut Object),
) {
    for resource in objects(root, resources) {
        if let Some(r) = object(resource, "resource") {
            key_values(r, "attributes");
            for entity in objects(r, "entityRefs") {
                fill(
                    entity,
                    &[
                        ("schemaUrl", Missing::Text),
                        ("type", Missing::Text),
                        ("idKeys", Missing::List),
                        ("descriptionKeys", Missing::List),
                    ],
                );
            }
        }
        for scope in objects(resource, scopes) {
            if let Some(s) = object(scope, "scope") {
                key_values(s, "attributes");
            }
            objects(scope, items).for_each(&mut item);
        }
    }
}

fn span(span: &mut Object) {
    int64(
        span,
        &["startTimeUnixNano", "endTimeUnixNano"],
        Int64::String,
    );
    enum_name(span, "kind", |s| {
        SpanKind::from_str_name(s).map(|k| k as i32)
    });
    if let Some(status) = object(span, "status") {
        enum_name(status, "code", |s| {
            StatusCode::from_str_name(s).map(|c| c as i32)
        });
    }
    key_values(span, "attributes");
    for event in objects(span, "events") {
        int64(event, &["timeUnixNano"], Int64::String);
        key_values(event, "attributes");
    }
    for link in objects(span, "links") {
        key_values(link, "attributes");
    }
}

fn log(log: &mut Object) {
    int64(
        log,
        &["timeUnixNano", "observedTimeUnixNano"],
        Int64::String,
    );
    enum_name(log, "severityNumber", |s| {
        SeverityNumber::from_str_name(s).map(|n| n as i32)
    });
    key_values(log, "attributes");
    if let Some(body) = object(log, "body") {
        any_value(body);
    }
}

fn metric(metric: &mut Object) -> ExpectedMetric {
    let mut expected = ExpectedMetric {
        has_data: false,
        has_value: Vec::new(),
    };
    key_values(metric, "metadata");
    for field in [
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
    ] {
        let Some(data) = object(metric, field) else {
            continue;
        };
        expected.has_data = true;
        enum_name(data, "aggregationTemporality", |s| {
            AggregationTemporality::from_str_name(s).map(|t| t as i32)
        });
        for point in objects(data, "dataPoints") {
            key_values(point, "attributes");
            objects(point, "exemplars").for_each(exemplar);
            int64(
                point,
                &["asInt", "count", "zeroCount", "bucketCounts"],
                Int64::Number,
            );
            match field {
                "gauge" | "sum" => {
                    int64(point, &["startTimeUnixNano", "timeUnixNano"], Int64::String);
                    expected
                        .has_value
                        .push(point.contains_key("asInt") || point.contains_key("asDouble"));
                }
                "histogram" => int64(point, &["startTimeUnixNano", "timeUnixNano"], Int64::String),
                "exponentialHistogram" => exponential_point(point),
                _ => summary_point(point),
            }
        }
    }
    expected
}

fn exponential_point(point: &mut Object) {
    int64(point, &["startTimeUnixNano", "timeUnixNano"], Int64::Number);
    fill(
        point,
        &[
            ("attributes", Missing::List),
            ("startTimeUnixNano", Missing::Zero),
            ("timeUnixNano", Missing::Zero),
            ("count", Missing::Zero),
            ("scale", Missing::Zero),
            ("zeroCount", Missing::Zero),
            ("flags", Missing::Zero),
            ("exemplars", Missing::List),
            ("zeroThreshold", Missing::Float),
        ],
    );
    for side in ["positive", "negative"] {
        if let Some(buckets) = object(point, side) {
            int64(buckets, &["bucketCounts"], Int64::Number);
            fill(
                buckets,
                &[("offset", Missing::Zero), ("bucketCounts", Missing::List)],
            );
        }
    }
}

fn summary_point(point: &mut Object) {
    int64(point, &["startTimeUnixNano", "timeUnixNano"], Int64::Number);
    fill(
        point,
        &[
            ("attributes", Missing::List),
            ("startTimeUnixNano", Missing::Zero),
            ("timeUnixNano", Missing::Zero),
            ("count", Missing::Zero),
            ("sum", Missing::Float),
            ("quantileValues", Missing::List),
            ("flags", Missing::Zero),
        ],
    );
    for quantile in objects(point, "quantileValues") {
        fill(
            quantile,
            &[("quantile", Missing::Float), ("value", Missing::Float)],
        );
    }
}

/// The crate reads an exemplar's value oneof as a nested `"value": {"asInt": ..}` and wants
/// every other field present.
fn exemplar(exemplar: &mut Object) {
    key_values(exemplar, "filteredAttributes");
    int64(exemplar, &["timeUnixNano", "asInt"], Int64::Number);
    fill(
        exemplar,
        &[
            ("filteredAttributes", Missing::List),
            ("timeUnixNano", Missing::Zero),
            ("spanId", Missing::Text),
            ("traceId", Missing::Text),
        ],
    );
    for key in ["asDouble", "asInt"] {
        if let Some(value) = exemplar.remove(key) {
            let mut nested = Object::new();
            nested.insert(key.into(), value);
            exemplar.insert("value".into(), nested.into());
        }
    }
}

/// A list of `KeyValue`s: each needs its `key`, and its value's nested lists their `values`.
fn key_values(parent: &mut Object, key: &str) {
    for kv in objects(parent, key) {
        fill(kv, &[("key", Missing::Text)]);
        if let Some(value) = object(kv, "value") {
            any_value(value);
        }
    }
}

fn any_value(value: &mut Object) {
    if let Some(array) = object(value, "arrayValue") {
        fill(array, &[("values", Missing::List)]);
        objects(array, "values").for_each(any_value);
    }
    if let Some(list) = object(value, "kvlistValue") {
        fill(list, &[("values", Missing::List)]);
        key_values(list, "values");
    }
}

fn object<'a>(parent: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    parent.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects in the array at `key`.
fn objects<'a>(parent: &'a mut Object, key: &str) -> impl Iterator<Item = &'a mut Object> {
    parent
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn fill(object: &mut Object, fields: &[(&str, Missing)]) {
    for (key, missing) in fields {
        object.entry(*key).or_insert_with(|| match missing {
            Missing::Zero => 0.into(),
            Missing::Float => 0.0.into(),
            Missing::Text => "".into(),
            Missing::List => Value::Array(Vec::new()),
        });
    }
}

/// Rewrites the 64-bit integers at `keys` (or arrays of them) into the form the crate wants.
/// Values that are neither are left for serde to report.
fn int64(object: &mut Object, keys: &[&str], want: Int64) {
    fn one(value: &mut Value, want: Int64) {
        let replacement = match (want, &mut *value) {
            (Int64::String, Value::Number(n)) => Value::String(n.to_string()),
            (Int64::Number, Value::String(s)) => match s.parse::<u64>() {
                Ok(n) => n.into(),
                Err(_) => match s.parse::<i64>() {
                    Ok(n) => n.into(),
                    Err(_) => return,
                },
            },
            (_, Value::Array(items)) => {
                for item in items {
                    one(item, want);
                }
                return;
            }
            _ => return,
        };
        *value = replacement;
    }
    for key in keys {
        if let Some(value) = object.get_mut(*key) {
            one(value, want);
        }
    }
}

/// Replaces an enum given by name with its number.
fn enum_name(object: &mut Object, key: &str, number: fn(&str) -> Option<i32>) {
    if let Some(value) = object.get_mut(key)
        && let Some(n) = value.as_str().and_then(number)
    {
        *value = n.into();
    }
}

/// Fails if deserialising dropped a metric's data or a point's value that the JSON had.
fn check_metrics(
    resources: &[ResourceMetrics],
    expected: &[ExpectedMetric],
) -> Result<(), JsonError> {
    let metrics = resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    for (metric, expected) in metrics.zip(expected) {
        let points = match &metric.data {
            None if expected.has_data => {
                return Err(JsonError::Unreadable(format!(
                    "metric {:?}: its data could not be read (check the field types)",
                    metric.name
                )));
            }
            Some(Data::Gauge(g)) => &g.data_points,
            Some(Data::Sum(s)) => &s.data_points,
            _ => continue,
        };
        for (i, (point, had)) in points.iter().zip(&expected.has_value).enumerate() {
            if *had && point.value.is_none() {
                return Err(JsonError::Unreadable(format!(
                    "metric {:?}: data point {i} has a value that could not be read",
                    metric.name
                )));
            }
        }
    }
    Ok(())
}

/// The `Export*ServiceResponse` in OTLP/JSON; `{}` for a full success.
pub(crate) fn response(kind: SignalKind, partial: &PartialSuccess) -> Vec<u8> {
    let mut response = Map::new();
    if !partial.is_empty() {
        let rejected = match kind {
            SignalKind::Traces => "rejectedSpans",
            SignalKind::Logs => "rejectedLogRecords",
            SignalKind::Metrics => "rejectedDataPoints",
        };
        let mut detail = Map::new();
        // int64 is a string in the protobuf JSON mapping.
        detail.insert(rejected.into(), partial.rejected.to_string().into());
        detail.insert("errorMessage".into(), partial.error_message.clone().into());
        response.insert("partialSuccess".into(), detail.into());
    }
    Value::Object(response).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::any_value::Value as Any, metrics::v1::number_data_point::Value as Number,
    };

    use super::*;

    fn traces(body: &str) -> ExportTraceServiceRequest {
        match decode(SignalKind::Traces, body.as_bytes()) {
            Ok(Signal::Traces(r)) => r,
            other => panic!("expected traces from {body}, got {other:?}"),
        }
    }

    fn metrics(body: &str) -> ExportMetricsServiceRequest {
        match decode(SignalKind::Metrics, body.as_bytes()) {
            Ok(Signal::Metrics(r)) => r,
            other => panic!("expected metrics from {body}, got {other:?}"),
        }
    }

    /// The example request of the OTLP specification (opentelemetry-proto `examples/trace.json`).
    const SPEC_TRACE_EXAMPLE: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "kind": 2,
            "attributes": [
              {"key": "my.span.attr", "value": {"stringValue": "some value"}},
              {"key": "my.int", "value": {"intValue": "42"}},
              {"key": "my.array", "value": {"arrayValue": {"values": [{"boolValue": true}, {"doubleValue": 1.5}]}}}
            ],
            "events": [{"timeUnixNano": "1544712660500000000", "name": "hello"}],
            "status": {}
          }]
        }]
      }]
    }"#;

    #[test]
    fn reads_the_spec_example() {
        let request = traces(SPEC_TRACE_EXAMPLE);
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            [
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ]
        );
        assert_eq!(
            span.parent_span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]
        );
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            span.attributes[1]
                .value
                .as_ref()
                .and_then(|v| v.value.clone()),
            Some(Any::IntValue(42))
        );
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
    }

    #[test]
    fn accepts_numeric_times_and_enum_names() {
        let request = traces(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
                "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
                "startTimeUnixNano":1544712660000000000,"kind":"SPAN_KIND_CLIENT",
                "status":{"code":"STATUS_CODE_ERROR"},
                "events":[{"timeUnixNano":1544712660500000000}]}]}]}]}"#,
        );
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
    }

    /// What the Python SDK's encoder gives through `MessageToJson` (and the Collector sends):
    /// every 64-bit integer as a string.
    #[test]
    fn keeps_string_int64_metric_values() {
        let request = metrics(
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
              {"name":"c","sum":{"dataPoints":[{"startTimeUnixNano":"1","timeUnixNano":"2","asInt":"-5",
                 "exemplars":[{"timeUnixNano":"3","asInt":"7"}]}],
                 "aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true}},
              {"name":"h","histogram":{"dataPoints":[{"startTimeUnixNano":"1","timeUnixNano":"2","count":"3",
                 "sum":1.5,"bucketCounts":["1","2"],"explicitBounds":[1.0]}],"aggregationTemporality":2}},
              {"name":"e","exponentialHistogram":{"dataPoints":[{"timeUnixNano":"2","count":"4","zeroCount":"1",
                 "scale":1,"positive":{"offset":0,"bucketCounts":["3"]}}]}},
              {"name":"s","summary":{"dataPoints":[{"timeUnixNano":"2","count":"2","sum":3.0,
                 "quantileValues":[{"quantile":0.5,"value":1.0}]}]}}
            ]}]}]}"#,
        );
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("the sum should survive: {metrics:?}");
        };
        assert_eq!(sum.data_points[0].value, Some(Number::AsInt(-5)));
        assert_eq!(sum.data_points[0].time_unix_nano, 2);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let Some(Data::Histogram(histogram)) = &metrics[1].data else {
            panic!("the histogram should survive: {metrics:?}");
        };
        assert_eq!(histogram.data_points[0].count, 3);
        assert_eq!(histogram.data_points[0].bucket_counts, [1, 2]);
        assert!(
            matches!(&metrics[2].data, Some(Data::ExponentialHistogram(e)) if e.data_points[0].count == 4),
            "{metrics:?}"
        );
        assert!(
            matches!(&metrics[3].data, Some(Data::Summary(s)) if s.data_points[0].count == 2),
            "{metrics:?}"
        );
    }

    #[test]
    fn unreadable_metric_data_is_an_error_not_a_loss() {
        let error = decode(
            SignalKind::Metrics,
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
                {"name":"g","gauge":{"dataPoints":[{"asDouble":"lots"}]}}]}]}]}"#,
        )
        .expect_err("a value that does not parse must not vanish");
        assert!(error.to_string().contains("metric \"g\""), "{error}");
    }

    #[test]
    fn an_empty_object_is_an_empty_request() {
        for kind in SignalKind::ALL {
            let signal = decode(kind, b"{}").expect("{} is a valid OTLP/JSON request");
            assert!(signal.is_empty(), "{signal:?}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let error = decode(
            SignalKind::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#,
        )
        .expect_err("a non-hex traceId is malformed");
        assert!(
            error
                .to_string()
                .contains("resourceSpans[0].scopeSpans[0].spans[0].traceId"),
            "{error}"
        );
    }

    #[test]
    fn partial_success_uses_string_int64() {
        let partial = PartialSuccess {
            rejected: 2,
            error_message: "why".into(),
        };
        let json: Value = serde_json::from_slice(&response(SignalKind::Logs, &partial))
            .expect("the response is JSON");
        assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "2", "{json}");
        assert_eq!(
            response(SignalKind::Traces, &PartialSuccess::default()),
            b"{}"
        );
    }
}
