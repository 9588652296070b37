"""A declared agent without any OpenTelemetry SDK, on its benign task (root: real eBPF).

The SDK-less `openai` clients of the shadow-AI tests (tests/shadow_openai_client.py, Python's
`openai`; tests/node/shadow_openai_client.mjs, Node's `openai` npm package) run the reference
agent's benign task against the stub LLM and the reference agent's real ticketing API
(examples/agent/services.py): read the notes, look the customer up, list their open tickets,
count the notes' lines with /usr/bin/wc, post a comment. The BOM is the reference agent's, with
an agent declared by its command line (`runbom:match process.command_line=...`) that may use
what the reference agent may, and that run's endpoints and data directory. runbom runs its
embedded defaults (correlate, aibom). For each client and run: one `invoke_agent` trace whose
`chat` spans carry tokens and finish reasons, its tool work under inferred `execute_tool`
spans, and not one drift alert.

    cargo build -p runbom && .venv/bin/pytest tests/test_agent_without_sdk.py
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
from runbom_defaults import write_embedded_defaults  # noqa: E402
from test_aibom import (  # noqa: E402
    AGENT_DIR, API_KEY, NODE, NODE_CLIENT, NODE_DIR, RUNBOM, SHADOW_CLIENT, attrs, free_port,
    pid_of, records, spans_by_trace, start_stub)

SCRIPT = "declared_ticket_agent"
RUNS = 2
CLIENTS = ("python", "node")
# The benign task: read_file, query_customers, http_get, run_command, http_post, the answer.
CHATS = 6
TOOLS = {"read_file", "query_customers", "http_get", "run_command", "http_post"}


def declared_bom(bom_text: str, *, llm: int, ticketing: int, data: Path) -> str:
    """The reference BOM with this run's LLM and ticketing endpoints and notes directory, plus
    an agent declared by its command line that may use what the reference agent may."""
    bom_text = (bom_text.replace("127.0.0.1:18443", f"127.0.0.1:{llm}")
                .replace("127.0.0.1:18080", f"127.0.0.1:{ticketing}")
                .replace("file:///tmp/runbom-agent/data/", f"file://{data}/"))
    bom = json.loads(bom_text)
    bom["components"].append({
        "type": "application", "bom-ref": "agent:ticket-script", "name": "ticket-script",
        "properties": [{"name": "runbom:match", "value": f"process.command_line=*{SCRIPT}.*"}]})
    uses = next(d["dependsOn"] for d in bom["dependencies"] if d["ref"] == "agent:support-agent")
    bom["dependencies"].append({"ref": "agent:ticket-script", "dependsOn": list(uses)})
    return json.dumps(bom, indent=1)


def start_services(tmp: Path) -> tuple[subprocess.Popen, int]:
    """The reference agent's ticketing API (and its other services) on free ports."""
    services = subprocess.Popen(
        [sys.executable, str(AGENT_DIR / "services.py"), "--ticketing-port", "0",
         "--customers-port", "0", "--exfil-port", "0", "--log", str(tmp / "services.jsonl"),
         "--max-lifetime", "180"], stdout=subprocess.PIPE, text=True)
    line = services.stdout.readline() if services.stdout else ""
    assert line.startswith("READY "), line
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    return services, int(fields["ticketing"])


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), \
        f"Node's openai is missing: npm ci in {NODE_DIR} (scripts/setup.sh --tests)"
    tmp = tmp_path_factory.mktemp("sdkless-benign")
    data = tmp / "data"
    (data / "tickets").mkdir(parents=True)
    (data / "tickets" / "T-2718.md").write_text(
        "Subject: Refund not received\nThe customer asks where their refund is.\n")
    (data / "customers.json").write_text(json.dumps(
        [{"id": "C-1013", "name": "Ada Example", "email": "ada@example.invalid"}]))
    stub, stub_port, cert = start_stub(tmp, API_KEY)
    services, ticketing = start_services(tmp)
    (tmp / "bom.cdx.json").write_text(declared_bom(
        (AGENT_DIR / "bom.cdx.json").read_text(), llm=stub_port, ticketing=ticketing, data=data))
    out = tmp / "out"
    write_embedded_defaults(tmp / "runbom.yaml", bom=tmp / "bom.cdx.json", out=out,
                            grpc=free_port(), http=free_port(), metrics=free_port())
    # The clients under the name the BOM declares: a copy of the Python script, a link to the
    # Node one (Node resolves its imports from where the link points: tests/node/node_modules).
    (tmp / f"{SCRIPT}.py").write_text(SHADOW_CLIENT.read_text())
    (tmp / f"{SCRIPT}.mjs").symlink_to(NODE_CLIENT)
    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    common = ["--base-url", f"https://127.0.0.1:{stub_port}/v1", "--cert", str(cert),
              "--data-dir", str(data), "--ticketing-api", f"http://127.0.0.1:{ticketing}/api"]
    commands = {
        "python": ([sys.executable, str(tmp / f"{SCRIPT}.py"), *common],
                   {"PYTHONPATH": str(site)}),
        "node": ([str(NODE), str(tmp / f"{SCRIPT}.mjs"), *common],
                 {"NODE_EXTRA_CA_CERTS": str(cert)}),
    }
    pids: dict[str, list[int]] = {name: [] for name in CLIENTS}
    log = open(tmp / "runbom.log", "wb")
    runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        while b"runbom is running" not in (tmp / "runbom.log").read_bytes():
            assert runbom.poll() is None, (tmp / "runbom.log").read_text()
            assert time.monotonic() < deadline, "runbom did not start"
            time.sleep(0.05)
        for name in CLIENTS:
            argv, extra = commands[name]
            for _ in range(RUNS):
                proc = subprocess.Popen(argv, env={**os.environ, "OPENAI_API_KEY": API_KEY,
                                                   **extra},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                pids[name].append(proc.pid)
                stdout, stderr = proc.communicate(timeout=30)
                assert proc.returncode == 0, (name, stdout + stderr)
                assert "A fix is in review." in stdout, (name, stdout)
        # Each exchange leaves the correlation after its wait as a judged chat span; a run's
        # `invoke_agent` span follows a while after its exit, or at shutdown (SIGTERM below).
        deadline = time.monotonic() + 40
        while True:
            chats = [pid_of(attrs(s["attributes"]))
                     for s in records(out / "traces.jsonl", "Spans")
                     if s["name"].startswith("chat ")]
            if all(chats.count(p) >= CHATS for ps in pids.values() for p in ps):
                break
            assert time.monotonic() < deadline, ("runs without their chat spans", pids, chats)
            time.sleep(0.5)
    finally:
        runbom.send_signal(signal.SIGTERM)
        code = runbom.wait(timeout=60)
        log.close()
        for p in (stub, services):
            p.terminate()
            p.wait(timeout=10)
    assert code == 0, (tmp / "runbom.log").read_text()[-3000:]
    posted = [json.loads(line) for line in (tmp / "services.jsonl").read_text().splitlines()]
    assert sum(1 for p in posted if p.get("method") == "POST"
               and "/comments" in p.get("path", "")) == RUNS * len(CLIENTS), posted
    return {"tmp": tmp, "out": out, "pids": pids}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_benign_run_without_sdk_is_one_trace_of_chat_and_tool_spans(
        benign: dict[str, Any], client: str) -> None:
    traces = spans_by_trace(benign)
    for pid in benign["pids"][client]:
        agents = [s for spans in traces.values() for s in spans
                  if s["name"].startswith("invoke_agent ")
                  and pid_of(attrs(s["attributes"])) == pid]
        assert len(agents) == 1, (pid, [s["name"] for s in agents])
        spans = traces[agents[0]["traceId"]]
        chats = [s for s in spans if s["name"] == "chat gpt-4o-mini"]
        assert len(chats) == CHATS, sorted(s["name"] for s in spans)
        for chat in chats:
            c = attrs(chat["attributes"])
            assert chat["parentSpanId"] == agents[0]["spanId"]
            assert int(c["gen_ai.usage.input_tokens"]) > 0, c
            assert int(c["gen_ai.usage.output_tokens"]) > 0, c
            assert c["gen_ai.response.finish_reasons"] in (["tool_calls"], ["stop"]), c
            assert c.get("aibom.agent.ref") == "agent:ticket-script", c
        tools = {s["name"].removeprefix("execute_tool ") for s in spans
                 if s["name"].startswith("execute_tool ")}
        assert TOOLS <= tools, sorted(tools)


def test_a_benign_run_without_sdk_raises_no_alert(benign: dict[str, Any]) -> None:
    alerts = [attrs(r["attributes"]) for r in records(benign["out"] / "logs.jsonl", "Logs")
              if r.get("eventName") == "aibom.drift"]
    assert alerts == [], [(a.get("aibom.drift.kinds"), a.get("aibom.drift.subject"),
                           a.get("aibom.chain")) for a in alerts]
    drifted = [attrs(s["attributes"]) for s in records(benign["out"] / "traces.jsonl", "Spans")
               if attrs(s["attributes"]).get("aibom.drift") is True]
    assert drifted == [], drifted
