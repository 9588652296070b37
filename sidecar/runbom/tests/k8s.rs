//! Kubernetes metadata end to end: runbom's `k8sattributes` processor against a stand-in API
//! server speaking the real protocol (HTTPS, bearer token, list + watch from resourceVersion,
//! bookmarks, a 410 Gone that forces a re-list; `tests/kube_apiserver.py`) fed with the
//! Kubernetes documentation's own Pod and ReplicaSet objects, and real processes placed in
//! cgroups named as containerd and CRI-O name them (systemd driver) on this machine's cgroup
//! v2. Every kernel span and log and every application span of those processes must carry
//! their pod's `k8s.*` attributes; a pod deleted and re-created with the same name must give
//! its new uid. The `aibom` processor after it loads a directory of two BOMs, one per
//! workload, matched on `k8s.*`: each pod's agent is judged against its own.
//!
//! Needs root (probes, cgroups) and the project's venv (`bash scripts/setup.sh`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use runbom_testkit::{
    Ready, Runbom, TempDir,
    config::{pipeline, service},
    eventually, free_port, http_get,
    kube::{KubeApi, PodCgroup, Runtime, fixture},
    metrics,
    pki::Pki,
    python_bin, runbom_bin, test_script,
};
use serde_json::{Value, json};

const NODE: &str = "runbom-test-node";
/// Made up and assembled, so that no credential-shaped literal sits in the source.
const TOKEN: &str = concat!("standin", "-sa-token-", "0123456789");

/// A fresh (pod uid, container id) pair.
fn ids(salt: u32) -> (String, String) {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let h = format!("{n:032x}{:08x}{salt:08x}", std::process::id());
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    (uid, format!("{h}{h}")[..64].to_owned())
}

/// A fixture pod with this test's uid, container id and node.
fn pod(file: &str, uid: &str, container: &str) -> Value {
    let mut pod = fixture(file);
    pod["metadata"]["uid"] = uid.into();
    pod["spec"]["nodeName"] = NODE.into();
    let status = &mut pod["status"]["containerStatuses"][0]["containerID"];
    let scheme = status
        .as_str()
        .expect("containerID")
        .replace("CONTAINER", container);
    *status = scheme.into();
    pod
}

/// Runs `tests/sdk_client.py` (a real OpenTelemetry SDK exporting one trace to runbom) inside
/// `cgroup`; its pid.
fn agent_in(cgroup: &PodCgroup, grpc: u16) -> u32 {
    sdk_client(cgroup.command(&python_bin(), &sdk_client_args(grpc)))
}

/// `cmd` (`tests/sdk_client.py`) with `claim` (`key=value`) added to its resource through
/// `OTEL_RESOURCE_ATTRIBUTES`, which the SDK reads; its pid.
fn claiming(mut cmd: std::process::Command, claim: &str) -> u32 {
    cmd.env("OTEL_RESOURCE_ATTRIBUTES", claim);
    sdk_client(cmd)
}

fn sdk_client_args(grpc: u16) -> [String; 5] {
    [
        test_script("sdk_client.py").display().to_string(),
        "--protocol".into(),
        "grpc".into(),
        "--endpoint".into(),
        format!("127.0.0.1:{grpc}"),
    ]
}

fn sdk_client(mut cmd: std::process::Command) -> u32 {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the agent");
    let pid = child.id();
    let out = child.wait_with_output().expect("agent output");
    assert!(
        out.status.success(),
        "the agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

/// A BOM for one workload: its agent matched on a `k8s.*` attribute, the models and tools it
/// may use.
fn workload_bom(serial: u32, matcher: &str, models: &[&str], tools: &[&str]) -> String {
    let mut components: Vec<Value> = models
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"type": "machine-learning-model", "name": m, "bom-ref": format!("model-{i}"), "publisher": "openai"}))
        .collect();
    components.push(
        json!({"type": "application", "name": "agent", "bom-ref": "agent",
        "properties": [{"name": "runbom:match", "value": matcher}]}),
    );
    let services: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t, "bom-ref": format!("tool-{t}"), "properties": [{"name": "runbom:kind", "value": "tool"}]}))
        .collect();
    json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "serialNumber": format!("urn:uuid:00000000-0000-4000-8000-{serial:012}"),
        "components": components, "services": services
    })
    .to_string()
}

/// Per application span: its resource's `process.pid`, its name, and its `aibom.agent.ref`
/// and `aibom.drift`.
fn judged_spans(file: &Path) -> Vec<(String, String, Option<String>, Option<bool>)> {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let doc: Value = serde_json::from_str(line).expect("OTLP/JSON line");
        for r in doc["resourceSpans"].as_array().into_iter().flatten() {
            let attr = |attrs: &Value, key: &str| -> Option<Value> {
                attrs
                    .as_array()?
                    .iter()
                    .find(|kv| kv["key"] == key)
                    .map(|kv| kv["value"].clone())
            };
            let pid = attr(&r["resource"]["attributes"], "process.pid")
                .map(|v| {
                    v["intValue"]
                        .as_str()
                        .map_or_else(|| v["intValue"].to_string(), str::to_owned)
                })
                .unwrap_or_default();
            for ss in r["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let a = &span["attributes"];
                    out.push((
                        pid.clone(),
                        span["name"].as_str().unwrap_or_default().to_owned(),
                        attr(a, "aibom.agent.ref")
                            .and_then(|v| v["stringValue"].as_str().map(str::to_owned)),
                        attr(a, "aibom.drift").and_then(|v| v["boolValue"].as_bool()),
                    ));
                }
            }
        }
    }
    out
}

/// Resource attributes (strings and ints as text) and item scopes, per resource of `file`.
fn resources(file: &Path, layers: [&str; 3]) -> Vec<(BTreeMap<String, String>, Vec<String>)> {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let doc: Value = serde_json::from_str(line).expect("OTLP/JSON line");
        for r in doc[layers[0]].as_array().into_iter().flatten() {
            let attrs = r["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| {
                    let v = &kv["value"];
                    let text = v["stringValue"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| v["intValue"].as_str().map(str::to_owned))
                        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
                        .or_else(|| {
                            v["arrayValue"]["values"][0]["stringValue"]
                                .as_str()
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                    (kv["key"].as_str().unwrap_or_default().to_owned(), text)
                })
                .collect();
            let scopes = r[layers[1]]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    let name = s["scope"]["name"].as_str().unwrap_or_default().to_owned();
                    let n = s[layers[2]].as_array().map_or(0, Vec::len);
                    std::iter::repeat_n(name, n)
                })
                .collect();
            out.push((attrs, scopes));
        }
    }
    out
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, told in order")]
fn kernel_and_application_telemetry_of_pods_carry_their_kubernetes_metadata() {
    let dir = TempDir::new("k8s-metadata");
    let pki = Pki::new();
    let mut api = KubeApi::start(&dir, &pki, NODE, TOKEN);
    let kubeconfig = api.kubeconfig(&dir, &pki, TOKEN);
    api.put(&fixture("deployment-replicaset.json"));
    let (uid_a, id_a) = ids(1);
    let (uid_b, id_b) = ids(2);
    api.apply(&pod("deployment-pod.json", &uid_a, &id_a));
    api.apply(&pod("statefulset-pod.json", &uid_b, &id_b));
    let cg_a = PodCgroup::create("a", Runtime::Containerd, &uid_a, &id_a);
    let cg_b = PodCgroup::create("b", Runtime::CriO, &uid_b, &id_b);

    // One BOM per workload, each in its own directory as a mounted ConfigMap would be.
    let boms = dir.join("boms");
    for (sub, bom) in [
        (
            "nginx-deployment",
            workload_bom(
                1,
                "k8s.deployment.name=nginx-deployment",
                &["gpt-4o", "text-embedding-3-small"],
                &["get_weather"],
            ),
        ),
        (
            "web",
            workload_bom(2, "k8s.statefulset.name=web", &["claude-*"], &[]),
        ),
    ] {
        fs::create_dir_all(boms.join(sub)).expect("bom dir");
        fs::write(boms.join(sub).join("bom.cdx.json"), bom).expect("bom");
    }

    let (grpc, admin) = (free_port(), free_port());
    let out = dir.join("out");
    let config = dir.write(
        "runbom.yaml",
        &format!(
            "receivers:
  ebpf: {{}}
  otlp:
    protocols:
      grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kubeconfig: {kubeconfig}
    filter: {{ node: {NODE} }}
    wait_for_metadata: true
  aibom:
    bom: {boms}
    wait: 500ms
  batch: {{ timeout: 200ms }}
exporters:
  file:
    path: {out}
{service}",
            kubeconfig = kubeconfig.display(),
            boms = boms.display(),
            out = out.display(),
            service = service(
                &format!("127.0.0.1:{admin}"),
                &(pipeline(
                    "traces",
                    &["otlp", "ebpf"],
                    &["k8sattributes", "aibom", "batch"],
                    &["file"]
                ) + &pipeline("logs", &["ebpf"], &["k8sattributes", "batch"], &["file"])),
            ),
        ),
    );
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::ProbesAttached);
    api.wait_for("listed ");
    api.wait_for("watching ");
    let pid_a = agent_in(&cg_a, grpc);
    let pid_b = agent_in(&cg_b, grpc);
    // A process in no pod claims pod b's container and pod a's Deployment, and exits: its word
    // names no pod.
    let mut host = std::process::Command::new(python_bin());
    host.args(sdk_client_args(grpc));
    let forger = claiming(
        host,
        &format!("container.id={id_b},k8s.deployment.name=nginx-deployment"),
    );
    // Pod b's process claims the Deployment: it is still the StatefulSet's, judged by its BOM.
    let claim_b = claiming(
        cg_b.command(&python_bin(), &sdk_client_args(grpc)),
        "k8s.deployment.name=nginx-deployment",
    );

    // History compacted: the open watch gets 410 Gone and runbom must list again.
    api.compact();
    api.wait_for("listed ");
    api.wait_for("watching ");

    // The Deployment's pod is replaced by one of the same name, with a new uid and container.
    // Sent is not yet indexed (runbom's watch task applies it in its own time; under load the
    // new container's first events were annotated before it): the new container starts once
    // runbom counted both changes, as a kubelet starts one long after the pod was bound.
    let changes = || {
        metrics(admin)
            .get("runbom_k8sattributes_pod_changes_total")
            .copied()
            .unwrap_or(0)
    };
    let before = changes();
    let (uid_a2, id_a2) = ids(3);
    api.delete("default", "nginx-deployment-86dcfdf4c6-6nkq2");
    let rv = api.apply(&pod("deployment-pod.json", &uid_a2, &id_a2));
    api.wait_delivered(rv);
    assert!(
        eventually(Duration::from_secs(10), || changes() >= before + 2),
        "runbom did not index the deleted and the new pod"
    );
    drop(cg_a);
    let cg_a2 = PodCgroup::create("a2", Runtime::Containerd, &uid_a2, &id_a2);
    let pid_a2 = agent_in(&cg_a2, grpc);
    std::thread::sleep(Duration::from_secs(1)); // a batch timeout and the ring's flush
    let (code, metrics) = http_get(admin, "/metrics");
    assert_eq!(code, 200);
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{metrics}"))
    };
    assert!(
        counter("runbom_k8sattributes_pod_lists_total") >= 2,
        "{metrics}"
    );
    assert!(
        counter("runbom_k8sattributes_annotated_resources_total") > 0,
        "{metrics}"
    );
    let (status, log) = runbom.stop();
    assert!(status.success(), "runbom exited with {status}:\n{log}");

    // What runbom asked: only this node's pods, bookmarks, a re-list after the 410, the owner.
    let requests = api.requests();
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .collect();
    assert!(
        lists.len() >= 2,
        "a list, and a re-list after 410 Gone: {requests:#?}"
    );
    assert!(
        requests.iter().all(|r| !r.starts_with("GET /api/v1/pods")
            || r.contains("fieldSelector=spec.nodeName%3Drunbom-test-node")),
        "every pod request is restricted to this node: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("allowWatchBookmarks=true")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r
                == "GET /apis/apps/v1/namespaces/default/replicasets/nginx-deployment-86dcfdf4c6"),
        "{requests:#?}"
    );

    let expected = |uid: &str, id: &str, deployment: bool| -> BTreeMap<&str, String> {
        let mut e = BTreeMap::from([
            ("k8s.pod.uid", uid.to_owned()),
            ("k8s.namespace.name", "default".to_owned()),
            ("k8s.node.name", NODE.to_owned()),
            ("k8s.container.name", "nginx".to_owned()),
            ("container.id", id.to_owned()),
            ("k8s.pod.label.app", "nginx".to_owned()),
        ]);
        if deployment {
            e.insert("k8s.pod.name", "nginx-deployment-86dcfdf4c6-6nkq2".into());
            e.insert("k8s.deployment.name", "nginx-deployment".into());
            e.insert("k8s.replicaset.name", "nginx-deployment-86dcfdf4c6".into());
            e.insert("container.image.name", "nginx".into());
            e.insert("container.image.tags", "1.14.2".into());
        } else {
            e.insert("k8s.pod.name", "web-0".into());
            e.insert("k8s.statefulset.name", "web".into());
            e.insert("container.image.name", "registry.k8s.io/nginx-slim".into());
            e.insert("container.image.tags", "0.24".into());
        }
        e
    };
    let cases = [
        (pid_a, expected(&uid_a, &id_a, true)),
        (pid_b, expected(&uid_b, &id_b, false)),
        (pid_a2, expected(&uid_a2, &id_a2, true)),
    ];
    let spans = resources(
        &out.join("traces.jsonl"),
        ["resourceSpans", "scopeSpans", "spans"],
    );
    let logs = resources(
        &out.join("logs.jsonl"),
        ["resourceLogs", "scopeLogs", "logRecords"],
    );
    for (pid, want) in &cases {
        let mut kernel_spans = 0;
        let mut app_spans = 0;
        let mut kernel_logs = 0;
        let mut events = BTreeSet::new();
        for (is_log, (attrs, scopes)) in spans
            .iter()
            .map(|r| (false, r))
            .chain(logs.iter().map(|r| (true, r)))
        {
            if attrs.get("process.pid") != Some(&pid.to_string()) {
                continue;
            }
            for (k, v) in want {
                assert_eq!(
                    attrs.get(*k),
                    Some(v),
                    "{k} of pid {pid}'s {} resource {attrs:#?}",
                    if is_log { "log" } else { "span" }
                );
            }
            for s in scopes {
                events.insert(s.clone());
                match (is_log, s == "runbom.kernel") {
                    (false, true) => kernel_spans += 1,
                    (false, false) => app_spans += 1,
                    (true, _) => kernel_logs += 1,
                }
            }
        }
        assert!(
            kernel_spans > 0 && app_spans > 0 && kernel_logs > 0,
            "pid {pid}: {kernel_spans} kernel spans, {app_spans} application spans, \
             {kernel_logs} kernel logs (scopes {events:?})"
        );
    }

    let claimed: Vec<_> = spans
        .iter()
        .filter(|(attrs, scopes)| {
            attrs.get("process.pid") == Some(&forger.to_string())
                && scopes.iter().all(|s| s != "runbom.kernel")
        })
        .map(|(attrs, _)| attrs)
        .collect();
    assert!(!claimed.is_empty(), "the forger's own spans were exported");
    for attrs in claimed {
        assert_eq!(
            (
                attrs.get("received.container.id"),
                attrs.get("container.id")
            ),
            (Some(&id_b), None),
            "a claimed container is the client's word: {attrs:#?}"
        );
        assert!(!attrs.contains_key("k8s.pod.uid"), "{attrs:#?}");
        assert_eq!(
            (
                attrs
                    .get("received.k8s.deployment.name")
                    .map(String::as_str),
                attrs.get("k8s.deployment.name")
            ),
            (Some("nginx-deployment"), None),
            "a process in no pod is no Deployment's: {attrs:#?}"
        );
    }
    let claimed_b: Vec<_> = spans
        .iter()
        .filter(|(attrs, _)| attrs.get("process.pid") == Some(&claim_b.to_string()))
        .map(|(attrs, _)| attrs)
        .collect();
    assert!(
        !claimed_b.is_empty(),
        "pod b's claiming process was exported"
    );
    for attrs in claimed_b {
        assert_eq!(
            attrs.get("k8s.statefulset.name").map(String::as_str),
            Some("web")
        );
        assert_eq!(attrs.get("k8s.deployment.name"), None, "{attrs:#?}");
    }

    // Each pod's agent judged against its own BOM: the Deployment's may call gpt-4o, the
    // StatefulSet's (whose BOM declares only Claude models) may not.
    let judged = judged_spans(&out.join("traces.jsonl"));
    let chat = |pid: u32| {
        judged
            .iter()
            .find(|(p, name, _, _)| *p == pid.to_string() && name == "chat gpt-4o")
            .unwrap_or_else(|| panic!("pid {pid}'s chat span in {judged:#?}"))
    };
    for pid in [pid_a, pid_a2] {
        let (_, _, agent, drift) = chat(pid);
        assert_eq!(
            agent.as_deref(),
            Some("nginx-deployment/bom.cdx.json#agent")
        );
        assert_eq!(
            *drift,
            Some(false),
            "gpt-4o is declared for the Deployment's agent"
        );
    }
    for pid in [pid_b, claim_b] {
        let (_, _, agent, drift) = chat(pid);
        assert_eq!(agent.as_deref(), Some("web/bom.cdx.json#agent"));
        assert_eq!(
            *drift,
            Some(true),
            "gpt-4o is not declared for the StatefulSet's agent"
        );
    }
    drop((cg_b, cg_a2));
}
