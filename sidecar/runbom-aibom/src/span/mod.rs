//! What a span (or a kernel event's log record) is, read from the attribute families runbom
//! understands: OpenTelemetry GenAI (`gen_ai.*`, legacy `gen_ai.system` normalised),
//! OpenInference (`openinference.span.kind`, `llm.*`, `tool.name`, `agent.name`), OpenLLMetry
//! (`traceloop.*`), HTTP/DB client conventions and runbom's kernel events (contract §1).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use runbom_event::semconv::{
    AGENT_NAME, DB_COLLECTION_NAME, DB_NAME, DB_NAMESPACE, DB_SQL_TABLE, DB_SYSTEM, DB_SYSTEM_NAME,
    DNS_QUESTION_NAME, FILE_PATH, GEN_AI_AGENT_NAME, GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, GEN_AI_SYSTEM, GEN_AI_TOOL_NAME, HTTP_METHOD,
    HTTP_REQUEST_METHOD, HTTP_URL, LLM_MODEL_NAME, LLM_PROVIDER, LLM_REQUEST_MODEL,
    LLM_REQUEST_TYPE, LLM_RESPONSE_MODEL, LLM_SYSTEM, MCP_METHOD_NAME, NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT, OPENINFERENCE_SPAN_KIND, PROCESS_EXECUTABLE_PATH, RUNBOM_EVENT,
    RUNBOM_MCP_SERVER_COMMAND_LINE, SERVER_ADDRESS, SERVER_PORT, TOOL_NAME, TRACELOOP_ENTITY_NAME,
    TRACELOOP_SPAN_KIND, URL_FULL, event, gen_ai_provider,
};

use crate::endpoint::Dest;

/// A string attribute's value.
#[must_use]
pub fn str_value(kv: &KeyValue) -> Option<&str> {
    match &kv.value {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => Some(s.as_str()),
        _ => None,
    }
}

/// An attribute's value as an integer (ints, or strings holding one).
#[must_use]
pub fn int_value(kv: &KeyValue) -> Option<i64> {
    match &kv.value {
        Some(AnyValue {
            value: Some(Value::IntValue(i)),
        }) => Some(*i),
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s.parse().ok(),
        _ => None,
    }
}

/// The value of the first attribute `key`, when it is a string.
#[must_use]
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(str_value)
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
    attrs.iter().find(|kv| kv.key == key).and_then(int_value)
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
    let mut out = String::new();
    normalise_provider_into(p, &mut out);
    out
}

/// [`normalise_provider`] written into `out` (empty).
fn normalise_provider_into(p: &str, out: &mut String) {
    out.push_str(p.trim());
    out.make_ascii_lowercase();
    let known = match out.as_str() {
        "az.ai.openai" | "azure_openai" | "azure-openai" | "azure" => "azure.ai.openai",
        "az.ai.inference" => "azure.ai.inference",
        "vertex_ai" | "vertexai" | "google_vertex" => "gcp.vertex_ai",
        "gemini" | "google" | "google_genai" => "gcp.gemini",
        "bedrock" | "aws_bedrock" | "aws" => "aws.bedrock",
        "mistralai" | "mistral" => "mistral_ai",
        "watsonx" | "ibm" => "ibm.watsonx.ai",
        "x.ai" | "grok" => "xai",
        _ => return,
    };
    out.clear();
    out.push_str(known);
}

/// A provider attribute's value, unless it names a framework rather than a provider.
#[must_use]
pub fn provider_of(attrs: &[KeyValue]) -> Option<String> {
    AppAttrs::read(attrs).provider(&mut Texts::default())
}

/// The string attributes [`classify`] reads from an application span, found in one pass over
/// its attributes (the first string value of a key counts). Each slot holds the attribute's
/// position plus one (0: none), so the table is small and filled where it lies.
#[derive(Default)]
struct AppAttrs<'a> {
    attrs: &'a [KeyValue],
    event: u32,
    operation: u32,
    oi_kind: u32,
    tl_kind: u32,
    tl_entity: u32,
    /// `gen_ai.tool.name`, `tool.name`.
    tool: [u32; 2],
    /// `gen_ai.agent.name`, `agent.name`.
    agent: [u32; 2],
    /// In order of preference: `gen_ai.response.model`, `gen_ai.request.model`,
    /// `llm.model_name`, `llm.response.model`, `llm.request.model`.
    model: [u32; 5],
    llm_request_type: u32,
    /// `gen_ai.provider.name`, `gen_ai.system`, `llm.provider`, `llm.system`.
    provider: [u32; 4],
    /// `db.system.name`, `db.system`.
    db_system: [u32; 2],
    /// `db.namespace`, `db.name`.
    db_namespace: [u32; 2],
    /// `db.collection.name`, `db.sql.table`.
    db_collection: [u32; 2],
    /// `http.request.method`, `http.method`.
    method: [u32; 2],
    /// `url.full`, `http.url`.
    url: [u32; 2],
    server_address: u32,
}

impl<'a> AppAttrs<'a> {
    fn read(attrs: &'a [KeyValue]) -> Self {
        let mut f = Self {
            attrs,
            ..Self::default()
        };
        for (at, kv) in attrs.iter().enumerate() {
            let slot = match kv.key.as_str() {
                RUNBOM_EVENT => &mut f.event,
                GEN_AI_OPERATION_NAME => &mut f.operation,
                OPENINFERENCE_SPAN_KIND => &mut f.oi_kind,
                TRACELOOP_SPAN_KIND => &mut f.tl_kind,
                TRACELOOP_ENTITY_NAME => &mut f.tl_entity,
                GEN_AI_TOOL_NAME => &mut f.tool[0],
                TOOL_NAME => &mut f.tool[1],
                GEN_AI_AGENT_NAME => &mut f.agent[0],
                AGENT_NAME => &mut f.agent[1],
                GEN_AI_RESPONSE_MODEL => &mut f.model[0],
                GEN_AI_REQUEST_MODEL => &mut f.model[1],
                LLM_MODEL_NAME => &mut f.model[2],
                LLM_RESPONSE_MODEL => &mut f.model[3],
                LLM_REQUEST_MODEL => &mut f.model[4],
                LLM_REQUEST_TYPE => &mut f.llm_request_type,
                GEN_AI_PROVIDER_NAME => &mut f.provider[0],
                GEN_AI_SYSTEM => &mut f.provider[1],
                LLM_PROVIDER => &mut f.provider[2],
                LLM_SYSTEM => &mut f.provider[3],
                DB_SYSTEM_NAME => &mut f.db_system[0],
                DB_SYSTEM => &mut f.db_system[1],
                DB_NAMESPACE => &mut f.db_namespace[0],
                DB_NAME => &mut f.db_namespace[1],
                DB_COLLECTION_NAME => &mut f.db_collection[0],
                DB_SQL_TABLE => &mut f.db_collection[1],
                HTTP_REQUEST_METHOD => &mut f.method[0],
                HTTP_METHOD => &mut f.method[1],
                URL_FULL => &mut f.url[0],
                HTTP_URL => &mut f.url[1],
                SERVER_ADDRESS => &mut f.server_address,
                _ => continue,
            };
            // Past `u32::MAX` attributes a key is not looked at (no span has that many).
            if *slot == 0
                && str_value(kv).is_some()
                && let Ok(at) = u32::try_from(at + 1)
            {
                *slot = at;
            }
        }
        f
    }

    /// The string value of the attribute in `slot`.
    fn get(&self, slot: u32) -> Option<&'a str> {
        let at = usize::try_from(slot.checked_sub(1)?).ok()?;
        self.attrs.get(at).and_then(str_value)
    }

    /// The value of the first filled slot of `slots`.
    fn first(&self, slots: &[u32]) -> Option<&'a str> {
        slots.iter().find_map(|s| self.get(*s))
    }

    fn provider(&self, texts: &mut Texts) -> Option<String> {
        for p in self.provider.iter().filter_map(|s| self.get(*s)) {
            let mut p_norm = texts.empty();
            normalise_provider_into(p, &mut p_norm);
            // `_OTHER` says the provider is not known (an OpenAI-compatible server by its
            // address): no provider to judge against, the model is judged by its name.
            if !p_norm.is_empty()
                && !FRAMEWORKS.contains(&p_norm.as_str())
                && !p_norm.eq_ignore_ascii_case(gen_ai_provider::OTHER)
            {
                return Some(p_norm);
            }
            texts.keep(p_norm);
        }
        None
    }
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
        dest: Box<Dest>,
        method: String,
        kernel: bool,
    },
    /// A kernel `net.connect`.
    Connect {
        dest: Box<Dest>,
    },
    /// A database client call.
    Db {
        system: String,
        namespace: Option<String>,
        collection: Option<String>,
        dest: Option<Box<Dest>>,
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
    /// A kernel `mcp.client` span: an MCP request the agent's process sent.
    Mcp {
        method: String,
        /// `gen_ai.tool.name` of a `tools/call`.
        tool: Option<String>,
        /// The answering process's command line (`runbom.mcp.server.command_line`).
        server: Option<String>,
        /// Where a streamable-HTTP request went (`url.full`).
        url: Option<String>,
    },
    Other,
}

/// A boolean attribute.
#[must_use]
pub fn attr_bool(attrs: &[KeyValue], key: &str) -> Option<bool> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::BoolValue(b)),
            }) => Some(*b),
            _ => None,
        })
}

/// Reads a span's (or event log record's) activity from its attributes.
#[must_use]
pub fn classify(attrs: &[KeyValue], name: &str, kernel: bool) -> Activity {
    classify_with(attrs, name, kernel, &mut Texts::default())
}

/// [`classify`], the activity's strings taken from `texts`.
pub fn classify_with(attrs: &[KeyValue], name: &str, kernel: bool, texts: &mut Texts) -> Activity {
    if kernel {
        return kernel_activity(attrs, texts);
    }
    let f = AppAttrs::read(attrs);
    if f.event != 0 {
        return kernel_activity(attrs, texts);
    }
    let op = f.get(f.operation);
    let oi_kind = f.get(f.oi_kind);
    let oi = |kind: &str| oi_kind.is_some_and(|k| k.eq_ignore_ascii_case(kind));
    let tl = f.get(f.tl_kind);
    let tl_entity = f.get(f.tl_entity);
    if op == Some("execute_tool") || oi("TOOL") || tl == Some("tool") {
        let tool = f
            .first(&f.tool)
            .or(tl_entity)
            .or_else(|| name.strip_prefix("execute_tool "));
        if let Some(name) = tool {
            return Activity::Tool {
                name: texts.text(name),
            };
        }
    }
    if matches!(op, Some("invoke_agent" | "create_agent"))
        || oi("AGENT")
        || matches!(tl, Some("agent" | "workflow"))
    {
        let name = f
            .first(&f.agent)
            .or(if tl.is_some() { tl_entity } else { None });
        return Activity::Agent {
            name: name.map(|n| texts.text(n)),
        };
    }
    let model = f.first(&f.model);
    let llm_request_type = f.get(f.llm_request_type);
    let model_op = matches!(
        op,
        Some("chat" | "text_completion" | "generate_content" | "embeddings" | "completion")
    ) || oi("LLM")
        || oi("EMBEDDING")
        || llm_request_type.is_some()
        || (model.is_some() && op.is_none() && oi_kind.is_none());
    if model_op {
        return Activity::Model {
            model: model.map(|m| texts.text(m)),
            provider: f.provider(texts),
            operation: texts.text(op.or(llm_request_type).unwrap_or("chat")),
        };
    }
    if let Some(system) = f.first(&f.db_system) {
        return Activity::Db {
            system: system.to_owned(),
            namespace: f.first(&f.db_namespace).map(str::to_owned),
            collection: f.first(&f.db_collection).map(str::to_owned),
            dest: server_dest(attrs).map(Box::new),
        };
    }
    let url = f.first(&f.url);
    if let Some(method) = f.first(&f.method) {
        let dest = url.and_then(Dest::from_url).or_else(|| server_dest(attrs));
        // Server spans are requests received, not made.
        if let Some(dest) = dest
            && (url.is_some() || f.server_address != 0)
        {
            return Activity::Http {
                dest: Box::new(dest),
                method: method.to_owned(),
                kernel: false,
            };
        }
    }
    Activity::Other
}

fn kernel_activity(attrs: &[KeyValue], texts: &mut Texts) -> Activity {
    let mut text = |k| attr(attrs, k).map(|v| texts.text(v));
    match attr(attrs, RUNBOM_EVENT).unwrap_or("") {
        event::NET_CONNECT => Activity::Connect {
            dest: Box::new(peer_dest(attrs).unwrap_or_default()),
        },
        event::HTTP_REQUEST => {
            let mut dest = attr(attrs, URL_FULL)
                .and_then(Dest::from_url)
                .or_else(|| server_dest(attrs))
                .unwrap_or_default();
            if dest.ip.is_none()
                && let Some(peer) = attr(attrs, NETWORK_PEER_ADDRESS).and_then(|a| a.parse().ok())
            {
                dest.ip = Some(peer);
            }
            Activity::Http {
                dest: Box::new(dest),
                method: text(HTTP_REQUEST_METHOD).unwrap_or_default(),
                kernel: true,
            }
        }
        event::FILE_OPEN => Activity::File {
            path: text(FILE_PATH).unwrap_or_default(),
        },
        event::PROCESS_EXEC => Activity::Exec {
            path: text(PROCESS_EXECUTABLE_PATH).unwrap_or_default(),
        },
        event::DNS_QUERY => Activity::Dns {
            name: text(DNS_QUESTION_NAME).unwrap_or_default(),
        },
        event::MCP_CLIENT => Activity::Mcp {
            method: text(MCP_METHOD_NAME).unwrap_or_default(),
            tool: text(GEN_AI_TOOL_NAME),
            server: text(RUNBOM_MCP_SERVER_COMMAND_LINE),
            url: text(URL_FULL),
        },
        event::NET_ACCEPT => Activity::Accept {
            port: attr_int(attrs, SERVER_PORT).and_then(|p| u16::try_from(p).ok()),
        },
        _ => Activity::Other,
    }
}

/// `server.address`:`server.port`, with `network.peer.address` as the IP when the address is a name.
#[must_use]
pub fn server_dest(attrs: &[KeyValue]) -> Option<Dest> {
    let host = attr(attrs, SERVER_ADDRESS).or_else(|| attr(attrs, NETWORK_PEER_ADDRESS))?;
    let port = attr_int(attrs, SERVER_PORT)
        .or_else(|| attr_int(attrs, NETWORK_PEER_PORT))
        .and_then(|p| u16::try_from(p).ok());
    let mut d = Dest::from_host(host, port);
    if d.ip.is_none() {
        d.ip = attr(attrs, NETWORK_PEER_ADDRESS).and_then(|a| a.parse().ok());
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
    attr(attrs, GEN_AI_REQUEST_MODEL).is_some()
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

/// Where a program's machinery is (libraries, shared data, the loader's files, devices).
const LIBRARY_PREFIXES: &[&str] = &[
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/local/lib/",
    "/lib/",
    "/lib64/",
    "/usr/share/",
    "/etc/ld.so",
    "/etc/localtime",
    "/dev/",
    "/proc/",
    "/sys/",
];

/// Whether a path is a program's own machinery rather than data it works on: shared libraries,
/// interpreters' standard and installed packages, bytecode caches, the dynamic loader's files,
/// devices. Not steps of a shadow workload's chain, nor data it "used".
///
/// Asked of every file a process no declared agent covers opens, so it reads the path once:
/// the prefixes, then the directories on the way (`site-packages`, `lib/python…`, …), then the
/// file's name.
#[must_use]
pub fn is_library_path(path: &str) -> bool {
    /// Directories (a `/` before and after) that hold a program's machinery.
    const DIRS: &[&str] = &[
        "site-packages",
        "dist-packages",
        "__pycache__",
        "node_modules",
        "lib-dynload",
    ];
    if path.ends_with('/') || LIBRARY_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return true;
    }
    let (dirs, file) = path.rsplit_once('/').unwrap_or(("", path));
    // The directories of the path, each with whether a `/` is before it.
    let mut prev: Option<&str> = None;
    for (i, dir) in dirs.split('/').enumerate() {
        let slash_before = i > 0;
        if (slash_before && DIRS.contains(&dir))
            // `.dist-info/`: the directory's name ends so (a `/` before it or not).
            || dir.ends_with(".dist-info")
            || (dir == "versions" && prev == Some(".pyenv"))
            || (prev == Some("lib") && dir.starts_with("python"))
        {
            return true;
        }
        // `/lib/python` and `/.pyenv/`: the earlier directory had a `/` before it too.
        prev = slash_before.then_some(dir);
    }
    // `/lib/python` also matches a file named `python…` in a `lib` directory.
    if prev == Some("lib") && file.starts_with("python") {
        return true;
    }
    let ext = file
        .rfind('.')
        .filter(|&dot| dot > 0)
        .map(|dot| &file[dot + 1..]);
    ext.is_some_and(|e| {
        e.eq_ignore_ascii_case("so")
            || e.eq_ignore_ascii_case("pyc")
            || e.eq_ignore_ascii_case("pth")
    }) || file.contains(".so.")
        || file == "pyvenv.cfg"
}

/// Whether a command line runs a model server through an interpreter (`python -m vllm.entrypoints…`,
/// `vllm serve`, `python -m llama_cpp.server`, text-generation-inference's server).
#[must_use]
pub fn is_model_server_command(command_line: &str) -> bool {
    const MODULES: &[&str] = &[
        "vllm.entrypoints",
        "llama_cpp.server",
        "text_generation_server",
        "sglang.launch_server",
    ];
    let mut words = command_line.split_whitespace();
    let _program = words.next();
    words.take(4).any(|w| {
        MODULES.iter().any(|m| w.starts_with(m))
            || matches!(
                w.rsplit('/').next(),
                Some("vllm" | "ollama" | "llama-server")
            )
    })
}

/// The provider behind a well-known LLM API host (`api.openai.com` → `openai`).
#[must_use]
pub fn provider_of_host(dest: &Dest) -> Option<String> {
    const HOSTS: &[(&str, &str)] = &[
        ("api.openai.com", "openai"),
        ("api.anthropic.com", "anthropic"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.cohere.ai", "cohere"),
        ("api.cohere.com", "cohere"),
        ("api.groq.com", "groq"),
        ("api.deepseek.com", "deepseek"),
        ("api.x.ai", "x_ai"),
    ];
    let name = dest.name.as_deref()?;
    if name.ends_with(".openai.azure.com") {
        return Some("azure.ai.openai".into());
    }
    if name.starts_with("bedrock-runtime.") {
        return Some("aws.bedrock".into());
    }
    HOSTS
        .iter()
        .find(|(h, _)| *h == name)
        .map(|(_, p)| (*p).to_owned())
}

/// Ports model servers listen on by default (Ollama 11434, vLLM/TGI commonly 8000/8080 are
/// too generic to count).
#[must_use]
pub fn is_model_server_port(port: u16) -> bool {
    matches!(port, 11434 | 1234 | 5001)
}

mod texts;
pub use texts::Texts;

#[cfg(test)]
mod tests;
