#!/usr/bin/env python3
"""Idle memory with the embedded defaults (docs/benchmarks.md, "Idle RSS with the embedded
defaults"): `runbom run` without a configuration, as root, left alone.

Each run starts the binary in a fresh temporary directory (the file exporter writes to
./runbom-data there) and in its own network namespace with only loopback up, so that the
defaults' fixed ports (4317, 4318, 8888) never collide with another runbom on the machine; the
probes still watch every process. After SETTLE seconds it samples /proc/PID/smaps_rollup once a
second for SAMPLE seconds (RSS and PSS: the median of the samples), then reads /proc/PID/smaps
once and says which mappings hold the memory:
- ring: the kernel's BPF maps mapped into runbom (the ring buffer's data pages are mapped twice
  so that a wrapped record reads contiguously: RSS counts them twice, PSS once);
- binary: runbom's own code and read-only data;
- libraries: other mapped files;
- stacks: the main thread's stack and thread stacks (anonymous mappings right after a guard page);
- allocator: every other anonymous mapping (the heap: mimalloc's segments, the libc heap).

With BASELINE_BIN set, every round runs both binaries, the order alternating, and the summary
gives each one's median, minimum and maximum over the rounds, and the ratio of medians.

The probes watch every process of the machine: on a shared build machine other processes'
bursts of opens make runbom busy, not idle, and its heap follows them. Each run therefore says
how many kernel records per second runbom read while it was sampled, and the summary is given
twice: over every round, and over the quiet rounds only (every run of the round below QUIET
records per second, default 1000).

    sudo .venv/bin/python scripts/bench_idle_rss.py         # ROUNDS=3 SETTLE=20 SAMPLE=10
    RUNBOM_BIN=target/release/runbom (default: $CARGO_TARGET_DIR or target, release)
    BASELINE_BIN=/path/to/another/runbom                     # measured in the same rounds
    RUNBOM_ENV="MIMALLOC_PURGE_DELAY=0"                      # extra environment for RUNBOM_BIN
    RUNBOM_CONFIG=file.yaml                                  # a configuration instead (both binaries)
    BURST=300000                                             # opens made 5 s into the settle time: what
                                                             # a burst leaves behind once it is over
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "runbom")
BASELINE = os.environ.get("BASELINE_BIN")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SETTLE = float(os.environ.get("SETTLE", "20"))
SAMPLE = int(os.environ.get("SAMPLE", "10"))
QUIET = float(os.environ.get("QUIET", "1000"))
EXTRA_ENV = dict(
    kv.split("=", 1) for kv in os.environ.get("RUNBOM_ENV", "").split() if "=" in kv)
CONFIG = os.environ.get("RUNBOM_CONFIG")
BURST = int(os.environ.get("BURST", "0"))
CATEGORIES = ["ring", "binary", "libraries", "stacks", "allocator"]


def say(msg: str) -> None:
    print(f"[bench-idle-rss] {msg}", file=sys.stderr, flush=True)


def rollup(pid: int) -> dict[str, float]:
    """smaps_rollup's fields in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) == 2 and fields[1] == "kB":
            out[key] = int(fields[0]) / 1024
    return out


def kernel_counters(pid: int) -> tuple[float, float]:
    """(kernel records read, records shed) so far, from runbom's /metrics in its namespace."""
    text = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "curl", "-s", "--max-time", "5",
         "http://127.0.0.1:8888/metrics"], capture_output=True, text=True, check=False).stdout
    records = shed = 0.0
    for line in text.splitlines():
        if line.startswith("runbom_kernel_records_total"):
            records += float(line.split()[-1])
        elif line.startswith("runbom_kernel_shed_total"):
            shed += float(line.split()[-1])
    return records, shed


def by_mapping(pid: int, binary: Path) -> dict[str, tuple[float, float]]:
    """(RSS, PSS) in MiB of each category of mapping (see the module's description)."""
    totals = {c: [0.0, 0.0] for c in CATEGORIES}
    binary_path = str(binary.resolve())
    category = None
    previous_guard = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            perms = head[1]
            name = head[5].strip() if len(head) == 6 else ""
            if "bpf-map" in name or "bpf_ringbuf" in name:
                category = "ring"
            elif name == binary_path or name.startswith(binary_path + " "):
                category = "binary"
            elif name == "[stack]" or (previous_guard and not name and perms.startswith("rw")):
                category = "stacks"
            elif name.startswith("/"):
                category = "libraries"
            else:
                category = "allocator"
            previous_guard = perms.startswith("---") and not name and end - start <= 64 * 1024
            continue
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss") and category:
            totals[category][0 if key == "Rss" else 1] += int(rest.split()[0]) / 1024
    return {c: (v[0], v[1]) for c, v in totals.items()}


def burst(path: Path, opens: int) -> None:
    """`opens` opens of one file as fast as this process goes: kernel records for runbom."""
    path.write_text("x")
    name = str(path)
    for _ in range(opens):
        os.close(os.open(name, os.O_RDONLY))


def measure(label: str, binary: Path, env: dict[str, str]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="runbom-idle-rss-"))
    log = open(work / "runbom.log", "wb")  # noqa: SIM115 (closed below)
    # Its own network namespace with loopback up: the embedded defaults' ports are fixed.
    argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" run "$@"',
            str(binary)] + (["--config", str(Path(CONFIG).resolve())] if CONFIG else [])
    proc = subprocess.Popen(argv, cwd=work, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        load = os.getloadavg()[0]
        started = time.monotonic()
        deadline = started + SETTLE
        burst_due = BURST > 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{label}: runbom exited ({proc.returncode}): "
                                 + (work / "runbom.log").read_text()[-2000:])
            if burst_due and time.monotonic() - started >= 5:
                burst_due = False
                burst(work / "burst", BURST)
            time.sleep(0.5)
        samples = []
        records0, shed0 = kernel_counters(proc.pid)
        began = time.monotonic()
        for _ in range(SAMPLE):
            samples.append(rollup(proc.pid))
            time.sleep(1)
        records1, shed1 = kernel_counters(proc.pid)
        took = time.monotonic() - began
        maps = by_mapping(proc.pid, binary)
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    median = {k: statistics.median(s[k] for s in samples) for k in ("Rss", "Pss", "Anonymous")}
    result = {
        "rss": median["Rss"],
        "pss": median["Pss"],
        "anon": median["Anonymous"],
        "rss_min": min(s["Rss"] for s in samples),
        "rss_max": max(s["Rss"] for s in samples),
        "load": load,
        "threads": threads,
        # What the machine's other processes made runbom do meanwhile: not idle when high.
        "records_per_s": (records1 - records0) / took,
        "shed_per_s": (shed1 - shed0) / took,
        "huge": statistics.median(s.get("AnonHugePages", 0.0) for s in samples),
    }
    for c, (rss, pss) in maps.items():
        result[f"{c}_rss"] = rss
        result[f"{c}_pss"] = pss
    # The ring counted once: RSS less the ring's second mapping.
    result["rss_ring_once"] = result["rss"] - result["ring_rss"] / 2
    say(f"{label}: RSS {result['rss']:.1f} MiB (samples {result['rss_min']:.1f}–"
        f"{result['rss_max']:.1f}), PSS {result['pss']:.1f}, ring once "
        f"{result['rss_ring_once']:.1f}, {threads} threads, kernel records "
        f"{result['records_per_s']:.0f}/s (shed {result['shed_per_s']:.0f}/s), anonymous huge pages "
        f"{result['huge']:.1f}, load {load:.1f}; by mapping (RSS/PSS): "
        + ", ".join(f"{c} {maps[c][0]:.1f}/{maps[c][1]:.1f}" for c in CATEGORIES))
    return result


def summary(label: str, runs: list[dict[str, float]]) -> list[str]:
    rows = []
    for key, what in [("rss", "RSS"), ("rss_ring_once", "RSS, ring counted once"),
                      ("pss", "PSS"), ("anon", "anonymous"),
                      ("records_per_s", "kernel records/s meanwhile")] + [
                          (f"{c}_rss", f"{c} (RSS)") for c in CATEGORIES]:
        values = [r[key] for r in runs]
        rows.append(f"| {label} | {what} | {statistics.median(values):.1f} | "
                    f"{min(values):.1f} | {max(values):.1f} |")
    return rows


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root (the eBPF probes)")
    binaries = [("this", RUNBOM, EXTRA_ENV)]
    if BASELINE:
        binaries.append(("baseline", Path(BASELINE), {}))
    for _, b, _ in binaries:
        if not b.is_file():
            raise SystemExit(f"{b}: no such binary (build with cargo build --release -p runbom)")
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in binaries}
    for round_no in range(ROUNDS):
        order = binaries if round_no % 2 == 0 else list(reversed(binaries))
        for label, binary, env in order:
            say(f"round {round_no + 1}/{ROUNDS}: {label} ({binary})")
            results[label].append(measure(label, binary, env))
    print(f"Idle memory, embedded defaults: {ROUNDS} rounds, settle {SETTLE:.0f} s, "
          f"{SAMPLE} samples; load average {min(r['load'] for rs in results.values() for r in rs):.1f}"
          f"–{max(r['load'] for rs in results.values() for r in rs):.1f}"
          + (f"; a burst of {BURST} opens 5 s after start" if BURST else ""))
    quiet = [i for i in range(ROUNDS)
             if all(runs[i]["records_per_s"] < QUIET for runs in results.values())]
    for title, rounds in [("every round", list(range(ROUNDS))),
                          (f"quiet rounds (< {QUIET:.0f} records/s): {len(quiet)}", quiet)]:
        print()
        print(f"{title}:")
        if not rounds:
            continue
        print()
        print("| binary | MiB (records/s) | median | min | max |")
        print("|---|---|---:|---:|---:|")
        chosen = {label: [runs[i] for i in rounds] for label, runs in results.items()}
        for label, runs in chosen.items():
            print("\n".join(summary(label, runs)))
        if BASELINE:
            print()
            for key, what in [("rss", "RSS"), ("rss_ring_once", "RSS, ring once"),
                              ("pss", "PSS"), ("anon", "anonymous")]:
                this = statistics.median(r[key] for r in chosen["this"])
                base = statistics.median(r[key] for r in chosen["baseline"])
                pairs = [t[key] / b[key] for t, b in zip(chosen["this"], chosen["baseline"])]
                print(f"{what}: this / baseline {this / base:.2f} (by round {min(pairs):.2f}–"
                      f"{max(pairs):.2f})")


if __name__ == "__main__":
    main()
