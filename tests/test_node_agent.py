"""The Node reference agent (examples/agent-node/: the OpenTelemetry JS SDK and the `openai` npm
package on /usr/bin/node) under runbom, scored by the same accuracy suite as the Python agent.

As root, one `runbom run` (ebpf + otlp receivers, `correlate` with its default `wait`, the
`aibom` processor with examples/agent/bom.cdx.json on this run's ports and data dir, file
exporter) watches `examples/agent/run.py --agent node` in every mode (sequential; threads: two
conversations, each on a worker thread; asyncio: two conversations interleaved on Node's one
JavaScript thread) × scenario, with `thread.id` on the agent's spans and without it. Each run
is scored by tests/score_correlation.py against its ground truth: sequential and threads 100% of
the actions placed, asyncio at least 95%, nothing duplicated or extra; every LLM call is a
kernel `http.request` captured inside TLS by the OpenSSL probes on the `node` binary and placed
under its `chat` span; each injected run raises exactly one drift alert, on the exfiltration
request, whose chain goes prompt → model call → tool call → exfil request; the benign runs raise
none. Without root, the agent runs into no receiver and its ground truth is checked against its
schema and what the servers received.

    cargo build -p runbom && .venv/bin/pytest tests/test_node_agent.py   # RUNBOM_BIN=… to pick
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "examples" / "agent"
NODE_AGENT_DIR = ROOT / "examples" / "agent-node"
sys.path.insert(0, str(ROOT / "tests"))

import score_correlation as sc  # noqa: E402
from leakcheck import collect, find_leaks  # noqa: E402
from ports import free_port  # noqa: E402
from test_reference_agent import RUNBOM, SLACK_NS, WAIT_S  # noqa: E402

MODES = ("sequential", "threads", "asyncio")
# The SDK's two OTLP exporters: protobuf over HTTP, and gRPC (@grpc/grpc-js, HTTP/2).
PROTOCOL = {"sequential": "http/protobuf", "threads": "http/protobuf", "asyncio": "grpc"}
SCENARIOS = ("benign", "injected")
RUNS = [(m, s, t) for t in (True, False) for m in MODES for s in SCENARIOS]
HELP = {True: "thread-id", False: "no-thread-id"}
HELPED = [(m, s) for m in MODES for s in SCENARIOS]
HELPED_IDS = [f"{m}-{s}" for m, s in HELPED]
# Two conversations on Node's one thread: when spans of both contain a syscall, time cannot
# tell which made it (`process`/low), as with Python's asyncio mode.
MIN_RECALL = {"sequential": 1.0, "threads": 1.0, "asyncio": 0.95}
DEFAULT_PORTS = {"llm": 18443, "ticketing": 18080, "customers": 18081, "exfil": 18099}
API_KEY = "sk-test-node-agent-" + os.urandom(12).hex()
NODE = shutil.which("node") or "/usr/bin/node"
# The probes see every process of the machine: beside other builds and benchmarks the default
# 8 MiB ring overflowed (runbom says so in its log), and a dropped event is a missing action.
RING_BYTES = 64 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not (NODE_AGENT_DIR / "node_modules").is_dir(),
    reason="examples/agent-node/node_modules is missing: bash scripts/setup.sh --tests")


def run_agent(mode: str, scenario: str, truth: Path, work: Path, otlp: str,
              extra: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(AGENT_DIR / "run.py"), "--agent", "node", "--node", NODE,
         "--mode", mode, "--scenario", scenario, "--work-dir", str(work), "--ground-truth",
         str(truth), "--otlp-endpoint", otlp, "--json", *extra],
        capture_output=True, text=True, env={**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY},
        timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] and all(summary["conversation_ok"]), summary
    return summary


# --- without runbom: the agent itself ---------------------------------------------------------

def test_the_node_agent_writes_a_valid_ground_truth_the_servers_agree_with(tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((AGENT_DIR / "ground-truth.schema.json").read_text())
    truth_path = tmp_path / "truth.json"
    summary = run_agent("asyncio", "injected", truth_path, tmp_path / "work",
                        "http://127.0.0.1:1", ["--any-ports", "--otlp-protocol", "none"])
    truth = json.loads(truth_path.read_text())
    jsonschema.Draft202012Validator(schema).validate(truth)
    assert Path(truth["agent"]["executable"]).name.startswith("node")
    assert summary["conversations"] == 2 and summary["orphans"] == 2
    assert (truth["exfiltration"]["requests"], truth["exfiltration"]["records"]) == (1, 24)
    assert len(truth["expected_drift"]) == 1
    # Every request the agent noted is one the servers received, with the same traceparent.
    sent = sorted(a["traceparent"] for c in truth["conversations"] for a in c["actions"]
                  if a["kind"] == "http.request")
    assert sent == sorted(e["traceparent"] for e in truth["server_view"])
    for conv in truth["conversations"]:
        names = {s["span_id"]: s["name"] for s in conv["spans"]}
        for a in conv["actions"]:
            if a["kind"] == "http.request":
                assert a["traceparent"].split("-")[2] == a["span_id"], a
            if a["kind"] == "http.request" and a["scheme"] == "https":
                assert names[a["span_id"]] == "chat gpt-4o-mini" and a["capture"] == "openssl"
            if a["kind"] == "net.connect" and "error" not in a:
                assert a["local_port"] > 0, a
    assert API_KEY not in truth_path.read_text()


# --- under runbom ---------------------------------------------------------------------------

@dataclass
class UnderRunbom:
    export: Path
    log: Path
    truths: dict[tuple[str, str, bool], dict[str, Any]]
    spans: list[dict[str, Any]]
    logs: list[dict[str, Any]]


def kernel_drops(u: UnderRunbom) -> str:
    """What runbom logged of kernel events it could not take (a cause of missing actions)."""
    return "".join(f"\n{line}" for line in u.log.read_text().splitlines()
                   if "kernel dropped" in line)


def log_records(export: Path) -> list[dict[str, Any]]:
    out = []
    for line in (export / "logs.jsonl").read_text().splitlines():
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                out.extend(sl.get("logRecords", []))
    return out


@pytest.fixture(scope="module")
def under_runbom(tmp_path_factory: pytest.TempPathFactory) -> UnderRunbom:
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.is_file(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    tmp = tmp_path_factory.mktemp("node-agent")
    export, work = tmp / "export", tmp / "agent"
    ports = {name: free_port() for name in DEFAULT_PORTS}
    bom = (AGENT_DIR / "bom.cdx.json").read_text()
    for name, port in ports.items():
        bom = bom.replace(f"127.0.0.1:{DEFAULT_PORTS[name]}", f"127.0.0.1:{port}")
    assert "file:///tmp/runbom-agent/data/" in bom
    bom = bom.replace("file:///tmp/runbom-agent/data/", f"file://{work}/data/")
    (tmp / "bom.cdx.json").write_text(bom)
    grpc, http_port = free_port(), free_port()
    (tmp / "runbom.yaml").write_text(f"""
receivers:
  ebpf:
    file: {{ include: ["{work}/data/"] }}
    ring_buffer_bytes: {RING_BYTES}
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http_port}" }}
processors:
  correlate: {{ wait: {WAIT_S}s }}
  aibom: {{ bom: {tmp / 'bom.cdx.json'} }}
  batch: {{}}
exporters:
  file: {{ path: {export} }}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    traces: {{ receivers: [otlp, ebpf], processors: [correlate, aibom, batch], exporters: [file] }}
    logs: {{ receivers: [otlp, ebpf, aibom], processors: [batch], exporters: [file] }}
""")
    log = tmp / "runbom.log"
    with open(log, "wb") as out:
        runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 60
        while b"runbom is running" not in log.read_bytes():
            assert runbom.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "runbom did not start: " + log.read_text()
            time.sleep(0.05)
        truths = {}
        for mode, scenario, thread_id in RUNS:
            truth = tmp / f"ground-truth-{mode}-{scenario}-{HELP[thread_id]}.json"
            protocol = PROTOCOL[mode]
            otlp_port = grpc if protocol == "grpc" else http_port
            run_agent(mode, scenario, truth, work, f"http://127.0.0.1:{otlp_port}",
                      ["--otlp-protocol", protocol]
                      + [f"--{name}-port={port}" for name, port in ports.items()]
                      + ([] if thread_id else ["--no-thread-id"]))
            truths[mode, scenario, thread_id] = json.loads(truth.read_text())
        time.sleep(WAIT_S + 2)  # every event held by the correlator leaves in its own time
    finally:
        runbom.send_signal(signal.SIGTERM)
        try:
            code = runbom.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runbom.kill()
            code = runbom.wait(timeout=10)
    assert code == 0, f"runbom exited with {code}: {log.read_text()[-3000:]}"
    return UnderRunbom(export, log, truths, sc.load_spans(export), log_records(export))


@pytest.fixture(scope="module")
def scores(under_runbom: UnderRunbom) -> dict[tuple[str, str, bool], dict[str, Any]]:
    results = {}
    keep = os.environ.get("RUNBOM_ACCURACY_OUT")
    for key, truth in under_runbom.truths.items():
        results[key] = sc.score(under_runbom.spans, truth, SLACK_NS, min_recall=MIN_RECALL[key[0]])
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            mode, scenario, thread_id = key
            (Path(keep) / f"node-{mode}-{scenario}-{HELP[thread_id]}.json").write_text(
                json.dumps(results[key], indent=1))
    return results


@pytest.mark.parametrize(("mode", "scenario"), HELPED, ids=HELPED_IDS)
def test_accuracy_with_thread_id(scores: dict[tuple[str, str, bool], dict[str, Any]],
                                 under_runbom: UnderRunbom, mode: str, scenario: str) -> None:
    """Every kernel span of the Node agent's process tree is one action's, under its span:
    100% placed when sequential or on worker threads, at least 95% when two conversations share
    the thread; nothing duplicated or extra; every HTTP request placed by its traceparent; every
    orphan stitched."""
    result = scores[mode, scenario, True]
    print(sc.report(result))
    assert result["failures"] == [], sc.report(result) + kernel_drops(under_runbom)
    t = result["totals"]
    assert t["actions"] >= (21 if scenario == "benign" else 17)
    assert (t["duplicated"], t["extra"]) == (0, 0)
    assert sc.traceparent_exact(result), sc.report(result)
    if mode != "asyncio":
        assert t["matched"] == t["actions"], sc.report(result)
        assert "process" not in result["by_method"], sc.report(result)


@pytest.mark.parametrize(("mode", "scenario"), HELPED, ids=HELPED_IDS)
def test_accuracy_without_help(scores: dict[tuple[str, str, bool], dict[str, Any]], mode: str,
                               scenario: str) -> None:
    """Plain SDK spans (no thread.id, the SDK's millisecond start times): `traceparent`
    placements stay exact and nothing is exported twice; the rest is recorded, whatever it is."""
    result = scores[mode, scenario, False]
    print(sc.report(result))
    assert sc.traceparent_exact(result), sc.report(result)
    assert result["totals"]["duplicated"] == 0


def test_accuracy_table(scores: dict[tuple[str, str, bool], dict[str, Any]]) -> None:
    """The Node rows of the accuracy table (printed; kept with RUNBOM_ACCURACY_OUT)."""
    table = sc.table(list(scores.values()))
    print(table)
    if keep := os.environ.get("RUNBOM_ACCURACY_OUT"):
        (Path(keep) / "node-table.md").write_text(table + "\n")


def test_llm_calls_are_seen_inside_node_tls_under_their_chat_spans(
        under_runbom: UnderRunbom) -> None:
    """Node links OpenSSL into its own binary: each model call of the `openai` package is a
    kernel `http.request` captured by the OpenSSL probes on `node`, with the model of its body,
    placed under the `chat` span its traceparent names."""
    by_id = {s["span_id"]: s for s in under_runbom.spans}
    for (mode, scenario, thread_id), truth in under_runbom.truths.items():
        for conv in truth["conversations"]:
            chats = {a["span_id"] for a in conv["actions"] if a["kind"] == "http.request"
                     and a["scheme"] == "https"}
            llm = [s for s in under_runbom.spans if s["attrs"].get("runbom.event") == "http.request"
                   and s["attrs"].get("process.pid") == truth["agent"]["pid"]
                   and s["attrs"].get("url.path") == "/v1/chat/completions"
                   and s["trace_id"] == conv["trace_id"]]
            assert {s["parent_span_id"] for s in llm} == chats, (mode, scenario, thread_id)
            for s in llm:
                a = s["attrs"]
                assert a["runbom.capture"] == "openssl", a
                assert a["gen_ai.request.model"] == "gpt-4o-mini", a
                assert a["runbom.correlation.method"] == "traceparent", a
                assert by_id[s["parent_span_id"]]["name"] == "chat gpt-4o-mini"


def describe_alerts(u: UnderRunbom, alerts: list[dict[str, Any]]) -> str:
    """Each alert as the run whose trace it is in, the span it points at, its kinds and its
    chain: what a failed comparison needs to be read (the raw records are cut off)."""
    runs = {c["trace_id"]: f"{mode}/{scenario}/{HELP[thread_id]}"
            for (mode, scenario, thread_id), t in u.truths.items() for c in t["conversations"]}
    expected = {d["span_id"] for t in u.truths.values() for d in t["expected_drift"]}
    out = []
    for r in alerts:
        a = sc.attrs(r.get("attributes"))
        out.append(f'{"expected" if r["spanId"] in expected else "UNEXPECTED"} '
                   f'{runs.get(r["traceId"], "no run")} trace {r["traceId"]} span '
                   f'{r["spanId"]}: {a.get("aibom.drift.kinds")} {a.get("aibom.drift.subject")}'
                   + "".join(f"\n    {step}" for step in a.get("aibom.chain") or []))
    return "\n".join(out)


def test_each_injected_run_alerts_once_with_its_chain(under_runbom: UnderRunbom) -> None:
    """The exfiltration through an approved tool to an undeclared endpoint: one alert per
    injected run, on the request the ground truth names, its chain from the prompt through the
    model call and the tool call to the exfil request; none for the benign runs."""
    # Other processes on this machine are watched too: only the agents' alerts count.
    traces = {c["trace_id"] for t in under_runbom.truths.values() for c in t["conversations"]}
    pids = {t["agent"]["pid"] for t in under_runbom.truths.values()}
    alerts = [r for r in under_runbom.logs if r.get("eventName") == "aibom.drift"
              and (r.get("traceId") in traces
                   or int(sc.attrs(r.get("attributes")).get("process.pid") or 0) in pids)]
    expected = [d for t in under_runbom.truths.values() for d in t["expected_drift"]]
    assert len(expected) == sum(1 for _, s, _ in RUNS if s == "injected")
    assert sorted((r["traceId"], r["spanId"]) for r in alerts) == sorted(
        (d["trace_id"], d["span_id"]) for d in expected), describe_alerts(under_runbom, alerts)
    for (mode, _, thread_id), truth in under_runbom.truths.items():
        for want in truth["expected_drift"]:
            alert = next(r for r in alerts if r["spanId"] == want["span_id"])
            a = sc.attrs(alert["attributes"])
            assert a["aibom.drift.kinds"] == want["drift_kinds"] == ["undeclared_endpoint"]
            assert a["aibom.agent.ref"] == "agent:support-agent"
            chain = "\n".join(a["aibom.chain"])
            for mention in want["chain_mentions"]:
                # The file read is placed by time: with plain SDK spans two conversations on one
                # thread may swap theirs (docs/correlation.md); everything else is exact.
                if thread_id or mode != "asyncio" or not mention.startswith("/"):
                    assert mention in chain, (mention, chain)
            # prompt → model call → tool call → exfil request, in that order.
            order = [chain.find(want["chain_mentions"][0]), chain.find("chat"),
                     chain.find("http_post"), chain.find(want["destination"])]
            assert -1 not in order and order == sorted(order), chain


def test_the_exfiltrations_connect_goes_with_its_request(under_runbom: UnderRunbom) -> None:
    """The connect that opened the exfiltration's connection is under the exfiltration's `POST`,
    placed by the `traceparent` of the request written on it: with two conversations on one
    thread, time would put it in whichever conversation's span was innermost (an alert in the
    wrong trace)."""
    for truth in under_runbom.truths.values():
        for want in truth["expected_drift"]:
            host, port = want["destination"].removeprefix("http://").split("/")[0].split(":")
            connects = [s for s in under_runbom.spans
                        if s["attrs"].get("runbom.event") == "net.connect"
                        and s["attrs"].get("process.pid") == truth["agent"]["pid"]
                        and s["attrs"].get("server.port") == int(port)]
            assert [(s["trace_id"], s["parent_span_id"], s["attrs"]["runbom.correlation.method"])
                    for s in connects] == [(want["trace_id"], want["span_id"], "traceparent")]


def test_runbom_wrote_nothing_of_the_key(under_runbom: UnderRunbom) -> None:
    """The API key the agent sends inside TLS (and any 12-character piece of it) is in nothing
    runbom wrote."""
    outputs = collect(export_dir=under_runbom.export, expect=("traces.jsonl", "logs.jsonl"),
                      nonempty=("traces.jsonl", "logs.jsonl"),
                      files={"runbom's log": under_runbom.log})
    assert find_leaks(outputs, API_KEY) == []
