//! The AI-BOM as a user meets it: `runbom validate` refuses a configuration whose declared BOM
//! does not load (naming the JSON path), and `runbom bom observed` / `runbom bom diff` work over
//! a file exporter's output.

use std::{ffi::OsStr, fs, process::Command, process::Output};

use runbom_testkit::{TempDir, runbom_bin, workspace_root};

/// Runs `runbom` with these arguments.
fn runbom<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Output {
    Command::new(runbom_bin!())
        .args(args)
        .output()
        .expect("runbom runs")
}

fn config(bom: &str) -> String {
    format!(
        "receivers:\n  otlp: {{ protocols: {{ http: {{}} }} }}\n\
         processors:\n  aibom: {{ bom: {bom}, wait: 2s }}\n\
         exporters:\n  nop: {{}}\n\
         service:\n  pipelines:\n\
         \x20   traces: {{ receivers: [otlp], processors: [aibom], exporters: [nop] }}\n\
         \x20   logs: {{ receivers: [otlp, aibom], exporters: [nop] }}\n"
    )
}

#[test]
fn validate_loads_the_declared_bom_and_names_what_is_wrong() {
    let dir = TempDir::new("aibom-validate");
    let reference = workspace_root().join("examples/agent/bom.cdx.json");
    let good = dir.path().join("good.yaml");
    fs::write(&good, config(&reference.display().to_string())).unwrap();
    let out = runbom([OsStr::new("validate"), OsStr::new("-c"), good.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&reference).unwrap()).unwrap();
    doc["services"][3]["endpoints"][0] = serde_json::json!("ht tp://nowhere");
    let broken = dir.path().join("bom.cdx.json");
    fs::write(&broken, doc.to_string()).unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, config(&broken.display().to_string())).unwrap();
    let out = runbom([OsStr::new("validate"), OsStr::new("-c"), bad.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("processors.aibom.bom"), "{stderr}");
    assert!(
        stderr.contains("bom.cdx.json: $.services[3].endpoints[0]: not a URL"),
        "{stderr}"
    );
}

/// A made-up API key, key-shaped so that redaction must catch it (assembled so that no
/// key-shaped literal sits in the source).
const KEY: &str = concat!("sk", "-proj-", "FAKEtestKEYnotReal0000");

/// What a file exporter wrote for an agent whose `http_post` tool sent data to the exfil sink.
const TRACES: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"support-agent"}}]},"scopeSpans":[{"scope":{"name":"agent"},"spans":[
{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000001","name":"invoke_agent support-agent","kind":1,"startTimeUnixNano":"1795737600000000000","endTimeUnixNano":"1795737601000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"invoke_agent"}},{"key":"gen_ai.agent.name","value":{"stringValue":"support-agent"}}]},
{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000002","parentSpanId":"0000000000000001","name":"chat gpt-4o-mini","kind":3,"startTimeUnixNano":"1795737600100000000","endTimeUnixNano":"1795737600200000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.provider.name","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o-mini"}}]},
{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000003","parentSpanId":"0000000000000001","name":"execute_tool http_post","kind":1,"startTimeUnixNano":"1795737600300000000","endTimeUnixNano":"1795737600400000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"execute_tool"}},{"key":"gen_ai.tool.name","value":{"stringValue":"http_post"}}]},
{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000004","parentSpanId":"0000000000000003","name":"POST","kind":3,"startTimeUnixNano":"1795737600310000000","endTimeUnixNano":"1795737600390000000","attributes":[{"key":"http.request.method","value":{"stringValue":"POST"}},{"key":"url.full","value":{"stringValue":"http://127.0.0.1:18099/upload?key={KEY}"}}]}
]}]}]}"#;

#[test]
fn observed_then_diff_over_exported_files() {
    let dir = TempDir::new("aibom-cli");
    let export = dir.path().join("runbom-data");
    fs::create_dir_all(&export).unwrap();
    let traces = TRACES.replace('\n', "").replace("{KEY}", KEY);
    fs::write(export.join("traces.jsonl"), traces + "\n").unwrap();
    let observed = dir.path().join("observed.cdx.json");
    let out = runbom([
        OsStr::new("bom"),
        OsStr::new("observed"),
        OsStr::new("--from"),
        export.as_os_str(),
        OsStr::new("--out"),
        observed.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&observed).unwrap();
    assert!(
        !text.contains(KEY) && !text.contains("FAKEtestKEY"),
        "no credential in the observed BOM"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["specVersion"], "1.6");
    assert!(text.contains("\"runbom:evidence:first_seen\""), "{text}");

    let declared = workspace_root().join("examples/agent/bom.cdx.json");
    let out = runbom([
        OsStr::new("bom"),
        OsStr::new("diff"),
        declared.as_os_str(),
        observed.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "something is undeclared: {stdout}"
    );
    assert!(
        stdout.contains("http_post -> http://127.0.0.1:18099/upload"),
        "{stdout}"
    );
    assert!(stdout.contains("UNUSED: declared, never seen"), "{stdout}");
    assert!(
        stdout.contains("tool:read_file"),
        "declared, never used: {stdout}"
    );

    let out = runbom([
        OsStr::new("bom"),
        OsStr::new("diff"),
        OsStr::new("--json"),
        declared.as_os_str(),
        observed.as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let undeclared = json["undeclared"].as_array().unwrap();
    assert!(
        undeclared.iter().any(|i| i["kind"] == "tool endpoint"),
        "{json:#}"
    );
    assert!(
        json["unused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["ref"] == "tool:run_command")
    );
    assert!(
        json["matched"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["ref"] == "model:gpt-4o-mini")
    );

    let nothing = dir.path().join("nothing");
    let out = runbom([
        OsStr::new("bom"),
        OsStr::new("observed"),
        OsStr::new("--from"),
        nothing.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither traces.jsonl nor logs.jsonl"));
}
