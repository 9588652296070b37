//! A pod's workload: its controller owner reference, followed one step further for a
//! ReplicaSet (to its Deployment) and a Job (to its CronJob) with a `get` of that object.
//! ReplicaSets and Jobs never change owner, so each is asked once (bounded cache).

use std::collections::HashMap;

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Client};
use tracing::debug;

use crate::meta::Owner;

/// Cached (namespace, kind, name) lookups at most; the cache starts over when full.
const MAX_CACHED: usize = 8192;

/// (namespace, kind, name) of a ReplicaSet or Job.
type Key = (String, &'static str, String);
/// A controller's (kind, name).
type Controller = (String, String);

/// Finds owners, asking the API server for ReplicaSets and Jobs.
pub struct Owners {
    client: Client,
    /// (namespace, kind, name) → that object's controller (kind, name), if any.
    cache: HashMap<Key, Option<Controller>>,
}

fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

impl Owners {
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: HashMap::new(),
        }
    }

    /// The owner of `pod` (`None`: a bare pod).
    pub async fn of(&mut self, pod: &Pod) -> Option<Owner> {
        let r = controller(pod.metadata.owner_references.as_ref())?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = r.name.clone();
        Some(match r.kind.as_str() {
            "ReplicaSet" => match self.parent(&ns, "ReplicaSet", &name).await {
                Some((kind, deployment)) if kind == "Deployment" => Owner::Deployment {
                    replicaset: name,
                    name: deployment,
                },
                _ => Owner::ReplicaSet(name),
            },
            "Job" => match self.parent(&ns, "Job", &name).await {
                Some((kind, cronjob)) if kind == "CronJob" => Owner::CronJob {
                    job: name,
                    name: cronjob,
                },
                _ => Owner::Job(name),
            },
            "StatefulSet" => Owner::StatefulSet(name),
            "DaemonSet" => Owner::DaemonSet(name),
            kind => Owner::Other {
                kind: kind.to_owned(),
                name,
            },
        })
    }

    /// The controller of the ReplicaSet or Job `name`.
    async fn parent(&mut self, ns: &str, kind: &'static str, name: &str) -> Option<Controller> {
        let key = (ns.to_owned(), kind, name.to_owned());
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let refs = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|o| o.and_then(|o| o.metadata.owner_references)),
            _ => Api::<Job>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|o| o.and_then(|o| o.metadata.owner_references)),
        };
        let found = match refs {
            Ok(refs) => controller(refs.as_ref()).map(|r| (r.kind.clone(), r.name.clone())),
            Err(e) => {
                // Not cached: a later pod of the same owner asks again.
                debug!(%kind, %ns, %name, error = %e, "owner lookup failed");
                return None;
            }
        };
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(key, found.clone());
        found
    }
}
