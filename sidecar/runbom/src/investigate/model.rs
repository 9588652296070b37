//! What `runbom investigate` reads: spans and drift alerts out of OTLP/JSON, whatever wrote it
//! (runbom's `file` exporter — one export request per line —, a single OTLP/JSON document, or
//! a trace fetched from Tempo or Jaeger).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::{self, Write as _},
    path::{Path, PathBuf},
};

use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_CHAIN, AIBOM_COMPONENT_REF, AIBOM_DRIFT, AIBOM_DRIFT_KINDS,
    AIBOM_DRIFT_REASON, EVENT_NAME, RUNBOM_EVENT, RUNBOM_INSTANCE_ID, SERVICE_NAME, event, scope,
};
use runbom_otlp::json;
use serde_json::Value;

/// An attribute value, flattened for display and matching.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Attr>),
    Other(String),
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) | Self::Other(s) => f.write_str(s),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::List(items) => {
                let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

impl Attr {
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The strings of a list (or the one string).
    #[must_use]
    pub fn strings(&self) -> Vec<String> {
        match self {
            Self::List(items) => items.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

pub type Attrs = BTreeMap<String, Attr>;

/// One span, as read. Field names follow OTLP's (`span_id`, …).
#[allow(clippy::struct_field_names)]
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub status_message: String,
    pub attrs: Attrs,
    pub resource: Attrs,
    pub scope: String,
    pub links: Vec<(String, String)>,
}

impl Span {
    #[must_use]
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.get(key)
    }

    #[must_use]
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Attr::as_str)
    }

    /// A kernel event's span (`runbom.kernel` scope).
    #[must_use]
    pub fn is_kernel(&self) -> bool {
        self.scope == scope::KERNEL || self.attrs.contains_key(RUNBOM_EVENT)
    }

    #[must_use]
    pub fn service(&self) -> &str {
        self.resource
            .get(SERVICE_NAME)
            .and_then(Attr::as_str)
            .unwrap_or("unknown")
    }

    #[must_use]
    pub fn drift_kinds(&self) -> Vec<String> {
        self.attr(AIBOM_DRIFT_KINDS)
            .map(Attr::strings)
            .unwrap_or_default()
    }

    #[must_use]
    pub fn drifted(&self) -> bool {
        matches!(self.attr(AIBOM_DRIFT), Some(Attr::Bool(true))) || !self.drift_kinds().is_empty()
    }

    #[must_use]
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// One `aibom.drift` log record.
#[derive(Clone, Debug)]
pub struct Alert {
    pub time_ns: u64,
    pub trace_id: String,
    pub span_id: String,
    pub severity: String,
    pub kinds: Vec<String>,
    pub reason: String,
    pub component: Option<String>,
    pub agent: Option<String>,
    pub service: String,
    pub chain: Vec<String>,
    pub body: String,
}

/// Everything read.
#[derive(Debug, Default)]
pub struct Data {
    pub spans: Vec<Span>,
    pub alerts: Vec<Alert>,
    /// Other log records (kernel events as logs, application logs): counted only.
    pub other_logs: usize,
    /// `aibom.drift` records without runbom's mark (`runbom.instance.id`, contract §6): not
    /// findings runbom emitted, so not shown; counted.
    pub unmarked_alerts: usize,
}

/// Why the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not OTLP/JSON: {reason}", .path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: no traces.jsonl or logs.jsonl in this directory (is it a runbom file exporter's path?)", .0.display())]
    EmptyDir(PathBuf),
}

impl From<json::FileError> for LoadError {
    fn from(error: json::FileError) -> Self {
        match error {
            json::FileError::Io { path, source } => Self::Io { path, source },
            json::FileError::Syntax { path, line, source } => Self::Malformed {
                path,
                line,
                reason: source.to_string(),
            },
        }
    }
}

impl Data {
    /// Reads files and directories (a directory: its `traces.jsonl` and `logs.jsonl`, each after
    /// its rotated backups).
    pub fn load(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let mut data = Self::default();
        for path in paths {
            if path.is_dir() {
                // Each signal's rotated backups, oldest first, then its live file.
                let mut files = Vec::new();
                for stem in ["traces", "logs"] {
                    files.extend(json::signal_files(path, stem).map_err(|source| {
                        LoadError::Io {
                            path: path.clone(),
                            source,
                        }
                    })?);
                }
                if files.is_empty() {
                    return Err(LoadError::EmptyDir(path.clone()));
                }
                for f in files {
                    data.load_file(&f)?;
                }
            } else {
                data.load_file(path)?;
            }
        }
        Ok(data)
    }

    fn load_file(&mut self, path: &Path) -> Result<(), LoadError> {
        // One JSON document (pretty-printed or not), or one request per line.
        json::for_each_document(path, json::Layout::DocumentOrLines, |doc| {
            self.add_document(&doc.value)
                .map_err(|reason| LoadError::Malformed {
                    path: path.to_owned(),
                    line: doc.line,
                    reason,
                })
        })
    }

    /// Adds an export request, or what Tempo (`trace`, `batches`) and Jaeger (`result`) wrap
    /// one in.
    pub fn add_document(&mut self, doc: &Value) -> Result<(), String> {
        let Some(obj) = doc.as_object() else {
            return Err("expected a JSON object".into());
        };
        for wrapper in ["trace", "result"] {
            if let Some(inner) = obj.get(wrapper).filter(|v| v.is_object()) {
                return self.add_document(inner);
            }
        }
        let mut known = false;
        for key in ["resourceSpans", "resource_spans", "batches"] {
            if let Some(v) = obj.get(key) {
                known = true;
                self.add_resource_spans(v)?;
            }
        }
        for key in ["resourceLogs", "resource_logs"] {
            if let Some(v) = obj.get(key) {
                known = true;
                self.add_resource_logs(v)?;
            }
        }
        if !known && !obj.contains_key("resourceMetrics") {
            return Err("no resourceSpans or resourceLogs".into());
        }
        Ok(())
    }

    fn add_resource_spans(&mut self, v: &Value) -> Result<(), String> {
        for (ri, rs) in array(v, "resourceSpans")?.iter().enumerate() {
            let resource = attrs(rs.pointer("/resource/attributes"));
            let scopes = rs
                .get("scopeSpans")
                .or_else(|| rs.get("scope_spans"))
                .or_else(|| rs.get("instrumentationLibrarySpans"));
            for ss in scopes
                .map(|s| array(s, "scopeSpans"))
                .transpose()?
                .unwrap_or(&[])
            {
                let scope = ss
                    .pointer("/scope/name")
                    .or_else(|| ss.pointer("/instrumentationLibrary/name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                for (si, s) in ss
                    .get("spans")
                    .map(|s| array(s, "spans"))
                    .transpose()?
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                {
                    let span = span(s, &resource, &scope)
                        .map_err(|e| format!("resourceSpans[{ri}] span {si}: {e}"))?;
                    self.spans.push(span);
                }
            }
        }
        Ok(())
    }

    fn add_resource_logs(&mut self, v: &Value) -> Result<(), String> {
        for rl in array(v, "resourceLogs")? {
            let resource = attrs(rl.pointer("/resource/attributes"));
            let scopes = rl.get("scopeLogs").or_else(|| rl.get("scope_logs"));
            for sl in scopes
                .map(|s| array(s, "scopeLogs"))
                .transpose()?
                .unwrap_or(&[])
            {
                for r in sl
                    .get("logRecords")
                    .map(|l| array(l, "logRecords"))
                    .transpose()?
                    .unwrap_or(&[])
                {
                    let a = attrs(r.get("attributes"));
                    let event = r
                        .get("eventName")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .or_else(|| a.get(EVENT_NAME).and_then(Attr::as_str));
                    if event == Some(event::AIBOM_DRIFT) {
                        // Contract §6: only what runbom emitted is a finding. (A client's
                        // record cannot carry this event name past runbom's receivers.)
                        if a.get(RUNBOM_INSTANCE_ID).and_then(Attr::as_str).is_some() {
                            self.alerts.push(alert(r, &a, &resource));
                        } else {
                            self.unmarked_alerts += 1;
                        }
                    } else {
                        self.other_logs += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Trace ids with their span count and earliest start, earliest first.
    #[must_use]
    pub fn traces(&self) -> Vec<TraceSummary> {
        let mut by_trace: HashMap<&str, TraceSummary> = HashMap::new();
        for s in &self.spans {
            let t = by_trace.entry(&s.trace_id).or_insert_with(|| TraceSummary {
                trace_id: s.trace_id.clone(),
                root_name: None,
                service: s.service().to_owned(),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                spans: 0,
                kernel_spans: 0,
                drifted: 0,
            });
            t.spans += 1;
            t.kernel_spans += usize::from(s.is_kernel());
            t.drifted += usize::from(s.drifted());
            t.start_ns = t.start_ns.min(s.start_ns);
            t.end_ns = t.end_ns.max(s.end_ns);
            if s.parent_span_id.is_empty() && !s.is_kernel() {
                t.root_name = Some(s.name.clone());
                s.service().clone_into(&mut t.service);
            }
        }
        let mut out: Vec<TraceSummary> = by_trace.into_values().collect();
        out.sort_by(|a, b| (a.start_ns, &a.trace_id).cmp(&(b.start_ns, &b.trace_id)));
        out
    }

    /// The spans of one trace.
    #[must_use]
    pub fn trace(&self, trace_id: &str) -> Vec<&Span> {
        let want = trace_id.to_ascii_lowercase();
        self.spans.iter().filter(|s| s.trace_id == want).collect()
    }
}

#[derive(Clone, Debug)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_name: Option<String>,
    pub service: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub spans: usize,
    pub kernel_spans: usize,
    pub drifted: usize,
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], String> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("{what} is not an array"))
}

fn span(s: &Value, resource: &Attrs, scope: &str) -> Result<Span, String> {
    let id = |key: &str, alt: &str| -> Result<String, String> {
        let raw = s
            .get(key)
            .or_else(|| s.get(alt))
            .and_then(Value::as_str)
            .unwrap_or_default();
        normalize_id(raw).ok_or_else(|| format!("{key} {raw:?} is neither hex nor base64"))
    };
    let trace_id = id("traceId", "trace_id")?;
    if trace_id.is_empty() {
        return Err("no traceId".into());
    }
    let status = s.get("status");
    let code = status.and_then(|st| st.get("code"));
    let error = matches!(code, Some(Value::Number(n)) if n.as_i64() == Some(2))
        || code.and_then(Value::as_str) == Some("STATUS_CODE_ERROR");
    Ok(Span {
        trace_id,
        span_id: id("spanId", "span_id")?,
        parent_span_id: id("parentSpanId", "parent_span_id")?,
        name: s
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        kind: span_kind(s.get("kind")),
        start_ns: nanos(s.get("startTimeUnixNano")),
        end_ns: nanos(s.get("endTimeUnixNano")),
        error,
        status_message: status
            .and_then(|st| st.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        attrs: attrs(s.get("attributes")),
        resource: resource.clone(),
        scope: scope.to_owned(),
        links: s
            .get("links")
            .and_then(Value::as_array)
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| {
                        let t = normalize_id(l.get("traceId")?.as_str()?)?;
                        let sp = normalize_id(l.get("spanId")?.as_str()?)?;
                        Some((t, sp))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn alert(r: &Value, a: &Attrs, resource: &Attrs) -> Alert {
    let s = |key: &str| a.get(key).map(ToString::to_string);
    let id = |key: &str| {
        r.get(key)
            .and_then(Value::as_str)
            .and_then(normalize_id)
            .unwrap_or_default()
    };
    Alert {
        time_ns: nanos(r.get("timeUnixNano")).max(nanos(r.get("observedTimeUnixNano"))),
        trace_id: id("traceId"),
        span_id: id("spanId"),
        severity: r
            .get("severityText")
            .and_then(Value::as_str)
            .unwrap_or("WARN")
            .to_owned(),
        kinds: a
            .get(AIBOM_DRIFT_KINDS)
            .map(Attr::strings)
            .unwrap_or_default(),
        reason: s(AIBOM_DRIFT_REASON).unwrap_or_default(),
        component: s(AIBOM_COMPONENT_REF),
        agent: s(AIBOM_AGENT_REF),
        service: s(SERVICE_NAME)
            .or_else(|| resource.get(SERVICE_NAME).map(ToString::to_string))
            .unwrap_or_else(|| "unknown".into()),
        chain: a.get(AIBOM_CHAIN).map(Attr::strings).unwrap_or_default(),
        body: r
            .pointer("/body/stringValue")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// OTLP/JSON ids are hex; some tools write the protobuf JSON mapping's base64. Lower-case hex
/// either way; `None` when it is neither.
fn normalize_id(raw: &str) -> Option<String> {
    if raw.is_empty() {
        return Some(String::new());
    }
    if raw.len().is_multiple_of(2) && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(raw.to_ascii_lowercase());
    }
    let bytes = base64_decode(raw)?;
    Some(bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

fn nanos(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn span_kind(v: Option<&Value>) -> &'static str {
    let n = match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.trim_start_matches("SPAN_KIND_") {
            "INTERNAL" => 1,
            "SERVER" => 2,
            "CLIENT" => 3,
            "PRODUCER" => 4,
            "CONSUMER" => 5,
            _ => 0,
        },
        _ => 0,
    };
    match n {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn attrs(v: Option<&Value>) -> Attrs {
    v.and_then(Value::as_array)
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| {
                    let key = kv.get("key")?.as_str()?.to_owned();
                    Some((key, any_value(kv.get("value")?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn any_value(v: &Value) -> Attr {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return Attr::Str(s.to_owned());
    }
    if let Some(i) = v.get("intValue") {
        let n = match i {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        if let Some(n) = n {
            return Attr::Int(n);
        }
    }
    if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
        return Attr::Bool(b);
    }
    if let Some(x) = v.get("doubleValue").and_then(Value::as_f64) {
        return Attr::Float(x);
    }
    if let Some(values) = v.pointer("/arrayValue/values").and_then(Value::as_array) {
        return Attr::List(values.iter().map(any_value).collect());
    }
    if v.get("arrayValue").is_some() {
        return Attr::List(Vec::new());
    }
    Attr::Other(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_whatever_the_encoding() {
        assert_eq!(normalize_id("ABCDEF01").as_deref(), Some("abcdef01"));
        // base64 of 0x01 0x02 0x03 0x04 0x05 0x06 0x07 0x08
        assert_eq!(
            normalize_id("AQIDBAUGBwg=").as_deref(),
            Some("0102030405060708")
        );
        assert_eq!(normalize_id("not an id!"), None);
    }

    #[test]
    fn reads_tempo_and_jaeger_wrappers() {
        let span = serde_json::json!({
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": "b7ad6b7169203331",
            "name": "GET",
            "kind": 3,
            "startTimeUnixNano": "1000",
            "endTimeUnixNano": "3000",
            "attributes": [{"key": "aibom.drift.kinds", "value": {"arrayValue": {"values": [{"stringValue": "undeclared_endpoint"}]}}}]
        });
        let rs = serde_json::json!([{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]}, "scopeSpans": [{"spans": [span]}]}]);
        for doc in [
            serde_json::json!({"trace": {"resourceSpans": rs}}),
            serde_json::json!({"batches": rs}),
            serde_json::json!({"result": {"resourceSpans": rs}}),
        ] {
            let mut d = Data::default();
            d.add_document(&doc).unwrap();
            assert_eq!(d.spans.len(), 1, "{doc}");
            let s = &d.spans[0];
            assert_eq!(s.kind, "CLIENT");
            assert_eq!(s.duration_ns(), 2000);
            assert_eq!(s.service(), "a");
            assert!(s.drifted());
        }
        let mut d = Data::default();
        assert!(d.add_document(&serde_json::json!({"x": 1})).is_err());
    }
}
