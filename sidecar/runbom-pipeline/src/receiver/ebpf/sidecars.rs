//! The `ebpf` receiver as node agent (`sidecars` section): the events of pods that subscribed
//! leave this receiver's path for their sidecars' streams; the rest go on as before.

use std::sync::{Arc, atomic::Ordering::Relaxed};

use runbom_event::KernelEvent;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{ReceiverError, host_name};
use crate::{
    Telemetry,
    node_agent::{
        config::SidecarsConfig,
        hub::Hub,
        server::{self, ServeSettings},
    },
};

/// The server's task.
type ServerTask = JoinHandle<Result<(), ReceiverError>>;

/// Starts the hub and the server; returns the events left for this receiver and the server's
/// task.
pub(super) fn start(
    config: &SidecarsConfig,
    mut events: mpsc::Receiver<Vec<KernelEvent>>,
    kernel_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    telemetry: &Telemetry,
    stop: &CancellationToken,
) -> Result<(mpsc::Receiver<Vec<KernelEvent>>, ServerTask), ReceiverError> {
    let hub = Hub::new(config.hub_settings()?);
    register(telemetry, &hub);
    let server = server::start(
        hub.clone(),
        ServeSettings {
            socket: config.socket.clone(),
            socket_mode: config.socket_mode,
            pod_roots: config.pod_cgroup_roots.clone(),
            host_name: host_name(),
            proc_root: "/proc".into(),
        },
        kernel_dropped,
        stop.clone(),
    )?;
    let (tx, rest) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(batch) = events.recv().await {
            let left = hub.divert(batch);
            if !left.is_empty() && tx.send(left).await.is_err() {
                break;
            }
        }
    });
    Ok((rest, server))
}

fn register(telemetry: &Telemetry, hub: &Arc<Hub>) {
    let h = hub.clone();
    telemetry.counter_fn(
        "runbom_node_agent_events_diverted_total",
        "Kernel events of pods with a subscribed sidecar, taken into their streams.",
        move || h.stats.diverted.load(Relaxed),
    );
    let h = hub.clone();
    telemetry.counter_fn(
        "runbom_node_agent_events_sent_total",
        "Kernel events handed to sidecars' streams.",
        move || h.stats.sent.load(Relaxed),
    );
    let h = hub.clone();
    telemetry.counter_fn(
        "runbom_node_agent_events_missed_total",
        "Kernel events sidecars will never get (slow, or away longer than the backlog holds).",
        move || h.stats.missed.load(Relaxed),
    );
    let h = hub.clone();
    telemetry.counter_fn(
        "runbom_node_agent_connections_refused_total",
        "Connections to the node agent's socket closed at once: the caller's pod (or all \
         callers outside pods) held its share of the connections, or all were taken.",
        move || h.stats.connections_refused.load(Relaxed),
    );
}
