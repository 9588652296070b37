#!/usr/bin/env python3
"""The helpdesk's MCP server: streamable HTTP, built on the official Python SDK (`mcp`).

    mcp_helpdesk.py [--port N] [--json-response] [--cert PEM --key PEM] [--log FILE]
                    [--max-lifetime S]

Serves MCP at `http://127.0.0.1:<port>/mcp` (port 0 = a free one) with one tool,
`add_ticket_comment(ticket, text)`, which keeps the comment (what the reference agent's MCP
variant posts instead of `http_post` to the ticketing API). Responses are event streams
(`text/event-stream`, the SDK's default) or, with --json-response, `application/json`; with
--cert and --key it serves HTTPS (`https://127.0.0.1:<port>/mcp`).
Each tool call is appended to --log as a JSON line (service `helpdesk-mcp`, the session id's
presence, the ticket). Prints `READY port=<port>` once listening; exits on SIGTERM/SIGINT or
after --max-lifetime seconds (default 300).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

from httpserve import RequestLog
from scenarios import DEFAULT_PORTS, HOST


def make_app(log: RequestLog, json_response: bool):  # type: ignore[no-untyped-def]
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("runbom-helpdesk", log_level="WARNING")
    comments: dict[str, list[str]] = {}

    @app.tool()
    def add_ticket_comment(ticket: str, text: str) -> str:
        """Add a comment to a helpdesk ticket."""
        comments.setdefault(ticket, []).append(text)
        log.write({"service": "helpdesk-mcp", "method": "tools/call",
                   "path": "/mcp", "tool": "add_ticket_comment", "ticket": ticket,
                   "time_ns": time.time_ns(), "status": 200, "content_length": len(text),
                   # Not known to a tool of the SDK's server (the ground truth's fields).
                   "traceparent": None, "client_port": 0})
        return f"comment {len(comments[ticket])} added to {ticket}"

    return app.streamable_http_app(json_response=json_response, host=HOST)


async def serve(sock: socket.socket, app, max_lifetime: float,  # type: ignore[no-untyped-def]
                tls: tuple[str, str] | None) -> None:
    import uvicorn

    certfile, keyfile = tls or (None, None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           ssl_certfile=certfile, ssl_keyfile=keyfile))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    loop.call_later(max_lifetime, lambda: setattr(server, "should_exit", True))
    await server.serve(sockets=[sock])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=DEFAULT_PORTS["mcp"])
    p.add_argument("--json-response", action="store_true")
    p.add_argument("--log", type=Path)
    p.add_argument("--cert", help="certificate (PEM) to serve HTTPS with")
    p.add_argument("--key", help="its private key (PEM)")
    p.add_argument("--max-lifetime", type=float, default=300.0)
    args = p.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, args.port))
    except OSError as e:
        print(f"mcp_helpdesk: cannot listen on {HOST}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    sock.listen(64)
    log = RequestLog(args.log)
    app = make_app(log, args.json_response)
    print(f"READY port={sock.getsockname()[1]}", flush=True)
    try:
        tls = (args.cert, args.key) if args.cert and args.key else None
        asyncio.run(serve(sock, app, args.max_lifetime, tls))
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
