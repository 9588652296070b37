"""examples/grafana against real data: runbom on its embedded defaults (kernel probes, OTLP,
correlate, aibom; this test's ports and BOM) runs the reference agent's benign and injected
conversations while a real Prometheus (Debian's `prometheus`) scrapes its /metrics every second.
Then:

- every PromQL expression of the dashboards (panels and variables) runs against that
  Prometheus and returns data; `promtool check metrics` passes on the last scrape;
  `promtool check rules` passes on the shipped alerting rules, which that Prometheus evaluates
  (all healthy; the drift alert fires after the injected conversation);
- every TraceQL and LogQL query parses with Grafana's own grammars (npm `@grafana/lezer-traceql`,
  `@grafana/lezer-logql`, tests/node/grafana_queries.mjs), and each attribute it names exists
  in what runbom exported (LogQL labels as Loki's OTLP ingestion names attributes);
- every dashboard type-checks as a `Dashboard` of npm `@grafana/schema` (TypeScript), and the
  provisioning names the datasources the dashboards use, with trace↔logs links on trace id.

Grafana, Tempo and Loki are not installed here: what is tested is what they would be given.
Needs root (eBPF), Debian's `prometheus` (scripts/setup.sh --tests), `npm ci` in tests/node.

    cargo build -p runbom && .venv/bin/pytest tests/test_grafana.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_aibom import (  # noqa: E402
    AGENT_DIR, API_KEY, DEFAULT, RUNBOM, free_port)
from leakcheck import scrape  # noqa: E402
from runbom_defaults import write_embedded_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "examples" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
NODE_DIR = ROOT / "tests" / "node"
NODE = Path("/usr/bin/node")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RULES = GRAFANA / "stack" / "rules.yaml"

# What Grafana puts in place of its variables when a panel runs: "All" of agent and namespace
# (the dashboards' allValue), the range and interval of the last 15 minutes.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "15m",
    "$__auto": "1m",
    "${agent:regex}": ".*",
    "${namespace:regex}": ".*",
    "$agent": ".*",
    "$namespace": ".*",
    "${instance:regex}": ".*",
    "$instance": ".*",
}


def substitute(text: str) -> str:
    for k in sorted(VARIABLES, key=len, reverse=True):
        text = text.replace(k, VARIABLES[k])
    return text


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in DASHBOARDS}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def queries(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard, panel title, target) of every query on a datasource of `kind`."""
    out = []
    for name, dash in dashboards().items():
        for p in panels(dash):
            for t in p.get("targets", []):
                ds = t.get("datasource") or p.get("datasource") or {}
                if ds.get("type") == kind:
                    out.append((name, p.get("title", ""), t))
    return out


def variable_queries() -> list[tuple[str, dict[str, Any]]]:
    return [(name, v) for name, dash in dashboards().items()
            for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """runbom (embedded defaults) scraped by Prometheus while the reference agent runs its two
    conversations; yields the export directory, the last scrape and Prometheus' URL."""
    if os.geteuid() != 0:
        pytest.skip("runbom loads eBPF programs: run as root")
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    assert Path(PROMETHEUS).exists(), "Debian's prometheus is missing: scripts/setup.sh --tests"
    tmp = tmp_path_factory.mktemp("grafana")
    ports = {name: free_port() for name in DEFAULT}
    bom = (AGENT_DIR / "bom.cdx.json").read_text()
    for name, port in ports.items():
        bom = bom.replace(f"127.0.0.1:{DEFAULT[name]}", f"127.0.0.1:{port}")
    (tmp / "bom.cdx.json").write_text(bom)
    grpc, http_port, metrics_port, prom_port = (free_port() for _ in range(4))
    out = tmp / "out"
    write_embedded_defaults(tmp / "runbom.yaml", bom=tmp / "bom.cdx.json", out=out, grpc=grpc,
                            http=http_port, metrics=metrics_port)
    (tmp / "prometheus.yml").write_text(f"""
global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: runbom
    static_configs: [{{ targets: ["127.0.0.1:{metrics_port}"] }}]
""")
    prom_log = open(tmp / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=subprocess.STDOUT)
    log = open(tmp / "runbom.log", "wb")
    runbom = subprocess.Popen([str(RUNBOM), "run", "-c", str(tmp / "runbom.yaml")],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 60
        while b"runbom is running" not in (tmp / "runbom.log").read_bytes():
            assert runbom.poll() is None, (tmp / "runbom.log").read_text()
            assert time.monotonic() < deadline, "runbom did not start"
            time.sleep(0.05)
        env = {**os.environ, "RUNBOM_DEMO_API_KEY": API_KEY}
        for scenario in ("benign", "injected"):
            subprocess.run(
                [sys.executable, str(AGENT_DIR / "run.py"), "--scenario", scenario, "--mode",
                 "sequential", "--otlp-endpoint", f"http://127.0.0.1:{http_port}",
                 "--work-dir", str(tmp / f"agent-{scenario}"),
                 "--ground-truth", str(tmp / f"truth-{scenario}.json"),
                 "--llm-port", str(ports["llm"]), "--ticketing-port", str(ports["ticketing"]),
                 "--customers-port", str(ports["customers"]), "--exfil-port", str(ports["exfil"])],
                check=True, env=env, timeout=120, capture_output=True)
        # The drift alert comes once the trace is judged (after the correlation's and the
        # processor's waits); then Prometheus needs a few scrapes of it.
        deadline = time.monotonic() + 60
        while not prom_query(url, "runbom_aibom_undeclared_uses_total"):
            assert runbom.poll() is None, (tmp / "runbom.log").read_text()[-3000:]
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            time.sleep(0.5)
        time.sleep(4)
        metrics_text = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        yield {"tmp": tmp, "out": out, "metrics": metrics_text, "prometheus": url,
               "ports": ports}
    finally:
        runbom.send_signal(signal.SIGTERM)
        runbom.wait(timeout=60)
        log.close()
        prom.terminate()
        prom.wait(timeout=30)
        prom_log.close()


def prom_query(url: str, expr: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", (expr, body)
    result = body["data"]["result"]
    return result if isinstance(result, list) else [result]


PROVISIONING = GRAFANA / "provisioning" / "datasources" / "runbom.yaml"


def datasources() -> list[dict[str, Any]]:
    import yaml
    return yaml.safe_load(PROVISIONING.read_text())["datasources"]


def provisioned_logql() -> list[str]:
    """The trace-to-logs queries of the provisioning, as Grafana runs them (`$$` is `$`)."""
    out = []
    for ds in datasources():
        q = ds.get("jsonData", {}).get("tracesToLogsV2", {}).get("query")
        if q:
            out.append(q.replace("$$", "$").replace("${__trace.traceId}",
                                                    "4c004655a69dfabc184a26cfc44a5b5d"))
    return out


def all_promql() -> list[tuple[str, str]]:
    return [(f"{d} / {title}", substitute(t["expr"])) for d, title, t in queries("prometheus")]


def parsed(lang: str, texts: list[str]) -> list[dict[str, Any]]:
    assert (NODE_DIR / "node_modules" / "@grafana" / "lezer-traceql").is_dir(), \
        f"npm ci in {NODE_DIR} (scripts/setup.sh --tests)"
    run = subprocess.run([str(NODE), str(NODE_DIR / "grafana_queries.mjs")], cwd=NODE_DIR,
                         input=json.dumps([{"lang": lang, "query": q} for q in texts]),
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(run.stdout)


def traceql() -> list[tuple[str, str]]:
    return [(f"{d} / {title}", substitute(t["query"])) for d, title, t in queries("tempo")]


def logql() -> list[tuple[str, str]]:
    out = [(f"{d} / {title}", substitute(t["expr"])) for d, title, t in queries("loki")]
    return out + [("provisioning / tracesToLogsV2", q) for q in provisioned_logql()]


def test_the_dashboards_have_the_three_views_and_their_variables() -> None:
    dash = dashboards()
    assert set(dash) == {"aibom-overview", "agent-investigation", "runbom-health"}
    for name in ("aibom-overview", "agent-investigation"):
        names = {v["name"] for v in dash[name]["templating"]["list"]}
        assert {"agent", "namespace"} <= names, (name, names)
    assert len(all_promql()) >= 15 and len(traceql()) >= 3 and len(logql()) >= 4


def test_every_promql_expression_returns_data(stack: dict[str, Any]) -> None:
    empty = [(where, expr) for where, expr in all_promql()
             if not prom_query(stack["prometheus"], expr)]
    assert not empty, empty


def panel_query(dash: str, title: str) -> str:
    return next(substitute(t["expr"]) for d, t_title, t in queries("prometheus")
                if d == dash and t_title == title)


def test_the_overview_shows_the_first_drift_and_its_destination(stack: dict[str, Any]) -> None:
    """Each series starts at 0 (runbom shows a new series at 0 before its first count), so
    increase() over the range counts the run's first and only ERROR alert and its exfiltration
    endpoint."""
    url = stack["prometheus"]
    value = lambda r: float(r["value"][1])  # noqa: E731
    alerts = prom_query(url, panel_query("aibom-overview", "Alerts by severity"))
    error = [value(r) for r in alerts if r["metric"].get("severity") == "ERROR"]
    assert error and error[0] >= 1, alerts
    findings = prom_query(url, panel_query("aibom-overview", "Drift findings"))
    assert value(findings[0]) >= 1, findings
    top = prom_query(url, panel_query("aibom-overview", "Top undeclared destinations"))
    exfil = f"127.0.0.1:{stack['ports']['exfil']}"
    assert any(r["metric"].get("aibom_drift_subject") == exfil and value(r) >= 1
               and r["metric"].get("aibom_drift_kind") == "undeclared_endpoint" for r in top), top


def test_every_variable_query_finds_its_series(stack: dict[str, Any]) -> None:
    for dash, v in variable_queries():
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert m, (dash, query)
        selector, label = m.groups()
        assert prom_query(stack["prometheus"], selector), (dash, v["name"], selector)
        q = urllib.parse.urlencode({"match[]": selector})
        with urllib.request.urlopen(f"{stack['prometheus']}/api/v1/label/{label}/values?{q}",
                                    timeout=10) as r:
            values = json.loads(r.read())["data"]
        # Outside Kubernetes no span has k8s.namespace.name: the variable is empty (All).
        if not label.startswith("k8s_"):
            assert values, (dash, v["name"], selector, label)


def test_promtool_accepts_the_metrics(stack: dict[str, Any]) -> None:
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=stack["metrics"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
        check.stdout + check.stderr


def test_the_alerting_rules_check_and_the_drift_alert_fires(stack: dict[str, Any]) -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    url = stack["prometheus"]
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        rules = {rule["name"]: rule for g in groups for rule in g["rules"]}
        if rules.get("RunbomDriftAlert", {}).get("state") == "firing":
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == 6, sorted(rules)
    unhealthy = {n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    # Nothing was lost and nothing failed in this run: the health alerts stay quiet.
    for name in ("RunbomKernelEventsLost", "RunbomExportFailing", "RunbomExporterQueueFull"):
        assert rules[name]["state"] == "inactive", rules[name]


@pytest.mark.parametrize("lang", ["traceql", "logql"])
def test_every_query_parses_with_grafanas_grammar(lang: str) -> None:
    items = traceql() if lang == "traceql" else logql()
    results = parsed(lang, [q for _, q in items])
    bad = [(where, q, r["errors"]) for (where, q), r in zip(items, results) if r["errors"]]
    assert not bad, bad
    # The grammar finds errors: a broken query is not silently accepted.
    assert parsed(lang, ["{ span.aibom.drift = = }" if lang == "traceql"
                         else '{service_name=~".+"} | = |'])[0]["errors"]


def loki_name(attribute: str) -> str:
    """How Loki's OTLP ingestion names an attribute (index label or structured metadata)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", attribute)


def exported_names(out: Path) -> dict[str, set[str]]:
    spans, resources, logs = set(), set(), set()
    for line in (out / "traces.jsonl").read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            resources |= {kv["key"] for kv in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    spans |= {kv["key"] for kv in sp.get("attributes", [])}
    for line in (out / "logs.jsonl").read_text().splitlines():
        for rl in json.loads(line).get("resourceLogs", []):
            logs |= {kv["key"] for kv in rl.get("resource", {}).get("attributes", [])}
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    logs |= {kv["key"] for kv in r.get("attributes", [])}
                    # Record fields Loki keeps as structured metadata.
                    logs |= {"trace_id", "span_id", "severity_text"} & {
                        loki_name(k).lower() for k in ("trace_id", "span_id", "severity_text")
                        if r.get({"trace_id": "traceId", "span_id": "spanId",
                                  "severity_text": "severityText"}[k])}
    return {"span": spans, "resource": resources,
            "loki": {loki_name(a) for a in logs}}


def test_query_attributes_exist_in_the_demo_export(stack: dict[str, Any]) -> None:
    names = exported_names(stack["out"])
    missing = []
    for (where, q), r in zip(traceql(), parsed("traceql", [q for _, q in traceql()])):
        for field in r["names"]:
            scope, _, attribute = field.partition(".")
            if attribute.startswith("k8s."):
                continue  # set by the Kubernetes attributes of a pod, not in this demo
            if attribute not in names[scope]:
                missing.append((where, field))
    for (where, q), r in zip(logql(), parsed("logql", [q for _, q in logql()])):
        for label in r["names"]:
            if label.startswith("k8s_"):
                continue
            if label not in names["loki"]:
                missing.append((where, label))
    assert not missing, missing


# The schema's types as JSON writes them: a string enum member is its value ("thresholds" for
# FieldColorModeId.Thresholds); everything else is checked as declared.
JSON_TYPE = """import type { Dashboard } from "@grafana/schema";
type Json<T> = T extends string ? `${T}`
  : T extends readonly (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;
"""


def test_the_dashboards_type_check_against_grafanas_schema(tmp_path: Path) -> None:
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), f"npm ci in {NODE_DIR} (scripts/setup.sh --tests)"
    work = NODE_DIR / f".dashboards-{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        for p in DASHBOARDS:
            # An object literal, so that TypeScript checks it against the type exactly
            # (literal types, no unknown properties).
            (work / f"{p.stem}.ts").write_text(
                f"{JSON_TYPE}export const dashboard: Json<Dashboard> = {p.read_text()};\n")
        (work / "broken.ts").write_text(
            f"{JSON_TYPE}export const dashboard: Json<Dashboard> = "
            '{ schemaVersion: 39, panelz: [] };\n')
        base = [str(tsc), "--noEmit", "--strict", "--module", "nodenext",
                "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck"]
        good = subprocess.run(base + [str(work / f"{p.stem}.ts") for p in DASHBOARDS],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        assert good.returncode == 0, good.stdout + good.stderr
        # The check has teeth: a misspelt field fails.
        bad = subprocess.run(base + [str(work / "broken.ts")], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and "panelz" in bad.stdout, bad.stdout + bad.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_provisioning_links_traces_and_logs_on_trace_id() -> None:
    by_uid = {ds["uid"]: ds for ds in datasources()}
    assert {ds["type"] for ds in by_uid.values()} == {"prometheus", "tempo", "loki", "jaeger"}
    used = {t.get("datasource", {}).get("uid") for kind in ("prometheus", "tempo", "loki")
            for _, _, t in queries(kind)}
    assert used <= set(by_uid), used - set(by_uid)
    for uid in ("runbom-tempo", "runbom-jaeger"):
        t2l = by_uid[uid]["jsonData"]["tracesToLogsV2"]
        assert by_uid[t2l["datasourceUid"]]["type"] == "loki"
        assert "trace_id=\"$${__trace.traceId}\"" in t2l["query"], t2l
    derived = by_uid["runbom-loki"]["jsonData"]["derivedFields"]
    assert any(f["matcherType"] == "label" and f["matcherRegex"] == "trace_id"
               and by_uid[f["datasourceUid"]]["type"] == "tempo" for f in derived), derived


def test_the_stack_configurations_load(tmp_path: Path) -> None:
    """The compose stack's Collector configuration passes tests/test_otel_config.py's checks
    (documented fields; the sections the PyPI Collector build has, in that Collector), its
    Prometheus configuration `promtool check config`, and its runbom configuration
    `runbom validate` (run in a scratch directory: the `file` exporter's directory is
    relative)."""
    import yaml
    from test_otel_config import check_against_table, collector_validate, real_collector_sections
    config = yaml.safe_load((GRAFANA / "stack" / "collector.yaml").read_text())
    assert check_against_table(config) == []
    sections = real_collector_sections(config)
    assert sections is not None
    run = collector_validate(sections, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    # The stack's Prometheus configuration, with the rules where the container mounts them.
    prom = tmp_path / "prometheus.yml"
    prom.write_text((GRAFANA / "stack" / "prometheus.yml").read_text()
                    .replace("/etc/prometheus/rules.yaml", str(RULES)))
    check = subprocess.run([PROMTOOL, "check", "config", str(prom)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert RUNBOM.exists(), f"{RUNBOM} is missing: cargo build -p runbom (or set RUNBOM_BIN)"
    valid = subprocess.run([str(RUNBOM), "validate", "-c", str(GRAFANA / "stack" / "runbom.yaml")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert valid.returncode == 0 and "configuration is valid" in valid.stdout, \
        valid.stdout + valid.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
