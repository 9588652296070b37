#!/usr/bin/env python3
"""Live progress for the demo: polls runbom's /metrics once a second and prints one line when
the agent's figures changed — kernel events read, how many were placed under the agent's spans,
spans stitched, drift findings. On SIGTERM prints the final line and exits.

    demo_progress.py [--admin 127.0.0.1:8888]
"""

import argparse
import signal
import sys
import time
import urllib.request

COUNTERS = {
    "events": ["runbom_kernel_records_total"],
    "correlated": [
        "runbom_correlate_traceparent_events_total",
        "runbom_correlate_thread_events_total",
        "runbom_correlate_process_events_total",
        "runbom_correlate_ancestry_events_total",
    ],
    "stitched": ["runbom_correlate_stitched_spans_total"],
    "findings": ["runbom_aibom_alerts_total"],
}


def scrape(admin: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0]
        try:
            values[name] = values.get(name, 0) + float(value)
        except ValueError:
            pass
    return {k: int(sum(values.get(n, 0) for n in names)) for k, names in COUNTERS.items()}


def line(v: dict) -> str:
    return (
        f"[demo] live: {v.get('events', 0):>7} kernel events · {v.get('correlated', 0):>4} placed under "
        f"the agent's spans · {v.get('stitched', 0)} spans stitched · {v.get('findings', 0)} drift finding(s)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin", default="127.0.0.1:8888")
    args = p.parse_args()
    last = {}
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop:
        v = scrape(args.admin)
        # A line when the agent-related figures move (kernel events alone move all the time).
        key = {k: n for k, n in v.items() if k != "events"}
        if v and key != last:
            print(line(v), flush=True)
            last = key
        time.sleep(1)
    # A series runbom shows for the first time reads 0 and gets its increments at the next
    # scrape (so that rate() sees them): the last line reads twice.
    scrape(args.admin)
    final = scrape(args.admin)
    if final:
        print(line(final), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
