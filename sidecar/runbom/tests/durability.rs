//! Durable delivery (part of the reliability suite): an exporter's persistent queue
//! (`sending_queue.storage` with a `file_storage` extension) keeps what runbom acknowledged
//! through `kill -9` and sends it after the restart. Bounded (at most a minute), loopback only.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Ready, Runbom, SidecarConfig, Sink, TempDir, eventually, free_port, lines_of, metrics,
    python::{run_script_json, trace_span_counts},
    runbom_bin,
};

/// runbom receiving traces into an `otlp` exporter to `127.0.0.1:downstream` behind a
/// persistent queue in `dir/queue`.
fn persistent_config(dir: &TempDir, cfg: SidecarConfig, downstream: u16) -> std::path::PathBuf {
    let rest = format!(
        "extensions:
  file_storage:
    directory: {queue}
    create_directory: true
exporters:
  otlp:
    endpoint: 127.0.0.1:{downstream}
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 5m }}
    sending_queue: {{ storage: file_storage }}
",
        queue = dir.join("queue").display()
    );
    let yaml = cfg
        .yaml(
            &rest,
            "    traces: { receivers: [otlp], exporters: [otlp] }\n",
        )
        .replacen("service:\n", "service:\n  extensions: [file_storage]\n", 1);
    dir.write("runbom.yaml", &yaml)
}

/// kill -9 under load with the downstream down, restart, downstream up: every request runbom
/// acknowledged is delivered (it used to lose all 30,000 of 30,000). Requests in flight at the
/// kill may be delivered without having been acknowledged (at least once), never the reverse.
#[test]
fn kill_9_with_the_downstream_down_then_restart_delivers_every_acknowledged_request() {
    let dir = TempDir::new("durable-kill9");
    let cfg = SidecarConfig::new();
    let downstream = free_port();
    let config = persistent_config(&dir, cfg, downstream);
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::Admin(cfg.admin));

    // Load for 4 s from 2 threads; the kill lands in the middle of it.
    let acked_file = dir.join("acked.txt");
    let load = {
        let (target, acked) = (
            format!("127.0.0.1:{}", cfg.grpc),
            acked_file.display().to_string(),
        );
        std::thread::spawn(move || {
            run_script_json(
                "otlp_load.py",
                &[
                    "--grpc",
                    &target,
                    "--threads",
                    "2",
                    "--duration",
                    "4",
                    "--spans",
                    "20",
                    "--unique",
                    "--acked",
                    &acked,
                ],
            )
        })
    };
    std::thread::sleep(Duration::from_millis(2_500));
    let mut runbom = runbom;
    runbom.proc.signal(libc::SIGKILL);
    assert!(
        runbom.proc.wait_timeout(Duration::from_secs(10)).is_some(),
        "killed"
    );
    let summary = load.join().expect("the load thread");
    let acked: BTreeSet<String> = lines_of(&acked_file).into_iter().collect();
    assert!(
        acked.len() > 50,
        "the load was acknowledged before the kill: {summary}"
    );

    // The downstream comes up where runbom was sending; runbom restarts and replays.
    let sink = Sink::start_on(dir.path(), downstream);
    let started = Instant::now();
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::Admin(cfg.admin));
    let source = [sink.source("grpc")];
    let delivered = || -> BTreeSet<String> { trace_span_counts(&source).into_keys().collect() };
    assert!(
        eventually(Duration::from_secs(30), || acked.is_subset(&delivered())),
        "not every acknowledged request was delivered within 30 s: {} of {} ({:?} missing)\n{}",
        acked.intersection(&delivered()).count(),
        acked.len(),
        acked.difference(&delivered()).take(3).collect::<Vec<_>>(),
        runbom.log()
    );
    let replay = started.elapsed();
    let log = runbom.stop_ok();
    sink.finish();
    let delivered = trace_span_counts(&source);
    let unacked = delivered.keys().filter(|t| !acked.contains(*t)).count();
    eprintln!(
        "acknowledged {} requests, delivered {} ({unacked} in flight at the kill, delivered \
         without an acknowledgement); replayed within {replay:?}; load: {summary}",
        acked.len(),
        delivered.len(),
    );
    assert!(
        log.contains("requests from before are sent first"),
        "the restart says it replays:\n{log}"
    );
    assert!(
        delivered.values().all(|n| *n == 20),
        "every delivered request whole (20 spans)"
    );
    // Only what was in flight at the kill (at most one request per client thread and the
    // pipeline's channel) arrives without an acknowledgement.
    assert!(
        unacked <= 2 + 64,
        "{unacked} delivered but never acknowledged"
    );
}

/// SIGTERM with the downstream down and a persistent queue: what was not delivered within
/// `service.shutdown_timeout` stays on disk (not dropped: exit status 0, the count in the log)
/// and is delivered after the next start. Meanwhile `/metrics` shows what the queue holds.
#[test]
fn sigterm_with_the_downstream_down_keeps_the_queue_for_the_next_start() {
    let dir = TempDir::new("durable-sigterm");
    let cfg = SidecarConfig::new();
    let downstream = free_port();
    let config = persistent_config(&dir, cfg, downstream);
    let yaml = std::fs::read_to_string(&config)
        .expect("the configuration")
        .replacen("service:\n", "service:\n  shutdown_timeout: 2s\n", 1);
    let config = dir.write("runbom.yaml", &yaml);
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::Admin(cfg.admin));
    let acked_file = dir.join("acked.txt");
    let summary = run_script_json(
        "otlp_load.py",
        &[
            "--grpc",
            &format!("127.0.0.1:{}", cfg.grpc),
            "--threads",
            "1",
            "--requests",
            "200",
            "--spans",
            "20",
            "--unique",
            "--acked",
            &acked_file.display().to_string(),
        ],
    );
    assert_eq!(summary["ok"], 200, "{summary}");
    let queued = metrics(cfg.admin);
    assert_eq!(
        persistent_queue(&queued, "size"),
        Some(200 * 20),
        "the 4,000 spans not delivered are on /metrics: {queued:?}"
    );
    assert!(
        persistent_queue(&queued, "bytes").is_some_and(|b| b > 200 * 20 * 50),
        "and the bytes they take on disk: {queued:?}"
    );
    assert_eq!(
        persistent_queue(&queued, "capacity_bytes"),
        Some(1024 << 20),
        "the bound (file_storage max_size_mib, default 1024): {queued:?}"
    );
    let (status, log) = runbom.stop();
    assert!(
        status.success(),
        "nothing was dropped, so the exit status is 0: {status}\n{log}"
    );
    assert!(
        log.contains("requests not delivered are kept in"),
        "the log says what stays on disk:\n{log}"
    );

    let sink = Sink::start_on(dir.path(), downstream);
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::Admin(cfg.admin));
    let acked: BTreeSet<String> = lines_of(&acked_file).into_iter().collect();
    let source = [sink.source("grpc")];
    assert!(
        eventually(Duration::from_secs(30), || {
            trace_span_counts(&source)
                .into_keys()
                .collect::<BTreeSet<_>>()
                == acked
        }),
        "the 200 requests kept at shutdown were delivered after the restart, once each\n{}",
        runbom.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            persistent_queue(&metrics(cfg.admin), "size") == Some(0)
        }),
        "delivered: nothing left in the queue"
    );
    let log = runbom.stop_ok();
    sink.finish();
    assert!(
        log.contains("persistent queue: 200 requests from before are sent first"),
        "{log}"
    );
}

/// `runbom_exporter_persistent_queue_<what>` of the `otlp` exporter's traces queue.
fn persistent_queue(metrics: &std::collections::BTreeMap<String, u64>, what: &str) -> Option<u64> {
    let name = format!("runbom_exporter_persistent_queue_{what}{{");
    metrics
        .iter()
        .find(|(k, _)| k.starts_with(&name) && k.contains("exporter=\"otlp\""))
        .map(|(_, v)| *v)
}
