//! The `k8sattributes` processor: every resource whose process runs in a pod of this node gets
//! that pod's `k8s.*` and `container.*` attributes (docs/telemetry-contract.md, "Kubernetes").
//!
//! The process is the resource's `process.pid`: the kernel events' own, and for application
//! data the sending process the OTLP receivers found from the connection (never the client's
//! claim). Its cgroup names the container and pod; the pods come from a watch of this node's
//! pods (`runbom_k8s`), one per processor name, shared by the pipelines that list it. What a
//! client sent under the same keys, when it disagrees, is kept under `received.`. Resources of
//! processes outside pods (and remote clients) pass unchanged.

pub mod config;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue},
    resource::v1::Resource,
};
use runbom_aibom::{
    otlp::{kv_str, kv_strs},
    span::{attr, attr_int},
};
use runbom_event::semconv::{CONTAINER_ID, PROCESS_PID, RECEIVED_PREFIX};
use runbom_k8s::{Auth, PodIndex, Resolver};
use runbom_otlp::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::receiver::sender::resources;

/// `container.image.tags` is a list in the semantic conventions.
const LIST_KEYS: &[&str] = &["container.image.tags"];

/// The processor's runtime settings.
#[derive(Clone, Debug)]
pub struct K8sSpec {
    pub name: String,
    pub auth: Auth,
    /// The node whose pods are watched.
    pub node: String,
    /// Hold the first data until the pods are listed, at most this long.
    pub wait: Option<Duration>,
}

/// A started watch: the resolver the stages read, and how many complete lists it has had.
#[derive(Clone)]
pub struct Watch {
    resolver: Arc<Resolver>,
    listed: watch::Receiver<u64>,
}

/// Starts the watch of `spec.node`'s pods (until `stop`). Credentials that do not load are
/// logged: data then passes unchanged.
#[must_use]
pub fn start(spec: &K8sSpec, stop: &CancellationToken) -> Watch {
    let index = Arc::new(RwLock::new(PodIndex::default()));
    let (listed_tx, listed) = watch::channel(0);
    let resolver = Arc::new(Resolver::new(index.clone()));
    let (spec, stop) = (spec.clone(), stop.clone());
    tokio::spawn(async move {
        match runbom_k8s::start(&spec.auth, &spec.node, index, listed_tx).await {
            Ok(task) => {
                stop.cancelled().await;
                task.abort();
            }
            Err(e) => error!(
                processor = %spec.name,
                error = %e,
                "cannot watch this node's pods: no Kubernetes attributes"
            ),
        }
    });
    Watch { resolver, listed }
}

/// Runs until `rx` closes.
pub async fn run(
    mut rx: mpsc::Receiver<Signal>,
    tx: mpsc::Sender<Signal>,
    mut watch: Watch,
    wait: Option<Duration>,
) {
    if let Some(wait) = wait {
        let listed = watch.listed.wait_for(|n| *n > 0);
        let _ = tokio::time::timeout(wait, listed).await;
    }
    while let Some(mut signal) = rx.recv().await {
        annotate(&watch.resolver, &mut signal);
        if tx.send(signal).await.is_err() {
            return;
        }
    }
}

/// Adds the pod's attributes to every resource of `signal` whose process is in a pod.
pub fn annotate(resolver: &Resolver, signal: &mut Signal) {
    for resource in resources(signal) {
        let Some(resource) = resource.as_mut() else {
            continue;
        };
        annotate_resource(resolver, resource);
    }
}

fn annotate_resource(resolver: &Resolver, resource: &mut Resource) {
    let attrs = &resource.attributes;
    let pid = attr_int(attrs, PROCESS_PID).and_then(|p| u32::try_from(p).ok());
    let container = attr(attrs, CONTAINER_ID);
    if pid.is_none() && container.is_none() {
        return;
    }
    let Some(found) = resolver.attributes(pid, container) else {
        return;
    };
    for (key, value) in found {
        let kv = if LIST_KEYS.contains(&key.as_str()) {
            kv_strs(&key, &[value])
        } else {
            kv_str(&key, &value)
        };
        set(&mut resource.attributes, kv);
    }
}

/// Sets `kv` among `attrs`: another value under its key is moved under `received.`.
fn set(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    let mut present = false;
    for other in attrs.iter_mut().filter(|o| o.key == kv.key) {
        if !present && values_equal(other.value.as_ref(), kv.value.as_ref()) {
            present = true;
        } else {
            other.key.insert_str(0, RECEIVED_PREFIX);
        }
    }
    if !present {
        attrs.push(kv);
    }
}

fn values_equal(a: Option<&AnyValue>, b: Option<&AnyValue>) -> bool {
    a.and_then(|v| v.value.as_ref()) == b.and_then(|v| v.value.as_ref())
}
