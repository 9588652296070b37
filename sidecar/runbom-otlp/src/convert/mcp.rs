//! `mcp.client` / `mcp.server` (contract §1): the attributes of the OpenTelemetry GenAI
//! semantic conventions for MCP, and runbom's own.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
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

use super::{kv_bool, kv_int, kv_str};

/// `error.type`: the JSON-RPC error code, or `tool_error` when the tool's result said
/// `isError`.
pub(super) fn error_type(m: &McpCall) -> Option<Cow<'static, str>> {
    if let Some(code) = m.rpc_error_code {
        return Some(code.to_string().into());
    }
    m.tool_error.then_some(Cow::Borrowed(ERROR_TYPE_TOOL_ERROR))
}

pub(super) fn body(who: &str, m: &McpCall) -> String {
    let id = m
        .request_id
        .as_deref()
        .map(|id| format!(" id {id}"))
        .unwrap_or_default();
    let outcome = match (error_type(m), m.answered || m.request_id.is_none()) {
        (Some(e), _) => format!(" failed: {e}"),
        (None, true) => String::new(),
        (None, false) => " (no response)".into(),
    };
    let side = match m.side {
        runbom_event::McpSide::Client => "mcp call",
        runbom_event::McpSide::Server => "mcp served",
    };
    format!("{who} {side} {}{id}{outcome}", m.span_name())
}

pub(super) fn attributes(m: &McpCall, a: &mut Vec<KeyValue>) {
    a.push(kv_str(MCP_METHOD_NAME, &m.method));
    if let Some(target) = &m.target {
        match m.method.as_str() {
            "tools/call" => {
                a.push(kv_str(GEN_AI_TOOL_NAME, target));
                a.push(kv_str(GEN_AI_OPERATION_NAME, "execute_tool"));
            }
            "prompts/get" => a.push(kv_str(GEN_AI_PROMPT_NAME, target)),
            _ => {}
        }
    }
    if let Some(id) = &m.request_id {
        a.push(kv_str(JSONRPC_REQUEST_ID, id));
    }
    if let Some(uri) = &m.resource_uri {
        a.push(kv_str(MCP_RESOURCE_URI, uri));
    }
    if let Some(session) = &m.session_id {
        a.push(kv_str(MCP_SESSION_ID, session));
    }
    if let Some(version) = &m.protocol_version {
        a.push(kv_str(MCP_PROTOCOL_VERSION, version));
    }
    a.push(kv_str(NETWORK_TRANSPORT, m.transport.as_str()));
    if let Some(code) = m.rpc_error_code {
        a.push(kv_str(RPC_RESPONSE_STATUS_CODE, &code.to_string()));
    }
    if let Some(e) = error_type(m) {
        a.push(kv_str(ERROR_TYPE, &e));
    }
    if let Some(args) = &m.arguments {
        a.push(kv_str(GEN_AI_TOOL_CALL_ARGUMENTS, args));
    }
    if let Some(pid) = m.peer_pid {
        a.push(kv_int(RUNBOM_MCP_PEER_PID, pid.into()));
    }
    if let Some(cmd) = &m.server_command_line {
        a.push(kv_str(RUNBOM_MCP_SERVER_COMMAND_LINE, cmd));
    }
    if let Some(name) = &m.server_name {
        a.push(kv_str(RUNBOM_MCP_SERVER_NAME, name));
    }
    if let Some(url) = &m.server_url {
        a.push(kv_str(URL_FULL, url));
    }
    if !m.tools.is_empty() {
        a.push(KeyValue {
            key: RUNBOM_MCP_TOOLS.into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: m
                        .tools
                        .iter()
                        .map(|t| AnyValue {
                            value: Some(Value::StringValue(t.clone())),
                        })
                        .collect(),
                })),
            }),
        });
    }
    if !m.answered && m.request_id.is_some() {
        a.push(kv_bool(RUNBOM_MCP_UNANSWERED, true));
    }
}
