"""MCP over stdio with the official Python SDK (`mcp`), for runbom's MCP tests.

    mcp_workload.py client --data-dir DIR [--server node|python] [--otel]
        A client session with a stdio server: initialize, tools/list, one tools/call that
        succeeds and one the server answers with isError. `node` is the npm
        @modelcontextprotocol/server-filesystem serving DIR; `python` is `server` below.
        With --otel an OpenTelemetry SDK is configured, so the SDK propagates each request's
        span in params._meta.traceparent. Prints one JSON line: pid, the calls made and, with
        --otel, the span ids the SDK sent.
    mcp_workload.py agent --data-dir DIR --otlp-endpoint URL
        An agent in one trace (an `invoke_agent mcp-agent` span, OTLP/HTTP to URL, resource
        service.name=mcp-agent and process.pid) using the npm filesystem server over stdio:
        initialize, tools/list, read_text_file of DIR/hello.txt, then write_file of
        DIR/planted.txt (what an injected instruction would make it do). Prints one JSON line.
    mcp_workload.py server
        A stdio MCP server (MCPServer) with tools `add` and `fail` (raises: isError).
    mcp_workload.py noise
        Pipe traffic that is not JSON-RPC: JSON log lines, text and binary blocks written to
        `cat` through a pipe. Prints one JSON line with the pid that wrote them.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
FS_SERVER = ROOT / "node" / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"


def server() -> None:
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("runbom-test-server")

    @app.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @app.tool()
    def fail() -> str:
        """Always fails."""
        raise RuntimeError("this tool always fails")

    app.run("stdio")


async def client(args) -> dict:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    exporter = None
    if args.otel:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    if args.server == "node":
        params = StdioServerParameters(command="node", args=[str(FS_SERVER), args.data_dir])
        ok_call = ("read_text_file", {"path": str(Path(args.data_dir) / "hello.txt")})
        bad_call = ("read_text_file", {"path": "/etc/hostname"})
    else:
        params = StdioServerParameters(command=sys.executable, args=[__file__, "server"])
        ok_call = ("add", {"a": 2, "b": 3})
        bad_call = ("fail", {})
    report = {"pid": os.getpid(), "calls": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report["server_name"] = init.server_info.name
            tools = await session.list_tools()
            report["tools"] = [t.name for t in tools.tools]
            for name, arguments in (ok_call, bad_call):
                result = await session.call_tool(name, arguments)
                report["calls"].append({"tool": name, "is_error": bool(result.is_error)})
    if exporter is not None:
        report["spans"] = [
            {
                "name": s.name,
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
            }
            for s in exporter.get_finished_spans()
        ]
    return report


async def agent(args) -> dict:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create(
        {"service.name": "mcp-agent", "process.pid": os.getpid()}))
    # Spans go out within 100 ms of their end, as an agent's should for the correlation.
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=args.otlp_endpoint.rstrip("/") + "/v1/traces"),
        schedule_delay_millis=100))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("mcp-agent")
    data = Path(args.data_dir)
    params = StdioServerParameters(command="node", args=[str(FS_SERVER), str(data)])
    report = {"pid": os.getpid()}
    with tracer.start_as_current_span("invoke_agent mcp-agent", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "mcp-agent"}) as root:
        report["trace_id"] = format(root.get_span_context().trace_id, "032x")
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()
                await session.call_tool("read_text_file", {"path": str(data / "hello.txt")})
                await session.call_tool("write_file", {"path": str(data / "planted.txt"),
                                                       "content": "planted by the agent\n"})
    provider.shutdown()
    report["planted"] = (data / "planted.txt").exists()
    return report


def noise() -> dict:
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    fd = cat.stdin.fileno()
    for i in range(20):
        os.write(fd, json.dumps({"level": "info", "msg": f"line {i}", "id": i}).encode() + b"\n")
        os.write(fd, b"plain text that is not json\n")
        os.write(fd, bytes(range(256)) * 16)
        # JSON-looking, names jsonrpc only deep in the middle of a long value: not a message.
        os.write(fd, b'{"note":"' + b"x" * 200 + b'\\"jsonrpc\\" said in passing' + b"y" * 200 + b'"}\n')
    cat.stdin.close()
    cat.wait()
    return {"pid": os.getpid(), "cat_pid": cat.pid}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--data-dir", required=True)
    c.add_argument("--server", choices=["node", "python"], default="node")
    c.add_argument("--otel", action="store_true")
    a = sub.add_parser("agent")
    a.add_argument("--data-dir", required=True)
    a.add_argument("--otlp-endpoint", required=True)
    sub.add_parser("server")
    sub.add_parser("noise")
    args = p.parse_args()
    if args.cmd == "server":
        server()
    elif args.cmd == "client":
        print(json.dumps(asyncio.run(client(args))), flush=True)
    elif args.cmd == "agent":
        print(json.dumps(asyncio.run(agent(args))), flush=True)
    else:
        print(json.dumps(noise()), flush=True)


if __name__ == "__main__":
    main()
