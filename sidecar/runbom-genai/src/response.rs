//! What an LLM API response says, one JSON object at a time: a whole body is one object (or,
//! for Gemini's streams without `alt=sse`, an array of them); an event stream is one object per
//! event. Each API's reader folds its objects into [`Fold`]; a stream's tool-call arguments are
//! put together by index as they arrive.

use runbom_event::{GenAi, ToolCall};
use serde_json::Value;

use crate::{Api, bounded, limits};

/// The response being read.
#[derive(Default)]
pub struct Fold {
    pub out: GenAi,
    calls: Vec<Call>,
    /// The text the model answered (streams: put together), for `gen_ai.output.messages`.
    text: String,
}

/// A tool call being put together (streams send its arguments in pieces).
struct Call {
    /// The stream's index of the call (or its position, in whole bodies).
    key: u64,
    name: String,
    id: Option<String>,
    arguments: String,
}

impl Fold {
    #[must_use]
    pub fn new(out: GenAi) -> Self {
        Self {
            out,
            calls: Vec::new(),
            text: String::new(),
        }
    }

    /// Reads one JSON object of an `api` response.
    pub fn object(&mut self, api: Api, v: &Value) {
        if let Some(items) = v.as_array() {
            for item in items.iter().take(limits::EVENTS) {
                self.object(api, item);
            }
            return;
        }
        if let Some(e) = v.get("error") {
            // OpenAI/Anthropic error bodies and stream events; Gemini's `error.status`.
            let kind = ["type", "status", "code"]
                .iter()
                .find_map(|k| e.get(*k).and_then(Value::as_str));
            if let Some(kind) = kind {
                self.out.error_type = Some(bounded(kind));
            }
        }
        match api {
            Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => self.openai_chat(v),
            Api::OpenAiResponses => self.openai_responses(v),
            Api::AnthropicMessages => self.anthropic(v),
            Api::Gemini => self.gemini(v),
            Api::BedrockConverse => self.bedrock(v),
            Api::OllamaChat | Api::OllamaGenerate => self.ollama(v),
        }
    }

    /// The attributes, with the tool calls put together.
    #[must_use]
    pub fn finish(mut self, capture_content: bool) -> GenAi {
        if capture_content {
            let calls: Vec<_> = self
                .calls
                .iter()
                .filter(|c| !c.name.is_empty())
                .map(|c| (c.name.clone(), c.id.clone(), c.arguments.clone()))
                .collect();
            let finish = self.out.finish_reasons.first().map(String::as_str);
            self.out.output_messages = crate::messages::output(&self.text, &calls, finish);
        }
        self.out.tool_calls = self
            .calls
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| ToolCall {
                name: c.name,
                id: c.id,
                arguments: capture_content.then(|| arguments(&c.arguments)),
            })
            .collect();
        self.out
    }

    fn ids(&mut self, v: &Value, id: &str, model: &str) {
        if let Some(s) = v.get(id).and_then(Value::as_str) {
            self.out.response_id = Some(bounded(s));
        }
        if let Some(s) = v.get(model).and_then(Value::as_str) {
            self.out.response_model = Some(bounded(s));
        }
    }

    fn usage(&mut self, usage: Option<&Value>, input: &str, output: &str) {
        let Some(u) = usage else { return };
        if let Some(n) = u.get(input).and_then(Value::as_u64) {
            self.out.input_tokens = Some(n);
        }
        if let Some(n) = u.get(output).and_then(Value::as_u64) {
            self.out.output_tokens = Some(n);
        }
    }

    fn finish_reason(&mut self, reason: Option<&Value>) {
        if let Some(r) = reason.and_then(Value::as_str)
            && self.out.finish_reasons.len() < limits::FINISH_REASONS
        {
            self.out.finish_reasons.push(bounded(r));
        }
    }

    /// Appends a piece of the answer's text (a whole body's, or a stream delta), bounded.
    fn text(&mut self, piece: Option<&Value>) {
        let Some(s) = piece.and_then(Value::as_str) else {
            return;
        };
        let room = limits::MESSAGES.saturating_sub(self.text.len());
        let mut cut = room.min(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
    }

    /// The call with stream index `key`, created at its first piece.
    fn call(&mut self, key: u64) -> Option<&mut Call> {
        let at = match self.calls.iter().position(|c| c.key == key) {
            Some(at) => at,
            None if self.calls.len() < limits::TOOL_CALLS => {
                self.calls.push(Call {
                    key,
                    name: String::new(),
                    id: None,
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
            None => return None,
        };
        self.calls.get_mut(at)
    }

    fn add_call(&mut self, key: u64, name: Option<&str>, id: Option<&str>, args: Option<&Value>) {
        let Some(call) = self.call(key) else { return };
        if let Some(name) = name {
            call.name = bounded(name);
        }
        if let Some(id) = id {
            call.id = Some(bounded(id));
        }
        if let Some(args) = args {
            append(&mut call.arguments, args);
        }
    }

    // --- per API ------------------------------------------------------------------------

    /// Chat Completions: `chat.completion` and `chat.completion.chunk` (streamed tool calls
    /// by `index`, arguments in pieces).
    fn openai_chat(&mut self, v: &Value) {
        self.ids(v, "id", "model");
        self.usage(v.get("usage"), "prompt_tokens", "completion_tokens");
        let choices = v.get("choices").and_then(Value::as_array);
        for (ci, choice) in choices.into_iter().flatten().enumerate() {
            self.finish_reason(choice.get("finish_reason"));
            let message = choice.get("message").or_else(|| choice.get("delta"));
            if ci == 0 {
                self.text(message.and_then(|m| m.get("content")));
            }
            let calls = message
                .and_then(|m| m.get("tool_calls"))
                .and_then(Value::as_array);
            for (i, c) in calls.into_iter().flatten().enumerate() {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                let f = c.get("function");
                self.add_call(
                    ((ci as u64) << 32) | index,
                    f.and_then(|f| f.get("name")).and_then(Value::as_str),
                    c.get("id").and_then(Value::as_str),
                    f.and_then(|f| f.get("arguments")),
                );
            }
        }
    }

    /// Responses API: a `response` object, or stream events that carry one
    /// (`response.created`, `response.completed`, …): the last one read holds the output.
    fn openai_responses(&mut self, v: &Value) {
        let r = v.get("response").unwrap_or(v);
        self.ids(r, "id", "model");
        self.usage(r.get("usage"), "input_tokens", "output_tokens");
        if let Some(e) = r.get("error").filter(|e| !e.is_null())
            && let Some(code) = e.get("code").and_then(Value::as_str)
        {
            self.out.error_type = Some(bounded(code));
        }
        let Some(output) = r.get("output").and_then(Value::as_array) else {
            return;
        };
        let status = r.get("status").and_then(Value::as_str);
        if matches!(status, Some("completed" | "incomplete" | "failed")) {
            self.out.finish_reasons.clear();
            let reason = r
                .get("incomplete_details")
                .and_then(|d| d.get("reason"))
                .or_else(|| r.get("status"));
            self.finish_reason(reason);
        }
        if output.is_empty() {
            return;
        }
        self.calls.clear();
        for (i, item) in output.iter().enumerate() {
            if item.get("type").and_then(Value::as_str) == Some("function_call") {
                self.add_call(
                    i as u64,
                    item.get("name").and_then(Value::as_str),
                    item.get("call_id").and_then(Value::as_str),
                    item.get("arguments"),
                );
            }
        }
    }

    /// Messages: a `message` object, or stream events (`message_start`, `content_block_*`,
    /// `message_delta`).
    fn anthropic(&mut self, v: &Value) {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(m) = v.get("message") {
                    self.anthropic(m);
                }
            }
            "message" => {
                self.ids(v, "id", "model");
                self.usage(v.get("usage"), "input_tokens", "output_tokens");
                self.finish_reason(v.get("stop_reason"));
                let content = v.get("content").and_then(Value::as_array);
                for (i, block) in content.into_iter().flatten().enumerate() {
                    self.anthropic_block(i as u64, block);
                }
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(block) = v.get("content_block") {
                    // The start's `input` is `{}`: the arguments come in deltas.
                    let block_kind = block.get("type").and_then(Value::as_str);
                    if block_kind == Some("tool_use") {
                        self.add_call(
                            index,
                            block.get("name").and_then(Value::as_str),
                            block.get("id").and_then(Value::as_str),
                            None,
                        );
                    }
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = v.get("delta");
                self.text(delta.and_then(|d| d.get("text")));
                if let Some(piece) = delta.and_then(|d| d.get("partial_json"))
                    && self.calls.iter().any(|c| c.key == index)
                {
                    self.add_call(index, None, None, Some(piece));
                }
            }
            "message_delta" => {
                self.finish_reason(v.get("delta").and_then(|d| d.get("stop_reason")));
                self.usage(v.get("usage"), "input_tokens", "output_tokens");
            }
            _ => {}
        }
    }

    fn anthropic_block(&mut self, index: u64, block: &Value) {
        if block.get("type").and_then(Value::as_str) == Some("text") {
            self.text(block.get("text"));
        }
        if block.get("type").and_then(Value::as_str) == Some("tool_use") {
            self.add_call(
                index,
                block.get("name").and_then(Value::as_str),
                block.get("id").and_then(Value::as_str),
                block.get("input"),
            );
        }
    }

    /// `GenerateContentResponse` (each stream event is one): usage is cumulative, the last
    /// wins; function calls arrive whole.
    fn gemini(&mut self, v: &Value) {
        self.ids(v, "responseId", "modelVersion");
        self.usage(
            v.get("usageMetadata"),
            "promptTokenCount",
            "candidatesTokenCount",
        );
        let candidates = v.get("candidates").and_then(Value::as_array);
        for candidate in candidates.into_iter().flatten() {
            self.finish_reason(candidate.get("finishReason"));
            let parts = candidate
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array);
            for part in parts.into_iter().flatten() {
                self.text(part.get("text"));
                if let Some(call) = part.get("functionCall") {
                    let key = self.calls.len() as u64;
                    self.add_call(
                        key,
                        call.get("name").and_then(Value::as_str),
                        call.get("id").and_then(Value::as_str),
                        call.get("args"),
                    );
                }
            }
        }
    }

    /// Ollama's `/api/chat` and `/api/generate`: a whole body, or one object per line of a
    /// stream; the last (`"done": true`) holds the counts and `done_reason`; tool calls arrive
    /// whole, their arguments an object.
    fn ollama(&mut self, v: &Value) {
        if let Some(s) = v.get("model").and_then(Value::as_str) {
            self.out.response_model = Some(bounded(s));
        }
        if let Some(e) = v.get("error").and_then(Value::as_str)
            && self.out.error_type.is_none()
        {
            self.out.error_type = Some(bounded(e));
        }
        self.text(
            v.get("message")
                .and_then(|m| m.get("content"))
                .or_else(|| v.get("response")),
        );
        let calls = v
            .get("message")
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array);
        for c in calls.into_iter().flatten() {
            let f = c.get("function");
            let key = self.calls.len() as u64;
            self.add_call(
                key,
                f.and_then(|f| f.get("name")).and_then(Value::as_str),
                c.get("id").and_then(Value::as_str),
                f.and_then(|f| f.get("arguments")),
            );
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.usage(Some(v), "prompt_eval_count", "eval_count");
            self.finish_reason(v.get("done_reason"));
        }
    }

    /// Converse: `output.message.content[].toolUse`, `stopReason`, `usage`; `converse-stream`:
    /// each message under its event type (`contentBlockStart` names a tool call,
    /// `contentBlockDelta` carries its input in pieces, `messageStop`, `metadata`), an
    /// exception as `{"exception": type}`.
    fn bedrock(&mut self, v: &Value) {
        if let Some(e) = v.get("exception").and_then(Value::as_str) {
            self.out.error_type = Some(bounded(e));
            return;
        }
        if let Some(s) = v.get("messageStop") {
            self.finish_reason(s.get("stopReason"));
            return;
        }
        if let Some(m) = v.get("metadata") {
            self.usage(m.get("usage"), "inputTokens", "outputTokens");
            return;
        }
        if let Some(b) = v.get("contentBlockStart") {
            let index = b
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(t) = b.get("start").and_then(|s| s.get("toolUse")) {
                self.add_call(
                    index,
                    t.get("name").and_then(Value::as_str),
                    t.get("toolUseId").and_then(Value::as_str),
                    None,
                );
            }
            return;
        }
        if let Some(d) = v.get("contentBlockDelta") {
            self.text(d.get("delta").and_then(|d| d.get("text")));
            let index = d
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let piece = d
                .get("delta")
                .and_then(|d| d.get("toolUse"))
                .and_then(|t| t.get("input"));
            if let Some(piece) = piece
                && self.calls.iter().any(|c| c.key == index)
            {
                self.add_call(index, None, None, Some(piece));
            }
            return;
        }
        self.usage(v.get("usage"), "inputTokens", "outputTokens");
        self.finish_reason(v.get("stopReason"));
        let content = v
            .get("output")
            .and_then(|o| o.get("message"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array);
        for (i, block) in content.into_iter().flatten().enumerate() {
            self.text(block.get("text"));
            if let Some(t) = block.get("toolUse") {
                self.add_call(
                    i as u64,
                    t.get("name").and_then(Value::as_str),
                    t.get("toolUseId").and_then(Value::as_str),
                    t.get("input"),
                );
            }
        }
    }
}

/// Appends a piece of arguments (a string piece, or a whole JSON value), bounded.
fn append(to: &mut String, piece: &Value) {
    if to.len() >= limits::ARGUMENTS {
        return;
    }
    match piece {
        Value::String(s) => to.push_str(s),
        Value::Null => {}
        other => to.push_str(&other.to_string()),
    }
    if to.len() > limits::ARGUMENTS {
        let mut cut = limits::ARGUMENTS;
        while !to.is_char_boundary(cut) {
            cut -= 1;
        }
        to.truncate(cut);
    }
}

/// Arguments as exported: redacted.
fn arguments(raw: &str) -> String {
    runbom_event::redact::text(raw).into_owned()
}
