//! The `aibom` processor in a running graph: spans pass through annotated, and the drift alert
//! reaches the logs pipeline that lists the processor as a receiver; the verdicts the exporter
//! writes are the processor's.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use runbom_aibom::{BomWatch, Processor, Settings};
use runbom_pipeline::exporter::FileExporter;
use runbom_pipeline::{
    Graph, GraphSettings, PipelineSpec, ProcessorSpec, Signal, SignalKind, Telemetry,
    processor::{aibom::AibomSpec, batch::BatchSettings},
};
use tokio_util::sync::CancellationToken;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
    }
}

fn span(id: u8, parent: u8, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.into(),
        start_time_unix_nano: 1_795_737_600_000_000_000 + u64::from(id) * 1000,
        end_time_unix_nano: 1_795_737_600_000_000_000 + u64::from(id) * 1000 + 500,
        attributes: attrs,
        ..Default::default()
    }
}

/// `invoke_agent` → `execute_tool http_post` → `POST` to the undeclared exfil sink.
fn exfiltration() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "support-agent")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope::default()),
                spans: vec![
                    span(
                        1,
                        0,
                        "invoke_agent support-agent",
                        vec![
                            kv("gen_ai.operation.name", "invoke_agent"),
                            kv("gen_ai.agent.name", "support-agent"),
                        ],
                    ),
                    span(
                        2,
                        1,
                        "execute_tool http_post",
                        vec![
                            kv("gen_ai.operation.name", "execute_tool"),
                            kv("gen_ai.tool.name", "http_post"),
                        ],
                    ),
                    span(
                        3,
                        2,
                        "POST",
                        vec![
                            kv("http.request.method", "POST"),
                            kv("url.full", "http://127.0.0.1:18099/upload"),
                        ],
                    ),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

#[tokio::test]
async fn alerts_reach_the_logs_pipeline_that_lists_the_processor() {
    let root = std::env::temp_dir().join(format!("runbom-pipeline-aibom-{}", std::process::id()));
    let bom_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent/bom.cdx.json");
    let spec = AibomSpec {
        name: "aibom".into(),
        settings: Settings {
            wait: Duration::from_millis(100),
            ..Settings::default()
        },
        bom: Arc::new(Mutex::new(
            BomWatch::load(&bom_path).expect("the reference BOM"),
        )),
        reload_interval: Duration::from_secs(1),
        stats: Arc::default(),
    };
    let specs = [
        PipelineSpec {
            name: "traces".into(),
            signal: SignalKind::Traces,
            receivers: vec!["otlp".into()],
            processors: vec![ProcessorSpec::Aibom(spec.clone())],
            exporters: vec!["spans".into()],
        },
        PipelineSpec {
            name: "logs".into(),
            signal: SignalKind::Logs,
            receivers: vec!["otlp".into(), "aibom".into()],
            processors: Vec::new(),
            exporters: vec!["alerts".into()],
        },
    ];
    let telemetry = Arc::new(Telemetry::default());
    let stop = CancellationToken::new();
    let mut graph = Graph::build(
        &specs,
        GraphSettings::default(),
        telemetry.clone(),
        &stop,
        |name, _, _| Ok(Box::new(FileExporter::new(&root.join(name))?)),
    )
    .expect("the graph builds");
    assert!(
        graph.take_ingest("aibom").is_none(),
        "the processor holds its own ingest"
    );
    let otlp = graph
        .take_ingest("otlp")
        .expect("the otlp receiver's ingest");
    otlp.push(Signal::Traces(exfiltration()))
        .await
        .expect("accepted");
    // Held for the wait, then released: the alert arrives while runbom runs, not only at shutdown.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let spans = read(&root.join("spans"), "traces.jsonl");
    assert!(
        spans.contains("undeclared_endpoint"),
        "annotated spans exported: {spans}"
    );
    let alerts = read(&root.join("alerts"), "logs.jsonl");
    assert!(
        alerts.contains("aibom.drift") && alerts.contains("aibom.chain"),
        "the alert: {alerts}"
    );
    assert_eq!(alerts.lines().count(), 1);
    // The AI-BOM metrics say what the export says: one ERROR alert, one undeclared endpoint.
    // New series show 0 at their first collection (for Prometheus' increase()), then the count.
    let first = telemetry.render_prometheus();
    assert!(
        first.contains("runbom_aibom_alerts_total{severity=\"ERROR\"} 0"),
        "{first}"
    );
    let metrics = telemetry.render_prometheus();
    assert!(
        metrics.contains("runbom_aibom_alerts_total{severity=\"ERROR\"} 1"),
        "{metrics}"
    );
    let undeclared = metrics
        .lines()
        .find(|l| l.starts_with("runbom_aibom_undeclared_uses_total{"))
        .unwrap_or_else(|| panic!("an undeclared use: {metrics}"));
    assert!(
        undeclared.contains("aibom_drift_kind=\"undeclared_endpoint\"")
            && undeclared.ends_with(" 1"),
        "{undeclared}"
    );
    assert!(
        metrics.contains(
            "runbom_aibom_undeclared_subjects_total{aibom_drift_kind=\"undeclared_endpoint\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("runbom_aibom_spans_total{")
                && l.contains("aibom_declared=\"false\"")),
        "{metrics}"
    );
    drop(otlp);
    graph.drain(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&root).unwrap();
}

/// `exfiltration()` with its own trace id and span ids.
fn exfiltration_of(trace: u8) -> ExportTraceServiceRequest {
    let mut req = exfiltration();
    for s in req
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
    {
        s.trace_id = vec![trace; 16];
        s.attributes
            .push(kv("aibom.declared", "forged by the sender"));
    }
    req
}

/// The spans' verdicts go beside them through `aibom` and `batch` (which merges such requests)
/// and the file exporter writes them: the lines are those of the requests with the verdicts
/// written onto the spans (`Processor::push`), merged as `batch` merges them.
#[tokio::test]
async fn verdicts_written_by_the_exporter_are_the_processors() {
    let root = std::env::temp_dir().join(format!(
        "runbom-pipeline-aibom-verdicts-{}",
        std::process::id()
    ));
    let bom_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent/bom.cdx.json");
    let watch = BomWatch::load(&bom_path).expect("the reference BOM");
    let bom = watch.current().clone();
    let spec = AibomSpec {
        name: "aibom".into(),
        settings: Settings::default(),
        bom: Arc::new(Mutex::new(watch)),
        reload_interval: Duration::from_secs(1),
        stats: Arc::default(),
    };
    let batch = BatchSettings {
        send_batch_size: 6,
        send_batch_max_size: 0,
        timeout: Duration::from_secs(5),
    };
    let specs = [PipelineSpec {
        name: "traces".into(),
        signal: SignalKind::Traces,
        receivers: vec!["otlp".into()],
        processors: vec![ProcessorSpec::Aibom(spec), ProcessorSpec::Batch(batch)],
        exporters: vec!["spans".into()],
    }];
    let stop = CancellationToken::new();
    let mut graph = Graph::build(
        &specs,
        GraphSettings::default(),
        Arc::new(Telemetry::default()),
        &stop,
        |name, _, _| Ok(Box::new(FileExporter::new(&root.join(name))?)),
    )
    .expect("the graph builds");
    let otlp = graph
        .take_ingest("otlp")
        .expect("the otlp receiver's ingest");
    for trace in [1, 2] {
        otlp.push(Signal::Traces(exfiltration_of(trace)))
            .await
            .expect("accepted");
    }
    drop(otlp);
    graph.drain(Duration::from_secs(2)).await;
    let lines = read(&root.join("spans"), "traces.jsonl");

    let mut processor = Processor::new(Settings::default());
    let mut expected = Signal::empty(SignalKind::Traces);
    for trace in [1, 2] {
        let out = processor.push(exfiltration_of(trace), std::time::Instant::now(), &bom);
        expected
            .merge(Signal::Traces(out.traces.expect("judged at once")))
            .expect("traces");
    }
    let mut line = Vec::new();
    expected.write_json(&mut line).expect("writes");
    assert_eq!(
        lines.trim_end(),
        String::from_utf8_lossy(&line),
        "one merged request"
    );
    assert!(lines.contains("undeclared_endpoint") && !lines.contains("forged"));
    std::fs::remove_dir_all(&root).unwrap();
}
