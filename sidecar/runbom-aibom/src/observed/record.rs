//! Recording what was seen: one observation per component, with its evidence, and the shadow
//! workloads' index.

use super::{
    AIBOM_AGENT_REF, AIBOM_COMPONENT_REF, AIBOM_IDENTITIES, Activity, BTreeMap, Dest, Entry,
    HashMap, K8S_NAMESPACE_NAME, K8S_POD_SERVICE_ACCOUNT_NAME, K8S_SERVICEACCOUNT_NAME, KeyValue,
    Kind, Obs, ObservedError, PROCESS_EXECUTABLE_PATH, PROCESS_USER_ID, Path, SERVICE_NAME, Signal,
    SignalKind, attr, attr_int, otlp_json, scrub, span,
};

/// Shadow workloads by process: (pid, executable) → the workload's agent key.
#[derive(Default)]
pub(super) struct ShadowIndex {
    by_pid: HashMap<(u32, String), String>,
}

impl ShadowIndex {
    pub(super) fn insert(&mut self, exe: &str, container: Option<&str>, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.by_pid
                .entry((pid, exe.to_owned()))
                .or_insert_with(|| shadow_key(exe, container));
        }
    }

    pub(super) fn of(&self, o: &Obs) -> Option<&str> {
        let key = (o.pid?, o.exe.clone()?);
        self.by_pid.get(&key).map(String::as_str)
    }
}

/// The observed agent key of a shadow workload: executable and container.
pub(super) fn shadow_key(exe: &str, container: Option<&str>) -> String {
    match container {
        Some(c) => format!("shadow:{exe}@{c}"),
        None => format!("shadow:{exe}"),
    }
}

/// Records that shadow workload `w` used the entry `(kind, key)`.
pub(super) fn uses(out: &mut BTreeMap<(Kind, String), Entry>, w: &str, kind: Kind, key: String) {
    if let Some(agent) = out.get_mut(&(Kind::Agent, w.to_owned())) {
        agent.uses.insert((kind, key));
    }
}

pub(super) fn add<'m>(
    out: &'m mut BTreeMap<(Kind, String), Entry>,
    kind: Kind,
    key: String,
    name: String,
    o: &Obs,
) -> &'m mut Entry {
    let e = out.entry((kind, key)).or_default();
    e.kind = Some(kind);
    if e.name.is_empty() {
        e.name = name;
    }
    e.seen(o);
    e
}

#[allow(clippy::too_many_arguments)]
pub(super) fn observe(
    attrs: &[KeyValue],
    res: &[KeyValue],
    name: &str,
    kernel: bool,
    time: u64,
    trace: String,
    span: String,
    parent: String,
) -> Obs {
    let activity = span::classify(attrs, name, kernel);
    let model_api = matches!(activity, Activity::Model { .. })
        .then(|| span::server_dest(attrs))
        .flatten();
    let llm = match &activity {
        Activity::Http { dest, .. } => span::is_llm_traffic(attrs, dest),
        _ => false,
    };
    let sa = attr(res, K8S_SERVICEACCOUNT_NAME).or_else(|| attr(res, K8S_POD_SERVICE_ACCOUNT_NAME));
    Obs {
        trace,
        span,
        parent,
        time,
        activity,
        workload: attr(res, SERVICE_NAME).map(str::to_owned),
        exe: attr(attrs, PROCESS_EXECUTABLE_PATH)
            .or_else(|| attr(res, PROCESS_EXECUTABLE_PATH))
            .filter(|_| kernel)
            .map(str::to_owned),
        uid: attr_int(attrs, PROCESS_USER_ID).and_then(|u| u32::try_from(u).ok()),
        service_account: sa.map(|sa| {
            format!(
                "{}/{sa}",
                attr(res, K8S_NAMESPACE_NAME).unwrap_or("default")
            )
        }),
        agent_ref: attr(attrs, AIBOM_AGENT_REF).map(str::to_owned),
        component_ref: attr(attrs, AIBOM_COMPONENT_REF).map(str::to_owned),
        envs: span::attr_strs(attrs, AIBOM_IDENTITIES)
            .into_iter()
            .filter(|s| s.starts_with("env:"))
            .map(str::to_owned)
            .collect(),
        llm,
        model_api,
        pid: attr_int(attrs, "process.pid")
            .or_else(|| attr_int(res, "process.pid"))
            .and_then(|p| u32::try_from(p).ok()),
        container: attr(attrs, "container.id")
            .or_else(|| attr(res, "container.id"))
            .map(str::to_owned),
        declared: span::attr_bool(attrs, "aibom.declared"),
        request_model: attr(attrs, "gen_ai.request.model").map(str::to_owned),
    }
}

/// How an observed destination is written as an endpoint: the URL without query, or
/// `tcp://host:port` for a connection.
pub(super) fn endpoint_of(dest: &Dest) -> String {
    match (&dest.scheme, &dest.path) {
        (Some(_), Some(_)) => scrub::url(&dest.display()),
        _ => format!("tcp://{}", dest.host_port()),
    }
}

/// Calls `f` on each export request of `kind` in the file exporter's file at `path`.
pub(super) fn for_lines(
    path: &Path,
    kind: SignalKind,
    mut f: impl FnMut(Signal),
) -> Result<(), ObservedError> {
    otlp_json::for_each_document(path, otlp_json::Layout::Lines, |doc| {
        let request =
            otlp_json::decode_value(kind, doc.value).map_err(|error| ObservedError::Parse {
                path: path.display().to_string(),
                line: doc.line,
                error,
            })?;
        f(request);
        Ok(())
    })
}
