"""Unit tests of tests/score_correlation.py (no runbom, no root): the reference agent runs once
per mode without exporting (`run.py --otlp-protocol none`) to write a real ground truth, and
exports are fabricated from it — a correct one, which must pass, and four wrong ones that a
recall-only scorer would pass, which must fail: every event under the root, two conversations swapped, every event
duplicated, one extra kernel span.

    .venv/bin/pytest tests/test_score_correlation.py
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import score_correlation as sc  # noqa: E402

SLACK_NS = 5_000_000


@pytest.fixture(scope="module")
def truths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A real ground truth per mode (benign: in the concurrent modes, two benign
    conversations making the same calls at the same time)."""
    out = {}
    for mode in ("sequential", "threads", "asyncio"):
        work = tmp_path_factory.mktemp(f"truth-{mode}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples/agent/run.py"), "--mode", mode, "--scenario",
             "benign", "--any-ports", "--otlp-protocol", "none", "--work-dir", str(work),
             "--json"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[mode] = json.loads(Path(json.loads(proc.stdout)["ground_truth"]).read_text())
    return out


# --- fabricating exports ------------------------------------------------------------------

def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _id(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def app_spans(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's spans as runbom exports them: orphans stitched, original ids kept."""
    orphans = {o["span_id"]: o for o in truth["orphans"]}
    spans = []
    for c in truth["conversations"]:
        for s in c["spans"]:
            o = orphans.get(s["span_id"])
            attributes = [_kv("thread.id", s["thread_id"])]
            if o:
                attributes += [_kv("runbom.stitched.original_trace_id", o["trace_id"]),
                               _kv("runbom.stitched.original_span_id", o["span_id"])]
            spans.append({
                "traceId": o["stitch_parent_trace_id"] if o else s["trace_id"],
                "spanId": s["span_id"],
                "parentSpanId": o["stitch_parent_span_id"] if o else (s["parent_span_id"] or ""),
                "name": s["name"], "startTimeUnixNano": str(s["start_ns"]),
                "endTimeUnixNano": str(s["end_ns"]), "attributes": attributes})
    return spans


def kernel_span(truth: dict[str, Any], conv: dict[str, Any], a: dict[str, Any],
                n: int) -> dict[str, Any]:
    """The kernel span runbom should export for action `a`, under its span, in its
    conversation's trace."""
    # Just inside the action: the scorer pairs by time before placement, and two identical
    # concurrent actions (the benign conversations' same GET) can start a few µs apart, so a
    # span placed later could be nearer the other conversation's action than its own.
    at = a["start_ns"] + min(1_000, (a["end_ns"] - a["start_ns"]) // 2)
    child = a["pid"] != truth["agent"]["pid"]
    method = ("traceparent", "high") if a["kind"] == "http.request" else (
        ("ancestry", "medium") if child else ("thread", "high"))
    attributes = [_kv("runbom.event", a["kind"]), _kv("runbom.correlation.method", method[0]),
                  _kv("runbom.correlation.confidence", method[1]), _kv("process.pid", a["pid"]),
                  _kv("thread.id", a["thread_id"]),
                  _kv("process.parent_pid", a.get("parent_pid") or 1)]
    kind = a["kind"]
    if kind == "file.open":
        name = f'file.open {a["path"]}'
        attributes += [_kv("file.path", a["path"]), _kv("runbom.file.flags", a["flags"])]
    elif kind == "net.connect":
        name = f'net.connect {a["address"]}:{a["port"]}'
        attributes += [_kv("server.address", a["address"]), _kv("server.port", a["port"]),
                       _kv("network.peer.address", a["address"]),
                       _kv("network.peer.port", a["port"])]
    elif kind == "http.request":
        name = f'http.request {a["method"]} {a["server_address"]}'
        attributes += [_kv("runbom.capture", a["capture"]),
                       _kv("http.request.method", a["method"]),
                       _kv("server.address", a["server_address"]),
                       _kv("server.port", a["server_port"]),
                       _kv("url.path", a["path"].split("?")[0]), _kv("url.full", a["url"])]
    else:
        name = f'process.exec {a["executable"]}'
        attributes += [_kv("process.executable.path", a["executable"])]
    return {"traceId": conv["trace_id"], "spanId": _id("k", n, a["start_ns"], kind),
            "parentSpanId": a["span_id"], "name": name, "startTimeUnixNano": str(at),
            "endTimeUnixNano": str(at + 1000), "attributes": attributes}


def kernel_spans(truth: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(action, its correct kernel span) for every action of the ground truth."""
    out = []
    for conv in truth["conversations"]:
        for a in conv["actions"]:
            out.append((a, kernel_span(truth, conv, a, len(out))))
    return out


def request(app: list[dict[str, Any]], kernel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two OTLP/JSON export requests: the agent's spans, and the kernel spans."""
    return [
        {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "support-agent")]},
                            "scopeSpans": [{"scope": {"name": "runbom.reference_agent"},
                                            "spans": app}]}]},
        {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "python3")]},
                            "scopeSpans": [{"scope": {"name": sc.KERNEL_SCOPE},
                                            "spans": kernel}]}]},
    ]


def scored(tmp: Path, truth: dict[str, Any], kernel: list[dict[str, Any]],
           **policy: Any) -> dict[str, Any]:
    """Writes the export as runbom's file exporter would, and scores it as the CLI does."""
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in request(app_spans(truth), kernel)]
    (tmp / "traces.jsonl").write_text("\n".join(lines) + "\n")
    return sc.score(sc.load_spans(tmp), truth, SLACK_NS, **policy)


MODES = ("sequential", "threads", "asyncio")


# --- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_correct_export_passes(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                 mode: str) -> None:
    truth = truths[mode]
    kernel = [k for _, k in kernel_spans(truth)]
    result = scored(tmp_path, truth, kernel)
    t = result["totals"]
    assert result["failures"] == [], sc.report(result)
    assert t["matched"] == t["actions"] == len(kernel) > 10
    assert (t["misplaced"], t["duplicated"], t["extra"], t["missing"]) == (0, 0, 0, 0)
    assert t["precision"] == t["recall"] == 1.0
    assert result["placed"] == result["captured"] == result["actions"]  # the old readers' keys
    assert result["stitched"] == result["orphans"] == len(truth["conversations"])
    assert set(result["by_method"]) == {"traceparent", "thread", "ancestry"}  # wc: ancestry
    assert all(c["precision"] == c["recall"] == 1.0 for c in result["by_method"].values())


@pytest.mark.parametrize("mode", MODES)
def test_every_event_under_the_root_fails(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                          mode: str) -> None:
    truth = truths[mode]
    roots = {c["index"]: c["root_span_id"] for c in truth["conversations"]}
    kernel = []
    for a, k in kernel_spans(truth):
        k["parentSpanId"] = roots[a["conversation"]]
        kernel.append(k)
    result = scored(tmp_path, truth, kernel)
    t = result["totals"]
    assert t["matched"] == 0 and t["misplaced"] == t["actions"], sc.report(result)
    assert t["precision"] == t["recall"] == 0.0
    assert any("misplaced by thread/high" in f for f in result["failures"])
    assert any("misplaced by traceparent/high" in f for f in result["failures"])
    # Not even when every misplacement were of a tolerated method.
    assert sc.failures(result, tolerated=("thread", "traceparent", "ancestry"), min_recall=0.95)


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_two_conversations_swapped_fail(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                        mode: str) -> None:
    """Each event placed where the other conversation's same action belongs (the events keep
    their own thread and time)."""
    truth = truths[mode]
    c0, c1 = truth["conversations"]
    assert [a["kind"] for a in c0["actions"]] == [a["kind"] for a in c1["actions"]]
    other = {}
    for a0, a1 in zip(c0["actions"], c1["actions"], strict=True):
        other[id(a0)] = (c1["trace_id"], a1["span_id"])
        other[id(a1)] = (c0["trace_id"], a0["span_id"])
    kernel = []
    for a, k in kernel_spans(truth):
        k["traceId"], k["parentSpanId"] = other[id(a)]
        kernel.append(k)
    result = scored(tmp_path, truth, kernel)
    t = result["totals"]
    assert t["matched"] == 0 and t["misplaced"] == t["actions"] == len(kernel), sc.report(result)
    assert (t["duplicated"], t["extra"], t["missing"]) == (0, 0, 0)
    assert result["failures"]
    # Half swapped: the other half still matched, the verdict still fails.
    kernel = [k for _, k in kernel_spans(truth)]
    half = {k["spanId"] for k in kernel[: len(kernel) // 2]}
    for a, k in kernel_spans(truth):
        if k["spanId"] in half:
            k["traceId"], k["parentSpanId"] = other[id(a)]
            kernel = [k if x["spanId"] == k["spanId"] else x for x in kernel]
    result = scored(tmp_path, truth, kernel)
    assert 0 < result["totals"]["misplaced"] < result["totals"]["actions"]
    assert result["failures"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("copy_under", ["root", "right span"])
def test_every_event_duplicated_fails(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                      mode: str, copy_under: str) -> None:
    """Every kernel event twice: the right placement and a copy (under the root, or an
    identical one), in either order in the file."""
    truth = truths[mode]
    roots = {c["index"]: c["root_span_id"] for c in truth["conversations"]}
    kernel = []
    for a, k in kernel_spans(truth):
        dup = copy.deepcopy(k)
        dup["spanId"] = _id("dup", k["spanId"])
        if copy_under == "root":
            dup["parentSpanId"] = roots[a["conversation"]]
        kernel += [dup, k] if len(kernel) % 4 else [k, dup]
    result = scored(tmp_path, truth, kernel)
    t = result["totals"]
    n = t["actions"]
    assert (t["matched"], t["duplicated"], t["misplaced"]) == (n, n, 0), sc.report(result)
    assert t["recall"] == 1.0 and t["precision"] == 0.5
    assert f"{n} duplicated kernel span(s)" in result["failures"]
    assert sc.failures(result, tolerated=("thread", "traceparent", "ancestry", "process"),
                       min_recall=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["under a span", "in no agent trace", "another process"])
def test_one_extra_kernel_span_fails(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                     mode: str, where: str) -> None:
    truth = truths[mode]
    pairs = kernel_spans(truth)
    a, k = next((a, k) for a, k in pairs if a["kind"] == "file.open" and a["by"] == "agent")
    extra = copy.deepcopy(k)
    extra["spanId"] = _id("extra")
    for kv in extra["attributes"]:
        if kv["key"] == "file.path":
            kv["value"]["stringValue"] = truth["data_dir"] + "/tickets/T-0000.md"
    if where == "in no agent trace":  # e.g. exported uncorrelated, in a trace of its own
        extra["traceId"], extra["parentSpanId"] = "ab" * 16, ""
    elif where == "another process":  # a stranger's event put in the agent's trace
        for kv in extra["attributes"]:
            if kv["key"] == "process.pid":
                kv["value"]["intValue"] = "4000000"
    result = scored(tmp_path, truth, [k for _, k in pairs] + [extra])
    t = result["totals"]
    assert (t["matched"], t["extra"]) == (t["actions"], 1), sc.report(result)
    assert "1 extra kernel span(s)" in result["failures"]
    assert t["precision"] < 1.0 and t["recall"] == 1.0
    (detail,) = [d for d in result["details"] if d["outcome"] == "extra"]
    assert detail["what"].endswith("T-0000.md")


def test_one_missing_event_fails(truths: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    truth = truths["threads"]
    kernel = [k for _, k in kernel_spans(truth)][1:]
    result = scored(tmp_path, truth, kernel)
    assert result["totals"]["missing"] == 1 and result["totals"]["precision"] == 1.0
    assert any(f.startswith("recall") for f in result["failures"])


def test_only_process_low_misplacements_are_tolerated(truths: dict[str, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    """One event misplaced: fails as `thread`/high, passes as `process`/low (recall within
    the floor given), fails as `process`/medium."""
    truth = truths["asyncio"]
    pairs = kernel_spans(truth)
    roots = {c["index"]: c["root_span_id"] for c in truth["conversations"]}
    verdicts = {}
    for method, confidence in (("thread", "high"), ("process", "low"), ("process", "medium")):
        kernel = copy.deepcopy([k for _, k in pairs])
        a, k = next((a, k) for a, k in zip([a for a, _ in pairs], kernel, strict=True)
                    if a["kind"] == "file.open")
        k["parentSpanId"] = roots[a["conversation"]]
        for kv in k["attributes"]:
            if kv["key"] == "runbom.correlation.method":
                kv["value"]["stringValue"] = method
            if kv["key"] == "runbom.correlation.confidence":
                kv["value"]["stringValue"] = confidence
        result = scored(tmp_path, truth, kernel, min_recall=0.95)
        assert result["totals"]["misplaced"] == 1
        verdicts[f"{method}/{confidence}"] = result["failures"]
    assert verdicts["process/low"] == []
    assert verdicts["thread/high"] == ["1 misplaced by thread/high (must be exact)"]
    assert verdicts["process/medium"] == ["1 misplaced by process/medium (must be exact)"]


@pytest.mark.parametrize("mode", MODES)
def test_file_order_decides_nothing(truths: dict[str, dict[str, Any]], tmp_path: Path,
                                    mode: str) -> None:
    """The same spans in other orders (and a duplicate under the root first or last) score
    the same."""
    truth = truths[mode]
    roots = {c["index"]: c["root_span_id"] for c in truth["conversations"]}
    base = [k for _, k in kernel_spans(truth)]
    a0, k0 = kernel_spans(truth)[3]
    dup = copy.deepcopy(k0)
    dup["spanId"], dup["parentSpanId"] = _id("d"), roots[a0["conversation"]]
    results = []
    for seed in range(4):
        kernel = base + [dup]
        random.Random(seed).shuffle(kernel)
        r = scored(tmp_path / str(seed), truth, kernel)
        results.append((r["totals"], r["by_placement"], r["failures"]))
    assert all(r == results[0] for r in results)
    assert results[0][0]["duplicated"] == 1 and results[0][0]["matched"] == len(base)


def test_noise_is_named_and_never_inside_an_agent_trace(truths: dict[str, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    """A connect of the agent to the OTLP endpoint, outside its traces, is noise by the
    `otlp-export` rule (printed); the same span inside a conversation's trace is extra."""
    truth = copy.deepcopy(truths["sequential"])
    truth["otlp"]["endpoint"] = "http://127.0.0.1:4318"
    pairs = kernel_spans(truth)
    a, k = next((a, k) for a, k in pairs if a["kind"] == "net.connect")
    otlp = copy.deepcopy(k)
    otlp["spanId"], otlp["traceId"], otlp["parentSpanId"] = _id("otlp"), "cd" * 16, ""
    for kv in otlp["attributes"]:
        if kv["key"] in ("server.port", "network.peer.port"):
            kv["value"]["intValue"] = "4318"
        if kv["key"] == "thread.id":
            kv["value"]["intValue"] = "1"
    result = scored(tmp_path, truth, [k for _, k in pairs] + [otlp])
    assert result["failures"] == [] and result["totals"]["extra"] == 0
    assert [n["rule"] for n in result["noise"]] == ["otlp-export"]
    assert "otlp-export (the SDK's exporter" in sc.report(result)
    otlp["traceId"], otlp["parentSpanId"] = k["traceId"], k["parentSpanId"]
    result = scored(tmp_path, truth, [k for _, k in pairs] + [otlp])
    assert result["noise"] == [] and result["totals"]["extra"] == 1
    assert "1 extra kernel span(s)" in result["failures"]


def test_the_command_line_checks_and_tabulates(truths: dict[str, dict[str, Any]],
                                               tmp_path: Path) -> None:
    truth = truths["threads"]
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    roots = {c["index"]: c["root_span_id"] for c in truth["conversations"]}
    cli = [sys.executable, str(ROOT / "tests/score_correlation.py"), "--ground-truth",
           str(tmp_path / "gt.json")]
    codes, outputs = {}, {}
    for name, wrong in (("good", False), ("bad", True)):
        kernel = []
        for a, k in kernel_spans(truth):
            if wrong:
                k["parentSpanId"] = roots[a["conversation"]]
            kernel.append(k)
        scored(tmp_path / name, truth, kernel)
        run = subprocess.run(cli + ["--export", str(tmp_path / name), "--check"],
                             capture_output=True, text=True, timeout=60)
        codes[name], outputs[name] = run.returncode, run.stdout
        js = subprocess.run(cli + ["--export", str(tmp_path / name), "--json"],
                            capture_output=True, text=True, timeout=60)
        assert js.returncode == 0  # without --check: it could score
        (tmp_path / f"{name}.json").write_text(js.stdout)
    assert codes == {"good": 0, "bad": 1}, outputs
    assert "FAILS" in outputs["bad"] and "passes" in outputs["good"]
    assert "noise rules: otlp-export" in outputs["good"]
    # Missing input: exit 2, not a score.
    missing = subprocess.run(cli + ["--export", str(tmp_path / "nowhere")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2
    table = subprocess.run([sys.executable, str(ROOT / "tests/score_correlation.py"), "--table",
                            str(tmp_path / "good.json")], capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0
    assert "| yes | threads | 1 | thread/high |" in table.stdout
    assert "| 100% | 100% |" in table.stdout


def test_the_right_span_in_the_wrong_trace_fails(truths: dict[str, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    """Under the right span id, but in a trace that span is not in: misplaced."""
    truth = truths["threads"]
    pairs = kernel_spans(truth)
    kernel = [k for _, k in pairs]
    kernel[0]["traceId"] = "ef" * 16
    result = scored(tmp_path, truth, kernel)
    assert result["totals"]["misplaced"] == 1, sc.report(result)
    assert result["failures"]


def test_an_unstitched_orphan_fails_on_its_own_count(truths: dict[str, dict[str, Any]],
                                                     tmp_path: Path) -> None:
    """The orphan left in its own trace, its kernel spans under it there: those placements are
    right (the traceparent named that span), the stitch is not, and the verdict fails."""
    truth = truths["sequential"]
    (orphan,) = truth["orphans"]
    app = [dict(s) for s in app_spans(truth)]
    for s in app:
        if s["spanId"] == orphan["span_id"]:
            s.update(traceId=orphan["trace_id"], parentSpanId="", attributes=[])
    kernel = []
    for a, k in kernel_spans(truth):
        if a["span_id"] == orphan["span_id"]:
            k["traceId"] = orphan["trace_id"]
        kernel.append(k)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "traces.jsonl").write_text(
        "\n".join(json.dumps(r) for r in request(app, kernel)) + "\n")
    result = sc.score(sc.load_spans(tmp_path), truth, SLACK_NS)
    assert result["totals"]["matched"] == result["actions"], sc.report(result)
    assert result["stitched"] == 0 and result["placed"] == result["actions"] - 2
    assert result["failures"] == ["0/1 orphans stitched, below 1.0"]
