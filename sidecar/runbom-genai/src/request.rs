//! What an LLM API request body says: the model, `max_tokens`, `temperature`, whether it asks
//! for a stream, and the names of the tools it declares. A body cut short by the capture is no
//! JSON: then only `model` is read (with the head parser's scanner).

use runbom_event::{GenAi, http};
use serde_json::Value;

use crate::{Api, bounded, limits};

/// Fills the request's part of `out` from `body` (with `capture_content`, its messages too).
pub fn read(api: Api, body: &[u8], capture_content: bool, out: &mut GenAi) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        if out.request_model.is_none() {
            out.request_model = http::model(body);
        }
        return;
    };
    if out.request_model.is_none() {
        out.request_model = v.get("model").and_then(Value::as_str).map(bounded);
    }
    let config = match api {
        Api::Gemini => v.get("generationConfig"),
        Api::BedrockConverse => v.get("inferenceConfig"),
        Api::OllamaChat | Api::OllamaGenerate => v.get("options"),
        _ => Some(&v),
    };
    if let Some(c) = config {
        out.max_tokens = [
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "maxOutputTokens",
            "maxTokens",
            "num_predict",
        ]
        .iter()
        .find_map(|k| c.get(*k).and_then(Value::as_u64));
        out.temperature = c
            .get("temperature")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite());
    }
    out.declared_tools = declared_tools(api, &v);
    if capture_content {
        out.input_messages = crate::messages::input(api, &v);
    }
}

/// Names of the tools the request offers the model.
fn declared_tools(api: Api, v: &Value) -> Vec<String> {
    let name = |t: &Value, path: &[&str]| {
        path.iter()
            .try_fold(t, |t, k| t.get(*k))
            .and_then(Value::as_str)
            .map(bounded)
    };
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<String> = match api {
        Api::Gemini => list(v.get("tools"))
            .iter()
            .flat_map(|t| list(t.get("functionDeclarations")))
            .filter_map(|f| name(&f, &["name"]))
            .collect(),
        Api::BedrockConverse => list(v.get("toolConfig").and_then(|c| c.get("tools")))
            .iter()
            .filter_map(|t| name(t, &["toolSpec", "name"]))
            .collect(),
        _ => list(v.get("tools"))
            .iter()
            .filter_map(|t| name(t, &["function", "name"]).or_else(|| name(t, &["name"])))
            .collect(),
    };
    names.into_iter().take(limits::TOOLS).collect()
}
