//! Links from the HTML report into Grafana Explore (`--grafana URL`): for each drift finding,
//! its trace in the Tempo datasource and the trace's log records (the alert, the kernel events)
//! in the Loki datasource, over the half hour around the finding. The datasource uids default
//! to those of `examples/grafana/provisioning`.
//!
//! The URL is Grafana's Explore state (Grafana 10 and later):
//! `/explore?schemaVersion=1&orgId=1&panes={"runbom":{"datasource":UID,"queries":[...],"range":{...}}}`,
//! percent-encoded.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use serde_json::json;

/// The datasource uids of `examples/grafana/provisioning/datasources/runbom.yaml`.
pub const DEFAULT_TEMPO_UID: &str = "runbom-tempo";
pub const DEFAULT_LOKI_UID: &str = "runbom-loki";

/// How far before and after a finding the Explore range reaches.
const MARGIN_MS: u64 = 15 * 60 * 1000;

/// A Grafana to link to.
#[derive(Clone, Debug)]
pub struct Explore {
    base: String,
    tempo: String,
    loki: String,
}

impl Explore {
    /// `base`: Grafana's root URL (`https://grafana.example.com`, or with a sub-path).
    pub fn new(base: &str, tempo_uid: &str, loki_uid: &str) -> Result<Self> {
        let base = base.trim_end_matches('/');
        let Some(rest) = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
        else {
            bail!("--grafana {base:?}: Grafana's URL starts with http:// or https://");
        };
        if rest.is_empty() || rest.contains(['?', '#', ' ', '"', '<', '>']) {
            bail!("--grafana {base:?}: not a base URL (no query, fragment or spaces)");
        }
        for (flag, uid) in [("--grafana-tempo", tempo_uid), ("--grafana-loki", loki_uid)] {
            if uid.is_empty()
                || !uid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                bail!("{flag} {uid:?}: a datasource uid is letters, digits, - and _");
            }
        }
        Ok(Self {
            base: base.to_owned(),
            tempo: tempo_uid.to_owned(),
            loki: loki_uid.to_owned(),
        })
    }

    /// The trace in the Tempo datasource.
    #[must_use]
    pub fn trace(&self, trace_id: &str, at_ns: u64) -> String {
        self.url(
            &self.tempo,
            &json!({
                "refId": "A",
                "datasource": {"type": "tempo", "uid": self.tempo},
                "queryType": "traceql",
                "query": trace_id,
            }),
            at_ns,
        )
    }

    /// The trace's log records in the Loki datasource (Loki's OTLP ingestion keeps the trace
    /// id as the `trace_id` structured metadata).
    #[must_use]
    pub fn logs(&self, trace_id: &str, at_ns: u64) -> String {
        self.url(
            &self.loki,
            &json!({
                "refId": "A",
                "datasource": {"type": "loki", "uid": self.loki},
                "expr": format!("{{service_name=~\".+\"}} | trace_id=\"{trace_id}\""),
                "queryType": "range",
            }),
            at_ns,
        )
    }

    fn url(&self, uid: &str, query: &serde_json::Value, at_ns: u64) -> String {
        let centre = at_ns / 1_000_000;
        let panes = json!({
            "runbom": {
                "datasource": uid,
                "queries": [query],
                "range": {
                    "from": centre.saturating_sub(MARGIN_MS).to_string(),
                    "to": (centre + MARGIN_MS).to_string(),
                },
            }
        });
        format!(
            "{}/explore?schemaVersion=1&orgId=1&panes={}",
            self.base,
            encode(&panes.to_string())
        )
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_base_url() {
        for bad in ["grafana:3000", "ftp://g", "http://", "http://g/?x=1"] {
            assert!(
                Explore::new(bad, DEFAULT_TEMPO_UID, DEFAULT_LOKI_UID).is_err(),
                "{bad}"
            );
        }
        assert!(Explore::new("http://g", "a b", DEFAULT_LOKI_UID).is_err());
    }

    #[test]
    fn encodes_the_explore_state() {
        let e = Explore::new("https://g.example/sub/", "t", "l").unwrap();
        let url = e.trace("ab", 3_600_000_000_000);
        assert!(
            url.starts_with("https://g.example/sub/explore?schemaVersion=1&orgId=1&panes=%7B"),
            "{url}"
        );
        assert!(!url[url.find("panes=").unwrap()..].contains(['{', '"', ' ']));
        assert_eq!(encode("a b/\"é"), "a%20b%2F%22%C3%A9");
    }
}
