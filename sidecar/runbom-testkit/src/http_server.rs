//! `tests/http_workload.py server`: a real HTTP/1.1 server (Python's `http.server`, over
//! OpenSSL with a self-signed certificate when TLS) for the `http.request` tests' clients. It
//! answers every `POST` 200 with a small JSON body.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{Proc, python_bin, test_script};

/// The server on a free loopback port; killed when dropped.
pub struct HttpServer {
    _guard: Proc,
    pub port: u16,
    /// The certificate a client trusts (TLS servers; its SANs are `127.0.0.1` and `localhost`).
    pub cert: PathBuf,
}

impl HttpServer {
    /// Starts it with its certificate and stderr in `dir`.
    #[must_use]
    pub fn start(dir: &Path, tls: bool) -> Self {
        let label = if tls { "tls" } else { "plain" };
        let cert_dir = dir.join(format!("cert-{label}"));
        let mut cmd = Command::new(python_bin());
        cmd.arg(test_script("http_workload.py"))
            .arg("server")
            .arg("--cert-dir")
            .arg(&cert_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                fs::File::create(dir.join(format!("server-{label}.stderr")))
                    .expect("create server stderr"),
            );
        if tls {
            cmd.arg("--tls");
        }
        let mut guard = Proc::spawn("http_workload.py server", &mut cmd);
        let mut line = String::new();
        BufReader::new(guard.child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the server's READY line");
        let port = line
            .trim()
            .strip_prefix("READY port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http_workload.py server printed {line:?}, not READY"));
        Self {
            _guard: guard,
            port,
            cert: cert_dir.join("cert.pem"),
        }
    }

    /// `http[s]://127.0.0.1:<port><path>`.
    #[must_use]
    pub fn url(&self, tls: bool, path: &str) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}
