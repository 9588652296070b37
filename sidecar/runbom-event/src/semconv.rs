//! Every name of the telemetry contract (`docs/telemetry-contract.md`) as a constant: what
//! runbom emits is an interface that dashboards, queries and alert rules are written against, so
//! code names it from here and never spells it twice.
//!
//! Attribute keys are the top-level constants, named after the key (`process.pid` is
//! [`PROCESS_PID`]) and grouped as the contract groups them: OpenTelemetry semantic conventions
//! first, then the project's own `runbom.*` and `aibom.*` namespaces, then the conventions the
//! AI-BOM processor reads (GenAI, OpenInference, OpenLLMetry, database clients). Instrumentation
//! scopes are in [`scope`], event names (`runbom.event`, `event.name`, and the first word of
//! every kernel span's name) in [`event`], and the values of enumerated attributes in
//! [`capture`], [`correlation`], [`component_kind`] and [`drift`].

// ---------------------------------------------------------------------------------------------
// Resource (contract §1, §4)
// ---------------------------------------------------------------------------------------------

/// `service.name`: the application's, or the observed executable's name for uncorrelated events.
pub const SERVICE_NAME: &str = "service.name";
/// `service.version`.
pub const SERVICE_VERSION: &str = "service.version";
/// `host.name` of the node.
pub const HOST_NAME: &str = "host.name";
/// `container.id` (resource of an uncorrelated event, and attribute of every kernel event).
pub const CONTAINER_ID: &str = "container.id";
/// Prefix of the Kubernetes resource attributes (`k8s.*`) an alert carries when known.
pub const K8S_PREFIX: &str = "k8s.";
/// `k8s.namespace.name`.
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
/// `k8s.serviceaccount.name`: the identity a workload runs as.
pub const K8S_SERVICEACCOUNT_NAME: &str = "k8s.serviceaccount.name";
/// `k8s.pod.service_account.name`: the older spelling of [`K8S_SERVICEACCOUNT_NAME`].
pub const K8S_POD_SERVICE_ACCOUNT_NAME: &str = "k8s.pod.service_account.name";

// ---------------------------------------------------------------------------------------------
// Process and thread (contract §1)
// ---------------------------------------------------------------------------------------------

/// `process.pid`.
pub const PROCESS_PID: &str = "process.pid";
/// `process.parent_pid`.
pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
/// `process.executable.path`.
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
/// `process.command_line`, credentials redacted (contract §5).
pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
/// `process.user.id`.
pub const PROCESS_USER_ID: &str = "process.user.id";
/// `process.exit.code` of a `process.exit` event, when the process exited (was not killed).
pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
/// `thread.id`.
pub const THREAD_ID: &str = "thread.id";

// ---------------------------------------------------------------------------------------------
// Network, file, DNS, errors (contract §1)
// ---------------------------------------------------------------------------------------------

/// `server.address`: the DNS name when known, else the IP.
pub const SERVER_ADDRESS: &str = "server.address";
/// `server.port`.
pub const SERVER_PORT: &str = "server.port";
/// `client.address` of an accepted connection.
pub const CLIENT_ADDRESS: &str = "client.address";
/// `client.port` of an accepted connection.
pub const CLIENT_PORT: &str = "client.port";
/// `network.peer.address`.
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
/// `network.peer.port`.
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
/// `network.transport`: `tcp` or `udp`.
pub const NETWORK_TRANSPORT: &str = "network.transport";
/// `network.type`: `ipv4` or `ipv6`.
pub const NETWORK_TYPE: &str = "network.type";
/// `file.path`.
pub const FILE_PATH: &str = "file.path";
/// `dns.question.name`.
pub const DNS_QUESTION_NAME: &str = "dns.question.name";
/// `error.type`: the errno name (`ECONNREFUSED`) when the syscall failed.
pub const ERROR_TYPE: &str = "error.type";
/// `event.name` of a log record: the `runbom.event` value, or [`event::AIBOM_DRIFT`].
pub const EVENT_NAME: &str = "event.name";

// ---------------------------------------------------------------------------------------------
// HTTP and URL (contract §1, §3)
// ---------------------------------------------------------------------------------------------

/// `http.request.method`.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// `http.request.body.size` (the `Content-Length` of a captured request).
pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
/// `http.response.status_code`, when the response was seen.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// `url.full`, query values redacted.
pub const URL_FULL: &str = "url.full";
/// `url.path`.
pub const URL_PATH: &str = "url.path";
/// `user_agent.original`.
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// `http.method`: the legacy spelling of [`HTTP_REQUEST_METHOD`], still read from applications.
pub const HTTP_METHOD: &str = "http.method";
/// `http.url`: the legacy spelling of [`URL_FULL`], still read from applications.
pub const HTTP_URL: &str = "http.url";

// ---------------------------------------------------------------------------------------------
// runbom.*: capture and correlation mechanics (contract §1, §2)
// ---------------------------------------------------------------------------------------------

/// Prefix of every attribute of runbom's own namespace (`runbom.*`).
pub const RUNBOM_PREFIX: &str = "runbom.";
/// `runbom.instance.id` of a drift alert: the id of the runbom process that emitted it, random
/// per process start (contract §4, §6).
pub const RUNBOM_INSTANCE_ID: &str = "runbom.instance.id";
/// `runbom.event`: the kind of a kernel event, one of [`event`]'s kernel names.
pub const RUNBOM_EVENT: &str = "runbom.event";
/// `runbom.capture` of an `http.request`: one of [`capture`].
pub const RUNBOM_CAPTURE: &str = "runbom.capture";
/// `runbom.file.flags` of a `file.open`: `O_*` names joined by `|` (`O_WRONLY|O_CREAT`).
pub const RUNBOM_FILE_FLAGS: &str = "runbom.file.flags";
/// `runbom.exec.argv_truncated`: `true` when a `process.exec`'s argv was longer than captured.
pub const RUNBOM_EXEC_ARGV_TRUNCATED: &str = "runbom.exec.argv_truncated";
/// `runbom.dns.question.type` of a `dns.query` (`A`, `AAAA`, …).
pub const RUNBOM_DNS_QUESTION_TYPE: &str = "runbom.dns.question.type";
/// `runbom.correlation.method` of a kernel span in an application trace: one of
/// [`correlation`]'s methods.
pub const RUNBOM_CORRELATION_METHOD: &str = "runbom.correlation.method";
/// `runbom.correlation.confidence`: one of [`correlation`]'s confidences.
pub const RUNBOM_CORRELATION_CONFIDENCE: &str = "runbom.correlation.confidence";
/// `runbom.stitched.original_trace_id` of an application span adopted into another trace.
pub const RUNBOM_STITCHED_ORIGINAL_TRACE_ID: &str = "runbom.stitched.original_trace_id";
/// `runbom.stitched.original_span_id` of an adopted span.
pub const RUNBOM_STITCHED_ORIGINAL_SPAN_ID: &str = "runbom.stitched.original_span_id";

/// Prefix under which the receivers keep what a client sent in runbom's namespaces
/// (`received.runbom.event`, `received.aibom.drift`, `received.event.name`,
/// `received.process.pid`; contract §6).
pub const RECEIVED_PREFIX: &str = "received.";

// ---------------------------------------------------------------------------------------------
// aibom.*: declared components and drift (contract §3, §4)
// ---------------------------------------------------------------------------------------------

/// Prefix of every AI-BOM attribute (`aibom.*`).
pub const AIBOM_PREFIX: &str = "aibom.";
/// `aibom.component.ref`: `bom-ref` of the declared component a span uses or is.
pub const AIBOM_COMPONENT_REF: &str = "aibom.component.ref";
/// `aibom.component.kind`: one of [`component_kind`].
pub const AIBOM_COMPONENT_KIND: &str = "aibom.component.kind";
/// `aibom.declared`: whether what a span observed matched a declared component.
pub const AIBOM_DECLARED: &str = "aibom.declared";
/// `aibom.agent.ref`: the agent component a span runs under.
pub const AIBOM_AGENT_REF: &str = "aibom.agent.ref";
/// `aibom.bom.serial_number`: `serialNumber` of the declared BOM in force.
pub const AIBOM_BOM_SERIAL_NUMBER: &str = "aibom.bom.serial_number";
/// `aibom.drift`: `true` when any drift flag is set.
pub const AIBOM_DRIFT: &str = "aibom.drift";
/// `aibom.drift.kinds`: the drift flags set, a string array of [`drift`] values.
pub const AIBOM_DRIFT_KINDS: &str = "aibom.drift.kinds";
/// `aibom.drift.reason`: one sentence naming what deviated from what.
pub const AIBOM_DRIFT_REASON: &str = "aibom.drift.reason";
/// `aibom.drift.subject` of a drift alert: what deviated (model, tool, endpoint, path, …).
pub const AIBOM_DRIFT_SUBJECT: &str = "aibom.drift.subject";
/// `aibom.identities`: the credentials a span's process could use (`env:OPENAI_API_KEY`).
pub const AIBOM_IDENTITIES: &str = "aibom.identities";
/// `aibom.chain` of a drift alert: the trace's execution chain, a string array.
pub const AIBOM_CHAIN: &str = "aibom.chain";

// ---------------------------------------------------------------------------------------------
// OpenTelemetry GenAI conventions (contract §3)
// ---------------------------------------------------------------------------------------------

/// `gen_ai.operation.name` (`chat`, `execute_tool`, `invoke_agent`, …).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`.
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.system`: the legacy spelling of [`GEN_AI_PROVIDER_NAME`].
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
/// `gen_ai.request.model` (also set on a kernel `http.request` from the request body).
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.response.model`.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.tool.name`.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// `gen_ai.tool.call.arguments`.
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// `gen_ai.agent.name`.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// `gen_ai.conversation.id`.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// `gen_ai.input.messages`.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// `gen_ai.output.messages`.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// `gen_ai.prompt`: the legacy attribute holding a prompt.
pub const GEN_AI_PROMPT: &str = "gen_ai.prompt";

// ---------------------------------------------------------------------------------------------
// OpenInference and OpenLLMetry conventions (contract §3)
// ---------------------------------------------------------------------------------------------

/// `openinference.span.kind` (`LLM`, `TOOL`, `AGENT`, …).
pub const OPENINFERENCE_SPAN_KIND: &str = "openinference.span.kind";
/// `llm.model_name` (OpenInference).
pub const LLM_MODEL_NAME: &str = "llm.model_name";
/// `llm.provider` (OpenInference).
pub const LLM_PROVIDER: &str = "llm.provider";
/// `llm.system` (OpenInference).
pub const LLM_SYSTEM: &str = "llm.system";
/// `tool.name` (OpenInference).
pub const TOOL_NAME: &str = "tool.name";
/// `agent.name` (OpenInference).
pub const AGENT_NAME: &str = "agent.name";
/// `input.value` (OpenInference): a span's input, e.g. a prompt or a tool's arguments.
pub const INPUT_VALUE: &str = "input.value";
/// `traceloop.span.kind` (OpenLLMetry).
pub const TRACELOOP_SPAN_KIND: &str = "traceloop.span.kind";
/// `traceloop.entity.name` (OpenLLMetry).
pub const TRACELOOP_ENTITY_NAME: &str = "traceloop.entity.name";
/// `traceloop.entity.input` (OpenLLMetry).
pub const TRACELOOP_ENTITY_INPUT: &str = "traceloop.entity.input";
/// `llm.request.type` (OpenLLMetry: `chat`, `completion`, …).
pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
/// `llm.request.model` (OpenLLMetry).
pub const LLM_REQUEST_MODEL: &str = "llm.request.model";
/// `llm.response.model` (OpenLLMetry).
pub const LLM_RESPONSE_MODEL: &str = "llm.response.model";

// ---------------------------------------------------------------------------------------------
// Database client conventions (contract §3)
// ---------------------------------------------------------------------------------------------

/// `db.system.name`.
pub const DB_SYSTEM_NAME: &str = "db.system.name";
/// `db.system`: the legacy spelling of [`DB_SYSTEM_NAME`].
pub const DB_SYSTEM: &str = "db.system";
/// `db.namespace`.
pub const DB_NAMESPACE: &str = "db.namespace";
/// `db.name`: the legacy spelling of [`DB_NAMESPACE`].
pub const DB_NAME: &str = "db.name";
/// `db.collection.name`.
pub const DB_COLLECTION_NAME: &str = "db.collection.name";
/// `db.sql.table`: the legacy spelling of [`DB_COLLECTION_NAME`].
pub const DB_SQL_TABLE: &str = "db.sql.table";
/// `db.query.text`.
pub const DB_QUERY_TEXT: &str = "db.query.text";
/// `db.statement`: the legacy spelling of [`DB_QUERY_TEXT`].
pub const DB_STATEMENT: &str = "db.statement";

/// Instrumentation scopes of what runbom creates (contract §1, §4).
pub mod scope {
    /// Every kernel span and log record.
    pub const KERNEL: &str = "runbom.kernel";
    /// Drift alerts of the AI-BOM processor.
    pub const AIBOM: &str = "runbom.aibom";
    /// GenAI spans runbom synthesises for agents that send no traces.
    pub const GENAI: &str = "runbom.genai";
}

/// Event names: the `runbom.event` of each kind of kernel event (contract §1), which is also its
/// log record's `event.name` and the first word of its span's name
/// (`net.connect {server.address}:{server.port}`), and the `event.name` of a drift alert
/// (contract §4).
pub mod event {
    /// Exec of a new program; span `process.exec {process.executable.path}`.
    pub const PROCESS_EXEC: &str = "process.exec";
    /// Process exit (a log record only, never a span).
    pub const PROCESS_EXIT: &str = "process.exit";
    /// TCP/UDP connect; span `net.connect {server.address}:{server.port}`.
    pub const NET_CONNECT: &str = "net.connect";
    /// Accepted inbound TCP connection; span `net.accept {client.address}`.
    pub const NET_ACCEPT: &str = "net.accept";
    /// DNS question sent by the process; span `dns.query {dns.question.name}`.
    pub const DNS_QUERY: &str = "dns.query";
    /// Open of a path that passes the file filter; span `file.open {file.path}`.
    pub const FILE_OPEN: &str = "file.open";
    /// HTTP/1.x request; span `http.request {http.request.method} {server.address}`.
    pub const HTTP_REQUEST: &str = "http.request";
    /// The requesting side of an MCP call (or a notification's sender); span
    /// `{mcp.method.name} {target}`, kind `CLIENT`.
    pub const MCP_CLIENT: &str = "mcp.client";
    /// The answering side of an MCP call; span `{mcp.method.name} {target}`, kind `SERVER`.
    pub const MCP_SERVER: &str = "mcp.server";
    /// A drift alert's log record.
    pub const AIBOM_DRIFT: &str = "aibom.drift";
}

/// Values of `runbom.capture`: where an HTTP request was captured (contract §1).
pub mod capture {
    /// Plaintext, at the socket write.
    pub const SOCKET: &str = "socket";
    /// Inside TLS, at OpenSSL's `SSL_write`.
    pub const OPENSSL: &str = "openssl";
    /// Inside TLS, at Go's `crypto/tls` `(*Conn).Write`/`Read`.
    pub const GO_TLS: &str = "go-tls";
}

/// Values of `runbom.correlation.method` and `runbom.correlation.confidence` (contract §2).
pub mod correlation {
    /// Method: the W3C `traceparent` header seen in the captured request.
    pub const TRACEPARENT: &str = "traceparent";
    /// Method: same pid and tid, inside the span's time.
    pub const THREAD: &str = "thread";
    /// Method: same pid, innermost span in time.
    pub const PROCESS: &str = "process";
    /// Method: a child process of a process active in the span.
    pub const ANCESTRY: &str = "ancestry";
    /// Method: not correlated.
    pub const NONE: &str = "none";
    /// Method: inferred from the LLM exchanges of a process that sends no traces (synthesised
    /// `invoke_agent`, `chat`, `execute_tool` spans).
    pub const INFERRED: &str = "inferred";
    /// Confidence of `traceparent` and `thread`.
    pub const HIGH: &str = "high";
    /// Confidence of `ancestry`, and of `process` with one candidate.
    pub const MEDIUM: &str = "medium";
    /// Confidence of `process` with overlapping candidates.
    pub const LOW: &str = "low";
}

/// Values of `aibom.component.kind` (contract §3).
pub mod component_kind {
    pub const AGENT: &str = "agent";
    pub const MODEL: &str = "model";
    pub const TOOL: &str = "tool";
    pub const SERVICE: &str = "service";
    pub const DATA: &str = "data";
    pub const PROCESS: &str = "process";
    pub const IDENTITY: &str = "identity";
}

/// Drift flags, the values of `aibom.drift.kinds` (contract §3): against the declared BOM
/// (`undeclared_*`) and against a learned behavioural baseline (`baseline_*`).
pub mod drift {
    pub const UNDECLARED_MODEL: &str = "undeclared_model";
    pub const UNDECLARED_TOOL: &str = "undeclared_tool";
    pub const UNDECLARED_ENDPOINT: &str = "undeclared_endpoint";
    pub const UNDECLARED_DATA_SOURCE: &str = "undeclared_data_source";
    pub const UNDECLARED_EXEC: &str = "undeclared_exec";
    pub const UNDECLARED_FILE: &str = "undeclared_file";
    /// The agent called an MCP server the BOM does not declare (for it).
    pub const UNDECLARED_MCP_SERVER: &str = "undeclared_mcp_server";
    /// The agent called a tool of a declared MCP server that is not declared (for it).
    pub const UNDECLARED_MCP_TOOL: &str = "undeclared_mcp_tool";
    /// An undeclared workload (no declared agent) used an AI provider, model or model server.
    pub const SHADOW_AI: &str = "shadow_ai";
    pub const BASELINE_NEW_DESTINATION: &str = "baseline_new_destination";
    pub const BASELINE_NEW_EXEC: &str = "baseline_new_exec";
    pub const BASELINE_NEW_FILE: &str = "baseline_new_file";
    pub const BASELINE_NEW_TOOL_DESTINATION: &str = "baseline_new_tool_destination";
    pub const BASELINE_PAYLOAD_SIZE: &str = "baseline_payload_size";
    pub const BASELINE_NEW_MODEL: &str = "baseline_new_model";
}

// HTTP/2 and gRPC (contract §1, `http.request`).
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const RPC_SYSTEM: &str = "rpc.system";
pub const RPC_SERVICE: &str = "rpc.service";
pub const RPC_METHOD: &str = "rpc.method";
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
/// The value of `rpc.system` for gRPC.
pub const RPC_SYSTEM_GRPC: &str = "grpc";
// --- MCP (contract §1 `mcp.client`/`mcp.server`): the OpenTelemetry GenAI semantic conventions
// for the Model Context Protocol, and runbom's own additions.

/// `mcp.method.name`: the JSON-RPC method (`tools/call`, `initialize`, …).
pub const MCP_METHOD_NAME: &str = "mcp.method.name";
/// `mcp.session.id`: the digest of a streamable-HTTP session's `Mcp-Session-Id` (contract §5).
pub const MCP_SESSION_ID: &str = "mcp.session.id";
/// `mcp.resource.uri`: `params.uri` of a resource request.
pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
/// `mcp.protocol.version`: the version `initialize` named.
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
/// `jsonrpc.request.id`.
pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
/// `rpc.response.status_code`: the JSON-RPC error code of an error response.
pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
/// `gen_ai.prompt.name`: the prompt of `prompts/get`.
pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
/// `error.type` of a `tools/call` whose result said `isError`.
pub const ERROR_TYPE_TOOL_ERROR: &str = "tool_error";
/// The process at the other end of the call.
pub const RUNBOM_MCP_PEER_PID: &str = "runbom.mcp.peer.pid";
/// `serverInfo.name` of an `initialize` result.
pub const RUNBOM_MCP_SERVER_NAME: &str = "runbom.mcp.server.name";
/// On an `mcp.client` span: the command line of the process that answered (the server).
pub const RUNBOM_MCP_SERVER_COMMAND_LINE: &str = "runbom.mcp.server.command_line";
/// The tool names a `tools/list` result listed (string array).
pub const RUNBOM_MCP_TOOLS: &str = "runbom.mcp.tools";
/// `true` on a request exported without its response (none came in time).
pub const RUNBOM_MCP_UNANSWERED: &str = "runbom.mcp.unanswered";

/// Values of `network.transport` of MCP spans.
pub mod mcp_transport {
    /// stdio over a pipe.
    pub const PIPE: &str = "pipe";
    /// stdio over a Unix socketpair (Node's child stdio), or a Unix socket.
    pub const UNIX: &str = "unix";
    /// Streamable HTTP.
    pub const TCP: &str = "tcp";
}

// ---------------------------------------------------------------------------------------------
// LLM exchanges read by runbom (contract §1 `http.request`, GenAI attributes)
// ---------------------------------------------------------------------------------------------

/// `gen_ai.response.id`.
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// `gen_ai.response.finish_reasons` (string array).
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `gen_ai.usage.input_tokens`.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `gen_ai.request.max_tokens`.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `gen_ai.request.temperature`.
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// `runbom.gen_ai.streamed`: the response was an event stream.
pub const RUNBOM_GEN_AI_STREAMED: &str = "runbom.gen_ai.streamed";
/// `gen_ai.tool.call.id`.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// `process.executable.name`: the agent a GenAI metric point belongs to.
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
/// `gen_ai.token.type` (`input`, `output`) of `gen_ai.client.token.usage`.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// `runbom.gen_ai.api`: the API shape the exchange spoke (`openai.chat_completions`, …).
pub const RUNBOM_GEN_AI_API: &str = "runbom.gen_ai.api";
/// `runbom.gen_ai.tool_calls`: names of the tools the model asked for (string array).
pub const RUNBOM_GEN_AI_TOOL_CALLS: &str = "runbom.gen_ai.tool_calls";
/// `runbom.gen_ai.tool_call_ids`: their ids, in the same order (string array).
pub const RUNBOM_GEN_AI_TOOL_CALL_IDS: &str = "runbom.gen_ai.tool_call_ids";
/// `runbom.gen_ai.tool_call_arguments`: their redacted arguments (only with `capture_content`).
pub const RUNBOM_GEN_AI_TOOL_CALL_ARGUMENTS: &str = "runbom.gen_ai.tool_call_arguments";
/// `runbom.gen_ai.request.tools`: the tools the request declared (string array).
pub const RUNBOM_GEN_AI_REQUEST_TOOLS: &str = "runbom.gen_ai.request.tools";
/// `runbom.gen_ai.partial`: the response was not seen whole.
pub const RUNBOM_GEN_AI_PARTIAL: &str = "runbom.gen_ai.partial";

/// Well-known values of `gen_ai.provider.name` (GenAI conventions).
pub mod gen_ai_provider {
    pub const OPENAI: &str = "openai";
    pub const ANTHROPIC: &str = "anthropic";
    pub const AWS_BEDROCK: &str = "aws.bedrock";
    pub const AZURE_AI_OPENAI: &str = "azure.ai.openai";
    pub const AZURE_AI_INFERENCE: &str = "azure.ai.inference";
    pub const GCP_GEMINI: &str = "gcp.gemini";
    pub const GCP_VERTEX_AI: &str = "gcp.vertex_ai";
    pub const MISTRAL_AI: &str = "mistral_ai";
    pub const GROQ: &str = "groq";
    pub const DEEPSEEK: &str = "deepseek";
    pub const X_AI: &str = "x_ai";
    pub const PERPLEXITY: &str = "perplexity";
    pub const COHERE: &str = "cohere";
    /// A server runbom does not know by name (an OpenAI-compatible one: Ollama, `vLLM`, `LiteLLM`).
    pub const OTHER: &str = "_OTHER";
}
