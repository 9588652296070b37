//! HTTP/2 and gRPC servers for the HTTP/2 tests' clients: Node's own `node:http2`
//! (`tests/h2_peers.mjs server`: TLS with ALPN `h2`, and cleartext HTTP/2 with prior
//! knowledge) and grpcio (`tests/h2_clients.py grpc-server`, plaintext).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use crate::{Proc, pki::Pki, python_bin, test_script};

/// Node's HTTP/2 server on two free loopback ports; killed when dropped. Its certificate is
/// `pki`'s `server.pem` (clients trust `ca.pem`).
pub struct H2Server {
    _guard: Proc,
    pub tls_port: u16,
    pub plain_port: u16,
}

impl H2Server {
    #[must_use]
    pub fn start(pki: &Pki) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(test_script("h2_peers.mjs"))
            .arg("server")
            .arg(pki.path("server.pem"))
            .arg(pki.path("server-key.pem"));
        let (guard, line) = spawn_ready("h2_peers.mjs server", &mut cmd);
        let port = |name: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or_else(|| panic!("h2_peers.mjs server printed {line:?}, not READY"))
        };
        Self {
            tls_port: port("tls"),
            plain_port: port("plain"),
            _guard: guard,
        }
    }

    /// `https://127.0.0.1:<tls port><path>` or `http://127.0.0.1:<plain port><path>`.
    #[must_use]
    pub fn url(&self, tls: bool, path: &str) -> String {
        if tls {
            format!("https://127.0.0.1:{}{path}", self.tls_port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.plain_port)
        }
    }
}

/// grpcio's server (plaintext) on a free loopback port; killed when dropped.
pub struct GrpcServer {
    _guard: Proc,
    pub port: u16,
}

impl GrpcServer {
    #[must_use]
    pub fn start() -> Self {
        let mut cmd = Command::new(python_bin());
        cmd.arg(test_script("h2_clients.py")).arg("grpc-server");
        let (guard, line) = spawn_ready("h2_clients.py grpc-server", &mut cmd);
        let port = line
            .trim()
            .strip_prefix("READY port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("grpc-server printed {line:?}, not READY"));
        Self {
            _guard: guard,
            port,
        }
    }
}

/// Spawns a server and reads its first stdout line (`READY ...`).
fn spawn_ready(label: &str, cmd: &mut Command) -> (Proc, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut guard = Proc::spawn(label, cmd);
    let mut line = String::new();
    BufReader::new(guard.child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read {label}'s READY line: {e}"));
    (guard, line)
}
