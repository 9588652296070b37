//! The runtime BOM from exported OTLP/JSON: what the reference agent did, with evidence,
//! strict CycloneDX 1.6 (checked with cyclonedx-python-lib from the project's .venv), and its
//! diff against the declared BOM.

use runbom_testkit::agent_trace as common;

use std::{path::PathBuf, process::Command, time::Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use runbom_aibom::{DeclaredBom, Processor, Settings, diff::diff, observed::Inventory};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs an injected and a benign conversation through the processor and writes what an
/// exporter would: `traces.jsonl` and `logs.jsonl` (the alerts) in `dir`.
fn export(dir: &std::path::Path) {
    let bom = common::bom();
    let mut p = Processor::new(Settings::default());
    let now = Instant::now();
    let (bad, _) = common::injected(7);
    let mut req = bad.request();
    req.resource_spans
        .extend(common::benign(8).request().resource_spans);
    // Both traces are complete: judged and passed on at once.
    let out = p.push(req, now, &bom);
    assert_eq!(p.held_spans(), 0);
    std::fs::create_dir_all(dir).unwrap();
    let traces = serde_json::to_string(&out.traces.unwrap()).unwrap();
    std::fs::write(dir.join("traces.jsonl"), format!("{traces}\n")).unwrap();
    let logs: ExportLogsServiceRequest = out.alerts.unwrap();
    std::fs::write(
        dir.join("logs.jsonl"),
        format!("{}\n", serde_json::to_string(&logs).unwrap()),
    )
    .unwrap();
}

fn observed_bom(tag: &str) -> (PathBuf, Value) {
    let dir = std::env::temp_dir().join(format!(
        "runbom-aibom-observed-{tag}-{}",
        std::process::id()
    ));
    export(&dir);
    let mut inv = Inventory::new(vec![
        runbom_aibom::endpoint::Endpoint::parse("127.0.0.1:4318").unwrap(),
    ]);
    inv.read_dir(&dir).expect("the exported files read back");
    let doc = inv.to_cyclonedx(&dir.display().to_string());
    (dir, doc)
}

fn find<'a>(doc: &'a Value, section: &str, name: &str) -> &'a Value {
    doc[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {section}: {doc:#}"))
}

fn prop<'a>(c: &'a Value, name: &str) -> Vec<&'a str> {
    c["properties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .filter_map(|p| p["value"].as_str())
        .collect()
}

#[test]
fn the_observed_bom_inventories_what_ran_with_evidence() {
    let (dir, doc) = observed_bom("inv");
    assert_eq!(doc["specVersion"], "1.6");
    let model = find(&doc, "components", "gpt-4o-mini");
    assert_eq!(model["type"], "machine-learning-model");
    assert_eq!(model["publisher"], "openai");
    assert_eq!(
        prop(model, "runbom:evidence:first_seen")[0].len(),
        "2026-11-27T00:00:07.002Z".len()
    );
    assert_eq!(
        prop(model, "runbom:evidence:count"),
        ["11"],
        "five model calls in the injected conversation, six in the benign one"
    );
    assert_eq!(prop(model, "runbom:evidence:trace_id").len(), 2);
    assert_eq!(
        prop(model, "runbom:evidence:declared_ref"),
        ["model:gpt-4o-mini"]
    );
    let agent = find(&doc, "components", "support-agent");
    assert!(prop(agent, "runbom:match").contains(&"service.name=support-agent"));
    let post = find(&doc, "services", "http_post");
    let endpoints: Vec<&str> = post["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        endpoints.contains(&"http://127.0.0.1:18099/upload"),
        "{endpoints:?}"
    );
    assert!(
        endpoints.contains(&"http://127.0.0.1:18080/api/tickets/T-3141/comments"),
        "{endpoints:?}"
    );
    let llm_api = find(&doc, "services", "127.0.0.1:18443");
    assert_eq!(
        prop(llm_api, "runbom:evidence:ai"),
        ["true"],
        "the model API the chat spans name"
    );
    assert_eq!(prop(llm_api, "runbom:provider"), ["openai"]);
    let exfil = find(&doc, "services", "127.0.0.1:18099");
    assert_eq!(prop(exfil, "runbom:evidence:drift_alerts"), ["1"]);
    let wc = find(&doc, "components", "wc");
    assert_eq!(prop(wc, "runbom:exec"), ["/usr/bin/wc"]);
    find(&doc, "components", "/tmp/runbom-agent/data/tickets/");
    find(&doc, "components", "crm.customers");
    let uid = find(&doc, "components", "uid 1000");
    assert_eq!(prop(uid, "runbom:identity"), ["uid:1000"]);
    assert!(
        !doc.to_string().contains("4318"),
        "runbom's own receiver is not inventoried"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Strict CycloneDX 1.6 validation of `file` with cyclonedx-python-lib from the project's .venv.
fn assert_strict_cyclonedx(file: &std::path::Path) {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the project's .venv (tests/requirements.txt) is needed: {}",
        python.display()
    );
    let script = "import sys\n\
from cyclonedx.schema import SchemaVersion\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
print(err)\n\
sys.exit(0 if err is None else 1)\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "strict CycloneDX 1.6 validation failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_observed_bom_is_strict_cyclonedx_1_6() {
    let (dir, doc) = observed_bom("strict");
    let file = dir.join("observed.cdx.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    assert_strict_cyclonedx(&file);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_diff_names_the_undeclared_and_the_unused() {
    let (dir, doc) = observed_bom("diff");
    let observed = DeclaredBom::parse(&doc.to_string(), "observed.cdx.json")
        .expect("the observed BOM reads as a BOM");
    let d = diff(&common::bom(), &observed, &doc);
    let undeclared: Vec<(&str, &str)> = d
        .undeclared
        .iter()
        .map(|i| (i.kind, i.name.as_str()))
        .collect();
    assert!(
        undeclared.contains(&(
            "tool endpoint",
            "http_post -> http://127.0.0.1:18099/upload"
        )),
        "{undeclared:#?}"
    );
    assert!(
        undeclared.contains(&("tool endpoint", "http_post -> tcp://127.0.0.1:18099")),
        "{undeclared:#?}"
    );
    assert!(
        undeclared.contains(&("service", "http://127.0.0.1:18099/upload")),
        "{undeclared:#?}"
    );
    assert!(
        !undeclared
            .iter()
            .any(|(_, n)| n.contains("18080") || n.contains("18443") || n.contains("18081")),
        "declared endpoints are not undeclared: {undeclared:#?}"
    );
    assert!(
        !undeclared
            .iter()
            .any(|(k, _)| *k == "model" || *k == "agent"),
        "{undeclared:#?}"
    );
    let unused: Vec<&str> = d.unused.iter().map(|i| i.bom_ref.as_str()).collect();
    assert!(
        unused.is_empty(),
        "the two conversations use every declared component: {unused:?}"
    );
    let text = d.text();
    assert!(
        text.contains("UNDECLARED") && text.contains("18099"),
        "{text}"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert!(json["undeclared"].as_array().unwrap().len() >= 3);

    // Against a BOM that declares more than was used, the rest is unused.
    let mut more: Value = serde_json::from_str(common::BOM).unwrap();
    more["components"].as_array_mut().unwrap().push(serde_json::json!({
        "type": "machine-learning-model", "bom-ref": "model:claude", "name": "claude-3*", "publisher": "anthropic"}));
    let more = DeclaredBom::parse(&more.to_string(), "more.json").unwrap();
    let d = diff(&more, &observed, &doc);
    assert!(
        d.unused.iter().any(|i| i.bom_ref == "model:claude"),
        "{:#?}",
        d.unused
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A declared agent's conversation and an undeclared `openai` client's unclaimed kernel
/// records, through the processor, as the file exporter writes them.
fn export_with_shadow(dir: &std::path::Path) {
    use runbom_testkit::shadow_run::{process, shadow_run};
    let bom = common::bom();
    let mut p = Processor::new(Settings::default());
    let now = Instant::now();
    let out = p.push(common::benign(8).request(), now, &bom);
    let mut logs = shadow_run(&process(5151, 1, "/usr/bin/python3.12"), common::T0);
    p.judge_logs(&mut logs, now, &bom);
    let alerts = p.release_all(&bom).alerts.expect("the shadow_ai alert");
    logs.resource_logs.extend(alerts.resource_logs);
    std::fs::create_dir_all(dir).unwrap();
    let traces = serde_json::to_string(&out.traces.unwrap()).unwrap();
    std::fs::write(dir.join("traces.jsonl"), format!("{traces}\n")).unwrap();
    std::fs::write(
        dir.join("logs.jsonl"),
        format!("{}\n", serde_json::to_string(&logs).unwrap()),
    )
    .unwrap();
}

#[test]
fn a_shadow_workload_is_an_undeclared_agent_with_what_it_used() {
    let dir = std::env::temp_dir().join(format!("runbom-aibom-shadow-{}", std::process::id()));
    export_with_shadow(&dir);
    let mut inv = Inventory::new(Vec::new());
    inv.read_dir(&dir).expect("the exported files read back");
    let doc = inv.to_cyclonedx(&dir.display().to_string());
    let agent = find(&doc, "components", "python3.12");
    assert_eq!(agent["type"], "application");
    assert_eq!(
        prop(agent, "runbom:match"),
        ["process.executable.path=/usr/bin/python3.12"]
    );
    assert_eq!(prop(agent, "runbom:evidence:shadow_ai"), ["true"]);
    assert_eq!(prop(agent, "runbom:evidence:drift_alerts"), ["1"]);
    assert_eq!(
        prop(agent, "runbom:evidence:count"),
        ["2"],
        "two model calls"
    );
    let deps = doc["dependencies"].as_array().expect("dependencies");
    let on: Vec<&str> = deps
        .iter()
        .find(|d| d["ref"] == agent["bom-ref"])
        .expect("the shadow agent's dependencies")["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "observed:model:gpt-4o-mini@",
        "observed:service:127.0.0.1:18443",
        "observed:service:127.0.0.1:18099",
        "observed:data:file:///tmp/runbom-agent/data/",
    ] {
        assert!(on.contains(&want), "{want} in {on:?}");
    }
    let exfil = find(&doc, "services", "127.0.0.1:18099");
    assert_eq!(prop(exfil, "runbom:evidence:ai"), ["true"]);

    let observed = DeclaredBom::parse(&doc.to_string(), "observed.cdx.json")
        .expect("the observed BOM reads as a BOM");
    let d = diff(&common::bom(), &observed, &doc);
    let shadow = d
        .undeclared
        .iter()
        .find(|i| i.kind == "agent" && i.name == "python3.12")
        .unwrap_or_else(|| panic!("the shadow agent is undeclared: {:#?}", d.undeclared));
    assert!(
        shadow.detail.contains("shadow AI, used:")
            && shadow.detail.contains("model gpt-4o-mini")
            && shadow.detail.contains("127.0.0.1:18099"),
        "{}",
        shadow.detail
    );
    assert!(
        d.undeclared
            .iter()
            .any(|i| i.kind == "service" && i.name == "http://127.0.0.1:18099/upload"),
        "the exfiltration is AI-relevant context: {:#?}",
        d.undeclared
    );
    assert!(
        !d.undeclared
            .iter()
            .any(|i| i.kind == "agent" && i.name == "support-agent"),
        "{:#?}",
        d.undeclared
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The agent called the filesystem MCP server for `read_text_file` (declared) and `write_file`
/// (not), through the processor judging against the BOM that declares the server.
fn export_mcp(dir: &std::path::Path) {
    let bom = common::bom_with_mcp_server();
    let mut p = Processor::new(Settings::default());
    let mut t = common::Trace::new(30);
    let root = t.root("p");
    t.mcp_call(&root, "read_text_file", common::MCP_FS_SERVER);
    t.mcp_call(&root, "write_file", common::MCP_FS_SERVER);
    let out = p.push(t.request(), Instant::now(), &bom);
    std::fs::create_dir_all(dir).unwrap();
    let traces = serde_json::to_string(&out.traces.unwrap()).unwrap();
    std::fs::write(dir.join("traces.jsonl"), format!("{traces}\n")).unwrap();
}

#[test]
fn mcp_servers_are_inventoried_with_the_tools_called_and_diffed() {
    let dir =
        std::env::temp_dir().join(format!("runbom-aibom-observed-mcp-{}", std::process::id()));
    export_mcp(&dir);
    let mut inv = Inventory::new(vec![]);
    inv.read_dir(&dir).expect("the exported files read back");
    let doc = inv.to_cyclonedx(&dir.display().to_string());
    let server = find(&doc, "services", common::MCP_FS_SERVER);
    assert_eq!(prop(server, "runbom:kind"), ["mcp-server"]);
    assert_eq!(prop(server, "runbom:exec"), [common::MCP_FS_SERVER]);
    let tools: Vec<&str> = server["services"]
        .as_array()
        .expect("nested tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tools, ["read_text_file", "write_file"]);
    assert_eq!(prop(server, "runbom:evidence:count"), ["2"]);
    let file = dir.join("observed.cdx.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    assert_strict_cyclonedx(&file);

    let observed = DeclaredBom::parse(&doc.to_string(), "observed.cdx.json")
        .expect("the observed BOM reads as a BOM");
    let d = diff(&common::bom_with_mcp_server(), &observed, &doc);
    assert!(
        d.matched
            .iter()
            .any(|i| i.bom_ref == "mcp:filesystem" && i.kind == "service"),
        "{:#?}",
        d.matched
    );
    let undeclared: Vec<(&str, &str)> = d
        .undeclared
        .iter()
        .map(|i| (i.kind, i.name.as_str()))
        .filter(|(kind, _)| matches!(*kind, "tool" | "service"))
        .collect();
    assert_eq!(undeclared, [("tool", "write_file")], "{d:#?}");
    // Against the reference BOM, which declares no MCP server, the server is undeclared.
    let d = diff(&common::bom(), &observed, &doc);
    assert!(
        d.undeclared
            .iter()
            .any(|i| i.kind == "service" && i.detail.starts_with("MCP server")),
        "{:#?}",
        d.undeclared
    );
    std::fs::remove_dir_all(dir).unwrap();
}
