//! A chain step's text (`model call: chat gpt-4o (provider openai)`) and the identity it ran
//! with (`as uid 1000, …`).

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde_json::Value;

use runbom_event::semconv::{
    DB_QUERY_TEXT, DB_STATEMENT, GEN_AI_CONVERSATION_ID, GEN_AI_INPUT_MESSAGES, GEN_AI_PROMPT,
    GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_TOOL_CALL_ARGUMENTS, INPUT_VALUE,
    K8S_NAMESPACE_NAME, K8S_POD_SERVICE_ACCOUNT_NAME, K8S_SERVICEACCOUNT_NAME,
    PROCESS_COMMAND_LINE, RUNBOM_FILE_FLAGS, TRACELOOP_ENTITY_INPUT,
};

use super::Step;
use crate::{
    arguments::{self, ArgumentPolicy},
    bom::{DeclaredBom, IdentitySpec},
    scrub,
    span::{Activity, attr},
};

/// What a span or kernel log record did, as a chain step's text, written at the end of `text`
/// (false: not a step, nothing written).
pub(crate) fn describe_into(
    text: &mut String,
    activity: &Activity,
    attrs: &[KeyValue],
    name: &str,
    policy: &ArgumentPolicy,
) -> bool {
    step_into(
        text,
        &Step {
            start: 0,
            activity,
            attrs,
            resource: &[],
            name,
            component: None,
            uid: None,
            envs: &[],
        },
        policy,
    )
}

/// `mcp: tools/call write_file (server node …/server-filesystem/dist/index.js /data)`, or
/// `(server https://mcp.example.com/mcp)` for a streamable-HTTP server.
fn mcp_step(t: &mut String, act: &Activity) {
    let Activity::Mcp {
        method,
        tool,
        server,
        url,
    } = act
    else {
        return;
    };
    push(t, &["mcp: ", method]);
    if let Some(tool) = tool {
        push(t, &[" ", tool]);
    }
    match (server, url) {
        (Some(c), _) => {
            push(t, &[" (server ", &scrub::command_line(c), ")"]);
        }
        (None, Some(u)) => {
            push(t, &[" (server ", &scrub::url(u), ")"]);
        }
        (None, None) => {}
    }
}

/// One step as text, written at the end of `t`; false (nothing written) for spans that are
/// not steps of the chain.
pub(super) fn step_into(t: &mut String, s: &Step<'_>, policy: &ArgumentPolicy) -> bool {
    let a = s.attrs;
    let declared = |t: &mut String| {
        if let Some(r) = s.component {
            push(t, &[" [", r, "]"]);
        }
    };
    match s.activity {
        Activity::Agent { name } => {
            push(t, &["prompt: ", name.as_deref().unwrap_or(s.name)]);
            declared(t);
            prompt_step(t, a, policy);
        }
        Activity::Model {
            model,
            provider,
            operation,
        } => {
            let model = model.as_deref().unwrap_or("?");
            push(t, &["model call: ", operation, " ", model]);
            if let Some(p) = provider {
                push(t, &[" (provider ", p, ")"]);
            }
            declared(t);
        }
        Activity::Tool { name } => {
            push(t, &["tool: ", name]);
            declared(t);
            if let Some(args) = attr(a, GEN_AI_TOOL_CALL_ARGUMENTS).or_else(|| attr(a, INPUT_VALUE))
            {
                t.push_str(" arguments ");
                scrub::push_text(t, &arguments::quote(args, policy), 2000);
            }
        }
        Activity::Http {
            dest,
            method,
            kernel,
        } => {
            let what = if *kernel {
                "captured request"
            } else {
                "api request"
            };
            push(t, &[what, ": ", method, " ", &scrub::url(&dest.display())]);
            declared(t);
        }
        Activity::Connect { dest } => {
            push(t, &["connect: ", &dest.host_port()]);
            declared(t);
        }
        Activity::Db {
            system,
            namespace,
            collection,
            ..
        } => {
            db_step(t, system, namespace.as_deref(), collection.as_deref(), a);
            declared(t);
        }
        Activity::File { path } => {
            let flags = attr(a, RUNBOM_FILE_FLAGS).unwrap_or("");
            push(t, &["data access: file.open ", path, " ", flags]);
            declared(t);
        }
        Activity::Exec { path } => {
            push(t, &["process: exec ", path]);
            if let Some(c) = attr(a, PROCESS_COMMAND_LINE) {
                push(t, &[" (", &scrub::command_line(c), ")"]);
            }
            declared(t);
        }
        Activity::Mcp { .. } => {
            mcp_step(t, s.activity);
            declared(t);
        }
        Activity::Dns { .. } | Activity::Accept { .. } | Activity::Other => return false,
    }
    true
}

/// `parts` one after the other at the end of `t` (what `write!` would give for `{}`s of
/// strings, without the formatting machinery: a chain writes a few per step).
fn push(t: &mut String, parts: &[&str]) {
    for p in parts {
        t.push_str(p);
    }
}

/// What an agent invocation's step says after its name: the prompt, quoted masked, and the
/// provider, model and conversation.
fn prompt_step(t: &mut String, a: &[KeyValue], policy: &ArgumentPolicy) {
    if let Some(p) = prompt(a) {
        let _ = write!(t, ": {:?}", arguments::mask(&p, &policy.mask));
    }
    for k in [
        GEN_AI_PROVIDER_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_CONVERSATION_ID,
    ] {
        if let Some(v) = attr(a, k) {
            push(t, &[", ", k, "=", v]);
        }
    }
}

/// `data access: postgresql shop.orders "SELECT …"`.
fn db_step(
    t: &mut String,
    system: &str,
    namespace: Option<&str>,
    collection: Option<&str>,
    a: &[KeyValue],
) {
    push(t, &["data access: ", system, " ", namespace.unwrap_or("")]);
    if let Some(c) = collection {
        push(t, &[".", c]);
    }
    if let Some(q) = attr(a, DB_QUERY_TEXT).or_else(|| attr(a, DB_STATEMENT)) {
        let _ = write!(t, " {:?}", scrub::text(q, 300));
    }
}

/// The prompt of an agent invocation: the last user message of `gen_ai.input.messages` (or the
/// OpenInference / OpenLLMetry input), redacted.
fn prompt(a: &[KeyValue]) -> Option<String> {
    let from_messages = attr(a, GEN_AI_INPUT_MESSAGES).and_then(|m| {
        let v: Value = serde_json::from_str(m).ok()?;
        let msgs = v.as_array()?;
        let user = msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        match user.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => user.get("parts").and_then(Value::as_array).map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        }
    });
    from_messages
        .or_else(|| {
            [
                GEN_AI_PROMPT,
                INPUT_VALUE,
                TRACELOOP_ENTITY_INPUT,
                "gen_ai.prompt.0.content",
            ]
            .iter()
            .find_map(|k| attr(a, k).map(str::to_owned))
        })
        .map(|p| scrub::text(&p, 2000))
}

/// What a step's identity (`as uid 1000, …`) is made of: steps alike in all of it have the same.
#[derive(Clone, Copy)]
pub(super) struct Who<'x> {
    uid: Option<u32>,
    service_account: Option<&'x str>,
    namespace: Option<&'x str>,
    /// The step's component (what it depends on may be an identity too).
    component: Option<&'x str>,
    /// `env:` identities the step's process presents.
    envs: &'x [String],
}

impl<'x> Who<'x> {
    pub(super) fn of(step: &Step<'x>) -> Self {
        let res = step.resource;
        Self {
            uid: step.uid,
            service_account: attr(res, K8S_SERVICEACCOUNT_NAME)
                .or_else(|| attr(res, K8S_POD_SERVICE_ACCOUNT_NAME)),
            namespace: attr(res, K8S_NAMESPACE_NAME),
            component: step.component,
            envs: step.envs,
        }
    }

    /// At the end of `key`, each part tagged or prefixed by its length: two alike write the
    /// same bytes, two unalike different ones.
    pub(super) fn key_into(&self, key: &mut Vec<u8>) {
        match self.uid {
            Some(u) => {
                key.push(1);
                key.extend_from_slice(&u.to_le_bytes());
            }
            None => key.push(0),
        }
        for part in [self.service_account, self.namespace, self.component] {
            match part {
                Some(p) => {
                    key.push(1);
                    key_str(key, p);
                }
                None => key.push(0),
            }
        }
        key.extend_from_slice(&(self.envs.len() as u64).to_le_bytes());
        for e in self.envs {
            key_str(key, e);
        }
    }
}

/// `s` prefixed by its length, at the end of `key`.
pub(super) fn key_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u64).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// `as uid 1000, identity:openai-api-key (env:OPENAI_API_KEY)`: the user a step ran as and
/// the declared identities it used (`who`), at the end of `out`.
pub(super) fn push_identity(out: &mut String, bom: &DeclaredBom, who: &Who<'_>) {
    let start = out.len();
    let next = |out: &mut String| {
        out.push_str(if out.len() == start { "as " } else { ", " });
    };
    let uid = who.uid;
    if let Some(u) = uid {
        next(out);
        let _ = write!(out, "uid {u}");
    }
    let (sa, ns) = (who.service_account, who.namespace);
    if let Some(sa) = sa {
        next(out);
        push(out, &["service account ", ns.unwrap_or("?"), "/", sa]);
    }
    // The step's component and what it depends on.
    let uses = |r: &str| {
        who.component
            .is_some_and(|c| c == r || bom.reach(c).is_some_and(|set| set.contains(r)))
    };
    for id in &bom.identities {
        let by_process = id.specs.iter().any(|s| match s {
            IdentitySpec::Uid(u) => uid == Some(*u),
            IdentitySpec::K8sServiceAccount { namespace, name } => {
                sa == Some(name.as_str()) && ns == Some(namespace.as_str())
            }
            IdentitySpec::Env(name) => who.envs.contains(name),
        });
        if by_process || uses(&id.bom_ref) {
            next(out);
            out.push_str(&id.bom_ref);
            out.push_str(" (");
            for (k, spec) in id.specs.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{spec}");
            }
            out.push(')');
        }
    }
    if out.len() == start {
        out.push_str("identity unknown");
    }
}
