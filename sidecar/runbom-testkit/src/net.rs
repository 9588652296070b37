//! Loopback ports, and small blocking HTTP/1.1 exchanges with runbom's admin endpoint.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use crate::Proc;

/// How long a peer may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Below this, the fixed ports the examples declare (18080–18443) and well-known services.
const LOWEST_PORT: u16 = 20000;

/// Ports handed out in this process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port nothing listens on now, below the kernel's ephemeral range and never handed
/// out before in this process (as `tests/ports.py` does for the Python tests).
///
/// A port from `bind(0)` is an ephemeral one: once released, it can be handed out again to
/// another test of the same binary, or taken as the local port of any outgoing connection,
/// before the server meant for it listens. Then that server fails with "address in use"
/// while the test talks to whatever holds the port.
#[must_use]
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    assert!(
        end.saturating_sub(LOWEST_PORT) >= 1000,
        "the ephemeral range starts at {end}: no room below it above {LOWEST_PORT} \
         (/proc/sys/net/ipv4/ip_local_port_range)"
    );
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = rand::random_range(LOWEST_PORT..end);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port between {LOWEST_PORT} and {end} after 1000 tries");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
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
    try_connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

/// [`connect`], returning the error instead of panicking.
pub fn try_connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// The status, the headers (lower-case names) and the body of an HTTP answer.
pub type HttpAnswer = (u16, BTreeMap<String, String>, Vec<u8>);

/// One HTTP/1.1 exchange on an open connection: writes the request, reads one answer.
/// Panics when the connection fails or the answer is not HTTP/1.1 with a `Content-Length`.
pub fn http_exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    try_http_exchange(stream, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`http_exchange`], returning the error instead of panicking.
pub fn try_http_exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpAnswer> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP status line: {status_line:?}")))?;
    let mut answer_headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
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
        .ok_or_else(|| invalid(format!("answer without Content-Length: {answer_headers:?}")))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, answer_headers, body))
}

/// The status of `GET path` on a fresh connection, or why there is none.
pub fn try_http_status(port: u16, path: &str) -> io::Result<u16> {
    Ok(try_http_exchange(&mut try_connect(port)?, "GET", path, &[], b"")?.0)
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
