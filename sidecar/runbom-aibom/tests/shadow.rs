//! Shadow AI: the kernel log records no trace claimed, as the correlation emits them (one
//! group per program run), judged by the processor.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

mod support;

use support::settings;

use runbom_aibom::{Processor, span::attr};
use runbom_event::Detail;
use runbom_otlp::{ConvertOptions, convert};
use runbom_testkit::{
    agent_trace::{self as common, AGENT_PID, T0},
    shadow_run::{event, process, shadow_run},
};

const SHADOW_PID: u32 = 5151;

#[test]
fn an_undeclared_openai_client_is_marked_and_alerted_once_per_window() {
    let bom = common::bom();
    let mut p = Processor::new(settings());
    let now = Instant::now();
    let py = process(SHADOW_PID, 1, "/usr/bin/python3.12");
    let mut logs = shadow_run(&py, T0);
    p.judge_logs(&mut logs, now, &bom);

    let records = common::log_records_of(&logs);
    let llm: Vec<_> = records
        .iter()
        .filter(|r| attr(&r.attributes, "url.path") == Some("/v1/chat/completions"))
        .collect();
    assert_eq!(llm.len(), 2);
    for r in &llm {
        assert_eq!(
            common::boolean(&r.attributes, "aibom.declared"),
            Some(false)
        );
        assert_eq!(attr(&r.attributes, "aibom.component.kind"), Some("service"));
        assert_eq!(
            attr(&r.attributes, "gen_ai.request.model"),
            Some("gpt-4o-mini")
        );
        assert!(attr(&r.attributes, "aibom.agent.ref").is_none());
    }
    // Not AI-relevant on its own: judged (serial number) but no verdict.
    let exfil = records
        .iter()
        .find(|r| attr(&r.attributes, "url.path") == Some("/upload"))
        .expect("the exfiltration is logged");
    assert!(attr(&exfil.attributes, "aibom.bom.serial_number").is_some());
    assert!(common::boolean(&exfil.attributes, "aibom.declared").is_none());

    // Held for `wait`, so that what the workload did next is in the chain.
    assert!(p.release_due(now, &bom).alerts.is_none());
    let due = p.next_deadline().expect("a held alert");
    assert!(due <= now + Duration::from_secs(1));
    let alerts = p.release_due(due, &bom).alerts.expect("one alert");
    let alerts = common::log_records_of(&alerts);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0].attributes;
    assert_eq!(common::strings(a, "aibom.drift.kinds"), ["shadow_ai"]);
    assert_eq!(alerts[0].severity_text, "WARN");
    assert_eq!(attr(a, "aibom.drift.subject"), Some("gpt-4o-mini"));
    assert_eq!(
        attr(a, "process.executable.path"),
        Some("/usr/bin/python3.12")
    );
    assert_eq!(attr(a, "service.name"), Some("python3.12"));
    let chain = common::strings(a, "aibom.chain");
    let text = chain.join("\n");
    assert!(text.contains("SHADOW AI shadow_ai"), "{text}");
    assert!(
        text.contains("https://127.0.0.1:18443/v1/chat/completions"),
        "{text}"
    );
    assert!(
        text.contains("file.open /tmp/runbom-agent/data/customers.csv"),
        "{text}"
    );
    assert!(
        text.contains("POST http://127.0.0.1:18099/upload"),
        "{text}"
    );
    assert!(text.contains("connect: 127.0.0.1:18099"), "{text}");

    // The same workload (another run of the same program) in the window: counted, not alerted.
    let again = process(SHADOW_PID + 1, 1, "/usr/bin/python3.12");
    let mut logs = shadow_run(&again, T0 + 10_000_000_000);
    p.judge_logs(&mut logs, now + Duration::from_secs(5), &bom);
    assert!(p.release_all(&bom).alerts.is_none());
    assert_eq!(p.stats.shadow.workloads.load(Ordering::Relaxed), 1);
    assert_eq!(p.stats.shadow.calls.load(Ordering::Relaxed), 4);
    assert_eq!(p.stats.alerts.load(Ordering::Relaxed), 1);

    // After the window, it is alerted again; another executable is another workload.
    let later = now + Duration::from_mins(11);
    let mut logs = shadow_run(&again, T0 + 700_000_000_000);
    p.judge_logs(&mut logs, later, &bom);
    let node = process(SHADOW_PID + 2, 1, "/usr/bin/node");
    let mut logs = shadow_run(&node, T0 + 700_000_000_000);
    p.judge_logs(&mut logs, later, &bom);
    let alerts = p.release_all(&bom).alerts.expect("two alerts");
    assert_eq!(common::log_records_of(&alerts).len(), 2);
    assert_eq!(p.stats.shadow.workloads.load(Ordering::Relaxed), 2);
}

#[test]
fn a_declared_agents_unclaimed_events_get_its_attributes_and_no_shadow_alert() {
    let bom = common::bom();
    let mut p = Processor::new(settings());
    let now = Instant::now();
    // The agent's trace: its process (AGENT_PID) is the declared agent's from now on.
    let released = p.push(common::benign(1).request(), now, &bom);
    assert!(released.traces.is_some());
    let agent = process(
        u32::try_from(AGENT_PID).expect("pid"),
        1,
        "/work/.venv/bin/python3",
    );
    let mut logs = shadow_run(&agent, T0 + 5_000_000_000);
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    let llm = records
        .iter()
        .find(|r| attr(&r.attributes, "url.path") == Some("/v1/chat/completions"))
        .expect("the model call is logged");
    assert_eq!(
        attr(&llm.attributes, "aibom.agent.ref"),
        Some("agent:support-agent")
    );
    assert_eq!(
        common::boolean(&llm.attributes, "aibom.declared"),
        Some(true)
    );
    let alerts = p.release_all(&bom).alerts;
    let shadow = alerts.iter().flat_map(common::log_records_of).any(|r| {
        common::strings(&r.attributes, "aibom.drift.kinds").contains(&"shadow_ai".to_owned())
    });
    assert!(!shadow);
    assert_eq!(p.stats.shadow.calls.load(Ordering::Relaxed), 0);
}

#[test]
fn a_pid_written_on_an_application_span_claims_no_process() {
    // A client's spans name another process (SHADOW_PID) in a span attribute; only the
    // resource's `process.pid` is checked by the receiver against the sending process.
    let bom = common::bom();
    let mut p = Processor::new(settings());
    let now = Instant::now();
    let mut forged = common::benign(1).request();
    for ss in &mut forged.resource_spans[0].scope_spans {
        if ss.scope.as_ref().is_some_and(|s| s.name != "runbom.kernel") {
            for span in &mut ss.spans {
                span.attributes
                    .push(runbom_aibom::otlp::kv_int("process.pid", SHADOW_PID.into()));
            }
        }
    }
    assert!(p.push(forged, now, &bom).traces.is_some());
    // The shadow process is not the declared agent's: its model calls are undeclared and
    // alerted.
    let py = process(SHADOW_PID, 1, "/usr/bin/python3.12");
    let mut logs = shadow_run(&py, T0 + 5_000_000_000);
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    let llm = records
        .iter()
        .find(|r| attr(&r.attributes, "url.path") == Some("/v1/chat/completions"))
        .expect("the model call is logged");
    assert!(attr(&llm.attributes, "aibom.agent.ref").is_none());
    assert_eq!(
        common::boolean(&llm.attributes, "aibom.declared"),
        Some(false)
    );
    let alerts = p.release_all(&bom).alerts.expect("the shadow AI alert");
    let kinds: Vec<String> = common::log_records_of(&alerts)
        .iter()
        .flat_map(|r| common::strings(&r.attributes, "aibom.drift.kinds"))
        .collect();
    assert!(kinds.contains(&"shadow_ai".to_owned()), "{kinds:?}");
}

#[test]
fn a_model_server_is_shadow_ai() {
    let bom = common::bom();
    let mut p = Processor::new(settings());
    let now = Instant::now();
    let ollama = process(6000, 1, "/usr/local/bin/ollama");
    let events = vec![
        event(
            &ollama,
            T0,
            Detail::Exec {
                path: "/usr/local/bin/ollama".into(),
                argv_truncated: false,
            },
        ),
        event(&ollama, T0 + 1_000, Detail::Accept { peer: None }),
    ];
    let opts = ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: false,
    };
    let mut logs = convert(&events, &[], &opts).logs;
    p.judge_logs(&mut logs, now, &bom);
    let records = common::log_records_of(&logs);
    assert!(
        records
            .iter()
            .all(|r| common::boolean(&r.attributes, "aibom.declared") == Some(false))
    );
    let alerts = p.release_all(&bom).alerts.expect("an alert");
    let alerts = common::log_records_of(&alerts);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        attr(&alerts[0].attributes, "aibom.component.kind"),
        Some("process")
    );
    assert_eq!(p.stats.shadow.calls.load(Ordering::Relaxed), 2);
}

#[test]
fn a_step_repeated_by_the_same_process_is_one_line_with_its_count() {
    let bom = common::bom();
    let mut p = Processor::new(settings());
    let now = Instant::now();
    let py = process(SHADOW_PID, 1, "/usr/bin/python3.12");
    let ms = 1_000_000;
    let open = |at| {
        event(
            &py,
            at,
            Detail::FileOpen {
                path: "/tmp/runbom-agent/data/customers.csv".into(),
                flags: 0,
                error: None,
            },
        )
    };
    // A file read first, then the same file opened 200 times in a loop (more than the steps a
    // workload keeps), then the model call.
    let mut events = vec![event(
        &py,
        T0,
        Detail::FileOpen {
            path: "/tmp/runbom-agent/data/orders.csv".into(),
            flags: 0,
            error: None,
        },
    )];
    events.extend((1..=200).map(|i| open(T0 + i * ms)));
    events.push(event(
        &py,
        T0 + 300 * ms,
        runbom_testkit::shadow_run::request(18443, "POST", "/v1/chat/completions", Some("gpt-4o")),
    ));
    let opts = ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: false,
    };
    let mut logs = convert(&events, &[], &opts).logs;
    p.judge_logs(&mut logs, now, &bom);
    let alerts = p.release_all(&bom).alerts.expect("an alert");
    let alerts = common::log_records_of(&alerts);
    assert_eq!(alerts.len(), 1);
    let chain = common::strings(&alerts[0].attributes, "aibom.chain");
    let text = chain.join("\n");
    // The earlier read is still in the chain: the loop took one line, not all the steps.
    assert!(
        text.contains("file.open /tmp/runbom-agent/data/orders.csv"),
        "{text}"
    );
    let looped: Vec<&String> = chain
        .iter()
        .filter(|l| l.contains("/tmp/runbom-agent/data/customers.csv"))
        .collect();
    assert_eq!(looped.len(), 1, "{text}");
    assert!(
        looped[0].contains("(pid 5151; 200 times, the last at "),
        "{text}"
    );
    assert!(text.contains("SHADOW AI shadow_ai"), "{text}");
}

#[test]
fn workloads_past_the_limit_are_forgotten_but_not_their_held_alerts() {
    let bom = common::bom();
    let mut s = settings();
    s.shadow.max_workloads = 2;
    let mut p = Processor::new(s);
    let now = Instant::now();
    let exes = [
        "/usr/bin/python3.11",
        "/usr/bin/python3.12",
        "/usr/bin/python3.13",
    ];
    for (i, exe) in exes.iter().enumerate() {
        let proc = process(SHADOW_PID + u32::try_from(i).expect("small"), 1, exe);
        let mut logs = shadow_run(&proc, T0 + 1_000_000_000 * i as u64);
        p.judge_logs(&mut logs, now, &bom);
    }
    let alerts = p.release_all(&bom).alerts.expect("three alerts");
    let alerts = common::log_records_of(&alerts);
    assert_eq!(alerts.len(), 3);
    for exe in exes {
        let a = alerts
            .iter()
            .find(|r| attr(&r.attributes, "process.executable.path") == Some(exe))
            .expect("an alert per workload");
        let chain = common::strings(&a.attributes, "aibom.chain").join("\n");
        assert!(chain.contains("SHADOW AI shadow_ai"), "{chain}");
        assert!(
            chain.contains("POST http://127.0.0.1:18099/upload"),
            "{chain}"
        );
    }
    // A fourth workload: the ones without a held alert are forgotten, and it is remembered.
    let late = process(SHADOW_PID + 9, 1, "/usr/bin/node");
    let mut logs = shadow_run(&late, T0 + 9_000_000_000);
    p.judge_logs(&mut logs, now, &bom);
    let alerts = p.release_all(&bom).alerts.expect("its alert");
    assert_eq!(common::log_records_of(&alerts).len(), 1);
}
