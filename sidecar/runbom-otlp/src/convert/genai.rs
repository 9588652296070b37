//! The `gen_ai.*` attributes of a kernel `http.request` that was an LLM API call (contract §1).

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
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

use super::{kv_bool, kv_int, kv_str};

/// Appends what `g` says (`gen_ai.request.model` is the request's own attribute already).
pub(super) fn attributes(g: &GenAi, a: &mut Vec<KeyValue>) {
    a.push(kv_str(GEN_AI_OPERATION_NAME, g.operation));
    a.push(kv_str(GEN_AI_PROVIDER_NAME, g.provider));
    a.push(kv_str(RUNBOM_GEN_AI_API, g.api));
    if let Some(m) = &g.response_model {
        a.push(kv_str(GEN_AI_RESPONSE_MODEL, m));
    }
    if let Some(id) = &g.response_id {
        a.push(kv_str(GEN_AI_RESPONSE_ID, id));
    }
    for (key, n) in [
        (GEN_AI_USAGE_INPUT_TOKENS, g.input_tokens),
        (GEN_AI_USAGE_OUTPUT_TOKENS, g.output_tokens),
        (GEN_AI_REQUEST_MAX_TOKENS, g.max_tokens),
    ] {
        if let Some(n) = n {
            a.push(kv_int(key, i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }
    if let Some(t) = g.temperature {
        a.push(KeyValue {
            key: GEN_AI_REQUEST_TEMPERATURE.into(),
            value: Some(AnyValue {
                value: Some(Value::DoubleValue(t)),
            }),
        });
    }
    if !g.finish_reasons.is_empty() {
        a.push(kv_strs(GEN_AI_RESPONSE_FINISH_REASONS, &g.finish_reasons));
    }
    if g.streamed {
        a.push(kv_bool(RUNBOM_GEN_AI_STREAMED, true));
    }
    if !g.tool_calls.is_empty() {
        let names: Vec<&str> = g.tool_calls.iter().map(|c| c.name.as_str()).collect();
        a.push(kv_strs(RUNBOM_GEN_AI_TOOL_CALLS, &names));
        let ids: Vec<&str> = g
            .tool_calls
            .iter()
            .map(|c| c.id.as_deref().unwrap_or(""))
            .collect();
        a.push(kv_strs(RUNBOM_GEN_AI_TOOL_CALL_IDS, &ids));
        if g.tool_calls.iter().any(|c| c.arguments.is_some()) {
            let args: Vec<&str> = g
                .tool_calls
                .iter()
                .map(|c| c.arguments.as_deref().unwrap_or(""))
                .collect();
            a.push(kv_strs(RUNBOM_GEN_AI_TOOL_CALL_ARGUMENTS, &args));
        }
    }
    if !g.declared_tools.is_empty() {
        a.push(kv_strs(RUNBOM_GEN_AI_REQUEST_TOOLS, &g.declared_tools));
    }
    if let Some(e) = &g.error_type {
        a.push(kv_str(ERROR_TYPE, e));
    }
    if g.partial {
        a.push(kv_bool(RUNBOM_GEN_AI_PARTIAL, true));
    }
    for (key, messages) in [
        (GEN_AI_INPUT_MESSAGES, &g.input_messages),
        (GEN_AI_OUTPUT_MESSAGES, &g.output_messages),
    ] {
        if let Some(m) = messages {
            a.push(kv_str(key, m));
        }
    }
}

fn kv_strs<S: AsRef<str>>(key: &str, values: &[S]) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: values
                    .iter()
                    .map(|v| AnyValue {
                        value: Some(Value::StringValue(v.as_ref().into())),
                    })
                    .collect(),
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_attributes_only_when_read() {
        let keys = |g: &GenAi| {
            let mut a = Vec::new();
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
