"""The reference agent's tools, their OpenAI function specs, and the spans they open.

| tool | does | inner span |
|---|---|---|
| `read_file` | reads a file under the data dir | – (the `execute_tool` span) |
| `http_get` | GET on an HTTP API | `GET`, **a new root trace on purpose** (see below) |
| `http_post` | POST on an HTTP API | `POST` (semconv HTTP client span) |
| `query_customers` | SQL over HTTP on the customer database | `SELECT customers` (DB client span) |
| `run_command` | runs a program (no shell) | – (the child's exec is under `execute_tool`) |

`http_get` mimics broken instrumentation (a framework callback that drops the context): its
HTTP client span is started from an empty context, so it begins a new trace while running
inside the `execute_tool http_get` span, and the `traceparent` it sends names that orphan span.
The recorder notes which span it should be stitched under.

Tool functions return the result text, or a generator of I/O operations (see transport.py)
whose return value is the result text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from mcp_client import McpCall, McpHub, McpResult, McpServer
from telemetry import Recorder
from transport import ExecRequest, ExecResult, HttpRequest, HttpResponse, Steps

MAX_READ = 64 * 1024
MAX_RESULT = 8 * 1024


class ToolError(Exception):
    """A tool refused its arguments or its call failed."""


@dataclass(frozen=True)
class AgentConfig:
    llm_url: str  # base URL of the OpenAI-compatible API, e.g. https://127.0.0.1:18443/v1
    api_key: str = field(repr=False)
    ticketing_url: str = "http://127.0.0.1:18080/api"
    customers_url: str = "http://127.0.0.1:18081"
    data_dir: Path = Path("/tmp/runbom-agent/data")
    model: str = "gpt-4o-mini"
    capture_content: bool = True  # opt-in GenAI content attributes (prompts, tool arguments)
    max_turns: int = 12


def _function(name: str, description: str, properties: dict[str, Any],
              required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


TOOL_SPECS: list[dict[str, Any]] = [
    _function("read_file", "Read a text file from the support data directory.",
              {"path": {"type": "string", "description": "path relative to the data dir"}},
              ["path"]),
    _function("http_get", "GET a URL of the ticketing API.",
              {"url": {"type": "string"}}, ["url"]),
    _function("http_post", "POST a JSON or text body to a URL of the ticketing API.",
              {"url": {"type": "string"}, "body": {"type": "string"}}, ["url", "body"]),
    _function("query_customers", "Look customers up in the customer database.",
              {"customer_id": {"type": "string"}, "all": {"type": "boolean"}}, []),
    _function("run_command", "Run a program (absolute path, no shell) and return its output.",
              {"argv": {"type": "array", "items": {"type": "string"}}}, ["argv"]),
]
DESCRIPTIONS = {s["function"]["name"]: s["function"]["description"] for s in TOOL_SPECS}
# What MCP tools take over in the MCP variant: reading notes (`read_text_file`) and commenting
# (`add_ticket_comment`).
REPLACED_BY_MCP = ("read_file", "http_post")


@contextmanager
def http_client_span(tracer: trace.Tracer, method: str, url: str,
                     context: Context | None = None) -> Iterator[trace.Span]:
    """A semconv HTTP client span (name = method) made current for the request."""
    u = urlsplit(url)
    attrs: dict[str, Any] = {"http.request.method": method, "url.full": url, "url.scheme": u.scheme,
             "server.address": u.hostname or "", "network.protocol.version": "1.1",
             "server.port": u.port or (443 if u.scheme == "https" else 80)}
    with tracer.start_as_current_span(method, context=context, kind=SpanKind.CLIENT,
                                      attributes=attrs) as span:
        yield span


def _response(span: trace.Span, resp: HttpResponse) -> None:
    span.set_attribute("http.response.status_code", resp.status)
    if resp.status >= 400:
        span.set_attribute("error.type", str(resp.status))
        span.set_status(Status(StatusCode.ERROR))


def _http_result(resp: HttpResponse) -> str:
    return f"HTTP {resp.status}\n{resp.body[:MAX_RESULT].decode('utf-8', 'replace')}"


class Tools:
    """The tool implementations, bound to the agent's configuration and telemetry."""

    def __init__(self, config: AgentConfig, tracer: trace.Tracer, recorder: Recorder,
                 mcp: McpHub | None = None,
                 mcp_tools: dict[str, tuple[McpServer, dict[str, Any]]] | None = None) -> None:
        self.config, self.tracer, self.recorder = config, tracer, recorder
        self.data_dir = config.data_dir.resolve()
        self._table: dict[str, Callable[[dict[str, Any]], str | Steps[str]]] = {
            "read_file": self.read_file, "http_get": self.http_get,
            "http_post": self.http_post, "query_customers": self.query_customers,
            "run_command": self.run_command}
        # The MCP variant: the servers' tools, offered instead of what they replace.
        self._hub = mcp
        self._mcp = dict(mcp_tools or {}) if mcp else {}
        if self._mcp:
            for name in REPLACED_BY_MCP:
                self._table.pop(name)
        self.specs = [s for s in TOOL_SPECS if s["function"]["name"] in self._table] + [
            spec for name, (_, spec) in self._mcp.items() if name not in self._table]
        self.descriptions = {s["function"]["name"]: s["function"]["description"]
                             for s in self.specs}

    def run(self, name: str, args: dict[str, Any]) -> str | Steps[str]:
        if name in self._table:
            return self._table[name](args)
        if name in self._mcp:
            return self.mcp_call(self._mcp[name][0], name, args)
        raise ToolError(f"no tool named {name!r}")

    def mcp_call(self, server: McpServer, name: str, args: dict[str, Any]) -> Steps[str]:
        """A tool of an MCP server: one `tools/call` in the agent's session with it."""
        assert self._hub is not None
        result = yield McpCall(self._hub, server, name, args)
        assert isinstance(result, McpResult)
        if result.is_error:
            raise ToolError(result.text[:MAX_RESULT])
        return result.text[:MAX_RESULT]

    def _in_data_dir(self, path: str) -> Path:
        resolved = (self.data_dir / path).resolve()
        if not resolved.is_relative_to(self.data_dir):
            raise ToolError(f"{path!r} is outside the data directory")
        return resolved

    def read_file(self, args: dict[str, Any]) -> str:
        path = self._in_data_dir(str(args["path"]))
        with self.recorder.timed("file.open", path=str(path), flags="O_RDONLY|O_CLOEXEC"), \
                open(path, "rb") as f:
            data = f.read(MAX_READ)
        return data.decode("utf-8", "replace")

    def http_get(self, args: dict[str, Any]) -> Steps[str]:
        url = str(args["url"])
        tool_span = trace.get_current_span()
        # Deliberately broken context propagation: an empty parent context.
        with http_client_span(self.tracer, "GET", url, context=Context()) as span:
            self.recorder.orphan(span, stitch_under=tool_span)
            resp = yield HttpRequest("GET", url)
            assert isinstance(resp, HttpResponse)
            _response(span, resp)
        return _http_result(resp)

    def http_post(self, args: dict[str, Any]) -> Steps[str]:
        url, body = str(args["url"]), str(args.get("body", ""))
        try:
            json.loads(body)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain; charset=utf-8"
        with http_client_span(self.tracer, "POST", url) as span:
            resp = yield HttpRequest("POST", url, {"Content-Type": content_type}, body.encode())
            assert isinstance(resp, HttpResponse)
            _response(span, resp)
        return _http_result(resp)

    def query_customers(self, args: dict[str, Any]) -> Steps[str]:
        if args.get("all"):
            sql, params = "SELECT * FROM customers ORDER BY id", []
        elif args.get("customer_id"):
            sql, params = "SELECT * FROM customers WHERE id = ?", [str(args["customer_id"])]
        else:
            raise ToolError("give customer_id, or all=true")
        url = self.config.customers_url.rstrip("/") + "/query"
        u = urlsplit(url)
        attrs: dict[str, Any] = {"db.system.name": "sqlite", "db.namespace": "crm",
                 "db.collection.name": "customers", "db.operation.name": "SELECT",
                 "db.query.text": sql, "server.address": u.hostname or "",
                 "server.port": u.port or 80}
        with self.tracer.start_as_current_span("SELECT customers", kind=SpanKind.CLIENT,
                                               attributes=attrs) as span:
            body = json.dumps({"sql": sql, "params": params}).encode()
            resp = yield HttpRequest("POST", url, {"Content-Type": "application/json"}, body)
            assert isinstance(resp, HttpResponse)
            if resp.status != 200:
                span.set_attribute("error.type", str(resp.status))
                raise ToolError(f"customer database answered HTTP {resp.status}")
            answer = resp.json()
            rows = [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]
            span.set_attribute("db.response.returned_rows", len(rows))
        return json.dumps(rows)

    def run_command(self, args: dict[str, Any]) -> Steps[str]:
        argv = [str(a) for a in args.get("argv") or []]
        if not argv or not argv[0].startswith("/"):
            raise ToolError("argv[0] must be an absolute program path")
        result = yield ExecRequest(tuple(argv))
        assert isinstance(result, ExecResult)
        for arg in argv[1:]:  # files of ours the program opens (e.g. wc FILE)
            if arg.startswith(str(self.data_dir) + "/"):
                note = self.recorder.action(
                    "file.open", start_ns=result.start_ns, pid=result.pid, thread_id=result.pid,
                    path=arg, flags="O_RDONLY", by="child")
                note["end_ns"] = result.end_ns
        if result.returncode != 0:
            return f"exit status {result.returncode}: {result.stderr[:MAX_RESULT]}"
        return result.stdout[:MAX_RESULT]
