//! An LLM exchange's GenAI reading ([`GenAi`]) on the stream and back. The names the reading
//! holds as `&'static str` (operation, provider, API) are kept only when this build knows them
//! (a newer node agent's new API reads as no reading); what the stream carries is bounded as the
//! node agent's own reading is ([`runbom_genai::limits`]).

use runbom_event::{GenAi, ToolCall, semconv::gen_ai_provider as provider};
use runbom_genai::{Api, limits};

use super::proto;

const OPERATIONS: [&str; 4] = ["chat", "generate_content", "embeddings", "text_completion"];
const PROVIDERS: [&str; 14] = [
    provider::OPENAI,
    provider::ANTHROPIC,
    provider::AWS_BEDROCK,
    provider::AZURE_AI_OPENAI,
    provider::AZURE_AI_INFERENCE,
    provider::GCP_GEMINI,
    provider::GCP_VERTEX_AI,
    provider::MISTRAL_AI,
    provider::GROQ,
    provider::DEEPSEEK,
    provider::X_AI,
    provider::PERPLEXITY,
    provider::COHERE,
    provider::OTHER,
];

pub fn to_proto(g: &GenAi) -> proto::GenAi {
    proto::GenAi {
        operation: g.operation.into(),
        provider: g.provider.into(),
        api: g.api.into(),
        request_model: g.request_model.clone(),
        response_model: g.response_model.clone(),
        response_id: g.response_id.clone(),
        input_tokens: g.input_tokens,
        output_tokens: g.output_tokens,
        finish_reasons: g.finish_reasons.clone(),
        max_tokens: g.max_tokens,
        temperature: g.temperature,
        streamed: g.streamed,
        tool_calls: g
            .tool_calls
            .iter()
            .map(|c| proto::ToolCall {
                name: c.name.clone(),
                id: c.id.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
        declared_tools: g.declared_tools.clone(),
        error_type: g.error_type.clone(),
        partial: g.partial,
        input_messages: g.input_messages.clone(),
        output_messages: g.output_messages.clone(),
    }
}

/// `None` when an operation, provider or API name is not one this build knows.
pub fn from_proto(g: proto::GenAi) -> Option<GenAi> {
    let known = |s: &str, names: &[&'static str]| names.iter().copied().find(|n| *n == s);
    let apis = Api::ALL.map(Api::name);
    let string = |s: String| bounded(s, limits::STRING);
    let strings = |v: Vec<String>, max: usize| v.into_iter().take(max).map(string).collect();
    Some(GenAi {
        operation: known(&g.operation, &OPERATIONS)?,
        provider: known(&g.provider, &PROVIDERS)?,
        api: known(&g.api, &apis)?,
        request_model: g.request_model.map(string),
        response_model: g.response_model.map(string),
        response_id: g.response_id.map(string),
        input_tokens: g.input_tokens,
        output_tokens: g.output_tokens,
        finish_reasons: strings(g.finish_reasons, limits::FINISH_REASONS),
        max_tokens: g.max_tokens,
        temperature: g.temperature.filter(|t| t.is_finite()),
        streamed: g.streamed,
        tool_calls: g
            .tool_calls
            .into_iter()
            .take(limits::TOOL_CALLS)
            .map(|c| ToolCall {
                name: string(c.name),
                id: c.id.map(string),
                arguments: c.arguments.map(|a| bounded(a, limits::ARGUMENTS)),
            })
            .collect(),
        declared_tools: strings(g.declared_tools, limits::TOOLS),
        error_type: g.error_type.map(string),
        partial: g.partial,
        input_messages: g.input_messages.filter(|m| m.len() <= limits::MESSAGES),
        output_messages: g.output_messages.filter(|m| m.len() <= limits::MESSAGES),
    })
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
pub(super) mod tests {
    use prost::Message;

    use super::*;

    /// A reading with every field set (the round trip in `convert` carries it too).
    pub fn exchange() -> GenAi {
        GenAi {
            operation: "chat",
            provider: "openai",
            api: "openai.chat_completions",
            request_model: Some("gpt-4o-mini".into()),
            response_model: Some("gpt-4o-mini-2024-07-18".into()),
            response_id: Some("chatcmpl-1".into()),
            input_tokens: Some(50),
            output_tokens: Some(15),
            finish_reasons: vec!["tool_calls".into()],
            max_tokens: Some(256),
            temperature: Some(0.2),
            streamed: true,
            tool_calls: vec![ToolCall {
                name: "read_file".into(),
                id: Some("call_1".into()),
                arguments: Some("{\"path\":\"[REDACTED]\"}".into()),
            }],
            declared_tools: vec!["read_file".into(), "http_post".into()],
            error_type: None,
            partial: false,
            input_messages: Some(r#"[{"role":"user","parts":[]}]"#.into()),
            output_messages: None,
        }
    }

    #[test]
    fn a_reading_round_trips_and_unknown_names_read_as_none() {
        let g = exchange();
        let bytes = to_proto(&g).encode_to_vec();
        let back = from_proto(proto::GenAi::decode(bytes.as_slice()).unwrap());
        assert_eq!(back.as_ref(), Some(&g));
        for api in Api::ALL {
            let mut p = to_proto(&g);
            p.api = api.name().into();
            assert!(from_proto(p).is_some(), "{}", api.name());
        }
        let mut p = to_proto(&g);
        p.api = "someone.new_api".into();
        assert_eq!(from_proto(p), None);
    }

    #[test]
    fn what_the_stream_carries_is_bounded() {
        let mut p = to_proto(&exchange());
        p.response_id = Some("é".repeat(limits::STRING));
        p.tool_calls = vec![p.tool_calls[0].clone(); limits::TOOL_CALLS + 5];
        p.finish_reasons = vec!["stop".into(); 1000];
        p.temperature = Some(f64::NAN);
        let g = from_proto(p).unwrap();
        assert_eq!(g.response_id.unwrap().len(), limits::STRING);
        assert_eq!(g.tool_calls.len(), limits::TOOL_CALLS);
        assert_eq!(g.finish_reasons.len(), limits::FINISH_REASONS);
        assert_eq!(g.temperature, None);
    }
}
