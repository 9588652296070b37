//! What a span (or a kernel event's log record) is, read from the attribute families runbom
//! understands: OpenTelemetry GenAI (`gen_ai.*`, legacy `gen_ai.system` normalised),
//! OpenInference (`openinference.span.kind`, `llm.*`, `tool.name`, `agent.name`), OpenLLMetry
//! (`traceloop.*`), HTTP/DB client conventions and runbom's kernel events (contract §1).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use crate::endpoint::Dest;

/// Scope of runbom's kernel spans.
pub const KERNEL_SCOPE: &str = "runbom.kernel";

/// The attribute value of `key` as text (strings as they are, other scalars formatted).
#[must_use]
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) => Some(s.as_str()),
            _ => None,
        })
}

/// The string values of an array attribute (or a single string) `key`.
#[must_use]
pub fn attr_strs<'a>(attrs: &'a [KeyValue], key: &str) -> Vec<&'a str> {
    let Some(value) = attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
    else {
        return Vec::new();
    };
    match &value.value {
        Some(Value::StringValue(s)) => vec![s.as_str()],
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The attribute value of `key` as an integer (ints, or strings holding one).
#[must_use]
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::IntValue(i)),
            }) => Some(*i),
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) => s.parse().ok(),
            _ => None,
        })
}

/// Frameworks that instrumentations put where a provider belongs; they are not providers.
const FRAMEWORKS: &[&str] = &[
    "langchain",
    "langgraph",
    "llama_index",
    "llamaindex",
    "crewai",
    "autogen",
    "haystack",
    "dspy",
    "semantic_kernel",
    "openai_agents",
    "smolagents",
    "pydantic_ai",
    "litellm",
    "guardrails",
    "instructor",
];

/// A provider name as the GenAI conventions spell it now (`gen_ai.provider.name`), from
/// current or legacy (`gen_ai.system`), OpenInference or OpenLLMetry spellings.
#[must_use]
pub fn normalise_provider(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "az.ai.openai" | "azure_openai" | "azure-openai" | "azure" => "azure.ai.openai".into(),
        "az.ai.inference" => "azure.ai.inference".into(),
        "vertex_ai" | "vertexai" | "google_vertex" => "gcp.vertex_ai".into(),
        "gemini" | "google" | "google_genai" => "gcp.gemini".into(),
        "bedrock" | "aws_bedrock" | "aws" => "aws.bedrock".into(),
        "mistralai" | "mistral" => "mistral_ai".into(),
        "watsonx" | "ibm" => "ibm.watsonx.ai".into(),
        "x.ai" | "grok" => "xai".into(),
        _ => p,
    }
}

/// A provider attribute's value, unless it names a framework rather than a provider.
#[must_use]
pub fn provider_of(attrs: &[KeyValue]) -> Option<String> {
    [
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
    ]
    .iter()
    .filter_map(|k| attr(attrs, k))
    .map(normalise_provider)
    .find(|p| !p.is_empty() && !FRAMEWORKS.contains(&p.as_str()))
}

/// What a span does, as far as the AI-BOM is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activity {
    /// An agent invocation (`invoke_agent`, OpenInference AGENT, OpenLLMetry agent/workflow).
    Agent {
        name: Option<String>,
    },
    /// A model call.
    Model {
        model: Option<String>,
        provider: Option<String>,
        operation: String,
    },
    Tool {
        name: String,
    },
    /// An HTTP request (application client span or kernel `http.request`).
    Http {
        dest: Dest,
        method: String,
        kernel: bool,
    },
    /// A kernel `net.connect`.
    Connect {
        dest: Dest,
    },
    /// A database client call.
    Db {
        system: String,
        namespace: Option<String>,
        collection: Option<String>,
        dest: Option<Dest>,
    },
    File {
        path: String,
    },
    Exec {
        path: String,
    },
    Dns {
        name: String,
    },
    Accept {
        port: Option<u16>,
    },
    Other,
}

/// Reads a span's (or event log record's) activity from its attributes.
#[must_use]
pub fn classify(attrs: &[KeyValue], name: &str, kernel: bool) -> Activity {
    if kernel || attr(attrs, "runbom.event").is_some() {
        return kernel_activity(attrs);
    }
    let op = attr(attrs, "gen_ai.operation.name");
    let oi = attr(attrs, "openinference.span.kind").map(str::to_ascii_uppercase);
    let tl = attr(attrs, "traceloop.span.kind");
    let entity = attr(attrs, "traceloop.entity.name");
    if op == Some("execute_tool") || oi.as_deref() == Some("TOOL") || tl == Some("tool") {
        let tool = attr(attrs, "gen_ai.tool.name")
            .or_else(|| attr(attrs, "tool.name"))
            .or(entity)
            .map(str::to_owned)
            .or_else(|| name.strip_prefix("execute_tool ").map(str::to_owned));
        if let Some(name) = tool {
            return Activity::Tool { name };
        }
    }
    if matches!(op, Some("invoke_agent" | "create_agent"))
        || oi.as_deref() == Some("AGENT")
        || matches!(tl, Some("agent" | "workflow"))
    {
        let name = attr(attrs, "gen_ai.agent.name")
            .or_else(|| attr(attrs, "agent.name"))
            .or(if tl.is_some() { entity } else { None })
            .map(str::to_owned);
        return Activity::Agent { name };
    }
    let model = attr(attrs, "gen_ai.response.model")
        .or_else(|| attr(attrs, "gen_ai.request.model"))
        .or_else(|| attr(attrs, "llm.model_name"))
        .or_else(|| attr(attrs, "llm.response.model"))
        .or_else(|| attr(attrs, "llm.request.model"))
        .map(str::to_owned);
    let model_op = matches!(
        op,
        Some("chat" | "text_completion" | "generate_content" | "embeddings" | "completion")
    ) || matches!(oi.as_deref(), Some("LLM" | "EMBEDDING"))
        || attr(attrs, "llm.request.type").is_some()
        || (model.is_some() && op.is_none() && oi.is_none());
    if model_op {
        return Activity::Model {
            model,
            provider: provider_of(attrs),
            operation: op
                .map(str::to_owned)
                .or_else(|| attr(attrs, "llm.request.type").map(str::to_owned))
                .unwrap_or_else(|| "chat".into()),
        };
    }
    if let Some(system) = attr(attrs, "db.system.name").or_else(|| attr(attrs, "db.system")) {
        return Activity::Db {
            system: system.to_owned(),
            namespace: attr(attrs, "db.namespace")
                .or_else(|| attr(attrs, "db.name"))
                .map(str::to_owned),
            collection: attr(attrs, "db.collection.name")
                .or_else(|| attr(attrs, "db.sql.table"))
                .map(str::to_owned),
            dest: server_dest(attrs),
        };
    }
    let method = attr(attrs, "http.request.method").or_else(|| attr(attrs, "http.method"));
    let url = attr(attrs, "url.full").or_else(|| attr(attrs, "http.url"));
    if let Some(method) = method {
        let dest = url.and_then(Dest::from_url).or_else(|| server_dest(attrs));
        // Server spans are requests received, not made.
        if let Some(dest) = dest
            && (url.is_some() || attr(attrs, "server.address").is_some())
        {
            return Activity::Http {
                dest,
                method: method.to_owned(),
                kernel: false,
            };
        }
    }
    Activity::Other
}

fn kernel_activity(attrs: &[KeyValue]) -> Activity {
    let text = |k| attr(attrs, k).map(str::to_owned);
    match attr(attrs, "runbom.event").unwrap_or("") {
        "net.connect" => Activity::Connect {
            dest: peer_dest(attrs).unwrap_or_default(),
        },
        "http.request" => {
            let mut dest = attr(attrs, "url.full")
                .and_then(Dest::from_url)
                .or_else(|| server_dest(attrs))
                .unwrap_or_default();
            if dest.ip.is_none()
                && let Some(peer) = attr(attrs, "network.peer.address").and_then(|a| a.parse().ok())
            {
                dest.ip = Some(peer);
            }
            Activity::Http {
                dest,
                method: text("http.request.method").unwrap_or_default(),
                kernel: true,
            }
        }
        "file.open" => Activity::File {
            path: text("file.path").unwrap_or_default(),
        },
        "process.exec" => Activity::Exec {
            path: text("process.executable.path").unwrap_or_default(),
        },
        "dns.query" => Activity::Dns {
            name: text("dns.question.name").unwrap_or_default(),
        },
        "net.accept" => Activity::Accept {
            port: attr_int(attrs, "server.port").and_then(|p| u16::try_from(p).ok()),
        },
        _ => Activity::Other,
    }
}

/// `server.address`:`server.port`, with `network.peer.address` as the IP when the address is a name.
#[must_use]
pub fn server_dest(attrs: &[KeyValue]) -> Option<Dest> {
    let host = attr(attrs, "server.address").or_else(|| attr(attrs, "network.peer.address"))?;
    let port = attr_int(attrs, "server.port")
        .or_else(|| attr_int(attrs, "network.peer.port"))
        .and_then(|p| u16::try_from(p).ok());
    let mut d = Dest::from_host(host, port);
    if d.ip.is_none() {
        d.ip = attr(attrs, "network.peer.address").and_then(|a| a.parse().ok());
    }
    Some(d)
}

fn peer_dest(attrs: &[KeyValue]) -> Option<Dest> {
    server_dest(attrs)
}

/// Whether a request looks like LLM API traffic (for shadow AI outside declared workloads).
#[must_use]
pub fn is_llm_traffic(attrs: &[KeyValue], dest: &Dest) -> bool {
    const HOSTS: &[&str] = &[
        "api.openai.com",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
        "api.mistral.ai",
        "api.cohere.ai",
        "api.cohere.com",
        "api.groq.com",
        "api.deepseek.com",
        "api.together.xyz",
        "openrouter.ai",
        "api.x.ai",
        "api-inference.huggingface.co",
    ];
    const PATHS: &[&str] = &[
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/responses",
        "/api/generate",
        "/api/chat",
        "/api/embed",
    ];
    attr(attrs, "gen_ai.request.model").is_some()
        || dest.name.as_deref().is_some_and(|n| {
            HOSTS.contains(&n)
                || n.ends_with(".openai.azure.com")
                || n.starts_with("bedrock-runtime.")
        })
        || dest
            .path
            .as_deref()
            .is_some_and(|p| PATHS.iter().any(|s| p.ends_with(s)))
}

/// Whether an executable is a model server (shadow AI when not declared).
#[must_use]
pub fn is_model_server(path: &str) -> bool {
    const NAMES: &[&str] = &[
        "ollama",
        "vllm",
        "llama-server",
        "llama.cpp",
        "llamafile",
        "text-generation-launcher",
        "text-generation-server",
        "tritonserver",
        "lmstudio",
        "localai",
        "koboldcpp",
        "tabby",
    ];
    let file = path.rsplit('/').next().unwrap_or(path);
    NAMES.iter().any(|n| file.starts_with(n))
}

/// Ports model servers listen on by default (Ollama 11434, vLLM/TGI commonly 8000/8080 are
/// too generic to count).
#[must_use]
pub fn is_model_server_port(port: u16) -> bool {
    matches!(port, 11434 | 1234 | 5001)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        crate::otlp::kv_str(k, v)
    }

    #[test]
    fn genai_model_call_with_legacy_system() {
        let a = [
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.system", "az.ai.openai"),
            kv("gen_ai.request.model", "gpt-4o"),
        ];
        assert_eq!(
            classify(&a, "chat gpt-4o", false),
            Activity::Model {
                model: Some("gpt-4o".into()),
                provider: Some("azure.ai.openai".into()),
                operation: "chat".into()
            }
        );
        let a = [
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
        ];
        let Activity::Model {
            model, provider, ..
        } = classify(&a, "chat", false)
        else {
            panic!("a model call")
        };
        assert_eq!(
            (model.as_deref(), provider.as_deref()),
            (Some("gpt-4o-2024-08-06"), Some("openai"))
        );
    }

    #[test]
    fn genai_tools_and_agents() {
        let a = [
            kv("gen_ai.operation.name", "execute_tool"),
            kv("gen_ai.tool.name", "http_post"),
        ];
        assert_eq!(
            classify(&a, "execute_tool http_post", false),
            Activity::Tool {
                name: "http_post".into()
            }
        );
        let a = [
            kv("gen_ai.operation.name", "invoke_agent"),
            kv("gen_ai.agent.name", "support-agent"),
        ];
        assert_eq!(
            classify(&a, "x", false),
            Activity::Agent {
                name: Some("support-agent".into())
            }
        );
    }

    #[test]
    fn langchain_is_a_framework_not_a_provider() {
        let a = [
            kv("gen_ai.system", "langchain"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("llm.request.type", "chat"),
        ];
        let Activity::Model { provider, .. } = classify(&a, "ChatOpenAI.chat", false) else {
            panic!("a model call")
        };
        assert_eq!(provider, None);
        let a = [
            kv("gen_ai.system", "LangChain"),
            kv("llm.provider", "anthropic"),
        ];
        assert_eq!(provider_of(&a).as_deref(), Some("anthropic"));
    }

    #[test]
    fn openinference_family() {
        let a = [
            kv("openinference.span.kind", "LLM"),
            kv("llm.model_name", "claude-3-5-sonnet"),
            kv("llm.provider", "anthropic"),
        ];
        assert_eq!(
            classify(&a, "llm", false),
            Activity::Model {
                model: Some("claude-3-5-sonnet".into()),
                provider: Some("anthropic".into()),
                operation: "chat".into()
            }
        );
        let a = [
            kv("openinference.span.kind", "TOOL"),
            kv("tool.name", "search"),
        ];
        assert_eq!(
            classify(&a, "search", false),
            Activity::Tool {
                name: "search".into()
            }
        );
        let a = [
            kv("openinference.span.kind", "AGENT"),
            kv("agent.name", "planner"),
        ];
        assert_eq!(
            classify(&a, "agent", false),
            Activity::Agent {
                name: Some("planner".into())
            }
        );
    }

    #[test]
    fn openllmetry_family() {
        let a = [
            kv("traceloop.span.kind", "tool"),
            kv("traceloop.entity.name", "get_weather"),
        ];
        assert_eq!(
            classify(&a, "get_weather.tool", false),
            Activity::Tool {
                name: "get_weather".into()
            }
        );
        let a = [
            kv("traceloop.span.kind", "workflow"),
            kv("traceloop.entity.name", "support"),
        ];
        assert_eq!(
            classify(&a, "support.workflow", false),
            Activity::Agent {
                name: Some("support".into())
            }
        );
        let a = [
            kv("llm.request.type", "chat"),
            kv("gen_ai.system", "OpenAI"),
            kv("gen_ai.request.model", "gpt-4o-mini"),
        ];
        assert!(matches!(
            classify(&a, "openai.chat", false),
            Activity::Model { provider: Some(p), .. } if p == "openai"
        ));
    }

    #[test]
    fn http_db_and_kernel_events() {
        let a = [
            kv("http.request.method", "POST"),
            kv("url.full", "http://127.0.0.1:18099/upload?k=1"),
        ];
        let Activity::Http { dest, .. } = classify(&a, "POST", false) else {
            panic!()
        };
        assert_eq!(dest.display(), "http://127.0.0.1:18099/upload");
        let a = [
            kv("db.system.name", "sqlite"),
            kv("db.namespace", "crm"),
            kv("server.address", "127.0.0.1"),
            crate::otlp::kv_int("server.port", 18081),
        ];
        assert!(matches!(
            classify(&a, "SELECT", false),
            Activity::Db { dest: Some(_), .. }
        ));
        let a = [
            kv("runbom.event", "net.connect"),
            kv("server.address", "127.0.0.1"),
            crate::otlp::kv_int("server.port", 18099),
        ];
        let Activity::Connect { dest } = classify(&a, "net.connect", true) else {
            panic!()
        };
        assert_eq!(dest.host_port(), "127.0.0.1:18099");
        let a = [kv("runbom.event", "file.open"), kv("file.path", "/d/x")];
        assert_eq!(
            classify(&a, "", true),
            Activity::File {
                path: "/d/x".into()
            }
        );
    }
}
