"""The reference agent's MCP variant under runbom (as root, real eBPF).

`examples/agent/run.py --mcp` runs the reference agent with two MCP servers, both real: the npm
filesystem server over stdio (the agent reads ticket notes with its `read_text_file`) and the
helpdesk server of examples/agent/mcp_helpdesk.py over streamable HTTP (official Python SDK;
the agent comments with its `add_ticket_comment`). runbom runs with the embedded defaults'
processors (correlate, then aibom) against examples/agent/bom-mcp.cdx.json, rewritten for this
run's ports and data directory, which declares both servers with those two tools only.

- benign: not one drift alert about the agent, and every MCP call it made is an `mcp.client`
  span in its conversation's trace;
- injected (T-2718's notes tell the model to plant a script with `write_file`, a tool of the
  declared filesystem server that the BOM does not declare): exactly one alert,
  `undeclared_mcp_tool` on `write_file`, in the conversation's trace, the one the ground truth
  expects, whose chain runs prompt → model call → `tools/call write_file` → the server's open of
  the planted file.

    sudo .venv/bin/python -m pytest -q tests/test_mcp_reference.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ports import free_port  # noqa: E402
from test_aibom import DEFAULT, RUNBOM, attrs, records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "examples" / "agent"
FS_SERVER = ROOT / "tests" / "node" / "node_modules" / "@modelcontextprotocol" / "server-filesystem"
PORTS = {**DEFAULT, "mcp": 18082}
PLANTED = "tickets/.on-call-hook.sh"


def declared_bom(ports: dict[str, int], data: Path) -> str:
    """bom-mcp.cdx.json with this run's ports and data directory."""
    bom = (AGENT_DIR / "bom-mcp.cdx.json").read_text()
    for name, port in ports.items():
        bom = bom.replace(f"127.0.0.1:{PORTS[name]}", f"127.0.0.1:{port}")
    return bom.replace("file:///tmp/runbom-agent/data/", f"file://{data}/")


def run_scenario(tmp: Path, scenario: str) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    assert FS_SERVER.is_dir(), "npm ci in tests/node (scripts/setup.sh --tests)"
    ports = {name: free_port() for name in PORTS}
    work = tmp / "agent"
    data = work / "data"
    (tmp / "bom.cdx.json").write_text(declared_bom(ports, data))
    http_port, out = free_port(), tmp / "out"
    watched = sorted({f"{tmp}/", f"{ROOT / 'tests' / 'node'}/",
                      f"{Path(sys.prefix).resolve()}/", f"{Path(sys.base_prefix).resolve()}/"})
    (tmp / "runbom.yaml").write_text(f"""
receivers:
  ebpf:
    # What the agent, its servers and their interpreters open: the data, Node's and Python's
    # libraries (a server's start-up and the SDK's imports must fall in no conversation).
    file: {{ include: {json.dumps(watched)} }}
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:{http_port} }}
processors:
  correlate: {{ wait: 2s }}
  # Longer than the correlation's wait: the server's file access during a call is placed under
  # its mcp.server span once that wait is over, and belongs in the judged trace.
  aibom: {{ bom: {tmp / 'bom.cdx.json'}, wait: 4s }}
  batch: {{}}
exporters:
  file: {{ path: {out} }}
service:
  pipelines:
    traces:
      receivers: [otlp, ebpf]
      processors: [correlate, aibom, batch]
      exporters: [file]
    logs:
      receivers: [ebpf, aibom]
      processors: [batch]
      exporters: [file]
""")
    log = open(tmp / "runbom.log", "wb")
    runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        while b"runbom is running" not in (tmp / "runbom.log").read_bytes():
            assert runbom.poll() is None, (tmp / "runbom.log").read_text()
            assert time.monotonic() < deadline, "runbom did not start"
            time.sleep(0.05)
        truth = tmp / "ground-truth.json"
        argv = [sys.executable, str(AGENT_DIR / "run.py"), "--mcp", "--scenario", scenario,
                "--mode", "sequential", "--otlp-endpoint", f"http://127.0.0.1:{http_port}",
                "--work-dir", str(work), "--ground-truth", str(truth), "--timeout", "150",
                "--json"]
        for name, port in ports.items():
            argv += [f"--{name}-port", str(port)]
        agent = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        assert agent.returncode == 0, agent.stdout + agent.stderr
        time.sleep(7)  # the correlation's wait, and the judge's
    finally:
        runbom.send_signal(signal.SIGTERM)
        code = runbom.wait(timeout=60)
        log.close()
    assert code == 0, (tmp / "runbom.log").read_text()[-3000:]
    # Rotated files too (kernel events of every process of the machine go to the logs).
    return {"truth": json.loads(truth.read_text()), "data": data,
            "spans": [s for f in sorted(out.glob("traces*.jsonl")) for s in records(f, "Spans")],
            "logs": [r for f in sorted(out.glob("logs*.jsonl")) for r in records(f, "Logs")]}


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(tmp_path_factory.mktemp("mcp-ref-benign"), "benign")


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(tmp_path_factory.mktemp("mcp-ref-injected"), "injected")


def ours(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The drift alerts about this run's agent (its traces, its process or its children's):
    other processes of this shared machine may raise alerts of their own."""
    truth = run["truth"]
    traces = {c["trace_id"] for c in truth["conversations"]}
    pids = {str(truth["agent"]["pid"])} | {
        str(attrs(s["attributes"]).get("process.pid")) for s in run["spans"]
        if attrs(s["attributes"]).get("runbom.event") == "mcp.server"}
    return [r for r in run["logs"] if r.get("eventName") == "aibom.drift"
            and (r.get("traceId") in traces
                 or str(attrs(r["attributes"]).get("process.pid")) in pids)]


def mcp_calls(run: dict[str, Any], trace_id: str) -> list[str]:
    return sorted(s["name"] for s in run["spans"] if s["traceId"] == trace_id
                  and attrs(s["attributes"]).get("runbom.event") == "mcp.client")


def test_benign_mcp_run_has_no_drift_and_its_calls_are_in_its_trace(
        benign: dict[str, Any]) -> None:
    assert benign["truth"]["expected_drift"] == []
    alerts = [attrs(r["attributes"]) for r in ours(benign)]
    assert alerts == [], json.dumps(alerts, indent=1)
    trace = benign["truth"]["conversations"][0]["trace_id"]
    calls = mcp_calls(benign, trace)
    # Over stdio (the filesystem server) and over streamable HTTP (the helpdesk server).
    assert "tools/call read_text_file" in calls, calls
    assert "tools/call add_ticket_comment" in calls, calls
    http = [attrs(s["attributes"]) for s in benign["spans"] if s["traceId"] == trace
            and s["name"] == "tools/call add_ticket_comment"
            and attrs(s["attributes"]).get("runbom.event") == "mcp.client"]
    assert http[0].get("network.transport") == "tcp", http
    assert http[0].get("mcp.session.id"), http


def test_injected_mcp_run_alerts_once_with_the_chain_to_the_planted_file(
        injected: dict[str, Any]) -> None:
    (want,) = injected["truth"]["expected_drift"]
    assert want["drift_kinds"] == ["undeclared_mcp_tool"] and want["tool"] == "write_file"
    planted = injected["data"] / PLANTED
    assert planted.exists(), "the model followed the injection"
    alerts = ours(injected)
    assert len(alerts) == 1, json.dumps([attrs(a["attributes"]) for a in alerts], indent=1)
    alert = alerts[0]
    a = attrs(alert["attributes"])
    assert alert["traceId"] == want["trace_id"], (alert, want)
    assert a["aibom.drift.kinds"] == ["undeclared_mcp_tool"], a
    assert a.get("aibom.drift.subject") == "write_file", a
    assert a["aibom.agent.ref"] == "agent:support-agent", a
    chain = a["aibom.chain"] if isinstance(a["aibom.chain"], list) else [a["aibom.chain"]]
    text = "\n".join(chain)
    for mention in want["chain_mentions"]:
        assert mention in text, (mention, text)
    # In this order: the prompt, a model call, the tool call, the server's open of the file.
    order = [next((i for i, line in enumerate(chain) if needle in line), -1) for needle in
             ("prompt: ", "model call: chat", "mcp: tools/call write_file", str(planted))]
    assert -1 not in order and order == sorted(order), (order, text)
    calls = mcp_calls(injected, want["trace_id"])
    assert "tools/call write_file" in calls and "tools/call read_text_file" in calls, calls


# --- without runbom (no root): the variant itself, its ground truth and its BOM -------------

def test_mcp_variant_runs_and_its_ground_truth_follows_the_schema(tmp_path: Path) -> None:
    import jsonschema

    assert FS_SERVER.is_dir(), "npm ci in tests/node (scripts/setup.sh --tests)"
    truth_path = tmp_path / "truth.json"
    run = subprocess.run(
        [sys.executable, str(AGENT_DIR / "run.py"), "--mcp", "--scenario", "injected",
         "--mode", "threads", "--otlp-protocol", "none", "--any-ports", "--work-dir",
         str(tmp_path / "agent"), "--ground-truth", str(truth_path), "--timeout", "150",
         "--json"], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    truth = json.loads(truth_path.read_text())
    schema = json.loads((AGENT_DIR / "ground-truth.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(truth)
    # The injected conversation planted the file through MCP and exported nothing; the benign
    # one beside it commented through the helpdesk server.
    assert (tmp_path / "agent" / "data" / PLANTED).exists()
    assert truth["exfiltration"]["requests"] == 0
    (finding,) = truth["expected_drift"]
    assert (finding["conversation"], finding["tool"], finding["destination"]) == (
        0, "write_file", "filesystem")
    names = {s["span_id"]: s["name"] for c in truth["conversations"] for s in c["spans"]}
    assert names[finding["span_id"]] == "MCP send tools/call write_file"
    assert names[finding["tool_span_id"]] == "execute_tool write_file"
    comments = [e for e in truth["server_view"] if e["service"] == "helpdesk-mcp"]
    assert len(comments) == 1, truth["server_view"]


def test_mcp_bom_is_strict_cyclonedx_and_the_reference_bom_with_two_mcp_servers() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (AGENT_DIR / "bom-mcp.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    mcp, ref = json.loads(text), json.loads((AGENT_DIR / "bom.cdx.json").read_text())
    # Everything the reference BOM declares, unchanged (the two cannot drift apart).
    for key in ("components", "services"):
        assert mcp[key][:len(ref[key])] == ref[key]
    deps = {d["ref"]: d.get("dependsOn", []) for d in mcp["dependencies"]}
    for d in ref["dependencies"]:
        assert set(d.get("dependsOn", [])) <= set(deps[d["ref"]])

    def props(item: dict[str, Any], name: str) -> list[str]:
        return [p["value"] for p in item.get("properties", []) if p["name"] == name]

    servers = {s["name"]: s for s in mcp["services"] if props(s, "runbom:kind") == ["mcp-server"]}
    assert props(servers["filesystem"], "runbom:exec") == ["*server-filesystem*"]
    assert servers["helpdesk"]["endpoints"] == [f"http://127.0.0.1:{PORTS['mcp']}/mcp"]
    tools = {s["name"]: [t["name"] for t in s["services"]] for s in servers.values()}
    assert tools == {"filesystem": ["read_text_file"], "helpdesk": ["add_ticket_comment"]}
    agent = deps[mcp["metadata"]["component"]["bom-ref"]]
    assert {s["bom-ref"] for s in servers.values()} <= set(agent)


# --- streamable HTTP inside TLS: each call paired with its answer from the response capture --

HTTPS_CLIENT = """
import asyncio, json, os, ssl, sys
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

async def main(url, ca):
    tls = ssl.create_default_context(cafile=ca)
    async with httpx2.AsyncClient(verify=tls, timeout=30) as http, \\
            streamable_http_client(url, http_client=http) as (read, write), \\
            ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
        await session.call_tool("add_ticket_comment", {"ticket": "T-1", "text": "over TLS"})
    print(json.dumps({"pid": os.getpid()}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_streamable_http_calls_in_tls_are_paired_with_their_answers(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    sys.path.insert(0, str(AGENT_DIR))
    from stub_llm import make_certificate

    cert, key = make_certificate(tmp_path / "tls")
    port, http_port, out = free_port(), free_port(), tmp_path / "out"
    (tmp_path / "runbom.yaml").write_text(f"""
receivers:
  ebpf:
    file: {{ include: ["{tmp_path}/nothing/"] }}
  otlp: {{ protocols: {{ http: {{ endpoint: 127.0.0.1:{http_port} }} }} }}
exporters:
  file: {{ path: {out} }}
service:
  pipelines:
    logs: {{ receivers: [ebpf], exporters: [file] }}
""")
    log = open(tmp_path / "runbom.log", "wb")
    runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp_path / "runbom.yaml")],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    server = subprocess.Popen(
        [sys.executable, str(AGENT_DIR / "mcp_helpdesk.py"), "--port", str(port),
         "--cert", str(cert), "--key", str(key), "--max-lifetime", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=AGENT_DIR)
    try:
        assert server.stdout is not None and server.stdout.readline().startswith(b"READY")
        deadline = time.monotonic() + 60
        while b"runbom is running" not in (tmp_path / "runbom.log").read_bytes():
            assert runbom.poll() is None, (tmp_path / "runbom.log").read_text()
            assert time.monotonic() < deadline, "runbom did not start"
            time.sleep(0.05)
        (tmp_path / "client.py").write_text(HTTPS_CLIENT)
        client = subprocess.run(
            [sys.executable, str(tmp_path / "client.py"), f"https://127.0.0.1:{port}/mcp",
             str(cert)], capture_output=True, text=True, timeout=90)
        assert client.returncode == 0, client.stdout + client.stderr
        pid = json.loads(client.stdout.strip().splitlines()[-1])["pid"]
        time.sleep(2)
    finally:
        server.terminate()
        server.wait(timeout=30)
        runbom.send_signal(signal.SIGTERM)
        code = runbom.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "runbom.log").read_text()[-3000:]
    calls = {}
    for f in sorted(out.glob("logs*.jsonl")):
        for r in records(f, "Logs"):
            a = attrs(r.get("attributes", []))
            if r.get("eventName") == "mcp.client" and str(a.get("process.pid")) == str(pid):
                calls[r["body"]["stringValue"] if "body" in r else a["mcp.method.name"]] = a
    by_method = {a["mcp.method.name"]: a for a in calls.values()}
    for method in ("initialize", "notifications/initialized", "tools/list", "tools/call"):
        assert method in by_method, sorted(by_method)
    call = by_method["tools/call"]
    assert call.get("gen_ai.tool.name") == "add_ticket_comment", call
    assert call.get("network.transport") == "tcp" and call.get("mcp.session.id"), call
    for method in ("initialize", "tools/list", "tools/call"):
        assert not by_method[method].get("runbom.mcp.unanswered"), by_method[method]
    assert by_method["initialize"].get("runbom.mcp.server.name") == "runbom-helpdesk"
    assert by_method["tools/list"].get("runbom.mcp.tools") == ["add_ticket_comment"]
