//! Provenance (contract §6): kernel evidence and findings come only from runbom itself.
//!
//! A client of the OTLP receivers can send anything, including attributes of runbom's own
//! namespaces. Before a request enters a pipeline, what it carries under `runbom.*` and
//! `aibom.*` (resource, scope, span, span event, link, log and metric data point attributes;
//! runbom's scope names `runbom.kernel`, `runbom.aibom` and `runbom.genai`)
//! and an `event.name` (attribute or field) naming a kernel event or `aibom.drift` are moved
//! under `received.`. So nothing that arrived over OTLP reads as a
//! kernel event to `correlate` and `aibom`, or as a finding to `investigate`: everything in
//! runbom's output that carries those names was made by runbom's own ebpf receiver and
//! processors. The values are kept, for whoever wants to see what the client claimed.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{Exemplar, Metric, metric},
};
use runbom_event::semconv::{
    AIBOM_PREFIX, EVENT_NAME, RECEIVED_PREFIX, RUNBOM_PREFIX, event, scope as scopes,
};
use runbom_otlp::signal::Signal;

/// The `event.name` values only runbom may give a record.
const RESERVED_EVENTS: &[&str] = &[
    event::PROCESS_EXEC,
    event::PROCESS_EXIT,
    event::NET_CONNECT,
    event::NET_ACCEPT,
    event::DNS_QUERY,
    event::FILE_OPEN,
    event::HTTP_REQUEST,
    event::MCP_CLIENT,
    event::MCP_SERVER,
    event::AIBOM_DRIFT,
];

/// The instrumentation scopes of what runbom creates. (A client's own scope may be named
/// under `runbom.`, as runbom's tests' tracers are: only these mark runbom's evidence.)
const RESERVED_SCOPES: &[&str] = &[scopes::KERNEL, scopes::AIBOM, scopes::GENAI];

fn reserved_key(key: &str) -> bool {
    key.starts_with(RUNBOM_PREFIX) || key.starts_with(AIBOM_PREFIX)
}

fn reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name) || reserved_key(name)
}

/// Moves what a client sent in runbom's namespaces under `received.`; returns how many
/// attributes, scope names and event names were moved.
pub(crate) fn quarantine(signal: &mut Signal) -> u64 {
    let mut moved = 0;
    match signal {
        Signal::Traces(r) => {
            for rs in &mut r.resource_spans {
                if let Some(res) = &mut rs.resource {
                    moved += attributes(&mut res.attributes);
                }
                for ss in &mut rs.scope_spans {
                    moved += scope(ss.scope.as_mut());
                    for span in &mut ss.spans {
                        moved += attributes(&mut span.attributes);
                        for e in &mut span.events {
                            moved += attributes(&mut e.attributes);
                        }
                        for l in &mut span.links {
                            moved += attributes(&mut l.attributes);
                        }
                    }
                }
            }
        }
        Signal::Logs(r) => {
            for rl in &mut r.resource_logs {
                if let Some(res) = &mut rl.resource {
                    moved += attributes(&mut res.attributes);
                }
                for sl in &mut rl.scope_logs {
                    moved += scope(sl.scope.as_mut());
                    for log in &mut sl.log_records {
                        moved += attributes(&mut log.attributes);
                        if reserved_event(&log.event_name) {
                            let name = std::mem::take(&mut log.event_name);
                            log.attributes.push(KeyValue {
                                key: format!("{RECEIVED_PREFIX}{EVENT_NAME}"),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue(name)),
                                }),
                            });
                            moved += 1;
                        }
                    }
                }
            }
        }
        Signal::Metrics(r) => {
            for rm in &mut r.resource_metrics {
                if let Some(res) = &mut rm.resource {
                    moved += attributes(&mut res.attributes);
                }
                for sm in &mut rm.scope_metrics {
                    moved += scope(sm.scope.as_mut());
                    for m in &mut sm.metrics {
                        moved += data_points(m);
                    }
                }
            }
        }
        // runbom's own records, never received from a client: its namespaces are theirs.
        Signal::KernelLogs(_)
        | Signal::KernelSpans(_)
        | Signal::AnnotatedTraces(_)
        | Signal::SharedLogs(_) => {}
    }
    moved
}

fn scope(scope: Option<&mut InstrumentationScope>) -> u64 {
    let Some(scope) = scope else { return 0 };
    let mut moved = attributes(&mut scope.attributes);
    if RESERVED_SCOPES.contains(&scope.name.as_str()) {
        scope.name.insert_str(0, RECEIVED_PREFIX);
        moved += 1;
    }
    moved
}

/// The attributes of a metric's data points and of their exemplars.
fn data_points(m: &mut Metric) -> u64 {
    fn each<P>(
        points: &mut [P],
        parts: impl Fn(&mut P) -> (&mut Vec<KeyValue>, &mut Vec<Exemplar>),
    ) -> u64 {
        let mut moved = 0;
        for p in points {
            let (attrs, exemplars) = parts(p);
            moved += attributes(attrs);
            for e in exemplars {
                moved += attributes(&mut e.filtered_attributes);
            }
        }
        moved
    }
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => each(&mut g.data_points, |p| {
            (&mut p.attributes, &mut p.exemplars)
        }),
        Some(metric::Data::Sum(s)) => each(&mut s.data_points, |p| {
            (&mut p.attributes, &mut p.exemplars)
        }),
        Some(metric::Data::Histogram(h)) => each(&mut h.data_points, |p| {
            (&mut p.attributes, &mut p.exemplars)
        }),
        Some(metric::Data::ExponentialHistogram(h)) => each(&mut h.data_points, |p| {
            (&mut p.attributes, &mut p.exemplars)
        }),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .map(|p| attributes(&mut p.attributes))
            .sum(),
        None => 0,
    }
}

fn attributes(attrs: &mut [KeyValue]) -> u64 {
    let mut moved = 0;
    for kv in attrs {
        let reserved = reserved_key(&kv.key)
            || (kv.key == EVENT_NAME
                && matches!(
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(s)) if reserved_event(s)
                ));
        if reserved {
            kv.key.insert_str(0, RECEIVED_PREFIX);
            moved += 1;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }

    fn keys(attrs: &[KeyValue]) -> Vec<&str> {
        attrs.iter().map(|kv| kv.key.as_str()).collect()
    }

    #[test]
    fn forged_kernel_spans_lose_runbom_names() {
        let mut signal = Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "x"), kv("aibom.agent.ref", "a")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "runbom.kernel".into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: vec![Span {
                        attributes: vec![
                            kv("runbom.event", "file.open"),
                            kv("runbom.correlation.method", "thread"),
                            kv("aibom.drift", "true"),
                            kv("file.path", "/etc/shadow"),
                        ],
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        });
        assert_eq!(quarantine(&mut signal), 5);
        let Signal::Traces(r) = signal else {
            unreachable!()
        };
        let rs = &r.resource_spans[0];
        assert_eq!(
            keys(&rs.resource.as_ref().unwrap().attributes),
            ["service.name", "received.aibom.agent.ref"]
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "received.runbom.kernel");
        assert_eq!(
            keys(&ss.spans[0].attributes),
            [
                "received.runbom.event",
                "received.runbom.correlation.method",
                "received.aibom.drift",
                "file.path"
            ]
        );
    }

    #[test]
    fn forged_alerts_lose_their_event_name() {
        let log = |attributes, event_name: &str| LogRecord {
            attributes,
            event_name: event_name.into(),
            ..LogRecord::default()
        };
        let mut signal = Signal::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        log(vec![kv("event.name", "aibom.drift")], ""),
                        log(vec![], "aibom.drift"),
                        log(vec![kv("event.name", "file.open")], ""),
                        // An application's own events are its own.
                        log(
                            vec![kv("event.name", "gen_ai.client.inference")],
                            "app.login",
                        ),
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        });
        assert_eq!(quarantine(&mut signal), 3);
        let Signal::Logs(r) = signal else {
            unreachable!()
        };
        let logs = &r.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(keys(&logs[0].attributes), ["received.event.name"]);
        assert_eq!(logs[1].event_name, "");
        assert_eq!(keys(&logs[1].attributes), ["received.event.name"]);
        assert_eq!(keys(&logs[2].attributes), ["received.event.name"]);
        assert_eq!(keys(&logs[3].attributes), ["event.name"]);
        assert_eq!(logs[3].event_name, "app.login");
    }

    #[test]
    fn runbom_scopes_mcp_events_and_metric_points_are_runbom_names_too() {
        use opentelemetry_proto::tonic::{
            collector::metrics::v1::ExportMetricsServiceRequest,
            metrics::v1::{Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics},
        };
        let mut traces = Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "runbom.genai".into(),
                        ..InstrumentationScope::default()
                    }),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        });
        assert_eq!(quarantine(&mut traces), 1);
        let Signal::Traces(r) = traces else {
            unreachable!()
        };
        let scope = r.resource_spans[0].scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "received.runbom.genai");

        let mut logs = Signal::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            event_name: "mcp.client".into(),
                            ..LogRecord::default()
                        },
                        LogRecord {
                            attributes: vec![kv("event.name", "mcp.server")],
                            ..LogRecord::default()
                        },
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        });
        assert_eq!(quarantine(&mut logs), 2);

        let point = NumberDataPoint {
            attributes: vec![kv("aibom.drift", "true"), kv("route", "/x")],
            exemplars: vec![Exemplar {
                filtered_attributes: vec![kv("runbom.event", "file.open")],
                ..Exemplar::default()
            }],
            ..NumberDataPoint::default()
        };
        let mut metrics = Signal::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point],
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        });
        assert_eq!(quarantine(&mut metrics), 2);
        let Signal::Metrics(r) = metrics else {
            unreachable!()
        };
        let m = &r.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Gauge(g)) = &m.data else {
            unreachable!()
        };
        let p = &g.data_points[0];
        assert_eq!(keys(&p.attributes), ["received.aibom.drift", "route"]);
        assert_eq!(
            keys(&p.exemplars[0].filtered_attributes),
            ["received.runbom.event"]
        );
    }
}
