//! The runtime BOM: what was actually seen (agents, models and their providers, tools and where
//! they sent requests, endpoints, data sources, programs, identities), read from the file
//! exporter's OTLP/JSON (`traces.jsonl`, `logs.jsonl`) and written as CycloneDX 1.6 with the
//! evidence as properties (`runbom:evidence:first_seen`, `…:last_seen`, `…:count`,
//! `…:trace_id`, `…:workload`, `…:agent_ref`, `…:ai`, `…:drift_alerts`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::KeyValue,
};
use runbom_otlp::{
    json as otlp_json,
    signal::{Signal, SignalKind},
};
use serde_json::{Value, json};

use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_COMPONENT_REF, AIBOM_DRIFT_SUBJECT, AIBOM_IDENTITIES, EVENT_NAME,
    K8S_NAMESPACE_NAME, K8S_POD_SERVICE_ACCOUNT_NAME, K8S_SERVICEACCOUNT_NAME,
    PROCESS_EXECUTABLE_PATH, PROCESS_USER_ID, RUNBOM_EVENT, SERVICE_NAME, event, scope,
};

use crate::{
    bom::Kind,
    endpoint::Dest,
    iri,
    otlp::{self, rfc3339},
    scrub,
    span::{self, Activity, attr, attr_int},
};

mod record;
mod write;
use record::{ShadowIndex, add, endpoint_of, for_lines, observe, shadow_key, uses};
use write::{evidence, file_name, prepend, prop, rfc3339_secs, serial};

#[derive(Debug, thiserror::Error)]
pub enum ObservedError {
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}:{line}: not an OTLP/JSON export request: {error}")]
    Parse {
        path: String,
        line: usize,
        error: otlp_json::JsonError,
    },
    #[error("{dir}: neither traces.jsonl nor logs.jsonl found")]
    Empty { dir: String },
}

impl From<otlp_json::FileError> for ObservedError {
    fn from(error: otlp_json::FileError) -> Self {
        match error {
            otlp_json::FileError::Io { path, source } => Self::Read {
                path: path.display().to_string(),
                error: source,
            },
            otlp_json::FileError::Syntax { path, line, source } => Self::Parse {
                path: path.display().to_string(),
                line,
                error: source.into(),
            },
        }
    }
}

/// An MCP server as the declared-BOM format declares one: `runbom:kind` = `mcp-server`, its
/// command line as `runbom:exec`, the tools called on it as nested tool services.
fn mcp_server(r: &str, e: &Entry, props: Vec<Value>) -> Value {
    let tools: Vec<Value> = e
        .mcp_tools
        .iter()
        .flatten()
        .map(|t| {
            json!({
                "bom-ref": format!("{r}:tool:{t}"), "name": t,
                "properties": [prop("runbom:kind", "tool")],
            })
        })
        .collect();
    json!({
        "bom-ref": r, "name": e.name,
        "properties": prepend(
            [prop("runbom:kind", "mcp-server"), prop("runbom:exec", &e.name)].into_iter(),
            props,
        ),
        "services": tools,
    })
}

/// Evidence examples kept per entry.
const EXAMPLES: usize = 3;
const WORKLOADS: usize = 8;
const TOOL_ENDPOINTS: usize = 32;

#[derive(Clone, Debug, Default)]
struct Entry {
    kind: Option<Kind>,
    name: String,
    provider: Option<String>,
    /// URLs or `tcp://host:port` (services), file prefixes or DB URLs (data), destinations (tools).
    endpoints: BTreeSet<String>,
    /// `runbom:match` values (agents).
    matches: BTreeSet<String>,
    first_ns: u64,
    last_ns: u64,
    count: u64,
    traces: Vec<String>,
    workloads: BTreeSet<String>,
    agent_refs: BTreeSet<String>,
    declared_refs: BTreeSet<String>,
    ai: bool,
    drift_alerts: u64,
    /// A shadow workload (an undeclared agent): what it used.
    shadow: bool,
    uses: BTreeSet<(Kind, String)>,
    /// An MCP server (a service named by its command line): the tools called on it.
    mcp_tools: Option<BTreeSet<String>>,
}

impl Entry {
    fn seen(&mut self, o: &Obs) {
        if self.count == 0 || o.time < self.first_ns {
            self.first_ns = o.time;
        }
        self.last_ns = self.last_ns.max(o.time);
        self.count += 1;
        if self.traces.len() < EXAMPLES && !o.trace.is_empty() && !self.traces.contains(&o.trace) {
            self.traces.push(o.trace.clone());
        }
        if let Some(w) = &o.workload
            && self.workloads.len() < WORKLOADS
        {
            self.workloads.insert(w.clone());
        }
        if let Some(a) = &o.agent_ref {
            self.agent_refs.insert(a.clone());
        }
        if let Some(r) = &o.component_ref {
            self.declared_refs.insert(r.clone());
        }
    }
}

/// One observed span or event, reduced to what the inventory needs.
#[derive(Clone, Debug)]
struct Obs {
    trace: String,
    span: String,
    parent: String,
    time: u64,
    activity: Activity,
    workload: Option<String>,
    exe: Option<String>,
    uid: Option<u32>,
    service_account: Option<String>,
    agent_ref: Option<String>,
    component_ref: Option<String>,
    /// `env:NAME` identities the process presented (`aibom.identities`).
    envs: Vec<String>,
    llm: bool,
    /// Where a model call went (`server.address`/`server.port` of the model span).
    model_api: Option<Dest>,
    pid: Option<u32>,
    container: Option<String>,
    /// `aibom.declared` as the processor wrote it.
    declared: Option<bool>,
    /// `gen_ai.request.model` of a captured request.
    request_model: Option<String>,
}

/// The inventory being built.
#[derive(Debug, Default)]
pub struct Inventory {
    obs: Vec<Obs>,
    /// (trace, span) of every span seen, so that kernel events' log records are not counted twice.
    spans: BTreeSet<(String, String)>,
    alerts: Vec<(Option<String>, Option<String>)>,
    /// Shadow workloads alerted (`shadow_ai`): executable, container, pid.
    shadow_alerts: Vec<(String, Option<String>, Option<u32>)>,
    /// Destinations never inventoried (runbom's own receivers).
    ignore: Vec<crate::endpoint::Endpoint>,
}

impl Inventory {
    #[must_use]
    pub fn new(ignore: Vec<crate::endpoint::Endpoint>) -> Self {
        Self {
            ignore,
            ..Self::default()
        }
    }

    /// Reads `traces.jsonl` and `logs.jsonl` of a file exporter's directory, each after its
    /// rotated backups.
    pub fn read_dir(&mut self, dir: &Path) -> Result<(), ObservedError> {
        let files = |stem| {
            otlp_json::signal_files(dir, stem).map_err(|error| ObservedError::Read {
                path: dir.display().to_string(),
                error,
            })
        };
        let (traces, logs) = (files("traces")?, files("logs")?);
        if traces.is_empty() && logs.is_empty() {
            return Err(ObservedError::Empty {
                dir: dir.display().to_string(),
            });
        }
        for path in &traces {
            for_lines(path, SignalKind::Traces, |signal| {
                if let Signal::Traces(req) = signal {
                    self.add_traces(&req);
                }
            })?;
        }
        for path in &logs {
            for_lines(path, SignalKind::Logs, |signal| {
                if let Signal::Logs(req) = signal {
                    self.add_logs(&req);
                }
            })?;
        }
        Ok(())
    }

    pub fn add_traces(&mut self, req: &ExportTraceServiceRequest) {
        for rs in &req.resource_spans {
            let res = otlp::resource_attrs(rs.resource.as_ref());
            for ss in &rs.scope_spans {
                let kernel = ss.scope.as_ref().is_some_and(|s| s.name == scope::KERNEL);
                for s in &ss.spans {
                    let trace = hex::encode(&s.trace_id);
                    let span = hex::encode(&s.span_id);
                    self.spans.insert((trace.clone(), span.clone()));
                    let o = observe(
                        &s.attributes,
                        res,
                        &s.name,
                        kernel,
                        s.start_time_unix_nano,
                        trace,
                        span,
                        hex::encode(&s.parent_span_id),
                    );
                    self.obs.push(o);
                }
            }
        }
    }

    pub fn add_logs(&mut self, req: &ExportLogsServiceRequest) {
        for rl in &req.resource_logs {
            let res = otlp::resource_attrs(rl.resource.as_ref());
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    let name = attr(&l.attributes, EVENT_NAME).unwrap_or(&l.event_name);
                    if name == event::AIBOM_DRIFT {
                        let kinds = span::attr_strs(&l.attributes, "aibom.drift.kinds");
                        if kinds.contains(&crate::verdict::flag::SHADOW_AI)
                            && let Some(exe) = attr(&l.attributes, "process.executable.path")
                        {
                            self.shadow_alerts.push((
                                exe.to_owned(),
                                attr(&l.attributes, "container.id").map(str::to_owned),
                                attr_int(&l.attributes, "process.pid")
                                    .and_then(|p| u32::try_from(p).ok()),
                            ));
                        }
                        self.alerts.push((
                            attr(&l.attributes, AIBOM_COMPONENT_REF).map(str::to_owned),
                            attr(&l.attributes, AIBOM_DRIFT_SUBJECT).map(str::to_owned),
                        ));
                        continue;
                    }
                    if attr(&l.attributes, RUNBOM_EVENT).is_none() {
                        continue;
                    }
                    let trace = hex::encode(&l.trace_id);
                    let span = hex::encode(&l.span_id);
                    if !l.span_id.is_empty() && self.spans.contains(&(trace.clone(), span.clone()))
                    {
                        continue;
                    }
                    let o = observe(
                        &l.attributes,
                        res,
                        "",
                        true,
                        l.time_unix_nano,
                        trace,
                        span,
                        String::new(),
                    );
                    self.obs.push(o);
                }
            }
        }
    }

    /// The inventory as a CycloneDX 1.6 document.
    #[must_use]
    pub fn to_cyclonedx(&self, source: &str) -> Value {
        let entries = self.entries();
        let mut components = Vec::new();
        let mut services = Vec::new();
        for ((kind, key), e) in &entries {
            let r = format!("observed:{}:{key}", kind.as_str());
            let props = evidence(e);
            match kind {
                Kind::Agent => components.push(json!({
                    "type": "application", "bom-ref": r, "name": e.name,
                    "properties": e.matches.iter().map(|m| json!({"name": "runbom:match", "value": m}))
                        .chain(props).collect::<Vec<_>>(),
                })),
                Kind::Model => {
                    let mut c = json!({
                        "type": "machine-learning-model", "bom-ref": r, "name": e.name,
                        "properties": e.provider.iter().map(|p| json!({"name": "runbom:provider", "value": p}))
                            .chain(props).collect::<Vec<_>>(),
                    });
                    if let Some(p) = &e.provider {
                        c["publisher"] = json!(p);
                    }
                    components.push(c);
                }
                Kind::Service if e.mcp_tools.is_some() => services.push(mcp_server(&r, e, props)),
                Kind::Tool | Kind::Service => services.push(json!({
                    "bom-ref": r, "name": e.name,
                    "endpoints": e.endpoints.iter().map(|u| iri::encode(u)).collect::<BTreeSet<_>>(),
                    "properties": prepend(
                        std::iter::once(prop("runbom:kind", kind.as_str()))
                            .chain(e.provider.iter().map(|p| prop("runbom:provider", p))),
                        props,
                    ),
                })),
                Kind::Data => components.push(json!({
                    "type": "data", "bom-ref": r, "name": e.name,
                    "data": e.endpoints.iter().map(|u| json!({"type": "dataset", "name": e.name, "contents": {"url": iri::encode(u)}})).collect::<Vec<_>>(),
                    "properties": props,
                })),
                Kind::Process => components.push(json!({
                    "type": "file", "bom-ref": r, "name": e.name,
                    "properties": prepend(std::iter::once(prop("runbom:exec", key)), props),
                })),
                Kind::Identity => components.push(json!({
                    "type": "cryptographic-asset", "bom-ref": r, "name": e.name,
                    "cryptoProperties": {"assetType": "related-crypto-material",
                                          "relatedCryptoMaterialProperties": {"type": "credential"}},
                    "properties": prepend(std::iter::once(prop("runbom:identity", key)), props),
                })),
            }
        }
        let mut doc = json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": serial(),
            "version": 1,
            "metadata": {
                "timestamp": rfc3339_secs(),
                "lifecycles": [{"phase": "operations"}],
                "tools": {"components": [{"type": "application", "name": "runbom", "version": env!("CARGO_PKG_VERSION")}]},
                "properties": [{"name": "runbom:evidence:source", "value": source}],
            },
            "components": components,
        });
        if !services.is_empty() {
            doc["services"] = json!(services);
        }
        // What each shadow workload used.
        let deps: Vec<Value> = entries
            .iter()
            .filter(|(_, e)| e.shadow)
            .map(|((kind, key), e)| {
                let on: Vec<String> = e
                    .uses
                    .iter()
                    .filter(|u| entries.contains_key(u))
                    .map(|(k, x)| format!("observed:{}:{x}", k.as_str()))
                    .collect();
                json!({"ref": format!("observed:{}:{key}", kind.as_str()), "dependsOn": on})
            })
            .collect();
        if !deps.is_empty() {
            doc["dependencies"] = json!(deps);
        }
        doc
    }

    /// Aggregates observations into inventory entries, keyed by kind and identity.
    // One case per activity, side by side.
    #[allow(clippy::too_many_lines)]
    fn entries(&self) -> BTreeMap<(Kind, String), Entry> {
        let mut out: BTreeMap<(Kind, String), Entry> = BTreeMap::new();
        let index: HashMap<(&str, &str), usize> = self
            .obs
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.span.is_empty())
            .map(|(i, o)| ((o.trace.as_str(), o.span.as_str()), i))
            .collect();
        let tool_of = |mut i: usize| -> Option<&str> {
            for _ in 0..64 {
                if let Activity::Tool { name } = &self.obs[i].activity {
                    return Some(name);
                }
                i = *index.get(&(self.obs[i].trace.as_str(), self.obs[i].parent.as_str()))?;
            }
            None
        };
        let shadow = self.shadow_workloads();
        for (i, o) in self.obs.iter().enumerate() {
            let sh = o
                .agent_ref
                .is_none()
                .then(|| shadow.of(o))
                .flatten()
                .map(str::to_owned);
            if let Some(w) = &sh {
                Self::shadow_use(&mut out, w, o);
            }
            if let Some(uid) = o.uid {
                add(
                    &mut out,
                    Kind::Identity,
                    format!("uid:{uid}"),
                    format!("uid {uid}"),
                    o,
                );
            }
            for env in &o.envs {
                let name = env.trim_start_matches("env:").to_owned();
                add(&mut out, Kind::Identity, env.clone(), name, o);
            }
            if let Some(sa) = &o.service_account {
                add(
                    &mut out,
                    Kind::Identity,
                    format!("k8s-sa:{sa}"),
                    sa.clone(),
                    o,
                );
            }
            if let Some(exe) = &o.exe {
                let e = add(&mut out, Kind::Process, exe.clone(), file_name(exe), o);
                e.ai |= span::is_model_server(exe);
            }
            match &o.activity {
                Activity::Agent { name } => {
                    let name = name
                        .clone()
                        .or_else(|| o.workload.clone())
                        .unwrap_or_else(|| "unknown".into());
                    let e = add(&mut out, Kind::Agent, name.clone(), name.clone(), o);
                    e.ai = true;
                    e.matches.insert(format!("gen_ai.agent.name={name}"));
                    if let Some(w) = &o.workload {
                        e.matches.insert(format!("service.name={w}"));
                    }
                }
                Activity::Model {
                    model, provider, ..
                } => {
                    let m = model.clone().unwrap_or_else(|| "unknown".into());
                    let key = format!("{m}@{}", provider.as_deref().unwrap_or(""));
                    let e = add(&mut out, Kind::Model, key, m, o);
                    e.ai = true;
                    e.provider.clone_from(provider);
                    if let Some(dest) = &o.model_api
                        && !self.ignore.iter().any(|e| e.matches(dest))
                    {
                        let api = add(
                            &mut out,
                            Kind::Service,
                            dest.host_port(),
                            dest.host_port(),
                            o,
                        );
                        api.endpoints.insert(endpoint_of(dest));
                        api.ai = true;
                        api.provider.clone_from(provider);
                    }
                }
                Activity::Tool { name } => {
                    add(&mut out, Kind::Tool, name.clone(), name.clone(), o).ai = true;
                }
                Activity::Http { dest, .. } | Activity::Connect { dest } => {
                    if dest.port == Some(53) || self.ignore.iter().any(|e| e.matches(dest)) {
                        continue;
                    }
                    let base = endpoint_of(dest);
                    let e = add(
                        &mut out,
                        Kind::Service,
                        dest.host_port(),
                        dest.host_port(),
                        o,
                    );
                    e.endpoints.insert(base.clone());
                    e.ai |= o.llm || sh.is_some();
                    if let Some(w) = &sh {
                        if o.llm {
                            e.provider = e.provider.take().or_else(|| span::provider_of_host(dest));
                        }
                        uses(&mut out, w, Kind::Service, dest.host_port());
                    }
                    if let Some(t) = tool_of(i) {
                        let t = out.entry((Kind::Tool, t.to_owned())).or_default();
                        if t.endpoints.len() < TOOL_ENDPOINTS {
                            t.endpoints.insert(base);
                        }
                    }
                }
                Activity::Db {
                    system,
                    namespace,
                    collection,
                    dest,
                } => {
                    let url = dest.as_ref().map_or_else(
                        || {
                            format!(
                                "{system}://localhost/{}",
                                namespace.as_deref().unwrap_or("")
                            )
                        },
                        |d| format!("{system}://{}", d.host_port()),
                    );
                    let name = [namespace.as_deref(), collection.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(".");
                    add(
                        &mut out,
                        Kind::Data,
                        url.clone(),
                        if name.is_empty() {
                            system.clone()
                        } else {
                            name
                        },
                        o,
                    )
                    .endpoints
                    .insert(url);
                }
                Activity::File { path } => {
                    let dir = match path.rfind('/') {
                        Some(i) => &path[..=i],
                        None => path.as_str(),
                    };
                    if let Some(w) = &sh
                        && !span::is_library_path(path)
                    {
                        uses(&mut out, w, Kind::Data, format!("file://{dir}"));
                    }
                    add(
                        &mut out,
                        Kind::Data,
                        format!("file://{dir}"),
                        dir.to_owned(),
                        o,
                    )
                    .endpoints
                    .insert(format!("file://{dir}"));
                }
                Activity::Exec { path } => {
                    add(&mut out, Kind::Process, path.clone(), file_name(path), o).ai |=
                        span::is_model_server(path);
                }
                Activity::Mcp {
                    tool, server, url, ..
                } => {
                    // The server, by its command line (or URL), and the tools called on it.
                    if let Some(cmd) = server.as_ref().or(url.as_ref()) {
                        let e = add(
                            &mut out,
                            Kind::Service,
                            format!("mcp:{cmd}"),
                            cmd.clone(),
                            o,
                        );
                        e.ai = true;
                        let tools = e.mcp_tools.get_or_insert_with(BTreeSet::new);
                        tools.extend(tool.iter().cloned());
                    }
                }
                Activity::Accept { .. } | Activity::Dns { .. } | Activity::Other => {}
            }
        }
        for (r, subject) in &self.alerts {
            for ((kind, key), e) in &mut out {
                let hit = r.as_ref().is_some_and(|r| e.declared_refs.contains(r))
                    || subject
                        .as_deref()
                        .is_some_and(|s| *kind == Kind::Service && s == key);
                if hit {
                    e.drift_alerts += 1;
                }
            }
        }
        for (exe, container, _) in &self.shadow_alerts {
            let key = shadow_key(exe, container.as_deref());
            if let Some(e) = out.get_mut(&(Kind::Agent, key)) {
                e.drift_alerts += 1;
            }
        }
        out.retain(|_, e| e.kind.is_some() && e.count > 0);
        out
    }

    /// The undeclared workloads that used AI: alerted as `shadow_ai`, or with AI-relevant
    /// records the processor marked `aibom.declared=false` outside any declared agent.
    fn shadow_workloads(&self) -> ShadowIndex {
        let mut index = ShadowIndex::default();
        for (exe, container, pid) in &self.shadow_alerts {
            index.insert(exe, container.as_deref(), *pid);
        }
        for o in &self.obs {
            if o.agent_ref.is_none()
                && o.declared == Some(false)
                && let Some(exe) = &o.exe
            {
                index.insert(exe, o.container.as_deref(), o.pid);
            }
        }
        index
    }

    /// Inventories what a shadow workload's observation adds: the undeclared agent, and the
    /// model of a captured LLM API request.
    fn shadow_use(out: &mut BTreeMap<(Kind, String), Entry>, w: &str, o: &Obs) {
        let exe = o.exe.as_deref().unwrap_or("");
        let agent = out.entry((Kind::Agent, w.to_owned())).or_default();
        if agent.kind.is_none() {
            agent.kind = Some(Kind::Agent);
            agent.name = file_name(exe);
            agent.ai = true;
            agent.shadow = true;
            agent
                .matches
                .insert(format!("process.executable.path={exe}"));
            if let Some(c) = &o.container {
                agent.matches.insert(format!("container.id={c}"));
            }
        }
        if o.declared == Some(false) {
            agent.seen(o);
        }
        if let (Some(m), Activity::Http { dest, .. }) = (&o.request_model, &o.activity) {
            let provider = span::provider_of_host(dest);
            let key = format!("{m}@{}", provider.as_deref().unwrap_or(""));
            let e = add(out, Kind::Model, key.clone(), m.clone(), o);
            e.ai = true;
            e.provider = provider;
            uses(out, w, Kind::Model, key);
        }
    }
}
