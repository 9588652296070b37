//! Ring-buffer drops are reported while runbom runs (part of the reliability suite): the
//! README promises a warning every 10 s when the kernel dropped events, and it used to appear
//! only at stop. Loads the real probes (root), bounded (under a minute).

use std::{
    fs,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Ready, Runbom, TempDir,
    config::{service, traces_and_logs},
    runbom_bin,
};

/// A 4 KiB ring buffer (the smallest) and a process opening a watched file as fast as it can:
/// the kernel drops records, and runbom says so within a report interval, not only at stop.
#[test]
fn kernel_drops_are_logged_every_interval_while_running() {
    let dir = TempDir::new("kernel-drops");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("mkdir");
    let file = watched.join("f");
    fs::write(&file, b"x").expect("write");
    let yaml = format!(
        "receivers:\n  ebpf:\n    ring_buffer_bytes: 4096\n    file:\n      include: [\"{}/\"]\n\
         exporters:\n  nop: {{}}\n{}",
        watched.display(),
        service("none", &traces_and_logs(&["ebpf"], &[], &["nop"])),
    );
    let config = dir.write("runbom.yaml", &yaml);
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::ProbesAttached);

    // 3 s of opens from this process's own thread (its file.open records fill the ring).
    let started = Instant::now();
    let mut opens = 0_u64;
    while started.elapsed() < Duration::from_secs(3) {
        for _ in 0..1000 {
            drop(fs::File::open(&file).expect("open"));
        }
        opens += 1000;
    }
    // The report comes within one interval (10 s) of the drops, while runbom runs.
    let periodic = "events in the last 10s";
    let deadline = Instant::now() + Duration::from_secs(25);
    while !runbom.log().contains(periodic) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let running_log = runbom.log();
    let log = runbom.stop_ok();
    eprintln!("{opens} opens");
    assert!(
        running_log.contains(periodic) && running_log.contains("ring buffer full"),
        "a periodic drop report while running ({opens} opens):\n{log}"
    );
    assert!(
        running_log.contains("raise receivers.ebpf.ring_buffer_bytes"),
        "it says what to do:\n{running_log}"
    );
}
