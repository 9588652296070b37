#!/usr/bin/env python3
"""Scores runbom's correlation of one reference-agent run against its ground truth.

Reads what runbom's `file` exporter wrote (OTLP/JSON, one export request per line:
traces.jsonl) and the ground truth `examples/agent/run.py` wrote, and reports:

- per kernel-visible action of the agent (file.open, net.connect, http.request, process.exec):
  whether runbom exported it as a span (captured) and whether that span sits under the span
  the ground truth names (placed: same parent span id, and the conversation's trace id — the
  orphan's actions included, through the stitch);
- per orphan span (an HTTP client span that lost its parent context on purpose): whether runbom
  stitched it under the right span of the right trace, with the original ids kept.

    python tests/score_correlation.py --export DIR --ground-truth FILE [--json]

Exit status 0 when it could score (whatever the score), 2 on unreadable input. Matching a
ground-truth action to an exported span uses the kind, the pid, the thread and what the action touched
(path, address and port, method and path, executable) inside the action's time window widened
by --slack-ms; when several spans match, the one closest in time that no other action took.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KERNEL_SCOPE = "runbom.kernel"


def attr_value(v: dict):
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [attr_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def attrs(kvs: list) -> dict:
    return {kv["key"]: attr_value(kv.get("value", {})) for kv in kvs or []}


def load_spans(export_dir: Path) -> list[dict]:
    """Every span of traces.jsonl, flattened, with its resource and scope."""
    path = export_dir / "traces.jsonl"
    spans = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: not JSON: {e}") from None
            for rs in request.get("resourceSpans", []):
                resource = attrs(rs.get("resource", {}).get("attributes"))
                for ss in rs.get("scopeSpans", []):
                    scope = ss.get("scope", {}).get("name", "")
                    for s in ss.get("spans", []):
                        spans.append(
                            {
                                "trace_id": s.get("traceId", ""),
                                "span_id": s.get("spanId", ""),
                                "parent_span_id": s.get("parentSpanId", ""),
                                "name": s.get("name", ""),
                                "start_ns": int(s.get("startTimeUnixNano", 0)),
                                "end_ns": int(s.get("endTimeUnixNano", 0)),
                                "attrs": attrs(s.get("attributes")),
                                "links": s.get("links", []),
                                "resource": resource,
                                "scope": scope,
                            }
                        )
    return spans


def url_path(target: str) -> str:
    return target.split("?", 1)[0]


def matches(action: dict, span: dict) -> bool:
    a = span["attrs"]
    if a.get("runbom.event") != action["kind"] or a.get("process.pid") != action["pid"]:
        return False
    # Two conversations on two threads make the same calls at the same time: the thread
    # tells their syscalls apart (the ground truth knows which thread made each).
    if "thread.id" in a and a["thread.id"] != action["thread_id"]:
        return False
    kind = action["kind"]
    if kind == "file.open":
        return a.get("file.path") == action["path"]
    if kind == "net.connect":
        return (
            a.get("network.peer.address", a.get("server.address")) == action["address"]
            and a.get("server.port") == action["port"]
        )
    if kind == "http.request":
        return (
            a.get("http.request.method") == action["method"]
            and a.get("url.path") == url_path(action["path"])
            and a.get("runbom.capture") == action["capture"]
        )
    if kind == "process.exec":
        return a.get("process.executable.path") == action["executable"]
    return False


def score(spans: list[dict], truth: dict, slack_ns: int) -> dict:
    kernel = [s for s in spans if s["scope"] == KERNEL_SCOPE]
    by_id = {s["span_id"]: s for s in spans if s["scope"] != KERNEL_SCOPE}
    taken: set[int] = set()
    results = []
    conversations = {c["index"]: c for c in truth["conversations"]}
    actions = [a for c in truth["conversations"] for a in c["actions"]]
    # Earliest first, so that repeated identical actions pair up in order.
    for action in sorted(actions, key=lambda a: a["start_ns"]):
        lo, hi = action["start_ns"] - slack_ns, action["end_ns"] + slack_ns
        candidates = [
            (abs(s["start_ns"] - action["start_ns"]), i)
            for i, s in enumerate(kernel)
            if i not in taken and lo <= s["start_ns"] <= hi and matches(action, s)
        ]
        want_trace = conversations[action["conversation"]]["trace_id"]
        result = {
            "kind": action["kind"],
            "conversation": action["conversation"],
            "expected_span": f'{action["span_name"]} ({action["span_id"]})',
            "what": action.get("path") or action.get("executable") or f'{action.get("address")}:{action.get("port")}',
        }
        if not candidates:
            result.update(captured=False, placed=False)
            results.append(result)
            continue
        _, i = min(candidates)
        taken.add(i)
        span = kernel[i]
        placed = span["parent_span_id"] == action["span_id"] and span["trace_id"] == want_trace
        parent = by_id.get(span["parent_span_id"])
        result.update(
            captured=True,
            placed=placed,
            method=span["attrs"].get("runbom.correlation.method", "none"),
            confidence=span["attrs"].get("runbom.correlation.confidence"),
            actual_span=f'{parent["name"] if parent else "?"} ({span["parent_span_id"] or "root"})',
        )
        results.append(result)

    orphans = []
    for o in truth["orphans"]:
        span = by_id.get(o["span_id"])
        ok = bool(
            span
            and span["trace_id"] == o["stitch_parent_trace_id"]
            and span["parent_span_id"] == o["stitch_parent_span_id"]
            and span["attrs"].get("runbom.stitched.original_trace_id") == o["trace_id"]
        )
        orphans.append(
            {
                "span_id": o["span_id"],
                "exported": span is not None,
                "stitched": ok,
                "trace_id": span["trace_id"] if span else None,
                "parent_span_id": span["parent_span_id"] if span else None,
            }
        )

    def share(n, d):
        return round(n / d, 4) if d else None

    n = len(results)
    captured = sum(r["captured"] for r in results)
    placed = sum(r["placed"] for r in results)
    by_kind = {}
    for r in results:
        k = by_kind.setdefault(r["kind"], {"actions": 0, "captured": 0, "placed": 0})
        k["actions"] += 1
        k["captured"] += r["captured"]
        k["placed"] += r["placed"]
    methods = {}
    for r in results:
        if r["captured"]:
            methods[r["method"]] = methods.get(r["method"], 0) + 1
    stitched = sum(o["stitched"] for o in orphans)
    return {
        "scenario": truth["scenario"],
        "mode": truth["mode"],
        "actions": n,
        "captured": captured,
        "placed": placed,
        "placed_share": share(placed, n),
        "placed_share_of_captured": share(placed, captured),
        "orphans": len(orphans),
        "stitched": stitched,
        "stitched_share": share(stitched, len(orphans)),
        "by_kind": by_kind,
        "methods": methods,
        "misplaced": [r for r in results if not r["placed"]],
        "orphan_details": orphans,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, type=Path, help="the file exporter's directory")
    parser.add_argument("--ground-truth", required=True, type=Path)
    parser.add_argument("--slack-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = parser.parse_args()
    try:
        truth = json.loads(args.ground_truth.read_text())
        spans = load_spans(args.export)
    except (OSError, json.JSONDecodeError) as e:
        print(f"score_correlation: {e}", file=sys.stderr)
        return 2
    result = score(spans, truth, int(args.slack_ms * 1e6))
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(
            f'{result["scenario"]}/{result["mode"]}: {result["placed"]}/{result["actions"]} kernel '
            f'actions placed under the right span ({result["captured"]} captured), '
            f'{result["stitched"]}/{result["orphans"]} orphans stitched; methods {result["methods"]}'
        )
        for r in result["misplaced"]:
            where = r.get("actual_span", "not exported")
            print(f'  {r["kind"]} {r["what"]}: expected under {r["expected_span"]}, got {where}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
