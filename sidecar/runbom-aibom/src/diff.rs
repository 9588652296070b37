//! Declared against observed: what ran without being declared, and what was declared but never
//! used. Both BOMs are read with the declared-BOM reader (the observed BOM follows the same
//! conventions), so the same matching rules decide.

use std::{collections::BTreeSet, fmt::Write as _};

use serde::Serialize;

use runbom_event::semconv::SERVICE_NAME;

use crate::{
    bom::{DeclaredBom, IdentitySpec, Kind},
    endpoint::{Dest, Endpoint},
};

/// What a shadow agent used, named at most this many times in its line.
const SHADOW_USES: usize = 16;

#[derive(Debug, Default, Serialize)]
pub struct Diff {
    pub declared: String,
    pub observed: String,
    /// Seen at runtime, in a declared workload or AI-relevant, and not declared.
    pub undeclared: Vec<Item>,
    /// Declared and never seen.
    pub unused: Vec<Item>,
    /// Seen and declared.
    pub matched: Vec<Item>,
    /// Seen outside declared workloads and not AI-relevant: inventoried only.
    pub inventoried_only: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Item {
    pub kind: &'static str,
    pub name: String,
    /// The declared component (`matched`, `unused`) or the observed one.
    #[serde(rename = "ref")]
    pub bom_ref: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Observed components with their evidence properties, as the diff reads them back.
struct Observed<'a> {
    raw: &'a serde_json::Value,
}

impl Observed<'_> {
    /// `runbom:evidence:<name>` values of the component or service `r`.
    fn evidence(&self, r: &str, name: &str) -> Vec<String> {
        let key = format!("runbom:evidence:{name}");
        ["components", "services"]
            .iter()
            .filter_map(|s| self.raw.get(s).and_then(|v| v.as_array()))
            .flatten()
            .filter(|c| c.get("bom-ref").and_then(|v| v.as_str()) == Some(r))
            .flat_map(|c| {
                c.get("properties")
                    .and_then(|p| p.as_array())
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|p| p.get("name").and_then(|v| v.as_str()) == Some(key.as_str()))
            .filter_map(|p| p.get("value").and_then(|v| v.as_str()).map(str::to_owned))
            .collect()
    }
}

/// Compares `declared` with `observed` (`observed_raw`: the observed document, for evidence).
// One flat pass per kind of component; split up, the kinds' rules would be harder to compare.
#[allow(clippy::too_many_lines)]
#[must_use]
pub fn diff(
    declared: &DeclaredBom,
    observed: &DeclaredBom,
    observed_raw: &serde_json::Value,
) -> Diff {
    let obs = Observed { raw: observed_raw };
    let mut d = Diff {
        declared: declared.source.clone(),
        observed: observed.source.clone(),
        ..Diff::default()
    };
    let mut used: BTreeSet<String> = BTreeSet::new();
    // Which observed components are in scope: in a declared workload, or AI-relevant.
    let in_scope = |r: &str| {
        let ai = obs.evidence(r, "ai").iter().any(|v| v == "true");
        let agent_ref = !obs.evidence(r, "agent_ref").is_empty();
        let workload = obs.evidence(r, "workload").iter().any(|w| {
            declared.agents.iter().any(|a| {
                a.name == *w
                    || a.matchers
                        .iter()
                        .any(|(k, g)| k == SERVICE_NAME && g.matches(w))
            })
        });
        ai || agent_ref || workload
    };
    let detail = |r: &str| {
        let first = obs.evidence(r, "first_seen");
        let count = obs.evidence(r, "count");
        let ai = obs.evidence(r, "ai").iter().any(|v| v == "true");
        format!(
            "{}seen {} time(s) from {}",
            if ai { "AI-relevant; " } else { "" },
            count.first().map_or("?", String::as_str),
            first.first().map_or("?", String::as_str)
        )
    };
    let mut record = |d: &mut Diff,
                      kind: Kind,
                      name: &str,
                      r: &str,
                      hit: Option<String>,
                      extra: &str| match hit {
        Some(decl) => {
            used.insert(decl.clone());
            d.matched.push(Item {
                kind: kind.as_str(),
                name: name.to_owned(),
                bom_ref: decl,
                detail: extra.to_owned(),
            });
        }
        None if kind == Kind::Agent || kind == Kind::Model || kind == Kind::Tool || in_scope(r) => {
            let mut det = detail(r);
            if !extra.is_empty() {
                det = format!("{extra}; {det}");
            }
            d.undeclared.push(Item {
                kind: kind.as_str(),
                name: name.to_owned(),
                bom_ref: r.to_owned(),
                detail: det,
            });
        }
        None => d.inventoried_only += 1,
    };
    for a in &observed.agents {
        let names: Vec<String> = a
            .matchers
            .iter()
            .map(|(_, g)| g.as_str().to_owned())
            .collect();
        let hit = declared.agents.iter().find(|da| {
            da.name == a.name
                || names.contains(&da.name)
                || da.matchers.iter().any(|(k, g)| {
                    a.matchers
                        .iter()
                        .any(|(ok, ov)| ok == k && g.matches(ov.as_str()))
                })
        });
        // A shadow workload: which models, endpoints and data it used.
        let extra = if obs
            .evidence(&a.bom_ref, "shadow_ai")
            .iter()
            .any(|v| v == "true")
        {
            let mut used: Vec<(Kind, String)> = observed
                .closure(&a.bom_ref)
                .iter()
                .filter_map(|r| observed.describe(r))
                .collect();
            // Models and endpoints first, then data.
            used.sort_by_key(|(kind, _)| *kind == Kind::Data);
            let n = used.len();
            let mut text: Vec<String> = used
                .into_iter()
                .take(SHADOW_USES)
                .map(|(kind, name)| format!("{} {name}", kind.as_str()))
                .collect();
            if n > SHADOW_USES {
                text.push(format!("and {} more", n - SHADOW_USES));
            }
            format!("shadow AI, used: {}", text.join(", "))
        } else {
            String::new()
        };
        record(
            &mut d,
            Kind::Agent,
            &a.name,
            &a.bom_ref,
            hit.map(|h| h.bom_ref.clone()),
            &extra,
        );
    }
    for m in &observed.models {
        let name = m.name.as_str();
        let hit = declared.models.iter().find(|dm| {
            crate::rules::model_matches(&dm.name, name)
                && (m.providers.is_empty()
                    || dm.providers.is_empty()
                    || m.providers.iter().any(|p| dm.providers.contains(p)))
        });
        let extra = m
            .providers
            .first()
            .map(|p| format!("provider {p}"))
            .unwrap_or_default();
        record(
            &mut d,
            Kind::Model,
            name,
            &m.bom_ref,
            hit.map(|h| h.bom_ref.clone()),
            &extra,
        );
    }
    for t in &observed.tools {
        let hit = declared.tools.iter().find(|dt| dt.name == t.name);
        record(
            &mut d,
            Kind::Tool,
            &t.name,
            &t.bom_ref,
            hit.map(|h| h.bom_ref.clone()),
            "",
        );
        // Where the tool sent requests, against where it may (sanctioned tool abuse).
        if let Some(dt) = hit {
            let reach = declared.closure(&dt.bom_ref);
            for e in &t.endpoints {
                let dest = dest_of(e);
                let ok = dt.endpoints.iter().any(|de| de.matches(&dest))
                    || declared.endpoints().any(|(r, kind, eps)| {
                        kind != Kind::Tool
                            && reach.contains(r)
                            && eps.iter().any(|de| de.matches(&dest))
                    });
                if !ok {
                    d.undeclared.push(Item {
                        kind: "tool endpoint",
                        name: format!("{} -> {}", t.name, e.raw),
                        bom_ref: dt.bom_ref.clone(),
                        detail: format!("tool {} reached an endpoint not declared for it", t.name),
                    });
                }
            }
        }
    }
    for s in &observed.services {
        for e in &s.endpoints {
            let hit = owner(declared.endpoints(), e);
            record(&mut d, Kind::Service, &e.raw, &s.bom_ref, hit, "");
        }
    }
    for m in &observed.mcp_servers {
        let cmd = m.commands.first().map_or(m.name.as_str(), |g| g.as_str());
        let hit = declared
            .mcp_servers
            .iter()
            .find(|dm| dm.commands.iter().any(|g| g.matches(cmd)))
            .map(|x| x.bom_ref.clone());
        let tools: Vec<&str> = m.tools.iter().map(|(t, _)| t.as_str()).collect();
        let extra = format!("MCP server; tools called: {}", tools.join(", "));
        record(&mut d, Kind::Service, cmd, &m.bom_ref, hit, &extra);
    }
    for data in &observed.data {
        for p in &data.paths {
            let hit = declared
                .data
                .iter()
                .find(|dd| dd.paths.iter().any(|dp| p.starts_with(dp.as_str())))
                .map(|x| x.bom_ref.clone());
            let name = format!("file://{p}");
            record(&mut d, Kind::Data, &name, &data.bom_ref, hit, "");
        }
        for e in &data.endpoints {
            let hit = owner(
                declared
                    .endpoints()
                    .filter(|(_, kind, _)| *kind == Kind::Data),
                e,
            );
            record(&mut d, Kind::Data, &e.raw, &data.bom_ref, hit, "");
        }
    }
    for p in &observed.programs {
        for g in &p.execs {
            let path = g.as_str();
            let hit = declared
                .programs
                .iter()
                .find(|dp| dp.execs.iter().any(|dg| dg.matches(path)))
                .map(|x| x.bom_ref.clone());
            record(&mut d, Kind::Process, path, &p.bom_ref, hit, "");
        }
    }
    for id in &observed.identities {
        for spec in &id.specs {
            let hit = declared
                .identities
                .iter()
                .find(|di| di.specs.contains(spec))
                .map(|x| x.bom_ref.clone());
            if hit.is_none()
                && !matches!(
                    spec,
                    IdentitySpec::Uid(_) | IdentitySpec::K8sServiceAccount { .. }
                )
            {
                continue;
            }
            record(
                &mut d,
                Kind::Identity,
                &spec.to_string(),
                &id.bom_ref,
                hit,
                "",
            );
        }
    }
    // What used components depend on was used too (an API key behind a used API).
    let mut closure = used.clone();
    for r in &used {
        closure.extend(
            declared
                .closure(r)
                .into_iter()
                .filter(|x| declared.identities.iter().any(|i| i.bom_ref == *x)),
        );
    }
    for (kind, r, name) in declared.components() {
        if !closure.contains(r) {
            d.unused.push(Item {
                kind: kind.as_str(),
                name: name.to_owned(),
                bom_ref: r.to_owned(),
                detail: String::new(),
            });
        }
    }
    d
}

/// The first of `owners` (ref, kind, endpoints) whose endpoints cover the observed endpoint `e`.
fn owner<'d>(
    mut owners: impl Iterator<Item = (&'d str, Kind, &'d [Endpoint])>,
    e: &Endpoint,
) -> Option<String> {
    let dest = dest_of(e);
    owners
        .find(|(_, _, eps)| eps.iter().any(|de| de.matches(&dest)))
        .map(|(r, _, _)| r.to_owned())
}

/// An observed endpoint as a destination (`tcp://host:port` is a connection: no path).
fn dest_of(e: &Endpoint) -> Dest {
    match Dest::from_url(&crate::iri::decode(&e.raw)) {
        Some(mut d) if matches!(d.scheme.as_deref(), Some("tcp" | "udp")) => {
            d.path = None;
            d.scheme = None;
            d
        }
        Some(d) => d,
        None => Dest::from_host(
            e.raw.rsplit_once(':').map_or(e.raw.as_str(), |(h, _)| h),
            e.port,
        ),
    }
}

impl Diff {
    /// For people: one section per list.
    #[must_use]
    pub fn text(&self) -> String {
        let mut s = format!("declared: {}\nobserved: {}\n", self.declared, self.observed);
        let section = |s: &mut String, title: &str, items: &[Item]| {
            let _ = write!(s, "\n{title} ({}):\n", items.len());
            if items.is_empty() {
                s.push_str("  (none)\n");
            }
            for i in items {
                let _ = write!(s, "  {:<14} {}  [{}]", i.kind, i.name, i.bom_ref);
                if !i.detail.is_empty() {
                    let _ = write!(s, "  {}", i.detail);
                }
                s.push('\n');
            }
        };
        section(
            &mut s,
            "UNDECLARED: seen at runtime, not declared",
            &self.undeclared,
        );
        section(&mut s, "UNUSED: declared, never seen", &self.unused);
        section(&mut s, "MATCHED", &self.matched);
        let _ = writeln!(
            s,
            "\n{} observed item(s) outside declared workloads and not AI-relevant: inventoried only",
            self.inventoried_only
        );
        s
    }
}
