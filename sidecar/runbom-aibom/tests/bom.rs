//! The declared BOM: the reference agent's loads as declared; every malformed input is refused
//! with the JSON path and the reason; the hot reload keeps the last good BOM.

use runbom_testkit::agent_trace as common;

use std::sync::atomic::Ordering;

use runbom_aibom::{BomWatch, DeclaredBom, bom::IdentitySpec};
use serde_json::{Value, json};

fn reference() -> Value {
    serde_json::from_str(common::BOM).unwrap()
}

#[test]
fn the_reference_bom_loads_as_declared() {
    let b = common::bom();
    assert_eq!(
        b.serial_number,
        "urn:uuid:6f1c2b9e-4d7a-4e0b-9a51-52756e626f6d"
    );
    assert_eq!(b.agents.len(), 1);
    assert_eq!(b.agents[0].matchers.len(), 2);
    assert_eq!(b.models[0].providers, ["openai"]);
    let tools: Vec<&str> = b.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tools,
        [
            "read_file",
            "http_get",
            "http_post",
            "query_customers",
            "run_command"
        ]
    );
    assert_eq!(b.services.len(), 2);
    assert_eq!(b.data[1].paths, ["/tmp/runbom-agent/data/"]);
    assert_eq!(b.data[0].endpoints[0].port, Some(18081));
    assert_eq!(b.programs.len(), 2);
    assert_eq!(
        b.identities[0].specs,
        [IdentitySpec::Env("OPENAI_API_KEY".into())]
    );
    assert!(b.allowed("agent:support-agent", "tool:http_post"));
    assert!(
        b.closure("tool:http_post")
            .contains("service:ticketing-api")
    );
}

#[test]
fn a_bom_without_runbom_properties_still_works() {
    let doc = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.7",
        "metadata": {"component": {"type": "application", "name": "bot"}},
        "components": [{"type": "machine-learning-model", "name": "claude-3*", "publisher": "Anthropic"}],
        "services": [{"name": "search", "endpoints": ["https://search.example.com/api"]}]
    });
    let b = DeclaredBom::parse(&doc.to_string(), "other.json").unwrap();
    assert_eq!(
        b.agents[0].bom_ref, "application:bot",
        "a ref is made when none is given"
    );
    assert!(b.models[0].name.matches("claude-3-5-sonnet"));
    assert_eq!(b.models[0].providers, ["anthropic"]);
    assert_eq!(b.services[0].endpoints[0].port, Some(443));
    assert!(
        b.allowed("application:bot", "anything"),
        "no dependencies: everything declared is allowed"
    );
}

/// Applies `change` to the reference BOM and returns the error message.
fn refused(change: impl FnOnce(&mut Value)) -> String {
    let mut doc = reference();
    change(&mut doc);
    DeclaredBom::parse(&doc.to_string(), "bom.cdx.json")
        .expect_err("a malformed BOM is refused")
        .to_string()
}

type Change = Box<dyn FnOnce(&mut Value)>;

#[test]
fn malformed_boms_name_the_json_path_and_the_reason() {
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|d| d["services"][3]["endpoints"][0] = json!("ht tp://127.0.0.1/")),
            "bom.cdx.json: $.services[3].endpoints[0]: not a URL",
        ),
        (
            Box::new(|d| d["services"][3]["endpoints"][0] = json!(42)),
            "bom.cdx.json: $.services[3].endpoints[0]: expected a string, found a number",
        ),
        (
            Box::new(|d| d["specVersion"] = json!("1.4")),
            "bom.cdx.json: $.specVersion: runbom reads CycloneDX 1.6 and 1.7",
        ),
        (
            Box::new(|d| {
                d.as_object_mut().unwrap().remove("bomFormat");
            }),
            "bom.cdx.json: $.bomFormat: expected \"CycloneDX\"",
        ),
        (
            Box::new(|d| d["components"][2]["data"][0]["contents"]["url"] = json!("file://tmp/x")),
            "bom.cdx.json: $.components[2].data[0].contents.url: a file:// URL needs an absolute path",
        ),
        (
            Box::new(|d| {
                d["components"][1]["data"][0]["contents"]["url"] = json!("http://h:port/");
            }),
            "bom.cdx.json: $.components[1].data[0].contents.url: not a URL",
        ),
        (
            Box::new(|d| d["components"][5]["properties"][0]["value"] = json!("uid:abc")),
            "bom.cdx.json: $.components[5].properties[0].value: not uid:N, k8s-sa:namespace/name or env:NAME",
        ),
        (
            Box::new(|d| {
                d["metadata"]["component"]["properties"][1]["value"] = json!("no-equals-sign");
            }),
            "bom.cdx.json: $.metadata.component.properties[1].value: runbom:match is key=glob",
        ),
        (
            Box::new(|d| d["services"][2]["properties"][0]["value"] = json!("plugin")),
            "bom.cdx.json: $.services[2].properties[0].value: runbom:kind is `tool`, `service` or `mcp-server`, found \"plugin\"",
        ),
        (
            Box::new(|d| d["services"][2]["properties"][0]["name"] = json!("runbom:knd")),
            "bom.cdx.json: $.services[2].properties[0].name: unknown runbom property",
        ),
        (
            Box::new(|d| d["dependencies"][1]["dependsOn"][0] = json!("model:gpt-5")),
            "bom.cdx.json: $.dependencies[1].dependsOn[0]: unknown bom-ref \"model:gpt-5\"",
        ),
        (
            Box::new(|d| d["services"][1]["bom-ref"] = json!("service:openai-api")),
            "bom.cdx.json: $.services[1].bom-ref: duplicate bom-ref",
        ),
        (
            Box::new(|d| d["components"] = json!({})),
            "bom.cdx.json: $.components: expected an array, found an object",
        ),
        (
            Box::new(|d| {
                d["components"][0].as_object_mut().unwrap().remove("type");
            }),
            "bom.cdx.json: $.components[0]: a component needs a `type`",
        ),
        (
            Box::new(|d| d["components"][3]["properties"][0]["value"] = json!("")),
            "bom.cdx.json: $.components[3].properties[0].value: empty runbom:exec glob",
        ),
        (
            Box::new(|d| {
                d["components"][2]["properties"] =
                    json!([{"name": "runbom:path", "value": "relative/"}]);
            }),
            "bom.cdx.json: $.components[2].properties[0].value: runbom:path needs an absolute path",
        ),
    ];
    for (change, want) in cases {
        let got = refused(change);
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
    let not_json = DeclaredBom::parse("{", "bom.cdx.json")
        .unwrap_err()
        .to_string();
    assert!(not_json.starts_with("bom.cdx.json: not JSON"), "{not_json}");
}

#[test]
fn hot_reload_keeps_the_last_good_bom_when_the_new_one_is_broken() {
    let dir = std::env::temp_dir().join(format!("runbom-aibom-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bom.cdx.json");
    std::fs::write(&path, common::BOM).unwrap();
    let mut watch = BomWatch::load(&path).expect("loads");
    assert_eq!(watch.poll().ok(), Some(false), "unchanged: nothing to do");

    // A valid change takes over.
    let mut doc = reference();
    doc["serialNumber"] = json!("urn:uuid:00000000-0000-4000-8000-000000000002");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    assert_eq!(watch.poll().ok(), Some(true));
    assert_eq!(
        watch.current().serial_number,
        "urn:uuid:00000000-0000-4000-8000-000000000002"
    );

    // A broken one is refused loudly; the last good BOM stays in force.
    doc["services"][3]["endpoints"][0] = json!("not a url");
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = watch
        .poll()
        .expect_err("the broken BOM is refused")
        .to_string();
    assert!(err.contains("$.services[3].endpoints[0]"), "{err}");
    assert_eq!(
        watch.current().serial_number,
        "urn:uuid:00000000-0000-4000-8000-000000000002"
    );
    assert_eq!(watch.current().tools.len(), 5);
    assert_eq!(watch.reload_failures.load(Ordering::Relaxed), 1);
    assert_eq!(
        watch.poll().ok(),
        Some(false),
        "refused once, not at every poll"
    );

    // Truncated mid-write: refused too.
    std::fs::write(&path, "{\"bomFormat\": \"Cyclone").unwrap();
    assert!(watch.poll().is_err());
    assert_eq!(watch.reload_failures.load(Ordering::Relaxed), 2);
    assert_eq!(watch.current().tools.len(), 5);

    // Fixed: the fix takes over.
    std::fs::write(&path, common::BOM).unwrap();
    assert_eq!(watch.poll().ok(), Some(true));
    assert_eq!(
        watch.current().serial_number,
        "urn:uuid:6f1c2b9e-4d7a-4e0b-9a51-52756e626f6d"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_is_refused_at_start() {
    let err = BomWatch::load(std::path::Path::new("/nonexistent/bom.cdx.json")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/bom.cdx.json: cannot read"),
        "{err}"
    );
}
