//! The `gen_ai.*` attributes of a kernel `http.request` that was an LLM API call (contract §1).

use runbom_event::{
    GenAi,
    semconv::{
        ERROR_TYPE, GEN_AI_INPUT_MESSAGES, GEN_AI_OPERATION_NAME, GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MAX_TOKENS, GEN_AI_REQUEST_TEMPERATURE,
        GEN_AI_RESPONSE_FINISH_REASONS, GEN_AI_RESPONSE_ID, GEN_AI_RESPONSE_MODEL,
        GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS, RUNBOM_GEN_AI_API,
        RUNBOM_GEN_AI_PARTIAL, RUNBOM_GEN_AI_REQUEST_TOOLS, RUNBOM_GEN_AI_STREAMED,
        RUNBOM_GEN_AI_TOOL_CALL_ARGUMENTS, RUNBOM_GEN_AI_TOOL_CALL_IDS, RUNBOM_GEN_AI_TOOL_CALLS,
    },
};

use super::AttributeSink;

/// Appends what `g` says (`gen_ai.request.model` is the request's own attribute already).
pub(super) fn attributes(g: &GenAi, a: &mut impl AttributeSink) {
    a.str(GEN_AI_OPERATION_NAME, g.operation);
    a.str(GEN_AI_PROVIDER_NAME, g.provider);
    a.str(RUNBOM_GEN_AI_API, g.api);
    if let Some(m) = &g.response_model {
        a.str(GEN_AI_RESPONSE_MODEL, m);
    }
    if let Some(id) = &g.response_id {
        a.str(GEN_AI_RESPONSE_ID, id);
    }
    for (key, n) in [
        (GEN_AI_USAGE_INPUT_TOKENS, g.input_tokens),
        (GEN_AI_USAGE_OUTPUT_TOKENS, g.output_tokens),
        (GEN_AI_REQUEST_MAX_TOKENS, g.max_tokens),
    ] {
        if let Some(n) = n {
            a.int(key, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    if let Some(t) = g.temperature {
        a.double(GEN_AI_REQUEST_TEMPERATURE, t);
    }
    if !g.finish_reasons.is_empty() {
        a.strs(
            GEN_AI_RESPONSE_FINISH_REASONS,
            g.finish_reasons.iter().map(String::as_str),
        );
    }
    if g.streamed {
        a.bool(RUNBOM_GEN_AI_STREAMED, true);
    }
    if !g.tool_calls.is_empty() {
        a.strs(
            RUNBOM_GEN_AI_TOOL_CALLS,
            g.tool_calls.iter().map(|c| c.name.as_str()),
        );
        a.strs(
            RUNBOM_GEN_AI_TOOL_CALL_IDS,
            g.tool_calls.iter().map(|c| c.id.as_deref().unwrap_or("")),
        );
        if g.tool_calls.iter().any(|c| c.arguments.is_some()) {
            a.strs(
                RUNBOM_GEN_AI_TOOL_CALL_ARGUMENTS,
                g.tool_calls
                    .iter()
                    .map(|c| c.arguments.as_deref().unwrap_or("")),
            );
        }
    }
    if !g.declared_tools.is_empty() {
        a.strs(
            RUNBOM_GEN_AI_REQUEST_TOOLS,
            g.declared_tools.iter().map(String::as_str),
        );
    }
    if let Some(e) = &g.error_type {
        a.str(ERROR_TYPE, e);
    }
    if g.partial {
        a.bool(RUNBOM_GEN_AI_PARTIAL, true);
    }
    for (key, messages) in [
        (GEN_AI_INPUT_MESSAGES, &g.input_messages),
        (GEN_AI_OUTPUT_MESSAGES, &g.output_messages),
    ] {
        if let Some(m) = messages {
            a.str(key, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_attributes_only_when_read() {
        let keys = |g: &GenAi| {
            let mut a: Vec<opentelemetry_proto::tonic::common::v1::KeyValue> = Vec::new();
            attributes(g, &mut a);
            a.into_iter().map(|kv| kv.key).collect::<Vec<_>>()
        };
        let mut g = GenAi {
            operation: "chat",
            provider: "openai",
            api: "openai.chat_completions",
            ..GenAi::default()
        };
        let off = keys(&g);
        assert!(!off.iter().any(|k| k.ends_with(".messages")), "{off:?}");
        g.input_messages = Some("[]".into());
        g.output_messages = Some("[]".into());
        let on = keys(&g);
        assert!(on.iter().any(|k| k == GEN_AI_INPUT_MESSAGES), "{on:?}");
        assert!(on.iter().any(|k| k == GEN_AI_OUTPUT_MESSAGES), "{on:?}");
    }
}
