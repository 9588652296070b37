"""Sidecar mode (docs/sidecar.md): one node agent as root (the `ebpf` receiver with a `sidecars`
section) and two "pods", each a cgroup v2 directory holding two child cgroups as the kubelet lays
them out (`agent`, the agent's container, and `sidecar`), each pod's sidecar an unprivileged
`runbom run` (`node_agent` + `otlp` receivers, `correlate`, `aibom`, file exporter) under a uid
of its own, and each pod's reference agent (examples/agent/) in its `agent` cgroup (as root:
the test's Python environment is root's), sending its traces to its own sidecar.

Shown: each sidecar's export holds its own agent's injected run, correlated (kernel spans of the
agent's process under its spans) with its drift alert, and nothing of the other pod (no trace,
no process); the node agent's own export holds neither; a sidecar claiming the other pod's
cgroup, and a caller in no pod, get the node agent's error and exit non-zero; a sidecar killed
and restarted resumes with the events it missed counted (its log and /metrics). Then the
correlation accuracy suite of tests/test_reference_agent.py (every mode × scenario, with and
without thread.id, the same assertions) through pod A's sidecar.

    cargo build -p runbom && .venv/bin/pytest tests/test_sidecar.py   # root
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score_correlation as sc  # noqa: E402
import cgroup_pods  # noqa: E402
from cgroup_pods import in_cgroup  # noqa: E402
from ports import free_port  # noqa: E402
import test_reference_agent as ref  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "examples" / "agent"
RUNBOM = ref.RUNBOM
API_KEY = f"sk-test-{secrets.token_hex(20)}"
UIDS = {"a": 61001, "b": 61002}
BOM_PORTS = {"llm": 18443, "ticketing": 18080, "customers": 18081, "exfil": 18099}
# Events kept per pod while its sidecar is away: small, so that the restart test overflows it.
BACKLOG = 32


def cgroup2_mount() -> Path:
    mount = cgroup_pods.cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup v2 mount on this host")
    return mount


def wait_for(path: Path, text: bytes, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_bytes():
        assert proc.poll() is None, path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in {path}: " + path.read_text()[-3000:]
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(timeout=10)
    assert code == 0, f"exit {code}: {log.read_text()[-3000:]}"


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text: str, name: str) -> int:
    return sum(int(float(line.split()[-1])) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


@dataclass
class Pod:
    name: str
    uid: int
    dir: Path  # the pod's cgroup directory
    work: Path  # everything of this pod on disk, owned by its uid
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    truths: dict[tuple[str, str, bool], dict[str, Any]] = field(default_factory=dict)
    injected: dict[str, Any] | None = None
    # /proc/PID/status of the running sidecar.
    status: str = ""

    @property
    def export(self) -> Path:
        return self.work / "export"

    def config(self, claim: str = "") -> Path:
        claimed = f", pod_cgroup: {claim}" if claim else ""
        path = self.work / ("claim.yaml" if claim else "sidecar.yaml")
        path.write_text(f"""
receivers:
  node_agent: {{ socket: {self.work.parent / 'node-agent.sock'}{claimed} }}
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{self.grpc}" }}
      http: {{ endpoint: "127.0.0.1:{self.http}" }}
processors:
  correlate: {{ wait: {ref.WAIT_S}s }}
  aibom: {{ bom: {self.work / 'bom.cdx.json'}, wait: 1s }}
  batch: {{}}
exporters:
  file: {{ path: {self.export} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:{self.admin} }} }}
  pipelines:
    traces: {{ receivers: [otlp, node_agent], processors: [correlate, aibom, batch], exporters: [file] }}
    logs: {{ receivers: [otlp, node_agent, aibom], processors: [batch], exporters: [file] }}
""")
        return path

    def start_sidecar(self, log: str = "sidecar.log") -> Path:
        path = self.work / log
        with open(path, "wb") as out:
            self.proc = subprocess.Popen(
                in_cgroup(self.dir / "sidecar", self.uid, [str(RUNBOM), "run", "-c",
                                                          str(self.config())]),
                stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        wait_for(path, b"runbom is running", self.proc)
        self.status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return path

    def run_agent(self, mode: str, scenario: str, thread_id: bool,
                  ports: dict[str, int] | None = None) -> dict[str, Any]:
        """The reference agent in this pod's agent container; its ground truth."""
        truth = self.work / f"truth-{mode}-{scenario}-{ref.HELP[thread_id]}.json"
        protocol = ref.PROTOCOL[mode]
        port = self.grpc if protocol == "grpc" else self.http
        argv = [sys.executable, str(AGENT_DIR / "run.py"), "--mode", mode, "--scenario",
                scenario, "--work-dir", str(self.work / "agent"), "--ground-truth", str(truth),
                "--otlp-protocol", protocol, "--otlp-endpoint", f"http://127.0.0.1:{port}"]
        argv += [x for name, p in (ports or {}).items() for x in (f"--{name}-port", str(p))]
        argv += [] if ports else ["--any-ports"]
        argv += [] if thread_id else ["--no-thread-id"]
        env = {**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY, "HOME": str(self.work)}
        # As root: the test's Python environment lives where only root can read it. The
        # agent still sends its spans to its sidecar, which cannot look into its /proc, so the
        # agent's own process.pid stands (docs/sidecar.md).
        proc = subprocess.run(in_cgroup(self.dir / "agent", None, argv), env=env,
                              capture_output=True, text=True, timeout=120, cwd=self.work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(truth.read_text())


@dataclass
class Node:
    dir: Path
    cgroups: Path
    pods: dict[str, Pod]
    export: Path
    log: Path
    admin: int
    claim: subprocess.CompletedProcess[str]
    outsider: subprocess.CompletedProcess[str]
    restart_log: str
    restart_metrics: str


def spans_and_logs(export: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    spans = sc.load_spans(export) if (export / "traces.jsonl").exists() else []
    logs = []
    text = ""
    for name in ("traces.jsonl", "logs.jsonl"):
        if (export / name).exists():
            text += (export / name).read_text()
    if (export / "logs.jsonl").exists():
        for line in (export / "logs.jsonl").read_text().splitlines():
            for rl in json.loads(line).get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    logs.extend(sl.get("logRecords", []))
    return spans, logs, text


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("the node agent loads eBPF programs and the test makes cgroups: run as root")
    assert RUNBOM.is_file(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    mount = cgroup2_mount()
    top = f"runbom-test-{secrets.token_hex(4)}"
    base = Path(tempfile.mkdtemp(prefix="runbom-sidecar-"))
    base.chmod(0o755)
    try:
        yield run_node(mount, top, base)
    finally:
        # Deepest first; a cgroup still holding a process stays (and says so in the error).
        tree = mount / top
        dirs = [d for d in tree.rglob("*") if d.is_dir()] if tree.exists() else []
        for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True) + [tree]:
            if d.exists():
                d.rmdir()
        shutil.rmtree(base, ignore_errors=True)


def run_node(mount: Path, top: str, base: Path) -> Node:
    """Everything the tests look at: the node agent, both pods, the runs, the refusals and
    the restart, all stopped again."""
    cgroups = mount / top
    pods = {}
    for name, uid in UIDS.items():
        (cgroups / f"pod-{name}" / "agent").mkdir(parents=True)
        (cgroups / f"pod-{name}" / "sidecar").mkdir()
        work = base / f"pod-{name}"
        (work / "agent" / "data").mkdir(parents=True)
        pods[name] = Pod(name, uid, cgroups / f"pod-{name}", work)
    admin, export, log = free_port(), base / "node-export", base / "node.log"
    includes = ", ".join(f'"{p.work}/agent/data/"' for p in pods.values())
    (base / "node.yaml").write_text(f"""
receivers:
  ebpf:
    file: {{ include: [{includes}] }}
    sidecars:
      socket: {base / 'node-agent.sock'}
      pod_cgroup_roots: ["/{top}"]
      cgroup_mount: {mount}
      backlog_events: {BACKLOG}
exporters:
  file: {{ path: {export} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:{admin} }} }}
  pipelines:
    traces: {{ receivers: [ebpf], exporters: [file] }}
    logs: {{ receivers: [ebpf], exporters: [file] }}
""")
    with open(log, "wb") as out:
        agent = subprocess.Popen([str(RUNBOM), "run", "-c", str(base / "node.yaml")],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=base)
    try:
        wait_for(log, b"runbom is running", agent)
        for pod in pods.values():
            ports = {name: free_port() for name in BOM_PORTS}
            bom = (AGENT_DIR / "bom.cdx.json").read_text()
            for name, port in ports.items():
                bom = bom.replace(f"127.0.0.1:{BOM_PORTS[name]}", f"127.0.0.1:{port}")
            (pod.work / "bom.cdx.json").write_text(bom)
            shutil.chown(pod.work, pod.uid, pod.uid)
            for p in pod.work.rglob("*"):
                shutil.chown(p, pod.uid, pod.uid)
            pod.start_sidecar()
            pod.injected = pod.run_agent("sequential", "injected", True, ports)
        # Pod A: the correlation accuracy suite, through its sidecar.
        a = pods["a"]
        for mode, scenario, thread_id in ref.ACCURACY:
            a.truths[mode, scenario, thread_id] = a.run_agent(mode, scenario, thread_id)

        # Claims and outsiders are refused.
        b_dir = f"/{top}/pod-b"
        claim = subprocess.run(in_cgroup(a.dir / "sidecar", a.uid, [
            str(RUNBOM), "run", "-c", str(a.config(claim=b_dir))]),
            capture_output=True, text=True, timeout=60, cwd=a.work)
        outsider = subprocess.run(
            ["setpriv", f"--reuid={a.uid}", f"--regid={a.uid}", "--clear-groups",
             str(RUNBOM), "run", "-c", str(a.config(claim=b_dir))],
            capture_output=True, text=True, timeout=60, cwd=a.work)

        # Pod B's sidecar killed; its agent container works on; the sidecar comes back.
        b = pods["b"]
        assert b.proc is not None
        b.proc.kill()
        b.proc.wait(10)
        subprocess.run(in_cgroup(b.dir / "agent", b.uid, [
            "/bin/sh", "-c", "for i in $(seq 1 60); do /bin/true while-away-$i; done"]),
            check=True, timeout=60)
        restart = b.start_sidecar("sidecar-restarted.log")
        deadline = time.monotonic() + 30
        while b"were missed" not in restart.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        restart_metrics = metrics(b.admin)
        time.sleep(ref.WAIT_S + 2)  # every event held by the correlators leaves in its own time
        for pod in pods.values():
            assert pod.proc is not None
            stop(pod.proc, pod.work / "sidecar.log")
        node = Node(base, cgroups, pods, export, log, admin, claim, outsider,
                    restart.read_text(), restart_metrics)
    finally:
        for pod in pods.values():
            if pod.proc is not None and pod.proc.poll() is None:
                pod.proc.kill()
        stop(agent, log)
    return node


def trace_ids(truth: dict[str, Any]) -> set[str]:
    return {c["trace_id"] for c in truth["conversations"]}


def test_each_sidecar_has_its_own_agents_correlated_trace_and_alert(node: Node) -> None:
    for pod in node.pods.values():
        truth = pod.injected
        assert truth is not None
        spans, logs, _ = spans_and_logs(pod.export)
        mine = trace_ids(truth)
        kernel = [s for s in spans if s["trace_id"] in mine and "runbom.event" in s["attrs"]
                  and s["attrs"].get("process.pid") == truth["agent"]["pid"]]
        kinds = {s["attrs"]["runbom.event"] for s in kernel}
        assert {"http.request", "file.open", "net.connect"} <= kinds, (pod.name, kinds)
        result = sc.score(spans, truth, ref.SLACK_NS)
        assert result["failures"] == [], sc.report(result)
        (want,) = truth["expected_drift"]
        alerts = [r for r in logs if r.get("eventName") == "aibom.drift"
                  and (r.get("traceId"), r.get("spanId")) == (want["trace_id"], want["span_id"])]
        assert len(alerts) == 1, (pod.name, [r.get("traceId") for r in logs
                                             if r.get("eventName") == "aibom.drift"])


def test_no_sidecar_has_anything_of_the_other_pod(node: Node) -> None:
    for name, pod in node.pods.items():
        other = node.pods["b" if name == "a" else "a"]
        spans, logs, text = spans_and_logs(pod.export)
        theirs = set().union(*(trace_ids(t) for t in [other.injected, *other.truths.values()]))
        assert not [s for s in spans if s["trace_id"] in theirs]
        assert str(other.work) not in text, f"pod {name}'s export names pod {other.name}'s files"
        pids = {s["attrs"].get("process.pid") for s in spans if "runbom.event" in s["attrs"]}
        assert other.injected is not None and other.injected["agent"]["pid"] not in pids
        if name == "a":
            assert "while-away" not in text


def test_the_node_agent_exports_nothing_of_the_pods(node: Node) -> None:
    _, _, text = spans_and_logs(node.export)
    for pod in node.pods.values():
        assert pod.injected is not None
        assert str(pod.work / "agent" / "data") not in text, pod.name


def test_sidecars_ran_unprivileged(node: Node) -> None:
    for pod in node.pods.values():
        status = dict(line.split(":", 1) for line in pod.status.splitlines() if ":" in line)
        assert status["Name"].strip() == "runbom"
        assert status["Uid"].split() == [str(pod.uid)] * 4
        for caps in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(status[caps], 16) == 0, (pod.name, caps, status[caps])


def test_claiming_another_pod_or_no_pod_is_refused(node: Node) -> None:
    assert node.claim.returncode != 0
    assert "refused this sidecar" in node.claim.stderr
    assert "asked for pod cgroup" in node.claim.stderr and "/pod-b" in node.claim.stderr
    assert node.outsider.returncode != 0
    assert "not in a container of a pod" in node.outsider.stderr, node.outsider.stderr


def test_a_restarted_sidecar_resumes_with_the_gap_counted(node: Node) -> None:
    assert "were missed" in node.restart_log, node.restart_log[-2000:]
    missed = metric(node.restart_metrics, "runbom_node_agent_stream_missed_total")
    # 60 execs (and their exits) while away; the backlog gave back what it held.
    assert missed >= 120 - BACKLOG, node.restart_metrics
    assert metric(node.restart_metrics, "runbom_node_agent_stream_events_total") >= BACKLOG
    _, _, text = spans_and_logs(node.pods["b"].export)
    assert "while-away-60" in text  # the backlog's events arrived after the restart


@pytest.fixture(scope="module")
def scores(node: Node) -> dict[tuple[str, str, bool], dict[str, Any]]:
    spans = sc.load_spans(node.pods["a"].export)
    return {key: sc.score(spans, truth, ref.SLACK_NS, min_recall=ref.MIN_RECALL[key[0]])
            for key, truth in node.pods["a"].truths.items()}


@pytest.mark.parametrize(("mode", "scenario"), ref.ALL, ids=ref.IDS)
def test_accuracy_through_a_sidecar_with_thread_id(scores: dict[tuple[str, str, bool], Any],
                                                    mode: str, scenario: str) -> None:
    ref.test_accuracy_with_thread_id(scores, mode, scenario)


@pytest.mark.parametrize(("mode", "scenario"), ref.ALL, ids=ref.IDS)
def test_accuracy_through_a_sidecar_without_help(scores: dict[tuple[str, str, bool], Any],
                                                 mode: str, scenario: str) -> None:
    ref.test_accuracy_without_help(scores, mode, scenario)


def test_accuracy_table_through_a_sidecar(scores: dict[tuple[str, str, bool], Any],
                                          node: Node) -> None:
    """The same table as the single process's (printed), and the gap the restart counted."""
    table = sc.table(list(scores.values()))
    print(table)
    print("restarted sidecar:", [line for line in node.restart_log.splitlines()
                                 if "were missed" in line])
    assert table.count("**all**") == 6
