"""The AI-BOM processor with the real reference agent (no eBPF, no root: application spans only).

runbom runs as a user would start it (`runbom run -c`), with the `aibom` processor in the traces
pipeline and its alerts routed to the logs pipeline; the agent runs once per scenario on free
ports, against a copy of examples/agent/bom.cdx.json that declares those ports. Then:
the injected run gives exactly one drift alert, on the span the ground truth names, whose chain
tells the story; the benign run gives none; `runbom bom observed` writes strict CycloneDX 1.6;
`runbom bom diff` names the tool endpoint; the API key (nor any 12-character piece of it)
appears in nothing runbom wrote: every exporter file, its log (stdout and stderr), a scrape of
its /metrics (tests/leakcheck.py; a missing output fails).

    cargo build -p runbom && .venv/bin/pytest tests/test_aibom.py
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leakcheck import collect, find_leaks, scrape  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "examples" / "agent"
RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "runbom")
API_KEY = f"sk-test-{secrets.token_hex(20)}"
DEFAULT = {"llm": 18443, "ticketing": 18080, "customers": 18081, "exfil": 18099}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.get("value", {})
        if "arrayValue" in v:
            out[kv["key"]] = [x.get("stringValue") for x in v["arrayValue"].get("values", [])]
        else:
            out[kv["key"]] = next(iter(v.values()), None) if v else None
    return out


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        req = json.loads(line)
        for r in req.get(f"resource{kind}", []):
            for s in r.get(f"scope{kind}", []):
                out.extend(s.get("spans" if kind == "Spans" else "logRecords", []))
    return out


def run_scenario(tmp: Path, scenario: str) -> dict[str, Any]:
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    ports = {name: free_port() for name in DEFAULT}
    bom = (AGENT_DIR / "bom.cdx.json").read_text()
    for name, port in ports.items():
        bom = bom.replace(f"127.0.0.1:{DEFAULT[name]}", f"127.0.0.1:{port}")
    (tmp / "bom.cdx.json").write_text(bom)
    otlp, metrics = free_port(), free_port()
    out = tmp / "out"
    (tmp / "runbom.yaml").write_text(f"""
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: 127.0.0.1:{otlp} }} }} }}
processors:
  aibom: {{ bom: {tmp / 'bom.cdx.json'}, wait: 1s }}
exporters:
  file: {{ path: {out} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:{metrics} }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [aibom], exporters: [file] }}
    logs:   {{ receivers: [otlp, aibom], exporters: [file] }}
""")
    log = open(tmp / "runbom.log", "wb")
    runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"runbom is running" not in (tmp / "runbom.log").read_bytes():
            assert runbom.poll() is None, (tmp / "runbom.log").read_text()
            assert time.monotonic() < deadline, "runbom did not start"
            time.sleep(0.05)
        env = {**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY}
        truth = tmp / "ground-truth.json"
        subprocess.run(
            [sys.executable, str(AGENT_DIR / "run.py"), "--scenario", scenario, "--mode",
             "sequential", "--otlp-endpoint", f"http://127.0.0.1:{otlp}", "--work-dir",
             str(tmp / "agent"), "--ground-truth", str(truth),
             "--llm-port", str(ports["llm"]), "--ticketing-port", str(ports["ticketing"]),
             "--customers-port", str(ports["customers"]), "--exfil-port", str(ports["exfil"])],
            check=True, env=env, timeout=120, capture_output=True)
        metrics_text = scrape(f"http://127.0.0.1:{metrics}/metrics")  # for the leak check
    finally:
        # SIGTERM: the processor releases every trace it holds; the pipelines drain.
        runbom.send_signal(signal.SIGTERM)
        assert runbom.wait(timeout=30) == 0, (tmp / "runbom.log").read_text()
        log.close()
    return {"truth": json.loads(truth.read_text()), "out": out, "tmp": tmp,
            "metrics": metrics_text}


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(tmp_path_factory.mktemp("aibom-injected"), "injected")


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(tmp_path_factory.mktemp("aibom-benign"), "benign")


def test_injected_run_alerts_once_on_the_exfiltration(injected: dict[str, Any]) -> None:
    expected = injected["truth"]["expected_drift"]
    assert len(expected) == 1
    alerts = [r for r in records(injected["out"] / "logs.jsonl", "Logs")
              if r.get("eventName") == "aibom.drift"]
    assert len(alerts) == 1, alerts
    alert, want = alerts[0], expected[0]
    assert (alert["traceId"], alert["spanId"]) == (want["trace_id"], want["span_id"])
    a = attrs(alert["attributes"])
    assert a["aibom.drift.kinds"] == want["drift_kinds"] == ["undeclared_endpoint"]
    assert a["aibom.agent.ref"] == "agent:support-agent"
    assert alert["severityText"] == "ERROR"
    chain = "\n".join(a["aibom.chain"])
    assert alert["body"]["stringValue"] == chain
    # Without the kernel side, file reads are not seen; everything else the ground truth names is.
    for mention in want["chain_mentions"]:
        if not mention.startswith("/"):
            assert mention in chain, (mention, chain)
    drifted = [s for s in records(injected["out"] / "traces.jsonl", "Spans")
               if attrs(s["attributes"]).get("aibom.drift") is True]
    assert [s["spanId"] for s in drifted] == [want["span_id"]]


def test_benign_run_has_no_drift(benign: dict[str, Any]) -> None:
    assert benign["truth"]["expected_drift"] == []
    logs = records(benign["out"] / "logs.jsonl", "Logs")
    assert not [r for r in logs if r.get("eventName") == "aibom.drift"]
    spans = records(benign["out"] / "traces.jsonl", "Spans")
    assert spans
    judged = [attrs(s["attributes"]) for s in spans]
    assert all(a.get("aibom.drift") is False for a in judged), judged
    assert all(a.get("aibom.bom.serial_number") for a in judged)


def test_observed_bom_is_strict_cyclonedx_and_the_diff_names_the_tool_endpoint(
        injected: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    observed = injected["tmp"] / "observed.cdx.json"
    subprocess.run([str(RUNBOM), "bom", "observed", "--from", str(injected["out"]), "--out",
                    str(observed)], check=True, timeout=60)
    text = observed.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    diff = subprocess.run([str(RUNBOM), "bom", "diff", "--json",
                           str(injected["tmp"] / "bom.cdx.json"), str(observed)],
                          capture_output=True, timeout=60)
    assert diff.returncode == 1, diff.stderr
    report = json.loads(diff.stdout)
    exfil = injected["truth"]["endpoints"]["exfil"]
    assert any(i["kind"] == "tool endpoint" and exfil in i["name"] for i in report["undeclared"]), \
        report["undeclared"]
    assert any(i["ref"] == "model:gpt-4o-mini" for i in report["matched"])


def test_the_api_key_is_in_nothing_runbom_wrote(injected: dict[str, Any],
                                                 benign: dict[str, Any]) -> None:
    for run in (injected, benign):
        outputs = collect(export_dir=run["out"], expect=("traces.jsonl", "logs.jsonl"),
                          nonempty=("traces.jsonl",),
                          files={"runbom's stdout and stderr": run["tmp"] / "runbom.log"},
                          texts={"runbom's /metrics": run["metrics"]})
        assert "runbom_exporter_sent_items_total" in (run["metrics"] or "")
        assert find_leaks(outputs, API_KEY) == []
