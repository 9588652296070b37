"""The agent loop, written once as generators of I/O operations (driven by transport.py).

A conversation is one `invoke_agent support-agent` span (root of its trace). Inside it the
agent alternates `chat gpt-4o-mini` spans (an OpenAI chat-completions call over HTTPS, the
span being the HTTP client: `traceparent` names it) and one `execute_tool <name>` span per tool
call the model asks for, until the model answers without tool calls. Attributes follow the
OpenTelemetry GenAI semantic conventions; the opt-in content attributes
(`gen_ai.input.messages`, `gen_ai.tool.call.arguments`, …) are set unless content capture is
off, truncated, and never contain the API key.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from scenarios import AGENT_NAME, PROVIDER, Conversation, system_prompt
from telemetry import Recorder, hex_ids
from mcp_client import McpHub, McpServer
from tools import AgentConfig, ToolError, Tools
from transport import HttpRequest, HttpResponse, Steps, TransportError

MAX_ATTRIBUTE = 2048


class AgentError(Exception):
    """The conversation could not finish (model call refused, too many turns)."""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ATTRIBUTE else text[:MAX_ATTRIBUTE] + "…[truncated]"


class Agent:
    def __init__(self, config: AgentConfig, tracer: trace.Tracer, recorder: Recorder,
                 mcp: McpHub | None = None,
                 mcp_tools: dict[str, tuple[McpServer, dict[str, Any]]] | None = None) -> None:
        self.config, self.tracer, self.recorder = config, tracer, recorder
        self.tools = Tools(config, tracer, recorder, mcp, mcp_tools)

    def converse(self, conv: Conversation) -> Steps[str]:
        """Answer one user request; returns the final answer text."""
        cfg = self.config
        conversation_id = f"{AGENT_NAME}-{os.getpid()}-{conv.index}"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.provider.name": PROVIDER, "gen_ai.request.model": cfg.model,
            "gen_ai.conversation.id": conversation_id}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(str(cfg.data_dir), cfg.ticketing_url)},
            {"role": "user", "content": conv.prompt}]
        if cfg.capture_content:
            attrs["gen_ai.input.messages"] = json.dumps([messages[1]])
        with self.tracer.start_as_current_span(f"invoke_agent {AGENT_NAME}",
                                               kind=SpanKind.INTERNAL, attributes=attrs) as span:
            trace_id, span_id = hex_ids(span.get_span_context())
            self.recorder.conversation(
                index=conv.index, scenario=conv.scenario, ticket=conv.ticket,
                customer=conv.customer, prompt=conv.prompt, trace_id=trace_id,
                root_span_id=span_id, thread_id=threading.get_native_id(),
                conversation_id=conversation_id)
            for _ in range(cfg.max_turns):
                reply = yield from self._chat(messages, conversation_id)
                messages.append(reply)
                calls = reply.get("tool_calls") or []
                if not calls:
                    answer = str(reply.get("content") or "")
                    if cfg.capture_content:
                        span.set_attribute("gen_ai.output.messages", json.dumps(
                            [{"role": "assistant", "content": _clip(answer)}]))
                    return answer
                for call in calls:
                    result = yield from self._tool(call)
                    messages.append({"role": "tool", "tool_call_id": call["id"],
                                     "content": result})
            raise AgentError(f"no answer after {cfg.max_turns} model calls")

    def _chat(self, messages: list[dict[str, Any]], conversation_id: str) -> Steps[dict[str, Any]]:
        cfg = self.config
        url = cfg.llm_url.rstrip("/") + "/chat/completions"
        u = urlsplit(url)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": cfg.model, "gen_ai.request.temperature": 0.0,
            "gen_ai.conversation.id": conversation_id,
            "server.address": u.hostname or "", "server.port": u.port or 443}
        with self.tracer.start_as_current_span(f"chat {cfg.model}", kind=SpanKind.CLIENT,
                                               attributes=attrs) as span:
            body = json.dumps({"model": cfg.model, "messages": messages, "tools": self.tools.specs,
                               "tool_choice": "auto", "temperature": 0}).encode()
            headers = {"Authorization": f"Bearer {cfg.api_key}",
                       "Content-Type": "application/json"}
            resp = yield HttpRequest("POST", url, headers, body, timeout=30.0,
                                     note={"model": cfg.model})
            assert isinstance(resp, HttpResponse)
            if resp.status != 200:
                span.set_attribute("error.type", str(resp.status))
                raise AgentError(f"model call failed with HTTP {resp.status}: {_error(resp)}")
            data = resp.json()
            usage = data.get("usage") or {}
            span.set_attributes({
                "gen_ai.response.model": data["model"], "gen_ai.response.id": data["id"],
                "gen_ai.response.finish_reasons": [c["finish_reason"] for c in data["choices"]],
                "gen_ai.usage.input_tokens": int(usage.get("prompt_tokens", 0)),
                "gen_ai.usage.output_tokens": int(usage.get("completion_tokens", 0))})
            message: dict[str, Any] = data["choices"][0]["message"]
            return message

    def _tool(self, call: dict[str, Any]) -> Steps[str]:
        name = str(call["function"]["name"])
        arguments = str(call["function"].get("arguments") or "{}")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": str(call["id"]), "gen_ai.tool.type": "function",
            "gen_ai.tool.description": self.tools.descriptions.get(name, "")}
        if self.config.capture_content:
            attrs["gen_ai.tool.call.arguments"] = _clip(arguments)
        with self.tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL,
                                               attributes=attrs) as span:
            try:
                outcome = self.tools.run(name, json.loads(arguments))
                result = (yield from outcome) if inspect.isgenerator(outcome) else outcome
            except (ToolError, TransportError, OSError, ValueError, KeyError) as e:
                span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"))
                span.set_attribute("error.type", type(e).__name__)
                result = f"error: {e}"
            if self.config.capture_content:
                span.set_attribute("gen_ai.tool.call.result", _clip(str(result)))
            return str(result)


def _error(resp: HttpResponse) -> str:
    """The message of an OpenAI-style error body, never the body itself."""
    try:
        return str(resp.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return "(no error message)"
