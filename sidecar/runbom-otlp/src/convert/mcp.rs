//! `mcp.client` / `mcp.server` (contract §1): the attributes of the OpenTelemetry GenAI
//! semantic conventions for MCP, and runbom's own.

use std::borrow::Cow;

use runbom_event::{
    McpCall,
    semconv::{
        ERROR_TYPE, ERROR_TYPE_TOOL_ERROR, GEN_AI_OPERATION_NAME, GEN_AI_PROMPT_NAME,
        GEN_AI_TOOL_CALL_ARGUMENTS, GEN_AI_TOOL_NAME, JSONRPC_REQUEST_ID, MCP_METHOD_NAME,
        MCP_PROTOCOL_VERSION, MCP_RESOURCE_URI, MCP_SESSION_ID, NETWORK_TRANSPORT,
        RPC_RESPONSE_STATUS_CODE, RUNBOM_MCP_PEER_PID, RUNBOM_MCP_SERVER_COMMAND_LINE,
        RUNBOM_MCP_SERVER_NAME, RUNBOM_MCP_TOOLS, RUNBOM_MCP_UNANSWERED, URL_FULL,
    },
};

use super::AttributeSink;

/// `error.type`: the JSON-RPC error code, or `tool_error` when the tool's result said
/// `isError`.
pub(super) fn error_type(m: &McpCall) -> Option<Cow<'static, str>> {
    if let Some(code) = m.rpc_error_code {
        return Some(code.to_string().into());
    }
    m.tool_error.then_some(Cow::Borrowed(ERROR_TYPE_TOOL_ERROR))
}

/// The body after `exe [pid] `, appended to `s`.
pub(super) fn write_body(m: &McpCall, s: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    s.push_str(match m.side {
        runbom_event::McpSide::Client => "mcp call ",
        runbom_event::McpSide::Server => "mcp served ",
    });
    s.push_str(&m.span_name());
    if let Some(id) = &m.request_id {
        s.push_str(" id ");
        s.push_str(id);
    }
    match (error_type(m), m.answered || m.request_id.is_none()) {
        (Some(e), _) => write!(s, " failed: {e}"),
        (None, true) => Ok(()),
        (None, false) => {
            s.push_str(" (no response)");
            Ok(())
        }
    }
}

pub(super) fn attributes(m: &McpCall, a: &mut impl AttributeSink) {
    a.str(MCP_METHOD_NAME, &m.method);
    if let Some(target) = &m.target {
        match m.method.as_str() {
            "tools/call" => {
                a.str(GEN_AI_TOOL_NAME, target);
                a.str(GEN_AI_OPERATION_NAME, "execute_tool");
            }
            "prompts/get" => a.str(GEN_AI_PROMPT_NAME, target),
            _ => {}
        }
    }
    if let Some(id) = &m.request_id {
        a.str(JSONRPC_REQUEST_ID, id);
    }
    if let Some(uri) = &m.resource_uri {
        a.str(MCP_RESOURCE_URI, uri);
    }
    if let Some(session) = &m.session_id {
        a.str(MCP_SESSION_ID, session);
    }
    if let Some(version) = &m.protocol_version {
        a.str(MCP_PROTOCOL_VERSION, version);
    }
    a.str(NETWORK_TRANSPORT, m.transport.as_str());
    if let Some(code) = m.rpc_error_code {
        a.formatted(RPC_RESPONSE_STATUS_CODE, |s| {
            s.push_str(itoa::Buffer::new().format(code));
        });
    }
    if let Some(e) = error_type(m) {
        a.str(ERROR_TYPE, &e);
    }
    if let Some(args) = &m.arguments {
        a.str(GEN_AI_TOOL_CALL_ARGUMENTS, args);
    }
    if let Some(pid) = m.peer_pid {
        a.int(RUNBOM_MCP_PEER_PID, pid.into());
    }
    if let Some(cmd) = &m.server_command_line {
        a.str(RUNBOM_MCP_SERVER_COMMAND_LINE, cmd);
    }
    if let Some(name) = &m.server_name {
        a.str(RUNBOM_MCP_SERVER_NAME, name);
    }
    if let Some(url) = &m.server_url {
        a.str(URL_FULL, url);
    }
    if !m.tools.is_empty() {
        a.strs(RUNBOM_MCP_TOOLS, m.tools.iter().map(String::as_str));
    }
    if !m.answered && m.request_id.is_some() {
        a.bool(RUNBOM_MCP_UNANSWERED, true);
    }
}
