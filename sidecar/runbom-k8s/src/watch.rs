//! The watch of this node's pods: list, then watch from the list's resourceVersion (with
//! bookmarks), re-listing when the API server answers 410 Gone — kube's `watcher`. Each pod
//! is read into a [`PodMeta`] (owner looked up) and the shared [`PodIndex`] follows.

use std::{
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{PodIndex, meta::PodMeta, owner::Owners};

/// How runbom authenticates to the API server.
#[derive(Clone, Debug)]
pub enum Auth {
    /// The pod's service account: token and CA under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`, address from `KUBERNETES_SERVICE_*`.
    ServiceAccount,
    /// A kubeconfig file (its current context): this path, else `$KUBECONFIG`, else
    /// `~/.kube/config`.
    KubeConfig(Option<PathBuf>),
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("in-cluster credentials: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("kubeconfig {path}: {source}")]
    KubeConfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Reads a kubeconfig file named in the configuration, so that a wrong path or a file that is
/// not a kubeconfig stops runbom at start (the service account's files exist only in a pod,
/// and are read when the watch starts).
pub fn check(auth: &Auth) -> Result<(), WatchError> {
    if let Auth::KubeConfig(Some(path)) = auth {
        Kubeconfig::read_from(path).map_err(|source| WatchError::KubeConfig {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

async fn client(auth: &Auth) -> Result<Client, WatchError> {
    let config = match auth {
        Auth::ServiceAccount => Config::incluster()?,
        Auth::KubeConfig(path) => {
            let shown = path.as_ref().map_or_else(
                || "($KUBECONFIG or ~/.kube/config)".to_owned(),
                |p| p.display().to_string(),
            );
            let err = |source| WatchError::KubeConfig {
                path: shown.clone(),
                source,
            };
            let options = KubeConfigOptions::default();
            match path {
                Some(p) => {
                    let file = Kubeconfig::read_from(p).map_err(err)?;
                    Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(err)?
                }
                None => Config::from_kubeconfig(&options).await.map_err(err)?,
            }
        }
    };
    Ok(Client::try_from(config)?)
}

/// Starts watching the pods of `node` into `index`; `listed` counts the completed lists (the
/// first, then each re-list), `changes` the pods added, modified or deleted since, once the
/// index has them. Fails only on credentials; the watch itself retries (with backoff) for as
/// long as runbom runs.
pub async fn start(
    auth: &Auth,
    node: &str,
    index: Arc<RwLock<PodIndex>>,
    listed: watch::Sender<u64>,
    changes: Arc<AtomicU64>,
) -> Result<JoinHandle<()>, WatchError> {
    let client = client(auth).await?;
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let node = node.to_owned();
    Ok(tokio::spawn(async move {
        let mut owners = Owners::new(client);
        let mut listing: Vec<PodMeta> = Vec::new();
        let mut events = std::pin::pin!(watcher(api, config).default_backoff());
        loop {
            let event = match events.try_next().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    warn!(node = %node, error = %e, "pod watch failed; retrying");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(pod) => {
                    if let Some(meta) = read(&mut owners, &pod).await {
                        listing.push(meta);
                    }
                }
                watcher::Event::InitDone => {
                    let pods = std::mem::take(&mut listing);
                    let n = pods.len();
                    if let Ok(mut index) = index.write() {
                        index.replace(pods);
                    }
                    listed.send_modify(|n| *n += 1);
                    info!(node = %node, pods = n, "pods of this node listed");
                }
                watcher::Event::Apply(pod) => {
                    if let Some(meta) = read(&mut owners, &pod).await
                        && let Ok(mut index) = index.write()
                    {
                        index.apply(meta);
                    }
                    changes.fetch_add(1, Ordering::Relaxed);
                }
                watcher::Event::Delete(pod) => {
                    if let Some(uid) = pod.metadata.uid.as_deref()
                        && let Ok(mut index) = index.write()
                    {
                        index.remove(uid);
                    }
                    changes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }))
}

async fn read(owners: &mut Owners, pod: &Pod) -> Option<PodMeta> {
    let mut meta = PodMeta::from_pod(pod)?;
    meta.owner = owners.of(pod).await;
    Some(meta)
}
