"""Turns the agent's notes (telemetry.Recorder's JSON) and the services' request log into the
ground truth of one run, for runbom's accuracy suite and the AI-BOM tests.

The document (schema `runbom.reference-agent.ground-truth/v1`) is described in README.md. In
short: per conversation, every span the agent created and every action with a kernel-visible
effect, each with the span it must end up under (`span_id`, which for the deliberately orphaned
HTTP span is that orphan span; `orphans[]` says which span the orphan itself must be stitched
under); what the servers saw; and the drift findings an AI-BOM check must raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SCHEMA = "runbom.reference-agent.ground-truth/v1"

# Which destinations each tool may use (what bom.cdx.json declares, with this run's ports).
TOOL_ENDPOINT_KEYS = {"http_get": "ticketing", "http_post": "ticketing",
                      "query_customers": "customers"}
# The MCP tools bom-mcp.cdx.json declares for the agent (the MCP variant), by server.
DECLARED_MCP_TOOLS = {"filesystem": ("read_text_file",), "helpdesk": ("add_ticket_comment",)}
MCP_SEND = "MCP send tools/call "  # the name of the MCP SDK's client span of a tool call


def _origin(url: str) -> tuple[str, str, int]:
    u = urlsplit(url)
    return u.scheme, u.hostname or "", u.port or (443 if u.scheme == "https" else 80)


def _tool_of(span_id: str | None, spans: Mapping[str, dict[str, Any]],
             stitch: Mapping[str, str]) -> dict[str, Any] | None:
    """The innermost execute_tool span at or above span_id, following stitched orphans."""
    while span_id:
        span = spans.get(span_id)
        if span is None:
            return None
        if span["operation"] == "execute_tool":
            return span
        span_id = span["parent_span_id"] or stitch.get(span_id)
    return None


def _allowed(action: dict[str, Any], tool: str, endpoints: Mapping[str, str]) -> bool:
    key = TOOL_ENDPOINT_KEYS.get(tool)
    if key is None:
        return True
    base = endpoints[key]
    if action["kind"] == "http.request":
        return bool(action["url"].startswith(base.rstrip("/") + "/") or action["url"] == base)
    _, host, port = _origin(base)
    return bool(action["address"] == host and action["port"] == port)


def build(record: dict[str, Any], run: dict[str, Any],
          server_log: list[dict[str, Any]]) -> dict[str, Any]:
    """The ground-truth document of one run.

    `run` holds what the harness knows: scenario, mode, endpoints, data_dir, agent exit code.
    """
    spans = {s["span_id"]: s for s in record["spans"]}
    stitch = {o["span_id"]: o["stitch_parent_span_id"] for o in record["orphans"]}
    endpoints: dict[str, str] = run["endpoints"]

    conversations = []
    for conv in record["conversations"]:
        index = conv["index"]
        conv_spans = [dict(s, orphan=s["span_id"] in stitch,
                           stitch_parent_span_id=stitch.get(s["span_id"]))
                      for s in record["spans"] if s["conversation"] == index]
        actions = []
        for a in record["actions"]:
            if a["conversation"] != index:
                continue
            tool = _tool_of(a["span_id"], spans, stitch)
            actions.append(dict(a, by=a.get("by", "agent"),
                                span_name=spans[a["span_id"]]["name"],
                                tool=tool["tool"] if tool else None,
                                tool_span_id=tool["span_id"] if tool else None))
        outcome = next((o for o in record.get("outcomes", []) if o["index"] == index), None)
        conversations.append({
            **{k: conv[k] for k in ("index", "scenario", "ticket", "customer", "prompt",
                                    "trace_id", "root_span_id", "thread_id",
                                    "conversation_id")},
            "ok": bool(outcome and outcome["ok"]),
            "answer": outcome["text"] if outcome else None,
            "spans": conv_spans,
            "actions": actions,
            "orphans": [o for o in record["orphans"] if o["conversation"] == index],
        })

    exfil = [e for e in server_log if e["service"] == "exfil"]
    exfil_ids = sorted({str(r.get("id")) for e in exfil if isinstance(e.get("body"), list)
                        for r in e["body"] if isinstance(r, dict)})
    return {
        "schema": SCHEMA,
        "scenario": run["scenario"],
        "mode": run["mode"],
        "agent": {"pid": record["pid"], "executable": record["executable"],
                  "service_name": record["service_name"], "exit_code": run["agent_exit_code"],
                  "span_thread_id": record.get("span_thread_id", True)},
        "otlp": record["otlp"],
        "endpoints": endpoints,
        "data_dir": run["data_dir"],
        "window": {"start_ns": record["started_ns"], "end_ns": record["ended_ns"]},
        "conversations": conversations,
        "orphans": record["orphans"],
        "expected_drift": expected_drift(conversations, endpoints)
        + expected_mcp_drift(conversations, record.get("mcp_tools") or {}),
        "server_view": [{k: e.get(k) for k in ("service", "method", "path", "traceparent",
                                                "status", "content_length", "client_port")}
                        for e in server_log],
        "exfiltration": {"requests": len(exfil), "records": len(exfil_ids),
                         "customer_ids": exfil_ids},
    }


def expected_drift(conversations: list[dict[str, Any]],
                   endpoints: Mapping[str, str]) -> list[dict[str, Any]]:
    """One finding per HTTP span through which a tool reached an endpoint not declared for it."""
    findings: list[dict[str, Any]] = []
    for conv in conversations:
        by_span: dict[str, list[dict[str, Any]]] = {}
        for a in conv["actions"]:
            if a["kind"] in ("http.request", "net.connect") and a["tool"] and \
                    not _allowed(a, a["tool"], endpoints):
                by_span.setdefault(a["span_id"], []).append(a)
        for span_id, actions in by_span.items():
            request = next(a for a in actions if a["kind"] == "http.request")
            reads = [a["path"] for a in conv["actions"]
                     if a["kind"] == "file.open" and a["start_ns"] < request["start_ns"]]
            data = sorted({a["tool"] for a in conv["actions"] if a["tool"] == "query_customers"
                           and a["start_ns"] < request["start_ns"]})
            findings.append({
                "drift_kinds": ["undeclared_endpoint"],
                "conversation": conv["index"],
                "trace_id": conv["trace_id"],
                "tool": request["tool"],
                "tool_span_id": request["tool_span_id"],
                "span_id": span_id,
                "destination": request["url"],
                "server_address": request["server_address"],
                "server_port": request["server_port"],
                "kernel_events": [a["kind"] for a in actions],
                "chain_mentions": [conv["prompt"], *reads, *data, request["tool"],
                                   request["url"]],
            })
    return findings


def expected_mcp_drift(conversations: list[dict[str, Any]],
                       mcp_tools: Mapping[str, str]) -> list[dict[str, Any]]:
    """One finding per MCP tool call (the MCP variant) of a tool the BOM does not declare for
    the agent. `mcp_tools` is tool name → server name, as the agent listed them."""
    findings: list[dict[str, Any]] = []
    for conv in conversations:
        spans = {s["span_id"]: s for s in conv["spans"]}
        for send in conv["spans"]:
            tool = send["name"].removeprefix(MCP_SEND)
            server = mcp_tools.get(tool)
            if not send["name"].startswith(MCP_SEND) or server is None or \
                    tool in DECLARED_MCP_TOOLS.get(server, ()):
                continue
            parent = spans.get(send["parent_span_id"] or "")
            findings.append({
                "drift_kinds": ["undeclared_mcp_tool"],
                "conversation": conv["index"],
                "trace_id": conv["trace_id"],
                "tool": tool,
                "tool_span_id": parent["span_id"] if parent else send["span_id"],
                "span_id": send["span_id"],
                "destination": server,
                "kernel_events": ["mcp.client", "file.open"],
                "chain_mentions": [conv["prompt"], f"tools/call {tool}"],
            })
    return findings
