#!/usr/bin/env python3
"""Sidecar mode's cost (docs/benchmarks.md, "Sidecar mode"): kernel events per CPU-second
through node agent → sidecar against the single process, in the same run; and the node agent's
added memory per subscribed sidecar.

Throughput: ROUNDS rounds, each running both conditions in turn (the order alternates):
- single: one `runbom run` (ebpf + otlp receivers, correlate, aibom, batch, nop exporter);
- split: the node agent (`ebpf` with `sidecars`, nop exporter) and one unprivileged sidecar
  (`node_agent` + otlp receivers, the same processors and exporter) in a pod cgroup.
The workload runs in the pod's agent cgroup: OPENS opens of a file under the watched directory
(one `file.open` event each). Cost: user + system CPU time of every runbom process of the
condition (from /proc/PID/stat) from just before the workload until they are idle again, so
events per CPU-second = events / that CPU time. The kernel's drop counters and the sidecar's
missed count are read too: a round that lost events says so.

Memory: one node agent; its RSS (VmRSS) with no sidecar, then with 1, 2, 4 and 8 subscribed
sidecars (each its own pod, its own uid), each pod's backlog filled by a workload (the steady
state's worst case), after the same workload without sidecars for the baseline.

    sudo .venv/bin/python scripts/bench_sidecar.py            # ROUNDS=3 OPENS=100000
    RUNBOM_BIN=target/release/runbom (default: $CARGO_TARGET_DIR or target, release)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import cgroup_pods  # noqa: E402
from cgroup_pods import in_cgroup  # noqa: E402
from ports import free_port  # noqa: E402

RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "runbom")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
OPENS = int(os.environ.get("OPENS", "100000"))
SIDECARS = [1, 2, 4, 8]
SENT = "runbom_exporter_sent_items_total"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def say(msg: str) -> None:
    print(f"[bench-sidecar] {msg}", file=sys.stderr, flush=True)


def cgroup2_mount() -> Path:
    mount = cgroup_pods.cgroup2_mount()
    if mount is None:
        raise SystemExit("no cgroup v2 mount")
    return mount


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(int(float(line.split()[-1])) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


class Bench:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="runbom-bench-sidecar-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.data.mkdir()
        (self.data / "f").write_text("x")
        self.mount = cgroup2_mount()
        self.top = f"runbom-bench-{secrets.token_hex(4)}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pods: list[Path] = []

    def pod(self, n: int) -> Path:
        d = self.mount / self.top / f"pod-{n}"
        if not d.exists():
            (d / "agent").mkdir(parents=True)
            (d / "sidecar").mkdir()
            self.pods.append(d)
        return d

    def start(self, name: str, config: str, argv_prefix: list[str] | None = None,
              cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
        admin = free_port()
        path = self.base / f"{name}.yaml"
        path.write_text(config.replace("ADMIN", str(admin)))
        log = self.base / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*(argv_prefix or []), str(RUNBOM), "run", "-c", str(path)],
                                    stdout=out, stderr=subprocess.STDOUT, cwd=cwd or self.base)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while b"runbom is running" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        return proc, admin

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self.procs.remove(proc)

    def in_pod(self, pod: Path, child: str, uid: int | None, argv: list[str]) -> list[str]:
        return in_cgroup(pod / child, uid, argv)

    def workload(self, pod: Path, opens: int) -> None:
        code = (f"import os\np={str(self.data / 'f')!r}\n"
                f"for _ in range({opens}): os.close(os.open(p, os.O_RDONLY))\n")
        subprocess.run(self.in_pod(pod, "agent", None, [sys.executable, "-c", code]),
                       check=True, timeout=600)

    def node_config(self, sidecars: bool) -> str:
        serve = (f"\n    sidecars: {{ socket: {self.base / 'node-agent.sock'}, "
                 f'pod_cgroup_roots: ["/{self.top}"], cgroup_mount: {self.mount} }}'
                 if sidecars else "")
        processors = "" if sidecars else "[correlate, aibom, batch]"
        receivers = "[ebpf]" if sidecars else "[otlp, ebpf]"
        logs = "[ebpf]" if sidecars else "[otlp, ebpf, aibom]"
        return f"""
receivers:
  ebpf:
    file: {{ include: ["{self.data}/"] }}{serve}
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{free_port()}" }} }} }}
processors:
  correlate: {{ wait: 1s }}
  aibom: {{ bom: builtin:reference-agent }}
  batch: {{}}
exporters:
  nop: {{}}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:ADMIN" }} }}
  pipelines:
    traces: {{ receivers: {receivers}, processors: {processors or '[batch]'}, exporters: [nop] }}
    logs: {{ receivers: {logs}, processors: [batch], exporters: [nop] }}
"""

    def sidecar_config(self) -> str:
        return f"""
receivers:
  node_agent: {{ socket: {self.base / 'node-agent.sock'} }}
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{free_port()}" }} }} }}
processors:
  correlate: {{ wait: 1s }}
  aibom: {{ bom: builtin:reference-agent }}
  batch: {{}}
exporters:
  nop: {{}}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:ADMIN" }} }}
  pipelines:
    traces: {{ receivers: [otlp, node_agent], processors: [correlate, aibom, batch], exporters: [nop] }}
    logs: {{ receivers: [otlp, node_agent, aibom], processors: [batch], exporters: [nop] }}
"""

    def start_sidecar(self, n: int) -> tuple[subprocess.Popen[bytes], int]:
        pod = self.pod(n)
        uid = 62000 + n
        return self.start(f"sidecar-{n}", self.sidecar_config(),
                          self.in_pod(pod, "sidecar", uid, []), cwd=self.base)

    def measure(self, pids: list[int], pod: Path, admin: int) -> float:
        """CPU seconds `pids` spend on the workload: from just before it until everything it
        caused was exported (the exporter's count and the CPU time both still for 2 s; the
        correlator holds events for its `wait` first)."""
        before = sum(cpu_seconds(p) for p in pids)
        self.workload(pod, OPENS)
        state = (sum(cpu_seconds(p) for p in pids), metric(admin, SENT))
        still_since = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = (sum(cpu_seconds(p) for p in pids), metric(admin, SENT))
            # Still: nothing more exported and less than 2% of a CPU over the half second.
            if now[1] != state[1] or now[0] - state[0] > 0.01:
                still_since = time.monotonic()
            elif time.monotonic() - still_since > 2:
                break
            state = now
        return state[0] - before

    def single(self) -> tuple[float, int]:
        proc, admin = self.start("single", self.node_config(False))
        try:
            cpu = self.measure([proc.pid], self.pod(0), admin)
            drops = metric(admin, "runbom_kernel_ring_full_drops_total")
        finally:
            self.stop(proc)
        return cpu, drops

    def split(self) -> tuple[float, float, int, int]:
        node, admin = self.start("node", self.node_config(True))
        side, side_admin = self.start_sidecar(0)
        try:
            cpu_node = cpu_seconds(node.pid)
            cpu = self.measure([node.pid, side.pid], self.pod(0), side_admin)
            cpu_node = cpu_seconds(node.pid) - cpu_node
            drops = metric(admin, "runbom_kernel_ring_full_drops_total")
            missed = metric(side_admin, "runbom_node_agent_stream_missed_total")
        finally:
            self.stop(side)
            self.stop(node)
        return cpu, cpu_node, drops, missed

    def memory(self) -> list[tuple[int, float]]:
        node, _ = self.start("node-mem", self.node_config(True))
        rows = []
        try:
            self.workload(self.pod(100), 20000)
            time.sleep(2)
            rows.append((0, rss_mib(node.pid)))
            side = []
            for k in SIDECARS:
                while len(side) < k:
                    n = 100 + len(side) + 1
                    side.append(self.start_sidecar(n)[0])
                    self.workload(self.pod(n), 20000)
                time.sleep(2)
                rows.append((k, rss_mib(node.pid)))
            for p in side:
                self.stop(p)
        finally:
            self.stop(node)
        return rows

    def cleanup(self) -> None:
        for p in list(self.procs):
            p.kill()
            p.wait(10)
        time.sleep(0.5)
        for pod in self.pods:
            for child in ("agent", "sidecar"):
                (pod / child).rmdir()
            pod.rmdir()
        if (self.mount / self.top).exists():
            (self.mount / self.top).rmdir()
        shutil.rmtree(self.base, ignore_errors=True)


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the node agent loads eBPF programs")
    if not RUNBOM.is_file():
        raise SystemExit(f"{RUNBOM} missing: cargo build --release -p runbom (or RUNBOM_BIN)")
    b = Bench()
    try:
        rates: dict[str, list[float]] = {"single": [], "split": []}
        ratios = []
        say(f"{ROUNDS} rounds of {OPENS} opens per condition; load {os.getloadavg()[0]:.1f}")
        for r in range(ROUNDS):
            order = ["single", "split"] if r % 2 == 0 else ["split", "single"]
            got = {}
            for cond in order:
                if cond == "single":
                    cpu, drops = b.single()
                    say(f"round {r + 1} single: {cpu:.2f} CPU-s, ring drops {drops}")
                else:
                    cpu, cpu_node, drops, missed = b.split()
                    say(f"round {r + 1} split: {cpu:.2f} CPU-s (node agent {cpu_node:.2f}), "
                        f"ring drops {drops}, sidecar missed {missed}")
                got[cond] = OPENS / cpu
                rates[cond].append(OPENS / cpu)
            ratios.append(got["split"] / got["single"])
        mem = b.memory()
    finally:
        b.cleanup()
    print("| condition | kernel events per CPU-second, by round | median |")
    print("|---|---|---:|")
    for cond, rs in rates.items():
        print(f"| {cond} | {' / '.join(f'{x / 1000:.1f} k' for x in rs)} | "
              f"{statistics.median(rs) / 1000:.1f} k |")
    print(f"\nsplit / single, paired by round: {' / '.join(f'{x:.2f}' for x in ratios)} "
          f"(median {statistics.median(ratios):.2f}); load average {os.getloadavg()[0]:.1f}\n")
    print("| subscribed sidecars | node agent VmRSS (MiB) | added per sidecar (MiB) |")
    print("|---:|---:|---:|")
    base = mem[0][1]
    for k, rss in mem:
        per = f"{(rss - base) / k:.1f}" if k else "–"
        print(f"| {k} | {rss:.1f} | {per} |")


if __name__ == "__main__":
    main()
