//! The `bearertokenauth` extension (the Collector's, server side): a receiver whose `auth`
//! names it accepts a request only when its `Authorization` header (or `header`) is
//! `<scheme> <token>` for one of the configured tokens.
//!
//! The token comes from the configuration (`token`, `tokens`: write `${env:VAR}` to take it
//! from the environment) or from a file (`filename`), re-read when the file changes, as the
//! Collector does. Tokens are compared in constant time and never logged: the section's
//! `Debug` and every error leave them out.

use std::{
    fmt,
    fs::File,
    io::Read as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::ExtensionError;
use crate::config::section::{ConfigError, Section};

/// The largest token file read: a token is a line, not a document.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;
/// How often a token file is looked at for changes, at most.
const RECHECK: Duration = Duration::from_secs(1);

/// A token as configured: shown as `<redacted>` in `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The Collector's `bearertokenauth` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerTokenAuthConfig {
    /// The header carrying the token (default `Authorization`; gRPC metadata is lower case).
    #[serde(default = "default_header")]
    pub header: String,
    /// What precedes the token in the header (default `Bearer`; empty: the token alone).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    pub token: Option<Secret>,
    /// Several tokens accepted at once (while clients move from one to the next).
    pub tokens: Option<Vec<Secret>>,
    /// A file holding the token (surrounding white space ignored), re-read when it changes.
    pub filename: Option<PathBuf>,
}

fn default_header() -> String {
    "Authorization".into()
}

fn default_scheme() -> String {
    "Bearer".into()
}

impl BearerTokenAuthConfig {
    /// Values the YAML types allow but the extension does not.
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        let sources = [
            self.token.is_some(),
            self.tokens.is_some(),
            self.filename.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => return Err(at.error("set one of `token`, `tokens` or `filename`")),
            1 => {}
            _ => {
                return Err(at.error(
                    "set only one of `token`, `tokens` or `filename` (which one wins would be a \
                     guess)",
                ));
            }
        }
        let given = self.token.iter().chain(self.tokens.iter().flatten());
        for (i, Secret(t)) in given.enumerate() {
            if t.trim().is_empty() {
                let field = if self.token.is_some() {
                    "token".to_owned()
                } else {
                    format!("tokens[{i}]")
                };
                return Err(at.at(&field).error("is empty: every client would pass"));
            }
        }
        if self.tokens.as_ref().is_some_and(Vec::is_empty) {
            return Err(at.at("tokens").error("lists no token"));
        }
        if self.header.is_empty() || !self.header.bytes().all(is_header_char) {
            return Err(at
                .at("header")
                .error(format!("`{}` is not an HTTP header name", self.header)));
        }
        if self.scheme.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(at.at("scheme").error("must be one word (e.g. `Bearer`)"));
        }
        Ok(())
    }

    /// The running authenticator (reading `filename` once now, so that a missing file stops
    /// runbom at start rather than refusing every client).
    pub fn build(&self, name: &str) -> Result<BearerTokenAuth, ExtensionError> {
        let source = match &self.filename {
            Some(path) => {
                let (token, modified) = read_token_file(name, path)?;
                TokenSource::File {
                    path: path.clone(),
                    state: Mutex::new(FileToken {
                        checked: Instant::now(),
                        modified,
                        token,
                    }),
                }
            }
            None => TokenSource::Fixed(
                self.token
                    .iter()
                    .chain(self.tokens.iter().flatten())
                    .map(|Secret(t)| t.trim().as_bytes().to_vec())
                    .collect(),
            ),
        };
        Ok(BearerTokenAuth {
            name: name.to_owned(),
            header: self.header.to_ascii_lowercase(),
            scheme: self.scheme.clone(),
            source,
        })
    }
}

fn is_header_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A running `bearertokenauth`: answers whether a request's header value is acceptable.
pub struct BearerTokenAuth {
    name: String,
    header: String,
    scheme: String,
    source: TokenSource,
}

enum TokenSource {
    Fixed(Vec<Vec<u8>>),
    File {
        path: PathBuf,
        state: Mutex<FileToken>,
    },
}

struct FileToken {
    checked: Instant,
    modified: Option<SystemTime>,
    token: Vec<u8>,
}

impl fmt::Debug for BearerTokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokenAuth")
            .field("name", &self.name)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl BearerTokenAuth {
    /// The header (lower case) the token is read from.
    #[must_use]
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Whether `value`, the request's header, is `<scheme> <token>` for a configured token.
    /// Every token is compared, in constant time, whatever matched first.
    #[must_use]
    pub fn accepts(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else { return false };
        let token = if self.scheme.is_empty() {
            value
        } else {
            match value.split_at_checked(self.scheme.len()) {
                // The scheme is case-insensitive (RFC 9110 §11.1), the token is not.
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case(self.scheme.as_bytes()) => {
                    match rest.strip_prefix(b" ") {
                        Some(token) => token,
                        None => return false,
                    }
                }
                _ => return false,
            }
        };
        match &self.source {
            TokenSource::Fixed(tokens) => tokens
                .iter()
                .fold(subtle::Choice::from(0), |ok, t| ok | t.ct_eq(token))
                .into(),
            TokenSource::File { path, state } => {
                let mut state = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.refresh(path, &mut state);
                state.token.ct_eq(token).into()
            }
        }
    }

    /// Re-reads the token file when it changed (looked at once a second at most). A file that
    /// no longer reads keeps the last token, with a warning.
    fn refresh(&self, path: &Path, state: &mut FileToken) {
        if state.checked.elapsed() < RECHECK {
            return;
        }
        state.checked = Instant::now();
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified == state.modified {
            return;
        }
        match read_token_file(&self.name, path) {
            Ok((token, modified)) => {
                tracing::info!(extension = %self.name, file = %path.display(), "token file re-read");
                state.token = token;
                state.modified = modified;
            }
            Err(e) => tracing::warn!("{e}; keeping the token read before"),
        }
    }
}

/// Reads a token file: a regular file (never a FIFO or a device, which could block or never
/// end), at most 64 KiB, not empty once trimmed.
fn read_token_file(
    name: &str,
    path: &Path,
) -> Result<(Vec<u8>, Option<SystemTime>), ExtensionError> {
    let fail = |reason: String| ExtensionError::TokenFile {
        extension: name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(fail(format!(
            "larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token"
        )));
    }
    let mut text = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    let token = text.trim_ascii().to_vec();
    if token.is_empty() {
        return Err(fail("is empty".into()));
    }
    Ok((token, meta.modified().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(yaml: &str) -> BearerTokenAuth {
        let config: BearerTokenAuthConfig =
            serde_yaml::from_str(yaml).expect("a bearertokenauth section");
        config
            .check(&Section::new("c.yaml", "extensions.bearertokenauth"))
            .expect("a valid section");
        config.build("bearertokenauth").expect("it builds")
    }

    #[test]
    fn accepts_only_the_scheme_and_a_configured_token() {
        let a = auth("tokens: [s3cret, n3xt]");
        for (header, want) in [
            (Some("Bearer s3cret"), true),
            (Some("bearer n3xt"), true),
            (Some("Bearer s3cre"), false),
            (Some("Bearer s3cret "), false),
            (Some("Bearers3cret"), false),
            (Some("Basic s3cret"), false),
            (Some("s3cret"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(a.accepts(header.map(str::as_bytes)), want, "{header:?}");
        }
        let bare = auth("token: s3cret\nscheme: ''\nheader: X-Api-Key");
        assert_eq!(bare.header(), "x-api-key");
        assert!(bare.accepts(Some(b"s3cret")));
        assert!(!bare.accepts(Some(b"Bearer s3cret")));
    }

    #[test]
    fn a_token_file_is_read_and_re_read_when_it_changes() {
        let dir = runbom_testkit::TempDir::new("bearer-file");
        let path = dir.write("token", "first\n");
        let a = auth(&format!("filename: {}", path.display()));
        assert!(a.accepts(Some(b"Bearer first")));
        std::fs::write(&path, "second-token\n").expect("rewrite the token");
        // Changed a moment later: a new modification time, seen at the next check.
        let later = SystemTime::now() + Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("set the file's modification time");
        if let TokenSource::File { state, .. } = &a.source {
            state.lock().expect("not poisoned").checked = Instant::now()
                .checked_sub(RECHECK)
                .expect("the monotonic clock is past a second");
        }
        assert!(a.accepts(Some(b"Bearer second-token")));
        assert!(!a.accepts(Some(b"Bearer first")));
    }

    #[test]
    fn token_files_that_are_not_regular_files_are_refused() {
        let dir = runbom_testkit::TempDir::new("bearer-fifo");
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
        for (path, want) in [
            (fifo.as_path(), "not a regular file"),
            (Path::new("/dev/zero"), "not a regular file"),
            (Path::new("/nonexistent/token"), "No such file"),
        ] {
            let e = read_token_file("bearertokenauth", path)
                .expect_err("refused")
                .to_string();
            assert!(e.contains(want) && e.contains("bearertokenauth"), "{e}");
        }
        let empty = dir.write("empty", " \n");
        let e = read_token_file("b", &empty)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn the_section_never_shows_its_tokens() {
        let config: BearerTokenAuthConfig =
            serde_yaml::from_str("tokens: [s3cret]").expect("a section");
        let shown = format!("{config:?} {:?}", config.build("b").expect("builds"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn sections_without_one_clear_token_are_refused() {
        for (yaml, want) in [
            (
                "scheme: Bearer",
                "set one of `token`, `tokens` or `filename`",
            ),
            ("token: a\nfilename: /x", "set only one of"),
            (
                "token: '  '",
                "`extensions.bearertokenauth.token`: is empty",
            ),
            ("tokens: [a, '']", "tokens[1]`: is empty"),
            ("tokens: []", "lists no token"),
            ("token: a\nheader: 'X Key'", "not an HTTP header name"),
            ("token: a\nscheme: 'Bearer x'", "must be one word"),
        ] {
            let config: BearerTokenAuthConfig = serde_yaml::from_str(yaml).expect("a section");
            let e = config
                .check(&Section::new("c.yaml", "extensions.bearertokenauth"))
                .expect_err("refused")
                .0;
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
