"""The Helm chart (helm/runbom) through the real Helm engine, validated against Kubernetes.

Helm is PyPI's `helm-python-sdk` (Helm v4's Go SDK as a library: `helm lint` and offline
`helm template`, no cluster, no helm binary). For the default values and a matrix (Tempo,
Jaeger, a BOM from values, an existing BOM ConfigMap, the builtin BOM, PodMonitor, ServiceMonitor,
monitors off, the two-tier node agent, every privilege option) the chart must:

- lint clean (strict: warnings fail) for Kubernetes 1.29 to 1.33;
- render, and every manifest validate with PyPI `kubernetes-validate`, strict (unknown fields
  fail), against the schemas of 1.29, 1.30, 1.31, 1.32 and 1.33 that the package ships. The
  Prometheus Operator's PodMonitor/ServiceMonitor are not in those schemas: they are validated
  against tests/schemas/prometheus-operator-v1.json, the CRDs' own openAPIV3Schema (strict);
- render a runbom configuration that `runbom validate` accepts (the binary the other tests use:
  $RUNBOM_BIN, or $CARGO_TARGET_DIR/debug/runbom, or target/debug/runbom);
- and say what it promises: the capabilities, mounts, RBAC, Service policy, probes;
- and, as root, the rendered configuration runs: runbom starts on it with the real probes and
  answers the chart's probe paths on POD_IP:adminPort and OTLP on the Service's ports.

    cargo build -p runbom && .venv/bin/python -m pytest -q tests/test_helm.py
"""
from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "runbom"
EXAMPLES = CHART / "examples"
BOM = ROOT / "examples" / "agent" / "bom.cdx.json"
RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "runbom")
KUBE_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]
RELEASE, NAMESPACE = "rb", "runbom"
CRD_SCHEMAS = json.loads((Path(__file__).parent / "schemas" / "prometheus-operator-v1.json")
                         .read_text())["schemas"]

# kubernetes-validate re-reads its (large) schema files on every call; they never change.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()) or {}


def with_inline_bom(values: dict[str, Any]) -> dict[str, Any]:
    values.setdefault("aibom", {}).setdefault("bom", {})["inline"] = BOM.read_text()
    return values


MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tempo": example("tempo"),
    "jaeger+inline-bom": with_inline_bom(example("jaeger")),
    "existing-bom-configmap": example("existing-bom"),
    "per-workload-boms": {"aibom": {"bom": {"configMaps": ["support-agent-bom", "billing-agent-bom"]}}},
    "no-k8sattributes": {"config": {"k8sattributes": {"enabled": False}}},
    "podmonitor": example("monitors"),
    "servicemonitor": {"monitoring": {"serviceMonitor": {"enabled": True, "interval": "15s"}}},
    "monitors-off": {"monitoring": {"podMonitor": {"enabled": False},
                                    "serviceMonitor": {"enabled": False}}},
    "two-tier-node": example("two-tier-node"),
    "sidecar-mode": example("sidecar-mode"),
    "collector-http+extra-exporter": {
        "exporters": {"collector": {"enabled": True, "protocol": "http",
                                    "endpoint": "http://otel-collector.observability.svc:4318",
                                    "settings": {"compression": "gzip", "timeout": "5s"}},
                      "extra": {"file/local": {"signals": ["logs"],
                                               "config": {"path": "/var/lib/runbom/out"}}}},
        "config": {"correlate": {"settings": {"wait": "3s"}},
                   "extra": {"receivers": {"ebpf": {"http": {"openssl": False}}}}},
    },
    "all-privilege-options+hostnetwork": {
        "privileges": {"sysResource": True, "sysAdmin": True, "sysPtrace": False,
                       "seccompProfile": "RuntimeDefault"},
        "hostNetwork": True, "image": {"digest": "sha256:" + "ab" * 32},
        "serviceAccount": {"create": False, "name": "node-agents"}, "rbac": {"create": False},
        "aibom": {"bom": {"builtin": "reference-agent"}},
    },
}


@functools.lru_cache(maxsize=None)
def _render(case: str) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(MATRIX[case], name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(case: str) -> dict[str, str]:
    return _render(case)


def manifests(case: str) -> list[dict[str, Any]]:
    docs = []
    for path, text in render(case).items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def one(case: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in manifests(case) if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{case}: {len(found)} {kind} {name or ''}"
    return found[0]


def kinds(case: str) -> list[str]:
    return sorted(d["kind"] for d in manifests(case))


# --- helm lint -------------------------------------------------------------------------------

@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("case", MATRIX)
def test_helm_lint_strict(case: str, kube: str) -> None:
    report = helm.lint(str(CHART), MATRIX[case], strict=True, namespace=NAMESPACE,
                       kube_version=f"v{kube}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], json.dumps(report, indent=1)


# --- every manifest against the Kubernetes schemas ------------------------------------------

@pytest.mark.parametrize("case", MATRIX)
def test_every_manifest_validates_strictly_on_kubernetes_1_29_to_1_33(case: str) -> None:
    shipped = {kubernetes_validate.utils.major_minor(v)
               for v in kubernetes_validate.utils.all_versions()}
    assert set(KUBE_VERSIONS) <= shipped, f"kubernetes-validate ships {sorted(shipped)}"
    docs = manifests(case)
    assert docs
    for doc in docs:
        what = f"{case}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            # Not a built-in kind: kubernetes-validate has no schema for it (it would only warn).
            try:
                jsonschema.Draft7Validator(CRD_SCHEMAS[doc["kind"]]).validate(doc)
            except jsonschema.ValidationError as e:
                pytest.fail(f"{what}: {'.'.join(map(str, e.path))}: {e.message}")
            continue
        for kube in KUBE_VERSIONS:
            try:
                got = kubernetes_validate.validate(doc, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{what} on {kube}: {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                pytest.fail(f"{what} on {kube}: {e.message}")
            assert got == kube, f"{what}: validated against {got}, not {kube}"


def test_the_validation_would_catch_mistakes() -> None:
    ds = one("defaults", "DaemonSet")
    bad = json.loads(json.dumps(ds))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitie"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.29", strict=True)
    pm = one("podmonitor", "PodMonitor")
    bad = json.loads(json.dumps(pm))
    bad["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(CRD_SCHEMAS["PodMonitor"]).validate(bad)
    bad = json.loads(json.dumps(pm))
    bad["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(CRD_SCHEMAS["PodMonitor"]).validate(bad)


# --- the runbom configuration the ConfigMap carries -----------------------------------------

@pytest.mark.parametrize("case", MATRIX)
def test_runbom_validate_accepts_the_rendered_configuration(case: str, tmp_path: Path) -> None:
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    config = one(case, "ConfigMap", f"{RELEASE}-runbom")["data"]["runbom.yaml"]
    # In the pod the BOM is mounted at /etc/runbom/bom/bom.cdx.json: here, the same file.
    boms = [d for d in manifests(case) if d["kind"] == "ConfigMap"
            and d["metadata"]["name"] == f"{RELEASE}-runbom-bom"]
    bom = tmp_path / "bom.cdx.json"
    bom.write_text(boms[0]["data"]["bom.cdx.json"] if boms else BOM.read_text())
    # Per-workload BOMs: a directory of ConfigMap directories, as the pod mounts them.
    (tmp_path / "boms" / "support-agent-bom").mkdir(parents=True)
    (tmp_path / "boms" / "support-agent-bom" / "bom.cdx.json").write_text(BOM.read_text())
    (tmp_path / "runbom.yaml").write_text(
        config.replace("/etc/runbom/bom/bom.cdx.json", str(bom))
        .replace("/etc/runbom/boms", str(tmp_path / "boms")))
    # NODE_NAME: the Downward API's spec.nodeName, as the DaemonSet sets it.
    run = subprocess.run([str(RUNBOM), "validate", "--config", str(tmp_path / "runbom.yaml")],
                         env={**os.environ, "POD_IP": "10.0.0.7", "NODE_NAME": "node-1"},
                         capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, f"{config}\n{run.stdout}{run.stderr}"
    assert "configuration is valid" in run.stdout + run.stderr


def test_rendered_pipelines() -> None:
    def cfg(case: str) -> dict[str, Any]:
        return yaml.safe_load(one(case, "ConfigMap", f"{RELEASE}-runbom")["data"]["runbom.yaml"])

    c = cfg("defaults")
    assert c["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert c["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert c["service"]["telemetry"]["metrics"]["address"] == "${env:POD_IP}:8888"
    assert "aibom" not in c["processors"]  # no BOM given: not judged
    assert c["service"]["pipelines"]["traces"] == {
        "receivers": ["otlp", "ebpf"],
        "processors": ["memory_limiter", "correlate", "k8sattributes", "batch"],
        "exporters": ["debug"]}
    # Pods named on every span and log: this node's pods, with the pod's service account.
    assert c["processors"]["k8sattributes"] == {
        "auth_type": "serviceAccount", "filter": {"node_from_env_var": "NODE_NAME"}}
    assert c["service"]["pipelines"]["logs"]["processors"] == [
        "memory_limiter", "k8sattributes", "batch"]
    c = cfg("no-k8sattributes")
    assert "k8sattributes" not in c["processors"]
    assert c["service"]["pipelines"]["logs"]["processors"] == ["memory_limiter", "batch"]
    c = cfg("per-workload-boms")
    assert c["processors"]["aibom"] == {"bom": "/etc/runbom/boms"}
    c = cfg("tempo")
    assert c["processors"]["aibom"] == {"bom": "builtin:reference-agent"}
    assert c["service"]["pipelines"]["traces"]["processors"] == [
        "memory_limiter", "correlate", "k8sattributes", "aibom", "batch"]
    assert c["service"]["pipelines"]["traces"]["exporters"] == ["otlp/tempo"]
    assert c["service"]["pipelines"]["logs"]["receivers"] == ["otlp", "ebpf", "aibom"]
    assert c["exporters"]["otlp/tempo"]["tls"] == {"insecure": True}
    c = cfg("jaeger+inline-bom")
    assert c["processors"]["aibom"]["bom"] == "/etc/runbom/bom/bom.cdx.json"
    assert c["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
    assert c["service"]["pipelines"]["logs"]["exporters"] == ["otlphttp/collector"]
    assert "tls" not in c["exporters"]["otlphttp/collector"]
    c = cfg("existing-bom-configmap")
    assert c["processors"]["aibom"]["baseline"]["path"] == "/var/lib/runbom/baseline.json"
    c = cfg("collector-http+extra-exporter")
    assert c["receivers"]["ebpf"] == {"http": {"openssl": False}}
    assert c["service"]["pipelines"]["logs"]["exporters"] == ["file/local", "otlphttp/collector"]


# --- what the chart promises ----------------------------------------------------------------

def test_daemonset_is_privileged_only_as_far_as_needed() -> None:
    pod = one("defaults", "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_PTRACE"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"]:
        assert mounts[path].get("readOnly") is True, path
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    assert not any("/proc" in m for m in mounts), "/proc is the host's through hostPID"
    writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/var/lib/runbom"]
    assert "hostPath" not in volumes["data"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "otlp-grpc": 4317, "otlp-http": 4318, "metrics": 8888}
    assert c["image"] == "registry.example.invalid/runbom:0.1.0"

    pod = one("all-privilege-options+hostnetwork", "DaemonSet")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["securityContext"]["capabilities"]["add"] == [
        "BPF", "PERFMON", "SYS_RESOURCE", "SYS_ADMIN"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "node-agents"
    assert c["image"] == "registry.example.invalid/runbom@sha256:" + "ab" * 32
    assert "ServiceAccount" not in kinds("all-privilege-options+hostnetwork")
    assert "ClusterRole" not in kinds("all-privilege-options+hostnetwork")


def test_rbac_is_get_list_watch_of_pods_replicasets_jobs() -> None:
    role = one("defaults", "ClusterRole")
    assert sorted((r["apiGroups"][0], r["resources"][0], tuple(r["verbs"]))
                  for r in role["rules"]) == [
        ("", "pods", ("get", "list", "watch")),
        ("apps", "replicasets", ("get", "list", "watch")),
        ("batch", "jobs", ("get", "list", "watch"))]
    binding = one("defaults", "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-runbom",
                                    "namespace": NAMESPACE}]
    assert one("defaults", "ServiceAccount")["metadata"]["name"] == f"{RELEASE}-runbom"


def test_otlp_service_keeps_traffic_on_the_node() -> None:
    svc = one("defaults", "Service")["spec"]
    assert svc["internalTrafficPolicy"] == "Local"
    assert {p["name"]: p["port"] for p in svc["ports"]} == {
        "otlp-grpc": 4317, "otlp-http": 4318, "metrics": 8888}


@pytest.mark.parametrize("case, volume", [
    ("defaults", None),
    ("tempo", None),  # builtin: nothing to mount
    ("jaeger+inline-bom", {"configMap": {"name": f"{RELEASE}-runbom-bom"}}),
    ("existing-bom-configmap", {"configMap": {"name": "support-agent-bom", "items": [
        {"key": "bom.cdx.json", "path": "bom.cdx.json"}]}}),
])
def test_bom_sources(case: str, volume: dict[str, Any] | None) -> None:
    pod = one(case, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    if volume is None:
        assert "bom" not in volumes and "bom" not in mounts
        return
    assert {k: v for k, v in volumes["bom"].items() if k != "name"} == volume
    # No subPath, so that an edited ConfigMap reaches the pod and runbom reloads it.
    assert mounts["bom"] == {"name": "bom", "mountPath": "/etc/runbom/bom", "readOnly": True}
    if case == "jaeger+inline-bom":
        data = one(case, "ConfigMap", f"{RELEASE}-runbom-bom")["data"]["bom.cdx.json"]
        assert json.loads(data) == json.loads(BOM.read_text())


def test_per_workload_boms_mount_one_directory_per_configmap() -> None:
    pod = one("per-workload-boms", "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert "bom" not in volumes
    for i, name in enumerate(["support-agent-bom", "billing-agent-bom"]):
        assert volumes[f"bom-{i}"] == {"name": f"bom-{i}", "configMap": {"name": name}}
        # No subPath: each ConfigMap's edits reach the pod and its file is reloaded.
        assert mounts[f"bom-{i}"] == {"name": f"bom-{i}", "mountPath": f"/etc/runbom/boms/{name}",
                                      "readOnly": True}
    env = {e["name"]: e.get("valueFrom") for e in pod["containers"][0]["env"]}
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_monitors_only_when_asked() -> None:
    for case in ["defaults", "monitors-off", "tempo"]:
        assert not {"PodMonitor", "ServiceMonitor"} & set(kinds(case)), case
    pm = one("podmonitor", "PodMonitor")
    assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert "ServiceMonitor" not in kinds("podmonitor")
    sm = one("servicemonitor", "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["interval"] == "15s"
    assert sm["spec"]["selector"]["matchLabels"] == one("servicemonitor", "Service")[
        "spec"]["selector"]


def test_notes_tell_agents_where_to_send() -> None:
    notes = render("defaults")["runbom/templates/NOTES.txt"]
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT\n      value: http://{RELEASE}-runbom.{NAMESPACE}.svc:4318" \
        in notes
    assert "internalTrafficPolicy\nLocal" in notes
    assert "registry.example.invalid" in notes  # the image placeholder is called out
    assert "No AI-BOM is configured" in notes
    notes = render("per-workload-boms")["runbom/templates/NOTES.txt"]
    assert "ConfigMaps support-agent-bom, billing-agent-bom" in notes
    notes = render("jaeger+inline-bom")["runbom/templates/NOTES.txt"]
    assert "traces: otlp/jaeger" in notes and "logs: otlphttp/collector" in notes


@pytest.mark.parametrize("values, message", [
    ({"exporters": {"tempo": {"enabled": "yes"}}}, "/exporters/tempo/enabled"),
    ({"privileges": {"sysPtrce": True}}, "sysPtrce"),
    ({"config": {"memoryLimiter": {"limitMib": 0}}}, "/config/memoryLimiter/limitMib"),
    ({"service": {"internalTrafficPolicy": "Nearby"}}, "/service/internalTrafficPolicy"),
    ({"aibom": {"settings": {"bom": "/x"}}}, "/aibom/settings"),
    ({"exporters": {"extra": {"kafka": {"signals": ["logs"], "config": {}}}}}, "kafka"),
])
def test_values_schema_refuses_mistakes(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema(values)
    assert message in str(e.value)


def test_two_bom_sources_are_refused() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError) as e:
            chart.render({"aibom": {"bom": {"builtin": "reference-agent",
                                            "existingConfigMap": {"name": "x"}}}},
                         name=RELEASE, namespace=NAMESPACE)
    assert "set one of inline, existingConfigMap.name, builtin" in str(e.value)


def test_readme_install_commands_match_the_chart() -> None:
    """The README's "Install on Kubernetes": its helm command renders, and the endpoint it
    tells agents to use is the one the chart's Service and NOTES give."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install on Kubernetes", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = block.replace("\\\n", " ").strip().splitlines()
    assert len(commands) == 4, commands
    helm_cmd = next(shlex.split(c) for c in commands if c.startswith("helm install"))
    release, namespace = helm_cmd[2], helm_cmd[helm_cmd.index("-n") + 1]
    values: dict[str, Any] = {}
    for i, word in enumerate(helm_cmd):
        if word == "--set":
            values = _deep_merge(values, helm.parse_set_string(helm_cmd[i + 1]))
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name=release, namespace=namespace, is_install=True)
    docs = [d for p, t in out.items() if not p.endswith("NOTES.txt")
            for d in yaml.safe_load_all(t) if d]
    svc = next(d for d in docs if d["kind"] == "Service")
    endpoint = f"http://{svc['metadata']['name']}.{namespace}.svc:4318"
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}" in section
    assert endpoint in out["runbom/templates/NOTES.txt"]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    assert f"daemonset/{ds['metadata']['name']}" in block
    assert any(v.get("configMap", {}).get("name") == "agent-bom"
               for v in ds["spec"]["template"]["spec"]["volumes"])


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out



@pytest.mark.skipif(os.geteuid() != 0, reason="runbom run loads eBPF probes: needs root")
def test_the_rendered_configuration_runs_and_answers_the_probes(tmp_path: Path) -> None:
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    grpc, http, admin = free_port(), free_port(), free_port()
    values = with_inline_bom({"config": {"otlp": {"host": "127.0.0.1", "grpcPort": grpc,
                                                  "httpPort": http}, "adminPort": admin}})
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for p, t in out.items() if not p.endswith("NOTES.txt")
            for d in yaml.safe_load_all(t) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == f"{RELEASE}-runbom")["data"]["runbom.yaml"]
    (tmp_path / "bom.cdx.json").write_text(BOM.read_text())
    (tmp_path / "runbom.yaml").write_text(
        config.replace("/etc/runbom/bom/bom.cdx.json", str(tmp_path / "bom.cdx.json")))
    container = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"][
        "containers"][0]
    log_path = tmp_path / "runbom.log"
    with open(log_path, "wb") as log:
        args = [a.replace("/etc/runbom/runbom.yaml", str(tmp_path / "runbom.yaml"))
                for a in container["args"]]
        assert args != container["args"]
        runbom = subprocess.Popen(
            [str(RUNBOM), *args],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "POD_IP": "127.0.0.1", "NODE_NAME": "node-1"})
        try:
            deadline = time.monotonic() + 30
            while b"runbom is running" not in log_path.read_bytes():
                assert runbom.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "runbom did not start"
                time.sleep(0.05)
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"]:
                path = container[probe]["httpGet"]["path"]
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5) as r:
                    assert r.status == 200, (probe, path)
            span = {"resourceSpans": [{"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "helm-test"}}]},
                "scopeSpans": [{"spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                    "name": "probe", "kind": 1, "startTimeUnixNano": str(time.time_ns()),
                    "endTimeUnixNano": str(time.time_ns())}]}]}]}
            req = urllib.request.Request(f"http://127.0.0.1:{http}/v1/traces",
                                         data=json.dumps(span).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200
            socket.create_connection(("127.0.0.1", grpc), timeout=5).close()
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            assert 'runbom_receiver_accepted_items_total{receiver="otlp",signal="traces"} 1' \
                in metrics, metrics
        finally:
            runbom.send_signal(signal.SIGTERM)
            assert runbom.wait(timeout=40) == 0, log_path.read_text()[-3000:]


# --- sidecar mode (docs/sidecar.md) ------------------------------------------------------------

def test_sidecar_mode_serves_the_socket_on_a_host_directory() -> None:
    config = yaml.safe_load(one("sidecar-mode", "ConfigMap", f"{RELEASE}-runbom")["data"][
        "runbom.yaml"])
    assert config["receivers"]["ebpf"]["sidecars"] == {
        "socket": "/run/runbom/node-agent.sock",
        "pod_cgroup_roots": ["/kubepods.slice", "/kubepods"], "backlog_events": 4096}
    pod = one("sidecar-mode", "DaemonSet")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "sidecars"]
    assert volume["hostPath"] == {"path": "/run/runbom", "type": "DirectoryOrCreate"}
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "sidecars"]
    assert mount == {"name": "sidecars", "mountPath": "/run/runbom"}
    defaults = one("defaults", "DaemonSet")["spec"]["template"]["spec"]
    assert "sidecars" not in {v["name"] for v in defaults["volumes"]}
    assert "sidecars" not in yaml.safe_load(one("defaults", "ConfigMap", f"{RELEASE}-runbom")[
        "data"]["runbom.yaml"])["receivers"]["ebpf"]


def test_the_sidecar_container_snippet_is_valid_unprivileged_and_runs_its_configuration(
        tmp_path: Path) -> None:
    """examples/sidecar-container.yaml: strictly valid on every version, the sidecar drops every
    capability on a read-only root filesystem as a non-root user, shares the node agent's
    socket directory, and `runbom validate` accepts its configuration."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "sidecar-container.yaml").read_text()) if d]
    for doc in docs:
        for kube in KUBE_VERSIONS:
            assert kubernetes_validate.validate(doc, kube, strict=True) == kube
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    pod = next(d for d in docs if d["kind"] == "Pod")["spec"]
    runbom = next(c for c in pod["containers"] if c["name"] == "runbom")
    sc = runbom["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    socket_dir = next(v for v in pod["volumes"] if v["name"] == "runbom-socket")
    assert socket_dir["hostPath"]["path"] == MATRIX["sidecar-mode"].get("sidecars", {}).get(
        "socketDir", "/run/runbom")
    config = config_map["data"]["runbom.yaml"]
    assert yaml.safe_load(config)["receivers"]["node_agent"]["socket"] == (
        "/run/runbom/node-agent.sock")
    (tmp_path / "runbom.yaml").write_text(config)
    run = subprocess.run([str(RUNBOM), "validate", "--config", str(tmp_path / "runbom.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr

