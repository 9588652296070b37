//! The declared BOM's components as runbom matches against them, and what is looked up in it
//! per span (dependency closures, computed once when it is read).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use runbom_event::semconv::component_kind;

use crate::{endpoint::Endpoint, glob::Glob};

/// The kinds of `aibom.component.kind`; [`Kind::as_str`] is the attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Agent,
    Model,
    Tool,
    Service,
    Data,
    Process,
    Identity,
}

impl Kind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => component_kind::AGENT,
            Self::Model => component_kind::MODEL,
            Self::Tool => component_kind::TOOL,
            Self::Service => component_kind::SERVICE,
            Self::Data => component_kind::DATA,
            Self::Process => component_kind::PROCESS,
            Self::Identity => component_kind::IDENTITY,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub bom_ref: String,
    pub name: String,
    /// `runbom:match` `key=glob`; empty: the name against `service.name` and agent names.
    pub matchers: Vec<(String, Glob)>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub bom_ref: String,
    pub name: Glob,
    /// Normalised provider (`publisher` or `runbom:provider`).
    pub providers: Vec<String>,
}

/// A tool (`runbom:kind=tool`) or another service (API, model endpoint).
#[derive(Clone, Debug)]
pub struct Service {
    pub bom_ref: String,
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub providers: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct DataSource {
    pub bom_ref: String,
    /// The component's name and its datasets' names (`crm.customers`).
    pub names: Vec<String>,
    /// Absolute path prefixes (`file://` URLs and `runbom:path`).
    pub paths: Vec<String>,
    pub endpoints: Vec<Endpoint>,
}

/// An MCP server (`services[]` with `runbom:kind` = `mcp-server`): how it is started
/// (`runbom:exec` globs over its command line) or reached (`endpoints`), and the tools it may
/// be called for (its nested `services[]` with `runbom:kind` = `tool`).
#[derive(Clone, Debug)]
pub struct McpServer {
    pub bom_ref: String,
    pub name: String,
    pub commands: Vec<Glob>,
    pub endpoints: Vec<Endpoint>,
    /// `(tool name, tool bom-ref)`.
    pub tools: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Program {
    pub bom_ref: String,
    pub name: String,
    pub execs: Vec<Glob>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentitySpec {
    Uid(u32),
    K8sServiceAccount { namespace: String, name: String },
    Env(String),
}

impl std::fmt::Display for IdentitySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uid(u) => write!(f, "uid:{u}"),
            Self::K8sServiceAccount { namespace, name } => write!(f, "k8s-sa:{namespace}/{name}"),
            Self::Env(n) => write!(f, "env:{n}"),
        }
    }
}

impl IdentitySpec {
    pub fn parse(v: &str) -> Result<Self, String> {
        let bad = || format!("not uid:N, k8s-sa:namespace/name or env:NAME: {v:?}");
        let (kind, rest) = v.split_once(':').ok_or_else(bad)?;
        match kind {
            "uid" => rest.parse().map(Self::Uid).map_err(|_| bad()),
            "k8s-sa" => match rest.split_once('/') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() => Ok(Self::K8sServiceAccount {
                    namespace: ns.into(),
                    name: n.into(),
                }),
                _ => Err(bad()),
            },
            "env" if !rest.is_empty() && !rest.contains(['=', ' ']) => Ok(Self::Env(rest.into())),
            _ => Err(bad()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Identity {
    pub bom_ref: String,
    pub name: String,
    pub specs: Vec<IdentitySpec>,
}

/// The declared BOM, ready for matching.
#[derive(Clone, Debug, Default)]
pub struct DeclaredBom {
    pub source: String,
    pub serial_number: String,
    pub agents: Vec<Agent>,
    pub models: Vec<Model>,
    pub tools: Vec<Service>,
    pub services: Vec<Service>,
    pub data: Vec<DataSource>,
    pub programs: Vec<Program>,
    pub identities: Vec<Identity>,
    pub mcp_servers: Vec<McpServer>,
    /// `dependencies[]`: `ref` → `dependsOn`.
    pub depends_on: BTreeMap<String, Vec<String>>,
    /// Per agent: every ref it may use (the closure of its dependencies); absent: no
    /// dependencies declared for it, so it may use everything.
    allowed: HashMap<String, BTreeSet<String>>,
    /// Per ref with dependencies: the closure of its dependencies, computed once.
    reach: HashMap<String, BTreeSet<String>>,
    /// The variable names of the `env:NAME` identities, computed once.
    env_names: Vec<String>,
}

impl DeclaredBom {
    /// A BOM read from `source` before its components are.
    pub(super) fn empty(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            ..Self::default()
        }
    }

    /// Whether `agent` may use the component `r` (its dependencies say so, or it has none).
    #[must_use]
    pub fn allowed(&self, agent: &str, r: &str) -> bool {
        self.allowed.get(agent).is_none_or(|set| set.contains(r))
    }

    /// The variable names of the BOM's `env:NAME` identities.
    #[must_use]
    pub fn env_names(&self) -> &[String] {
        &self.env_names
    }

    /// Every ref reachable from `r` through `dependencies[]`, precomputed; `None` when `r`
    /// depends on nothing.
    #[must_use]
    pub fn reach(&self, r: &str) -> Option<&BTreeSet<String>> {
        self.reach.get(r)
    }

    /// Every ref reachable from `r` through `dependencies[]` (not `r` itself).
    #[must_use]
    pub fn closure(&self, r: &str) -> BTreeSet<String> {
        if let Some(set) = self.reach.get(r) {
            return set.clone();
        }
        let mut seen = BTreeSet::new();
        let mut todo = vec![r.to_owned()];
        while let Some(next) = todo.pop() {
            for d in self.depends_on.get(&next).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    /// The kind and name of a declared ref.
    #[must_use]
    pub fn describe(&self, r: &str) -> Option<(Kind, String)> {
        self.components()
            .find(|(_, b, _)| *b == r)
            .map(|(kind, _, name)| (kind, name.to_owned()))
    }

    /// Every declared component as (kind, ref, name): agents, models, tools, services, data
    /// sources, programs, identities, then MCP servers (as services).
    pub fn components(&self) -> impl Iterator<Item = (Kind, &str, &str)> {
        let agents = self
            .agents
            .iter()
            .map(|a| (Kind::Agent, a.bom_ref.as_str(), a.name.as_str()));
        let models = self
            .models
            .iter()
            .map(|m| (Kind::Model, m.bom_ref.as_str(), m.name.as_str()));
        let tools = self
            .tools
            .iter()
            .map(|t| (Kind::Tool, t.bom_ref.as_str(), t.name.as_str()));
        let services = self
            .services
            .iter()
            .map(|s| (Kind::Service, s.bom_ref.as_str(), s.name.as_str()));
        let data = self.data.iter().map(|d| {
            let name = d.names.first().map_or("", String::as_str);
            (Kind::Data, d.bom_ref.as_str(), name)
        });
        let programs = self
            .programs
            .iter()
            .map(|p| (Kind::Process, p.bom_ref.as_str(), p.name.as_str()));
        let identities = self
            .identities
            .iter()
            .map(|i| (Kind::Identity, i.bom_ref.as_str(), i.name.as_str()));
        let mcp_servers = self
            .mcp_servers
            .iter()
            .map(|m| (Kind::Service, m.bom_ref.as_str(), m.name.as_str()));
        agents
            .chain(models)
            .chain(tools)
            .chain(services)
            .chain(data)
            .chain(programs)
            .chain(identities)
            .chain(mcp_servers)
    }

    /// Every declared endpoint list with its owner: services, data sources, tools, then MCP servers.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, Kind, &[Endpoint])> {
        let services = self
            .services
            .iter()
            .map(|s| (s.bom_ref.as_str(), Kind::Service, s.endpoints.as_slice()));
        let data = self
            .data
            .iter()
            .map(|d| (d.bom_ref.as_str(), Kind::Data, d.endpoints.as_slice()));
        let tools = self
            .tools
            .iter()
            .map(|t| (t.bom_ref.as_str(), Kind::Tool, t.endpoints.as_slice()));
        // A streamable-HTTP MCP server's endpoint is a declared destination of what reaches it.
        let mcp_servers = self
            .mcp_servers
            .iter()
            .map(|m| (m.bom_ref.as_str(), Kind::Service, m.endpoints.as_slice()));
        services.chain(data).chain(tools).chain(mcp_servers)
    }

    /// Computes what is looked up per span once the components and dependencies are read: the
    /// closure of every ref's dependencies, each agent's allowed refs and the `env:` names.
    pub(super) fn index(&mut self) {
        let refs: Vec<String> = self.depends_on.keys().cloned().collect();
        for r in refs {
            let set = self.closure(&r);
            self.reach.insert(r, set);
        }
        self.env_names = self
            .identities
            .iter()
            .flat_map(|i| &i.specs)
            .filter_map(|s| match s {
                IdentitySpec::Env(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let agents: Vec<String> = self.agents.iter().map(|a| a.bom_ref.clone()).collect();
        for a in agents {
            if self.depends_on.contains_key(&a) {
                let set = self.closure(&a);
                self.allowed.insert(a, set);
            }
        }
    }
}
