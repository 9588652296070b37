use super::*;

/// A Pod as the API server returns it for a Deployment's replica (shape of the Kubernetes
/// documentation's Deployment example, `nginx-deployment`, with its kubelet-set status).
pub(crate) const POD_JSON: &str = r#"{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {
    "name": "nginx-deployment-66b6c48dd5-4jw2x", "namespace": "default",
    "uid": "5e2f6c8a-3b1d-4f7e-9a0c-1d2e3f4a5b6c", "resourceVersion": "1200",
    "labels": {"app": "nginx", "pod-template-hash": "66b6c48dd5"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
      "name": "nginx-deployment-66b6c48dd5", "uid": "0b6a8f1e-9a49-4a43-b1a2-1f4e0f7c2d11",
      "controller": true, "blockOwnerDeletion": true}]
  },
  "spec": {
    "nodeName": "node-1", "serviceAccountName": "default",
    "containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]
  },
  "status": {
    "phase": "Running",
    "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
      "image": "docker.io/library/nginx:1.14.2", "imageID": "docker.io/library/nginx@sha256:f7988fb6c02e0ce69257d9bd9cf37ae20a60f1df7563c3a2a6abe24160306b8d",
      "containerID": "containerd://4a2f0e8a2c1b7a5f4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b"}]
  }
}"#;

#[test]
fn reads_a_pod_and_its_attributes() {
    let pod: Pod = serde_json::from_str(POD_JSON).unwrap();
    let mut meta = PodMeta::from_pod(&pod).unwrap();
    meta.owner = Some(Owner::Deployment {
        replicaset: "nginx-deployment-66b6c48dd5".into(),
        name: "nginx-deployment".into(),
    });
    let c = meta
        .container_by_id("4a2f0e8a2c1b7a5f4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b")
        .unwrap();
    let attrs = meta.attributes(Some(c));
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        get("k8s.pod.name"),
        Some("nginx-deployment-66b6c48dd5-4jw2x")
    );
    assert_eq!(
        get("k8s.pod.uid"),
        Some("5e2f6c8a-3b1d-4f7e-9a0c-1d2e3f4a5b6c")
    );
    assert_eq!(get("k8s.namespace.name"), Some("default"));
    assert_eq!(get("k8s.node.name"), Some("node-1"));
    assert_eq!(get("k8s.container.name"), Some("nginx"));
    assert_eq!(get("container.image.name"), Some("nginx"));
    assert_eq!(get("container.image.tags"), Some("1.14.2"));
    assert_eq!(get("k8s.deployment.name"), Some("nginx-deployment"));
    assert_eq!(
        get("k8s.replicaset.name"),
        Some("nginx-deployment-66b6c48dd5")
    );
    assert_eq!(get("k8s.pod.label.app"), Some("nginx"));
    assert_eq!(get("k8s.serviceaccount.name"), Some("default"));
}

#[test]
fn image_references() {
    let s = |i| split_image(i);
    let both = |n: &str, t: Option<&str>| (Some(n.to_owned()), t.map(str::to_owned));
    assert_eq!(s("nginx:1.14.2"), both("nginx", Some("1.14.2")));
    assert_eq!(s("nginx"), both("nginx", None));
    assert_eq!(
        s("registry:5000/team/agent"),
        both("registry:5000/team/agent", None)
    );
    assert_eq!(
        s("registry:5000/team/agent:v2@sha256:abcd"),
        both("registry:5000/team/agent", Some("v2"))
    );
    assert_eq!(strip_scheme("cri-o://abc"), "abc");
}
