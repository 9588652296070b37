//! Loopback ports, and small blocking HTTP/1.1 exchanges with runbom's admin endpoint.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use crate::Proc;

/// How long a peer may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port nothing listens on now (bound to port 0, then released).
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something accepts TCP connections on `port`; panics (with `proc`'s output) if
/// `proc` exits first or [`START_TIMEOUT`] passes.
pub fn wait_listening(port: u16, proc: &mut Proc) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            proc.running(),
            "{} exited before listening on {port}\n{}",
            proc.what,
            proc.output()
        );
        assert!(
            Instant::now() < deadline,
            "{} is not listening on {port} after {START_TIMEOUT:?}\n{}",
            proc.what,
            proc.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A connection to `127.0.0.1:port` that gives up reading after 10 s.
#[must_use]
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    stream
}

/// One HTTP/1.1 exchange on an open connection: writes the request, reads one answer.
/// Returns the status, the headers (lower-case names) and the body.
pub fn http_exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .expect("write the HTTP request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("read the status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut answer_headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            answer_headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = answer_headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("answer without Content-Length: {answer_headers:?}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, answer_headers, body)
}

/// GET `path` on a fresh connection; returns the status and body.
#[must_use]
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let (status, _, body) = http_exchange(&mut connect(port), "GET", path, &[], b"");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// runbom's counters from `/metrics`, by their full series name
/// (`runbom_receiver_refused_items_total{receiver="otlp",signal="traces"}`).
#[must_use]
pub fn metrics(port: u16) -> BTreeMap<String, u64> {
    let (status, text) = http_get(port, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}
