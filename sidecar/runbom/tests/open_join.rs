//! An open reaches userspace as two kernel records (the open at the syscall's entry, its
//! result at the exit), joined per thread before it is an event. Against the real kernel:
//! threads open at the same time, so their records interleave in the ring, and every open
//! must come out once, with its own result: an fd (no error) for the file that exists, `ENOENT`
//! for the one that does not, none of them with its result lost.
//!
//! Needs root. Other processes on the machine run meanwhile: every check is about this test's
//! watched directory.

use std::{collections::BTreeMap, ffi::CString, fs, sync::Barrier};

use runbom_testkit::{
    TempDir,
    config::start_kernel_to_file,
    otlp_file::{Items, for_each_item, str_attribute},
    runbom::closing_fields,
    runbom_bin,
};

const THREADS: usize = 4;
const OPENS_PER_THREAD: usize = 2_000;

/// Opens `present` and `missing` in turn, `OPENS_PER_THREAD` times in all; returns how many
/// opens of each succeeded and failed.
fn open_in_turn(present: &CString, missing: &CString) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    for i in 0..OPENS_PER_THREAD {
        let path = if i % 2 == 0 { present } else { missing };
        // SAFETY: a NUL-terminated path; the descriptor is closed at once.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        if fd >= 0 {
            ok += 1;
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

#[test]
fn concurrent_opens_each_come_out_with_their_own_result() {
    let dir = TempDir::new("open-join");
    let watched = dir.join("watched");
    let mut paths = Vec::new();
    for t in 0..THREADS {
        let sub = watched.join(format!("t{t}"));
        fs::create_dir_all(&sub).expect("thread dir");
        fs::write(sub.join("present"), b"x").expect("watched file");
        paths.push((sub.join("present"), sub.join("missing")));
    }
    let ebpf = format!("    file:\n      include: [\"{}/\"]", watched.display());
    let (rb, out) = start_kernel_to_file(runbom_bin!(), &dir, &ebpf);

    let start = Barrier::new(THREADS);
    let made: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|(present, missing)| {
                let present = CString::new(present.as_os_str().as_encoded_bytes()).expect("path");
                let missing = CString::new(missing.as_os_str().as_encoded_bytes()).expect("path");
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    open_in_turn(&present, &missing)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("opening thread"))
            .collect()
    });
    let log = rb.stop_ok();
    let fields = closing_fields(&log).expect("closing summary");

    // (path, error.type or "") → how many were exported.
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let prefix = format!("{}/", watched.display());
    for_each_item(&out.join("logs.jsonl"), Items::LogRecords, |record| {
        if let Some(path) = str_attribute(record, "file.path").filter(|p| p.starts_with(&prefix)) {
            let error = str_attribute(record, "error.type").unwrap_or_default();
            *seen.entry((path.to_owned(), error.to_owned())).or_default() += 1;
        }
    })
    .expect("read the exported logs");

    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for ((present, missing), (ok, failed)) in paths.iter().zip(&made) {
        assert_eq!((*ok, *failed), (OPENS_PER_THREAD / 2, OPENS_PER_THREAD / 2));
        expected.insert((present.display().to_string(), String::new()), *ok);
        expected.insert((missing.display().to_string(), "ENOENT".into()), *failed);
    }
    assert_eq!(
        seen, expected,
        "every open exported once with its own result ({fields:?})"
    );
    assert_eq!(
        fields.get("open_results_lost").copied(),
        Some(0),
        "no result lost: {fields:?}"
    );
}
