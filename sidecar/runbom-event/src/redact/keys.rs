//! The shapes of credentials that are redacted wherever they appear (contract §5): strings
//! shaped like well-known API keys ([`KEY_PREFIXES`], AWS and Google keys) and JSON Web Tokens.

use super::REDACTED;

/// Prefixes of well-known API keys, each with the least number of `[A-Za-z0-9_-]` that follow
/// it in a real key ([`looks_like_api_key`]; [`super::may_hold_secret`] looks for them by their first
/// two bytes). Prefixes that also begin ordinary words (`npm_`, `pypi-`) need a real key's
/// length.
pub(super) const KEY_PREFIXES: [(&str, usize); 19] = [
    ("sk-", 16),
    ("sk_live_", 16),
    ("sk_test_", 16),
    ("rk_live_", 16),
    ("ghp_", 16),
    ("gho_", 16),
    ("ghs_", 16),
    ("ghu_", 16),
    ("ghr_", 16),
    ("github_pat_", 16),
    ("glpat-", 16),
    ("gsk_", 32),
    ("xoxb-", 16),
    ("xoxp-", 16),
    ("xoxa-", 16),
    ("xoxe-", 16),
    ("hf_", 16),
    ("npm_", 36),
    ("pypi-", 50),
];

/// The second bytes of [`KEY_PREFIXES`].
pub(super) const KEY_PREFIX_SECOND: [bool; 256] = {
    let mut second = [false; 256];
    let mut i = 0;
    while i < KEY_PREFIXES.len() {
        second[KEY_PREFIXES[i].0.as_bytes()[1] as usize] = true;
        i += 1;
    }
    second
};

/// Replaces the key-shaped runs of `[A-Za-z0-9_-]` that start at a word boundary inside
/// `token`; `None` when there is none.
pub(super) fn redact_key_runs(token: &str) -> Option<String> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::new();
    let mut last = 0;
    let mut start = 0;
    let bytes = token.as_bytes();
    while start < token.len() {
        // Runs begin after a character that cannot be part of a key.
        let at_boundary = start == 0 || !is_key_char(char::from(bytes[start - 1]));
        if at_boundary && is_key_char(char::from(bytes[start])) {
            let len = token[start..]
                .find(|c: char| !is_key_char(c))
                .unwrap_or(token.len() - start);
            let run = &token[start..start + len];
            if looks_like_api_key(run) {
                out.push_str(&token[last..start]);
                out.push_str(REDACTED);
                last = start + len;
            }
            start += len.max(1);
        } else {
            start += token[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    (last > 0).then(|| {
        out.push_str(&token[last..]);
        out
    })
}

/// Replaces the JWT-shaped runs inside `token` (see [`looks_like_jwt`]); `None` when there is
/// none.
pub(super) fn redact_jwts(token: &str) -> Option<String> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let bytes = token.as_bytes();
    let mut out = String::new();
    let mut last = 0;
    let mut from = 0;
    while let Some(at) = token[from..].find("eyJ").map(|i| from + i) {
        if at > 0 && (is_b64(bytes[at - 1]) || bytes[at - 1] == b'.') {
            from = at + 3;
            continue;
        }
        let len = token[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(token.len() - at);
        let run = token[at..at + len].trim_end_matches('.');
        // `eyJ….eyJ….` (unsigned) keeps its final dot in the token.
        let run = if looks_like_jwt(run) {
            run
        } else {
            &token[at..at + len]
        };
        if looks_like_jwt(run) {
            out.push_str(&token[last..at]);
            out.push_str(REDACTED);
            last = at + run.len();
        }
        from = at + len.max(3);
    }
    (last > 0).then(|| {
        out.push_str(&token[last..]);
        out
    })
}

/// A JSON Web Token: three base64url segments joined by dots, the header (`{"…` encoded, so
/// `eyJ`) and payload of some length, the signature possibly empty (`alg: none`).
#[must_use]
pub fn looks_like_jwt(s: &str) -> bool {
    if !s.starts_with("eyJ") {
        return false;
    }
    let b64 = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = s.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    header.len() >= 10 && payload.len() >= 4 && b64(header) && b64(payload) && b64(signature)
}

/// Strings shaped like well-known API keys and tokens.
#[must_use]
pub fn looks_like_api_key(token: &str) -> bool {
    let body_ok = |b: &str, min: usize| {
        b.len() >= min
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    for (prefix, min) in KEY_PREFIXES {
        if let Some(body) = token.strip_prefix(prefix) {
            return body_ok(body, min);
        }
    }
    if let Some(body) = token.strip_prefix("AIza") {
        // Google API keys: `AIza` and 35 more.
        return body.len() == 35 && body_ok(body, 35);
    }
    if let Some(body) = token
        .strip_prefix("AKIA")
        .or_else(|| token.strip_prefix("ASIA"))
    {
        return body.len() == 16
            && body
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    }
    false
}
