//! The Prometheus text exposition (format 0.0.4) of collected OTLP metrics, named as the
//! OpenTelemetry specification's Prometheus compatibility rules name them:
//!
//! - the metric name with every character outside `[a-zA-Z0-9_:]` replaced by `_`
//!   (`runbom.aibom.spans` → `runbom_aibom_spans`), then the unit's suffix unless the name
//!   already ends with it (`By` → `_bytes`, `s` → `_seconds`; annotations such as `{span}` give
//!   none; `1` gives `_ratio` on gauges), then `_total` on monotonic sums;
//! - attributes become labels the same way (`aibom.agent.ref` → `aibom_agent_ref`);
//! - non-monotonic sums and gauges are gauges, histograms `_bucket{le}`, `_sum` and `_count`;
//! - the resource is `target_info` (a gauge of 1 labelled with its attributes).
//!
//! Metrics of the same name from several scopes are one family.

use std::{collections::BTreeMap, fmt::Write as _};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::{Metric, metric::Data, number_data_point},
};

/// One family: its type, help text and sample lines.
#[derive(Default)]
struct Family {
    kind: &'static str,
    help: String,
    lines: Vec<String>,
}

/// Renders every metric of `request`.
#[must_use]
pub fn render(request: &ExportMetricsServiceRequest) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for rm in &request.resource_metrics {
        if let Some(resource) = &rm.resource
            && !resource.attributes.is_empty()
        {
            let target = families.entry("target_info".into()).or_default();
            target.kind = "gauge";
            target.help = "Target metadata".into();
            target.lines.push(format!(
                "target_info{} 1",
                labels(&resource.attributes, None)
            ));
        }
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                add(&mut families, metric);
            }
        }
    }
    let mut out = String::new();
    for (name, family) in families {
        if family.lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        for line in family.lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn add(families: &mut BTreeMap<String, Family>, metric: &Metric) {
    let Some(data) = &metric.data else { return };
    let (kind, monotonic) = match data {
        Data::Sum(s) if s.is_monotonic => ("counter", true),
        Data::Sum(_) | Data::Gauge(_) => ("gauge", false),
        Data::Histogram(_) => ("histogram", false),
        // Not made by runbom's instruments (the SDK aggregates none by default).
        Data::ExponentialHistogram(_) | Data::Summary(_) => return,
    };
    let name = name(&metric.name, &metric.unit, kind == "gauge", monotonic);
    let family = families.entry(name.clone()).or_default();
    if family.kind.is_empty() {
        family.kind = kind;
        family.help.clone_from(&metric.description);
    } else if family.kind != kind {
        // Two instruments of one name and different types: Prometheus cannot show both.
        tracing::debug!(metric = %metric.name, "not shown on /metrics: its name has another type");
        return;
    }
    let lines = &mut family.lines;
    match data {
        Data::Sum(s) => {
            for p in &s.data_points {
                lines.push(sample(
                    &name,
                    &p.attributes,
                    None,
                    &number(p.value.as_ref()),
                ));
            }
        }
        Data::Gauge(g) => {
            for p in &g.data_points {
                lines.push(sample(
                    &name,
                    &p.attributes,
                    None,
                    &number(p.value.as_ref()),
                ));
            }
        }
        Data::Histogram(h) => {
            for p in &h.data_points {
                let mut cumulative = 0;
                for (i, count) in p.bucket_counts.iter().enumerate() {
                    cumulative += count;
                    let le = p
                        .explicit_bounds
                        .get(i)
                        .map_or("+Inf".into(), |b| float(*b));
                    lines.push(sample(
                        &format!("{name}_bucket"),
                        &p.attributes,
                        Some(("le", &le)),
                        &cumulative.to_string(),
                    ));
                }
                let sum = float(p.sum.unwrap_or(0.0));
                lines.push(sample(&format!("{name}_sum"), &p.attributes, None, &sum));
                let count = p.count.to_string();
                lines.push(sample(
                    &format!("{name}_count"),
                    &p.attributes,
                    None,
                    &count,
                ));
            }
        }
        Data::ExponentialHistogram(_) | Data::Summary(_) => {}
    }
}

/// The Prometheus name of an OpenTelemetry metric.
#[must_use]
pub fn name(otel: &str, unit: &str, gauge: bool, monotonic: bool) -> String {
    let mut name = sanitize(otel);
    if let Some(suffix) = unit_suffix(unit, gauge)
        && !name.ends_with(&format!("_{suffix}"))
    {
        name.push('_');
        name.push_str(&suffix);
    }
    if monotonic && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

/// The suffix a unit gives (UCUM units as the OpenTelemetry conventions write them).
fn unit_suffix(unit: &str, gauge: bool) -> Option<String> {
    // Annotations (`{span}`, `By{message}`) name what is counted; they give no suffix.
    let unit: String = {
        let mut depth = 0;
        unit.chars()
            .filter(|c| match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' => {
                    depth -= 1;
                    false
                }
                _ => depth == 0,
            })
            .collect()
    };
    let word = |u: &str| -> String {
        match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "bit" => "bits",
            "%" => "percent",
            other => return sanitize(other).trim_matches('_').to_owned(),
        }
        .to_owned()
    };
    match unit.as_str() {
        "1" if gauge => Some("ratio".into()),
        "" | "1" => None,
        u => match u.split_once('/') {
            Some((a, b)) if !b.is_empty() => {
                let a = if a.is_empty() { String::new() } else { word(a) };
                Some(if a.is_empty() {
                    format!("per_{}", word_per(b))
                } else {
                    format!("{a}_per_{}", word_per(b))
                })
            }
            _ => Some(word(u)).filter(|w| !w.is_empty()),
        },
    }
}

fn word_per(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn label_name(key: &str) -> String {
    sanitize(key).replace(':', "_")
}

fn sample(name: &str, attrs: &[KeyValue], extra: Option<(&str, &str)>, value: &str) -> String {
    format!("{name}{} {value}", labels(attrs, extra))
}

/// `{a="x",b="y"}`, sorted by label name; attributes whose names collide after sanitising are
/// joined with `;` as the specification says.
fn labels(attrs: &[KeyValue], extra: Option<(&str, &str)>) -> String {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for kv in attrs {
        let value = kv.value.as_ref().map(text).unwrap_or_default();
        by_name
            .entry(label_name(&kv.key))
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    if let Some((k, v)) = extra {
        by_name.insert(k.into(), v.into());
    }
    if by_name.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = by_name
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => float(*d),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::KvlistValue(_)) | None => String::new(),
    }
}

fn number(v: Option<&number_data_point::Value>) -> String {
    match v {
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        Some(number_data_point::Value::AsDouble(d)) => float(*d),
        None => "0".into(),
    }
}

fn float(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{d}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_compatibility_rules() {
        assert_eq!(
            name("runbom.aibom.spans", "{span}", false, true),
            "runbom_aibom_spans_total"
        );
        assert_eq!(
            name("runbom.receiver.accepted_items", "{item}", false, true),
            "runbom_receiver_accepted_items_total"
        );
        assert_eq!(
            name("runbom.correlate.buffered_bytes", "By", true, false),
            "runbom_correlate_buffered_bytes"
        );
        assert_eq!(
            name("http.server.duration", "ms", false, false),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            name("cpu.utilization", "1", true, false),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            name("x.rate", "By/s", true, false),
            "x_rate_bytes_per_second"
        );
        assert_eq!(name("a_total", "", false, true), "a_total");
    }

    #[test]
    fn label_values_are_escaped() {
        let kv = KeyValue {
            key: "aibom.drift.subject".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("a\"b\\c\nd".into())),
            }),
        };
        assert_eq!(
            labels(&[kv], None),
            "{aibom_drift_subject=\"a\\\"b\\\\c\\nd\"}"
        );
    }
}
