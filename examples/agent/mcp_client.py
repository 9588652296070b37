"""The agent's MCP side (the `--mcp` variant): its MCP servers, their tools as OpenAI function
specs, and one tool call as an I/O operation (`McpCall`, performed by transport.py).

Two servers, both spoken to with the official Python SDK (`mcp`):

| server | transport | tools the agent offers the model |
|---|---|---|
| `filesystem` | stdio: `node …/@modelcontextprotocol/server-filesystem/dist/index.js <data dir>` (npm) | every tool it lists (`read_text_file`, `write_file`, …) |
| `helpdesk` | streamable HTTP: `mcp_helpdesk.py` (`POST <url>` with `Mcp-Session-Id`) | `add_ticket_comment` |

The agent starts both (`initialize`, `tools/list`) once, before its telemetry is set up and
any conversation runs, and keeps the sessions (`McpHub`): a server's start-up (Node loading
its modules, the SDK's imports) belongs to no conversation. A tool call is then sent from the
thread (or asyncio task) running the tool, in its context: the SDK opens its `MCP send …`
client span under the `execute_tool` span and puts that span's `traceparent` in the request's
`params._meta`, which places the kernel's `mcp.client` span and the server's file access under
the tool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FS_SERVER_JS = (HERE.parents[1] / "tests" / "node" / "node_modules" / "@modelcontextprotocol"
                / "server-filesystem" / "dist" / "index.js")
START_TIMEOUT_S = 60.0
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
    """The I/O operation of one MCP tool call (yielded by a tool, performed by the transport
    through `hub`)."""

    hub: McpHub
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


class McpHub:
    """The agent's sessions with its MCP servers, opened once at start and kept: an asyncio loop
    on a thread of its own owns them (the SDK's task groups are exited by the task that entered
    them); tool calls are sent to it from any thread or loop, in the caller's context (so the
    SDK's span of the call is a child of the caller's `execute_tool` span)."""

    def __init__(self, servers: list[McpServer]) -> None:
        self.servers = {s.name: s for s in servers}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-sessions",
                                        daemon=True)
        self._sessions: dict[str, Any] = {}
        self._stop: asyncio.Event | None = None
        self._owner: concurrent.futures.Future[None] | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> dict[str, tuple[McpServer, dict[str, Any]]]:
        """Starts or connects to every server (`initialize`, `tools/list`); returns every tool as
        `name → (server, OpenAI function spec)`, the first server that lists a name keeping it."""
        self._thread.start()
        listed: concurrent.futures.Future[dict[str, tuple[McpServer, dict[str, Any]]]] = (
            concurrent.futures.Future())
        self._owner = asyncio.run_coroutine_threadsafe(self._own(listed), self._loop)
        try:
            return listed.result(timeout)
        except concurrent.futures.TimeoutError as e:
            self.close()
            raise McpError(f"the MCP servers did not start within {timeout} s") from e
        except McpError:
            self.close()
            raise

    async def _own(self, listed: concurrent.futures.Future[Any]) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        # What the SDK imports at the first tool result it validates, imported now: at start,
        # not while a conversation's tool call runs.
        import jsonschema.exceptions  # noqa: F401
        import jsonschema.validators  # noqa: F401

        self._stop = asyncio.Event()
        tools: dict[str, tuple[McpServer, dict[str, Any]]] = {}
        try:
            async with contextlib.AsyncExitStack() as stack:
                errlog = stack.enter_context(open(SERVER_LOG, "a", encoding="utf-8"))
                for server in self.servers.values():
                    if server.command:
                        params = StdioServerParameters(command=server.command[0],
                                                       args=list(server.command[1:]))
                        transport = stdio_client(params, errlog=errlog)
                    else:
                        transport = streamable_http_client(server.url)
                    try:
                        read, write = await stack.enter_async_context(transport)
                        session = await stack.enter_async_context(ClientSession(read, write))
                        await session.initialize()
                        for tool in (await session.list_tools()).tools:
                            tools.setdefault(tool.name, (server, function_spec(tool)))
                    except Exception as e:  # the SDK's errors come as exception groups
                        raise McpError(f"MCP server {server.name}: {e!r}") from e
                    self._sessions[server.name] = session
                listed.set_result(tools)
                await self._stop.wait()
        except BaseException as e:
            if not listed.done():
                listed.set_exception(e if isinstance(e, McpError) else McpError(repr(e)))
            if not isinstance(e, Exception):
                raise

    async def _call(self, call: McpCall) -> McpResult:
        session = self._sessions.get(call.server.name)
        if session is None:
            raise McpError(f"no session with MCP server {call.server.name}")
        try:
            result = await session.call_tool(call.tool, call.arguments)
        except Exception as e:
            raise McpError(f"{call.server.name}: {call.tool}: {e!r}") from e
        text = "\n".join(str(getattr(c, "text", "")) for c in result.content)
        return McpResult(text, bool(result.is_error))

    def call_sync(self, call: McpCall) -> McpResult:
        """One `tools/call`, waited for by this thread (bounded by `call.timeout`)."""
        fut = asyncio.run_coroutine_threadsafe(self._call(call), self._loop)
        try:
            return fut.result(call.timeout)
        except concurrent.futures.TimeoutError as e:
            fut.cancel()
            raise McpError(f"{call.server.name}: {call.tool} took longer than "
                           f"{call.timeout} s") from e

    async def call_async(self, call: McpCall) -> McpResult:
        """One `tools/call`, awaited on the caller's loop (bounded by `call.timeout`)."""
        fut = asyncio.run_coroutine_threadsafe(self._call(call), self._loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), call.timeout)
        except TimeoutError as e:
            raise McpError(f"{call.server.name}: {call.tool} took longer than "
                           f"{call.timeout} s") from e

    def close(self, timeout: float = 15.0) -> None:
        """Ends the sessions (a stdio server's stdin is closed, then it is stopped)."""
        if self._owner is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            with contextlib.suppress(Exception):
                self._owner.result(timeout)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


def function_spec(tool: Any) -> dict[str, Any]:
    """An MCP tool as an OpenAI function spec (name, description, its input JSON Schema)."""
    schema = dict(tool.input_schema or {"type": "object", "properties": {}})
    return {"type": "function", "function": {
        "name": tool.name, "description": (tool.description or "")[:1024],
        "parameters": schema}}
