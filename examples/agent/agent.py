#!/usr/bin/env python3
"""runbom's reference AI agent: a tool-calling support agent instrumented with the OpenTelemetry
SDK (GenAI semantic conventions), exporting OTLP.

    OPENAI_API_KEY=sk-… agent.py [--mode sequential|threads|asyncio]
        [--scenario benign|injected] [--llm-url URL] [--ticketing-url URL]
        [--customers-url URL] [--data-dir DIR] [--ca-file PEM]
        [--otlp-endpoint URL] [--otlp-protocol http/protobuf|grpc|none]
        [--record FILE] [--no-content] [--no-thread-id] [--timeout S]
        [--mcp --mcp-url URL]

Modes: `sequential` runs one conversation; `threads` two at once on two threads; `asyncio` two
at once as asyncio tasks on one thread. In the concurrent modes the second conversation is
always benign. It needs the stub LLM and the services running (run.py starts everything);
the API key comes from OPENAI_API_KEY and is never printed.

Prints one line per conversation (`conversation N ok|failed: …`); with --record, writes the
ground-truth notes (spans and kernel-visible actions) as JSON.

`--mcp` is the MCP variant (mcp_client.py): the agent reads ticket notes through the npm
filesystem MCP server (stdio, started at start with the data dir as its only directory) and
comments through the helpdesk MCP server at --mcp-url (streamable HTTP, mcp_helpdesk.py),
offering the model every tool the two servers list. Exits 0 when every conversation
finished, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace

from conversation import Agent
from mcp_client import McpError, McpHub, filesystem_server, helpdesk_server
from scenarios import (
    DEFAULT_PORTS,
    DEFAULT_WORK_DIR,
    HOST,
    MODEL,
    MODES,
    SCENARIOS,
    Conversation,
    conversations,
)
from telemetry import CONVERSATION, PROTOCOLS, Recorder, setup_tracing, shutdown_tracing
from tools import AgentConfig
from transport import AsyncTransport, SyncTransport, TransportError, drive_async, drive_sync


@dataclass
class Outcome:
    index: int
    ok: bool
    text: str


def _one(agent: Agent, conv: Conversation, transport: SyncTransport) -> Outcome:
    CONVERSATION.set(conv.index)
    try:
        return Outcome(conv.index, True, drive_sync(agent.converse(conv), transport))
    except Exception as e:  # noqa: BLE001 (reported, the run goes on)
        return Outcome(conv.index, False, f"{type(e).__name__}: {e}")


def run_sequential(agent: Agent, convs: list[Conversation], transport: SyncTransport,
                   timeout: float) -> list[Outcome]:
    return [_one(agent, conv, transport) for conv in convs]


def run_threads(agent: Agent, convs: list[Conversation], transport: SyncTransport,
                timeout: float) -> list[Outcome]:
    """One thread per conversation, released together by a barrier."""
    outcomes: dict[int, Outcome] = {}
    barrier = threading.Barrier(len(convs), timeout=10)

    def work(conv: Conversation) -> None:
        barrier.wait()
        outcomes[conv.index] = _one(agent, conv, transport)

    threads = [threading.Thread(target=work, args=(c,), name=f"conversation-{c.index}",
                                daemon=True) for c in convs]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [outcomes.get(c.index, Outcome(c.index, False, f"timed out after {timeout} s"))
            for c in convs]


async def _one_async(agent: Agent, conv: Conversation, transport: AsyncTransport) -> Outcome:
    CONVERSATION.set(conv.index)  # task-local: each task runs in its own context copy
    try:
        return Outcome(conv.index, True, await drive_async(agent.converse(conv), transport))
    except Exception as e:  # noqa: BLE001
        return Outcome(conv.index, False, f"{type(e).__name__}: {e}")


async def _run_asyncio(agent: Agent, convs: list[Conversation], transport: AsyncTransport,
                       timeout: float) -> list[Outcome]:
    tasks = [asyncio.create_task(_one_async(agent, c, transport), name=f"conversation-{c.index}")
             for c in convs]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    return [t.result() if t in done else Outcome(i, False, f"timed out after {timeout} s")
            for i, t in enumerate(tasks)]


def run_asyncio(agent: Agent, convs: list[Conversation], transport: SyncTransport,
                timeout: float) -> list[Outcome]:
    assert isinstance(transport, AsyncTransport)
    return asyncio.run(_run_asyncio(agent, convs, transport, timeout))


RUNNERS = {"sequential": run_sequential, "threads": run_threads, "asyncio": run_asyncio}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=MODES, default="sequential")
    p.add_argument("--scenario", choices=SCENARIOS, default="benign")
    p.add_argument("--llm-url", default=f"https://{HOST}:{DEFAULT_PORTS['llm']}/v1")
    p.add_argument("--ticketing-url", default=f"http://{HOST}:{DEFAULT_PORTS['ticketing']}/api")
    p.add_argument("--customers-url", default=f"http://{HOST}:{DEFAULT_PORTS['customers']}")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_WORK_DIR / "data")
    p.add_argument("--ca-file", type=Path, default=DEFAULT_WORK_DIR / "tls" / "cert.pem",
                   help="certificate to trust for the LLM API (the stub's self-signed one)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                   help="default http://127.0.0.1:4318 (http/protobuf) or :4317 (grpc)")
    p.add_argument("--otlp-protocol", choices=PROTOCOLS,
                   default=os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
    p.add_argument("--record", type=Path, help="write the ground-truth notes here (JSON)")
    p.add_argument("--no-content", action="store_true",
                   help="do not capture prompts, tool arguments and results in spans")
    p.add_argument("--no-thread-id", action="store_true",
                   help="leave thread.id/thread.name off the spans, as the OpenTelemetry SDK "
                   "does by default (runbom's accuracy run without help)")
    p.add_argument("--timeout", type=float, default=60.0, help="bound on the whole run (s)")
    p.add_argument("--mcp", action="store_true",
                   help="the MCP variant: notes and comments through MCP servers")
    p.add_argument("--mcp-url", default=f"http://{HOST}:{DEFAULT_PORTS['mcp']}/mcp",
                   help="the helpdesk MCP server (streamable HTTP)")
    args = p.parse_args(argv)
    if args.otlp_endpoint is None:
        args.otlp_endpoint = f"http://{HOST}:{4317 if args.otlp_protocol == 'grpc' else 4318}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = os.environ.get("OPENAI_API_KEY", "")
    if not api_key:
        print("agent: set OPENAI_API_KEY (run.py makes a fake one)", file=sys.stderr)
        return 2
    try:
        tls = ssl.create_default_context(cafile=str(args.ca_file))
    except (OSError, ssl.SSLError) as e:
        print(f"agent: cannot load --ca-file {args.ca_file}: {e}", file=sys.stderr)
        return 2
    config = AgentConfig(llm_url=args.llm_url, api_key=api_key,
                         ticketing_url=args.ticketing_url, customers_url=args.customers_url,
                         data_dir=args.data_dir, model=args.model,
                         capture_content=not args.no_content)
    # The MCP servers start before the telemetry: their start-up is no conversation's.
    hub, mcp_tools = None, {}
    if args.mcp:
        try:
            hub = McpHub([filesystem_server(args.data_dir.resolve()),
                          helpdesk_server(args.mcp_url)])
            mcp_tools = hub.start()
        except McpError as e:
            print(f"agent: {e}", file=sys.stderr)
            return 2
    recorder = Recorder()
    provider = setup_tracing(args.otlp_protocol, args.otlp_endpoint, recorder,
                             thread_id=not args.no_thread_id)
    trace.set_tracer_provider(provider)
    agent = Agent(config, trace.get_tracer("runbom.reference_agent", "0.1.0"), recorder, hub,
                  mcp_tools)
    transport: SyncTransport = (AsyncTransport if args.mode == "asyncio" else SyncTransport)(
        recorder, tls)

    convs = conversations(args.scenario, args.mode)
    started = time.time_ns()
    try:
        outcomes = RUNNERS[args.mode](agent, convs, transport, args.timeout)
    except TransportError as e:  # pragma: no cover (drivers turn these into outcomes)
        outcomes = [Outcome(c.index, False, str(e)) for c in convs]
    ended = time.time_ns()
    if hub is not None:
        hub.close()
    flushed = shutdown_tracing(provider)
    for o in outcomes:
        print(f"conversation {o.index} {'ok' if o.ok else 'failed'}: {o.text}", flush=True)
    if not flushed:
        print("agent: the OTLP exporter did not flush in time", file=sys.stderr)
    if args.record:
        recorder.dump(args.record, mode=args.mode, scenario=args.scenario,
                      started_ns=started, ended_ns=ended, flushed=flushed,
                      span_thread_id=not args.no_thread_id,
                      otlp={"protocol": args.otlp_protocol, "endpoint": args.otlp_endpoint},
                      outcomes=[vars(o) for o in outcomes],
                      service_name=provider.resource.attributes.get("service.name"),
                      mcp_tools={name: server.name for name, (server, _) in mcp_tools.items()})
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
