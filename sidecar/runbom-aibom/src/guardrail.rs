//! A drift finding in the words of the GenAI conventions' guardrail attributes
//! (`gen_ai.guardrail.*`, `gen-ai-security.md`), next to runbom's own `aibom.*`: runbom is the
//! guardrail component, the declared AI-BOM the policy, the drift kind the policy rule. runbom
//! observes and reports; it enforces nothing, so the verdict is `warn` and the action `allow`.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::otlp::{kv_str, kv_string};

pub const COMPONENT_NAME: &str = "gen_ai.guardrail.component.name";
pub const VERDICT_TYPE: &str = "gen_ai.guardrail.verdict.type";
pub const VERDICT_REASON: &str = "gen_ai.guardrail.verdict.reason";
pub const ACTION_TYPE: &str = "gen_ai.guardrail.action.type";
pub const TARGET_TYPE: &str = "gen_ai.guardrail.target.type";
pub const TARGET_SUBTYPE: &str = "gen_ai.guardrail.target.subtype";
pub const POLICY_ID: &str = "gen_ai.guardrail.security.policy.id";
pub const POLICY_RULE_ID: &str = "gen_ai.guardrail.security.policy.rule.id";
pub const RISK_CATEGORY: &str = "gen_ai.guardrail.security.risk.category";

/// Most guardrail attributes of one finding.
pub const ATTRIBUTES: usize = 9;

/// The guardrail attributes of a finding of `kinds` (the first names the rule) against the BOM
/// with `serial` (empty: unnamed), found on a tool's action when `tool`.
#[must_use]
pub fn attributes(kinds: &[&str], serial: &str, tool: bool) -> Vec<KeyValue> {
    let mut out = Vec::new();
    push_attributes(&mut out, kinds, serial, tool);
    out
}

/// [`attributes`], added to `out`.
pub fn push_attributes(out: &mut Vec<KeyValue>, kinds: &[&str], serial: &str, tool: bool) {
    let Some(rule) = kinds.first() else {
        return;
    };
    out.reserve(ATTRIBUTES);
    out.extend([
        kv_str(COMPONENT_NAME, "runbom aibom"),
        kv_str(VERDICT_TYPE, "warn"),
        // Low-cardinality, no user content: the rule's own words.
        kv_str(VERDICT_REASON, reason(rule)),
        kv_str(ACTION_TYPE, "allow"),
        // What runbom judges is what the agent did with the model's output.
        kv_str(TARGET_TYPE, "output"),
        kv_str(TARGET_SUBTYPE, if tool { "tool_call" } else { "llm" }),
        kv_str(POLICY_RULE_ID, rule),
        kv_string(RISK_CATEGORY, custom(rule)),
    ]);
    if !serial.is_empty() {
        out.push(kv_str(POLICY_ID, serial));
    }
}

/// `custom:<rule>`, written without the formatting machinery (one per alert).
fn custom(rule: &str) -> String {
    let mut out = String::with_capacity(7 + rule.len());
    out.push_str("custom:");
    out.push_str(rule);
    out
}

fn reason(rule: &str) -> &'static str {
    match rule {
        "undeclared_model" => "Model not declared in the AI-BOM",
        "undeclared_tool" => "Tool not declared in the AI-BOM",
        "undeclared_endpoint" => "Endpoint not declared in the AI-BOM",
        "undeclared_data_source" => "Data source not declared in the AI-BOM",
        "undeclared_exec" => "Program not declared in the AI-BOM",
        "undeclared_file" => "File not declared in the AI-BOM",
        "shadow_ai" => "AI use by a workload the AI-BOM does not declare",
        r if r.starts_with("baseline_") => "Behaviour outside the learned baseline",
        _ => "Drift from the declared AI-BOM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_speak_the_conventions() {
        let a = attributes(&["undeclared_endpoint"], "urn:uuid:1", true);
        let get = |k: &str| {
            a.iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| crate::span::str_value(kv))
        };
        assert_eq!(get(VERDICT_TYPE), Some("warn"));
        assert_eq!(get(POLICY_ID), Some("urn:uuid:1"));
        assert_eq!(get(POLICY_RULE_ID), Some("undeclared_endpoint"));
        assert_eq!(get(RISK_CATEGORY), Some("custom:undeclared_endpoint"));
        assert_eq!(get(TARGET_SUBTYPE), Some("tool_call"));
        assert!(attributes(&[], "", false).is_empty());
    }
}
