//! `gen_ai.input.messages` and `gen_ai.output.messages` in the GenAI conventions' JSON shape
//! (`[{"role", "parts": [{"type": "text", "content"} | {"type": "tool_call", "id", "name",
//! "arguments"} | {"type": "tool_call_response", "id", "response"}], "finish_reason"?}]`), read
//! only under `capture_content`, redacted ([`runbom_event::redact::text`]) and bounded
//! ([`limits::MESSAGES`]: a longer list is cut to the messages that fit, the last ones kept for
//! input, the first for output).
//!
//! Input: the request's messages in the Chat Completions shape (`OpenAI` and every server
//! compatible with it, Ollama's `/api/chat`) and Anthropic Messages (with its `system`).
//! Output: the text and tool calls the response held, for every API
//! ([`crate::response::Fold`] collects them).

use serde_json::{Value, json};

use crate::{Api, limits};

/// The request's messages, for the APIs whose message shape is read; `None` otherwise.
#[must_use]
pub fn input(api: Api, request: &Value) -> Option<String> {
    let mut out = Vec::new();
    match api {
        Api::AnthropicMessages => {
            if let Some(system) = request.get("system") {
                out.push(message("system", anthropic_parts(system)));
            }
            for m in request.get("messages")?.as_array()? {
                out.push(message(role(m), anthropic_parts(m.get("content")?)));
            }
        }
        Api::OpenAiChat | Api::OllamaChat => {
            for m in request.get("messages")?.as_array()? {
                out.push(message(role(m), openai_parts(m)));
            }
        }
        _ => return None,
    }
    encode(out, true)
}

/// The response's one assistant message: its text, its tool calls, its finish reason.
#[must_use]
pub fn output(
    text: &str,
    calls: &[(String, Option<String>, String)],
    finish: Option<&str>,
) -> Option<String> {
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(json!({ "type": "text", "content": text }));
    }
    for (name, id, arguments) in calls {
        parts.push(tool_call(id.as_deref(), name, arguments));
    }
    if parts.is_empty() {
        return None;
    }
    let mut m = message("assistant", parts);
    if let Some(f) = finish {
        m["finish_reason"] = json!(f);
    }
    encode(vec![m], false)
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("user")
}

fn message(role: &str, parts: Vec<Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("role".into(), json!(role));
    m.insert("parts".into(), Value::Array(parts));
    Value::Object(m)
}

fn text(s: &str) -> Value {
    json!({ "type": "text", "content": s })
}

/// A tool call part; `arguments` as JSON when it is JSON (the conventions' shape), else as text.
fn tool_call(id: Option<&str>, name: &str, arguments: &str) -> Value {
    let args = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!(arguments));
    json!({ "type": "tool_call", "id": id, "name": name, "arguments": args })
}

/// A Chat Completions message: `content` (a string or text parts), `tool_calls`, and a `tool`
/// message's result.
fn openai_parts(m: &Value) -> Vec<Value> {
    let mut parts = Vec::new();
    let content = m.get("content");
    if role(m) == "tool" {
        let id = m.get("tool_call_id").and_then(Value::as_str);
        parts.push(json!({
            "type": "tool_call_response", "id": id,
            "response": content.cloned().unwrap_or(Value::Null),
        }));
        return parts;
    }
    match content {
        Some(Value::String(s)) => parts.push(text(s)),
        Some(Value::Array(items)) => parts.extend(
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .map(text),
        ),
        _ => {}
    }
    for c in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = c.get("function");
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let args = f.and_then(|f| f.get("arguments"));
        let args = match args {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let id = c.get("id").and_then(Value::as_str);
        parts.push(tool_call(id, name.unwrap_or(""), &args));
    }
    parts
}

/// Anthropic content: a string, or blocks (`text`, `tool_use`, `tool_result`).
fn anthropic_parts(content: &Value) -> Vec<Value> {
    let Some(blocks) = content.as_array() else {
        return content.as_str().map(text).into_iter().collect();
    };
    blocks
        .iter()
        .filter_map(|b| match b.get("type").and_then(Value::as_str)? {
            "text" => Some(text(b.get("text")?.as_str()?)),
            "tool_use" => Some(json!({
                "type": "tool_call", "id": b.get("id"), "name": b.get("name"),
                "arguments": b.get("input"),
            })),
            "tool_result" => Some(json!({
                "type": "tool_call_response", "id": b.get("tool_use_id"),
                "response": b.get("content"),
            })),
            _ => None,
        })
        .collect()
}

/// The messages as JSON, redacted, within [`limits::MESSAGES`] bytes: whole messages only, the
/// latest kept when `keep_last` (a conversation's end says most), else the first.
fn encode(mut messages: Vec<Value>, keep_last: bool) -> Option<String> {
    loop {
        if messages.is_empty() {
            return None;
        }
        let s = serde_json::to_string(&messages).ok()?;
        let s = runbom_event::redact::text(&s).into_owned();
        if s.len() <= limits::MESSAGES {
            return Some(s);
        }
        if keep_last {
            messages.remove(0);
        } else {
            messages.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_in_the_conventions_shape() {
        let request = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "22C"},
        ]});
        let got: Value = serde_json::from_str(&input(Api::OpenAiChat, &request).unwrap()).unwrap();
        assert_eq!(
            got,
            json!([
                {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1",
                    "name": "weather", "arguments": {"city": "Paris"}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1",
                    "response": "22C"}]},
            ])
        );
        assert_eq!(input(Api::Gemini, &request), None, "a shape not read");
    }

    #[test]
    fn messages_are_redacted_and_bounded() {
        let key = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz";
        let big = "x".repeat(limits::MESSAGES / 2);
        let request = json!({"messages": [
            {"role": "user", "content": big},
            {"role": "user", "content": big},
            {"role": "user", "content": format!("my key is {key}")},
        ]});
        let got = input(Api::OpenAiChat, &request).unwrap();
        assert!(!got.contains(key), "{got}");
        assert!(got.len() <= limits::MESSAGES);
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            v.as_array().unwrap().len(),
            2,
            "the latest messages that fit"
        );
        let out = output("ok", &[("f".into(), None, "{}".into())], Some("stop")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["finish_reason"], "stop");
        assert_eq!(v[0]["parts"][1]["type"], "tool_call");
    }
}
