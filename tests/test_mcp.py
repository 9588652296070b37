"""MCP end to end (as root, real eBPF): runbom with the embedded defaults' processors (correlate,
aibom) and a BOM that declares an agent, `mcp-agent`, and the npm filesystem MCP server with one
tool, `read_text_file`. The agent (tests/mcp_workload.py `agent`: the official Python SDK,
OpenTelemetry over OTLP/HTTP to runbom) starts the server over stdio, reads a file through it
and then calls `write_file` — the tool an injected instruction would make it call, which the BOM
does not declare. What must come out: every MCP call as an `mcp.client` and an `mcp.server`
span in the agent's trace, the server's file access under the `mcp.server` span of the call it
served, and exactly one drift alert, `undeclared_mcp_tool`, whose chain runs from the agent
through `tools/call write_file` to the server's open of the planted file.

    sudo .venv/bin/python -m pytest -q tests/test_mcp.py
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
from test_aibom import RUNBOM, attrs, records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "tests" / "mcp_workload.py"
FS_SERVER = ROOT / "tests" / "node" / "node_modules" / "@modelcontextprotocol" / "server-filesystem"


def bom(data: Path) -> dict[str, Any]:
    """The agent, its data directory, node (the server's program) and the filesystem server
    with `read_text_file` only, all declared for the agent."""
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": {"component": {
            "type": "application", "bom-ref": "agent:mcp-agent", "name": "mcp-agent",
            "properties": [{"name": "runbom:match", "value": "service.name=mcp-agent"}]}},
        "components": [
            {"type": "data", "bom-ref": "data:workspace", "name": "workspace",
             "data": [{"type": "dataset", "name": "workspace",
                       "contents": {"url": f"file://{data}/"}}]},
            {"type": "file", "bom-ref": "program:node", "name": "node",
             "properties": [{"name": "runbom:exec", "value": "**/node"}]},
        ],
        "services": [{
            "bom-ref": "mcp:filesystem", "name": "filesystem",
            "properties": [{"name": "runbom:kind", "value": "mcp-server"},
                           {"name": "runbom:exec", "value": "*server-filesystem*"}],
            "services": [{"bom-ref": "mcp:filesystem:read_text_file", "name": "read_text_file",
                          "properties": [{"name": "runbom:kind", "value": "tool"}]}],
        }],
        "dependencies": [{"ref": "agent:mcp-agent", "dependsOn": [
            "data:workspace", "program:node", "mcp:filesystem", "mcp:filesystem:read_text_file"]}],
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    assert FS_SERVER.is_dir(), "npm ci in tests/node (scripts/setup.sh --tests)"
    tmp = tmp_path_factory.mktemp("mcp")
    data = tmp / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello\n")
    (tmp / "bom.cdx.json").write_text(json.dumps(bom(data)))
    http_port, out = free_port(), tmp / "out"
    (tmp / "runbom.yaml").write_text(f"""
receivers:
  ebpf:
    file: {{ include: ["{data}/"] }}
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:{http_port} }}
processors:
  correlate: {{ wait: 2s }}
  # Longer than the correlation's wait: the server's activity during a call is placed under
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
        agent = subprocess.run(
            [sys.executable, str(WORKLOAD), "agent", "--data-dir", str(data),
             "--otlp-endpoint", f"http://127.0.0.1:{http_port}"],
            capture_output=True, text=True, timeout=90)
        assert agent.returncode == 0, agent.stdout + agent.stderr
        report = json.loads(agent.stdout.strip().splitlines()[-1])
        assert report["planted"], report
        time.sleep(7)  # the correlation's wait, and the judge's
    finally:
        runbom.send_signal(signal.SIGTERM)
        code = runbom.wait(timeout=60)
        log.close()
    assert code == 0, (tmp / "runbom.log").read_text()[-3000:]
    spans = records(out / "traces.jsonl", "Spans")
    logs = records(out / "logs.jsonl", "Logs")
    return {"report": report, "spans": spans, "logs": logs, "data": data, "tmp": tmp}


def mcp_spans(run: dict[str, Any], event: str) -> list[dict[str, Any]]:
    return [s for s in run["spans"] if attrs(s.get("attributes", [])).get("runbom.event") == event]


def test_every_call_is_a_client_and_a_server_span_in_the_agents_trace(run: dict[str, Any]) -> None:
    trace = run["report"]["trace_id"]
    for event in ("mcp.client", "mcp.server"):
        names = sorted(s["name"] for s in mcp_spans(run, event) if s["traceId"] == trace)
        for want in ("initialize", "tools/list", "tools/call read_text_file",
                     "tools/call write_file"):
            assert want in names, (event, names)


def test_the_servers_file_access_is_under_the_mcp_server_span(run: dict[str, Any]) -> None:
    served = {s["spanId"]: s for s in mcp_spans(run, "mcp.server")}
    planted = str(run["data"] / "planted.txt")
    opens = [s for s in run["spans"]
             if attrs(s.get("attributes", [])).get("file.path") == planted]
    assert opens, "the server's open of the planted file"
    parent = served.get(opens[0].get("parentSpanId", ""))
    assert parent is not None and parent["name"] == "tools/call write_file", opens[0]


def test_exactly_one_alert_for_the_undeclared_tool_with_its_chain(run: dict[str, Any]) -> None:
    # Other processes of this shared machine may raise alerts of their own (shadow AI): only
    # the alerts about this test's agent and server count.
    ours = {str(run["report"]["pid"])} | {
        str(attrs(s["attributes"]).get("process.pid")) for s in mcp_spans(run, "mcp.server")}
    drift = [r for r in run["logs"] if r.get("eventName") == "aibom.drift"]
    alerts = [attrs(r["attributes"]) for r in drift
              if r.get("traceId") == run["report"]["trace_id"]
              or str(attrs(r["attributes"]).get("process.pid")) in ours]
    assert len(alerts) == 1, json.dumps(alerts, indent=1)
    a = alerts[0]
    assert a["aibom.drift.kinds"] == ["undeclared_mcp_tool"], a
    assert a.get("aibom.drift.subject") == "write_file", a
    chain = a.get("aibom.chain") or ""
    chain = chain if isinstance(chain, str) else "\n".join(chain)
    assert "mcp: tools/call write_file" in chain, chain
    assert "planted.txt" in chain, chain
