//! Which LLM API an HTTP request speaks, and which provider serves it: from the path (the API)
//! and the host (the provider), never from the client's SDK.

use runbom_event::semconv::gen_ai_provider as provider;

/// The API shapes runbom reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST …/chat/completions` (`OpenAI` and every OpenAI-compatible server).
    OpenAiChat,
    /// `POST …/responses`.
    OpenAiResponses,
    /// `POST …/completions` (legacy text completions).
    OpenAiCompletions,
    /// `POST …/embeddings`.
    OpenAiEmbeddings,
    /// `POST …/v1/messages`.
    AnthropicMessages,
    /// `POST …/models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini,
    /// `POST /model/{modelId}/converse` or `/converse-stream`.
    BedrockConverse,
    /// Ollama's own `POST /api/chat` (a stream of JSON lines unless `"stream": false`).
    OllamaChat,
    /// Ollama's own `POST /api/generate`.
    OllamaGenerate,
}

impl Api {
    /// Every API runbom reads.
    pub const ALL: [Self; 9] = [
        Self::OpenAiChat,
        Self::OpenAiResponses,
        Self::OpenAiCompletions,
        Self::OpenAiEmbeddings,
        Self::AnthropicMessages,
        Self::Gemini,
        Self::BedrockConverse,
        Self::OllamaChat,
        Self::OllamaGenerate,
    ];

    /// `runbom.gen_ai.api`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAiChat => "openai.chat_completions",
            Self::OpenAiResponses => "openai.responses",
            Self::OpenAiCompletions => "openai.completions",
            Self::OpenAiEmbeddings => "openai.embeddings",
            Self::AnthropicMessages => "anthropic.messages",
            Self::Gemini => "gemini.generate_content",
            Self::BedrockConverse => "bedrock.converse",
            Self::OllamaChat => "ollama.chat",
            Self::OllamaGenerate => "ollama.generate",
        }
    }

    /// `gen_ai.operation.name`.
    #[must_use]
    pub fn operation(self) -> &'static str {
        match self {
            Self::OpenAiChat
            | Self::OpenAiResponses
            | Self::AnthropicMessages
            | Self::BedrockConverse
            | Self::OllamaChat => "chat",
            Self::OpenAiCompletions | Self::OllamaGenerate => "text_completion",
            Self::OpenAiEmbeddings => "embeddings",
            Self::Gemini => "generate_content",
        }
    }
}

/// What the request line and `Host` say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub api: Api,
    pub provider: &'static str,
    /// The model named in the path (Gemini, Bedrock).
    pub path_model: Option<String>,
}

/// The API and provider of a request to `host` (`Host` header, port allowed) for `target`;
/// `None` when the path is no LLM API runbom reads.
#[must_use]
pub fn detect(host: Option<&str>, target: &str) -> Option<Target> {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let host = host.map(host_name).unwrap_or_default();
    let (api, path_model) = if let Some((model, _)) = gemini_model(path) {
        (Api::Gemini, Some(model))
    } else if let Some(model) = bedrock_model(path) {
        (Api::BedrockConverse, Some(model))
    } else if path.ends_with("/chat/completions") {
        (Api::OpenAiChat, None)
    } else if path.ends_with("/responses") {
        (Api::OpenAiResponses, None)
    } else if path.ends_with("/completions") {
        (Api::OpenAiCompletions, None)
    } else if path.ends_with("/embeddings") {
        (Api::OpenAiEmbeddings, None)
    } else if path.ends_with("/v1/messages") {
        (Api::AnthropicMessages, None)
    } else if path.ends_with("/api/chat") {
        (Api::OllamaChat, None)
    } else if path.ends_with("/api/generate") {
        (Api::OllamaGenerate, None)
    } else {
        return None;
    };
    Some(Target {
        api,
        provider: provider_of(&host, api),
        path_model,
    })
}

/// The host without its port, lowercased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.split(']').next().map_or(host, |h| &h[1..])
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name.to_ascii_lowercase()
}

/// `gen_ai.provider.name` of a host (well-known values of the GenAI conventions).
fn provider_of(host: &str, api: Api) -> &'static str {
    let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    match host {
        "api.openai.com" => provider::OPENAI,
        "api.anthropic.com" => provider::ANTHROPIC,
        "generativelanguage.googleapis.com" => provider::GCP_GEMINI,
        "api.mistral.ai" => provider::MISTRAL_AI,
        "api.groq.com" => provider::GROQ,
        "api.deepseek.com" => provider::DEEPSEEK,
        "api.x.ai" => provider::X_AI,
        "api.perplexity.ai" => provider::PERPLEXITY,
        "api.cohere.com" | "api.cohere.ai" => provider::COHERE,
        _ if is("openai.azure.com") => provider::AZURE_AI_OPENAI,
        _ if is("services.ai.azure.com") => provider::AZURE_AI_INFERENCE,
        _ if is("aiplatform.googleapis.com") => provider::GCP_VERTEX_AI,
        _ if host.starts_with("bedrock-runtime") && host.ends_with(".amazonaws.com") => {
            provider::AWS_BEDROCK
        }
        // Bedrock's path is its own; anywhere else (a proxy, a VPC endpoint) it is still Bedrock.
        _ if api == Api::BedrockConverse => provider::AWS_BEDROCK,
        _ => provider::OTHER,
    }
}

/// `…/models/{model}:generateContent` (or `:streamGenerateContent`): the model and whether the
/// call streams.
fn gemini_model(path: &str) -> Option<(String, bool)> {
    let (before, method) = path.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    let model = before.rsplit_once("/models/")?.1;
    (!model.is_empty() && !model.contains('/')).then(|| (percent_decode(model), stream))
}

/// `/model/{modelId}/converse` or `/model/{modelId}/converse-stream`: the model id.
fn bedrock_model(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    matches!(op, "converse" | "converse-stream")
        .then(|| percent_decode(model))
        .filter(|m| !m.is_empty())
}

/// `%3A` → `:` (Bedrock model ids carry a version after a colon).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_and_providers() {
        let t = detect(Some("api.openai.com"), "/v1/chat/completions").unwrap();
        assert_eq!((t.api, t.provider), (Api::OpenAiChat, "openai"));
        let t = detect(Some("127.0.0.1:11434"), "/v1/chat/completions").unwrap();
        assert_eq!(
            t.provider, "_OTHER",
            "an OpenAI-compatible server is not OpenAI"
        );
        let t = detect(Some("api.anthropic.com"), "/v1/messages").unwrap();
        assert_eq!((t.api, t.provider), (Api::AnthropicMessages, "anthropic"));
        let t = detect(
            Some("generativelanguage.googleapis.com"),
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        )
        .unwrap();
        assert_eq!((t.api, t.provider), (Api::Gemini, "gcp.gemini"));
        assert_eq!(t.path_model.as_deref(), Some("gemini-2.5-flash"));
        let t = detect(
            Some("bedrock-runtime.us-east-1.amazonaws.com"),
            "/model/us.amazon.nova-micro-v1%3A0/converse",
        )
        .unwrap();
        assert_eq!((t.api, t.provider), (Api::BedrockConverse, "aws.bedrock"));
        assert_eq!(t.path_model.as_deref(), Some("us.amazon.nova-micro-v1:0"));
        let t = detect(
            Some("x.openai.azure.com:443"),
            "/openai/deployments/d/chat/completions?api-version=[REDACTED]",
        )
        .unwrap();
        assert_eq!(t.provider, "azure.ai.openai");
        let t = detect(Some("localhost:11434"), "/api/chat").unwrap();
        assert_eq!((t.api, t.provider), (Api::OllamaChat, "_OTHER"));
        assert_eq!(detect(Some("api.openai.com"), "/v1/models"), None);
        assert_eq!(detect(None, "/upload"), None);
    }
}
