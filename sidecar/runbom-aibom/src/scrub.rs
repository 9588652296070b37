//! Secrets out of everything the AI-BOM processor writes (contract §5): the agent's redaction
//! (`runbom_event::redact`: bearer/basic credentials, URL passwords, API-key-shaped strings)
//! plus the values of secret-named fields in free text (`Authorization: x`, `"api_key": "x"`,
//! `password=x`) and the query values of URLs.

use std::{cell::RefCell, collections::HashSet};

use runbom_event::redact::{self, REDACTED};

thread_local! {
    /// Texts found free of credentials. The drift reason of a finding is written on each of its
    /// spans and repeats across traces; scrubbing costs far more than a lookup. Only texts that
    /// scrubbing leaves as they are go in, so nothing here is a secret.
    /// Hashed with foldhash (keyed per process): SipHash over each text was a twentieth of an
    /// alert's cost; the set is small and bounded, so a colliding sender gains little.
    static CLEAN: RefCell<HashSet<Box<str>, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::default());
}

/// Clean texts remembered per thread (then forgotten all at once) ...
const CLEAN_MAX: usize = 4096;
/// ... of at most this many bytes: reasons and chain steps repeat, prompts and bodies hardly
/// (and would make the memory large).
const CLEAN_LEN: usize = 256;

/// `s` with every credential replaced by `[REDACTED]`, cut to at most `max` characters.
#[must_use]
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_text(&mut out, s, max);
    out
}

/// Writes [`text`] of `s` at the end of `out` (one buffer for a line made of several parts).
pub fn push_text(out: &mut String, s: &str, max: usize) {
    let short = s.len() <= CLEAN_LEN;
    if short && CLEAN.with_borrow(|c| c.contains(s)) {
        push_clipped(out, s, max);
        return;
    }
    let fields = secret_fields(s);
    let scrubbed = redact::text(&fields);
    if short && scrubbed == s {
        CLEAN.with_borrow_mut(|c| {
            if c.len() >= CLEAN_MAX {
                c.clear();
            }
            c.insert(s.into());
        });
    }
    push_clipped(out, &scrubbed, max);
}

/// A URL without its query and fragment, its userinfo password redacted.
#[must_use]
pub fn url(u: &str) -> String {
    let base = u.split(['?', '#']).next().unwrap_or(u);
    redact::text(base).into_owned()
}

/// A command line (already redacted by the agent; redacted again, as it may come from elsewhere).
#[must_use]
pub fn command_line(s: &str) -> String {
    let argv: Vec<&str> = s.split(' ').collect();
    clip(&redact::command_line(&argv), 512)
}

fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_clipped(&mut out, s, max);
    out
}

/// `s` cut to at most `max` characters (`…` marks a cut), at the end of `out`.
fn push_clipped(out: &mut String, s: &str, max: usize) {
    // No more bytes than `max`: no more characters either (the usual case, without counting).
    if s.len() <= max {
        out.push_str(s);
        return;
    }
    match s.char_indices().nth(max) {
        None => out.push_str(s),
        Some((end, _)) => {
            out.push_str(&s[..end]);
            out.push('…');
        }
    }
}

/// Replaces the value after `name:` / `name=` / `"name": "` when `name` says it is a secret.
// A byte scanner: `i`, `j`, `k` are positions, `b` the byte at one.
#[allow(clippy::many_single_char_names)]
fn secret_fields(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        // A name: a run of word characters and dashes.
        if !is_name_byte(bytes[i]) || (i > 0 && is_name_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_name_byte(bytes[i]) {
            i += 1;
        }
        // Separator: optional closing quote, spaces, `:` or `=`, spaces, optional opening quote
        // (checked first: it is cheaper than the name).
        let mut j = i;
        if j < bytes.len() && matches!(bytes[j], b'"' | b'\'') {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || !matches!(bytes[j], b':' | b'=') {
            continue;
        }
        if !redact::is_secret_name(&s[start..i]) {
            continue;
        }
        // `Name: value` (a header) runs to the end of the line; `name=value` to the next delimiter.
        let header = bytes[j] == b':';
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let quote = (j < bytes.len() && matches!(bytes[j], b'"' | b'\'')).then(|| bytes[j]);
        if quote.is_some() {
            j += 1;
        }
        let value_start = j;
        // `Authorization: Bearer x`: the scheme word stays, the credential goes.
        let mut k = j;
        while k < bytes.len() {
            let b = bytes[k];
            let end = match quote {
                Some(q) => b == q || b == b'\n',
                None if header => matches!(b, b'\n' | b'\r' | b'\\'),
                None => {
                    matches!(b, b'\n' | b'&' | b',' | b';' | b'"' | b'\'' | b'}')
                        || (b == b' ' && !is_auth_scheme(&s[value_start..k]))
                }
            };
            if end {
                break;
            }
            k += 1;
        }
        if k > value_start {
            out.push_str(&s[copied..value_start]);
            out.push_str(REDACTED);
            copied = k;
        }
        i = k;
    }
    out.push_str(&s[copied..]);
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_auth_scheme(word: &str) -> bool {
    ["bearer", "basic", "token", "digest"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_in_headers_json_and_assignments() {
        let s = "Authorization: Bearer abc.def\nX-Api-Key: k123\nCookie: a=b; c=d\nHost: x";
        let out = text(s, 1000);
        for secret in ["abc.def", "k123", "a=b", "c=d"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("Host: x"), "{out}");
        let out = text(
            r#"{"api_key": "zzz", "password":"p4ss", "user": "bob"}"#,
            1000,
        );
        assert!(
            !out.contains("zzz") && !out.contains("p4ss") && out.contains("bob"),
            "{out}"
        );
        let out = text("curl -d token=t0k3n&x=1 https://u:pw@h/", 1000);
        assert!(!out.contains("t0k3n") && !out.contains(":pw@"), "{out}");
    }

    #[test]
    fn keys_followed_by_punctuation() {
        let key = format!("sk-proj-{}", "a1".repeat(12));
        let out = text(&format!("use {key}. or ({key}), \"{key}\""), 1000);
        assert!(!out.contains(&key), "{out}");
        assert_eq!(text("sk-short. fine", 100), "sk-short. fine");
    }

    #[test]
    fn remembered_clean_texts_hold_no_secret_and_change_nothing() {
        let clean = "support-agent sent POST https://collector.example/upload";
        assert_eq!(text(clean, 1000), clean);
        assert_eq!(text(clean, 1000), clean, "from memory");
        assert_eq!(text(clean, 10), "support-ag…", "clipped from memory too");
        let secret = format!(
            "{clean} with Bearer {}",
            concat!("FAKE", "token", "0123456789")
        );
        for _ in 0..2 {
            let out = text(&secret, 1000);
            assert!(out.ends_with("Bearer [REDACTED]"), "{out}");
        }
        let long = "a clean sentence ".repeat(20);
        assert_eq!(text(&long, 1000), long);
        CLEAN.with_borrow(|c| {
            assert!(c.contains(clean));
            assert!(!c.contains(long.as_str()), "long texts are not remembered");
            assert!(!c.iter().any(|t| t.contains("FAKEtoken")), "{c:?}");
        });
    }

    #[test]
    fn urls_lose_their_query() {
        assert_eq!(url("http://h:1/p?api_key=s&x=1"), "http://h:1/p");
    }
}
