//! A directory of declared BOMs (one per workload, e.g. a mounted ConfigMap each): each
//! agent is matched by its own file's `runbom:match` (here on `k8s.*`) and may use only its
//! own file's components; each file is hot-reloaded on its own, and a broken one leaves the
//! others (and its own last good version) in force.

use std::{fs, path::Path};

use runbom_aibom::BomWatch;
use serde_json::{Value, json};

/// A BOM declaring one agent, matched on Kubernetes attributes, and one model.
fn bom(serial: u32, agent: &str, matcher: &str, model: &str) -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:00000000-0000-4000-8000-{serial:012}"),
        "version": 1,
        "metadata": {"component": {
            "type": "application", "name": agent, "bom-ref": "agent",
            "properties": [{"name": "runbom:match", "value": matcher}]
        }},
        "components": [{
            "type": "machine-learning-model", "name": model, "bom-ref": "model",
            "publisher": "openai"
        }]
    })
}

fn write(path: &Path, v: &Value) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn each_agent_gets_its_own_file_and_a_broken_file_leaves_the_others_in_force() {
    let dir = std::env::temp_dir().join(format!("runbom-aibom-dir-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    // As Helm mounts a ConfigMap per workload: one subdirectory each (and its `..data` link).
    let a = dir.join("support/bom.cdx.json");
    let b = dir.join("billing/bom.cdx.json");
    write(
        &a,
        &bom(
            1,
            "support",
            "k8s.deployment.name=support-agent",
            "gpt-4o-mini",
        ),
    );
    write(
        &b,
        &bom(2, "billing", "k8s.namespace.name=billing", "gpt-4.1"),
    );
    fs::create_dir_all(dir.join("..data")).unwrap();
    write(&dir.join("..data/ignored.json"), &json!({"not": "a bom"}));

    let mut watch = BomWatch::load(&dir).expect("the directory loads");
    let merged = watch.current().clone();
    let agents: Vec<&str> = merged.agents.iter().map(|a| a.bom_ref.as_str()).collect();
    assert_eq!(
        agents,
        ["billing/bom.cdx.json#agent", "support/bom.cdx.json#agent"]
    );
    assert!(merged.allowed("support/bom.cdx.json#agent", "support/bom.cdx.json#model"));
    assert!(
        !merged.allowed("support/bom.cdx.json#agent", "billing/bom.cdx.json#model"),
        "an agent may not use another workload's model"
    );
    assert!(merged.allowed("billing/bom.cdx.json#agent", "billing/bom.cdx.json#model"));
    assert_eq!(watch.poll().ok(), Some(false), "unchanged: nothing to do");

    // The support BOM changes (a valid change) while billing's breaks.
    write(
        &a,
        &bom(3, "support", "k8s.deployment.name=support-agent", "o3-mini"),
    );
    fs::write(&b, "{ not json").unwrap();
    let err = watch
        .poll()
        .expect_err("the broken file is reported")
        .to_string();
    assert!(err.contains("billing/bom.cdx.json"), "{err}");
    let merged = watch.current().clone();
    let models: Vec<String> = merged
        .models
        .iter()
        .map(|m| m.name.as_str().to_owned())
        .collect();
    assert_eq!(
        models,
        ["gpt-4.1", "o3-mini"],
        "billing's last good version stays, support's change is in force"
    );
    assert_eq!(
        watch
            .reload_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A file removed takes its agent with it.
    fs::remove_dir_all(dir.join("billing")).unwrap();
    assert_eq!(watch.poll().ok(), Some(true));
    assert_eq!(watch.current().agents.len(), 1);
    let _ = fs::remove_dir_all(&dir);
}
