//! The terminal views: a trace as an indented tree, drift alerts with their chains, and the
//! list of traces.

use std::{collections::HashMap, fmt::Write as _};

use runbom_event::semconv::{
    AIBOM_COMPONENT_REF, RUNBOM_CORRELATION_CONFIDENCE, RUNBOM_CORRELATION_METHOD,
    RUNBOM_STITCHED_ORIGINAL_TRACE_ID, correlation,
};

use super::model::{Alert, Span, TraceSummary};

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn red(self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn yellow(self, t: &str) -> String {
        self.paint("33", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn cyan(self, t: &str) -> String {
        self.paint("36", t)
    }
}

/// `1.234s`, `12.3ms`, `45µs`.
#[must_use]
pub fn duration(ns: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let x = ns as f64;
    if ns >= 1_000_000_000 {
        format!("{:.3}s", x / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.1}ms", x / 1e6)
    } else {
        format!("{:.0}µs", x / 1e3)
    }
}

/// UTC wall-clock time of Unix nanoseconds, `2026-11-27 04:10:01.123`: the alerts' RFC 3339
/// time, as people read it.
#[must_use]
pub fn timestamp(ns: u64) -> String {
    let t = runbom_aibom::otlp::rfc3339(ns);
    t.trim_end_matches('Z').replacen('T', " ", 1)
}

/// The spans of a trace in tree order: `(depth, span, is_last_child_at_each_level)`.
#[must_use]
pub fn ordered<'a>(spans: &[&'a Span]) -> Vec<(Vec<bool>, &'a Span)> {
    let ids: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    let mut roots = Vec::new();
    for s in spans {
        if !s.parent_span_id.is_empty() && ids.contains_key(s.parent_span_id.as_str()) {
            children.entry(&s.parent_span_id).or_default().push(s);
        } else {
            roots.push(*s);
        }
    }
    let by_start = |v: &mut Vec<&Span>| v.sort_by_key(|s| (s.start_ns, s.is_kernel(), s.end_ns));
    by_start(&mut roots);
    for v in children.values_mut() {
        by_start(v);
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(Vec<bool>, &Span)> = roots
        .iter()
        .rev()
        .enumerate()
        .map(|(i, s)| (vec![i == 0], *s))
        .collect();
    while let Some((path, span)) = stack.pop() {
        if let Some(kids) = children.get(span.span_id.as_str()) {
            for (i, kid) in kids.iter().rev().enumerate() {
                let mut p = path.clone();
                p.push(i == 0);
                stack.push((p, kid));
            }
        }
        out.push((path, span));
    }
    out
}

/// One trace as an indented tree.
#[must_use]
pub fn render_trace(spans: &[&Span], alerts: &[&Alert], style: Style) -> String {
    let mut out = String::new();
    let Some(start) = spans.iter().map(|s| s.start_ns).min() else {
        return out;
    };
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    let kernel = spans.iter().filter(|s| s.is_kernel()).count();
    let drifted = spans.iter().filter(|s| s.drifted()).count();
    let root = ordered(spans).into_iter().next().map(|(_, s)| s);
    let _ = writeln!(
        out,
        "{} {}  {}  {} spans ({} kernel), {}  started {} UTC, {}",
        style.bold("trace"),
        spans[0].trace_id,
        style.bold(root.map_or("", |r| r.service())),
        spans.len(),
        kernel,
        if drifted > 0 {
            style.red(&format!("{drifted} with drift"))
        } else {
            "no drift".into()
        },
        timestamp(start),
        duration(end - start),
    );
    for (path, s) in ordered(spans) {
        let mut guide = String::new();
        for (i, last) in path.iter().enumerate().skip(1) {
            let is_self = i == path.len() - 1;
            guide.push_str(match (is_self, *last) {
                (true, true) => "└─ ",
                (true, false) => "├─ ",
                (false, true) => "   ",
                (false, false) => "│  ",
            });
        }
        let name = if s.is_kernel() {
            style.cyan(&s.name)
        } else {
            style.bold(&s.name)
        };
        let guide = if guide.is_empty() {
            guide
        } else {
            style.dim(&guide)
        };
        let mut line = format!(
            "  {:>9}  {:>9}  {:<8}  {guide}{name}",
            format!("+{}", duration(s.start_ns - start)),
            duration(s.duration_ns()),
            s.kind,
        );
        if let Some(r) = s.str_attr(AIBOM_COMPONENT_REF) {
            let _ = write!(line, "  [{r}]");
        }
        if let Some(m) = s
            .str_attr(RUNBOM_CORRELATION_METHOD)
            .filter(|m| *m != correlation::NONE)
        {
            let conf = s.str_attr(RUNBOM_CORRELATION_CONFIDENCE).unwrap_or("");
            let _ = write!(line, "  {}", style.dim(&format!("⟵ {m}/{conf}")));
        }
        if s.attrs.contains_key(RUNBOM_STITCHED_ORIGINAL_TRACE_ID) {
            let _ = write!(line, "  {}", style.yellow("stitched"));
        }
        if s.error {
            let _ = write!(line, "  {}", style.red("ERROR"));
            if !s.status_message.is_empty() {
                let _ = write!(line, " {}", style.red(&s.status_message));
            }
        }
        if s.drifted() {
            let _ = write!(
                line,
                "  {}",
                style.red(&format!("⚠ DRIFT {}", s.drift_kinds().join(",")))
            );
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !alerts.is_empty() {
        out.push('\n');
        out.push_str(&render_alerts(alerts, style));
    }
    out
}

/// Drift findings with their chains.
#[must_use]
pub fn render_alerts(alerts: &[&Alert], style: Style) -> String {
    let mut out = String::new();
    for (i, a) in alerts.iter().enumerate() {
        let _ = writeln!(
            out,
            "{} {} {}  {}",
            style.red(&format!("⚠ drift finding {}", i + 1)),
            style.bold(&format!("[{}]", a.severity)),
            style.red(&a.kinds.join(", ")),
            a.reason
        );
        let _ = writeln!(
            out,
            "  at {} UTC  service {}  agent {}  component {}",
            timestamp(a.time_ns),
            a.service,
            a.agent.as_deref().unwrap_or("-"),
            a.component.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "  trace {}  span {}", a.trace_id, a.span_id);
        if a.chain.is_empty() && !a.body.is_empty() {
            for l in a.body.lines() {
                let _ = writeln!(out, "    {l}");
            }
        }
        let n = a.chain.len();
        for (j, step) in a.chain.iter().enumerate() {
            let marker = if j + 1 == n {
                style.red("▶")
            } else {
                "·".into()
            };
            let _ = writeln!(out, "  {marker} {:>2}. {step}", j + 1);
        }
        out.push('\n');
    }
    out
}

/// The traces read, one line each.
#[must_use]
pub fn render_list(traces: &[TraceSummary], style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold("trace id                          start (UTC)              duration  spans  kernel  drift  root")
    );
    for t in traces {
        let drift = if t.drifted > 0 {
            style.red(&format!("{:>5}", t.drifted))
        } else {
            format!("{:>5}", 0)
        };
        let _ = writeln!(
            out,
            "{}  {}  {:>9}  {:>5}  {:>6}  {}  {} {}",
            t.trace_id,
            timestamp(t.start_ns),
            duration(t.end_ns.saturating_sub(t.start_ns)),
            t.spans,
            t.kernel_spans,
            drift,
            t.service,
            t.root_name.as_deref().unwrap_or("(no root span)")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            timestamp(1_795_752_290_175_878_564),
            "2026-11-27 04:04:50.175"
        );
        assert_eq!(duration(1_500), "2µs");
        assert_eq!(duration(12_340_000), "12.3ms");
        assert_eq!(duration(2_000_000_000), "2.000s");
    }
}
