//! Drift in the kernel log records no trace claimed of a declared agent's process (a thread
//! with no active span, a child process no trace claims): alerted like a trace's drift, once
//! per agent, kinds and subject per window, with the workload's activity as its chain.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

mod support;

use support::settings;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, logs::v1::LogRecord,
};
use runbom_aibom::{DeclaredBom, Processor, span::attr};
use runbom_event::Detail;
use runbom_otlp::{ConvertOptions, Placement, convert};
use runbom_testkit::{
    agent_trace::{self as common, AGENT_PID, T0},
    shadow_run::{connect, event, process, request, shadow_run, shadow_run_events},
};

const AGENT_EXE: &str = "/srv/agent/.venv/bin/python3";

fn agent_pid() -> u32 {
    u32::try_from(AGENT_PID).expect("pid")
}

/// A processor that has judged one trace of the declared agent: its process (`AGENT_PID`) is
/// the agent's from now on.
fn declared_agent(bom: &DeclaredBom, now: Instant) -> Processor {
    let mut p = Processor::new(settings());
    let released = p.push(common::benign(1).request(), now, bom);
    assert!(released.traces.is_some());
    p
}

fn logs_of(events: &[runbom_event::KernelEvent]) -> ExportLogsServiceRequest {
    placed_logs_of(events, &[])
}

fn placed_logs_of(
    events: &[runbom_event::KernelEvent],
    placements: &[Option<Placement>],
) -> ExportLogsServiceRequest {
    let opts = ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: false,
    };
    convert(events, placements, &opts).logs
}

fn alert_records(alerts: Option<&ExportLogsServiceRequest>) -> Vec<LogRecord> {
    alerts
        .into_iter()
        .flat_map(common::log_records_of)
        .cloned()
        .collect()
}

fn int(r: &LogRecord, key: &str) -> Option<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match v.value {
            Some(Value::IntValue(i)) => Some(i),
            _ => None,
        })
}

#[test]
fn a_declared_agents_unclaimed_exfiltration_is_alerted_once_per_window() {
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let alerted_by_the_trace = p.stats.alerts.load(Ordering::Relaxed);
    // Later, with no span active: a model call, a file read, and a POST to an endpoint the BOM
    // does not declare (its `net.connect` and its `http.request`: one finding).
    let agent = process(agent_pid(), 1, AGENT_EXE);
    let mut logs = shadow_run(&agent, T0 + 5_000_000_000);
    p.judge_logs(&mut logs, now, &bom);

    // Held for `wait`, so that what the workload did next is in the chain.
    assert!(p.release_due(now, &bom).alerts.is_none());
    let due = p.next_deadline().expect("a held alert");
    assert!(due <= now + Duration::from_secs(1));
    let alerts = p.release_due(due, &bom).alerts;
    let alerts = alert_records(alerts.as_ref());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.event_name, "aibom.drift");
    assert_eq!(a.severity_text, "ERROR");
    assert!(a.trace_id.is_empty() && a.span_id.is_empty());
    let at = &a.attributes;
    assert_eq!(
        common::strings(at, "aibom.drift.kinds"),
        ["undeclared_endpoint"]
    );
    assert_eq!(attr(at, "aibom.agent.ref"), Some("agent:support-agent"));
    assert_eq!(attr(at, "aibom.drift.subject"), Some("127.0.0.1:18099"));
    assert!(
        attr(at, "aibom.drift.reason").is_some_and(|r| r.contains("127.0.0.1:18099")),
        "{at:?}"
    );
    assert_eq!(attr(at, "process.executable.path"), Some(AGENT_EXE));
    assert_eq!(int(a, "process.pid"), Some(AGENT_PID));
    // The connection and the request it carried: seen twice while held.
    assert_eq!(int(a, "aibom.drift.count"), Some(2));
    let chain = common::strings(at, "aibom.chain");
    let text = chain.join("\n");
    let drift = chain
        .iter()
        .position(|l| l.contains("DRIFT undeclared_endpoint: connect: 127.0.0.1:18099"))
        .expect("the finding's line");
    assert!(chain[drift].ends_with("(pid 4242)"), "{text}");
    let read = chain
        .iter()
        .position(|l| l.contains("file.open /tmp/runbom-agent/data/customers.csv"))
        .expect("what the agent did before");
    let sent = chain
        .iter()
        .position(|l| l.contains("POST http://127.0.0.1:18099/upload"))
        .expect("what the agent did right after");
    assert!(read < drift && drift < sent, "{text}");
    assert!(a.body.is_some());
    assert_eq!(
        p.stats.alerts.load(Ordering::Relaxed),
        alerted_by_the_trace + 1
    );

    // The same again in the window (another thread, later): counted, not alerted.
    let deduplicated = p.stats.alerts_deduplicated.load(Ordering::Relaxed);
    let mut logs = shadow_run(&agent, T0 + 60_000_000_000);
    p.judge_logs(&mut logs, now + Duration::from_mins(1), &bom);
    assert!(p.release_all(&bom).alerts.is_none());
    assert_eq!(
        p.stats.alerts_deduplicated.load(Ordering::Relaxed),
        deduplicated + 2
    );
    assert_eq!(p.stats.unclaimed.drift.load(Ordering::Relaxed), 4);

    // After the window, it is alerted again.
    let later = now + Duration::from_mins(11);
    let mut logs = shadow_run(&agent, T0 + 700_000_000_000);
    p.judge_logs(&mut logs, later, &bom);
    let alerts = p.release_all(&bom).alerts;
    assert_eq!(alert_records(alerts.as_ref()).len(), 1);
}

/// A child of the agent's process that no trace claims runs curl, which uploads: the upload is
/// alerted, with the exec in its chain; the exec alone (an undeclared program) is drift on its
/// record, not an alert of its own.
#[test]
fn a_declared_agents_child_uploading_is_alerted_with_its_exec_in_the_chain() {
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let child = process(5353, agent_pid(), "/usr/bin/curl");
    let ms = 1_000_000;
    let t = T0 + 5_000_000_000;
    let events = vec![
        event(
            &child,
            t,
            Detail::Exec {
                path: "/usr/bin/curl".into(),
                argv_truncated: false,
            },
        ),
        event(&child, t + ms, connect(18099)),
        event(&child, t + 2 * ms, request(18099, "POST", "/upload", None)),
    ];
    let mut logs = logs_of(&events);
    p.judge_logs(&mut logs, now, &bom);
    let alerts = p.release_all(&bom).alerts;
    let alerts = alert_records(alerts.as_ref());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        common::strings(&a.attributes, "aibom.drift.kinds"),
        ["undeclared_endpoint"]
    );
    assert_eq!(
        attr(&a.attributes, "aibom.agent.ref"),
        Some("agent:support-agent")
    );
    assert_eq!(int(a, "process.pid"), Some(5353));
    assert_eq!(
        attr(&a.attributes, "process.executable.path"),
        Some("/usr/bin/curl")
    );
    let chain = common::strings(&a.attributes, "aibom.chain").join("\n");
    assert!(chain.contains("exec /usr/bin/curl"), "{chain}");
    assert!(chain.contains("DRIFT undeclared_endpoint"), "{chain}");
}

#[test]
fn a_declared_agents_unclaimed_records_without_drift_raise_nothing() {
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let alerted_by_the_trace = p.stats.alerts.load(Ordering::Relaxed);
    // The declared model call and data read, without the upload.
    let agent = process(agent_pid(), 1, AGENT_EXE);
    let mut events = shadow_run_events(&agent, T0 + 5_000_000_000);
    events.truncate(4);
    let mut logs = logs_of(&events);
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    assert!(
        records
            .iter()
            .all(
                |r| attr(&r.attributes, "aibom.agent.ref") == Some("agent:support-agent")
                    && common::boolean(&r.attributes, "aibom.drift") == Some(false)
            )
    );
    assert!(p.next_deadline().is_none());
    assert!(p.release_all(&bom).alerts.is_none());
    assert_eq!(p.stats.alerts.load(Ordering::Relaxed), alerted_by_the_trace);
}

/// An undeclared file opened and an undeclared program run by the agent's process with no span
/// active are drift on their records, not alerts: outside a trace they are mostly the process
/// starting (an interpreter loading its modules), as the real agents in the tests show.
#[test]
fn a_declared_agents_unclaimed_file_and_program_drift_stays_on_the_records() {
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let alerted_by_the_trace = p.stats.alerts.load(Ordering::Relaxed);
    let agent = process(agent_pid(), 1, AGENT_EXE);
    let t = T0 + 5_000_000_000;
    let events = vec![
        event(
            &agent,
            t,
            Detail::FileOpen {
                path: "/srv/agent/.venv/lib/python3.12/site-packages/__pycache__/x.pyc".into(),
                flags: 0,
                error: None,
            },
        ),
        event(
            &process(5354, agent_pid(), "/usr/bin/uname"),
            t + 1_000_000,
            Detail::Exec {
                path: "/usr/bin/uname".into(),
                argv_truncated: false,
            },
        ),
    ];
    let mut logs = logs_of(&events);
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| common::boolean(&r.attributes, "aibom.drift") == Some(true)),
        "{records:?}"
    );
    assert!(p.release_all(&bom).alerts.is_none());
    assert_eq!(p.stats.alerts.load(Ordering::Relaxed), alerted_by_the_trace);
}

#[test]
fn an_undeclared_workload_gets_only_its_shadow_alert() {
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let shadow = process(5151, 1, "/usr/bin/python3.12");
    let mut logs = shadow_run(&shadow, T0 + 5_000_000_000);
    p.judge_logs(&mut logs, now, &bom);
    let alerts = p.release_all(&bom).alerts;
    let alerts = alert_records(alerts.as_ref());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        common::strings(&alerts[0].attributes, "aibom.drift.kinds"),
        ["shadow_ai"]
    );
    assert!(attr(&alerts[0].attributes, "aibom.agent.ref").is_none());
}

#[test]
fn drift_placed_by_inference_is_left_to_its_runs_trace() {
    // Events placed in a run runbom built (`inferred`) are judged here too, but they are also
    // kernel spans of that run's trace, which alerts their drift: not alerted twice.
    let bom = common::bom();
    let now = Instant::now();
    let mut p = declared_agent(&bom, now);
    let agent = process(agent_pid(), 1, AGENT_EXE);
    let t = T0 + 5_000_000_000;
    let events = vec![
        event(&agent, t, connect(18099)),
        event(
            &agent,
            t + 1_000_000,
            request(18099, "POST", "/upload", None),
        ),
    ];
    let run = std::sync::Arc::new(
        common::benign(1).request().resource_spans[0]
            .resource
            .clone()
            .unwrap_or_default(),
    );
    let placed = Some(Placement {
        trace_id: [9; 16],
        parent_span_id: [8; 8],
        resource: run,
        method: "inferred",
        confidence: "medium",
    });
    let mut logs = placed_logs_of(&events, &[placed.clone(), placed]);
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    assert!(
        records
            .iter()
            .all(|r| common::boolean(&r.attributes, "aibom.drift") == Some(true)),
        "judged: {records:?}"
    );
    assert!(p.next_deadline().is_none());
    assert!(p.release_all(&bom).alerts.is_none());
}
