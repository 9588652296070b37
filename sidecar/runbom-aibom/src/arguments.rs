//! How alert chains quote tool arguments (`processors.aibom.alert_arguments`): the arguments of
//! an exfiltrating tool call *are* the exfiltrated data, and an alert log is read by more people
//! than the data's owners. Every string value of the arguments (a JSON object's values, at any
//! depth; the whole text when it is not JSON) is masked and then cut to `max_chars`:
//! - `card_numbers`: runs of 13–19 digits (spaces or dashes between them allowed) that pass the
//!   Luhn check → `[CARD]`;
//! - `emails`: `local@domain.tld` → `[EMAIL]`.
//!
//! Secrets are redacted whatever the policy (contract §5, [`crate::scrub`]). The masks also
//! apply to the prompt quoted at the head of the chain.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

/// What is masked in quoted arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    CardNumbers,
    Emails,
}

/// The policy: mask, then cut each value to `max_chars` characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgumentPolicy {
    /// Characters kept of each argument value (then `…`); 0 quotes no values at all.
    pub max_chars: usize,
    pub mask: Vec<Mask>,
}

impl ArgumentPolicy {
    /// Default cut of each argument value.
    pub const DEFAULT_MAX_CHARS: usize = 64;
}

impl Default for ArgumentPolicy {
    fn default() -> Self {
        Self {
            max_chars: Self::DEFAULT_MAX_CHARS,
            mask: vec![Mask::CardNumbers, Mask::Emails],
        }
    }
}

/// `args` (a tool call's arguments) quoted under `policy`.
#[must_use]
pub fn quote(args: &str, policy: &ArgumentPolicy) -> String {
    match serde_json::from_str::<Value>(args) {
        Ok(mut v @ (Value::Object(_) | Value::Array(_))) => {
            values(&mut v, policy);
            v.to_string()
        }
        _ => value(args, policy),
    }
}

fn values(v: &mut Value, policy: &ArgumentPolicy) {
    match v {
        Value::String(s) => *s = value(s, policy),
        Value::Number(n) => {
            let digits = n.to_string();
            if policy.mask.contains(&Mask::CardNumbers) && luhn_card(digits.as_bytes()) {
                *v = Value::String(CARD.into());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| values(x, policy)),
        Value::Object(o) => o.values_mut().for_each(|x| values(x, policy)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// One value: secrets redacted (before the cut, which could leave a secret unrecognisable),
/// masked, then cut.
fn value(s: &str, policy: &ArgumentPolicy) -> String {
    let redacted = crate::scrub::text(s, usize::MAX);
    let masked = mask(&redacted, &policy.mask);
    clip(&masked, policy.max_chars)
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

const CARD: &str = "[CARD]";
const EMAIL: &str = "[EMAIL]";

/// `s` with card numbers and e-mail addresses masked, as `masks` says.
#[must_use]
pub fn mask(s: &str, masks: &[Mask]) -> String {
    let mut out = s.to_owned();
    if masks.contains(&Mask::CardNumbers) && s.bytes().filter(u8::is_ascii_digit).count() >= 13 {
        out = cards(&out);
    }
    if masks.contains(&Mask::Emails) && out.contains('@') {
        out = emails(&out);
    }
    out
}

/// Replaces Luhn-valid runs of 13–19 digits (single spaces or dashes between digits allowed).
fn cards(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        // The run: digits with single separators between them.
        let mut j = i;
        let mut digits = Vec::with_capacity(19);
        let mut end = i;
        while j < b.len() {
            if b[j].is_ascii_digit() {
                digits.push(b[j]);
                j += 1;
                end = j;
            } else if matches!(b[j], b' ' | b'-') && j + 1 < b.len() && b[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        if luhn_card(&digits) {
            out.push_str(&s[copied..i]);
            out.push_str(CARD);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&s[copied..]);
    out
}

/// 13–19 ASCII digits passing the Luhn check.
fn luhn_card(digits: &[u8]) -> bool {
    if !(13..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Replaces `local@domain.tld` addresses.
fn emails(s: &str) -> String {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (at, _) in s.match_indices('@') {
        if at < copied {
            continue;
        }
        let start = s[copied..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| local(*c))
            .last()
            .map_or(at, |(i, _)| copied + i);
        let host_len = s[at + 1..]
            .find(|c: char| !domain(c))
            .unwrap_or(s.len() - at - 1);
        let host = s[at + 1..at + 1 + host_len].trim_end_matches('.');
        let tld_ok = host.rsplit_once('.').is_some_and(|(name, tld)| {
            !name.is_empty() && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
        });
        if start < at && tld_ok {
            out.push_str(&s[copied..start]);
            out.push_str(EMAIL);
            copied = at + 1 + host.len();
        }
    }
    if copied == 0 {
        return s.to_owned();
    }
    let _ = write!(out, "{}", &s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cards_and_emails_then_cuts_each_value() {
        let p = ArgumentPolicy::default();
        let args = r#"{"url": "http://127.0.0.1:18099/upload", "body": "[{\"name\": \"Ada Lovelace\", \"email\": \"ada.lovelace@acme.example\", \"card\": \"4111 1111 1111 1111\", \"plan\": \"enterprise\"}]", "n": 4242424242424242}"#;
        let out = quote(args, &p);
        assert!(!out.contains("ada.lovelace"), "{out}");
        assert!(!out.contains("4242424242424242"), "{out}");
        assert!(
            out.contains(r#""url":"http://127.0.0.1:18099/upload""#),
            "{out}"
        );
        assert!(out.contains(r#""n":"[CARD]""#), "{out}");
        let body = serde_json::from_str::<Value>(&out).unwrap()["body"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(body.chars().count(), 65, "64 characters and …: {body}");
        assert!(body.contains(EMAIL), "{body}");
    }

    #[test]
    fn table() {
        let all = [Mask::CardNumbers, Mask::Emails];
        let rows = [
            ("card 4111111111111111 end", "card [CARD] end"),
            ("4111-1111-1111-1111", "[CARD]"),
            ("4111 1111 1111 1111.", "[CARD]."),
            ("mail bob@shop.example, ok", "mail [EMAIL], ok"),
            ("<a.b+c@x-y.co.uk>", "<[EMAIL]>"),
            // must stay as they are
            (
                "order 4111111111111112 (fails Luhn)",
                "order 4111111111111112 (fails Luhn)",
            ),
            ("phone +1-202-555-0107", "phone +1-202-555-0107"),
            ("ts 1764950400000", "ts 1764950400000"),
            ("user@localhost and @mention", "user@localhost and @mention"),
            ("git@github.com:org/repo", "[EMAIL]:org/repo"),
        ];
        for (input, want) in rows {
            assert_eq!(mask(input, &all), want, "{input:?}");
        }
        assert_eq!(mask("bob@shop.example", &[]), "bob@shop.example");
    }

    #[test]
    fn text_that_is_not_json_is_one_value() {
        let p = ArgumentPolicy {
            max_chars: 8,
            mask: vec![Mask::Emails],
        };
        assert_eq!(quote("bob@shop.example and more", &p), "[EMAIL] …");
        assert_eq!(quote("short", &p), "short");
    }
}
