//! What runbom keeps of a Pod, and its resource attributes (OpenTelemetry semantic
//! conventions, `k8s.*` and `container.*`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The workload that owns a pod, found through its controller owner reference (and the
/// ReplicaSet's or Job's own, for a Deployment or a CronJob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Deployment {
        replicaset: String,
        name: String,
    },
    ReplicaSet(String),
    StatefulSet(String),
    DaemonSet(String),
    CronJob {
        job: String,
        name: String,
    },
    Job(String),
    /// Another kind (a custom controller's): `k8s.<kind lower-cased>.name`.
    Other {
        kind: String,
        name: String,
    },
}

impl Owner {
    /// The owner's attributes (`k8s.deployment.name`, `k8s.replicaset.name`, ...).
    #[must_use]
    pub fn attributes(&self) -> Vec<(String, String)> {
        let one = |k: &str, v: &str| (format!("k8s.{k}.name"), v.to_owned());
        match self {
            Self::Deployment { replicaset, name } => {
                vec![one("replicaset", replicaset), one("deployment", name)]
            }
            Self::ReplicaSet(n) => vec![one("replicaset", n)],
            Self::StatefulSet(n) => vec![one("statefulset", n)],
            Self::DaemonSet(n) => vec![one("daemonset", n)],
            Self::CronJob { job, name } => vec![one("job", job), one("cronjob", name)],
            Self::Job(n) => vec![one("job", n)],
            Self::Other { kind, name } => vec![one(&kind.to_ascii_lowercase(), name)],
        }
    }
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// `container.image.name`: the image reference without tag or digest.
    pub image_name: Option<String>,
    /// `container.image.tags`: the tag the pod spec names, if any.
    pub image_tag: Option<String>,
    /// The runtime's id, once the kubelet reported it (`containerStatuses[].containerID`
    /// without its `containerd://` scheme).
    pub id: Option<String>,
}

/// What runbom keeps of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    pub service_account: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<Owner>,
    /// Init, regular and ephemeral containers.
    pub containers: Vec<ContainerMeta>,
}

impl PodMeta {
    /// Reads a Pod (owner left to [`crate::owner`]); `None` without a uid or a name.
    #[must_use]
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let m = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut containers: Vec<ContainerMeta> = Vec::new();
        if let Some(spec) = spec {
            let specs = spec
                .containers
                .iter()
                .map(|c| (&c.name, c.image.as_deref()));
            let inits = spec.init_containers.iter().flatten();
            let inits = inits.map(|c| (&c.name, c.image.as_deref()));
            let eph = spec.ephemeral_containers.iter().flatten();
            let eph = eph.map(|c| (&c.name, c.image.as_deref()));
            for (name, image) in specs.chain(inits).chain(eph) {
                let (image_name, image_tag) = image.map(split_image).unwrap_or_default();
                containers.push(ContainerMeta {
                    name: name.clone(),
                    image_name,
                    image_tag,
                    id: None,
                });
            }
        }
        if let Some(status) = status {
            let statuses = status.container_statuses.iter().flatten();
            let statuses = statuses.chain(status.init_container_statuses.iter().flatten());
            let statuses = statuses.chain(status.ephemeral_container_statuses.iter().flatten());
            for s in statuses {
                let id = s.container_id.as_deref().map(strip_scheme);
                if let Some(c) = containers.iter_mut().find(|c| c.name == s.name) {
                    c.id = id.filter(|i| !i.is_empty()).map(str::to_owned);
                }
            }
        }
        Some(Self {
            uid: m.uid.clone()?,
            name: m.name.clone()?,
            namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
            node: spec.and_then(|s| s.node_name.clone()),
            service_account: spec.and_then(|s| s.service_account_name.clone()),
            labels: m.labels.clone().unwrap_or_default(),
            owner: None,
            containers,
        })
    }

    /// The container with runtime id `id`.
    #[must_use]
    pub fn container_by_id(&self, id: &str) -> Option<&ContainerMeta> {
        self.containers.iter().find(|c| c.id.as_deref() == Some(id))
    }

    /// The pod's attributes and, when known, one container's.
    #[must_use]
    pub fn attributes(&self, container: Option<&ContainerMeta>) -> Vec<(String, String)> {
        let mut a = vec![
            ("k8s.pod.name".to_owned(), self.name.clone()),
            ("k8s.pod.uid".to_owned(), self.uid.clone()),
            ("k8s.namespace.name".to_owned(), self.namespace.clone()),
        ];
        if let Some(node) = &self.node {
            a.push(("k8s.node.name".into(), node.clone()));
        }
        if let Some(sa) = &self.service_account {
            a.push(("k8s.serviceaccount.name".into(), sa.clone()));
        }
        if let Some(owner) = &self.owner {
            a.extend(owner.attributes());
        }
        for (k, v) in &self.labels {
            a.push((format!("k8s.pod.label.{k}"), v.clone()));
        }
        if let Some(c) = container {
            a.push(("k8s.container.name".into(), c.name.clone()));
            if let Some(id) = &c.id {
                a.push(("container.id".into(), id.clone()));
            }
            if let Some(n) = &c.image_name {
                a.push(("container.image.name".into(), n.clone()));
            }
            if let Some(t) = &c.image_tag {
                a.push(("container.image.tags".into(), t.clone()));
            }
        }
        a
    }
}

/// `containerd://<id>` → `<id>`.
fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, id)| id)
}

/// `registry:5000/team/agent:1.2@sha256:…` → (`registry:5000/team/agent`, `1.2`).
fn split_image(image: &str) -> (Option<String>, Option<String>) {
    let image = image.split_once('@').map_or(image, |(i, _)| i);
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rsplit_once(':') {
        Some((_, tag)) => {
            let name = &image[..image.len() - tag.len() - 1];
            (Some(name.to_owned()), Some(tag.to_owned()))
        }
        None => (Some(image.to_owned()), None),
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
