//! What runbom read of one LLM API exchange (a request and its response, captured in the
//! kernel): the `gen_ai.*` attributes of the telemetry contract. Parsing lives in
//! `runbom-genai`; this is the model every later stage reads.
//!
//! Message contents are never held here. Tool-call arguments are held only when the capture
//! was configured to keep them (`capture_content`), and then already redacted.

/// The `gen_ai.*` attributes of one LLM API exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenAi {
    /// `gen_ai.operation.name`: `chat`, `generate_content`, `embeddings`, `text_completion`.
    pub operation: &'static str,
    /// `gen_ai.provider.name`, from the host, path and headers (`_OTHER` for an
    /// OpenAI-compatible server runbom does not know by name).
    pub provider: &'static str,
    /// The API the exchange spoke (`runbom.gen_ai.api`), e.g. `openai.chat_completions`.
    pub api: &'static str,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub response_id: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub finish_reasons: Vec<String>,
    pub max_tokens: Option<u64>,
    /// Finite only (NaN is never stored, so the type is `Eq`).
    pub temperature: Option<f64>,
    /// The response was an event stream.
    pub streamed: bool,
    /// The tool calls the model asked for, in order.
    pub tool_calls: Vec<ToolCall>,
    /// The tools the request declared to the model (names only).
    pub declared_tools: Vec<String>,
    /// `error.type`: the API's error type (or the HTTP status class) when the call failed.
    pub error_type: Option<String>,
    /// The response was cut short (capture budget, or the exchange ended unseen): what is here
    /// is what was seen.
    pub partial: bool,
    /// `gen_ai.input.messages` (the conventions' JSON, redacted), only with `capture_content`.
    pub input_messages: Option<String>,
    /// `gen_ai.output.messages` (the same), only with `capture_content`.
    pub output_messages: Option<String>,
}

impl Eq for GenAi {}

/// A tool call the model asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub id: Option<String>,
    /// Redacted arguments, only with `capture_content`.
    pub arguments: Option<String>,
}
