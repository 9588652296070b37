#!/usr/bin/env python3
"""Harness of the reference agent: starts its world, runs it once, writes the ground truth.

    run.py [--scenario benign|injected] [--mode sequential|threads|asyncio]
           [--otlp-endpoint URL] [--otlp-protocol http/protobuf|grpc|none]
           [--work-dir DIR] [--ground-truth FILE] [--any-ports]
           [--llm-port N] [--ticketing-port N] [--customers-port N] [--exfil-port N]
           [--no-thread-id] [--timeout S] [--json] [--agent python|node] [--node PATH]
           [--mcp] [--mcp-port N]

1. starts the services (ticketing API, customer database, exfil sink) and the HTTPS stub LLM,
   each a process of its own, on the ports bom.cdx.json declares (or free ones: --any-ports);
2. writes the ticket notes into WORK/data (T-2718's carries the injection naming the exfil
   sink's URL) and makes a fake API key (`sk-…`, never printed; RUNBOM_DEMO_API_KEY sets it);
3. runs agent.py as a separate process with the scenario and mode, exporting OTLP to
   --otlp-endpoint (default http://127.0.0.1:4318, HTTP/protobuf); with --no-thread-id its
   spans carry no `thread.id` (the OpenTelemetry SDK's defaults);
4. stops everything (also on failure, Ctrl-C or SIGTERM), then writes the ground-truth JSON
   (default WORK/ground-truth-<scenario>-<mode>.json) and says where; with --json, prints a
   summary object on stdout instead of text.

`--agent node` runs the same agent written for Node (examples/agent-node/agent.mjs: the
OpenTelemetry JS SDK and the `openai` npm package; the same three modes) in the same
world, trusting the stub's certificate through NODE_EXTRA_CA_CERTS; the ground truth is the same.
With --no-thread-id its spans are the JS SDK's own in their timestamps too (agent.mjs --sdk-clock).
With --mcp (the MCP variant) it also starts the helpdesk MCP server (mcp_helpdesk.py,
streamable HTTP) and runs the agent with `--mcp`: notes are read through the npm filesystem
MCP server, comments go through the helpdesk server, and T-2718's injection asks for
`write_file` of a script into the data dir (tickets/.on-call-hook.sh) instead of the export.

Exit status: the agent's (0 when every conversation finished), 2 when the world did not start.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from groundtruth import build
from scenarios import (
    DEFAULT_PORTS,
    DEFAULT_WORK_DIR,
    HOST,
    MODES,
    PLANTED,
    SCENARIOS,
    write_data_dir,
)

HERE = Path(__file__).resolve().parent
NODE_AGENT = HERE.parent / "agent-node" / "agent.mjs"


class StartError(Exception):
    """A helper process did not come up."""


class Child:
    """A helper process that prints `READY k=v …` when it serves; stopped on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, env=env, cwd=HERE)

    def ready(self, timeout: float) -> dict[str, str]:
        """Wait (bounded) for the READY line and return its key=value pairs."""
        assert self.proc.stdout is not None
        fd, buf, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartError(f"{self.name} did not say READY within {timeout} s")
            readable, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 4096) if readable else b""
            if readable and not chunk:
                tail = self.log.read_text(errors="replace")[-600:]
                raise StartError(f"{self.name} exited ({self.proc.wait()}) before READY: {tail}")
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            raise StartError(f"{self.name} said {line!r} instead of READY")
        return dict(item.split("=", 1) for item in line.split()[1:])

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=SCENARIOS, default="benign")
    p.add_argument("--mode", choices=MODES, default="sequential")
    p.add_argument("--otlp-endpoint", help="default http://127.0.0.1:4318 (or :4317 for grpc)")
    p.add_argument("--otlp-protocol", choices=("http/protobuf", "grpc", "none"),
                   default="http/protobuf")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    p.add_argument("--ground-truth", type=Path)
    p.add_argument("--any-ports", action="store_true", help="free ports instead of the defaults")
    for name, port in DEFAULT_PORTS.items():
        p.add_argument(f"--{name}-port", type=int, default=port)
    p.add_argument("--latency-ms", type=float, default=20.0, help="stub LLM think time")
    p.add_argument("--no-thread-id", action="store_true",
                   help="the agent's spans without thread.id/thread.name (plain SDK defaults)")
    p.add_argument("--timeout", type=float, default=60.0, help="bound on the agent's run (s)")
    p.add_argument("--python", default=_python(), help="interpreter for the agent")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--agent", choices=("python", "node"), default="python",
                   help="which reference agent runs: this one, or the Node one")
    p.add_argument("--node", default=shutil.which("node") or "/usr/bin/node",
                   help="the Node executable for --agent node")
    p.add_argument("--mcp", action="store_true",
                   help="the MCP variant (filesystem server over stdio, helpdesk over HTTP)")
    args = p.parse_args()
    if args.any_ports:
        for name in DEFAULT_PORTS:
            setattr(args, f"{name}_port", 0)
    if args.otlp_endpoint is None:
        args.otlp_endpoint = f"http://{HOST}:{4317 if args.otlp_protocol == 'grpc' else 4318}"
    if args.mcp and args.agent == "node":
        p.error("--mcp: the MCP variant is written for the Python agent only (not --agent node)")
    return args


def _python() -> str:
    """This interpreter, under its `python3` name when there is one (what the BOM allows)."""
    exe = Path(sys.executable)
    sibling = exe.with_name("python3")
    return str(sibling) if sibling.exists() else str(exe)


def _node_argv(node: str, python_argv: list[str]) -> list[str]:
    """The Node agent's command line for the Python agent's one: same options, but the CA
    goes through NODE_EXTRA_CA_CERTS (how Node trusts a private CA) instead of --ca-file."""
    rest = python_argv[2:]
    at = rest.index("--ca-file")
    if not NODE_AGENT.with_name("node_modules").is_dir():
        raise StartError(f"{NODE_AGENT.parent}/node_modules is missing: run "
                         "'bash scripts/setup.sh --tests' (npm ci in examples/agent-node)")
    return [node, str(NODE_AGENT), *rest[:at], *rest[at + 2:]]


def _listening(endpoint: str) -> bool:
    u = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        with socket.create_connection((u.hostname or HOST, u.port or 4318), timeout=1):
            return True
    except OSError:
        return False


def _on_sigterm(*_: Any) -> NoReturn:
    raise SystemExit(143)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work_dir
    variant = f"{args.scenario}-{args.mode}" + ("-mcp" if args.mcp else "")
    run_dir = work / f"run-{variant}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data_dir = work / "data"
    api_key = os.environ.get("RUNBOM_DEMO_API_KEY") or f"sk-runbom-{secrets.token_urlsafe(24)}"
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("RUNBOM_DEMO_API_KEY", "OPENAI_API_KEY")}
    env = {**base_env, "OPENAI_API_KEY": api_key}  # for the stub and the agent only
    logs = {"services": run_dir / "services-requests.jsonl", "llm": run_dir / "llm-requests.jsonl"}
    if args.mcp:
        logs["mcp"] = run_dir / "mcp-requests.jsonl"
    python = args.python
    warnings = []
    if args.otlp_protocol != "none" and not _listening(args.otlp_endpoint):
        warnings.append(f"nothing listens on {args.otlp_endpoint}: the agent's spans will be "
                        "lost (start runbom first, or pass --otlp-protocol none)")

    with ExitStack() as stack:
        services = Child("services", [python, "services.py", "--log", str(logs["services"]),
                                      "--ticketing-port", str(args.ticketing_port),
                                      "--customers-port", str(args.customers_port),
                                      "--exfil-port", str(args.exfil_port)],
                         base_env, run_dir / "services.log")
        stack.callback(services.stop)
        stub = Child("stub LLM", [python, "stub_llm.py", "--port", str(args.llm_port),
                                  "--cert-dir", str(work / "tls"), "--log", str(logs["llm"]),
                                  "--latency-ms", str(args.latency_ms)],
                     env, run_dir / "stub_llm.log")
        stack.callback(stub.stop)
        if args.mcp:
            helpdesk = Child("helpdesk MCP server",
                             [python, "mcp_helpdesk.py", "--port", str(args.mcp_port),
                              "--log", str(logs["mcp"])], base_env, run_dir / "mcp_helpdesk.log")
            stack.callback(helpdesk.stop)
        ports = services.ready(20)
        stub_ready = stub.ready(20)
        endpoints = {"llm": f"https://{HOST}:{stub_ready['port']}/v1",
                     "ticketing": f"http://{HOST}:{ports['ticketing']}/api",
                     "customers": f"http://{HOST}:{ports['customers']}",
                     "exfil": f"http://{HOST}:{ports['exfil']}/upload"}
        if args.mcp:
            endpoints["mcp"] = f"http://{HOST}:{helpdesk.ready(20)['port']}/mcp"
        write_data_dir(data_dir, endpoints["exfil"], mcp=args.mcp)
        (data_dir / PLANTED).unlink(missing_ok=True)  # an earlier injected MCP run's

        record = run_dir / "agent-record.json"
        argv = [python, str(HERE / "agent.py"), "--mode", args.mode, "--scenario", args.scenario,
                "--llm-url", endpoints["llm"], "--ticketing-url", endpoints["ticketing"],
                "--customers-url", endpoints["customers"], "--data-dir", str(data_dir),
                "--ca-file", stub_ready["cert"], "--otlp-endpoint", args.otlp_endpoint,
                "--otlp-protocol", args.otlp_protocol, "--record", str(record),
                "--timeout", str(args.timeout)]
        if args.no_thread_id:
            argv.append("--no-thread-id")
        if args.mcp:
            argv += ["--mcp", "--mcp-url", endpoints["mcp"]]
        agent_env = env
        if args.agent == "node":
            # Without help is the SDK's defaults: for Node also its own span timestamps.
            argv = _node_argv(args.node, argv) + (["--sdk-clock"] if args.no_thread_id else [])
            agent_env = {**env, "NODE_EXTRA_CA_CERTS": stub_ready["cert"]}
        started = time.monotonic()
        agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=agent_env, cwd=run_dir)
        try:
            out, err = agent.communicate(timeout=args.timeout + 20)
        except subprocess.TimeoutExpired:
            agent.kill()
            out, err = agent.communicate()
            err += f"\nrun.py: the agent ran longer than {args.timeout + 20} s and was killed"
        except BaseException:
            agent.kill()
            agent.wait()
            raise
        elapsed = time.monotonic() - started
        (run_dir / "agent.log").write_text(out + err, encoding="utf-8")

    if not record.exists():
        raise StartError(f"the agent (exit {agent.returncode}) wrote no record: {err[-800:]}")
    entries = sorted((json.loads(line) for log in logs.values() if log.exists()
                      for line in log.read_text().splitlines() if line),
                     key=lambda e: e["time_ns"])
    truth = build(json.loads(record.read_text()), {
        "scenario": args.scenario, "mode": args.mode, "endpoints": endpoints,
        "data_dir": str(data_dir), "agent_exit_code": agent.returncode}, entries)
    path = args.ground_truth or work / f"ground-truth-{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=1, sort_keys=True), encoding="utf-8")
    convs = truth["conversations"]
    return {
        "ok": agent.returncode == 0, "scenario": args.scenario, "mode": args.mode,
        "agent_pid": agent.pid, "agent_exit_code": agent.returncode,
        "agent_seconds": round(elapsed, 3), "conversations": len(convs),
        "conversation_ok": [c["ok"] for c in convs],
        "spans": sum(len(c["spans"]) for c in convs),
        "actions": sum(len(c["actions"]) for c in convs), "orphans": len(truth["orphans"]),
        "exfil_requests": truth["exfiltration"]["requests"],
        "exfil_records": truth["exfiltration"]["records"],
        "expected_drift": len(truth["expected_drift"]), "endpoints": endpoints,
        "otlp": {"protocol": args.otlp_protocol, "endpoint": args.otlp_endpoint},
        "span_thread_id": truth["agent"]["span_thread_id"],
        "ground_truth": str(path), "run_dir": str(run_dir), "warnings": warnings,
        "agent_stderr": "\n".join(err.strip().splitlines()[-8:]),
    }


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        summary = run(args)
    except (StartError, OSError) as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run.py: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for w in summary["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{summary['scenario']}/{summary['mode']}: agent pid {summary['agent_pid']} "
              f"exit {summary['agent_exit_code']} in {summary['agent_seconds']} s; "
              f"{summary['spans']} spans, {summary['actions']} kernel-visible actions, "
              f"{summary['orphans']} orphan span(s), {summary['exfil_requests']} request(s) "
              f"to the exfil sink, {summary['expected_drift']} expected drift finding(s)")
        if summary["agent_stderr"]:
            print(summary["agent_stderr"], file=sys.stderr)
        print(f"ground truth written to {summary['ground_truth']}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
