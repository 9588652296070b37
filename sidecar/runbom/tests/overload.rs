//! Overload protection against the real kernel: runbom's reader is stopped (SIGSTOP) while a
//! workload opens a watched file tens of thousands of times and runs execs in between, so
//! the ring fills. The kernel must shed the opens (counted, by kind) and keep every exec: the
//! process tree is never shed. Nothing may be lost silently: the opens not exported are all
//! counted.
//!
//! Needs root. Other processes on the machine run meanwhile: every check is about this test's
//! watched directory and the markers in its execs' command lines.

use std::{
    ffi::CString,
    fs,
    process::{Command, Stdio},
};

use runbom_testkit::{
    TempDir,
    config::start_kernel_to_file,
    otlp_file::{Items, for_each_item, str_attribute},
    runbom::closing_fields,
    runbom_bin,
};

const OPENS: u64 = 30_000;
const EXECS: usize = 60;

fn open_close(path: &CString, n: u64) -> u64 {
    let mut ok = 0;
    for _ in 0..n {
        // SAFETY: a NUL-terminated path; the descriptor is closed at once.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        if fd >= 0 {
            ok += 1;
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
        }
    }
    ok
}

#[test]
fn under_overload_opens_are_shed_and_every_exec_is_kept() {
    let dir = TempDir::new("overload");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let file = watched.join("file");
    fs::write(&file, b"x").expect("watched file");
    // A small ring, and every kind that can be shed shed at half of it: the other half is the
    // process tree's whatever else the machine does meanwhile.
    let ebpf = format!(
        "    ring_buffer_bytes: 1048576
    file:
      include: [\"{}/\"]
    overload:
      shed_at_percent: {{file.open: 50, file.open.low_value: 40, dns.query: 50, net.connect: 50, net.accept: 50, http.request: 50, mcp: 50}}",
        watched.display(),
    );
    let (rb, out) = start_kernel_to_file(runbom_bin!(), &dir, &ebpf);

    rb.proc.signal(libc::SIGSTOP);
    let path = CString::new(file.as_os_str().as_encoded_bytes()).expect("path");
    let marker = format!("runbom-overload-{}", std::process::id());
    let mut opened = 0;
    for i in 0..EXECS {
        opened += open_close(&path, OPENS / EXECS as u64);
        let status = Command::new("/bin/true")
            .arg(format!("{marker}-{i}"))
            .stdout(Stdio::null())
            .status()
            .expect("run /bin/true");
        assert!(status.success());
    }
    rb.proc.signal(libc::SIGCONT);
    let log = rb.stop_ok();

    let fields = closing_fields(&log).expect("closing summary");
    let field = |k: &str| fields.get(k).copied().unwrap_or(0);
    let (mut exported_opens, mut execs) = (0u64, std::collections::BTreeSet::new());
    let prefix = format!("{}/", watched.display());
    for_each_item(&out.join("logs.jsonl"), Items::LogRecords, |record| {
        if str_attribute(record, "file.path").is_some_and(|p| p.starts_with(&prefix)) {
            exported_opens += 1;
        }
        let text = record.to_string();
        if text.contains("process.exec")
            && let Some(at) = text.find(&format!("{marker}-"))
        {
            let rest = &text[at + marker.len() + 1..];
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            execs.insert(n.parse::<usize>().expect("exec number"));
        }
    })
    .expect("read the exported logs");

    let shed = field("shed_drops");
    assert!(
        shed > 0,
        "the ring never reached the shedding threshold: {fields:?}\n{log}"
    );
    assert!(
        log.contains("shed under overload: file.open="),
        "the drop report names the kind shed:\n{log}"
    );
    assert_eq!(
        execs.len(),
        EXECS,
        "every exec is kept under overload (seen: {execs:?}); {fields:?}"
    );
    let lost = opened - exported_opens;
    assert!(
        exported_opens < opened && lost <= shed + field("ring_full_drops"),
        "opens: {opened} made, {exported_opens} exported, {lost} not: each one counted \
         ({fields:?})"
    );
}
