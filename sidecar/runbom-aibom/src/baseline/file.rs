//! The baseline file: JSON, version 1, sorted arrays (diff-friendly), times in RFC 3339.
//!
//! ```json
//! {
//!   "version": 1,
//!   "learning_started": "2026-11-27T06:00:00.000Z",
//!   "learning_until": "2026-11-27T06:10:00.000Z",
//!   "agents": {
//!     "agent:support": {
//!       "destinations": ["api.openai.com:443", "tickets.internal:8080"],
//!       "tool_destinations": { "http_post": ["tickets.internal:8080"] },
//!       "execs": ["/usr/bin/git"],
//!       "file_dirs": ["/data/tickets"],
//!       "models": ["gpt-4o-mini"],
//!       "tool_payload_max": { "http_post": 2048 },
//!       "destination_payload_max": { "api.openai.com:443": 16384 }
//!     }
//!   }
//! }
//! ```
//!
//! Reading is strict (unknown fields, wrong types and unknown versions are errors naming the
//! JSON path), so a hand edit that does not mean what it says is caught.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{BaselineError, Learned, dest_key};
use crate::{
    bom::type_name,
    otlp::{parse_rfc3339, rfc3339},
};

pub(super) const VERSION: u64 = 1;

/// The latest time in milliseconds that [`rfc3339`] can write (its nanoseconds fit in a u64).
pub(super) const MAX_MS: u64 = u64::MAX / 1_000_000;

/// What a file holds.
#[derive(Debug)]
pub(super) struct Loaded {
    pub started_ms: u64,
    pub until_ms: u64,
    pub agents: BTreeMap<String, Learned>,
}

/// A time as the file writes it.
pub(super) fn time(ms: u64) -> String {
    rfc3339(ms.min(MAX_MS) * 1_000_000)
}

/// A period as sentences show it: `2026-11-27T06:00:00Z–06:10:00Z` (the date once when both
/// ends share it).
pub(super) fn period(from_ms: u64, until_ms: u64) -> String {
    let secs = |ms| {
        let t = time(ms);
        format!("{}Z", &t[..19])
    };
    let (from, until) = (secs(from_ms), secs(until_ms));
    if from[..11] == until[..11] {
        format!("{from}–{}", &until[11..])
    } else {
        format!("{from}–{until}")
    }
}

#[derive(Serialize)]
struct Document<'a> {
    version: u64,
    learning_started: String,
    learning_until: String,
    agents: &'a BTreeMap<String, Learned>,
}

/// The file's text (pretty JSON, a newline at the end).
pub(super) fn render(started_ms: u64, until_ms: u64, agents: &BTreeMap<String, Learned>) -> String {
    let doc = Document {
        version: VERSION,
        learning_started: time(started_ms),
        learning_until: time(until_ms),
        agents,
    };
    // Strings, integers and maps with string keys: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads `path`; `None` when it does not exist.
pub(super) fn load(path: &Path) -> Result<Option<Loaded>, BaselineError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(BaselineError::Read { file, error }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader (or
/// a crash) sees the old file or the new one, never half of one.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BaselineError> {
    let err = |error| BaselineError::Write {
        file: path.display().to_string(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("not a file name")))?
        .to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename itself survives a crash once the directory is synced (best effort).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Parses a file's text; `file` names it in errors.
pub(super) fn parse(text: &str, file: &str) -> Result<Loaded, BaselineError> {
    let doc: Value = serde_json::from_str(text).map_err(|error| BaselineError::Json {
        file: file.to_owned(),
        error,
    })?;
    let p = Parser { file };
    let top = p.object(&doc, "$")?;
    // The version first: another version may have other fields.
    match top.get("version") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(p.err(
                "$.version",
                format!("unsupported version {v} (this runbom reads version {VERSION})"),
            ));
        }
        None => return Err(p.err("$", "no `version`")),
    }
    p.known(
        top,
        "$",
        &["version", "learning_started", "learning_until", "agents"],
    )?;
    let started_ms = p.time(top, "learning_started")?;
    let until_ms = p.time(top, "learning_until")?;
    if until_ms < started_ms {
        return Err(p.err("$.learning_until", "before learning_started"));
    }
    let mut agents = BTreeMap::new();
    if let Some(v) = top.get("agents") {
        for (name, v) in p.object(v, "$.agents")? {
            let at = format!("$.agents[{}]", Value::from(name.as_str()));
            agents.insert(name.clone(), p.agent(v, &at)?);
        }
    }
    Ok(Loaded {
        started_ms,
        until_ms,
        agents,
    })
}

struct Parser<'a> {
    file: &'a str,
}

type Res<T> = Result<T, BaselineError>;

impl Parser<'_> {
    fn err(&self, path: &str, reason: impl Into<String>) -> BaselineError {
        BaselineError::Invalid {
            file: self.file.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn object<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.err(path, format!("expected an object, found {}", type_name(v))))
    }

    fn known(&self, obj: &Map<String, Value>, path: &str, fields: &[&str]) -> Res<()> {
        match obj.keys().find(|k| !fields.contains(&k.as_str())) {
            Some(k) => Err(self.err(
                path,
                format!("unknown field {k:?} (known: {})", fields.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn time(&self, obj: &Map<String, Value>, key: &str) -> Res<u64> {
        let path = format!("$.{key}");
        let v = obj
            .get(key)
            .ok_or_else(|| self.err("$", format!("no `{key}`")))?;
        let s = v
            .as_str()
            .ok_or_else(|| self.err(&path, format!("expected a string, found {}", type_name(v))))?;
        parse_rfc3339(s)
            .map(|ns| (ns / 1_000_000).min(MAX_MS))
            .ok_or_else(|| self.err(&path, format!("not an RFC 3339 time: {s:?}")))
    }

    fn strings(&self, v: &Value, path: &str, dest: bool) -> Res<BTreeSet<String>> {
        let Value::Array(items) = v else {
            return Err(self.err(path, format!("expected an array, found {}", type_name(v))));
        };
        let mut out = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let s = item.as_str().ok_or_else(|| {
                self.err(
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", type_name(item)),
                )
            })?;
            out.insert(if dest {
                dest_key(s).into_owned()
            } else {
                s.to_owned()
            });
        }
        Ok(out)
    }

    fn sizes(&self, v: &Value, path: &str, dest: bool) -> Res<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (k, n) in self.object(v, path)? {
            let size = n.as_u64().ok_or_else(|| {
                self.err(
                    &format!("{path}[{}]", Value::from(k.as_str())),
                    format!("expected a byte count, found {}", type_name(n)),
                )
            })?;
            let key = if dest {
                dest_key(k).into_owned()
            } else {
                k.clone()
            };
            let max = out.entry(key).or_insert(0);
            *max = size.max(*max);
        }
        Ok(out)
    }

    fn agent(&self, v: &Value, path: &str) -> Res<Learned> {
        let obj = self.object(v, path)?;
        self.known(
            obj,
            path,
            &[
                "destinations",
                "tool_destinations",
                "execs",
                "file_dirs",
                "models",
                "tool_payload_max",
                "destination_payload_max",
            ],
        )?;
        let mut l = Learned::default();
        for (key, v) in obj {
            let at = format!("{path}.{key}");
            match key.as_str() {
                "destinations" => l.destinations = self.strings(v, &at, true)?,
                "tool_destinations" => {
                    for (tool, dests) in self.object(v, &at)? {
                        let at = format!("{at}[{}]", Value::from(tool.as_str()));
                        l.tool_destinations
                            .insert(tool.clone(), self.strings(dests, &at, true)?);
                    }
                }
                "execs" => l.execs = self.strings(v, &at, false)?,
                "file_dirs" => l.file_dirs = self.strings(v, &at, false)?,
                "models" => l.models = self.strings(v, &at, false)?,
                "tool_payload_max" => l.tool_payload_max = self.sizes(v, &at, false)?,
                _ => l.destination_payload_max = self.sizes(v, &at, true)?,
            }
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "baseline.json") {
            Ok(l) => panic!("parsed: {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = r#""version": 1, "learning_started": "2026-11-27T06:00:00Z",
        "learning_until": "2026-11-27T06:10:00Z""#;

    #[test]
    fn errors_name_the_json_path() {
        let agents = |a: &str| format!(r#"{{ {HEAD}, "agents": {{ "agent:support": {a} }} }}"#);
        assert_eq!(
            err(&agents(r#"{ "destinations": ["a:1", "b:2", 3] }"#)),
            r#"baseline.json: $.agents["agent:support"].destinations[2]: expected a string, found a number"#
        );
        assert_eq!(
            err(&agents(
                r#"{ "tool_destinations": { "http_post": "a:1" } }"#
            )),
            r#"baseline.json: $.agents["agent:support"].tool_destinations["http_post"]: expected an array, found a string"#
        );
        assert_eq!(
            err(&agents(r#"{ "tool_payload_max": { "http_post": -1 } }"#)),
            r#"baseline.json: $.agents["agent:support"].tool_payload_max["http_post"]: expected a byte count, found a number"#
        );
        assert!(err(&agents(r#"{ "destination": [] }"#)).starts_with(
            r#"baseline.json: $.agents["agent:support"]: unknown field "destination""#
        ));
        assert_eq!(
            err(&agents("[]")),
            r#"baseline.json: $.agents["agent:support"]: expected an object, found an array"#
        );
        assert_eq!(
            err(
                r#"{ "version": 1, "learning_started": "2026-11-27T06:00:00Z",
                "learning_until": "yesterday" }"#
            ),
            r#"baseline.json: $.learning_until: not an RFC 3339 time: "yesterday""#
        );
        assert_eq!(
            err(r#"{ "version": 1, "learning_started": "2026-11-27T06:00:00Z" }"#),
            "baseline.json: $: no `learning_until`"
        );
        assert_eq!(
            err(
                r#"{ "version": 1, "learning_started": "2026-11-27T06:00:00Z",
                "learning_until": "2026-11-27T05:00:00Z" }"#
            ),
            "baseline.json: $.learning_until: before learning_started"
        );
        assert!(err("{ \"version\": 1,").starts_with("baseline.json: not JSON: "));
    }

    #[test]
    fn unknown_version_is_rejected() {
        assert_eq!(
            err(r#"{ "version": 2, "whatever": true }"#),
            "baseline.json: $.version: unsupported version 2 (this runbom reads version 1)"
        );
        assert_eq!(
            err(r#"{ "version": "1" }"#),
            r#"baseline.json: $.version: unsupported version "1" (this runbom reads version 1)"#
        );
        assert_eq!(err("{}"), "baseline.json: $: no `version`");
    }

    #[test]
    fn render_then_parse() {
        let mut l = Learned::default();
        l.destinations.insert("b.example:443".into());
        l.destinations.insert("a.example:443".into());
        l.tool_destinations
            .entry("http_post".into())
            .or_default()
            .insert("a.example:443".into());
        l.file_dirs.insert("/data/tickets".into());
        l.tool_payload_max.insert("http_post".into(), 2048);
        let agents = BTreeMap::from([("agent:support".to_owned(), l)]);
        let text = render(1_000, 601_000, &agents);
        assert!(text.contains("\"learning_started\": \"1970-01-01T00:00:01.000Z\""));
        // Sorted, one entry per line.
        let a = text.find("\"a.example:443\"").unwrap_or(usize::MAX);
        let b = text.find("\"b.example:443\"").unwrap_or(0);
        assert!(a < b, "{text}");
        let back = parse(&text, "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((back.started_ms, back.until_ms), (1_000, 601_000));
        assert_eq!(back.agents, agents);
    }

    #[test]
    fn hand_written_destinations_are_normalised() {
        let text = format!(
            r#"{{ {HEAD}, "agents": {{ "a": {{ "destinations": ["https://u:p@API.Example:443/x?k=v"] }} }} }}"#
        );
        let l = parse(&text, "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            l.agents["a"].destinations,
            BTreeSet::from(["api.example:443".to_owned()])
        );
    }

    #[test]
    fn periods_read_well() {
        let six = 1_795_737_600_000 + 6 * 3_600_000;
        assert_eq!(period(six, six + 600_000), "2026-11-27T06:00:00Z–06:10:00Z");
        assert_eq!(
            period(six, six + 86_400_000),
            "2026-11-27T06:00:00Z–2026-11-28T06:00:00Z"
        );
    }
}
