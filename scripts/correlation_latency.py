#!/usr/bin/env python3
"""How soon after an application span reaches runbom do its kernel children leave runbom?

Reads what `tests/otlp_sink.py` received downstream of runbom (one JSON line per export request,
with `received_ns`) and what the reference agent logged about its own exports
(RUNBOM_AGENT_EXPORT_LOG: `sent_ns` and the span ids of each export call). For every kernel span
(scope `runbom.kernel`) whose parent is an application span:

    latency = received_ns(the request carrying the kernel span) - sent_ns(the parent's export)

minus the correlator's configured wait. Prints p50/p90/p99/max (ms) and, with --json, all of it.

    correlation_latency.py --sink SINK.jsonl --exports EXPORTS.jsonl --wait-ms 2000 [--json]
"""

import argparse
import base64
import json
import sys


def hex_id(b64: str) -> str:
    return base64.b64decode(b64).hex() if b64 else ""


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sink", required=True)
    p.add_argument("--exports", required=True)
    p.add_argument("--wait-ms", type=float, required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    sent = {}
    with open(args.exports) as f:
        for line in f:
            e = json.loads(line)
            for sid in e["span_ids"]:
                sent[sid] = e["sent_ns"]
    latencies = []
    unparented = 0
    with open(args.sink) as f:
        for line in f:
            rec = json.loads(line)
            if rec["signal"] != "traces":
                continue
            for rs in rec["request"].get("resource_spans", []):
                for ss in rs.get("scope_spans", []):
                    if ss.get("scope", {}).get("name") != "runbom.kernel":
                        continue
                    for s in ss.get("spans", []):
                        parent = hex_id(s.get("parent_span_id", ""))
                        if parent not in sent:
                            unparented += 1
                            continue
                        latencies.append(
                            (rec["received_ns"] - sent[parent]) / 1e6 - args.wait_ms
                        )
    latencies.sort()
    result = {
        "kernel_spans_under_app_spans": len(latencies),
        "kernel_spans_elsewhere": unparented,
        "wait_ms": args.wait_ms,
        "latency_beyond_wait_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else None,
        },
    }
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        lat = result["latency_beyond_wait_ms"]
        if not latencies:
            print("no kernel span under an application span was received")
            return 1
        print(
            f"{len(latencies)} kernel spans under application spans; beyond the {args.wait_ms:.0f} ms "
            f"wait: p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms, "
            f"max {lat['max']:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
