//! Redaction of credentials (`docs/telemetry-contract.md` §5) in command lines and captured
//! text.
//!
//! What is replaced by [`REDACTED`]: the value of a flag or `KEY=value` whose name says it holds a
//! secret (`--password x`, `--api-key=x`, `TOKEN=x`), the password of a URL's userinfo, the
//! credential after `Bearer`/`Basic`, and strings shaped like well-known API keys (`sk-…`,
//! `AKIA…`, `ghp_…`, `xox?-…`) wherever they appear.

use std::borrow::Cow;

pub const REDACTED: &str = "[REDACTED]";

/// Name fragments that mark a flag, variable or header as secret-bearing.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api-key",
    "api_key",
    "access-key",
    "access_key",
    "private-key",
    "private_key",
    "credential",
    "authorization",
    "auth",
    "cookie",
    "session",
];

/// True when a flag, variable or header name says its value is a credential.
#[must_use]
pub fn is_secret_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// Joins argv into a command line with every credential redacted.
#[must_use]
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    let mut out = String::new();
    let mut hide_next = false;
    for arg in argv {
        let arg = arg.as_ref();
        if !out.is_empty() {
            out.push(' ');
        }
        if hide_next {
            out.push_str(REDACTED);
            hide_next = false;
            continue;
        }
        if let Some((name, _)) = arg.split_once('=')
            && !name.is_empty()
            && !name.contains(char::is_whitespace)
            && is_secret_name(name)
        {
            out.push_str(name);
            out.push('=');
            out.push_str(REDACTED);
            continue;
        }
        if arg.starts_with('-') && arg.len() > 2 && is_secret_name(arg) {
            hide_next = true;
        }
        out.push_str(&text(arg));
    }
    out
}

/// Redacts credentials inside free text: URL passwords, `Bearer`/`Basic` credentials and
/// API-key-shaped tokens.
#[must_use]
pub fn text(s: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while !rest.is_empty() {
        // Split at the next token boundary, keeping the separator.
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '&' | '='))
            .unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        let redacted = redact_token(token, &out);
        changed |= redacted != token;
        out.push_str(&redacted);
        let sep_len = tail.chars().next().map_or(0, char::len_utf8);
        out.push_str(&tail[..sep_len]);
        rest = &tail[sep_len..];
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

fn redact_token<'a>(token: &'a str, before: &str) -> Cow<'a, str> {
    let prev = before
        .trim_end()
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("");
    if prev.eq_ignore_ascii_case("bearer") || prev.eq_ignore_ascii_case("basic") {
        return Cow::Borrowed(REDACTED);
    }
    if looks_like_api_key(token) {
        return Cow::Borrowed(REDACTED);
    }
    // A key inside a token: `(sk-…)`, `key:sk-….`, `"sk-…".` — each key-shaped run is replaced.
    if let Some(redacted) = redact_key_runs(token) {
        return Cow::Owned(redacted);
    }
    // scheme://user:password@host → scheme://user:[REDACTED]@host
    if let Some(scheme_end) = token.find("://") {
        let after = &token[scheme_end + 3..];
        let authority_end = after.find('/').unwrap_or(after.len());
        if let Some(at) = after[..authority_end].rfind('@')
            && let Some(colon) = after[..at].find(':')
        {
            let start = scheme_end + 3;
            let user_end = start + colon + 1;
            return Cow::Owned(format!(
                "{}{REDACTED}{}",
                &token[..user_end],
                &token[start + at..]
            ));
        }
    }
    Cow::Borrowed(token)
}

/// Replaces the key-shaped runs of `[A-Za-z0-9_-]` that start at a word boundary inside
/// `token`; `None` when there is none.
fn redact_key_runs(token: &str) -> Option<String> {
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

/// Strings shaped like well-known API keys and tokens.
#[must_use]
pub fn looks_like_api_key(token: &str) -> bool {
    let body_ok = |b: &str, min: usize| {
        b.len() >= min
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    for prefix in [
        "sk-",
        "sk_live_",
        "sk_test_",
        "rk_live_",
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "hf_",
    ] {
        if let Some(body) = token.strip_prefix(prefix) {
            return body_ok(body, 16);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_variables() {
        let argv = [
            "curl",
            "--api-key",
            "abc123",
            "--token=xyz",
            "DB_PASSWORD=hunter2",
            "--verbose",
            "https://example.com",
        ];
        assert_eq!(
            command_line(&argv),
            "curl --api-key [REDACTED] --token=[REDACTED] DB_PASSWORD=[REDACTED] --verbose https://example.com"
        );
    }

    #[test]
    fn key_shaped_strings_anywhere() {
        let key = format!("sk-{}", "a".repeat(32));
        assert_eq!(command_line(&["agent", &key]), "agent [REDACTED]");
        let aws = format!("AKIA{}", "ABCDEFGHIJKLMNOP");
        assert_eq!(text(&format!("id={aws} ok")), "id=[REDACTED] ok");
        assert_eq!(text("short sk-abc stays"), "short sk-abc stays");
        // Followed or surrounded by punctuation.
        assert_eq!(text(&format!("key {key}.")), "key [REDACTED].");
        assert_eq!(
            text(&format!("({key}), x:{key}!")),
            "([REDACTED]), x:[REDACTED]!"
        );
        // A key prefix inside a word is not a key.
        let word = concat!("ta", "sk", "-1234567890abcdefghij stays");
        assert_eq!(text(word), word);
    }

    #[test]
    fn bearer_and_url_passwords() {
        assert_eq!(
            text("Authorization: Bearer abc.def.ghi"),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(
            text("postgres://app:s3cret@db:5432/x"),
            "postgres://app:[REDACTED]@db:5432/x"
        );
        assert_eq!(text("http://host/path@x"), "http://host/path@x");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(text("python3 agent.py"), Cow::Borrowed(_)));
    }
}
