"""The agent's MCP side (the `--mcp` variant): its MCP servers, their tools as OpenAI function
specs, and one tool call as an I/O operation (`McpCall`, performed by transport.py).

Two servers, both spoken to with the official Python SDK (`mcp`):

| server | transport | tools the agent offers the model |
|---|---|---|
| `filesystem` | stdio: `node …/@modelcontextprotocol/server-filesystem/dist/index.js <data dir>` (npm) | every tool it lists (`read_text_file`, `write_file`, …) |
| `helpdesk` | streamable HTTP: `mcp_helpdesk.py` (`POST <url>` with `Mcp-Session-Id`) | `add_ticket_comment` |

The tools are listed once at start (`tools/list`, one session per server). Each tool call then
opens a session of its own from the thread (or asyncio task) running the tool, inside the
`execute_tool` span: for stdio the server process is started under that span, so what it does
(its exec, its file access) belongs to the call; the SDK puts the current span's `traceparent`
in `params._meta` of every request (its `MCP send …` client spans).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FS_SERVER_JS = (HERE.parents[1] / "tests" / "node" / "node_modules" / "@modelcontextprotocol"
                / "server-filesystem" / "dist" / "index.js")
LIST_TIMEOUT_S = 30.0
SERVER_LOG = "mcp-servers.log"  # stdio servers' stderr, in the agent's working directory


class McpError(Exception):
    """An MCP server could not be started, reached or asked."""


@dataclass(frozen=True)
class McpServer:
    """How to reach one MCP server: a command (stdio) or a URL (streamable HTTP)."""

    name: str
    command: tuple[str, ...] = ()
    url: str = ""

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "streamable-http"


@dataclass(frozen=True)
class McpCall:
    """The I/O operation of one MCP tool call (yielded by a tool, performed by the transport)."""

    server: McpServer
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    timeout: float = 60.0


@dataclass(frozen=True)
class McpResult:
    text: str
    is_error: bool


def filesystem_server(data_dir: Path, js: Path = FS_SERVER_JS) -> McpServer:
    """The npm filesystem server over stdio, allowed the data directory only."""
    node = shutil.which("node") or "/usr/bin/node"
    if not js.is_file():
        raise McpError(f"{js} is missing: npm ci in tests/node (scripts/setup.sh --tests)")
    return McpServer("filesystem", command=(node, str(js), str(data_dir)))


def helpdesk_server(url: str) -> McpServer:
    return McpServer("helpdesk", url=url)


async def _session(server: McpServer, body: Any) -> Any:
    """Runs `body(session)` in a fresh, initialized client session with `server`."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    with open(SERVER_LOG, "a", encoding="utf-8") as errlog:
        if server.command:
            params = StdioServerParameters(command=server.command[0],
                                           args=list(server.command[1:]))
            transport = stdio_client(params, errlog=errlog)
        else:
            transport = streamable_http_client(server.url)
        async with transport as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await body(session)


async def call_async(call: McpCall) -> McpResult:
    """One `tools/call` in a session of its own; bounded by `call.timeout`."""

    async def body(session: Any) -> McpResult:
        result = await session.call_tool(call.tool, call.arguments)
        text = "\n".join(str(getattr(c, "text", "")) for c in result.content)
        return McpResult(text, bool(result.is_error))

    try:
        async with asyncio.timeout(call.timeout):
            return await _session(call.server, body)  # type: ignore[no-any-return]
    except TimeoutError as e:
        raise McpError(f"{call.server.name}: {call.tool} took longer than {call.timeout} s") from e
    except Exception as e:  # the SDK's errors come as exception groups from its task groups
        raise McpError(f"{call.server.name}: {call.tool}: {e!r}") from e


def call_sync(call: McpCall) -> McpResult:
    """`call_async` on a loop of its own in the calling thread (the current span goes along:
    the loop's task runs in a copy of this thread's context)."""
    return asyncio.run(call_async(call))


def list_tools(servers: list[McpServer]) -> dict[str, tuple[McpServer, dict[str, Any]]]:
    """Every tool of every server as `name → (server, OpenAI function spec)`; the first server
    that lists a name keeps it."""

    async def one(server: McpServer) -> list[Any]:
        async def body(session: Any) -> list[Any]:
            return list((await session.list_tools()).tools)

        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                return await _session(server, body)  # type: ignore[no-any-return]
        except Exception as e:
            raise McpError(f"cannot list the tools of MCP server {server.name}: {e!r}") from e

    async def every() -> dict[str, tuple[McpServer, dict[str, Any]]]:
        out: dict[str, tuple[McpServer, dict[str, Any]]] = {}
        for server in servers:
            for tool in await one(server):
                out.setdefault(tool.name, (server, function_spec(tool)))
        return out

    return asyncio.run(every())


def function_spec(tool: Any) -> dict[str, Any]:
    """An MCP tool as an OpenAI function spec (name, description, its input JSON Schema)."""
    schema = dict(tool.input_schema or {"type": "object", "properties": {}})
    return {"type": "function", "function": {
        "name": tool.name, "description": (tool.description or "")[:1024],
        "parameters": schema}}
