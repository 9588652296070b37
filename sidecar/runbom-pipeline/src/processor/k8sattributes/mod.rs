//! The `k8sattributes` processor: every resource whose process runs in a pod of this node gets
//! that pod's `k8s.*` and `container.*` attributes (docs/telemetry-contract.md, "Kubernetes").
//!
//! The process is the resource's `process.pid`: the kernel events' own, and for application
//! data the sending process the OTLP receivers found from the connection (never the client's
//! claim). Its cgroup names the container and pod; the pods come from a watch of this node's
//! pods (`runbom_k8s`), one per processor name, shared by the pipelines that list it. What a
//! client sent under the same keys, when it disagrees, is kept under `received.`, and so is any
//! other `k8s.*` it sent for a process in a pod, and every `k8s.*` it sent for a process in no
//! pod (its cgroup names none). Resources of no process (remote clients), of a process gone, or
//! of a pod not indexed yet pass unchanged.

pub mod config;

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
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
use runbom_k8s::{Auth, Place, PodIndex, Resolver};
use runbom_otlp::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::{Telemetry, receiver::sender::resources};

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

/// A started watch: the resolver the stages read, how many complete lists it has had, and
/// what the stages did.
#[derive(Clone)]
pub struct Watch {
    resolver: Arc<Resolver>,
    listed: watch::Receiver<u64>,
    stats: Arc<Stats>,
}

/// What the stages of one processor did (`/metrics`).
#[derive(Default)]
pub struct Stats {
    /// Resources given a pod's attributes.
    pub annotated: AtomicU64,
    /// Resources with a process (or container) that is in no known pod of this node.
    pub unmatched: AtomicU64,
    /// Pods added, modified or deleted by the watch (in the index).
    pub pod_changes: Arc<AtomicU64>,
}

/// Registers the processor's counters.
fn register(telemetry: &Telemetry, w: &Watch) {
    let s = w.stats.clone();
    telemetry.counter_fn(
        "runbom_k8sattributes_annotated_resources_total",
        "Resources given the Kubernetes attributes of their process's pod.",
        move || s.annotated.load(Ordering::Relaxed),
    );
    let s = w.stats.clone();
    telemetry.counter_fn(
        "runbom_k8sattributes_unmatched_resources_total",
        "Resources whose process is in no known pod of this node (given no pod attributes).",
        move || s.unmatched.load(Ordering::Relaxed),
    );
    let listed = w.listed.clone();
    telemetry.counter_fn(
        "runbom_k8sattributes_pod_lists_total",
        "Complete lists of this node's pods (the first, then each re-list after 410 Gone).",
        move || *listed.borrow(),
    );
    let s = w.stats.clone();
    telemetry.counter_fn(
        "runbom_k8sattributes_pod_changes_total",
        "Pods of this node added, modified or deleted by the watch, once in the index.",
        move || s.pod_changes.load(Ordering::Relaxed),
    );
}

/// Starts the watch of `spec.node`'s pods (until `stop`) and registers its counters.
/// Credentials that do not load are logged: data then passes unchanged.
#[must_use]
pub fn start(spec: &K8sSpec, stop: &CancellationToken, telemetry: &Telemetry) -> Watch {
    let index = Arc::new(RwLock::new(PodIndex::default()));
    let (listed_tx, listed) = watch::channel(0);
    let resolver = Arc::new(Resolver::new(index.clone()));
    let stats = Arc::new(Stats::default());
    let (spec, stop, changes) = (spec.clone(), stop.clone(), stats.pod_changes.clone());
    tokio::spawn(async move {
        match runbom_k8s::start(&spec.auth, &spec.node, index, listed_tx, changes).await {
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
    let w = Watch {
        resolver,
        listed,
        stats,
    };
    register(telemetry, &w);
    w
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
        let (annotated, unmatched) = annotate(&watch.resolver, &mut signal);
        watch
            .stats
            .annotated
            .fetch_add(annotated, Ordering::Relaxed);
        watch
            .stats
            .unmatched
            .fetch_add(unmatched, Ordering::Relaxed);
        if tx.send(signal).await.is_err() {
            return;
        }
    }
}

/// Adds the pod's attributes to every resource of `signal` whose process is in a pod; how
/// many resources were annotated, and how many had a process in no known pod.
pub fn annotate(resolver: &Resolver, signal: &mut Signal) -> (u64, u64) {
    let (mut annotated, mut unmatched) = (0, 0);
    // A request holds many resources of few processes: each is resolved once.
    let mut found = Memo::new();
    for resource in resources(signal) {
        let Some(resource) = resource.as_mut() else {
            continue;
        };
        match annotate_resource(resolver, resource, &mut found) {
            Some(true) => annotated += 1,
            Some(false) => unmatched += 1,
            None => {}
        }
    }
    (annotated, unmatched)
}

/// Where a request's processes are: (pid, container id) → their place, pod attributes as
/// `KeyValue`s.
type Memo = std::collections::HashMap<(Option<u32>, Option<String>), Place<Vec<KeyValue>>>;

/// `Some(true)`: annotated; `Some(false)`: a process in no known pod; `None`: no process.
fn annotate_resource(
    resolver: &Resolver,
    resource: &mut Resource,
    memo: &mut Memo,
) -> Option<bool> {
    let attrs = &resource.attributes;
    let pid = attr_int(attrs, PROCESS_PID).and_then(|p| u32::try_from(p).ok());
    let container = attr(attrs, CONTAINER_ID);
    if pid.is_none() && container.is_none() {
        return None;
    }
    let key = (pid, container.map(str::to_owned));
    let place = memo.entry(key).or_insert_with(|| {
        resolver.place(pid, container).map(|found| {
            found
                .into_iter()
                .map(|(key, value)| {
                    if LIST_KEYS.contains(&key.as_str()) {
                        kv_strs(&key, &[value])
                    } else {
                        kv_str(&key, &value)
                    }
                })
                .collect()
        })
    });
    // A process is what its pod says, and a process in no pod is in none: a `k8s.*` the
    // client added (another workload's name, which a BOM's `runbom:match` would take) moves
    // aside as one that disagrees does. A process not known (gone, or its pod not indexed
    // yet) keeps what it sent.
    let found: &[KeyValue] = match place {
        Place::Pod(found) => found,
        Place::NoPod => &[],
        Place::Unknown => return Some(false),
    };
    for kv in resource
        .attributes
        .iter_mut()
        .filter(|kv| kv.key.starts_with("k8s.") && !found.iter().any(|f| f.key == kv.key))
    {
        kv.key.insert_str(0, RECEIVED_PREFIX);
    }
    if found.is_empty() {
        return Some(false);
    }
    for kv in found {
        set(&mut resource.attributes, kv);
    }
    Some(true)
}

/// Sets `kv` among `attrs`: another value under its key is moved under `received.`.
fn set(attrs: &mut Vec<KeyValue>, kv: &KeyValue) {
    let mut present = false;
    for other in attrs.iter_mut().filter(|o| o.key == kv.key) {
        if !present && values_equal(other.value.as_ref(), kv.value.as_ref()) {
            present = true;
        } else {
            other.key.insert_str(0, RECEIVED_PREFIX);
        }
    }
    if !present {
        attrs.push(kv.clone());
    }
}

fn values_equal(a: Option<&AnyValue>, b: Option<&AnyValue>) -> bool {
    a.and_then(|v| v.value.as_ref()) == b.and_then(|v| v.value.as_ref())
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, fs};

    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
    };
    use runbom_aibom::otlp::kv_int;
    use runbom_k8s::{ContainerMeta, PodMeta};

    use super::*;

    const ID: &str = "4a2f0e8a2c1b7a5f4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";
    const UID: &str = "5e2f6c8a-3b1d-4f7e-9a0c-1d2e3f4a5b6c";

    /// A resolver over a `/proc` of one process (pid 4242) in a containerd container.
    fn resolver(dir: &std::path::Path) -> Resolver {
        let uid_ = UID.replace('-', "_");
        fs::create_dir_all(dir.join("4242")).unwrap();
        fs::write(
            dir.join("4242/cgroup"),
            format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
        )
        .unwrap();
        let mut index = PodIndex::default();
        index.apply(PodMeta {
            uid: UID.into(),
            name: "agent-0".into(),
            namespace: "ai".into(),
            node: Some("node-1".into()),
            service_account: Some("agent".into()),
            labels: BTreeMap::from([("app".into(), "support".into())]),
            owner: None,
            containers: vec![ContainerMeta {
                name: "agent".into(),
                image_name: Some("registry/agent".into()),
                image_tag: Some("1.2".into()),
                id: Some(ID.into()),
            }],
        });
        Resolver::with_proc_root(Arc::new(RwLock::new(index)), dir.to_owned())
    }

    fn signal(attributes: Vec<KeyValue>) -> Signal {
        Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                ..ResourceSpans::default()
            }],
        })
    }

    fn attrs(signal: &Signal) -> Vec<KeyValue> {
        let Signal::Traces(r) = signal else {
            unreachable!()
        };
        r.resource_spans[0].resource.clone().unwrap().attributes
    }

    #[test]
    fn the_process_pod_wins_over_what_the_client_claims() {
        let dir = std::env::temp_dir().join(format!("runbom-k8sattr-{}", std::process::id()));
        let r = resolver(&dir);
        let mut s = signal(vec![
            kv_int(PROCESS_PID, 4242),
            kv_str("k8s.namespace.name", "kube-system"),
            kv_str("k8s.pod.name", "agent-0"),
            kv_str("k8s.deployment.name", "billing"),
        ]);
        assert_eq!(annotate(&r, &mut s), (1, 0));
        let a = attrs(&s);
        assert_eq!(attr(&a, "k8s.namespace.name"), Some("ai"));
        assert_eq!(
            attr(&a, "received.k8s.namespace.name"),
            Some("kube-system"),
            "the client's claim is kept aside"
        );
        assert_eq!(attr(&a, "k8s.pod.name"), Some("agent-0"));
        assert!(
            attr(&a, "received.k8s.pod.name").is_none(),
            "an agreeing value stays"
        );
        assert_eq!(
            (
                attr(&a, "k8s.deployment.name"),
                attr(&a, "received.k8s.deployment.name")
            ),
            (None, Some("billing")),
            "a workload the pod is not part of is the client's word"
        );
        assert_eq!(a.iter().filter(|kv| kv.key == "k8s.pod.name").count(), 1);
        assert_eq!(attr(&a, "k8s.pod.label.app"), Some("support"));
        assert_eq!(attr(&a, CONTAINER_ID), Some(ID));
        assert_eq!(
            runbom_aibom::span::attr_strs(&a, "container.image.tags"),
            ["1.2"]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_process_in_no_pod_is_in_none_whatever_it_claims() {
        let dir = std::env::temp_dir().join(format!("runbom-k8sattr-out-{}", std::process::id()));
        let r = resolver(&dir);
        // The node's own process, and a container no pod holds (Docker's, beside the kubelet).
        fs::create_dir_all(dir.join("7")).unwrap();
        fs::write(dir.join("7/cgroup"), "0::/user.slice/session-1.scope\n").unwrap();
        fs::create_dir_all(dir.join("8")).unwrap();
        let docker = "ab".repeat(32);
        fs::write(
            dir.join("8/cgroup"),
            format!("0::/system.slice/docker-{docker}.scope\n"),
        )
        .unwrap();
        for pid in [7, 8] {
            let mut s = signal(vec![
                kv_int(PROCESS_PID, pid),
                kv_str("service.name", "host-agent"),
                kv_str("k8s.deployment.name", "support"),
                kv_str("k8s.pod.name", "agent-0"),
            ]);
            assert_eq!(
                annotate(&r, &mut s),
                (0, 1),
                "pid {pid}: counted as in no pod"
            );
            let a = attrs(&s);
            assert!(
                !a.iter().any(|kv| kv.key.starts_with("k8s.")),
                "pid {pid}: no pod attributes: {a:?}"
            );
            assert_eq!(attr(&a, "received.k8s.deployment.name"), Some("support"));
            assert_eq!(attr(&a, "received.k8s.pod.name"), Some("agent-0"));
            assert_eq!(attr(&a, "service.name"), Some("host-agent"));
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn resources_of_no_process_or_an_unknown_one_pass_unchanged() {
        let dir = std::env::temp_dir().join(format!("runbom-k8sattr-unk-{}", std::process::id()));
        let r = resolver(&dir);
        // A pod's process whose pod the watch has not indexed yet.
        fs::create_dir_all(dir.join("9")).unwrap();
        fs::write(
            dir.join("9/cgroup"),
            "0::/kubepods.slice/kubepods-pod0b1c2d3e_0000_4000_8000_000000000000.slice\n",
        )
        .unwrap();
        for before in [
            vec![
                kv_str("service.name", "no pid"),
                kv_str("k8s.pod.name", "x"),
            ],
            vec![kv_int(PROCESS_PID, 99_999), kv_str("k8s.pod.name", "gone")],
            vec![
                kv_int(PROCESS_PID, 9),
                kv_str("k8s.pod.name", "not-indexed-yet"),
            ],
        ] {
            let mut s = signal(before.clone());
            let (annotated, _) = annotate(&r, &mut s);
            assert_eq!(annotated, 0);
            assert_eq!(attrs(&s), before);
        }
        // A process gone, known by the container id its kernel events carry.
        let mut s = signal(vec![kv_int(PROCESS_PID, 99_999), kv_str(CONTAINER_ID, ID)]);
        annotate(&r, &mut s);
        assert_eq!(attr(&attrs(&s), "k8s.pod.uid"), Some(UID));
        let _ = fs::remove_dir_all(&dir);
    }
}
