//! The kernel's path filter decides opens from the path's first two bytes (a table computed from
//! the prefix rules), comparing the path with the few longer rules that start with them where
//! there are such, and asks the LPM trie only for a head with many rules. Against the real
//! kernel, with one-, two- and many-byte rules and one head given more rules than a list holds:
//! a path a one-byte include decides from its first two bytes, a path a two-byte exclude
//! decides, paths a list includes and excludes, and paths only the trie decides must each come
//! out (or not) exactly as the trie alone would have it.
//!
//! Needs root. Other processes on the machine run meanwhile: every check is about this test's
//! own paths (and `/proc/` and `/etc/`, which no process may get through but `/etc/hostname`).

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use runbom_kernel::filter::PrefixRules;
use runbom_testkit::{
    Runbom, TempDir,
    config::start_kernel_to_file,
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

/// runbom reporting the opens `include` and `exclude` decide, into `dir/out` (returned).
fn start(dir: &TempDir, include: &[String], exclude: &[String]) -> (Runbom, PathBuf) {
    let yaml_list = |l: &[String]| {
        l.iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ebpf = format!(
        "    file:\n      include: [{}]\n      exclude: [{}]",
        yaml_list(include),
        yaml_list(exclude)
    );
    start_kernel_to_file(runbom_bin!(), dir, &ebpf)
}

/// `(file.path, error.type or "")` → exported opens, for the paths `wanted` picks.
fn exported(out: &Path, wanted: impl Fn(&str) -> bool) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for_each_item(&out.join("logs.jsonl"), Items::LogRecords, |record| {
        if let Some(path) = str_attribute(record, "file.path").filter(|p| wanted(p)) {
            let error = str_attribute(record, "error.type").unwrap_or_default();
            *seen.entry((path.to_owned(), error.to_owned())).or_default() += 1;
        }
    })
    .expect("read the exported logs");
    seen
}

#[test]
fn paths_the_table_decides_come_out_as_the_trie_would_have_them() {
    let dir = TempDir::new("open-filter");
    let present = dir.join("present").display().to_string();
    fs::write(&present, b"x").expect("file");
    let missing = dir.join("missing").display().to_string();
    let other = dir.join("other").display().to_string();
    fs::write(&other, b"x").expect("file");
    // Opened relative to the test directory (no other process opens paths starting `R`):
    // included by the one-byte rule `R`, and excluded by the two-byte rule `Rx`.
    let kept_relative = format!("Rq-runbom-open-filter-{}", std::process::id());
    let dropped_relative = format!("Rx-runbom-open-filter-{}", std::process::id());
    for name in [&kept_relative, &dropped_relative] {
        fs::write(dir.join(name), b"x").expect("file");
    }
    let proc_file = "/proc/self/status";
    // `/e` gets more rules than a list holds: the trie decides its paths.
    let etc_kept = "/etc/hostname";
    let etc_dropped = "/etc/passwd";

    // The premises, from the same rules runbom loads: which paths the table decides (a list
    // decides `/t`: the test directory is excluded but for `present` and `missing`), and that
    // its verdicts are the trie's.
    let include = vec![
        "R".to_owned(),
        present.clone(),
        missing.clone(),
        etc_kept.to_owned(),
    ];
    let exclude = vec![
        "Rx".to_owned(),
        "/proc/".to_owned(),
        format!("{}/", dir.path().display()),
        "/etc/".to_owned(),
        "/etc/a".to_owned(),
        "/etc/b".to_owned(),
        "/etc/c".to_owned(),
    ];
    let rules = PrefixRules::new(&include, &exclude, &[]).expect("rules");
    let table = rules.table();
    for (path, decided, reported) in [
        (present.as_str(), true, true),
        (missing.as_str(), true, true),
        (other.as_str(), true, false),
        (kept_relative.as_str(), true, true),
        (dropped_relative.as_str(), true, false),
        (proc_file, true, false),
        (etc_kept, false, true),
        (etc_dropped, false, false),
    ] {
        let p = path.as_bytes();
        assert_eq!(table.decides(p), decided, "{path}");
        assert_eq!(table.classify(&rules, p, 0).is_some(), reported, "{path}");
        assert_eq!(rules.trie_class(p) == Some(1), reported, "{path}");
    }

    let (rb, out) = start(&dir, &include, &exclude);
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
        open_times(None, &other),
        open_times(Some(dir_fd), &kept_relative),
        open_times(Some(dir_fd), &dropped_relative),
        open_times(None, proc_file),
        open_times(None, etc_kept),
        open_times(None, etc_dropped),
    ];
    // SAFETY: ours.
    unsafe { libc::close(dir_fd) };
    assert_eq!(opened, [OPENS, 0, OPENS, OPENS, OPENS, OPENS, OPENS, OPENS]);
    let log = rb.stop_ok();

    let ours = [
        &present,
        &missing,
        &other,
        &kept_relative,
        &dropped_relative,
    ];
    let mut seen = exported(&out, |path| {
        ours.contains(&&path.to_owned()) || path.starts_with("/proc/") || path.starts_with("/etc/")
    });
    let expected: BTreeMap<(String, String), usize> = [
        ((present.clone(), String::new()), OPENS),
        ((missing.clone(), "ENOENT".to_owned()), OPENS),
        ((kept_relative.clone(), String::new()), OPENS),
    ]
    .into_iter()
    .collect();
    // `/etc/hostname` may be opened by others too: at least ours came out (and no other file
    // of `/etc/`).
    let etc = seen.remove(&(etc_kept.to_owned(), String::new()));
    assert_eq!(seen, expected, "runbom's log:\n{log}");
    assert!(etc.is_some_and(|n| n >= OPENS), "{etc:?}\n{log}");
}
