//! URLs: the one place that knows where a URL keeps its credentials, for HTTP request targets
//! ([`crate::http::redact_target`]) and for the URLs in command lines and free text ([`super::text`]).

use std::borrow::Cow;

use super::{REDACTED, text};

/// A URL (`scheme://user:password@host/path?query#fragment`) or an HTTP request target
/// (`/path?query`) with its credentials replaced by [`REDACTED`]: the password of its userinfo
/// (the user is kept), every query value, the value of every `name=value` of its fragment
/// (`#access_token=…`), and API-key-shaped strings in the user, the path segments and the
/// parameters without a value ([`text`]). Borrowed when there is none of these.
#[must_use]
pub fn url(s: &str) -> Cow<'_, str> {
    let (before_fragment, fragment) = match s.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (s, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    // `scheme://` and the authority, then the path.
    let (origin, path) = match path.find("://") {
        Some(sep) => {
            let after = &path[sep + 3..];
            let end = sep + 3 + after.find('/').unwrap_or(after.len());
            path.split_at(end)
        }
        None => ("", path),
    };
    let origin_start = origin.find("://").map_or(0, |sep| sep + 3);
    let (userinfo, host) = match origin[origin_start..].rfind('@') {
        Some(at) => (
            Some(&origin[origin_start..origin_start + at]),
            &origin[origin_start + at..],
        ),
        None => (None, &origin[origin_start..]),
    };
    let changed = query.is_some()
        || fragment.is_some()
        || userinfo.is_some_and(|u| u.contains(':') || text(u) != u)
        || path.split('/').any(|seg| text(seg) != seg);
    if !changed {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + REDACTED.len());
    out.push_str(&origin[..origin_start]);
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(&text(user));
                out.push(':');
                out.push_str(REDACTED);
            }
            None => out.push_str(&text(userinfo)),
        }
    }
    out.push_str(host);
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&text(seg));
    }
    if let Some(query) = query {
        out.push('?');
        push_params(&mut out, query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if fragment.contains('=') {
            push_params(&mut out, fragment);
        } else {
            out.push_str(&text(fragment));
        }
    }
    Cow::Owned(out)
}

/// `a=1&b&c=3` → `a=[REDACTED]&b&c=[REDACTED]` (a parameter without a value through [`text`]).
fn push_params(out: &mut String, params: &str) {
    for (i, p) in params.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match p.split_once('=') {
            Some((name, _)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            None => out.push_str(&text(p)),
        }
    }
}

/// Where a URL starts in `token`: at the scheme (a letter, then letters, digits, `+`, `-`, `.`)
/// right before its `://`. `None` when `token` has no `scheme://`.
pub(super) fn start(token: &str) -> Option<usize> {
    let sep = token.find("://")?;
    let bytes = token.as_bytes();
    let mut start = sep;
    while start > 0
        && matches!(bytes[start - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'+' | b'-' | b'.')
    {
        start -= 1;
    }
    // Only ASCII bytes were passed, so every position here is a character boundary.
    start += token[start..sep].find(|c: char| c.is_ascii_alphabetic())?;
    Some(start)
}

/// How long the URL that starts `rest` is: up to whitespace, a quote or `<`/`>`, without the
/// punctuation that ends a sentence (`.`, `,`, …) or a bracket it does not open
/// (`(see https://x?a=1).`, but `?a=[REDACTED]` whole).
pub(super) fn len(rest: &str) -> usize {
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
        .unwrap_or(rest.len());
    let u = &rest[..end];
    // Brackets `(`, `[`, `{` opened and closed in `u[..len]`, counted once.
    let pairs = [('(', ')'), ('[', ']'), ('{', '}')];
    let open = pairs.map(|(o, _)| u.matches(o).count());
    let mut closed = pairs.map(|(_, c)| u.matches(c).count());
    let mut len = u.len();
    while let Some(&last) = u.as_bytes()[..len].last() {
        match pairs.iter().position(|&(_, c)| c as u8 == last) {
            Some(i) if closed[i] > open[i] => closed[i] -= 1,
            None if matches!(last, b'.' | b',' | b';' | b':' | b'!' | b'?') => {}
            _ => break,
        }
        len -= 1;
    }
    len
}
