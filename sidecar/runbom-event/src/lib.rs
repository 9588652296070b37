//! runbom's kernel event model and the telemetry contract's names, free of anything that loads
//! eBPF: the events ([`event`]) and the process that caused them ([`process`]), names for the
//! numbers the kernel reports ([`names`]), credential redaction ([`redact`]), HTTP/1.x head
//! parsing ([`http`]), JSON-RPC/MCP message parsing ([`jsonrpc`]), span and trace ids
//! ([`ids`]), and every attribute, scope and event name of the telemetry contract (`docs/telemetry-contract.md`) as constants ([`semconv`]).

pub mod cgroup;
pub mod event;
pub mod genai;
pub mod http;
pub mod ids;
pub mod jsonrpc;
pub mod mcp;
pub mod names;
pub mod process;
pub mod redact;
pub mod semconv;

pub use event::{
    Capture, Detail, GrpcCall, HttpRequest, HttpVersion, KernelEvent, TraceParent, Transport,
};
pub use genai::{GenAi, ToolCall};
pub use mcp::{McpCall, McpSide, McpTransport};
pub use process::ProcessInfo;
