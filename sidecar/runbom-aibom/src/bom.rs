//! The declared AI-BOM (`shared/spec/declared-bom.md`): a CycloneDX 1.6/1.7 JSON document read
//! into the components runbom matches against. Errors name the file, the JSON path and the
//! reason: `bom.cdx.json: $.services[3].endpoints[0]: not a URL: ...`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::{endpoint::Endpoint, glob::Glob};

/// A BOM that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BomError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: not JSON: {error}")]
    Json {
        source_name: String,
        error: serde_json::Error,
    },
    #[error("{source_name}: {path}: {reason}")]
    Invalid {
        source_name: String,
        path: String,
        reason: String,
    },
}

/// The kinds of `aibom.component.kind`.
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
            Self::Agent => "agent",
            Self::Model => "model",
            Self::Tool => "tool",
            Self::Service => "service",
            Self::Data => "data",
            Self::Process => "process",
            Self::Identity => "identity",
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
    /// Reads and checks a BOM file; `source` names it in errors (e.g. its file name).
    pub fn from_file(path: &std::path::Path) -> Result<Self, BomError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| BomError::Read {
            source_name: source_name.clone(),
            error,
        })?;
        Self::parse(&text, &source_name)
    }

    /// Parses and checks BOM text.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, BomError> {
        let doc: Value = serde_json::from_str(text).map_err(|error| BomError::Json {
            source_name: source_name.to_owned(),
            error,
        })?;
        Parser {
            source: source_name,
            bom: DeclaredBom {
                source: source_name.to_owned(),
                ..Self::default()
            },
            refs: BTreeSet::new(),
        }
        .document(&doc)
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
        let find = |kind: Kind, mut it: Box<dyn Iterator<Item = (&String, String)> + '_>| {
            it.find(|(b, _)| *b == r).map(|(_, n)| (kind, n))
        };
        find(
            Kind::Agent,
            Box::new(self.agents.iter().map(|a| (&a.bom_ref, a.name.clone()))),
        )
        .or_else(|| {
            find(
                Kind::Model,
                Box::new(
                    self.models
                        .iter()
                        .map(|m| (&m.bom_ref, m.name.as_str().to_owned())),
                ),
            )
        })
        .or_else(|| {
            find(
                Kind::Tool,
                Box::new(self.tools.iter().map(|t| (&t.bom_ref, t.name.clone()))),
            )
        })
        .or_else(|| {
            find(
                Kind::Service,
                Box::new(self.services.iter().map(|s| (&s.bom_ref, s.name.clone()))),
            )
        })
        .or_else(|| {
            find(
                Kind::Data,
                Box::new(
                    self.data
                        .iter()
                        .map(|d| (&d.bom_ref, d.names.first().cloned().unwrap_or_default())),
                ),
            )
        })
        .or_else(|| {
            find(
                Kind::Process,
                Box::new(self.programs.iter().map(|p| (&p.bom_ref, p.name.clone()))),
            )
        })
        .or_else(|| {
            find(
                Kind::Identity,
                Box::new(self.identities.iter().map(|i| (&i.bom_ref, i.name.clone()))),
            )
        })
    }
}

struct Parser<'a> {
    source: &'a str,
    bom: DeclaredBom,
    /// Every `bom-ref` seen, whether runbom uses the component or not.
    refs: BTreeSet<String>,
}

type Res<T> = Result<T, BomError>;

impl Parser<'_> {
    fn err(&self, path: &str, reason: impl Into<String>) -> BomError {
        BomError::Invalid {
            source_name: self.source.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn str<'v>(&self, v: &'v Value, path: &str) -> Res<&'v str> {
        v.as_str()
            .ok_or_else(|| self.err(path, format!("expected a string, found {}", type_name(v))))
    }

    fn opt_str<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Res<Option<&'v str>> {
        obj.get(key)
            .map(|v| self.str(v, &format!("{path}.{key}")))
            .transpose()
    }

    fn array<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Res<&'v [Value]> {
        match obj.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.err(
                &format!("{path}.{key}"),
                format!("expected an array, found {}", type_name(v)),
            )),
        }
    }

    fn object<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Value> {
        if v.is_object() {
            Ok(v)
        } else {
            Err(self.err(path, format!("expected an object, found {}", type_name(v))))
        }
    }

    /// `properties[]` as (name, value, path of the value).
    fn properties(&self, obj: &Value, path: &str) -> Res<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for (i, p) in self.array(obj, "properties", path)?.iter().enumerate() {
            let at = format!("{path}.properties[{i}]");
            self.object(p, &at)?;
            let name = self
                .opt_str(p, "name", &at)?
                .ok_or_else(|| self.err(&at, "a property needs a `name`"))?;
            let value = self.opt_str(p, "value", &at)?.unwrap_or("");
            out.push((name.to_owned(), value.to_owned(), format!("{at}.value")));
        }
        Ok(out)
    }

    fn document(mut self, doc: &Value) -> Res<DeclaredBom> {
        self.object(doc, "$")?;
        match self.opt_str(doc, "bomFormat", "$")? {
            Some("CycloneDX") => {}
            other => {
                return Err(self.err(
                    "$.bomFormat",
                    format!("expected \"CycloneDX\", found {other:?}"),
                ));
            }
        }
        match self.opt_str(doc, "specVersion", "$")? {
            Some("1.6" | "1.7") => {}
            other => {
                return Err(self.err(
                    "$.specVersion",
                    format!("runbom reads CycloneDX 1.6 and 1.7, found {other:?}"),
                ));
            }
        }
        self.bom.serial_number = self
            .opt_str(doc, "serialNumber", "$")?
            .unwrap_or("")
            .to_owned();
        if let Some(meta) = doc.get("metadata") {
            self.object(meta, "$.metadata")?;
            if let Some(c) = meta.get("component") {
                self.component(c, "$.metadata.component")?;
            }
        }
        for (i, c) in self.array(doc, "components", "$")?.iter().enumerate() {
            self.component(c, &format!("$.components[{i}]"))?;
        }
        for (i, s) in self.array(doc, "services", "$")?.iter().enumerate() {
            self.service(s, &format!("$.services[{i}]"))?;
        }
        for (i, d) in self.array(doc, "dependencies", "$")?.iter().enumerate() {
            self.dependency(d, &format!("$.dependencies[{i}]"))?;
        }
        let refs: Vec<String> = self.bom.depends_on.keys().cloned().collect();
        for r in refs {
            let set = self.bom.closure(&r);
            self.bom.reach.insert(r, set);
        }
        self.bom.env_names = self
            .bom
            .identities
            .iter()
            .flat_map(|i| &i.specs)
            .filter_map(|s| match s {
                IdentitySpec::Env(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let agents: Vec<String> = self.bom.agents.iter().map(|a| a.bom_ref.clone()).collect();
        for a in agents {
            if self.bom.depends_on.contains_key(&a) {
                let set = self.bom.closure(&a);
                self.bom.allowed.insert(a, set);
            }
        }
        Ok(self.bom)
    }

    /// The component's `bom-ref` (made from type and name when absent), checked unique.
    fn bom_ref(&mut self, obj: &Value, path: &str, kind: &str, name: &str) -> Res<String> {
        let r = match self.opt_str(obj, "bom-ref", path)? {
            Some(r) if !r.is_empty() => r.to_owned(),
            Some(_) => return Err(self.err(&format!("{path}.bom-ref"), "empty bom-ref")),
            None => format!("{kind}:{name}"),
        };
        if !self.refs.insert(r.clone()) {
            return Err(self.err(
                &format!("{path}.bom-ref"),
                format!("duplicate bom-ref {r:?}"),
            ));
        }
        Ok(r)
    }

    fn component(&mut self, c: &Value, path: &str) -> Res<()> {
        self.object(c, path)?;
        let ty = self
            .opt_str(c, "type", path)?
            .ok_or_else(|| self.err(path, "a component needs a `type`"))?;
        let name = self
            .opt_str(c, "name", path)?
            .ok_or_else(|| self.err(path, "a component needs a `name`"))?
            .to_owned();
        let bom_ref = self.bom_ref(c, path, ty, &name)?;
        let props = self.properties(c, path)?;
        let values = |key: &'static str| props_named(&props, key);
        check_known_properties(self, &props)?;
        let execs: Vec<Glob> = values("runbom:exec")
            .map(|(_, v, _)| Glob::path(v))
            .collect();
        for (_, v, at) in values("runbom:exec") {
            if v.is_empty() {
                return Err(self.err(at, "empty runbom:exec glob"));
            }
        }
        match ty {
            "application" => {
                let mut matchers = Vec::new();
                for (_, v, at) in values("runbom:match") {
                    let (k, g) = v
                        .split_once('=')
                        .filter(|(k, _)| !k.trim().is_empty())
                        .ok_or_else(|| {
                            self.err(at, format!("runbom:match is key=glob, found {v:?}"))
                        })?;
                    matchers.push((k.trim().to_owned(), Glob::name(g.trim())));
                }
                if execs.is_empty() || !matchers.is_empty() {
                    self.bom.agents.push(Agent {
                        bom_ref: bom_ref.clone(),
                        name: name.clone(),
                        matchers,
                    });
                }
                if !execs.is_empty() {
                    self.bom.programs.push(Program {
                        bom_ref,
                        name,
                        execs,
                    });
                }
            }
            "file" if !execs.is_empty() => self.bom.programs.push(Program {
                bom_ref,
                name,
                execs,
            }),
            "machine-learning-model" => {
                let mut providers: Vec<String> = values("runbom:provider")
                    .map(|(_, v, _)| crate::span::normalise_provider(v))
                    .collect();
                if let Some(p) = publisher(c) {
                    let p = crate::span::normalise_provider(&p);
                    if !providers.contains(&p) {
                        providers.push(p);
                    }
                }
                self.bom.models.push(Model {
                    bom_ref,
                    name: Glob::name(&name),
                    providers,
                });
            }
            "data" => self.data(c, path, bom_ref, name, &props)?,
            "cryptographic-asset" => {
                let mut specs = Vec::new();
                for (_, v, at) in values("runbom:identity") {
                    specs.push(IdentitySpec::parse(v).map_err(|e| self.err(at, e))?);
                }
                if !specs.is_empty() {
                    self.bom.identities.push(Identity {
                        bom_ref,
                        name,
                        specs,
                    });
                }
            }
            _ => {}
        }
        for (i, nested) in self.array(c, "components", path)?.iter().enumerate() {
            self.component(nested, &format!("{path}.components[{i}]"))?;
        }
        Ok(())
    }

    fn data(
        &mut self,
        c: &Value,
        path: &str,
        bom_ref: String,
        name: String,
        props: &[(String, String, String)],
    ) -> Res<()> {
        let mut d = DataSource {
            bom_ref,
            names: vec![name],
            paths: Vec::new(),
            endpoints: Vec::new(),
        };
        for (i, set) in self.array(c, "data", path)?.iter().enumerate() {
            let at = format!("{path}.data[{i}]");
            self.object(set, &at)?;
            if let Some(n) = self.opt_str(set, "name", &at)? {
                d.names.push(n.to_owned());
            }
            let Some(contents) = set.get("contents") else {
                continue;
            };
            let at = format!("{at}.contents");
            self.object(contents, &at)?;
            let Some(url) = self.opt_str(contents, "url", &at)? else {
                continue;
            };
            let at = format!("{at}.url");
            if let Some(p) = url.strip_prefix("file://") {
                if !p.starts_with('/') {
                    return Err(self.err(
                        &at,
                        format!("a file:// URL needs an absolute path: {url:?}"),
                    ));
                }
                d.paths.push(p.to_owned());
            } else {
                d.endpoints
                    .push(Endpoint::parse(url).map_err(|e| self.err(&at, e))?);
            }
        }
        for (n, v, at) in props {
            if n == "runbom:path" {
                if !v.starts_with('/') {
                    return Err(self.err(at, format!("runbom:path needs an absolute path: {v:?}")));
                }
                d.paths.push(v.clone());
            }
        }
        self.bom.data.push(d);
        Ok(())
    }

    fn service(&mut self, s: &Value, path: &str) -> Res<()> {
        self.object(s, path)?;
        let name = self
            .opt_str(s, "name", path)?
            .ok_or_else(|| self.err(path, "a service needs a `name`"))?
            .to_owned();
        let props = self.properties(s, path)?;
        check_known_properties(self, &props)?;
        let mut kind = "service";
        for (n, v, at) in &props {
            if n == "runbom:kind" {
                match v.as_str() {
                    "tool" | "service" => kind = if v == "tool" { "tool" } else { "service" },
                    _ => {
                        return Err(self.err(
                            at,
                            format!("runbom:kind is `tool` or `service`, found {v:?}"),
                        ));
                    }
                }
            }
        }
        let bom_ref = self.bom_ref(s, path, kind, &name)?;
        let mut endpoints = Vec::new();
        for (i, e) in self.array(s, "endpoints", path)?.iter().enumerate() {
            let at = format!("{path}.endpoints[{i}]");
            let raw = self.str(e, &at)?;
            endpoints.push(Endpoint::parse(raw).map_err(|r| self.err(&at, r))?);
        }
        let mut providers: Vec<String> = props
            .iter()
            .filter(|(n, _, _)| n == "runbom:provider")
            .map(|(_, v, _)| crate::span::normalise_provider(v))
            .collect();
        if let Some(p) = s
            .get("provider")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            && providers.is_empty()
        {
            providers.push(crate::span::normalise_provider(p));
        }
        let svc = Service {
            bom_ref,
            name,
            endpoints,
            providers,
        };
        if kind == "tool" {
            self.bom.tools.push(svc);
        } else {
            self.bom.services.push(svc);
        }
        for (i, nested) in self.array(s, "services", path)?.iter().enumerate() {
            self.service(nested, &format!("{path}.services[{i}]"))?;
        }
        Ok(())
    }

    fn dependency(&mut self, d: &Value, path: &str) -> Res<()> {
        self.object(d, path)?;
        let r = self
            .opt_str(d, "ref", path)?
            .ok_or_else(|| self.err(path, "a dependency needs a `ref`"))?;
        if !self.refs.contains(r) {
            return Err(self.err(&format!("{path}.ref"), format!("unknown bom-ref {r:?}")));
        }
        let mut on = Vec::new();
        for (i, t) in self.array(d, "dependsOn", path)?.iter().enumerate() {
            let at = format!("{path}.dependsOn[{i}]");
            let t = self.str(t, &at)?;
            if !self.refs.contains(t) {
                return Err(self.err(&at, format!("unknown bom-ref {t:?}")));
            }
            on.push(t.to_owned());
        }
        self.bom
            .depends_on
            .entry(r.to_owned())
            .or_default()
            .extend(on);
        Ok(())
    }
}

/// `runbom:` properties runbom does not know are refused (a typo would silently weaken matching).
fn check_known_properties(p: &Parser<'_>, props: &[(String, String, String)]) -> Res<()> {
    const KNOWN: &[&str] = &[
        "runbom:match",
        "runbom:provider",
        "runbom:kind",
        "runbom:path",
        "runbom:exec",
        "runbom:identity",
    ];
    for (n, _, at) in props {
        if n.starts_with("runbom:")
            && !KNOWN.contains(&n.as_str())
            && !n.starts_with("runbom:evidence:")
        {
            let at = at.trim_end_matches(".value");
            return Err(p.err(
                &format!("{at}.name"),
                format!("unknown runbom property {n:?}"),
            ));
        }
    }
    Ok(())
}

fn props_named<'p>(
    props: &'p [(String, String, String)],
    key: &'static str,
) -> impl Iterator<Item = &'p (String, String, String)> + 'p {
    props.iter().filter(move |(n, _, _)| n == key)
}

fn publisher(c: &Value) -> Option<String> {
    c.get("publisher")
        .and_then(Value::as_str)
        .or_else(|| {
            c.get("supplier")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
