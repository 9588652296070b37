//! Kernel log records judged while still held as their events (`judge_kernel_logs`) come out
//! as the built records judged by `judge_logs` do: the same `aibom.*` attributes on the same
//! records (written from the events byte for byte as the built request is), the same alerts
//! and counters, over shadow AI, a declared agent's unclaimed and placed events, a model
//! server and random events, in two requests (the second judged with what the first taught).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

mod support;

use support::settings;

use runbom_aibom::Processor;
use runbom_event::{Detail, KernelEvent};
use runbom_otlp::{
    ConvertOptions, KernelLogs, Placement, encode::encode_logs, json::write::write_logs,
};
use runbom_testkit::{
    agent_trace::{self as common, AGENT_PID, T0},
    random_events::RandomEvents,
    shadow_run::{event, process, shadow_run_events},
};

/// One request's events and where the correlation placed them.
fn batch(round: u64) -> (Vec<KernelEvent>, Vec<Option<Placement>>) {
    let t = T0 + round * 10_000_000_000;
    let shadow = process(
        5151 + u32::try_from(round).expect("round"),
        1,
        "/usr/bin/python3.12",
    );
    let agent = process(
        u32::try_from(AGENT_PID).expect("pid"),
        1,
        "/work/.venv/bin/python3",
    );
    let ollama = process(6000, 1, "/usr/local/bin/ollama");
    let mut events = shadow_run_events(&shadow, t);
    let agents = shadow_run_events(&agent, t + 5_000_000_000);
    let placed_from = events.len();
    events.extend(agents);
    events.push(event(
        &ollama,
        t,
        Detail::Exec {
            path: "/usr/local/bin/ollama".into(),
            argv_truncated: false,
        },
    ));
    events.push(event(&ollama, t + 1_000, Detail::Accept { peer: None }));
    events.extend(RandomEvents::new(round, 4).realistic(200));
    let app = Arc::new(
        common::benign(1).request().resource_spans[0]
            .resource
            .clone()
            .unwrap_or_default(),
    );
    // Two of the agent's events placed in its trace: one by its thread (claimed: left as it
    // is), one inferred (judged too).
    let mut placements = vec![None; events.len()];
    for (at, method) in [(placed_from + 1, "thread"), (placed_from + 3, "inferred")] {
        placements[at] = Some(Placement {
            trace_id: [9; 16],
            parent_span_id: [8; 8],
            resource: app.clone(),
            method,
            confidence: "low",
        });
    }
    (events, placements)
}

#[test]
fn records_judged_as_events_are_the_built_records_judged() {
    let bom = common::bom();
    let now = Instant::now();
    let (mut typed, mut held) = (Processor::new(settings()), Processor::new(settings()));
    for p in [&mut typed, &mut held] {
        // The agent's trace: its process is the declared agent's from now on.
        assert!(
            p.push(common::benign(1).request(), now, &bom)
                .traces
                .is_some()
        );
    }
    let opts = Arc::new(ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: true,
    });
    for round in 0..2 {
        let (events, placements) = batch(round);
        let ids = runbom_otlp::placed_span_ids(&events, &placements, &opts);
        let mut logs = KernelLogs::placed(events, ids, placements, opts.clone());
        let mut request = logs.to_request();
        typed.judge_logs(&mut request, now, &bom);
        held.judge_kernel_logs(&mut logs, now, &bom);
        assert_eq!(logs.to_request(), request, "round {round}");
        let (mut ours, mut built) = (Vec::new(), Vec::new());
        logs.write_protobuf(&mut ours);
        encode_logs(&request, &mut built);
        assert!(ours == built, "round {round}: the protobuf differs");
        let (mut ours, mut built) = (Vec::new(), Vec::new());
        logs.write_json(&mut ours);
        write_logs(&request, &mut built);
        assert!(ours == built, "round {round}: the JSON differs");
        let declared = common::log_records_of(&request)
            .iter()
            .filter(|r| common::boolean(&r.attributes, "aibom.declared").is_some())
            .count();
        assert!(
            declared > 2,
            "round {round}: verdicts were written ({declared})"
        );
    }
    // The alerts, but when they were made (the clock's).
    let alerts = |p: &mut Processor| {
        let out = p.release_due(now + Duration::from_secs(2), &bom);
        let mut alerts = out.alerts.unwrap_or_default();
        for record in alerts
            .resource_logs
            .iter_mut()
            .flat_map(|r| &mut r.scope_logs)
            .flat_map(|s| &mut s.log_records)
        {
            record.observed_time_unix_nano = 0;
        }
        alerts
    };
    let (a, b) = (alerts(&mut typed), alerts(&mut held));
    assert!(!a.resource_logs.is_empty(), "shadow AI was alerted");
    assert_eq!(a, b);
    let counts = |p: &Processor| {
        let s = &p.stats;
        (
            s.alerts.load(Ordering::Relaxed),
            s.shadow.calls.load(Ordering::Relaxed),
            s.shadow.workloads.load(Ordering::Relaxed),
        )
    };
    assert_eq!(counts(&typed), counts(&held));
}
