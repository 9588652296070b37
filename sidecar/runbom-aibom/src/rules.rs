//! The rules of one declared workload: whether a model call, tool, destination, database,
//! file or program is declared for the agent (and, under a tool, for that tool), and the drift
//! flag and sentence when it is not.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use runbom_event::semconv::GEN_AI_REQUEST_MODEL;

use crate::{
    bom::{DeclaredBom, Kind},
    endpoint::Dest,
    span::{Activity, attr},
    verdict::{JudgeSettings, Verdict, flag},
};

pub(crate) struct Judge<'a, 's> {
    pub bom: &'a DeclaredBom,
    pub settings: &'s JudgeSettings,
    pub agent: &'a str,
}

fn drift<'b>(flag: &'static str, reason: String, subject: String) -> Verdict<'b> {
    Verdict {
        declared: Some(false),
        drift: vec![flag],
        reason: Some(reason),
        subject: Some(subject),
        ..Verdict::default()
    }
}

fn found(r: &str, kind: Kind) -> Verdict<'_> {
    Verdict {
        component: Some((r, kind)),
        declared: Some(true),
        ..Verdict::default()
    }
}

impl<'a> Judge<'a, '_> {
    fn agent_name(&self) -> &str {
        self.bom
            .agents
            .iter()
            .find(|a| a.bom_ref == self.agent)
            .map_or(self.agent, |a| a.name.as_str())
    }

    pub(crate) fn verdict(
        &self,
        act: &Activity,
        tool: Option<&str>,
        attrs: &[KeyValue],
    ) -> Verdict<'a> {
        match act {
            Activity::Agent { .. } => found(self.agent, Kind::Agent),
            Activity::Model {
                model, provider, ..
            } => self.model(model.as_deref(), provider.as_deref()),
            Activity::Tool { name } => self.tool(name),
            Activity::Http { dest, method, .. } => {
                let mut v =
                    self.destination(dest, tool, &|| format!("sent {method} {}", dest.display()));
                // The `model` field of an LLM API request captured in TLS.
                if let Some(m) = attr(attrs, GEN_AI_REQUEST_MODEL) {
                    let mv = self.model(Some(m), None);
                    for f in mv.drift {
                        v.drift.push(f);
                        v.declared = Some(false);
                        v.reason = Some(match v.reason.take() {
                            Some(r) => format!("{r}; {}", mv.reason.clone().unwrap_or_default()),
                            None => mv.reason.clone().unwrap_or_default(),
                        });
                        v.subject.get_or_insert_with(|| m.to_owned());
                    }
                }
                v
            }
            Activity::Connect { dest } => {
                if dest.port == Some(53) {
                    return Verdict::default(); // name resolution: judged by name, not here
                }
                self.destination(dest, tool, &|| format!("connected to {}", dest.host_port()))
            }
            Activity::Db {
                system,
                namespace,
                collection,
                dest,
            } => self.db(
                system,
                namespace.as_deref(),
                collection.as_deref(),
                dest.as_deref(),
                tool,
            ),
            Activity::File { path } => self.file(path),
            Activity::Exec { path } => self.exec(path),
            Activity::Mcp {
                method,
                tool,
                server,
                url,
            } => self.mcp(method, tool.as_deref(), server.as_deref(), url.as_deref()),
            Activity::Dns { .. } | Activity::Accept { .. } | Activity::Other => Verdict::default(),
        }
    }

    fn allowed(&self, r: &str) -> bool {
        self.bom.allowed(self.agent, r)
    }

    /// `what` is declared as `r`, but not for this agent.
    fn declared_not_for(
        &self,
        flag: &'static str,
        what: &str,
        r: &str,
        subject: String,
    ) -> Verdict<'a> {
        drift(
            flag,
            format!("{what} is declared as {r} but not for {}", self.agent),
            subject,
        )
    }

    /// The agent `did` something with `r`, which is declared, but not for it.
    fn used_not_for(&self, flag: &'static str, did: &str, r: &str, subject: String) -> Verdict<'a> {
        drift(
            flag,
            format!(
                "{} {did}, declared as {r} but not for {}",
                self.agent_name(),
                self.agent
            ),
            subject,
        )
    }

    fn model(&self, model: Option<&str>, provider: Option<&str>) -> Verdict<'a> {
        let Some(model) = model else {
            return Verdict::default();
        };
        let fits = |m: &crate::bom::Model| {
            provider.is_none_or(|p| m.providers.is_empty() || m.providers.iter().any(|q| q == p))
        };
        let by_name = || {
            self.bom
                .models
                .iter()
                .filter(|m| model_matches(&m.name, model))
        };
        let shown = || ShownModel(model, provider);
        match by_name().find(|m| fits(m)) {
            Some(m) if self.allowed(&m.bom_ref) => found(&m.bom_ref, Kind::Model),
            Some(m) => self.declared_not_for(
                flag::UNDECLARED_MODEL,
                &shown().to_string(),
                &m.bom_ref,
                model.to_owned(),
            ),
            None => match by_name().next() {
                Some(m) => drift(
                    flag::UNDECLARED_MODEL,
                    format!(
                        "{} is declared only with provider {}",
                        shown(),
                        m.providers.join(", ")
                    ),
                    model.to_owned(),
                ),
                None => drift(
                    flag::UNDECLARED_MODEL,
                    format!(
                        "{} called {}, which the BOM does not declare",
                        self.agent_name(),
                        shown()
                    ),
                    model.to_owned(),
                ),
            },
        }
    }

    fn tool(&self, name: &str) -> Verdict<'a> {
        match self.bom.tools.iter().find(|t| t.name == name) {
            Some(t) if self.allowed(&t.bom_ref) => found(&t.bom_ref, Kind::Tool),
            Some(t) => self.declared_not_for(
                flag::UNDECLARED_TOOL,
                &format!("tool {name}"),
                &t.bom_ref,
                name.to_owned(),
            ),
            None => drift(
                flag::UNDECLARED_TOOL,
                format!(
                    "{} used tool {name}, which the BOM does not declare",
                    self.agent_name()
                ),
                name.to_owned(),
            ),
        }
    }

    /// A destination a tool (or the agent, outside tools) reached. Under a declared tool, only
    /// the tool's endpoints and those of what it depends on are allowed: the key case of
    /// sanctioned tool abuse.
    fn destination(
        &self,
        dest: &Dest,
        tool: Option<&str>,
        did: &dyn Fn() -> String,
    ) -> Verdict<'a> {
        if self.settings.ignore.iter().any(|e| e.matches(dest)) {
            return Verdict::default();
        }
        let subject = || dest.host_port();
        if let Some(t) = tool.and_then(|t| self.bom.tools.iter().find(|d| d.name == t)) {
            let none = std::collections::BTreeSet::new();
            let reach = self.bom.reach(&t.bom_ref).unwrap_or(&none);
            let mut declared = Vec::new();
            for (r, kind, eps) in self.bom.endpoints() {
                if !reach.contains(r) {
                    continue;
                }
                if eps.iter().any(|e| e.matches(dest)) {
                    return found(r, kind);
                }
                declared.extend(eps.iter().map(|e| e.raw.clone()));
            }
            if t.endpoints.iter().any(|e| e.matches(dest)) {
                return found(&t.bom_ref, Kind::Tool);
            }
            declared.extend(t.endpoints.iter().map(|e| e.raw.clone()));
            declared.dedup();
            let allowed = if declared.is_empty() {
                "it has no endpoints".to_owned()
            } else {
                format!("declared: {}", declared.join(", "))
            };
            return drift(
                flag::UNDECLARED_ENDPOINT,
                format!(
                    "tool {} {}, an endpoint the BOM does not declare for it ({allowed})",
                    t.name,
                    did()
                ),
                subject(),
            );
        }
        match self
            .bom
            .endpoints()
            .find(|(_, _, eps)| eps.iter().any(|e| e.matches(dest)))
        {
            Some((r, kind, _)) if self.allowed(r) => found(r, kind),
            Some((r, _, _)) => self.used_not_for(flag::UNDECLARED_ENDPOINT, &did(), r, subject()),
            None => drift(
                flag::UNDECLARED_ENDPOINT,
                format!(
                    "{} {}, an endpoint the BOM does not declare",
                    self.agent_name(),
                    did()
                ),
                subject(),
            ),
        }
    }

    fn db(
        &self,
        system: &str,
        namespace: Option<&str>,
        collection: Option<&str>,
        dest: Option<&Dest>,
        tool: Option<&str>,
    ) -> Verdict<'a> {
        let names: Vec<String> = [
            namespace.map(str::to_owned),
            collection.map(str::to_owned),
            namespace.zip(collection).map(|(n, c)| format!("{n}.{c}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let hit = self.bom.data.iter().find(|d| {
            dest.is_some_and(|dest| d.endpoints.iter().any(|e| e.matches(dest)))
                || d.names.iter().any(|n| names.iter().any(|m| m == n))
        });
        let what = format!(
            "{system} database {}{}",
            namespace.unwrap_or("?"),
            dest.map(|d| format!(" at {}", d.host_port()))
                .unwrap_or_default()
        );
        match hit {
            Some(d) if self.allowed(&d.bom_ref) => found(&d.bom_ref, Kind::Data),
            Some(d) => self.used_not_for(
                flag::UNDECLARED_DATA_SOURCE,
                &format!("queried the {what}"),
                &d.bom_ref,
                what,
            ),
            None => {
                // A database behind a declared API endpoint is that endpoint's business.
                if let Some(dest) = dest {
                    let v = self.destination(dest, tool, &|| format!("queried the {what}"));
                    if v.drift.is_empty() {
                        return v;
                    }
                }
                drift(
                    flag::UNDECLARED_DATA_SOURCE,
                    format!(
                        "{} queried the {what}, which matches no declared data source",
                        self.agent_name()
                    ),
                    what,
                )
            }
        }
    }

    fn file(&self, path: &str) -> Verdict<'a> {
        let hit = self
            .bom
            .data
            .iter()
            .filter_map(|d| {
                d.paths
                    .iter()
                    .filter(|p| under(path, p))
                    .map(|p| (p.len(), d))
                    .max_by_key(|(l, _)| *l)
            })
            .max_by_key(|(l, _)| *l)
            .map(|(_, d)| d);
        match hit {
            Some(d) if self.allowed(&d.bom_ref) => found(&d.bom_ref, Kind::Data),
            Some(d) => drift(
                flag::UNDECLARED_DATA_SOURCE,
                format!(
                    "{} opened {path}, in {} which is not declared for {}",
                    self.agent_name(),
                    d.bom_ref,
                    self.agent
                ),
                path.to_owned(),
            ),
            None => drift(
                flag::UNDECLARED_FILE,
                format!(
                    "{} opened {path}, under no declared data source",
                    self.agent_name()
                ),
                path.to_owned(),
            ),
        }
    }

    fn exec(&self, path: &str) -> Verdict<'a> {
        let hits: Vec<_> = self
            .bom
            .programs
            .iter()
            .filter(|p| p.execs.iter().any(|g| g.matches(path)))
            .collect();
        match (hits.iter().find(|p| self.allowed(&p.bom_ref)), hits.first()) {
            (Some(p), _) => found(&p.bom_ref, Kind::Process),
            (None, Some(p)) => self.used_not_for(
                flag::UNDECLARED_EXEC,
                &format!("executed {path}"),
                &p.bom_ref,
                path.to_owned(),
            ),
            (None, None) => drift(
                flag::UNDECLARED_EXEC,
                format!(
                    "{} executed {path}, which no runbom:exec of the BOM allows",
                    self.agent_name()
                ),
                path.to_owned(),
            ),
        }
    }

    /// An MCP request: its server (by the answering process's command line, or the URL a
    /// streamable-HTTP request went to) must be declared for the agent, and a `tools/call`'s
    /// tool among that server's declared tools.
    fn mcp(
        &self,
        method: &str,
        tool: Option<&str>,
        server: Option<&str>,
        url: Option<&str>,
    ) -> Verdict<'a> {
        let dest = url.and_then(Dest::from_url);
        let hits: Vec<_> = match (server, &dest) {
            (Some(cmd), _) => self
                .bom
                .mcp_servers
                .iter()
                .filter(|s| s.commands.iter().any(|g| g.matches(cmd)))
                .collect(),
            (None, Some(d)) => self
                .bom
                .mcp_servers
                .iter()
                .filter(|s| s.endpoints.iter().any(|e| e.matches(d)))
                .collect(),
            // Unanswered over a pipe: nothing says which server it was.
            (None, None) => return Verdict::default(),
        };
        let cmd = server.or(url).unwrap_or_default();
        let Some(s) = hits
            .iter()
            .find(|s| self.allowed(&s.bom_ref))
            .or(hits.first())
        else {
            return drift(
                flag::UNDECLARED_MCP_SERVER,
                format!(
                    "{} called MCP server `{cmd}`, which the BOM does not declare",
                    self.agent_name()
                ),
                cmd.to_owned(),
            );
        };
        if !self.allowed(&s.bom_ref) {
            return self.used_not_for(
                flag::UNDECLARED_MCP_SERVER,
                &format!("called MCP server {}", s.name),
                &s.bom_ref,
                cmd.to_owned(),
            );
        }
        let (Some(tool), "tools/call") = (tool, method) else {
            return found(&s.bom_ref, Kind::Service);
        };
        match s.tools.iter().find(|(name, _)| name == tool) {
            Some((_, r)) if self.allowed(r) => found(r, Kind::Tool),
            Some((_, r)) => self.used_not_for(
                flag::UNDECLARED_MCP_TOOL,
                &format!("called tool {tool} of MCP server {}", s.name),
                r,
                tool.to_owned(),
            ),
            None => drift(
                flag::UNDECLARED_MCP_TOOL,
                format!(
                    "{} called tool {tool} of MCP server {}, which the BOM does not declare",
                    self.agent_name(),
                    s.name
                ),
                tool.to_owned(),
            ),
        }
    }
}

/// `model gpt-4o (provider openai)`: a model as drift reasons name it.
struct ShownModel<'x>(&'x str, Option<&'x str>);

impl std::fmt::Display for ShownModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model {}", self.0)?;
        match self.1 {
            Some(p) => write!(f, " (provider {p})"),
            None => Ok(()),
        }
    }
}

/// A declared model name (glob) matches the model id, or the id without a dated snapshot
/// suffix (`gpt-4o-mini-2024-07-18`, `claude-3-5-sonnet-20241022` are `gpt-4o-mini`,
/// `claude-3-5-sonnet`): providers answer with the snapshot that served the request.
#[must_use]
pub fn model_matches(name: &crate::glob::Glob, id: &str) -> bool {
    name.matches(id) || undated(id).is_some_and(|base| name.matches(base))
}

fn undated(id: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (base, tail) = id.rsplit_once('-')?;
    if tail.len() == 8 && digits(tail) {
        return Some(base);
    }
    // -YYYY-MM-DD
    let (base2, month) = base.rsplit_once('-')?;
    let (base3, year) = base2.rsplit_once('-')?;
    (year.len() == 4
        && digits(year)
        && month.len() == 2
        && digits(month)
        && tail.len() == 2
        && digits(tail))
    .then_some(base3)
}

/// `path` is `prefix` or below it (a prefix ending in `/` is a directory).
fn under(path: &str, prefix: &str) -> bool {
    // A directory declared as `…/data/` holds `…/data` itself (opened to list or create in it).
    let dir = prefix.strip_suffix('/').filter(|d| !d.is_empty());
    dir == Some(path)
        || path.starts_with(prefix)
            && (prefix.ends_with('/')
                || path.len() == prefix.len()
                || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}
