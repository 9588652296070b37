//! The `correlate` processor: one task owning a [`Correlator`] (`runbom-correlate`). It takes
//! the traces pipeline's application spans and the ebpf receiver's kernel events, sends spans
//! (application and kernel) down its pipeline, and kernel log records into the logs pipelines
//! that list the ebpf receiver. The correlator decides where each event goes; converting the
//! events into OTLP is shared by `workers` tasks ([`workers`]). See `docs/correlation.md`.

pub mod config;
mod outcomes;
pub mod workers;
#[cfg(test)]
mod workers_tests;

pub use outcomes::Outcomes;
pub use workers::default_workers;

use std::{sync::Arc, time::Duration};

use runbom_correlate::{Converted, Correlator, Method, Settings, Stats};
use runbom_event::KernelEvent;
use runbom_otlp::signal::Signal;
use tokio::sync::mpsc;

use crate::{Ingest, Telemetry};

/// How often held spans and events are checked against their deadlines.
pub const TICK: Duration = Duration::from_millis(250);

/// The processor as configured.
#[derive(Clone, Debug)]
pub struct CorrelateSpec {
    pub settings: Settings,
    /// Tasks converting the correlated events into OTLP (1: the stage's own task).
    pub workers: usize,
    /// The ebpf receiver whose events it correlates, and whose logs pipelines get its logs.
    pub source: String,
}

/// Unix nanoseconds now.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A counter's name, help text, and how to read it.
type Read = (&'static str, &'static str, fn(&Stats) -> u64);

/// Shows the correlation's counters on `/metrics`.
pub fn register(telemetry: &Telemetry, stats: &Arc<Stats>) {
    let methods: [(Method, &'static str, &'static str); 4] = [
        (
            Method::Traceparent,
            "runbom_correlate_traceparent_events_total",
            "Kernel events placed by the traceparent of their HTTP request.",
        ),
        (
            Method::Thread,
            "runbom_correlate_thread_events_total",
            "Kernel events placed in a span of their thread.",
        ),
        (
            Method::Process,
            "runbom_correlate_process_events_total",
            "Kernel events placed in a span of their process.",
        ),
        (
            Method::Ancestry,
            "runbom_correlate_ancestry_events_total",
            "Kernel events of child processes placed where their parent forked them.",
        ),
    ];
    for (m, name, help) in methods {
        let s = stats.clone();
        telemetry.counter_fn(name, help, move || s.correlated(m));
    }
    let reads: [Read; 5] = [
        (
            "runbom_correlate_uncorrelated_events_total",
            "Kernel events that no application span claimed.",
            Stats::uncorrelated,
        ),
        (
            "runbom_correlate_evicted_events_total",
            "Kernel events let go early because the correlation buffer was full.",
            Stats::evicted,
        ),
        (
            "runbom_correlate_stitched_spans_total",
            "Application spans adopted into the trace they ran in.",
            Stats::stitched,
        ),
        (
            "runbom_correlate_buffered_events",
            "Kernel events held for correlation now.",
            Stats::buffered_events,
        ),
        (
            "runbom_correlate_buffered_bytes",
            "Bytes of kernel events held for correlation now.",
            Stats::buffered_bytes,
        ),
    ];
    for (name, help, read) in reads {
        let s = stats.clone();
        telemetry.counter_fn(name, help, move || read(&s));
    }
}

/// Where the stage's kernel log records go.
#[derive(Clone)]
pub enum KernelLogs {
    /// Into the logs pipelines that list the ebpf receiver (`None`: none does).
    Pipelines(Option<Ingest>),
    /// Down the stage's own output, to an `aibom` processor after it, which judges the records
    /// no trace claimed and hands them on to those logs pipelines.
    Downstream,
}

/// Runs until both inputs close, then releases everything it holds and returns (closing
/// `tx` once everything it released is sent).
pub async fn run(
    mut spans: mpsc::Receiver<Signal>,
    mut events: mpsc::Receiver<Vec<KernelEvent>>,
    tx: mpsc::Sender<Signal>,
    logs: KernelLogs,
    mut correlator: Correlator,
    outcomes: Outcomes,
    workers: usize,
) {
    let mut convert = workers::Convert::start(workers, correlator.convert_options());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut spans_open, mut events_open) = (true, true);
    while spans_open || events_open {
        let out = tokio::select! {
            got = spans.recv(), if spans_open => match got {
                Some(Signal::Traces(request)) => {
                    correlator.add_spans(request, unix_now());
                    correlator.ready_decided()
                }
                Some(other) => {
                    // A traces pipeline carries traces; anything else passes untouched.
                    if tx.send(other).await.is_err() {
                        return;
                    }
                    continue;
                }
                None => {
                    spans_open = false;
                    continue;
                }
            },
            got = events.recv(), if events_open => {
                let Some(batch) = got else {
                    events_open = false;
                    continue;
                };
                correlator.add_events(batch, unix_now());
                correlator.ready_decided()
            }
            _ = tick.tick() => correlator.poll_decided(unix_now()),
        };
        if !convert.send(out, &tx, &logs, &outcomes).await {
            return;
        }
    }
    let out = correlator.flush_decided();
    convert.send(out, &tx, &logs, &outcomes).await;
    convert.finish().await;
}

/// Sends spans downstream and logs where they go (as the events, [`Signal::KernelLogs`]:
/// written to the wire from them, built only by a component that reads records); false once
/// downstream is gone.
async fn send(out: Converted, tx: &mpsc::Sender<Signal>, logs: &KernelLogs) -> bool {
    if !out.logs.is_empty() {
        match logs {
            KernelLogs::Pipelines(Some(ingest)) => {
                ingest.push_waiting(Signal::KernelLogs(out.logs)).await;
            }
            KernelLogs::Pipelines(None) => {}
            KernelLogs::Downstream => {
                if tx.send(Signal::KernelLogs(out.logs)).await.is_err() {
                    return false;
                }
            }
        }
    }
    if out.traces.resource_spans.is_empty() {
        return true;
    }
    tx.send(Signal::Traces(out.traces)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };
    use runbom_event::{Detail, ProcessInfo};
    use runbom_otlp::signal::SignalKind;
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
        }
    }

    fn connect(t0: u64) -> KernelEvent {
        let process = Arc::new(ProcessInfo {
            pid: 77,
            ppid: 1,
            exe: "/usr/bin/python3".into(),
            ..ProcessInfo::default()
        });
        let peer: SocketAddr = "127.0.0.1:80".parse().expect("address");
        KernelEvent {
            pid: 77,
            tid: 78,
            cgroup_id: 0,
            start_ns: t0 + 1_000,
            end_ns: t0 + 2_000,
            process,
            detail: Detail::Connect {
                remote: peer,
                local: None,
                transport: None,
                error: None,
                fd: None,
            },
        }
    }

    fn tool_span(t0: u64) -> Signal {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "tool".into(),
            start_time_unix_nano: t0,
            end_time_unix_nano: t0 + 10_000,
            attributes: vec![kv("thread.id", Value::IntValue(78))],
            ..Default::default()
        };
        Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("process.pid", Value::IntValue(77))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        })
    }

    #[tokio::test]
    async fn the_stage_places_events_and_routes_spans_and_logs() {
        let (span_tx, span_rx) = mpsc::channel(8);
        let (event_tx, event_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let (logs_tx, mut logs_rx) = mpsc::channel(8);
        let telemetry = Telemetry::default();
        let logs = Ingest::new(
            "ebpf".into(),
            vec![(SignalKind::Logs, logs_tx)],
            vec![(
                SignalKind::Logs,
                telemetry.stage("receiver", "ebpf", SignalKind::Logs),
            )],
            Duration::from_secs(1),
            CancellationToken::new(),
        );
        let correlator = Correlator::new(Settings {
            wait: Duration::from_millis(300),
            window: Duration::from_secs(2),
            ..Settings::default()
        });
        let stats = correlator.stats();
        register(&telemetry, &stats);
        let task = tokio::spawn(run(
            span_rx,
            event_rx,
            out_tx,
            KernelLogs::Pipelines(Some(logs)),
            correlator,
            Outcomes::new(telemetry.metrics()),
            1,
        ));

        let t0 = unix_now();
        event_tx
            .send(vec![connect(t0)])
            .await
            .expect("stage takes events");
        span_tx
            .send(tool_span(t0))
            .await
            .expect("stage takes spans");

        // The root's trace is held for `wait` (it could be stitched), then both spans go on.
        let mut spans = Vec::new();
        while spans.len() < 2 {
            let got = tokio::time::timeout(Duration::from_secs(5), out_rx.recv())
                .await
                .expect("spans within the wait")
                .expect("stage open");
            let Signal::Traces(t) = got else {
                panic!("a traces pipeline got {got:?}")
            };
            spans.extend(
                t.resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans),
            );
        }
        let kernel = spans.iter().find(|s| s.name.starts_with("net.connect"));
        let kernel = kernel.expect("a kernel span");
        assert_eq!(
            (kernel.trace_id.as_slice(), kernel.parent_span_id.as_slice()),
            (&[1; 16][..], &[2; 8][..])
        );
        let Some(Signal::Logs(logs)) = logs_rx.recv().await.map(Signal::into_typed) else {
            panic!("the log record goes to the logs pipeline")
        };
        let record = &logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.span_id, kernel.span_id);
        assert_eq!(stats.correlated(Method::Thread), 1);
        // A new series shows 0 first (for Prometheus' increase()), its count from the next
        // collection on.
        let series = "runbom_correlate_outcomes_total{runbom_correlation_confidence=\"high\",\
                      runbom_correlation_method=\"thread\"}";
        let first = telemetry.render_prometheus();
        assert!(first.contains(&format!("{series} 0")), "{first}");
        assert!(first.contains("runbom_correlate_thread_events_total 1"));
        let text = telemetry.render_prometheus();
        assert!(
            text.contains(
                "runbom_correlate_outcomes_total{runbom_correlation_confidence=\"high\",\
                 runbom_correlation_method=\"thread\"} 1"
            ),
            "{text}"
        );

        // Inputs closed: the stage flushes and closes its output.
        drop((span_tx, event_tx));
        task.await.expect("stage ends");
        assert!(out_rx.recv().await.is_none());
    }
}
