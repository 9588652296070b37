//! Reading a CycloneDX 1.6/1.7 document into the declared BOM's components: what each
//! component and service declares, checked, with `dependencies[]` between them.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    json::{BomError, Json, Res},
    model::{
        Agent, DataSource, DeclaredBom, Identity, IdentitySpec, McpServer, Model, Program, Service,
    },
};
use crate::{endpoint::Endpoint, glob::Glob};

/// The largest declared BOM runbom reads (16 MiB): a CycloneDX document of thousands of
/// components is a few MiB.
pub const MAX_BOM_BYTES: u64 = 16 * 1024 * 1024;

impl DeclaredBom {
    /// Reads and checks a BOM file; its path names it in errors. Only a regular file of at
    /// most [`MAX_BOM_BYTES`] is read (a FIFO, a device or a symlink to one is refused, and
    /// the open never waits for a writer), so a replaced path cannot hang or exhaust runbom.
    pub fn from_file(path: &std::path::Path) -> Result<Self, BomError> {
        let source_name = path.display().to_string();
        let text = super::read::bounded(path, MAX_BOM_BYTES)?;
        Self::parse(&text, &source_name)
    }

    /// Parses and checks BOM text.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, BomError> {
        let doc: Value = serde_json::from_str(text).map_err(|error| BomError::Json {
            source_name: source_name.to_owned(),
            error,
        })?;
        Parser {
            json: Json {
                source: source_name,
            },
            bom: DeclaredBom::empty(source_name),
            refs: BTreeSet::new(),
        }
        .document(&doc)
    }
}

struct Parser<'a> {
    json: Json<'a>,
    bom: DeclaredBom,
    /// Every `bom-ref` seen, whether runbom uses the component or not.
    refs: BTreeSet<String>,
}

impl Parser<'_> {
    fn document(mut self, doc: &Value) -> Res<DeclaredBom> {
        self.json.object(doc, "$")?;
        match self.json.opt_str(doc, "bomFormat", "$")? {
            Some("CycloneDX") => {}
            other => {
                return Err(self.json.err(
                    "$.bomFormat",
                    format!("expected \"CycloneDX\", found {other:?}"),
                ));
            }
        }
        match self.json.opt_str(doc, "specVersion", "$")? {
            Some("1.6" | "1.7") => {}
            other => {
                return Err(self.json.err(
                    "$.specVersion",
                    format!("runbom reads CycloneDX 1.6 and 1.7, found {other:?}"),
                ));
            }
        }
        self.bom.serial_number = self
            .json
            .opt_str(doc, "serialNumber", "$")?
            .unwrap_or("")
            .to_owned();
        if let Some(meta) = doc.get("metadata") {
            self.json.object(meta, "$.metadata")?;
            if let Some(c) = meta.get("component") {
                self.component(c, "$.metadata.component")?;
            }
        }
        for (i, c) in self.json.array(doc, "components", "$")?.iter().enumerate() {
            self.component(c, &format!("$.components[{i}]"))?;
        }
        for (i, s) in self.json.array(doc, "services", "$")?.iter().enumerate() {
            self.service(s, &format!("$.services[{i}]"))?;
        }
        for (i, d) in self
            .json
            .array(doc, "dependencies", "$")?
            .iter()
            .enumerate()
        {
            self.dependency(d, &format!("$.dependencies[{i}]"))?;
        }
        self.bom.index();
        Ok(self.bom)
    }

    /// The component's `bom-ref` (made from type and name when absent), checked unique.
    fn bom_ref(&mut self, obj: &Value, path: &str, kind: &str, name: &str) -> Res<String> {
        let r = match self.json.opt_str(obj, "bom-ref", path)? {
            Some(r) if !r.is_empty() => r.to_owned(),
            Some(_) => return Err(self.json.err(&format!("{path}.bom-ref"), "empty bom-ref")),
            None => format!("{kind}:{name}"),
        };
        if !self.refs.insert(r.clone()) {
            return Err(self.json.err(
                &format!("{path}.bom-ref"),
                format!("duplicate bom-ref {r:?}"),
            ));
        }
        Ok(r)
    }

    fn component(&mut self, c: &Value, path: &str) -> Res<()> {
        self.json.object(c, path)?;
        let ty = self.json.required(c, "type", path, "a component")?;
        let name = self
            .json
            .required(c, "name", path, "a component")?
            .to_owned();
        let bom_ref = self.bom_ref(c, path, ty, &name)?;
        let props = self.json.properties(c, path)?;
        let values = |key: &'static str| props_named(&props, key);
        check_known_properties(self, &props)?;
        let execs: Vec<Glob> = values("runbom:exec")
            .map(|(_, v, _)| Glob::path(v))
            .collect();
        for (_, v, at) in values("runbom:exec") {
            if v.is_empty() {
                return Err(self.json.err(at, "empty runbom:exec glob"));
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
                            self.json
                                .err(at, format!("runbom:match is key=glob, found {v:?}"))
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
                    specs.push(IdentitySpec::parse(v).map_err(|e| self.json.err(at, e))?);
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
        for (i, nested) in self.json.array(c, "components", path)?.iter().enumerate() {
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
        for (i, set) in self.json.array(c, "data", path)?.iter().enumerate() {
            let at = format!("{path}.data[{i}]");
            self.json.object(set, &at)?;
            if let Some(n) = self.json.opt_str(set, "name", &at)? {
                d.names.push(n.to_owned());
            }
            let Some(contents) = set.get("contents") else {
                continue;
            };
            let at = format!("{at}.contents");
            self.json.object(contents, &at)?;
            let Some(url) = self.json.opt_str(contents, "url", &at)? else {
                continue;
            };
            let at = format!("{at}.url");
            if let Some(p) = url.strip_prefix("file://") {
                if !p.starts_with('/') {
                    return Err(self.json.err(
                        &at,
                        format!("a file:// URL needs an absolute path: {url:?}"),
                    ));
                }
                // As the observed BOM writes it (and RFC 8089): `%20` is a space.
                d.paths.push(crate::iri::decode(p).into_owned());
            } else {
                d.endpoints
                    .push(Endpoint::parse(url).map_err(|e| self.json.err(&at, e))?);
            }
        }
        for (n, v, at) in props {
            if n == "runbom:path" {
                if !v.starts_with('/') {
                    return Err(self
                        .json
                        .err(at, format!("runbom:path needs an absolute path: {v:?}")));
                }
                d.paths.push(v.clone());
            }
        }
        self.bom.data.push(d);
        Ok(())
    }

    fn service(&mut self, s: &Value, path: &str) -> Res<()> {
        self.json.object(s, path)?;
        let name = self.json.required(s, "name", path, "a service")?.to_owned();
        let props = self.json.properties(s, path)?;
        check_known_properties(self, &props)?;
        let mut kind = "service";
        for (n, v, at) in &props {
            if n == "runbom:kind" {
                match v.as_str() {
                    "tool" => kind = "tool",
                    "service" => kind = "service",
                    "mcp-server" => kind = "mcp-server",
                    _ => {
                        return Err(self.json.err(
                            at,
                            format!(
                                "runbom:kind is `tool`, `service` or `mcp-server`, found {v:?}"
                            ),
                        ));
                    }
                }
            }
        }
        if kind != "mcp-server"
            && let Some((_, _, at)) = props.iter().find(|(n, _, _)| n == "runbom:exec")
        {
            return Err(self.json.err(
                at,
                "runbom:exec on a service needs runbom:kind = mcp-server (programs are components)",
            ));
        }
        let bom_ref = self.bom_ref(s, path, kind, &name)?;
        let mut endpoints = Vec::new();
        for (i, e) in self.json.array(s, "endpoints", path)?.iter().enumerate() {
            let at = format!("{path}.endpoints[{i}]");
            let raw = self.json.str(e, &at)?;
            endpoints.push(Endpoint::parse(raw).map_err(|r| self.json.err(&at, r))?);
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
        let tools_before = self.bom.tools.len();
        for (i, nested) in self.json.array(s, "services", path)?.iter().enumerate() {
            self.service(nested, &format!("{path}.services[{i}]"))?;
        }
        match kind {
            "tool" => self.bom.tools.push(svc),
            "mcp-server" => {
                let mut commands = Vec::new();
                for (_, v, at) in props_named(&props, "runbom:exec") {
                    if v.trim().is_empty() {
                        return Err(self.json.err(at, "empty runbom:exec glob"));
                    }
                    commands.push(Glob::name(v));
                }
                if commands.is_empty() && svc.endpoints.is_empty() {
                    return Err(self.json.err(
                        path,
                        "an mcp-server needs runbom:exec (a glob over its command line) or endpoints",
                    ));
                }
                // Its nested tools (pushed above) are the tools it may be called for.
                let tools = self.bom.tools[tools_before..]
                    .iter()
                    .map(|t| (t.name.clone(), t.bom_ref.clone()))
                    .collect();
                self.bom.mcp_servers.push(McpServer {
                    bom_ref: svc.bom_ref,
                    name: svc.name,
                    commands,
                    endpoints: svc.endpoints,
                    tools,
                });
            }
            _ => self.bom.services.push(svc),
        }
        Ok(())
    }

    fn dependency(&mut self, d: &Value, path: &str) -> Res<()> {
        self.json.object(d, path)?;
        let r = self.json.required(d, "ref", path, "a dependency")?;
        if !self.refs.contains(r) {
            return Err(self
                .json
                .err(&format!("{path}.ref"), format!("unknown bom-ref {r:?}")));
        }
        let mut on = Vec::new();
        for (i, t) in self.json.array(d, "dependsOn", path)?.iter().enumerate() {
            let at = format!("{path}.dependsOn[{i}]");
            let t = self.json.str(t, &at)?;
            if !self.refs.contains(t) {
                return Err(self.json.err(&at, format!("unknown bom-ref {t:?}")));
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
            return Err(p.json.err(
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
