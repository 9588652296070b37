//! Finding the files that carry OpenSSL's `SSL_write`/`SSL_read` and attaching the TLS uprobes
//! to each once.
//!
//! OpenSSL is not only `libssl.so*`: Node links it into the `node` executable, Python wheels
//! bundle renamed copies, `BoringSSL` builds export the same functions. So every executable file
//! a process maps (its program and its libraries, from `/proc/PID/maps`) is a candidate, and
//! the uprobes go to each that *exports* the functions ([`crate::elf`]: its dynamic symbol
//! table, read once per file). A uprobe belongs to a file (inode), so one attachment covers
//! every process that maps that file, now and later. At start: the files mapped by running
//! processes, the `libssl.so*` in the usual library directories and `node`. Afterwards the enricher
//! reports processes that exec (and first connect), and each is rescanned a few times over the
//! next seconds: the loader, or a `dlopen` at `import ssl`, maps libssl some time after the
//! exec. Paths are resolved through `/proc/PID/root` so that container files are found, and
//! files are deduplicated by device and inode: a file is opened at most once, whatever it
//! holds. A file that exports none of the functions (or a static, stripped build) is skipped.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{self, RecvTimeoutError, SyncSender},
    },
    thread,
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

use crate::{
    elf,
    probes::{Probes, SSL_SYMBOLS},
};

/// When a reported process is rescanned, counted from the report.
const RESCAN_AFTER: [Duration; 5] = [
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1500),
    Duration::from_secs(5),
];
/// Most rescans scheduled at once (a fork bomb must not grow the schedule without bound).
const SCHEDULE_MAX: usize = 4096;
/// Most reports queued between the enricher and the watcher.
const QUEUE: usize = 1024;
/// Library directories searched at start, whether or not a process maps their libssl yet.
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];
/// Executables known to link OpenSSL in, looked at at start even when none runs yet: a
/// program's first request can come before the rescan after its exec has hooked it.
const START_FILES: &[&str] = &["/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"];

/// Attaches the uprobes to files that export OpenSSL; remembers which files it has seen.
pub struct Watcher {
    probes: Arc<Mutex<Probes>>,
    /// (device, inode) of every file looked at, attached or not.
    seen: HashSet<(u64, u64)>,
}

impl Watcher {
    #[must_use]
    pub fn new(probes: Arc<Mutex<Probes>>) -> Self {
        Self {
            probes,
            seen: HashSet::new(),
        }
    }

    /// Every OpenSSL file mapped by a running process, and the libssl files in the usual
    /// directories; returns how many files were attached.
    pub fn scan_all(&mut self) -> usize {
        let mut attached = 0;
        for file in START_FILES {
            attached += usize::from(self.consider(Path::new(file)));
        }
        for dir in LIB_DIRS {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if is_libssl(&entry.file_name().to_string_lossy()) {
                    attached += usize::from(self.consider(&entry.path()));
                }
            }
        }
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                    attached += self.scan_pid(pid);
                }
            }
        }
        attached
    }

    /// The OpenSSL files `pid` maps; returns how many were newly attached.
    pub fn scan_pid(&mut self, pid: u32) -> usize {
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return 0;
        };
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let mut attached = 0;
        for path in executable_paths(&maps) {
            let host_path = root.join(path.trim_start_matches('/'));
            attached += usize::from(self.consider(&host_path));
        }
        attached
    }

    /// Attaches to `path` if it exports OpenSSL's functions, unless its file was looked at
    /// before; true when newly attached.
    fn consider(&mut self, path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        if !meta.is_file() || !self.seen.insert((meta.dev(), meta.ino())) {
            return false;
        }
        let offsets = match elf::exported_offsets(path, &SSL_SYMBOLS) {
            // `SSL_free` alone (the last symbol) makes no TLS library.
            Ok(offsets) if offsets[..4].iter().any(Option::is_some) => offsets,
            Ok(_) => return self.consider_go(path),
            Err(why) => {
                debug!(file = %path.display(), "not searched for OpenSSL: {why}");
                return false;
            }
        };
        let result = self
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .attach_openssl(path, &offsets);
        match result {
            Ok(missing) if missing.is_empty() => {
                info!(library = %path.display(), "OpenSSL uprobes attached");
                true
            }
            Ok(missing) => {
                info!(library = %path.display(), "OpenSSL uprobes attached, except: {}", missing.join("; "));
                true
            }
            Err(why) => {
                warn!(library = %path.display(), "OpenSSL library not hooked (TLS requests through it are not captured): {why}");
                false
            }
        }
    }

    /// Attaches Go's `crypto/tls` uprobes to `path` if it is a Go executable linking it.
    fn consider_go(&mut self, path: &Path) -> bool {
        let go = match crate::gotls::find(path) {
            Ok(Some(go)) => go,
            Ok(None) => return false,
            Err(why) => {
                warn!(executable = %path.display(), "Go executable not hooked (its TLS requests are not captured): {why}");
                return false;
            }
        };
        let result = self
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .attach_go(path, &go);
        match result {
            Ok(()) => {
                info!(
                    executable = %path.display(),
                    write_returns = go.write.returns.len(),
                    read_returns = go.read.returns.len(),
                    "Go crypto/tls uprobes attached"
                );
                true
            }
            Err(why) => {
                warn!(executable = %path.display(), "Go executable not hooked (its TLS requests are not captured): {why}");
                false
            }
        }
    }
}

/// True for an OpenSSL library file name (`libssl.so`, `libssl.so.3`, `libssl.so.1.1`, and
/// wheel-bundled copies renamed `libssl-<hash>.so.3`). NSS's `libssl3.so` is not OpenSSL.
fn is_libssl(name: &str) -> bool {
    name == "libssl.so"
        || name.starts_with("libssl.so.")
        || (name.starts_with("libssl-") && name.contains(".so"))
}

/// The distinct files a `/proc/PID/maps` text maps executable (as the process sees them): its
/// program and its libraries, where code that exports OpenSSL can be.
fn executable_paths(maps: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path: only the path has a `/` (and may have spaces).
        let (Some(perms), Some(at)) = (line.split_whitespace().nth(1), line.find('/')) else {
            continue;
        };
        let path = &line[at..];
        if !perms.contains('x') || path.ends_with("(deleted)") {
            continue;
        }
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Runs `watcher` on its own thread (attaching reads ELF files and makes syscalls: not work for
/// the async runtime). Returns where to report pids; the thread ends when every sender is gone.
pub fn spawn(mut watcher: Watcher) -> std::io::Result<SyncSender<u32>> {
    let (tx, rx) = mpsc::sync_channel::<u32>(QUEUE);
    thread::Builder::new()
        .name("runbom-openssl".into())
        .spawn(move || {
            let mut schedule: BinaryHeap<Reverse<(Instant, u32, usize)>> = BinaryHeap::new();
            loop {
                let wait = schedule.peek().map_or(Duration::from_hours(1), |r| {
                    r.0.0.saturating_duration_since(Instant::now())
                });
                match rx.recv_timeout(wait) {
                    Ok(pid) => {
                        if schedule.len() < SCHEDULE_MAX {
                            schedule.push(Reverse((Instant::now() + RESCAN_AFTER[0], pid, 0)));
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                let now = Instant::now();
                while let Some(&Reverse((due, pid, step))) = schedule.peek() {
                    if due > now {
                        break;
                    }
                    schedule.pop();
                    watcher.scan_pid(pid);
                    if let Some(next) = RESCAN_AFTER.get(step + 1) {
                        let later = next.saturating_sub(RESCAN_AFTER[step]);
                        schedule.push(Reverse((due + later, pid, step + 1)));
                    }
                }
            }
            debug!("OpenSSL library watcher stopped");
        })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executable_files_in_maps() {
        let maps = "\
00400000-00401000 r-xp 00000000 08:01 100 /usr/bin/node
7f0000000000-7f0000001000 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000002000-7f0000002800 r-xp 00002000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r--p 00000000 08:01 124 /usr/lib/x86_64-linux-gnu/locale-archive
7f0000005000-7f0000006000 r-xp 00000000 08:01 125 /opt/app/libssl.so.1.1 (deleted)
7f0000007000-7f0000008000 rw-p 00000000 00:00 0 [heap]
7f0000009000-7f000000a000 r-xp 00000000 08:01 126 /opt/venv/libssl-abc.so.3
7f000000b000-7f000000c000 r-xp 00000000 00:00 0 [vdso]
7f000000d000-7f000000e000 r-xp 00000000 08:01 127 /opt/path with space/libx.so
";
        assert_eq!(
            executable_paths(maps),
            [
                "/usr/bin/node",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/venv/libssl-abc.so.3",
                "/opt/path with space/libx.so"
            ]
        );
    }
}
