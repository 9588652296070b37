//! The processor on traces shaped like the reference agent's: the injected conversation gives
//! `undeclared_endpoint` on the exfiltration request and exactly one alert whose chain tells
//! the story; the benign one gives no drift and no alert.

use runbom_testkit::agent_trace as common;

use std::time::{Duration, Instant};

use common::{
    DATA, PROMPT_INJECTED, benign, bom, boolean, injected, log_records_of, spans_of, strings,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, any_value::Value},
    logs::v1::LogRecord,
    trace::v1::Span,
};
use runbom_aibom::{
    Processor, Settings,
    endpoint::Endpoint,
    judge::JudgeSettings,
    span::{attr, attr_int},
};

fn settings() -> Settings {
    Settings {
        wait: Duration::from_secs(5),
        max_hold: Duration::from_mins(1),
        max_spans: 10_000,
        judge: JudgeSettings {
            ignore: vec![
                Endpoint::parse("127.0.0.1:4317").unwrap(),
                Endpoint::parse("127.0.0.1:4318").unwrap(),
            ],
        },
        baseline: None,
        alert_arguments: runbom_aibom::arguments::ArgumentPolicy::default(),
        shadow: runbom_aibom::shadow::ShadowSettings::default(),
        unclaimed: runbom_aibom::unclaimed::UnclaimedSettings::default(),
    }
}

/// Runs `req` (complete traces) through a processor: judged and passed on at once.
fn run(
    req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> (Vec<Span>, Vec<LogRecord>) {
    let bom = bom();
    let mut p = Processor::new(settings());
    let out = p.push(req, Instant::now(), &bom);
    assert_eq!(p.held_spans(), 0, "a trace whose root is there is not held");
    assert_eq!(p.next_deadline(), None);
    let spans = spans_of(out.traces.expect("the trace is released"));
    let logs = out
        .alerts
        .map(|l| {
            l.resource_logs
                .into_iter()
                .flat_map(|r| r.scope_logs)
                .flat_map(|s| s.log_records)
                .collect()
        })
        .unwrap_or_default();
    (spans, logs)
}

/// `s` is a span of an undeclared endpoint of the declared agent (`what` adds to the message).
fn assert_undeclared_endpoint(s: &Span, what: &str) {
    assert_eq!(
        strings(&s.attributes, "aibom.drift.kinds"),
        ["undeclared_endpoint"],
        "{}{what}",
        s.name
    );
    assert_eq!(
        attr(&s.attributes, "aibom.agent.ref"),
        Some("agent:support-agent")
    );
}

#[test]
// One story, checked step by step.
#[allow(clippy::too_many_lines)]
fn injected_exfiltration_is_undeclared_endpoint_with_one_alert_and_its_chain() {
    let (trace, post) = injected(1);
    let n = trace.app.len() + trace.kernel.len();
    let (spans, alerts) = run(trace.request());
    assert_eq!(spans.len(), n, "every span is released");
    let drifted: Vec<&Span> = spans
        .iter()
        .filter(|s| boolean(&s.attributes, "aibom.drift") == Some(true))
        .collect();
    let names: Vec<&str> = drifted.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["POST", "net.connect", "http.request"],
        "the exfiltration request's spans, and only them"
    );
    for s in &drifted {
        assert_undeclared_endpoint(s, "");
        assert_eq!(boolean(&s.attributes, "aibom.declared"), Some(false));
        let reason = attr(&s.attributes, "aibom.drift.reason").unwrap();
        assert!(
            reason.contains("http_post") && reason.contains("18099"),
            "{reason}"
        );
        if s.name != "POST" {
            assert_eq!(s.parent_span_id, post, "kernel spans of the request");
        }
    }
    for s in &spans {
        assert_eq!(
            attr(&s.attributes, "aibom.bom.serial_number"),
            Some("urn:uuid:6f1c2b9e-4d7a-4e0b-9a51-52756e626f6d"),
            "{}",
            s.name
        );
        assert!(
            boolean(&s.attributes, "aibom.drift").is_some(),
            "{} is judged",
            s.name
        );
    }
    assert_eq!(alerts.len(), 1, "one finding, one alert: {alerts:#?}");
    let a = &alerts[0];
    assert_eq!(attr(&a.attributes, "event.name"), Some("aibom.drift"));
    assert_eq!(a.event_name, "aibom.drift");
    assert_eq!(a.severity_text, "ERROR");
    assert!((17..=20).contains(&a.severity_number));
    assert_eq!(a.trace_id, vec![1; 16]);
    assert_eq!(
        a.span_id, post,
        "the alert points at the offending request's span"
    );
    assert_eq!(
        strings(&a.attributes, "aibom.drift.kinds"),
        ["undeclared_endpoint"]
    );
    assert_eq!(
        attr(&a.attributes, "aibom.agent.ref"),
        Some("agent:support-agent")
    );
    assert_eq!(
        attr(&a.attributes, "aibom.component.ref"),
        Some("tool:http_post")
    );
    assert_eq!(attr(&a.attributes, "service.name"), Some("support-agent"));
    let chain = strings(&a.attributes, "aibom.chain");
    let text = chain.join("\n");
    let body = match &a.body {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s.clone(),
        other => panic!("body: {other:?}"),
    };
    assert_eq!(body, text, "the body is the chain, a line per step");
    // Ground truth's chain_mentions: the prompt, the data read, the tools, the destination.
    for needle in [
        PROMPT_INJECTED,
        &format!("{DATA}/tickets/T-2718.md"),
        "query_customers",
        "http_post",
        "http://127.0.0.1:18099/upload",
    ] {
        assert!(
            text.contains(needle),
            "the chain mentions {needle:?}:\n{text}"
        );
    }
    assert!(chain[0].contains("prompt: support-agent"), "{}", chain[0]);
    assert!(
        chain.last().unwrap().contains("DRIFT undeclared_endpoint"),
        "{text}"
    );
    let order = |needle: &str| chain.iter().position(|l| l.contains(needle)).unwrap();
    assert!(order("file.open") < order("tool: query_customers"));
    assert!(order("tool: query_customers") < order("tool: http_post"));
    assert!(
        !text.contains("http_get"),
        "steps after the offending action are not in its chain"
    );
    assert!(
        chain.iter().all(|l| l.starts_with("2026-11-27T")),
        "each step has its time"
    );
    assert!(text.contains("uid 1000"), "the identity used:\n{text}");
    assert!(
        text.contains("identity:openai-api-key"),
        "the API key behind the model calls:\n{text}"
    );
}

#[test]
fn benign_conversation_has_no_drift_and_no_alert() {
    let (spans, alerts) = run(benign(2).request());
    let drifted: Vec<_> = spans
        .iter()
        .filter(|s| boolean(&s.attributes, "aibom.drift") != Some(false))
        .map(|s| {
            (
                s.name.clone(),
                attr(&s.attributes, "aibom.drift.reason").map(str::to_owned),
            )
        })
        .collect();
    assert!(drifted.is_empty(), "{drifted:#?}");
    assert!(alerts.is_empty(), "{alerts:#?}");
    let component = |pred: &dyn Fn(&Span) -> bool| {
        spans
            .iter()
            .filter(|s| pred(s))
            .map(|s| {
                (
                    attr(&s.attributes, "aibom.component.ref")
                        .unwrap_or("-")
                        .to_owned(),
                    attr(&s.attributes, "aibom.component.kind")
                        .unwrap_or("-")
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let model = component(&|s| s.name == "chat gpt-4o-mini");
    assert!(
        model
            .iter()
            .all(|c| c == &("model:gpt-4o-mini".into(), "model".into())),
        "{model:?}"
    );
    let llm = component(&|s| {
        attr_int(&s.attributes, "server.port") == Some(18443)
            && attr(&s.attributes, "runbom.event").is_some()
    });
    assert!(llm.iter().all(|c| c.0 == "service:openai-api"), "{llm:?}");
    assert_eq!(
        component(&|s| s.name == "process.exec"),
        [("program:wc".into(), "process".into())]
    );
    let files = component(&|s| s.name == "file.open");
    assert_eq!(files.len(), 2);
    assert!(
        files
            .iter()
            .all(|c| c == &("data:ticket-notes".into(), "data".into())),
        "{files:?}"
    );
    assert_eq!(
        component(&|s| s.name == "SELECT customers"),
        [("data:customer-db".into(), "data".into())]
    );
    assert_eq!(
        component(&|s| s.name == "execute_tool http_post"),
        [("tool:http_post".into(), "tool".into())]
    );
    assert_eq!(
        component(&|s| s.name == "invoke_agent support-agent"),
        [("agent:support-agent".into(), "agent".into())]
    );
    let otlp = component(&|s| attr_int(&s.attributes, "server.port") == Some(4318));
    assert_eq!(
        otlp,
        [("-".into(), "-".into())],
        "runbom's own receiver is never a component nor drift"
    );
}

#[test]
fn aibom_attributes_a_sender_sets_are_replaced_by_the_verdict() {
    let (mut trace, _) = injected(1);
    for span in trace.app.iter_mut().chain(&mut trace.kernel) {
        span.attributes.extend([
            runbom_aibom::otlp::kv_bool("aibom.drift", false),
            runbom_aibom::otlp::kv_bool("aibom.declared", true),
            runbom_aibom::otlp::kv_str("aibom.component.ref", "tool:forged"),
        ]);
    }
    let (spans, alerts) = run(trace.request());
    assert_eq!(alerts.len(), 1, "the forged attributes hide nothing");
    for s in &spans {
        let keys: Vec<&str> = s
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .filter(|k| k.starts_with("aibom."))
            .collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "{}: {keys:?}", s.name);
        assert_ne!(
            attr(&s.attributes, "aibom.component.ref"),
            Some("tool:forged")
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| boolean(&s.attributes, "aibom.drift") == Some(true))
    );
}

#[test]
fn two_conversations_side_by_side_and_alerts_are_not_repeated() {
    let bom = bom();
    let mut p = Processor::new(settings());
    let t0 = Instant::now();
    let (bad, _) = injected(3);
    let mut req = bad.request();
    req.resource_spans
        .extend(benign(4).request().resource_spans);
    let out = p.push(req, t0, &bom);
    let alerts = out.alerts.expect("the injected trace alerts");
    assert_eq!(alerts.resource_logs.len(), 1);
    // The same trace again (a late duplicate): judged again, not alerted again.
    let (bad, _) = injected(3);
    let out = p.push(bad.request(), t0, &bom);
    assert!(out.traces.is_some() && out.alerts.is_none(), "deduplicated");
    assert_eq!(
        p.stats
            .alerts_deduplicated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// `req` without its root span (the prompt), and that root: the root ends last, so it can
/// arrive in a later request.
fn without_root(
    mut req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> (
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) {
    let root = req.resource_spans[0].scope_spans[0].spans.remove(0);
    assert!(root.parent_span_id.is_empty());
    let mut late = req.clone();
    late.resource_spans[0].scope_spans[0].spans = vec![root];
    late.resource_spans[0].scope_spans[1].spans.clear();
    (req, late)
}

#[test]
fn memory_is_bounded_by_releasing_the_oldest_traces_early() {
    let bom = bom();
    let mut s = settings();
    s.max_spans = 40;
    let mut p = Processor::new(s);
    let t0 = Instant::now();
    let first = benign(5);
    let n = first.app.len() + first.kernel.len() - 1;
    assert!(n < 40);
    let (first, _) = without_root(first.request());
    assert!(
        p.push(first, t0, &bom).traces.is_none(),
        "held: no root yet"
    );
    assert_eq!(p.held_spans(), n);
    let (second, _) = without_root(benign(6).request());
    let early = p.push(second, t0, &bom);
    let released: usize = early
        .traces
        .expect("the oldest trace goes early")
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(released, n);
    assert!(p.held_spans() <= 40);
}

#[test]
fn a_trace_without_its_root_is_held_until_the_root_arrives_or_the_wait_is_over() {
    let bom = bom();
    let mut s = settings();
    s.max_hold = Duration::from_secs(20);
    let mut p = Processor::new(s);
    let t0 = Instant::now();
    let (trace, post) = injected(11);
    let (req, root) = without_root(trace.request());
    assert!(p.push(req, t0, &bom).traces.is_none());
    let none = p.release_due(t0 + Duration::from_secs(4), &bom);
    assert!(none.traces.is_none(), "still waiting");
    // The root completes the trace: judged with it, at once.
    let out = p.push(root, t0 + Duration::from_secs(4), &bom);
    assert_eq!(p.held_spans(), 0);
    let alerts = out.alerts.expect("released with its alert");
    let record = &alerts.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.span_id, post);
    let chain = strings(&record.attributes, "aibom.chain");
    assert!(
        chain[0].contains(PROMPT_INJECTED),
        "the late root's prompt is in the chain: {chain:?}"
    );

    // A root that never comes: released `wait` after the latest span arrived ...
    let (req, _) = without_root(injected(12).0.request());
    p.push(req.clone(), t0, &bom);
    p.push(req, t0 + Duration::from_secs(3), &bom);
    assert!(
        p.release_due(t0 + Duration::from_secs(7), &bom)
            .traces
            .is_none()
    );
    let out = p.release_due(t0 + Duration::from_secs(8), &bom);
    assert!(out.traces.is_some() && out.alerts.is_some());

    // ... but never later than max_hold after its first span.
    let (req, _) = without_root(injected(13).0.request());
    for second in 0..30 {
        let now = t0 + Duration::from_secs(100 + second);
        if second < 25 {
            p.push(req.clone(), now, &bom);
        }
        let out = p.release_due(now, &bom);
        if out.traces.is_some() {
            assert_eq!(second, 20, "released at max_hold");
            return;
        }
    }
    panic!("never released");
}

#[test]
fn kernel_spans_arriving_after_their_trace_are_judged_in_its_context() {
    let bom = bom();
    let mut p = Processor::new(settings());
    let t0 = Instant::now();
    let (mut trace, post) = injected(14);
    let kernel = std::mem::take(&mut trace.kernel);
    let n_late = kernel.len() + 1;
    let id = trace.id.clone();
    let out = p.push(trace.request(), t0, &bom);
    assert_eq!(
        out.alerts.map(|a| a.resource_logs.len()),
        Some(1),
        "the POST span alerts"
    );
    // The correlated kernel spans come after the trace left.
    let mut late = common::Trace::new(99);
    late.id = id;
    late.kernel = kernel;
    // And a connection of the same tool to somewhere else again.
    late.kernel_span(
        &post,
        "net.connect",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![
            runbom_aibom::otlp::kv_str("server.address", "10.9.9.9"),
            runbom_aibom::otlp::kv_int("server.port", 443),
        ],
    );
    let out = p.push(late.request(), t0 + Duration::from_secs(1), &bom);
    assert_eq!(p.held_spans(), 0, "late spans are not held");
    let spans: Vec<Span> = spans_of(out.traces.expect("judged at once"));
    let under_post: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == post).collect();
    assert_eq!(under_post.len(), 3);
    for s in &under_post {
        assert_undeclared_endpoint(s, ": judged under its tool");
    }
    // The POST's own kernel spans repeat its finding (not alerted twice); the new destination
    // alerts, with the story from the remembered trace.
    let alerts = out.alerts.expect("the new destination alerts");
    let records: Vec<&LogRecord> = log_records_of(&alerts);
    assert_eq!(records.len(), 1);
    assert_eq!(
        attr(&records[0].attributes, "aibom.drift.subject"),
        Some("10.9.9.9:443")
    );
    assert_eq!(
        attr(&records[0].attributes, "gen_ai.tool.name"),
        Some("http_post")
    );
    let chain = strings(&records[0].attributes, "aibom.chain");
    assert!(chain[0].contains("prompt: "), "{chain:?}");
    assert!(
        chain.iter().any(|l| l.contains("tool: http_post")),
        "{chain:?}"
    );
    assert!(chain.last().unwrap().contains("DRIFT undeclared_endpoint"));
    assert_eq!(
        p.stats
            .spans_late
            .load(std::sync::atomic::Ordering::Relaxed),
        n_late as u64
    );
}

#[test]
fn a_learned_baseline_flags_what_the_agent_never_did_while_it_learned() {
    let dir = std::env::temp_dir().join(format!("runbom-baseline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("baseline.json");
    let mut b = runbom_aibom::baseline::Settings::new(&path);
    b.learn_for = Duration::from_millis(300);
    let baseline = runbom_aibom::baseline::Baseline::open(b, std::time::SystemTime::now()).unwrap();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(baseline));
    let mut s = settings();
    s.baseline = Some(shared.clone());
    let bom = bom();
    let mut p = Processor::new(s);
    let t0 = Instant::now();
    let flagged = |out: runbom_aibom::Released| -> Vec<(String, Vec<String>)> {
        spans_of(out.traces.unwrap())
            .into_iter()
            .map(|s| (s.name, strings(&s.attributes, "aibom.drift.kinds")))
            .filter(|(_, k)| k.iter().any(|k| k.starts_with("baseline_")))
            .collect()
    };
    // Learning: the benign conversation is what the agent does.
    assert!(flagged(p.push(benign(20).request(), t0, &bom)).is_empty());
    assert!(shared.lock().unwrap().save().unwrap(), "learned something");
    std::thread::sleep(Duration::from_millis(400));
    // The same again: nothing new.
    assert!(flagged(p.push(benign(21).request(), t0, &bom)).is_empty());
    // The injection: `http_post` posts to a destination it never reached while learning.
    let got = flagged(p.push(injected(22).0.request(), t0, &bom));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["POST", "net.connect", "http.request"], "{got:?}");
    for (name, kinds) in &got {
        assert_eq!(
            kinds,
            &[
                "undeclared_endpoint",
                "baseline_new_destination",
                "baseline_new_tool_destination"
            ],
            "{name}"
        );
    }
    // Reopened from its file, the baseline is over learning and flags the same.
    let again = runbom_aibom::baseline::Baseline::open(
        runbom_aibom::baseline::Settings::new(&path),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert!(!again.learning(std::time::SystemTime::now()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn env_identities_are_matched_by_the_presence_of_the_variable_never_its_value() {
    let secret = concat!("FAKE", "-env-identity-", "value-0001");
    // A real process that has the declared variable (the BOM's identity:openai-api-key is
    // `env:OPENAI_API_KEY`) stands in for the agent.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env("OPENAI_API_KEY", secret)
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    // `spawn` returns once the child is in `execve`; its new environment is there a moment
    // later (an agent's spans come long after its start).
    let environ = format!("/proc/{pid}/environ");
    let started = Instant::now();
    while std::fs::read(&environ).is_ok_and(|e| e.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{environ} stays empty"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (trace, post) = injected(23);
    let mut req = trace.request();
    let set_pid = |attrs: &mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>| {
        for kv in attrs.iter_mut() {
            if (kv.key == "process.pid" || kv.key == "process.parent_pid")
                && let Some(Value::IntValue(p)) = kv.value.as_mut().and_then(|v| v.value.as_mut())
                && *p == common::AGENT_PID
            {
                *p = pid;
            }
        }
    };
    for rs in &mut req.resource_spans {
        if let Some(r) = rs.resource.as_mut() {
            set_pid(&mut r.attributes);
        }
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                set_pid(&mut s.attributes);
            }
        }
    }
    let bom = bom();
    let mut p = Processor::new(settings());
    let out = p.push(req, Instant::now(), &bom);
    let _ = child.kill();
    let _ = child.wait();
    let spans: Vec<Span> = spans_of(out.traces.unwrap());
    let post_span = spans.iter().find(|s| s.span_id == post).unwrap();
    assert_eq!(
        strings(&post_span.attributes, "aibom.identities"),
        ["env:OPENAI_API_KEY"]
    );
    let alerts = out.alerts.expect("the exfiltration alerts");
    let record = &alerts.resource_logs[0].scope_logs[0].log_records[0];
    let chain = strings(&record.attributes, "aibom.chain");
    let tool = chain
        .iter()
        .find(|l| l.contains("tool: http_post"))
        .expect("the tool step");
    assert!(
        tool.contains("identity:openai-api-key (env:OPENAI_API_KEY)"),
        "the agent process presents the key: {tool}"
    );
    let everything = format!("{spans:?}{alerts:?}");
    assert!(
        !everything.contains(secret),
        "the variable's value is never read out"
    );
}
