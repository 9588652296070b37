//! URLs as IRI references that CycloneDX validators accept, and back: what the observed BOM
//! writes into `endpoints` and `url`, and what `bom diff` and the BOM reader compare.

use std::borrow::Cow;

/// `u` as an IRI reference CycloneDX validators accept (the schema's `iri-reference` format)
/// for `endpoints` and `url`: an observed URL holds what a client wrote (`{`, `"`, a space, a
/// `%` that starts no escape) and runbom's own `[REDACTED]`, each percent-encoded here, as is
/// every non-ASCII byte. An IPv6 host is written with all eight groups (`[0:0:0:0:0:0:0:1]`),
/// the form the common validator's grammar (`rfc3987-syntax`) takes: it refuses `::`.
#[must_use]
pub fn encode(u: &str) -> String {
    let mut out = String::with_capacity(u.len());
    let rest = match u.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            out.push_str(scheme);
            out.push_str("://");
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            authority(&rest[..end], &mut out);
            &rest[end..]
        }
        _ => u,
    };
    let mut fragment = false;
    push_escaped(rest, &mut out, |b| {
        let first_hash = b == b'#' && !fragment;
        fragment |= first_hash;
        first_hash || is_uri_char(b)
    });
    out
}

/// `userinfo@host:port`, the host an IPv6 literal written in full or a name.
fn authority(a: &str, out: &mut String) {
    let v6 = a.strip_prefix('[').and_then(|r| r.split_once(']'));
    let rest = match v6.and_then(|(ip, port)| Some((ip.parse::<std::net::Ipv6Addr>().ok()?, port)))
    {
        Some((ip, port)) => {
            let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
            out.push('[');
            out.push_str(&groups.join(":"));
            out.push(']');
            port
        }
        None => a,
    };
    push_escaped(rest, out, is_uri_char);
}

/// `s` onto `out`, each byte `keep` refuses percent-encoded, except a `%` that starts an escape.
fn push_escaped(s: &str, out: &mut String, mut keep: impl FnMut(u8) -> bool) {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let escape = b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if escape || keep(b) {
            out.push(char::from(b));
        } else {
            percent(b, out);
        }
    }
}

fn is_scheme(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An unreserved or reserved character of RFC 3986 other than `%`, `#`, `[` and `]` (those
/// only where the grammar puts them).
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
        )
}

fn percent(b: u8, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(out, "%{b:02X}");
}

/// The inverse of [`encode`] on what it encodes: each `%XX` whose byte `encode` would have
/// escaped (not a URI character, not `#`) is decoded, so that a URL or path read back from an
/// observed BOM compares with what was declared (`/srv/my data/`, `[::1]`). Escapes of URI
/// characters (`%2F`, `%41`) stay: decoding them would change what the URL says.
#[must_use]
pub fn decode(u: &str) -> Cow<'_, str> {
    if !u.contains('%') {
        return Cow::Borrowed(u);
    }
    let bytes = u.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|&b| !is_uri_char(b) && b != b'#');
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn urls_become_iri_references_a_validator_takes() {
        for (observed, written) in [
            (
                "https://api.openai.com:443/v1",
                "https://api.openai.com:443/v1",
            ),
            ("tcp://10.0.0.7:5432", "tcp://10.0.0.7:5432"),
            ("tcp://[::1]:80", "tcp://[0:0:0:0:0:0:0:1]:80"),
            (
                "http://[::ffff:127.0.0.1]:9/x",
                "http://[0:0:0:0:0:ffff:7f00:1]:9/x",
            ),
            (
                "https://h:443/v1/[REDACTED]/x",
                "https://h:443/v1/%5BREDACTED%5D/x",
            ),
            (
                "http://h:1/a{b}c|d^e`f\"g<h>i%zz j%41",
                "http://h:1/a%7Bb%7Dc%7Cd%5Ee%60f%22g%3Ch%3Ei%25zz%20j%41",
            ),
            ("http://h:1/caf\u{e9}#a#b", "http://h:1/caf%C3%A9#a%23b"),
            ("http://h{x}:1/", "http://h%7Bx%7D:1/"),
            ("http://h%41:1/", "http://h%41:1/"),
            ("http://[not-v6]:1/", "http://%5Bnot-v6%5D:1/"),
            ("no scheme/a b", "no%20scheme/a%20b"),
        ] {
            assert_eq!(encode(observed), written, "{observed}");
            // Back as it was, but for what `encode` rewrote (IPv6 hosts in full, a second `#`,
            // a `%` that started no escape).
            if !observed.contains(['%', '#']) && !observed.contains("::") {
                assert_eq!(decode(written), observed, "{written}");
            }
        }
    }
}
