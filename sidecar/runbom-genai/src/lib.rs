//! runbom's reading of LLM API exchanges captured in the kernel (pure, synchronous, bounded):
//! which API and provider a request speaks to ([`api`]), the response's HTTP framing (chunked,
//! gzip, deflate; [`framing`]), event streams ([`sse`]; Bedrock's binary ones: [`eventstream`]),
//! and what the request ([`request`]) and
//! response ([`response`]) say, as the `gen_ai.*` attributes of [`runbom_event::GenAi`].
//!
//! Message contents and tool-call arguments are read into the result only with
//! [`Options::capture_content`], redacted ([`messages`]).

pub mod api;
pub mod eventstream;
pub mod framing;
pub mod messages;
pub mod request;
pub mod response;
pub mod sse;

pub use api::{Api, Target, detect};
pub use framing::Completion;
use runbom_event::GenAi;

/// Bounds on what one exchange can make runbom hold.
pub mod limits {
    /// Longest string kept (ids, models, names, finish reasons).
    pub const STRING: usize = 256;
    /// Most tool calls kept per response.
    pub const TOOL_CALLS: usize = 64;
    /// Most tools read of a request's declarations.
    pub const TOOLS: usize = 128;
    /// Most finish reasons kept.
    pub const FINISH_REASONS: usize = 16;
    /// Longest arguments kept of one tool call.
    pub const ARGUMENTS: usize = 4096;
    /// Most stream events (or array items) read of one response.
    pub const EVENTS: usize = 100_000;
    /// Most bytes a response body may inflate to.
    pub const BODY: usize = 4 << 20;
    /// Longest `gen_ai.input.messages` / `gen_ai.output.messages` kept (`capture_content`).
    pub const MESSAGES: usize = 16 << 10;
}

/// How exchanges are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep tool-call arguments and the messages in and out (redacted, bounded).
    pub capture_content: bool,
}

/// One captured exchange.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The request target (query values may be redacted already).
    pub target: &'a str,
    /// What was captured of the request body.
    pub request_body: &'a [u8],
    /// What was captured of the response, from its status line on (may be empty).
    pub response: &'a [u8],
    /// The capture stopped before the response's end.
    pub response_cut: bool,
}

/// The `gen_ai.*` attributes of `x`; `None` when the request is no LLM API call runbom reads.
#[must_use]
pub fn parse(x: &Exchange<'_>, options: Options) -> Option<GenAi> {
    let target = detect(x.host, x.target)?;
    let mut fold = response::Fold::new(GenAi {
        operation: target.api.operation(),
        provider: target.provider,
        api: target.api.name(),
        request_model: target.path_model.clone(),
        ..GenAi::default()
    });
    request::read(
        target.api,
        x.request_body,
        options.capture_content,
        &mut fold.out,
    );
    let Some(head) = framing::parse_head(x.response) else {
        fold.out.partial = true;
        return Some(fold.finish(options.capture_content));
    };
    let (body, cut) = framing::body(x.response, &head, limits::BODY);
    let streamed = head.is_event_stream() || head.is_ndjson() || head.is_amazon_event_stream();
    if head.is_event_stream() {
        for data in sse::events(&body).take(limits::EVENTS) {
            if let Ok(v) = serde_json::from_slice(&data) {
                fold.object(target.api, &v);
            }
        }
    } else if head.is_amazon_event_stream() {
        // Each message's payload under its event type, as the SDKs' stream unions name them.
        for m in eventstream::messages(&body).take(limits::EVENTS) {
            let v = match (m.event_type, m.exception_type) {
                (_, Some(exception)) => serde_json::json!({ "exception": exception }),
                (Some(kind), None) => {
                    match serde_json::from_slice::<serde_json::Value>(m.payload) {
                        Ok(payload) => serde_json::json!({ kind: payload }),
                        Err(_) => continue,
                    }
                }
                (None, None) => continue,
            };
            fold.object(target.api, &v);
        }
    } else if head.is_ndjson() {
        // One JSON object per line (Ollama's streams); a last line cut short is skipped.
        for line in body.split(|&b| b == b'\n').take(limits::EVENTS) {
            if let Ok(v) = serde_json::from_slice(line) {
                fold.object(target.api, &v);
            }
        }
    } else if let Ok(v) = serde_json::from_slice(&body) {
        fold.object(target.api, &v);
    }
    let mut out = fold.finish(options.capture_content);
    out.streamed = streamed;
    out.partial = cut || x.response_cut;
    if head.status >= 400 && out.error_type.is_none() {
        out.error_type = Some(head.status.to_string());
    }
    Some(out)
}

/// A string as kept: bounded, redacted.
pub(crate) fn bounded(s: &str) -> String {
    let s: String = s.chars().take(limits::STRING).collect();
    runbom_event::redact::text(&s).into_owned()
}
