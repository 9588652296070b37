//! Fetching one trace from Grafana Tempo or Jaeger over their HTTP APIs (plain HTTP/1.1; put
//! a TLS-terminating proxy or `kubectl port-forward` in front of a TLS endpoint).
//!
//! - Tempo: `GET /api/v2/traces/<id>` answers `{"trace": {"resourceSpans": [...]}}`; older
//!   versions only have `GET /api/traces/<id>`, answering `{"batches": [...]}`.
//! - Jaeger (v1.55+ and v2): `GET /api/v3/traces/<id>` answers OTLP/JSON as
//!   `{"result": {"resourceSpans": [...]}}`.
//!
//! A 404 means the trace is not there (not an error: the caller says "not found").

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::model::Data;

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn tempo(base: &str, trace_id: &str, data: &mut Data) -> Result<()> {
    let base = base.trim_end_matches('/');
    match get(&format!("{base}/api/v2/traces/{trace_id}"))? {
        (200, body) => add(&body, data, "Tempo"),
        (404, _) => match get(&format!("{base}/api/traces/{trace_id}"))? {
            (200, body) => add(&body, data, "Tempo"),
            (404, _) => Ok(()),
            (status, body) => bail!("Tempo answered {status}: {}", snippet(&body)),
        },
        (status, body) => bail!("Tempo answered {status}: {}", snippet(&body)),
    }
}

pub fn jaeger(base: &str, trace_id: &str, data: &mut Data) -> Result<()> {
    let base = base.trim_end_matches('/');
    match get(&format!("{base}/api/v3/traces/{trace_id}"))? {
        (200, body) => add(&body, data, "Jaeger"),
        (404, _) => Ok(()),
        (status, body) => bail!("Jaeger answered {status}: {}", snippet(&body)),
    }
}

fn add(body: &[u8], data: &mut Data, who: &str) -> Result<()> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).with_context(|| format!("{who}'s answer is not JSON"))?;
    data.add_document(&doc)
        .map_err(|e| anyhow::anyhow!("{who}'s answer is not an OTLP/JSON trace: {e}"))
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// A minimal HTTP/1.1 GET (`Connection: close`, identity or chunked body).
fn get(url: &str) -> Result<(u16, Vec<u8>)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs are supported");
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("{url}: cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{url}: {addr} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&sock, TIMEOUT)
        .with_context(|| format!("{url}: cannot connect"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: runbom/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("{url}: reading the answer"))?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url}: no status line in {head:?}"))?;
    let body = &raw[head_end + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size.checked_add(2).is_none_or(|whole| body.len() < whole) {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_err());
        // A size that wraps when its line end is added: an error, not a panic.
        assert!(dechunk(b"ffffffffffffffff\r\nab\r\n").is_err());
    }
}
