#!/usr/bin/env python3
"""What a persistent sending queue (`sending_queue.storage`) costs and how fast it drains.

    .venv/bin/python scripts/bench_persistent_queue.py     # ROUNDS=2 DURATION=5 DRAIN=2000

Conditions, each a `runbom run` with one OTLP/gRPC receiver fed by tests/otlp_load.py
(2 threads, 20 GenAI-shaped spans a request), its exporter sending to a second runbom (the
downstream: OTLP/gRPC receiver, `nop` exporter):

- `nop`: no exporter queue at all (the `nop` exporter), the baseline;
- `memory`: `otlp` exporter with the in-memory queue;
- `persistent/1`, `persistent/10`: `otlp` exporter with a `file_storage` queue (`fsync: false`),
  `num_consumers` 1 and 10.

Acknowledged requests/s: what the receiver answered OK in DURATION seconds, downstream up.
Drain requests/s (persistent only): DRAIN requests are queued with the downstream down, then
the downstream comes up and the time from its being ready until
`runbom_exporter_persistent_queue_size` is 0 is taken (it includes the exporter's reconnect:
retries back off up to 200 ms). Rounds alternate the conditions; every figure is printed per round.

RUNBOM_BIN (default: $CARGO_TARGET_DIR/debug/runbom, or target/debug/runbom).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "runbom")
ROUNDS = int(os.environ.get("ROUNDS", "2"))
DURATION = float(os.environ.get("DURATION", "5"))
DRAIN = int(os.environ.get("DRAIN", "2000"))
PYTHON = sys.executable
LOAD = ROOT / "tests" / "otlp_load.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> int | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = [int(float(line.split()[-1])) for line in text.splitlines()
              if line.startswith(name + "{") or line.startswith(name + " ")]
    return sum(values) if values else None


class Runbom:
    def __init__(self, base: Path, name: str, config: str) -> None:
        self.admin = free_port()
        path = base / f"{name}.yaml"
        path.write_text(config.replace("ADMIN", str(self.admin)))
        self.log = base / f"{name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(RUNBOM), "run", "-c", str(path)], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=base)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def receiver_config(grpc: int, exporter: str, queue_dir: Path | None = None) -> str:
    extensions = ""
    service_ext = ""
    if queue_dir is not None:
        extensions = (f"extensions:\n  file_storage:\n    directory: {queue_dir}\n"
                      "    create_directory: true\n")
        service_ext = "  extensions: [file_storage]\n"
    return (f"{extensions}receivers:\n  otlp:\n    protocols:\n      grpc:\n"
            f"        endpoint: 127.0.0.1:{grpc}\n{exporter}"
            f"service:\n{service_ext}  telemetry:\n    metrics:\n      address: 127.0.0.1:ADMIN\n"
            "  pipelines:\n    traces: { receivers: [otlp], exporters: [out] }\n")


def otlp_exporter(downstream: int, consumers: int | None) -> str:
    queue = ("" if consumers is None else
             f"    sending_queue: {{ storage: file_storage, num_consumers: {consumers} }}\n")
    return (f"exporters:\n  otlp/out:\n    endpoint: 127.0.0.1:{downstream}\n"
            "    tls: { insecure: true }\n"
            "    retry_on_failure: { initial_interval: 50ms, max_interval: 200ms }\n"
            f"{queue}").replace("exporters: [out]", "exporters: [otlp/out]")


def load(grpc: int, *args: str) -> dict:
    out = subprocess.run([PYTHON, str(LOAD), "--grpc", f"127.0.0.1:{grpc}", "--threads", "2",
                          "--spans", "20", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def condition(base: Path, name: str, downstream: int) -> tuple[str, Path | None]:
    grpc = free_port()
    if name == "nop":
        cfg = receiver_config(grpc, "exporters:\n  nop: {}\n").replace("[out]", "[nop]")
        return cfg, None
    consumers = None if name == "memory" else int(name.split("/")[1])
    queue = None if consumers is None else base / f"queue-{name.replace('/', '-')}"
    if queue is not None and queue.exists():
        shutil.rmtree(queue)
    cfg = receiver_config(grpc, otlp_exporter(downstream, consumers), queue)
    return cfg.replace("exporters: [out]", "exporters: [otlp/out]"), queue


def grpc_port(config: str) -> int:
    return int(config.split("endpoint: 127.0.0.1:")[1].split("\n")[0])


def acknowledged(base: Path, name: str) -> float:
    downstream_port = free_port()
    down = Runbom(base, "downstream", receiver_config(downstream_port, "exporters:\n  nop: {}\n")
                  .replace("[out]", "[nop]"))
    config, _ = condition(base, name, downstream_port)
    runbom = Runbom(base, name.replace("/", "-"), config)
    try:
        summary = load(grpc_port(config), "--duration", str(DURATION))
    finally:
        runbom.stop()
        down.stop()
    return summary["ok"] / DURATION


def drain(base: Path, name: str) -> float:
    downstream_port = free_port()
    config, _ = condition(base, name, downstream_port)
    runbom = Runbom(base, name.replace("/", "-"), config)
    try:
        summary = load(grpc_port(config), "--requests", str(DRAIN), "--duration", "120")
        assert summary["ok"] == DRAIN, summary
        queued = metric(runbom.admin, "runbom_exporter_persistent_queue_size")
        assert queued == DRAIN * 20, queued
        down = Runbom(base, "downstream", receiver_config(
            downstream_port, "exporters:\n  nop: {}\n").replace("[out]", "[nop]"))
        started = time.monotonic()
        try:
            while metric(runbom.admin, "runbom_exporter_persistent_queue_size") != 0:
                if time.monotonic() - started > 300:
                    raise SystemExit(f"{name}: not drained in 300 s")
                time.sleep(0.02)
            took = time.monotonic() - started
        finally:
            down.stop()
    finally:
        runbom.stop()
    return DRAIN / took


def main() -> None:
    if not RUNBOM.exists():
        raise SystemExit(f"{RUNBOM} missing: cargo build -p runbom (or RUNBOM_BIN)")
    base = Path(tempfile.mkdtemp(prefix="runbom-bench-queue-"))
    names = ["nop", "memory", "persistent/1", "persistent/10"]
    results: dict[str, list[float]] = {}
    drains: dict[str, list[float]] = {}
    try:
        for r in range(ROUNDS):
            order = names if r % 2 == 0 else list(reversed(names))
            for name in order:
                results.setdefault(name, []).append(acknowledged(base, name))
                print(f"round {r + 1} {name}: {results[name][-1]:.0f} acknowledged/s",
                      file=sys.stderr, flush=True)
            for name in (["persistent/1", "persistent/10"] if r % 2 == 0
                         else ["persistent/10", "persistent/1"]):
                drains.setdefault(name, []).append(drain(base, name))
                print(f"round {r + 1} {name}: drained {drains[name][-1]:.0f}/s",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| condition | acknowledged requests/s (per round) | vs `nop` (per round) "
          "| drain requests/s (per round) |")
    print("|---|---|---|---|")
    for name in names:
        acks = results[name]
        ratios = [a / n for a, n in zip(acks, results["nop"])]
        d = ", ".join(f"{x:.0f}" for x in drains.get(name, [])) or "–"
        print(f"| `{name}` | {', '.join(f'{a:.0f}' for a in acks)} "
              f"| {', '.join(f'{x:.2f}' for x in ratios)} | {d} |")


if __name__ == "__main__":
    main()
