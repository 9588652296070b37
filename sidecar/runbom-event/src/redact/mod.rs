//! Redaction of credentials (`docs/telemetry-contract.md` §5) in command lines and captured
//! text.
//!
//! What is replaced by [`REDACTED`]: the value of a flag or `KEY=value` whose name says it holds a
//! secret ([`is_secret_name`]: `--password x`, `--api-key=x`, `TOKEN=x`, `PGPASSWORD=x`, also as
//! the value of another flag, `--env=DB_PASSWORD=x`), the value of a secret-bearing header
//! (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`,
//! `Ocp-Apim-Subscription-Key`, … to the end of its line or quote; an `Authorization` scheme such
//! as `Bearer` is kept), in a URL (`scheme://…`, up to whitespace or a quote; [`url()`]) the
//! password of its userinfo, every query value and every `name=value` of its fragment, the
//! credential after `Bearer`/`Basic`, JWT-shaped tokens (`eyJ….….…`) and strings shaped like
//! well-known API keys (`sk-…`, `AKIA…`, `AIza…`, `ghp_…`, `xox?-…`, the list in `keys.rs`) wherever
//! they appear, tokens in the paths of URLs where some services take them ([`url()`]); and the password
//! options of common clients, where the option is unambiguous for that program ([`TOOLS`]):
//! `mysql`/`mariadb` `-pPASSWORD`, `sshpass -p`, `redis-cli -a`, `curl -u user:pass` (the user is
//! kept), `openssl -passin`/`-passout`/`-pass pass:…` (`env:`, `file:` are kept). The value of a
//! secret option is replaced whole, spaces and all (`--password 'a b'`). A command line that is a
//! shell script (`sh -c '…'`) gets the same treatment word by word, its words split as the shell
//! splits them (`PGPASSWORD='my pass'` is one word).

mod keys;
mod shell;
mod url;

use std::borrow::Cow;

use keys::{KEY_PREFIX_SECOND, KEY_PREFIXES, redact_jwts, redact_key_runs};
pub use keys::{looks_like_api_key, looks_like_jwt};
pub use url::url;

pub const REDACTED: &str = "[REDACTED]";

/// `s` cut to at most `max` characters. Cut after redacting, never before: a secret cut short
/// may no longer look like one, and its first characters would be exported.
#[must_use]
pub fn cut_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(at, _)| &s[..at])
}

/// [`text`] of `s`, then cut to at most `max` characters: a value runbom exports bounded.
#[must_use]
pub fn text_cut(s: &str, max: usize) -> String {
    cut_chars(&text(s), max).to_owned()
}

/// What runbom exports for an identifier a client could replay, such as an MCP session id
/// (contract §5): the first 128 bits of its SHA-256, in hex. Equal identifiers give equal
/// digests, so the calls of one session stay tied together.
#[must_use]
pub fn digest(s: &str) -> String {
    use std::fmt::Write as _;
    let sha = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    sha.as_ref()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Name fragments that mark a flag, variable or header as secret-bearing.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passphrase",
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

/// True when a flag, variable or header name says its value is a credential: it holds one of
/// [`SECRET_NAMES`], or it ends in `_key` or `-key` (`AZURE_OPENAI_KEY`, `X-Functions-Key`,
/// `--account-key`; not a bare `key`, `monkey` or `--keys`).
#[must_use]
pub fn is_secret_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').as_bytes();
    SECRET_NAMES.iter().any(|s| {
        name.windows(s.len())
            .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
    }) || name.len() > 4
        && matches!(name[name.len() - 4], b'_' | b'-')
        && name[name.len() - 3..].eq_ignore_ascii_case(b"key")
}

/// How a program takes a password on its command line, where the option means that for it and
/// only for it (`-p` is a port for `ssh` and a publish for `docker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// `mysql`, `mariadb` and their dump/admin tools: `-pPASSWORD` (a bare `-p` prompts).
    Mysql,
    /// `sshpass -p PASSWORD` / `-pPASSWORD`.
    Sshpass,
    /// `redis-cli -a PASSWORD` / `--pass PASSWORD`.
    RedisCli,
    /// `curl -u user:pass` / `--user`, `-U`/`--proxy-user`: the part after the first `:`.
    Curl,
    /// `openssl … -passin pass:PASSWORD` / `-passout`, `-pass`: the part after `pass:`.
    Openssl,
}

/// Program names (the last path component of a word) with their password options.
const TOOLS: &[(&str, Tool)] = &[
    ("mysql", Tool::Mysql),
    ("mysqldump", Tool::Mysql),
    ("mysqladmin", Tool::Mysql),
    ("mysqlimport", Tool::Mysql),
    ("mysqlcheck", Tool::Mysql),
    ("mysqlshow", Tool::Mysql),
    ("mysqlpump", Tool::Mysql),
    ("mysqlbinlog", Tool::Mysql),
    ("mariadb", Tool::Mysql),
    ("mariadb-dump", Tool::Mysql),
    ("mariadb-admin", Tool::Mysql),
    ("mariadb-import", Tool::Mysql),
    ("mariadb-check", Tool::Mysql),
    ("sshpass", Tool::Sshpass),
    ("redis-cli", Tool::RedisCli),
    ("curl", Tool::Curl),
    ("openssl", Tool::Openssl),
];

fn tool_of(word: &str) -> Option<Tool> {
    let name = word.rsplit('/').next().unwrap_or(word);
    // Cheap rejection first: every tool name starts with one of these letters.
    if !matches!(
        name.as_bytes().first(),
        Some(b'm' | b's' | b'r' | b'c' | b'o')
    ) {
        return None;
    }
    TOOLS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// What the word after an option holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Keep,
    /// The whole word is a secret.
    Secret,
    /// `user:password`: the part after the first `:` is.
    UserPassword,
    /// An `openssl` pass phrase argument: `pass:PASSWORD` is, `env:VAR` and `file:PATH` are not.
    PassArg,
}

/// Joins argv into a command line with every credential redacted.
#[must_use]
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    let mut out = String::new();
    let mut tool = None;
    let mut next = Next::Keep;
    let mut after_c = false;
    for arg in argv {
        let arg = arg.as_ref();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&text(&argument(arg, after_c, &mut tool, &mut next, 0)));
        after_c = takes_script(arg);
    }
    out
}

/// One argv word (or a word of a script, its quotes removed) with the option rules applied.
/// A word with whitespace in it is, in this order: the value of the secret option before it
/// (`--password 'a b'`), whatever it holds; a script when it follows `-c` ([`takes_script`]);
/// a value the rules redact (`-e 'DB_PASSWORD=a b'`, `--password='a b'`); else a script, whose
/// words get the same rules (`ssh host 'mysql -pPASSWORD'`). `depth`: of scripts in scripts.
fn argument<'a>(
    arg: &'a str,
    after_c: bool,
    tool: &mut Option<Tool>,
    next: &mut Next,
    depth: usize,
) -> Cow<'a, str> {
    if *next != Next::Keep || !arg.contains(char::is_whitespace) {
        return word(arg, tool, next);
    }
    if !after_c {
        // As one word, but what it says of the program or the next word is not taken: it may
        // be a script.
        let mut scratch = *tool;
        let redacted = word(arg, &mut scratch, &mut Next::Keep);
        if redacted != arg {
            return redacted;
        }
    }
    script(arg, depth)
}

/// Whether `arg` is an option whose value is a shell script: `-c`, or short options that end
/// in it (`bash -lc`, `sh -ec`).
fn takes_script(arg: &str) -> bool {
    arg.strip_prefix('-')
        .is_some_and(|o| o.ends_with('c') && o.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// How deep scripts inside scripts (`sh -c "bash -c '…'"`) are split the way the shell splits
/// them; deeper, at whitespace only.
const SCRIPT_DEPTH: usize = 4;

/// The words of a shell script with the argv rules applied, each changed word in its place (a
/// word that was one quoted string stays quoted); the script as it was when none applied.
fn script(s: &str, depth: usize) -> Cow<'_, str> {
    let words = if depth < SCRIPT_DEPTH {
        shell::words(s)
    } else {
        None
    };
    // A quote left open: split at whitespace, so that no word runs to the end unseen.
    let words = words.unwrap_or_else(|| shell::blank_separated(s));
    let mut tool = None;
    let mut next = Next::Keep;
    let mut after_c = false;
    let mut out: Option<String> = None;
    let mut copied = 0;
    for w in &words {
        let r = argument(&w.text, after_c, &mut tool, &mut next, depth + 1);
        after_c = takes_script(&w.text);
        if r == w.text {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(s.len() + REDACTED.len()));
        o.push_str(&s[copied..w.start]);
        match w.quote {
            Some(q) => {
                o.push(q);
                o.push_str(&r);
                o.push(q);
            }
            None => o.push_str(&r),
        }
        copied = w.end;
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    }
}

/// `NAME=value`: a name without `:` (not a URL's) or whitespace (not a script's) before the
/// first `=`.
fn assignment(arg: &str) -> Option<(&str, &str)> {
    arg.split_once('=').filter(|(name, _)| {
        !name.is_empty() && !name.contains(|c: char| c == ':' || c.is_whitespace())
    })
}

/// `NAME=value` with a secret name → `NAME=[REDACTED]`.
fn secret_assignment(arg: &str) -> Option<String> {
    let (name, _) = assignment(arg)?;
    is_secret_name(name).then(|| format!("{name}={REDACTED}"))
}

/// One argv word with the option rules applied (free-text redaction, [`text`], is the
/// caller's); `tool` is the last program named so far, `next` what the previous option says
/// this word is.
fn word<'a>(arg: &'a str, tool: &mut Option<Tool>, next: &mut Next) -> Cow<'a, str> {
    match std::mem::replace(next, Next::Keep) {
        Next::Secret => return Cow::Borrowed(REDACTED),
        Next::UserPassword => return Cow::Owned(user_password(arg)),
        Next::PassArg => {
            return if arg.starts_with("pass:") {
                Cow::Owned(format!("pass:{REDACTED}"))
            } else {
                Cow::Borrowed(arg)
            };
        }
        Next::Keep => {}
    }
    if let Some(t) = tool_of(arg) {
        *tool = Some(t);
        return Cow::Borrowed(arg);
    }
    if let Some(redacted) = secret_assignment(arg) {
        return Cow::Owned(redacted);
    }
    if arg.starts_with('-') {
        if let Some(redacted) = tool_option(*tool, arg, next) {
            return redacted;
        }
        match arg.split_once('=') {
            // `--env=DB_PASSWORD=x`: the flag's value is a variable of its own.
            Some((flag, value)) => {
                if let Some(redacted) = secret_assignment(value) {
                    return Cow::Owned(format!("{flag}={redacted}"));
                }
            }
            None if arg.len() > 2 && is_secret_name(arg) => *next = Next::Secret,
            None => {}
        }
    }
    Cow::Borrowed(arg)
}

/// A password option of `tool`: the word redacted, or `next` set for the word after it.
fn tool_option<'a>(tool: Option<Tool>, arg: &'a str, next: &mut Next) -> Option<Cow<'a, str>> {
    let attached = |flag: &str| {
        arg.strip_prefix(flag)
            .filter(|v| !v.is_empty())
            .map(|_| Cow::Owned(format!("{flag}{REDACTED}")))
    };
    match tool? {
        Tool::Mysql => attached("-p"),
        Tool::Sshpass => {
            if arg == "-p" {
                *next = Next::Secret;
                return Some(Cow::Borrowed(arg));
            }
            attached("-p")
        }
        Tool::RedisCli => {
            if arg == "-a" || arg == "--pass" {
                *next = Next::Secret;
                return Some(Cow::Borrowed(arg));
            }
            attached("-a")
        }
        Tool::Curl => {
            if matches!(arg, "-u" | "--user" | "-U" | "--proxy-user") {
                *next = Next::UserPassword;
                return Some(Cow::Borrowed(arg));
            }
            ["--user=", "--proxy-user=", "-u", "-U"]
                .iter()
                .find_map(|flag| {
                    let value = arg.strip_prefix(flag).filter(|v| !v.is_empty())?;
                    Some(Cow::Owned(format!("{flag}{}", user_password(value))))
                })
        }
        Tool::Openssl => {
            // OpenSSL 3 takes its options with one dash or two.
            let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
            matches!(name, "passin" | "passout" | "pass").then(|| {
                *next = Next::PassArg;
                Cow::Borrowed(arg)
            })
        }
    }
}

/// `user:password` → `user:[REDACTED]`; a word without `:` is kept (curl prompts for it).
fn user_password(s: &str) -> String {
    match s.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => s.to_owned(),
    }
}

/// Redacts credentials inside free text: secret-bearing headers, URLs' passwords, query values
/// and fragment parameters ([`url()`]), `Bearer`/`Basic` credentials, JWTs and API-key-shaped
/// tokens.
#[must_use]
pub fn text(s: &str) -> Cow<'_, str> {
    if may_hold_secret(s) {
        scan(s)
    } else {
        Cow::Borrowed(s)
    }
}

/// [`text`] token by token.
fn scan(s: &str) -> Cow<'_, str> {
    // The output is built only from the first change on: until then it is `s` up to `rest`,
    // so most texts (paths, command lines without secrets) allocate nothing here.
    let mut out: Option<String> = None;
    let started = |done: usize| {
        let mut o = String::with_capacity(s.len() + REDACTED.len());
        o.push_str(&s[..done]);
        o
    };
    let mut rest = s;
    while !rest.is_empty() {
        let done = s.len() - rest.len();
        // Split at the next token boundary, keeping the separator.
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '&' | '='))
            .unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        if let Some((keep, value_start)) = secret_header(token, rest) {
            // `Cookie: a=1; b=2` → `Cookie: [REDACTED]`, to the end of the line or quote.
            // (A backslash ends it too: an escaped newline in JSON or a quoted string.)
            let value_end = rest[value_start..]
                .find(['\n', '\r', '"', '\'', '\\'])
                .map_or(rest.len(), |e| value_start + e);
            let o = out.get_or_insert_with(|| started(done));
            o.push_str(&rest[..keep]);
            o.push_str(REDACTED);
            rest = &rest[value_end..];
            continue;
        }
        let before = out.as_deref().unwrap_or(&s[..done]);
        if let Some(start) = url::start(token)
            && !after_auth_scheme(before)
        {
            // `scheme://…` up to whitespace or a quote, its `=`, `&` and `,` included.
            let end = start + url::len(&rest[start..]);
            let (prefix, u) = (&token[..start], &rest[start..end]);
            let prefix_redacted = redact_token(prefix, before);
            let redacted = url(u);
            if out.is_some() || prefix_redacted != prefix || redacted != u {
                let o = out.get_or_insert_with(|| started(done));
                o.push_str(&prefix_redacted);
                o.push_str(&redacted);
            }
            rest = &rest[end..];
            continue;
        }
        let redacted = redact_token(token, before);
        let sep_len = tail.chars().next().map_or(0, char::len_utf8);
        let sep = &tail[..sep_len];
        if let Some(o) = &mut out {
            o.push_str(&redacted);
            o.push_str(sep);
        } else if redacted != token {
            let mut o = started(done);
            o.push_str(&redacted);
            o.push_str(sep);
            out = Some(o);
        }
        rest = &tail[sep_len..];
    }
    out.map_or(Cow::Borrowed(s), Cow::Owned)
}

/// Whether [`text`] could change anything in `s`: one pass over its bytes for what every
/// redaction needs (a `:` for a header or a URL password, `eyJ` for a JWT, a key prefix of
/// [`looks_like_api_key`], the word `Bearer` or `Basic` in any case). False for nearly every
/// path and most command lines, which then skip the token-by-token scan.
fn may_hold_secret(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let rest = &bytes[i..];
        match b {
            b':' => true,
            b'e' => rest.starts_with(b"eyJ"),
            b'b' | b'B' => {
                starts_with_ignore_case(rest, b"bearer") || starts_with_ignore_case(rest, b"basic")
            }
            b'A' => {
                rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") || rest.starts_with(b"AIza")
            }
            // The second byte first: most of these letters in a path or a command line are
            // followed by no key prefix's.
            b's' | b'r' | b'g' | b'x' | b'h' | b'n' | b'p' => {
                rest.get(1)
                    .is_some_and(|&b| KEY_PREFIX_SECOND[usize::from(b)])
                    && KEY_PREFIXES
                        .iter()
                        .any(|(p, _)| rest.starts_with(p.as_bytes()))
            }
            _ => false,
        }
    })
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Authorization schemes kept in front of a redacted header value.
const AUTH_SCHEMES: &[&str] = &["Bearer", "Basic", "Digest", "Token", "Negotiate", "NTLM"];

/// When `token` (the start of `rest`) is a secret header's `Name:`, with its value after
/// spaces or glued to the colon: how much of `rest` to keep before `[REDACTED]` (the name, the
/// spaces and an authorization scheme) and where the value starts. `None` for anything else.
fn secret_header(token: &str, rest: &str) -> Option<(usize, usize)> {
    let colon = token.find(':')?;
    let name = &token[..colon];
    if name.len() < 2
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || !is_secret_name(name)
    {
        return None;
    }
    if colon + 1 < token.len() {
        // `Cookie:abc`: the value glued to the name; not `auth://…` or `session:1:2`.
        let value = &token[colon + 1..];
        return (!value.starts_with('/') && !value.contains(':')).then_some((colon + 1, colon + 1));
    }
    let tail = &rest[token.len()..];
    let spaces = tail.len() - tail.trim_start_matches([' ', '\t']).len();
    let after = &tail[spaces..];
    if spaces == 0 || after.is_empty() || after.starts_with(['\n', '\r', '"', '\'']) {
        return None;
    }
    let mut keep = token.len() + spaces;
    if name.len() >= 13
        && name[name.len() - 13..].eq_ignore_ascii_case("authorization")
        && let Some(scheme) = AUTH_SCHEMES.iter().find(|s| {
            after.len() > s.len()
                && after.is_char_boundary(s.len())
                && after[..s.len()].eq_ignore_ascii_case(s)
                && after.as_bytes()[s.len()] == b' '
        })
    {
        keep += scheme.len() + 1;
    }
    Some((keep, token.len() + spaces))
}

/// Whether the last word of `before` is `Bearer` or `Basic` (in any case): the next token is
/// the credential.
fn after_auth_scheme(before: &str) -> bool {
    let prev = before
        .trim_end()
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("");
    prev.eq_ignore_ascii_case("bearer") || prev.eq_ignore_ascii_case("basic")
}

fn redact_token<'a>(token: &'a str, before: &str) -> Cow<'a, str> {
    if after_auth_scheme(before) {
        return Cow::Borrowed(REDACTED);
    }
    if looks_like_api_key(token) {
        return Cow::Borrowed(REDACTED);
    }
    if token.contains("eyJ")
        && let Some(redacted) = redact_jwts(token)
    {
        return Cow::Owned(redacted);
    }
    // A key inside a token: `(sk-…)`, `key:sk-….`, `"sk-…".` — each key-shaped run is replaced.
    if let Some(redacted) = redact_key_runs(token) {
        return Cow::Owned(redacted);
    }
    Cow::Borrowed(token)
}

#[cfg(test)]
mod tests;
