"""Tests of the reference agent (examples/agent/): it runs in every mode and scenario, its spans
reach a real OTLP receiver (tests/otlp_sink.py) nested as documented, its ground truth agrees
with what was exported and with what the servers received, the injected scenario exfiltrates
and the benign one does not, the API key leaks nowhere, and its AI-BOM is strict CycloneDX 1.6.

Then runbom's correlation accuracy on it (root: runbom loads its eBPF programs): every mode ×
scenario, with the agent's `thread.id` on its spans and without it (`--no-thread-id`, the
OpenTelemetry SDK's defaults), all under one `runbom run` (ebpf + otlp receivers, `correlate`
with its default `wait`, file exporter, its own telemetry into its own pipelines), scored by
tests/score_correlation.py as precision and recall per correlation method. With thread.id every
method is exact but `process`/low (asyncio: two tasks on one thread, which time cannot tell
apart), and recall is 100% except in asyncio mode (≥ 95%, those `process`/low placements);
without it only what the design guarantees is asserted (`traceparent` exact, nothing
duplicated) and the scores are recorded (RUNBOM_ACCURACY_OUT=DIR keeps each result and the
table). The API key, also planted where runbom captures (an exec's argv, a captured plaintext
request's URL query, headers and body), is in nothing runbom wrote.

    cargo build -p runbom && .venv/bin/pytest tests/test_reference_agent.py   # RUNBOM_BIN=… to pick
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "examples" / "agent"
sys.path.insert(0, str(AGENT_DIR))
sys.path.insert(0, str(ROOT / "tests"))

import score_correlation as sc  # noqa: E402
from leakcheck import collect, find_leaks, scrape  # noqa: E402
from ports import free_port  # noqa: E402
from scenarios import DEFAULT_PORTS, customers  # noqa: E402
from tools import TOOL_SPECS  # noqa: E402

MODES = ("sequential", "threads", "asyncio")
SCENARIOS = ("benign", "injected")
PROTOCOL = {"sequential": "http/protobuf", "threads": "grpc", "asyncio": "http/protobuf"}
TOOL_ORDER = {
    "benign": ["read_file", "query_customers", "http_get", "run_command", "http_post"],
    "injected": ["read_file", "query_customers", "http_post", "http_get"],
}
API_KEY = f"sk-test-{secrets.token_hex(20)}"


def read_ready(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line of a helper, waiting at most `timeout` seconds."""
    assert proc.stdout is not None
    fd, buf, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(left, 0))
        if not readable:
            raise TimeoutError(f"no READY line within {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"helper exited with {proc.wait()} before READY")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Sink:
    out: Path
    grpc: int
    http: int


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    out = tmp_path_factory.mktemp("sink") / "otlp.jsonl"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "otlp_sink.py"), "--out",
                             str(out), "--max-lifetime", "300"], stdout=subprocess.PIPE)
    try:
        ready = dict(kv.split("=") for kv in read_ready(proc, 30).split()[1:])
        yield Sink(out, int(ready["grpc"]), int(ready["http"]))
    finally:
        stop(proc)


@dataclass
class Run:
    mode: str
    scenario: str
    summary: dict[str, Any]
    truth: dict[str, Any]
    output: str
    work_dir: Path


@pytest.fixture(scope="module")
def runs(sink: Sink, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Run]:
    """Every mode × scenario, run once through the harness (about 2 s each)."""
    env = {**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY}
    done = {}
    for mode in MODES:
        for scenario in SCENARIOS:
            work = tmp_path_factory.mktemp(f"{mode}-{scenario}")
            protocol = PROTOCOL[mode]
            port = sink.grpc if protocol == "grpc" else sink.http
            proc = subprocess.run(
                [sys.executable, str(AGENT_DIR / "run.py"), "--mode", mode, "--scenario",
                 scenario, "--any-ports", "--work-dir", str(work), "--json",
                 "--otlp-protocol", protocol, "--otlp-endpoint", f"http://127.0.0.1:{port}"],
                capture_output=True, text=True, env=env, timeout=90)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            summary = json.loads(proc.stdout)
            truth = json.loads(Path(summary["ground_truth"]).read_text())
            done[mode, scenario] = Run(mode, scenario, summary, truth,
                                       proc.stdout + proc.stderr, work)
    return done


# --- reading what the receiver got ----------------------------------------------------------

def _value(v: dict[str, Any]) -> Any:
    if "string_value" in v:
        return v["string_value"]
    if "int_value" in v:
        return int(v["int_value"])
    if "double_value" in v:
        return float(v["double_value"])
    if "bool_value" in v:
        return bool(v["bool_value"])
    if "array_value" in v:
        return [_value(x) for x in v["array_value"].get("values", [])]
    return None


def _attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items}


def _hex(b64: str | None) -> str | None:
    return base64.b64decode(b64).hex() if b64 else None


def exported_spans(sink: Sink, pid: int) -> list[dict[str, Any]]:
    """Spans the receiver got from the process `pid` (by the resource's process.pid)."""
    spans = []
    for line in sink.out.read_text().splitlines():
        msg = json.loads(line)
        if msg["signal"] != "traces":
            continue
        for rs in msg["request"].get("resource_spans", []):
            resource = _attrs(rs.get("resource", {}).get("attributes", []))
            if resource.get("process.pid") != pid:
                continue
            for ss in rs.get("scope_spans", []):
                for s in ss.get("spans", []):
                    spans.append({
                        "trace_id": _hex(s["trace_id"]), "span_id": _hex(s["span_id"]),
                        "parent_span_id": _hex(s.get("parent_span_id")), "name": s["name"],
                        "kind": s.get("kind", ""), "start_ns": int(s["start_time_unix_nano"]),
                        "end_ns": int(s["end_time_unix_nano"]),
                        "attributes": _attrs(s.get("attributes", [])), "resource": resource})
    return spans


ALL = [(m, s) for m in MODES for s in SCENARIOS]
IDS = [f"{m}-{s}" for m, s in ALL]


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "scenario"), ALL, ids=IDS)
def test_runs_finish(runs: dict[tuple[str, str], Run], mode: str, scenario: str) -> None:
    run = runs[mode, scenario]
    assert run.summary["ok"] and all(run.summary["conversation_ok"])
    assert run.summary["conversations"] == (1 if mode == "sequential" else 2)
    assert run.truth["schema"] == "runbom.reference-agent.ground-truth/v1"
    assert run.summary["warnings"] == []


def test_ground_truth_follows_its_schema(runs: dict[tuple[str, str], Run]) -> None:
    import jsonschema

    schema = json.loads((AGENT_DIR / "ground-truth.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for run in runs.values():
        jsonschema.Draft202012Validator(schema).validate(run.truth)


@pytest.mark.parametrize(("mode", "scenario"), ALL, ids=IDS)
def test_spans_nest_as_documented(runs: dict[tuple[str, str], Run], sink: Sink, mode: str,
                                  scenario: str) -> None:
    run = runs[mode, scenario]
    spans = exported_spans(sink, run.truth["agent"]["pid"])
    by_id = {s["span_id"]: s for s in spans}
    assert all(s["resource"]["service.name"] == "support-agent" for s in spans)
    for conv in run.truth["conversations"]:
        trace = [s for s in spans if s["trace_id"] == conv["trace_id"]]
        root = by_id[conv["root_span_id"]]
        assert root["name"] == "invoke_agent support-agent" and root["parent_span_id"] is None
        assert root["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        assert root["attributes"]["gen_ai.agent.name"] == "support-agent"
        children = sorted((s for s in trace if s["parent_span_id"] == root["span_id"]),
                          key=lambda s: s["start_ns"])
        chats = [s for s in children if s["name"] == "chat gpt-4o-mini"]
        tools = [s for s in children if s["name"].startswith("execute_tool ")]
        assert len(chats) + len(tools) == len(children)
        assert len(chats) == len(tools) + 1  # a model call before each tool, and the answer
        for chat in chats:
            a = chat["attributes"]
            assert chat["kind"] == "SPAN_KIND_CLIENT"
            assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"]) == ("chat", "openai")
            assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "gpt-4o-mini"
            assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        names = [t["attributes"]["gen_ai.tool.name"] for t in tools]
        expected = "injected" if conv["scenario"] == "injected" else "benign"
        assert names == TOOL_ORDER[expected]
        assert all(t["attributes"]["gen_ai.operation.name"] == "execute_tool" for t in tools)
        for tool in tools:
            inner = [s for s in spans if s["parent_span_id"] == tool["span_id"]]
            name = tool["attributes"]["gen_ai.tool.name"]
            if name == "http_post":
                assert [s["name"] for s in inner] == ["POST"]
                a = inner[0]["attributes"]
                assert a["http.request.method"] == "POST" and a["http.response.status_code"] in (
                    200, 201)
                assert a["url.full"].startswith(f"http://{a['server.address']}:{a['server.port']}/")
            elif name == "query_customers":
                assert [s["name"] for s in inner] == ["SELECT customers"]
                assert inner[0]["attributes"]["db.system.name"] == "sqlite"
                assert inner[0]["attributes"]["db.namespace"] == "crm"
            else:
                assert inner == []  # http_get's client span is an orphan, below
        # The orphan: a root GET span in a trace of its own, inside execute_tool http_get.
        (orphan,) = conv["orphans"]
        span, parent = by_id[orphan["span_id"]], by_id[orphan["stitch_parent_span_id"]]
        assert span["name"] == "GET" and span["parent_span_id"] is None
        assert span["trace_id"] == orphan["trace_id"] != conv["trace_id"]
        assert parent["name"] == "execute_tool http_get"
        assert parent["trace_id"] == orphan["stitch_parent_trace_id"] == conv["trace_id"]
        assert parent["start_ns"] <= span["start_ns"] <= span["end_ns"] <= parent["end_ns"]
        # thread.id on every span of the conversation, the conversation's thread
        for s in trace + [span]:
            assert s["attributes"]["thread.id"] == conv["thread_id"]


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_conversations_run_concurrently(runs: dict[tuple[str, str], Run], mode: str) -> None:
    for scenario in SCENARIOS:
        convs = runs[mode, scenario].truth["conversations"]
        roots = [next(s for s in c["spans"] if s["span_id"] == c["root_span_id"]) for c in convs]
        a, b = roots
        assert a["start_ns"] < b["end_ns"] and b["start_ns"] < a["end_ns"], "no overlap"
        same_thread = convs[0]["thread_id"] == convs[1]["thread_id"]
        assert same_thread == (mode == "asyncio")
        assert {c["scenario"] for c in convs} == {scenario, "benign"}


@pytest.mark.parametrize(("mode", "scenario"), ALL, ids=IDS)
def test_ground_truth_agrees_with_export_and_servers(
        runs: dict[tuple[str, str], Run], sink: Sink, mode: str, scenario: str) -> None:
    run = runs[mode, scenario]
    truth = run.truth
    pid = truth["agent"]["pid"]
    exported = {s["span_id"]: s for s in exported_spans(sink, pid)}
    noted = {s["span_id"]: s for c in truth["conversations"] for s in c["spans"]}
    assert set(noted) == set(exported)
    for span_id, s in noted.items():
        e = exported[span_id]
        assert (s["trace_id"], s["parent_span_id"], s["name"], s["start_ns"], s["end_ns"]) == (
            e["trace_id"], e["parent_span_id"], e["name"], e["start_ns"], e["end_ns"])
        assert s["pid"] == pid and s["thread_id"] == e["attributes"]["thread.id"]
    received = {e["traceparent"] for e in truth["server_view"]}
    for conv in truth["conversations"]:
        spans = {s["span_id"]: s for s in conv["spans"]}
        kinds = [a["kind"] for a in conv["actions"]]
        tools = TOOL_ORDER["injected" if conv["scenario"] == "injected" else "benign"]
        http_calls = len(tools) + 1 + len(tools) - tools.count("read_file") - tools.count(
            "run_command")  # model calls + HTTP tools
        assert kinds.count("net.connect") == kinds.count("http.request") == http_calls
        assert kinds.count("process.exec") == tools.count("run_command")
        for a in conv["actions"]:
            span = spans[a["span_id"]]  # every action sits under a span of its conversation
            assert span["start_ns"] <= a["start_ns"] <= a["end_ns"] <= span["end_ns"]
            if a["kind"] == "http.request":
                assert a["traceparent"].startswith(f"00-{a['trace_id']}-{a['span_id']}-")
                assert a["traceparent"] in received  # the server saw that very header
                assert a["capture"] == ("openssl" if a["scheme"] == "https" else "socket")
                if a["span_name"].startswith("chat "):
                    assert a["model"] == "gpt-4o-mini"
            elif a["kind"] == "process.exec":
                assert a["executable"] == "/usr/bin/wc" and a["parent_pid"] == pid
                assert a["pid"] != pid and span["name"] == "execute_tool run_command"
            elif a["kind"] == "file.open":
                assert a["path"].startswith(truth["data_dir"] + "/tickets/")
                assert span["name"] in ("execute_tool read_file", "execute_tool run_command")
                assert (a["pid"] == pid) == (a["by"] == "agent")
        orphan_actions = [a for a in conv["actions"] if a["span_id"] == conv["orphans"][0][
            "span_id"]]
        assert sorted(a["kind"] for a in orphan_actions) == ["http.request", "net.connect"]
        assert all(a["tool"] == "http_get" for a in orphan_actions)


@pytest.mark.parametrize("mode", MODES)
def test_injected_exfiltrates_and_benign_does_not(runs: dict[tuple[str, str], Run],
                                                  mode: str) -> None:
    benign, injected = runs[mode, "benign"].truth, runs[mode, "injected"].truth
    assert benign["exfiltration"]["requests"] == 0 and benign["expected_drift"] == []
    ids = sorted(str(c["id"]) for c in customers())
    assert injected["exfiltration"] == {"requests": 1, "records": len(ids), "customer_ids": ids}
    (finding,) = injected["expected_drift"]
    assert finding["drift_kinds"] == ["undeclared_endpoint"]
    assert finding["tool"] == "http_post" and finding["conversation"] == 0
    assert finding["destination"] == injected["endpoints"]["exfil"]
    assert sorted(finding["kernel_events"]) == ["http.request", "net.connect"]
    tool_span = next(s for c in injected["conversations"] for s in c["spans"]
                     if s["span_id"] == finding["tool_span_id"])
    assert tool_span["name"] == "execute_tool http_post"
    assert any("T-2718.md" in m for m in finding["chain_mentions"])
    exfil = next(e for e in injected["server_view"] if e["service"] == "exfil")
    assert exfil["traceparent"].split("-")[2] == finding["span_id"]


def test_api_key_leaks_nowhere(runs: dict[tuple[str, str], Run], sink: Sink) -> None:
    assert sink.out.stat().st_size > 0
    texts: dict[str, str | None] = {"otlp export": sink.out.read_text()}
    for run in runs.values():
        texts[f"{run.mode}/{run.scenario} output"] = run.output
        written = [p for p in run.work_dir.rglob("*") if p.is_file() and p.suffix != ".pem"]
        for name in ("agent.log", "agent-record.json", "llm-requests.jsonl",
                     "services-requests.jsonl"):  # what must be there, not read as empty
            if not any(p.name == name for p in written):
                texts[f"{run.mode}/{run.scenario} {name}"] = None
        for path in written:
            texts[str(path)] = path.read_text(errors="replace")
    assert find_leaks(texts, API_KEY) == []
    assert "Bearer" not in texts["otlp export"]
    assert "Authorization" not in texts["otlp export"]


def test_bom_is_strict_cyclonedx_1_6_and_declares_the_agent() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (AGENT_DIR / "bom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    agent = bom["metadata"]["component"]
    assert (agent["type"], agent["name"]) == ("application", "support-agent")

    def props(item: dict[str, Any], name: str) -> list[str]:
        return [p["value"] for p in item.get("properties", []) if p["name"] == name]

    tools = {s["name"]: s for s in bom["services"] if props(s, "runbom:kind") == ["tool"]}
    assert set(tools) == {t["function"]["name"] for t in TOOL_SPECS}
    ticketing = f"http://127.0.0.1:{DEFAULT_PORTS['ticketing']}/api/"
    assert tools["http_post"]["endpoints"] == tools["http_get"]["endpoints"] == [ticketing]
    llm = next(s for s in bom["services"] if s["name"] == "openai-chat-completions")
    assert llm["endpoints"] == [f"https://127.0.0.1:{DEFAULT_PORTS['llm']}/v1"]
    model = next(c for c in bom["components"] if c["type"] == "machine-learning-model")
    assert model["name"] == "gpt-4o-mini" and props(model, "runbom:provider") == ["openai"]
    execs = sorted(v for c in bom["components"] for v in props(c, "runbom:exec"))
    assert execs == ["**/python3*", "/usr/bin/wc"]
    identity = [v for c in bom["components"] for v in props(c, "runbom:identity")]
    assert identity == ["env:OPENAI_API_KEY"]
    refs = {agent["bom-ref"]} | {c["bom-ref"] for c in bom["components"]} | {
        s["bom-ref"] for s in bom["services"]}
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert set(deps) <= refs and all(set(v) <= refs for v in deps.values())
    assert set(deps[agent["bom-ref"]]) == refs - {agent["bom-ref"]}


def test_stub_checks_the_key_and_the_agent_reports_the_refusal(tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    stub = subprocess.Popen([sys.executable, str(AGENT_DIR / "stub_llm.py"), "--port", "0",
                             "--cert-dir", str(tmp_path / "tls")], stdout=subprocess.PIPE,
                            env=env)
    try:
        ready = dict(kv.split("=", 1) for kv in read_ready(stub, 30).split()[1:])
        url = f"https://127.0.0.1:{ready['port']}/v1"
        tls = ssl.create_default_context(cafile=ready["cert"])
        body = json.dumps({"model": "m", "messages": [
            {"role": "system", "content": "data_dir: /d\nticketing_api: http://t/api\n"},
            {"role": "user", "content": "Summarise ticket T-3141 for customer C-1007"}]}).encode()
        request = urllib.request.Request(url + "/chat/completions", body, method="POST")
        request.add_header("Authorization", "Bearer sk-wrong")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=tls, timeout=10)
        assert refused.value.code == 401
        assert json.load(refused.value)["error"]["code"] == "invalid_api_key"
        request.add_header("Authorization", f"Bearer {API_KEY}")
        with urllib.request.urlopen(request, context=tls, timeout=10) as ok:
            answer = json.load(ok)
        assert answer["model"] == "m"
        (call,) = answer["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "read_file"
        assert json.loads(call["function"]["arguments"]) == {"path": "tickets/T-3141.md"}

        wrong = "sk-wrong-" + secrets.token_hex(8)
        agent = subprocess.run(
            [sys.executable, str(AGENT_DIR / "agent.py"), "--llm-url", url, "--ca-file",
             ready["cert"], "--otlp-protocol", "none", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env={**env, "OPENAI_API_KEY": wrong})
        assert agent.returncode == 1
        assert "conversation 0 failed: AgentError: model call failed with HTTP 401" in agent.stdout
        assert wrong not in agent.stdout + agent.stderr
    finally:
        stop(stub)


# --- under runbom: correlation accuracy, and nothing of the key in what runbom wrote ---------

RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "runbom")
# correlate's default: SDK batch processors export every 5 s, and one second for the export.
WAIT_S = 6
SLACK_NS = 5_000_000
HELP = {True: "thread-id", False: "no-thread-id"}
ACCURACY = [(m, s, t) for t in (True, False) for m in MODES for s in SCENARIOS]
ACCURACY_IDS = [f"{m}-{s}-{HELP[t]}" for m, s, t in ACCURACY]
# The tolerance, and why: in asyncio mode both conversations run on one thread, so when spans
# of both contain an event time cannot tell which task made the syscall; runbom says so
# (`process`/low) and such placements may be wrong. Everything else must be exact.
MIN_RECALL = {"sequential": 1.0, "threads": 1.0, "asyncio": 0.95}



@dataclass
class Planted:
    exec_pid: int
    http_path: str


@dataclass
class UnderRunbom:
    dir: Path
    export: Path
    stdout: Path
    stderr: Path
    metrics: str | None
    truths: dict[tuple[str, str, bool], dict[str, Any]]
    spans: list[dict[str, Any]]
    planted: Planted


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def plant_the_key(key: str) -> Planted:
    """Puts the key where runbom captures: the argv of a program this process execs, and a
    plaintext HTTP request (URL query, Authorization header, JSON body) it sends."""
    proc = subprocess.Popen(["/bin/sh", "-c", "exit 0", "runbom-plant", "--api-key", key, key,
                             f"TOKEN={key}"])
    assert proc.wait(10) == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = f"/runbom-plant-{secrets.token_hex(4)}"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("POST", f"{path}?api_key={key}&note={key}",
                     body=json.dumps({"model": "gpt-4o-mini", "api_key": key}),
                     headers={"Authorization": f"Bearer {key}", "X-Api-Key": key,
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 204
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    return Planted(proc.pid, path)


@pytest.fixture(scope="module")
def under_runbom(tmp_path_factory: pytest.TempPathFactory) -> UnderRunbom:
    """Every mode × scenario, with and without thread.id, under one `runbom run`; then the
    key planted; then runbom stopped after the correlator's wait (it flushes on SIGTERM)."""
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.is_file(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    tmp = tmp_path_factory.mktemp("runbom")
    export, work = tmp / "export", tmp / "agent"
    grpc, http_port, admin = free_port(), free_port(), free_port()
    (tmp / "runbom.yaml").write_text(f"""
receivers:
  ebpf:
    file: {{ include: ["{work}/data/"] }}
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http_port}" }}
processors:
  correlate: {{ wait: {WAIT_S}s }}
  batch: {{}}
exporters:
  # Never rotated during the test: the checks below read logs.jsonl, and other processes'
  # events on a busy machine can fill the default 100 MiB before runbom's own lines are read.
  file: {{ path: {export}, rotation: {{ max_megabytes: 100000 }} }}
service:
  telemetry:
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin} }} }} }}
        - periodic:
            interval: 1000
            exporter: {{ otlp: {{ protocol: grpc, endpoint: "http://127.0.0.1:{grpc}" }} }}
    logs:
      processors:
        - batch: {{ exporter: {{ otlp: {{ protocol: grpc, endpoint: "http://127.0.0.1:{grpc}" }} }} }}
  pipelines:
    traces: {{ receivers: [otlp, ebpf], processors: [correlate, batch], exporters: [file] }}
    logs: {{ receivers: [otlp, ebpf], processors: [batch], exporters: [file] }}
    metrics: {{ receivers: [otlp], exporters: [file] }}
""")
    stdout, stderr = tmp / "runbom.stdout", tmp / "runbom.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                                  stdout=out, stderr=err, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        while b"runbom is running" not in stderr.read_bytes():
            assert runbom.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "runbom did not start: " + stderr.read_text()
            time.sleep(0.05)
        env = {**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY}
        truths = {}
        for mode, scenario, thread_id in ACCURACY:
            protocol = PROTOCOL[mode]
            port = grpc if protocol == "grpc" else http_port
            truth = tmp / f"ground-truth-{mode}-{scenario}-{HELP[thread_id]}.json"
            proc = subprocess.run(
                [sys.executable, str(AGENT_DIR / "run.py"), "--mode", mode, "--scenario",
                 scenario, "--any-ports", "--work-dir", str(work), "--ground-truth", str(truth),
                 "--otlp-protocol", protocol, "--otlp-endpoint", f"http://127.0.0.1:{port}"]
                + ([] if thread_id else ["--no-thread-id"]),
                capture_output=True, text=True, env=env, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            truths[mode, scenario, thread_id] = json.loads(truth.read_text())
        planted = plant_the_key(API_KEY)
        time.sleep(WAIT_S + 2)  # every event held by the correlator leaves in its own time
        metrics = scrape(f"http://127.0.0.1:{admin}/metrics")
    finally:
        runbom.send_signal(signal.SIGTERM)
        try:
            code = runbom.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runbom.kill()
            code = runbom.wait(timeout=10)
    assert code == 0, f"runbom exited with {code}: {stderr.read_text()[-3000:]}"
    return UnderRunbom(tmp, export, stdout, stderr, metrics, truths, sc.load_spans(export),
                       planted)


@pytest.fixture(scope="module")
def scores(under_runbom: UnderRunbom) -> dict[tuple[str, str, bool], dict[str, Any]]:
    """The scorer's result per run (policy: the strict one; each test applies its own)."""
    results = {}
    keep = os.environ.get("RUNBOM_ACCURACY_OUT")
    for key, truth in under_runbom.truths.items():
        result = sc.score(under_runbom.spans, truth, SLACK_NS, min_recall=MIN_RECALL[key[0]])
        results[key] = result
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            mode, scenario, thread_id = key
            (Path(keep) / f"{mode}-{scenario}-{HELP[thread_id]}.json").write_text(
                json.dumps(result, indent=1))
    return results


def test_ground_truths_without_thread_id_follow_the_schema(under_runbom: UnderRunbom) -> None:
    import jsonschema

    schema = json.loads((AGENT_DIR / "ground-truth.schema.json").read_text())
    for (_, _, thread_id), truth in under_runbom.truths.items():
        jsonschema.Draft202012Validator(schema).validate(truth)
        assert truth["agent"]["span_thread_id"] is thread_id
        assert all(isinstance(s["thread_id"], int) for c in truth["conversations"]
                   for s in c["spans"])


@pytest.mark.parametrize(("mode", "scenario"), ALL, ids=IDS)
def test_accuracy_with_thread_id(scores: dict[tuple[str, str, bool], dict[str, Any]],
                                 mode: str, scenario: str) -> None:
    """Every kernel span of the agent's process tree is one action's, under its span: exact
    for every method but `process`/low; recall 100% (asyncio: ≥ 95%); every orphan stitched."""
    result = scores[mode, scenario, True]
    print(sc.report(result))
    assert result["failures"] == [], sc.report(result)
    t = result["totals"]
    assert t["actions"] >= (21 if scenario == "benign" else 17)
    assert (t["duplicated"], t["extra"]) == (0, 0)
    for method in ("traceparent", "thread", "ancestry"):
        c = result["by_method"].get(method)
        assert c is None or c["matched"] == c["spans"], (method, sc.report(result))
    # Every HTTP request is placed by its traceparent header, exactly.
    assert sc.traceparent_exact(result), sc.report(result)
    if mode != "asyncio":
        assert "process" not in result["by_method"], sc.report(result)


@pytest.mark.parametrize(("mode", "scenario"), ALL, ids=IDS)
def test_accuracy_without_help(scores: dict[tuple[str, str, bool], dict[str, Any]], mode: str,
                               scenario: str) -> None:
    """The agent with plain SDK spans (no thread.id): `traceparent` placements stay exact and
    nothing is exported twice; the rest is recorded, whatever it is."""
    result = scores[mode, scenario, False]
    print(sc.report(result))
    assert sc.traceparent_exact(result), sc.report(result)
    assert result["totals"]["duplicated"] == 0


def test_accuracy_table(scores: dict[tuple[str, str, bool], dict[str, Any]]) -> None:
    """The table docs/correlation.md publishes (printed; kept with RUNBOM_ACCURACY_OUT)."""
    table = sc.table(list(scores.values()))
    print(table)
    if keep := os.environ.get("RUNBOM_ACCURACY_OUT"):
        (Path(keep) / "table.md").write_text(table + "\n")
    assert table.count("**all**") == 6


def runbom_outputs(u: UnderRunbom) -> dict[str, str | None]:
    """Everything runbom wrote: every exporter file (its own logs and metrics included, sent
    to its own receiver), its stdout and stderr, and a scrape of its /metrics."""
    return collect(export_dir=u.export, expect=("traces.jsonl", "logs.jsonl", "metrics.jsonl"),
                   nonempty=("traces.jsonl", "logs.jsonl", "metrics.jsonl"),
                   files={"runbom's stdout": u.stdout, "runbom's stderr": u.stderr},
                   texts={"runbom's /metrics": u.metrics})


def planted_records(u: UnderRunbom) -> list[tuple[int, dict[str, Any]]]:
    """(line number in logs.jsonl, attributes) of the kernel log records of the plant."""
    found = []
    for n, line in enumerate((u.export / "logs.jsonl").read_text().splitlines()):
        if "runbom-plant" not in line:
            continue
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    a = sc.attrs(r.get("attributes"))
                    if "runbom-plant" in json.dumps(a):
                        found.append((n, a))
    return found


def test_runbom_wrote_nothing_of_the_key(under_runbom: UnderRunbom) -> None:
    outputs = runbom_outputs(under_runbom)
    assert "runbom_exporter_sent_items_total" in (under_runbom.metrics or "")
    metrics = outputs[f"exporter file {under_runbom.export / 'metrics.jsonl'}"] or ""
    logs = outputs[f"exporter file {under_runbom.export / 'logs.jsonl'}"] or ""
    assert "runbom.receiver.accepted_items" in metrics  # its own metrics, exported (OTLP names)
    assert "OTLP/grpc listening on" in logs  # its own log records, through its own pipeline
    assert find_leaks(outputs, API_KEY) == []


def test_the_planted_key_was_captured_and_redacted(under_runbom: UnderRunbom) -> None:
    """runbom did see the key (the plant's exec and request are in its export, redacted), so
    the check above could have failed."""
    records = planted_records(under_runbom)
    execs = [a for _, a in records if a.get("runbom.event") == "process.exec"]
    requests = [a for _, a in records if a.get("runbom.event") == "http.request"]
    assert execs and requests, records
    assert all(a["process.pid"] == under_runbom.planted.exec_pid for a in execs)
    command_line = execs[0]["process.command_line"]
    assert command_line.startswith("/bin/sh -c exit 0 runbom-plant --api-key [REDACTED]")
    assert command_line.count("[REDACTED]") == 3
    url = requests[0]["url.full"]
    assert under_runbom.planted.http_path in url and "api_key=[REDACTED]" in url, url
    assert "note=[REDACTED]" in url


def test_kernel_llm_requests_carry_the_exchange_and_nothing_is_synthesised(
        under_runbom: UnderRunbom) -> None:
    """With the SDK present, the kernel `http.request` of each LLM call (under the SDK's chat
    span) gains what the response said, and runbom makes no chat span of its own."""
    llm = [s for s in under_runbom.spans if s["attrs"].get("runbom.event") == "http.request"
           and s["attrs"].get("url.path") == "/v1/chat/completions"]
    assert llm, "the agent's LLM calls are kernel spans"
    by_id = {s["span_id"]: s for s in under_runbom.spans}
    for s in llm:
        a = s["attrs"]
        assert a["gen_ai.operation.name"] == "chat", a
        assert int(a["gen_ai.usage.input_tokens"]) > 0, a
        assert int(a["gen_ai.usage.output_tokens"]) > 0, a
        assert a["gen_ai.response.finish_reasons"] in (["tool_calls"], ["stop"]), a
        assert a["gen_ai.response.model"] == "gpt-4o-mini", a
        assert a["runbom.correlation.method"] != "inferred", a
        ancestors, up = [], by_id.get(s["parent_span_id"])
        while up is not None and len(ancestors) < 8:
            ancestors.append(up["attrs"].get("gen_ai.operation.name"))
            up = by_id.get(up["parent_span_id"])
        assert "chat" in ancestors, (s, ancestors)
    assert not [s for s in under_runbom.spans if s["scope"] == "runbom.genai"], \
        "no span synthesised for an agent that sends its own"


def test_the_leak_check_fails_on_unredacted_data(under_runbom: UnderRunbom,
                                                 tmp_path: Path) -> None:
    """The same outputs with the plant's redaction undone (the key where `[REDACTED]` is), with
    only a 12-character piece of the key, or with an output missing: the check fails."""
    outputs = runbom_outputs(under_runbom)
    logs = f"exporter file {under_runbom.export / 'logs.jsonl'}"
    lines = (outputs[logs] or "").splitlines()
    planted = sorted({n for n, _ in planted_records(under_runbom)})
    assert planted
    for undo in (API_KEY, API_KEY[20:32], API_KEY[:12].upper()):
        forged = list(lines)
        for n in planted:
            forged[n] = forged[n].replace("[REDACTED]", undo)
        leaks = find_leaks({**outputs, logs: "\n".join(forged)}, API_KEY)
        assert leaks and all(leak.startswith(logs) for leak in leaks), leaks
    # A fabricated export that holds the key in an exec's command line, in a file of its own.
    export = tmp_path / "export"
    export.mkdir()
    (export / "traces.jsonl").write_text("{}\n")
    (export / "logs.jsonl").write_text(json.dumps({"resourceLogs": [{"scopeLogs": [{
        "logRecords": [{"attributes": [{"key": "process.command_line", "value": {
            "stringValue": f"/bin/sh -c exit 0 runbom-plant {API_KEY}"}}]}]}]}]}) + "\n")
    fabricated = collect(export_dir=export, expect=("traces.jsonl", "logs.jsonl"))
    assert [leak.split(":")[0] for leak in find_leaks(fabricated, API_KEY)] == [
        f"exporter file {export / 'logs.jsonl'}"]
    # Missing outputs are failures, not empty texts.
    (export / "logs.jsonl").unlink()
    missing = find_leaks(collect(export_dir=export, expect=("traces.jsonl", "logs.jsonl"),
                                 files={"stderr": tmp_path / "nowhere"},
                                 texts={"/metrics": None}), API_KEY)
    assert len(missing) == 3 and all("missing" in m for m in missing), missing
