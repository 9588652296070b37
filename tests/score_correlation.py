#!/usr/bin/env python3
"""Scores runbom's correlation of one reference-agent run against its ground truth, as
precision and recall.

Reads what runbom's `file` exporter wrote (OTLP/JSON, one export request per line:
traces.jsonl) and the ground truth `examples/agent/run.py` wrote.

    python tests/score_correlation.py --export DIR --ground-truth FILE [--json]
        [--check [--tolerate METHOD[/CONFIDENCE]]... [--min-recall R] [--min-stitched S]]
    python tests/score_correlation.py --table RESULT.json...   # a Markdown table of results

**What is scored.** Every kernel span (scope `runbom.kernel`) of the agent's process tree
(the agent's pid, the children the ground truth names, their descendants by
`process.parent_pid`; from 10 s before the run to 10 s after it), and every kernel span that
sits in one of the agent's traces whatever its process. Each of them must be the one exported
span of exactly one ground-truth action, placed under the span the ground truth names, in the
conversation's trace (through the stitch for the orphan's actions); or be expected noise by one
of the named rules in NOISE_RULES (printed with the report), and never inside an agent trace.

**Matching.** A span can be an action's when the kind, the pid, the thread (the span's
`thread.id`), what it touched (path; address and port, and the local port when the span has
`client.port`; method, path, capture and server port; executable) agree and it starts within
the action's time window widened by --slack-ms. Among all the ways to pair spans with actions,
the scorer takes the one that pairs the most, then the one closest in time in total
(|span start − action start|; for a request with `sent_ns`, the moment its headers were written,
|span start − sent_ns|: a new connection's set-up lies between its start and its request), and
only then the one with more spans placed right: so a placement never decides which event is
which unless the times are equal to the nanosecond (an exported copy of the same event). Spans and actions are sorted by their content first:
no tie is broken by file order.

**Counts** (per `runbom.correlation.method`, per method/confidence, and in total):
- matched: paired with an action and placed under its span, in the trace that span was
  exported in (for the orphan's actions: the orphan's trace, which is the conversation's when
  it was stitched; stitching is scored on its own);
- misplaced: paired with an action, but under another span or in another trace;
- duplicated: not paired, but could be the span of an action that another span is (a copy);
- extra: not paired and could be no action's (an event the agent did not cause, or one
  placed in an agent trace that is not the agent's), unless a noise rule names it;
- missing (total only): an action no span is paired with (not captured, or not exported
  as a span: not placed).
precision = matched / (matched + misplaced + duplicated + extra) — of the spans exported;
recall = matched / (matched + misplaced) per method — of the actions that method placed —
and matched / actions in total, where missing actions count too.

Orphan spans (an HTTP client span that lost its parent context on purpose) are scored as
before: stitched under the right span of the right trace, with the original ids kept.

Exit status: 0 when it could score (whatever the score; with --check, only when the verdict
passes: no duplicated or extra span, no misplaced span except of a --tolerate'd method or
method/confidence, recall and stitched share at least --min-recall/--min-stitched), 1 when
--check fails, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

KERNEL_SCOPE = "runbom.kernel"
KINDS = ("file.open", "net.connect", "http.request", "process.exec")
# How far outside the run's window a kernel span of the agent's pids is still its.
SCOPE_MARGIN_NS = 10_000_000_000
# The default verdict: `process` placements of low confidence (spans of several traces
# contain the event on its thread: asyncio tasks sharing it) may be wrong; time cannot tell
# which task made a syscall. Every other method must be exact.
DEFAULT_TOLERATED = ("process/low",)


# --- reading ------------------------------------------------------------------------------

def attr_value(v: dict) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [attr_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def attrs(kvs: list | None) -> dict:
    return {kv["key"]: attr_value(kv.get("value", {})) for kv in kvs or []}


def spans_of_requests(requests: Iterable[dict]) -> list[dict]:
    """Every span of OTLP/JSON export requests, flattened, with its resource and scope."""
    spans = []
    for request in requests:
        for rs in request.get("resourceSpans", []):
            resource = attrs(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {}).get("name", "")
                for s in ss.get("spans", []):
                    spans.append({
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
                    })
    return spans


def load_spans(export_dir: Path) -> list[dict]:
    """Every span of the file exporter's traces.jsonl (which must exist)."""
    path = export_dir / "traces.jsonl"
    requests = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                requests.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: not JSON: {e}") from None
    return spans_of_requests(requests)


# --- matching -----------------------------------------------------------------------------

def url_path(target: str) -> str:
    return target.split("?", 1)[0]


def compatible(action: dict, span: dict, slack_ns: int) -> bool:
    """Whether `span` can be the kernel span of `action` (everything but the placement)."""
    a = span["attrs"]
    if a.get("runbom.event") != action["kind"] or a.get("process.pid") != action["pid"]:
        return False
    # Two conversations on two threads make the same calls at the same time: the thread
    # tells their syscalls apart (the ground truth knows which thread made each).
    if "thread.id" in a and a["thread.id"] != action["thread_id"]:
        return False
    if not action["start_ns"] - slack_ns <= span["start_ns"] <= action["end_ns"] + slack_ns:
        return False
    kind = action["kind"]
    if kind == "file.open":
        return bool(a.get("file.path") == action["path"])
    if kind == "net.connect":
        if "client.port" in a and action.get("local_port") is not None and \
                a["client.port"] != action["local_port"]:
            return False
        return bool(a.get("network.peer.address", a.get("server.address")) == action["address"]
                    and a.get("server.port") == action["port"])
    if kind == "http.request":
        if "server.port" in a and action.get("server_port") is not None and \
                a["server.port"] != action["server_port"]:
            return False
        return bool(a.get("http.request.method") == action["method"]
                    and a.get("url.path") == url_path(action["path"])
                    and a.get("runbom.capture") == action["capture"])
    if kind == "process.exec":
        return bool(a.get("process.executable.path") == action["executable"])
    return False


def min_cost_assignment(cost: list[list[int]]) -> list[int]:
    """For a square matrix of integer costs, the column of each row in an assignment of
    least total cost (Hungarian algorithm with potentials, O(n³))."""
    n = len(cost)
    if n == 0:
        return []
    inf = float("inf")
    u, v = [0] * (n + 1), [0] * (n + 1)
    p, way = [0] * (n + 1), [0] * (n + 1)  # p[j]: the row given column j (1-based, 0 = none)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = [inf] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    row_col = [0] * n
    for j in range(1, n + 1):
        if p[j]:
            row_col[p[j] - 1] = j - 1
    return row_col


def pair(spans: list[dict], actions: list[dict], edges: dict[tuple[int, int], tuple[int, int]]
         ) -> dict[int, int]:
    """span index → action index, over `edges` ((span, action) → (distance ns, wrong 0/1)):
    the most pairs, then the least total distance, then the fewest wrong placements."""
    result: dict[int, int] = {}
    # Connected components, each solved alone (small matrices).
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, a in edges:
        parent[find(("s", s))] = find(("a", a))
    groups: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for s, a in edges:
        for node in (("s", s), ("a", a)):
            g = groups.setdefault(find(node), ([], []))
            side = g[0] if node[0] == "s" else g[1]
            if node[1] not in side:
                side.append(node[1])
    for ss, aa in sorted(groups.values()):
        ss.sort()
        aa.sort()
        k = min(len(ss), len(aa))
        max_dist = max(edges[e][0] for e in edges if e[0] in ss)
        # Lexicographic: pairs first, then total distance, then wrong placements.
        unit = k + 1
        big = (max_dist * unit + 1) * unit + 1
        forbid = big * unit * 4
        n = len(ss) + len(aa)
        cost = [[0] * n for _ in range(n)]
        for i, s in enumerate(ss):
            for j, a in enumerate(aa):
                e = edges.get((s, a))
                cost[i][j] = e[0] * unit + e[1] - big if e else forbid
        # Rows past the spans and columns past the actions are "unpaired" (cost 0).
        for i, col in enumerate(min_cost_assignment(cost)):
            if i < len(ss) and col < len(aa) and (ss[i], aa[col]) in edges:
                result[ss[i]] = aa[col]
    return result


# --- noise --------------------------------------------------------------------------------

NoiseRule = tuple[str, str, Callable[[dict, dict], bool]]


def _otlp_port(truth: dict) -> int | None:
    endpoint = truth.get("otlp", {}).get("endpoint") or ""
    tail = endpoint.rsplit(":", 1)[-1].split("/", 1)[0]
    return int(tail) if tail.isdigit() else None


def _is_otlp_export(span: dict, truth: dict) -> bool:
    a = span["attrs"]
    return bool(a.get("process.pid") == truth["agent"]["pid"]
                and a.get("runbom.event") in ("net.connect", "http.request")
                and a.get("server.port") == _otlp_port(truth)
                and a.get("server.port") is not None)


def _before_first_span(span: dict, truth: dict) -> bool:
    first = min((s["start_ns"] for c in truth["conversations"] for s in c["spans"]),
                default=truth["window"]["start_ns"])
    return bool(span["attrs"].get("process.pid") == truth["agent"]["pid"]
                and span["start_ns"] < min(first, truth["window"]["start_ns"]))


# (name, why it is not an action of the ground truth, predicate). Noise is only noise outside
# the agent's traces: a kernel span runbom put in an agent trace is an action's or extra.
NOISE_RULES: list[NoiseRule] = [
    ("otlp-export",
     "the SDK's exporter sending the agent's own spans to runbom (its thread, no conversation)",
     _is_otlp_export),
    ("agent-startup",
     "the agent process before its first span (its exec by the harness, interpreter start-up)",
     _before_first_span),
]


# --- scoring ------------------------------------------------------------------------------

def _span_key(s: dict) -> tuple:
    return (s["start_ns"], s["end_ns"], s["trace_id"], s["span_id"], s["parent_span_id"],
            s["name"], json.dumps(s["attrs"], sort_keys=True, default=str))


def _action_key(a: dict) -> tuple:
    return (a["start_ns"], a["end_ns"], a["conversation"], a["kind"], a["span_id"],
            json.dumps(a, sort_keys=True, default=str))


def _what(a: dict) -> str:
    if a["kind"] == "net.connect":
        return f'{a.get("address")}:{a.get("port")}'
    if a["kind"] == "http.request":
        return f'{a.get("method")} {a.get("url") or a.get("path")}'
    return str(a.get("path") or a.get("executable"))


def _span_what(s: dict) -> str:
    a = s["attrs"]
    return str(a.get("file.path") or a.get("url.full") or a.get("process.executable.path")
               or s["name"])


def _counts() -> dict[str, int]:
    return {"matched": 0, "misplaced": 0, "duplicated": 0, "extra": 0}


def share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _finish(c: dict[str, int]) -> dict[str, Any]:
    spans = c["matched"] + c["misplaced"] + c["duplicated"] + c["extra"]
    return {**c, "spans": spans, "precision": share(c["matched"], spans),
            "recall": share(c["matched"], c["matched"] + c["misplaced"])}


def agent_pids(kernel: list[dict], truth: dict) -> set[int]:
    """The agent and its descendants: the children the ground truth names, and every pid
    whose kernel spans name a parent already in the tree."""
    pids = {truth["agent"]["pid"]}
    pids |= {a["pid"] for c in truth["conversations"] for a in c["actions"]}
    parents = {(s["attrs"].get("process.pid"), s["attrs"].get("process.parent_pid"))
               for s in kernel}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents:
            if ppid in pids and pid not in pids:
                pids.add(pid)
                grew = True
    return pids


def score(spans: list[dict], truth: dict, slack_ns: int,
          tolerated: Iterable[str] = DEFAULT_TOLERATED, min_recall: float = 1.0,
          min_stitched: float = 1.0) -> dict:
    kernel_all = [s for s in spans if s["scope"] == KERNEL_SCOPE]
    app = {s["span_id"]: s for s in spans if s["scope"] != KERNEL_SCOPE}
    conversations = {c["index"]: c for c in truth["conversations"]}
    agent_traces = {c["trace_id"] for c in truth["conversations"]}
    agent_traces |= {o["trace_id"] for o in truth["orphans"]}
    pids = agent_pids(kernel_all, truth)
    lo = truth["window"]["start_ns"] - SCOPE_MARGIN_NS
    hi = truth["window"]["end_ns"] + SCOPE_MARGIN_NS
    kernel = sorted((s for s in kernel_all
                     if s["trace_id"] in agent_traces
                     or (s["attrs"].get("process.pid") in pids and lo <= s["start_ns"] <= hi)),
                    key=_span_key)
    actions = sorted((a for c in truth["conversations"] for a in c["actions"]), key=_action_key)

    def placed_right(span: dict, action: dict) -> bool:
        """Under the action's span, in the trace that span was exported in (the orphan's
        stitching is scored on its own, below)."""
        parent = app.get(action["span_id"])
        want_trace = parent["trace_id"] if parent else conversations[action["conversation"]][
            "trace_id"]
        return bool(span["parent_span_id"] == action["span_id"] and span["trace_id"] == want_trace)

    def in_conversation_trace(span: dict, action: dict) -> bool:
        """The first scorer's `placed`: under the action's span, in the conversation's trace."""
        return bool(span["parent_span_id"] == action["span_id"]
                    and span["trace_id"] == conversations[action["conversation"]]["trace_id"])

    edges = {}
    for i, s in enumerate(kernel):
        for j, a in enumerate(actions):
            if compatible(a, s, slack_ns):
                edges[i, j] = (abs(s["start_ns"] - a.get("sent_ns", a["start_ns"])),
                               0 if placed_right(s, a) else 1)
    pairs = pair(kernel, actions, edges)
    compatible_spans = {i for i, _ in edges}

    def placement(s: dict) -> tuple[str, str]:
        a = s["attrs"]
        return a.get("runbom.correlation.method", "none"), a.get(
            "runbom.correlation.confidence", "")

    def where(s: dict) -> str:
        parent = app.get(s["parent_span_id"])
        if not s["parent_span_id"]:
            return "no parent"
        return f'{parent["name"] if parent else "?"} ({s["parent_span_id"]}) in {s["trace_id"]}'

    totals = _counts()
    by_method: dict[str, dict[str, int]] = {}
    by_placement: dict[str, dict[str, int]] = {}
    details: list[dict] = []
    noise: list[dict] = []
    for i, s in enumerate(kernel):
        method, confidence = placement(s)
        if i in pairs:
            a = actions[pairs[i]]
            outcome = "matched" if placed_right(s, a) else "misplaced"
        elif i in compatible_spans:
            a = actions[min(j for (k, j) in edges if k == i)]
            outcome = "duplicated"
        else:
            a = None
            rule = None
            if s["trace_id"] not in agent_traces:
                rule = next((r for r in NOISE_RULES if r[2](s, truth)), None)
            if rule:
                noise.append({"rule": rule[0], "span": s["name"], "pid": s["attrs"].get(
                    "process.pid"), "what": _span_what(s), "method": method})
                continue
            outcome = "extra"
        for c in (totals, by_method.setdefault(method, _counts()),
                  by_placement.setdefault(f"{method}/{confidence}" if confidence else method,
                                          _counts())):
            c[outcome] += 1
        if outcome != "matched":
            item = {"outcome": outcome, "method": method, "confidence": confidence,
                    "span": s["name"], "span_id": s["span_id"], "pid": s["attrs"].get(
                        "process.pid"), "what": _span_what(s), "actual": where(s)}
            if a is not None:
                item.update(kind=a["kind"], conversation=a["conversation"], action=_what(a),
                            expected=f'{a["span_name"]} ({a["span_id"]}) in '
                                     f'{conversations[a["conversation"]]["trace_id"]}')
            details.append(item)
    paired_actions = set(pairs.values())
    missing = []
    for j, a in enumerate(actions):
        if j not in paired_actions:
            missing.append({"outcome": "missing", "kind": a["kind"],
                            "conversation": a["conversation"], "action": _what(a),
                            "expected": f'{a["span_name"]} ({a["span_id"]})'})

    orphans = []
    for o in truth["orphans"]:
        span = app.get(o["span_id"])
        ok = bool(
            span
            and span["trace_id"] == o["stitch_parent_trace_id"]
            and span["parent_span_id"] == o["stitch_parent_span_id"]
            and span["attrs"].get("runbom.stitched.original_trace_id") == o["trace_id"]
        )
        orphans.append({
            "span_id": o["span_id"], "exported": span is not None, "stitched": ok,
            "trace_id": span["trace_id"] if span else None,
            "parent_span_id": span["parent_span_id"] if span else None,
        })

    n = len(actions)
    matched = totals["matched"]
    captured = len(pairs)
    stitched = sum(o["stitched"] for o in orphans)
    by_kind: dict[str, dict[str, int]] = {}
    for j, a in enumerate(actions):
        k = by_kind.setdefault(a["kind"], {"actions": 0, "captured": 0, "placed": 0,
                                           "methods": {}})
        k["actions"] += 1
    placed = 0
    for i, j in pairs.items():
        k = by_kind[actions[j]["kind"]]
        k["captured"] += 1
        k["placed"] += in_conversation_trace(kernel[i], actions[j])
        m = placement(kernel[i])[0]
        k["methods"][m] = k["methods"].get(m, 0) + 1
        placed += in_conversation_trace(kernel[i], actions[j])
    methods: dict[str, int] = {}
    for i in pairs:
        m = placement(kernel[i])[0]
        methods[m] = methods.get(m, 0) + 1
    total = _finish(totals)
    total.update(missing=len(missing), actions=n, recall=share(matched, n))
    result = {
        "scenario": truth["scenario"],
        "mode": truth["mode"],
        "span_thread_id": truth["agent"].get("span_thread_id", True),
        "pids": sorted(pids),
        "kernel_spans": len(kernel),
        "actions": n,
        # The counts the first scorer had (recall only, in the conversation's trace: through
        # the stitch for the orphan's actions), kept for its readers.
        "captured": captured,
        "placed": placed,
        "placed_share": share(placed, n),
        "placed_share_of_captured": share(placed, captured),
        "methods": methods,
        "by_kind": by_kind,
        "orphans": len(orphans),
        "stitched": stitched,
        "stitched_share": share(stitched, len(orphans)),
        "orphan_details": orphans,
        # Precision and recall.
        "totals": total,
        "by_method": {m: _finish(c) for m, c in sorted(by_method.items())},
        "by_placement": {m: _finish(c) for m, c in sorted(by_placement.items())},
        "noise": noise,
        "noise_rules": [{"rule": r[0], "why": r[1]} for r in NOISE_RULES],
        "details": details + missing,
    }
    result["policy"] = {"tolerated": sorted(tolerated), "min_recall": min_recall,
                        "min_stitched": min_stitched}
    result["failures"] = failures(result, tolerated, min_recall, min_stitched)
    return result


def failures(result: dict, tolerated: Iterable[str] = DEFAULT_TOLERATED,
             min_recall: float = 1.0, min_stitched: float = 1.0) -> list[str]:
    """What keeps a scored run from passing: any duplicated or extra kernel span; any
    misplaced span of a method (or method/confidence) not in `tolerated`; recall below
    `min_recall`; stitched orphans below `min_stitched`. Empty: the run passes."""
    tolerated = set(tolerated)
    out = []
    t = result["totals"]
    if result["actions"] == 0:
        out.append("the ground truth has no action to score")
    if t["duplicated"]:
        out.append(f'{t["duplicated"]} duplicated kernel span(s)')
    if t["extra"]:
        out.append(f'{t["extra"]} extra kernel span(s)')
    for key, c in result["by_placement"].items():
        if c["misplaced"] and key not in tolerated and key.split("/")[0] not in tolerated:
            out.append(f'{c["misplaced"]} misplaced by {key} (must be exact)')
    if (t["recall"] or 0) < min_recall:
        out.append(f'recall {t["recall"]} below {min_recall}')
    if result["orphans"] == 0:
        out.append("no orphan span to stitch")
    elif (result["stitched_share"] or 0) < min_stitched:
        out.append(f'{result["stitched"]}/{result["orphans"]} orphans stitched, '
                   f'below {min_stitched}')
    return out


# --- reports ------------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%".replace(".0%", "%")


def traceparent_exact(result: dict) -> bool:
    """Every placement by `traceparent` is right, and every HTTP request was placed by it (so is
    the connect of a plaintext connection, by its first request's)."""
    tp = result["by_method"].get("traceparent")
    http = result["by_kind"].get("http.request", {"actions": 0, "methods": {}})
    return (tp is not None and tp["matched"] == tp["spans"]
            and http["methods"].get("traceparent") == http["actions"])


def report(result: dict) -> str:
    t = result["totals"]
    lines = [
        f'{result["scenario"]}/{result["mode"]} (thread.id on spans: '
        f'{"yes" if result["span_thread_id"] else "no"}): {t["actions"]} actions, '
        f'{result["kernel_spans"]} kernel spans in scope; matched {t["matched"]}, misplaced '
        f'{t["misplaced"]}, duplicated {t["duplicated"]}, extra {t["extra"]}, missing '
        f'{t["missing"]}; precision {pct(t["precision"])}, recall {pct(t["recall"])}; '
        f'{result["stitched"]}/{result["orphans"]} orphans stitched',
    ]
    for m, c in result["by_placement"].items():
        lines.append(f'  {m:<18} matched {c["matched"]:>3}  misplaced {c["misplaced"]:>3}  '
                     f'duplicated {c["duplicated"]:>3}  extra {c["extra"]:>3}  precision '
                     f'{pct(c["precision"]):>6}  recall {pct(c["recall"]):>6}')
    for d in result["details"]:
        what = d.get("action") or d.get("what")
        if d["outcome"] == "missing":
            lines.append(f'  missing: {d["kind"]} {what}: expected under {d["expected"]}')
        elif d["outcome"] == "extra":
            lines.append(f'  extra ({d["method"]}): {d["span"]} pid {d["pid"]} {what}, '
                         f'under {d["actual"]}')
        else:
            lines.append(f'  {d["outcome"]} ({d["method"]}/{d["confidence"]}): {d["kind"]} '
                         f'{what}: expected under {d["expected"]}, got {d["actual"]}')
    lines.append("  noise rules: " + "; ".join(
        f'{r["rule"]} ({r["why"]}): '
        f'{sum(n["rule"] == r["rule"] for n in result["noise"])} span(s)'
        for r in result["noise_rules"]))
    for n in result["noise"]:
        lines.append(f'    noise {n["rule"]}: {n["span"]} pid {n["pid"]} {n["what"]}')
    if result["failures"]:
        lines.append("  FAILS: " + "; ".join(result["failures"]))
    else:
        p = result["policy"]
        lines.append(f'  passes (tolerated misplacements: {", ".join(p["tolerated"]) or "none"};'
                     f' min recall {p["min_recall"]})')
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    """Markdown: per thread.id on/off, mode and method, summed over the runs given."""
    groups: dict[tuple[bool, str], dict[str, Any]] = {}
    order = {"sequential": 0, "threads": 1, "asyncio": 2}
    for r in results:
        g = groups.setdefault((r["span_thread_id"], r["mode"]),
                              {"runs": 0, "methods": {}, "missing": 0, "actions": 0,
                               "stitched": 0, "orphans": 0})
        g["runs"] += 1
        g["missing"] += r["totals"]["missing"]
        g["actions"] += r["actions"]
        g["stitched"] += r["stitched"]
        g["orphans"] += r["orphans"]
        for m, c in r["by_placement"].items():
            acc = g["methods"].setdefault(m, _counts())
            for k in acc:
                acc[k] += c[k]
    head = ("| thread.id | mode | runs | method | matched | misplaced | duplicated | extra | "
            "missing | precision | recall |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [head]
    for (tid, mode), g in sorted(groups.items(), key=lambda kv: (not kv[0][0],
                                                                  order.get(kv[0][1], 9))):
        total = _counts()
        for m, c in sorted(g["methods"].items()):
            f = _finish(c)
            rows.append(f'| {"yes" if tid else "no"} | {mode} | {g["runs"]} | {m} | '
                        f'{c["matched"]} | {c["misplaced"]} | {c["duplicated"]} | {c["extra"]} |'
                        f' | {pct(f["precision"])} | {pct(f["recall"])} |')
            for k in total:
                total[k] += c[k]
        f = _finish(total)
        rows.append(f'| {"yes" if tid else "no"} | {mode} | {g["runs"]} | **all** '
                    f'({g["stitched"]}/{g["orphans"]} orphans stitched) | {total["matched"]} | '
                    f'{total["misplaced"]} | {total["duplicated"]} | {total["extra"]} | '
                    f'{g["missing"]} | {pct(f["precision"])} | '
                    f'{pct(share(total["matched"], g["actions"]))} |')
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, help="the file exporter's directory")
    parser.add_argument("--ground-truth", type=Path)
    parser.add_argument("--slack-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the verdict passes (see --tolerate, --min-recall)")
    parser.add_argument("--tolerate", action="append", metavar="METHOD[/CONFIDENCE]",
                        help=f"misplacements allowed (default {', '.join(DEFAULT_TOLERATED)})")
    parser.add_argument("--min-recall", type=float, default=1.0)
    parser.add_argument("--min-stitched", type=float, default=1.0)
    parser.add_argument("--table", nargs="+", type=Path, metavar="RESULT",
                        help="print a Markdown table of results saved with --json")
    args = parser.parse_args()
    if args.table:
        try:
            results = [json.loads(p.read_text()) for p in args.table]
        except (OSError, json.JSONDecodeError) as e:
            print(f"score_correlation: {e}", file=sys.stderr)
            return 2
        print(table(results))
        return 0
    if not args.export or not args.ground_truth:
        parser.error("--export and --ground-truth are required (or --table)")
    try:
        truth = json.loads(args.ground_truth.read_text())
        spans = load_spans(args.export)
    except (OSError, json.JSONDecodeError) as e:
        print(f"score_correlation: {e}", file=sys.stderr)
        return 2
    tolerated = DEFAULT_TOLERATED if args.tolerate is None else tuple(
        t for t in args.tolerate if t)
    result = score(spans, truth, int(args.slack_ms * 1e6), tolerated, args.min_recall,
                   args.min_stitched)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(report(result))
    return 1 if args.check and result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
