//! URLs: the one place that knows where a URL keeps its credentials, for HTTP request targets
//! ([`crate::http::redact_target`]) and for the URLs in command lines and free text ([`super::text`]).

use std::borrow::Cow;

use super::{REDACTED, text};

/// A URL (`scheme://user:password@host/path?query#fragment`) or an HTTP request target
/// (`/path?query`) with its credentials replaced by [`REDACTED`]: the password of its userinfo
/// (the user is kept), every query value, the value of every `name=value` of its fragment
/// (`#access_token=…`), the tokens that some services take in the path ([`path_segment`]:
/// Telegram bots, Slack and Discord webhooks), and API-key-shaped strings in the user, the path
/// segments and the parameters without a value ([`text`]). Borrowed when there is none of these.
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
        || segments(path)
            .zip(path.split('/'))
            .any(|(redacted, seg)| redacted != seg);
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
    for (i, seg) in segments(path).enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&seg);
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

/// The segments of `path`, each through [`path_segment`].
fn segments(path: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let mut before = [""; 3];
    path.split('/').map(move |seg| {
        let out = path_segment(before, seg);
        before = [before[1], before[2], seg];
        out
    })
}

/// A path segment with its credential replaced, given the three segments before it: a
/// Telegram bot token (`bot123456:AAE…` → `bot123456:[REDACTED]`), the secret of a Slack
/// webhook (`services/T…/B…/<secret>`) or of a Discord one (`webhooks/<id>/<token>`), or what
/// [`text`] finds (an API-key-shaped segment). These shapes are matched whatever the host, since
/// a captured request's target has none.
fn path_segment<'a>(before: [&str; 3], seg: &'a str) -> Cow<'a, str> {
    let key_chars = |s: &str, min: usize| {
        s.len() >= min
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let slack_id = |s: &str, first: u8| {
        s.len() >= 7
            && s.as_bytes()[0] == first
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    if let Some((bot, token)) = seg.split_once(':')
        && bot.strip_prefix("bot").is_some_and(|id| digits(id, 5, 20))
        && key_chars(token, 30)
    {
        return Cow::Owned(format!("{bot}:{REDACTED}"));
    }
    let slack = before[0] == "services" && slack_id(before[1], b'T') && slack_id(before[2], b'B');
    let discord = before[1] == "webhooks" && digits(before[2], 15, 21);
    if (slack && key_chars(seg, 20)) || (discord && key_chars(seg, 40)) {
        return Cow::Borrowed(REDACTED);
    }
    text(seg)
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
