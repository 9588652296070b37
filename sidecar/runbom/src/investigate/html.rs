//! `runbom investigate --html`: one self-contained HTML file (inline CSS, no script, no network
//! fetch) with the trace's waterfall, the drift findings and their chain, and the declared
//! versus observed components; with `--grafana URL`, each finding links to its trace and logs in
//! Grafana Explore.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;

use runbom_event::semconv::{
    AIBOM_COMPONENT_KIND, AIBOM_COMPONENT_REF, AIBOM_DECLARED, FILE_PATH, MCP_METHOD_NAME,
    PROCESS_EXECUTABLE_PATH, RUNBOM_CORRELATION_CONFIDENCE, RUNBOM_CORRELATION_METHOD,
    RUNBOM_STITCHED_ORIGINAL_TRACE_ID, SERVER_ADDRESS, URL_FULL, component_kind, correlation,
};

use super::{
    grafana::Explore,
    model::{Alert, Attr, Span},
    tree::{duration, ordered, timestamp},
};

/// A component the declared BOM lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub bom_ref: String,
    pub name: String,
    pub kind: String,
    /// The service this one is nested in (an MCP server, for its tools).
    pub parent: Option<String>,
}

/// The components of a `CycloneDX` BOM (`metadata.component`, `components`, `services`).
pub fn declared_components(bom: &Value) -> Vec<Declared> {
    let mut out = Vec::new();
    let mut add = |c: &Value, default_kind: &str, parent: Option<&Value>| {
        let prop = |name: &str| {
            c.get("properties")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
                .get("value")?
                .as_str()
                .map(str::to_owned)
        };
        let kind = match (c.get("type").and_then(Value::as_str), default_kind) {
            (Some("machine-learning-model"), _) => component_kind::MODEL.to_owned(),
            (Some("data"), _) => component_kind::DATA.to_owned(),
            (Some("cryptographic-asset"), _) => component_kind::IDENTITY.to_owned(),
            (Some("file"), _) => component_kind::PROCESS.to_owned(),
            (Some("application"), _) if prop("runbom:exec").is_some() => {
                component_kind::PROCESS.to_owned()
            }
            (Some("application"), _) => component_kind::AGENT.to_owned(),
            (_, component_kind::SERVICE) => {
                prop("runbom:kind").unwrap_or_else(|| component_kind::SERVICE.to_owned())
            }
            (Some(t), _) => t.to_owned(),
            (None, d) => d.to_owned(),
        };
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        out.push(Declared {
            bom_ref: c
                .get("bom-ref")
                .and_then(Value::as_str)
                .map_or_else(|| name.clone(), str::to_owned),
            name,
            kind,
            parent: parent
                .and_then(|p| p.get("bom-ref"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    };
    if let Some(c) = bom.pointer("/metadata/component") {
        add(c, component_kind::AGENT, None);
    }
    for c in bom
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(c, "component", None);
    }
    // Services, and the services nested in them (an MCP server's tools).
    let mut services: Vec<(&Value, Option<&Value>)> = bom
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .rev()
        .map(|s| (s, None))
        .collect();
    while let Some((s, parent)) = services.pop() {
        add(s, component_kind::SERVICE, parent);
        let nested = s.get("services").and_then(Value::as_array);
        services.extend(nested.into_iter().flatten().rev().map(|n| (n, Some(s))));
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#5a6475} code,.mono{font-family:ui-monospace,'SFMono-Regular',Menlo,monospace;font-size:12.5px}
.finding{border:1px solid #e5484d;border-left:6px solid #e5484d;background:#fff5f5;border-radius:6px;padding:12px 16px;margin:10px 0}
.finding h3{margin:0 0 6px;font-size:15px;color:#b42318}
.chain{margin:8px 0 0;padding-left:24px} .chain li{margin:2px 0} .chain li.offender{color:#b42318;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff} th,td{padding:3px 8px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:middle}
th{font-weight:600;background:#f2f4f7;position:sticky;top:0}
tr.kernel td.name{color:#0b6bcb} tr.drift{background:#fff1f0} tr.drift td.name{color:#b42318;font-weight:600}
td.bar{width:38%;min-width:260px} .track{position:relative;height:12px;background:#f2f4f7;border-radius:3px}
.fill{position:absolute;top:0;height:12px;min-width:2px;border-radius:3px;background:#7c8db5}
tr.kernel .fill{background:#4fa3e0} tr.drift .fill{background:#e5484d}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:11.5px;margin-left:4px;white-space:nowrap}
.b-drift{background:#e5484d;color:#fff} .b-corr{background:#e8eefc;color:#1d4ed8} .b-stitch{background:#fff4d6;color:#8a5a00}
.b-err{background:#2b2b2b;color:#fff} .b-ref{background:#eef7ee;color:#1e6b34}
.yes{color:#1e6b34;font-weight:600} .no{color:#b42318;font-weight:600} .unused{color:#8a93a3}
";

/// The report for one trace.
#[must_use]
pub fn report(
    spans: &[&Span],
    alerts: &[&Alert],
    declared: Option<&[Declared]>,
    explore: Option<&Explore>,
) -> String {
    let mut h = String::new();
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    let total = end.saturating_sub(start).max(1);
    let tree = ordered(spans);
    let root = tree.first().map(|(_, s)| *s);
    let trace_id = spans.first().map_or("", |s| s.trace_id.as_str());
    let kernel = spans.iter().filter(|s| s.is_kernel()).count();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>runbom investigation {}</title><style>{CSS}</style></head><body>",
        esc(trace_id)
    );
    let _ = writeln!(
        h,
        "<h1>runbom investigation: {}</h1><div class=\"meta\">trace <code>{}</code> · service <b>{}</b> · \
         started {} UTC · {} · {} spans ({} from the kernel) · {} drift finding(s)</div>",
        esc(root.map_or("trace", |r| r.name.as_str())),
        esc(trace_id),
        esc(root.map_or("unknown", |r| r.service())),
        timestamp(start),
        duration(total),
        spans.len(),
        kernel,
        alerts.len()
    );
    h.push_str(&findings(alerts, explore));
    h.push_str(&waterfall(&tree, start, total));
    h.push_str(&bom_table(spans, declared));
    let _ = writeln!(
        h,
        "<p class=\"meta\">Written by runbom {} from exported OTLP data. Self-contained: no network access needed.</p>\n</body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

/// The drift findings, each with its chain (the offending step last, highlighted).
fn findings(alerts: &[&Alert], explore: Option<&Explore>) -> String {
    let mut h = String::from("<h2>Drift findings</h2>\n");
    if alerts.is_empty() {
        h.push_str("<p class=\"meta\">No drift finding in this trace.</p>\n");
    }
    for a in alerts {
        let _ = write!(
            h,
            "<div class=\"finding\" id=\"finding-{}\"><h3>⚠ {} — {}</h3>\
             <div class=\"meta\">{} UTC · severity {} · agent <code>{}</code> · component <code>{}</code> · span <code>{}</code></div>\
             <ol class=\"chain\">",
            esc(&a.span_id),
            esc(&a.kinds.join(", ")),
            esc(&a.reason),
            timestamp(a.time_ns),
            esc(&a.severity),
            esc(a.agent.as_deref().unwrap_or("-")),
            esc(a.component.as_deref().unwrap_or("-")),
            esc(&a.span_id),
        );
        let n = a.chain.len();
        for (i, step) in a.chain.iter().enumerate() {
            let class = if i + 1 == n {
                " class=\"offender\""
            } else {
                ""
            };
            let _ = write!(h, "<li{class}>{}</li>", esc(step));
        }
        h.push_str("</ol>");
        if let Some(e) = explore.filter(|_| !a.trace_id.is_empty()) {
            let _ = write!(
                h,
                "<div class=\"meta\">Grafana: <a class=\"grafana-trace\" href=\"{}\">the trace in Explore</a> · \
                 <a class=\"grafana-logs\" href=\"{}\">its logs</a></div>",
                esc(&e.trace(&a.trace_id, a.time_ns)),
                esc(&e.logs(&a.trace_id, a.time_ns)),
            );
        }
        h.push_str("</div>\n");
    }
    h
}

/// The spans in tree order, each with a bar on the trace's time axis.
fn waterfall(tree: &[(Vec<bool>, &Span)], start: u64, total: u64) -> String {
    let mut h = String::from(
        "<h2>Timeline</h2>\n<table class=\"waterfall\"><thead><tr><th>span</th><th>kind</th>\
         <th>start</th><th>duration</th><th>timeline</th><th>component · correlation</th></tr></thead><tbody>\n",
    );
    for (path, s) in tree {
        let depth = path.len().saturating_sub(1);
        let mut class = Vec::new();
        if s.is_kernel() {
            class.push("kernel");
        }
        if s.drifted() {
            class.push("drift");
        }
        #[allow(clippy::cast_precision_loss)]
        let (left, width) = (
            (s.start_ns.saturating_sub(start)) as f64 / total as f64 * 100.0,
            s.duration_ns() as f64 / total as f64 * 100.0,
        );
        let _ = writeln!(
            h,
            "<tr class=\"{}\" data-span-id=\"{}\"><td class=\"name\" style=\"padding-left:{}px\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"mono\">+{}</td><td class=\"mono\">{}</td>\
             <td class=\"bar\"><div class=\"track\"><div class=\"fill\" style=\"left:{left:.3}%;width:{width:.3}%\"></div></div></td>\
             <td>{}</td></tr>",
            class.join(" "),
            esc(&s.span_id),
            8 + depth * 16,
            esc(&s.name),
            s.kind,
            duration(s.start_ns.saturating_sub(start)),
            duration(s.duration_ns()),
            badges(s),
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

fn badges(s: &Span) -> String {
    let mut badges = String::new();
    if let Some(r) = s.str_attr(AIBOM_COMPONENT_REF) {
        let _ = write!(badges, "<span class=\"badge b-ref\">{}</span>", esc(r));
    }
    if let Some(m) = s
        .str_attr(RUNBOM_CORRELATION_METHOD)
        .filter(|m| *m != correlation::NONE)
    {
        let conf = s.str_attr(RUNBOM_CORRELATION_CONFIDENCE).unwrap_or("");
        let _ = write!(
            badges,
            "<span class=\"badge b-corr\">{} · {}</span>",
            esc(m),
            esc(conf)
        );
    }
    if s.attrs.contains_key(RUNBOM_STITCHED_ORIGINAL_TRACE_ID) {
        let from: Vec<String> = s.links.iter().map(|(t, sp)| format!("{t}/{sp}")).collect();
        let _ = write!(
            badges,
            "<span class=\"badge b-stitch\" title=\"linked to {}\">stitched</span>",
            esc(&from.join(", "))
        );
    }
    if s.error {
        badges.push_str("<span class=\"badge b-err\">error</span>");
    }
    if s.drifted() {
        let _ = write!(
            badges,
            "<span class=\"badge b-drift\">drift: {}</span>",
            esc(&s.drift_kinds().join(", "))
        );
    }
    badges
}

/// Declared components against what the trace used.
fn bom_table(spans: &[&Span], declared: Option<&[Declared]>) -> String {
    // Observed: component refs with their use count, and undeclared uses.
    let mut used: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    let mut undeclared: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for s in spans {
        let kind = s.str_attr(AIBOM_COMPONENT_KIND).unwrap_or("").to_owned();
        let undeclared_use = matches!(s.attr(AIBOM_DECLARED), Some(Attr::Bool(false)));
        match s.str_attr(AIBOM_COMPONENT_REF) {
            Some(r) if undeclared_use => {
                undeclared.entry(r.to_owned()).or_insert((kind, 0)).1 += 1;
            }
            Some(r) => {
                let e = used.entry(r.to_owned()).or_insert((kind, 0, 0));
                e.1 += 1;
                e.2 += usize::from(s.drifted());
            }
            None => {
                for k in s.drift_kinds() {
                    let what = s
                        .str_attr(URL_FULL)
                        .or_else(|| s.str_attr(SERVER_ADDRESS))
                        .or_else(|| s.str_attr(FILE_PATH))
                        // An MCP call: `tools/call write_file`, not the process that made it.
                        .or_else(|| s.str_attr(MCP_METHOD_NAME).map(|_| s.name.as_str()))
                        .or_else(|| s.str_attr(PROCESS_EXECUTABLE_PATH))
                        .unwrap_or(&s.name)
                        .to_owned();
                    undeclared.entry(what.clone()).or_insert((k, 0)).1 += 1;
                }
            }
        }
    }
    let mut h = String::from(
        "<h2>Declared vs observed</h2>\n<table class=\"bom\"><thead><tr><th>component</th><th>kind</th>\
         <th>declared</th><th>used in this trace</th><th>spans with drift</th></tr></thead><tbody>\n",
    );
    // A server is used when one of its tools is (an MCP server through its `tools/call`s).
    for d in declared.unwrap_or(&[]) {
        let (Some(parent), Some(&(_, n, drift))) = (&d.parent, used.get(&d.bom_ref)) else {
            continue;
        };
        let e = used.entry(parent.clone()).or_insert((String::new(), 0, 0));
        e.1 += n;
        e.2 += drift;
    }
    let mut listed = std::collections::BTreeSet::new();
    for d in declared.unwrap_or(&[]) {
        let (n, drift) = used.get(&d.bom_ref).map_or((0, 0), |(_, n, dr)| (*n, *dr));
        listed.insert(d.bom_ref.clone());
        let cls = if n == 0 { "unused" } else { "" };
        let _ = writeln!(
            h,
            "<tr class=\"{cls}\"><td><code>{}</code> {}</td><td>{}</td><td class=\"yes\">yes</td><td>{}</td><td>{}</td></tr>",
            esc(&d.bom_ref),
            esc(&d.name),
            esc(&d.kind),
            if n == 0 {
                "never".to_owned()
            } else {
                format!("{n} span(s)")
            },
            drift
        );
    }
    for (r, (kind, n, drift)) in &used {
        if listed.contains(r) {
            continue;
        }
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"yes\">yes</td><td>{n} span(s)</td><td>{drift}</td></tr>",
            esc(r),
            esc(kind)
        );
    }
    for (what, (kind, n)) in &undeclared {
        let _ = writeln!(
            h,
            "<tr class=\"drift\"><td><code>{}</code></td><td>{}</td><td class=\"no\">no</td><td>{n} span(s)</td><td>{n}</td></tr>",
            esc(what),
            esc(kind)
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn reads_declared_components() {
        let bom: Value =
            serde_json::from_str(include_str!("../../../../examples/agent/bom.cdx.json"))
                .expect("the reference BOM parses");
        let d = declared_components(&bom);
        let kind_of = |r: &str| d.iter().find(|c| c.bom_ref == r).map(|c| c.kind.as_str());
        assert_eq!(kind_of("agent:support-agent"), Some("agent"));
        assert_eq!(kind_of("model:gpt-4o-mini"), Some("model"));
        assert_eq!(kind_of("tool:http_post"), Some("tool"));
        assert_eq!(kind_of("data:customer-db"), Some("data"));
        assert_eq!(kind_of("program:wc"), Some("process"));
        assert_eq!(kind_of("identity:openai-api-key"), Some("identity"));
    }

    #[test]
    fn reads_declared_mcp_servers_and_their_tools() {
        let bom: Value =
            serde_json::from_str(include_str!("../../../../examples/agent/bom-mcp.cdx.json"))
                .expect("the reference agent's MCP BOM parses");
        let d = declared_components(&bom);
        let kind_of = |r: &str| d.iter().find(|c| c.bom_ref == r).map(|c| c.kind.as_str());
        assert_eq!(kind_of("mcp:filesystem"), Some("mcp-server"));
        assert_eq!(kind_of("mcp:helpdesk"), Some("mcp-server"));
        assert_eq!(kind_of("mcp:filesystem:read_text_file"), Some("tool"));
        let tool = d
            .iter()
            .find(|c| c.bom_ref == "mcp:helpdesk:add_ticket_comment");
        assert_eq!(tool.and_then(|t| t.parent.as_deref()), Some("mcp:helpdesk"));
        assert_eq!(kind_of("mcp:helpdesk:add_ticket_comment"), Some("tool"));
        assert_eq!(kind_of("program:node"), Some("process"));
        assert_eq!(kind_of("tool:http_post"), Some("tool"));
    }
}
