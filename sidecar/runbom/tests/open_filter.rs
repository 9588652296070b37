//! The kernel's path filter decides most opens from the path's first two bytes (a table
//! computed from the prefix rules) and asks the LPM trie only when those do not decide. Against
//! the real kernel, with rules shaped like the embedded defaults (`/` included, longer and
//! two-byte excludes): a path the table includes at once, a path the table excludes by a
//! two-byte rule, a path only the trie can exclude, and a relative path no rule matches must
//! each come out (or not) exactly as the trie alone would have it.
//!
//! Needs root. With `/` included, every process's opens pass the filter while the test runs;
//! every check is about this test's own paths (and `/proc/`, which no process may get through).

use std::{collections::BTreeMap, ffi::CString, fs};

use runbom_kernel::filter::{PrefixRules, classify, head_decides};
use runbom_testkit::{
    Ready, Runbom, TempDir,
    config::{batch_to_file, service, traces_and_logs},
    otlp_file::{Items, for_each_item, str_attribute},
    runbom_bin,
};

const OPENS: usize = 200;

fn c(path: &str) -> CString {
    CString::new(path).expect("path")
}

/// Opens `path` relative to `dir` (`AT_FDCWD` when `None`) `OPENS` times; how many succeeded.
fn open_times(dir: Option<i32>, path: &str) -> usize {
    let path = c(path);
    let mut ok = 0;
    for _ in 0..OPENS {
        // SAFETY: a NUL-terminated path; the descriptor is closed at once.
        let fd = unsafe {
            libc::openat(
                dir.unwrap_or(libc::AT_FDCWD),
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            ok += 1;
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
        }
    }
    ok
}

/// Removes a file when dropped.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn paths_the_table_decides_come_out_as_the_trie_would_have_them() {
    let dir = TempDir::new("open-filter");
    let out = dir.join("out");
    let present = dir.join("present").display().to_string();
    fs::write(&present, b"x").expect("file");
    let missing = dir.join("missing").display().to_string();
    // Excluded by the two-byte rule `/v`.
    let var_file = format!("/var/tmp/runbom-open-filter-{}", std::process::id());
    fs::write(&var_file, b"x").expect("file under /var/tmp");
    let _removed = Removed(var_file.clone());
    // Opened relative to the test directory: no rule starts with its first bytes.
    let relative = format!("runbom-open-filter-{}", std::process::id());
    fs::write(dir.join(&relative), b"x").expect("file");
    let proc_file = "/proc/self/status";

    // The premises, from the same rules runbom loads: which paths the table decides, and that
    // its verdicts are the trie's.
    let include = vec!["/".to_owned()];
    let exclude = vec!["/proc/".to_owned(), "/v".to_owned()];
    let rules = PrefixRules::new(&include, &exclude, &[]).expect("rules");
    let heads = rules.heads();
    for (path, decided, reported) in [
        (present.as_str(), true, true),
        (var_file.as_str(), true, false),
        (relative.as_str(), true, false),
        (proc_file, false, false),
    ] {
        let p = path.as_bytes();
        assert_eq!(head_decides(&heads, p), decided, "{path}");
        assert_eq!(classify(&rules, &heads, p).is_some(), reported, "{path}");
        assert_eq!(rules.trie_class(p) == Some(1), reported, "{path}");
    }

    let config = format!(
        "receivers:
  ebpf:
    file:
      include: [\"/\"]
      exclude: [\"/proc/\", \"/v\"]
{}
{}",
        batch_to_file("200ms", &out),
        service("none", &traces_and_logs(&["ebpf"], &["batch"], &["file"])),
    );
    let config_path = dir.join("runbom.yaml");
    fs::write(&config_path, config).expect("config");
    let rb = Runbom::start(
        runbom_bin!(),
        &config_path,
        dir.path(),
        Ready::ProbesAttached,
    );
    // SAFETY: a NUL-terminated path.
    let dir_fd = unsafe {
        libc::open(
            c(&dir.path().display().to_string()).as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    assert!(dir_fd >= 0, "opening the test directory");
    let opened = [
        open_times(None, &present),
        open_times(None, &missing),
        open_times(None, &var_file),
        open_times(None, proc_file),
        open_times(Some(dir_fd), &relative),
    ];
    // SAFETY: ours.
    unsafe { libc::close(dir_fd) };
    assert_eq!(opened, [OPENS, 0, OPENS, OPENS, OPENS]);
    let log = rb.stop_ok();

    // (path, error.type or "") → exported opens, for this test's paths and anything in /proc.
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for_each_item(&out.join("logs.jsonl"), Items::LogRecords, |record| {
        let Some(path) = str_attribute(record, "file.path") else {
            return;
        };
        if [&present, &missing, &var_file, &relative].contains(&&path.to_owned())
            || path.starts_with("/proc/")
        {
            let error = str_attribute(record, "error.type").unwrap_or_default();
            *seen.entry((path.to_owned(), error.to_owned())).or_default() += 1;
        }
    })
    .expect("read the exported logs");
    let expected: BTreeMap<(String, String), usize> = [
        ((present.clone(), String::new()), OPENS),
        ((missing.clone(), "ENOENT".to_owned()), OPENS),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected, "runbom's log:\n{log}");
}
