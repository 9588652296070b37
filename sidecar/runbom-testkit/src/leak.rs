//! Leak checks that can fail: scan everything runbom wrote for a secret and for any
//! [`FRAGMENT`]-character piece of it (case-insensitive), and count an output that should be
//! there but is not as a failure, never as empty. The Rust twin of `tests/leakcheck.py`.
//!
//! ```no_run
//! # use runbom_testkit::leak::Outputs;
//! # let (export, dir, secret) = (std::path::Path::new("x"), std::path::Path::new("y"), "k");
//! let outputs = Outputs::default()
//!     .export_dir(export, &["traces.jsonl", "logs.jsonl"])
//!     .file("runbom's stderr", &dir.join("runbom.stderr"));
//! assert_eq!(outputs.leaks(secret), Vec::<String>::new());
//! ```

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use crate::net::{connect, http_exchange};

/// Length of the pieces of a secret that are looked for besides the whole.
pub const FRAGMENT: usize = 12;

/// Every output to scan, by name; `None` for one that is missing.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub entries: Vec<(String, Option<String>)>,
}

impl Outputs {
    /// Every file under `dir` (recursively); each of `expect` must be there and not be empty,
    /// and the directory must hold at least one file.
    #[must_use]
    pub fn export_dir(mut self, dir: &Path, expect: &[&str]) -> Self {
        let mut found = Vec::new();
        files_under(dir, &mut found);
        found.sort();
        if found.is_empty() {
            self.entries
                .push((format!("exporter directory {}", dir.display()), None));
        }
        for path in &found {
            self.entries
                .push((format!("exporter file {}", path.display()), read(path)));
        }
        for name in expect {
            let path = dir.join(name);
            match read(&path) {
                None => self
                    .entries
                    .push((format!("exporter file {}", path.display()), None)),
                Some(text) if text.trim().is_empty() => self
                    .entries
                    .push((format!("exporter file {} (empty)", path.display()), None)),
                Some(_) => {}
            }
        }
        self
    }

    /// A file runbom wrote (its stdout or stderr); missing when it cannot be read.
    #[must_use]
    pub fn file(mut self, name: &str, path: &Path) -> Self {
        self.entries.push((name.to_owned(), read(path)));
        self
    }

    /// A text already in hand (a scrape of `/metrics`); `None` when it could not be had.
    #[must_use]
    pub fn text(mut self, name: &str, text: Option<String>) -> Self {
        self.entries.push((name.to_owned(), text));
        self
    }

    /// The text of the output named `name`, if it is there.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.as_deref())
    }

    /// Replaces the text of the output named `name` (to forge a leak in a test of the check).
    pub fn set(&mut self, name: &str, text: Option<String>) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = text,
            None => self.entries.push((name.to_owned(), text)),
        }
    }

    /// One line per output that is missing, or holds `secret` or a [`FRAGMENT`]-character
    /// piece of it, saying where (never the piece in full). Empty when nothing leaked.
    #[must_use]
    pub fn leaks(&self, secret: &str) -> Vec<String> {
        assert!(
            secret.len() >= FRAGMENT && secret.is_ascii(),
            "a secret this short cannot be told from noise"
        );
        let secret = secret.to_ascii_lowercase();
        let pieces = fragments(&secret);
        let mut problems = Vec::new();
        for (name, text) in &self.entries {
            let Some(text) = text else {
                problems.push(format!("{name}: missing (nothing to scan is not a pass)"));
                continue;
            };
            let low = text.to_ascii_lowercase();
            if let Some(at) = low.find(&secret) {
                problems.push(format!("{name}: holds the whole secret at offset {at}"));
            } else if let Some((piece, at)) = pieces
                .iter()
                .find_map(|p| low.find(p.as_str()).map(|at| (p, at)))
            {
                problems.push(format!(
                    "{name}: holds a {}-character piece of the secret ({}…) at offset {at}",
                    piece.len(),
                    &piece[..4]
                ));
            }
        }
        problems
    }
}

/// Where [`plant`] put a secret.
#[derive(Clone, Debug)]
pub struct Planted {
    /// The pid of the program whose argv held it.
    pub exec_pid: u32,
    /// The path of the plaintext HTTP request whose query, headers and body held it.
    pub http_path: String,
}

/// Puts `secret` where runbom captures, so that a leak check can prove runbom saw it: the argv
/// of a program this process execs (`/bin/sh -c 'exit 0' runbom-plant --api-key S S TOKEN=S`),
/// and a plaintext HTTP/1.1 request to a local server (`POST /runbom-plant-…?api_key=S&note=S`
/// with `Authorization: Bearer S`, `X-Api-Key: S` and a JSON body holding it).
#[must_use]
pub fn plant(secret: &str) -> Planted {
    let child = Command::new("/bin/sh")
        .args(["-c", "exit 0", "runbom-plant", "--api-key", secret, secret])
        .arg(format!("TOKEN={secret}"))
        .spawn()
        .expect("spawn /bin/sh");
    let exec_pid = child.id();
    let status = child.wait_with_output().expect("wait for /bin/sh").status;
    assert!(status.success(), "the planted exec failed: {status}");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local server");
    let port = listener.local_addr().expect("local address").port();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept the planted request");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read a request line");
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a Content-Length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("read the request body");
        (&stream)
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .expect("answer");
    });
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let http_path = format!("/runbom-plant-{nonce:08x}");
    let body = format!(r#"{{"model":"gpt-4o-mini","api_key":"{secret}"}}"#);
    let bearer = format!("Bearer {secret}");
    let (status, _, _) = http_exchange(
        &mut connect(port),
        "POST",
        &format!("{http_path}?api_key={secret}&note={secret}"),
        &[
            ("Authorization", &bearer),
            ("X-Api-Key", secret),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 204, "the planted request was not answered");
    server.join().expect("the local server");
    Planted {
        exec_pid,
        http_path,
    }
}

/// Every [`FRAGMENT`]-character substring of `secret`, sorted.
#[must_use]
pub fn fragments(secret: &str) -> Vec<String> {
    let mut pieces: Vec<String> = secret
        .as_bytes()
        .windows(FRAGMENT)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    pieces.sort();
    pieces.dedup();
    pieces
}

fn read(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test-ABCDEFGHIJKLMNOPQRSTUV";

    fn outputs(text: &str) -> Outputs {
        Outputs::default().text("out", Some(text.to_owned()))
    }

    #[test]
    fn finds_the_whole_key_a_piece_of_it_in_any_case_and_a_missing_output() {
        assert!(outputs("nothing here [REDACTED]").leaks(KEY).is_empty());
        assert_eq!(outputs(&format!("x{KEY}y")).leaks(KEY).len(), 1);
        let piece = &KEY[9..21];
        let found = outputs(&format!("…{}…", piece.to_lowercase())).leaks(KEY);
        assert!(found[0].contains("12-character piece"), "{found:?}");
        assert!(
            !found[0].contains(piece),
            "the report must not repeat the piece"
        );
        // 11 characters are not enough to tell.
        assert!(outputs(&KEY[9..20]).leaks(KEY).is_empty());
        let missing = Outputs::default().text("/metrics", None).leaks(KEY);
        assert!(missing[0].contains("missing"), "{missing:?}");
    }

    #[test]
    fn an_export_dir_without_its_files_is_a_failure() {
        let dir = crate::TempDir::new("leak-empty-export");
        let found = Outputs::default()
            .export_dir(&dir.join("export"), &["traces.jsonl"])
            .leaks(KEY);
        assert_eq!(found.len(), 2, "{found:?}");
        std::fs::create_dir_all(dir.join("export")).expect("create export/");
        let _ = dir.write("export/traces.jsonl", "");
        let found = Outputs::default()
            .export_dir(&dir.join("export"), &["traces.jsonl"])
            .leaks(KEY);
        assert!(
            found.len() == 1 && found[0].contains("(empty)"),
            "{found:?}"
        );
    }
}
