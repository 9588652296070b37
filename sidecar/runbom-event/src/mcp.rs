//! An MCP call as runbom exports it (contract §1 `mcp.client` / `mcp.server`): one JSON-RPC
//! request paired with its response, seen from each side, or a notification seen from its
//! sender. Built by `runbom-kernel` from the messages [`crate::jsonrpc`] parses.

use crate::{TraceParent, semconv::mcp_transport};

/// Which end of the call an event describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpSide {
    /// The process that sent the request (span kind `CLIENT`).
    Client,
    /// The process that answered it (span kind `SERVER`).
    Server,
}

/// How the messages travelled (`network.transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpTransport {
    /// A pipe (stdio).
    Pipe,
    /// A Unix socket (Node gives a child's stdio a socketpair).
    Unix,
    /// TCP (streamable HTTP).
    Tcp,
}

impl McpTransport {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pipe => mcp_transport::PIPE,
            Self::Unix => mcp_transport::UNIX,
            Self::Tcp => mcp_transport::TCP,
        }
    }
}

/// One side of one MCP call. Strings are redacted and bounded by the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpCall {
    pub side: McpSide,
    /// The span id this side is exported with, chosen when the call is paired: the
    /// correlation places what the server did while serving the call under it.
    pub span_id: [u8; 8],
    /// `mcp.method.name`.
    pub method: String,
    /// `gen_ai.tool.name` (`tools/call`) or `gen_ai.prompt.name` (`prompts/get`).
    pub target: Option<String>,
    /// `jsonrpc.request.id`; `None` for a notification.
    pub request_id: Option<String>,
    /// `mcp.resource.uri`.
    pub resource_uri: Option<String>,
    /// `mcp.session.id`: the digest of `Mcp-Session-Id` over HTTP ([`crate::redact::digest`]).
    pub session_id: Option<String>,
    /// `mcp.protocol.version` (from `initialize`).
    pub protocol_version: Option<String>,
    pub transport: McpTransport,
    /// `params._meta.traceparent` of the request, when the client propagated it.
    pub traceparent: Option<TraceParent>,
    /// The response's result said `isError`: the tool ran and failed (`error.type=tool_error`).
    pub tool_error: bool,
    /// The JSON-RPC error code of an error response (`rpc.response.status_code`).
    pub rpc_error_code: Option<i64>,
    /// The tool's arguments as redacted JSON text (exported only when configured).
    pub arguments: Option<String>,
    /// The process at the other end, when known.
    pub peer_pid: Option<u32>,
    /// The command line of the process that answered (on the client's side only): which MCP
    /// server this is, for the AI-BOM (`runbom.mcp.server.command_line`).
    pub server_command_line: Option<String>,
    /// `serverInfo.name` of an `initialize` result.
    pub server_name: Option<String>,
    /// The URL a streamable-HTTP request was sent to (`url.full`): which MCP server this is,
    /// for the AI-BOM, when no process answered where runbom saw it.
    pub server_url: Option<String>,
    /// The tools a `tools/list` result named.
    pub tools: Vec<String>,
    /// The response was seen (a request without one is exported when it waited too long).
    pub answered: bool,
}

impl McpCall {
    /// The span name: `{mcp.method.name} {target}`, or the method alone.
    #[must_use]
    pub fn span_name(&self) -> String {
        match &self.target {
            Some(t) => format!("{} {t}", self.method),
            None => self.method.clone(),
        }
    }
}
