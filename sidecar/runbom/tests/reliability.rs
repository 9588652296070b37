//! runbom under faults and hostile inputs (issue 19): each test reproduces one way runbom was
//! hung, exhausted or made to lose data, and checks it now stays up, bounded and honest. Every
//! test is bounded (at most a minute) and talks to 127.0.0.1 only.

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use runbom_testkit::{
    SidecarConfig, TempDir, config_command, eventually, http_get, metrics, peers::rss_kib,
    run_bounded, runbom_bin, workspace_root,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn mkfifo(path: &Path) {
    let out = Command::new("mkfifo")
        .arg(path)
        .output()
        .expect("mkfifo runs");
    assert!(out.status.success(), "mkfifo {}: {out:?}", path.display());
}

/// A traces pipeline judging against the BOM at `bom`, re-read every 100 ms.
fn aibom_rest(bom: &Path) -> String {
    format!(
        "processors:\n  aibom: {{ bom: {}, wait: 1s, reload_interval: 100ms }}\n\
         exporters:\n  nop: {{}}\n",
        bom.display()
    )
}

const AIBOM_PIPELINES: &str = "    traces: { receivers: [otlp], processors: [aibom], exporters: [nop] }\n\
     \x20   logs: { receivers: [otlp, aibom], exporters: [nop] }\n";

/// A BOM path that is a FIFO or a symlink to `/dev/zero` at start is refused at once, as a
/// start error naming the path and what it is (it used to hang, or grow without bound).
#[test]
fn a_bom_that_is_a_fifo_or_a_device_is_refused_at_start() {
    let dir = TempDir::new("bom-fifo-start");
    let fifo = dir.join("fifo.cdx.json");
    mkfifo(&fifo);
    let zero = dir.join("zero.cdx.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let cfg = SidecarConfig::new();
    for (bom, what) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
        let config = dir.write("runbom.yaml", &cfg.yaml(&aibom_rest(bom), AIBOM_PIPELINES));
        let started = Instant::now();
        let out = run_bounded(&mut config_command(runbom_bin!(), "run", &config), TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // As any declared BOM that does not load: exit 1, one `runbom:` line.
        assert_eq!(out.status.code(), Some(1), "refused:\n{stderr}");
        assert!(
            stderr.contains(&format!("{}: not a regular file ({what})", bom.display())),
            "names the path and what it is:\n{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused at once, not after {:?}",
            started.elapsed()
        );
    }
}

/// The BOM path swapped for a FIFO, then for a symlink to `/dev/zero`, while runbom runs: each
/// reload is refused (counted, the last good BOM kept), `/healthz` and OTLP keep answering, the
/// memory does not grow, and SIGTERM still stops runbom cleanly.
#[test]
fn a_bom_swapped_for_a_fifo_or_dev_zero_during_a_run_keeps_the_last_good_one() {
    let dir = TempDir::new("bom-fifo-run");
    let bom = dir.join("bom.cdx.json");
    fs::copy(workspace_root().join("examples/agent/bom.cdx.json"), &bom).expect("copy the BOM");
    let cfg = SidecarConfig::new();
    let runbom = cfg.start(runbom_bin!(), &dir, &aibom_rest(&bom), AIBOM_PIPELINES);
    let rss_before = rss_kib(runbom.pid()).expect("runbom's RSS");
    let failures = || {
        metrics(cfg.admin)
            .get("runbom_aibom_bom_reload_failures_total")
            .copied()
            .unwrap_or_default()
    };

    fs::remove_file(&bom).expect("remove the BOM");
    mkfifo(&bom);
    assert!(
        eventually(TIMEOUT, || failures() >= 1),
        "the FIFO is refused:\n{}",
        runbom.log()
    );
    assert_eq!(http_get(cfg.admin, "/healthz").0, 200);

    fs::remove_file(&bom).expect("remove the FIFO");
    std::os::unix::fs::symlink("/dev/zero", &bom).expect("symlink");
    assert!(
        eventually(TIMEOUT, || failures() >= 2),
        "the device is refused:\n{}",
        runbom.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(cfg.admin, "/healthz").0, 200);
    assert_eq!(http_get(cfg.admin, "/readyz").0, 200);
    let rss_after = rss_kib(runbom.pid()).expect("runbom's RSS");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} KiB before, {rss_after} KiB after"
    );
    // A good OTLP request is still accepted.
    let (status, _, body) = runbom_testkit::http_exchange(
        &mut runbom_testkit::net::connect(cfg.http),
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/json")],
        b"{\"resourceSpans\":[]}",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let log = runbom.stop_ok();
    assert!(
        log.contains("not a regular file (a FIFO)") && log.contains("(a character device)"),
        "each refusal is logged with its reason:\n{log}"
    );
    assert!(
        log.contains("keeping the last good one"),
        "the last good BOM stays:\n{log}"
    );
}
