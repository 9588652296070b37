//! The `node_agent` receiver: a sidecar's kernel events, from the node agent's stream
//! (`proto/node_agent.proto`) instead of probes of its own. It needs no privilege: the node
//! agent decides what it gets by its cgroup. Events go where the `ebpf` receiver's go (the
//! correlate processor, else converted into requests).
//!
//! It keeps the last sequence number it handed on and resumes after it when the stream
//! breaks; what it will never get (a `Gap`, or a jump in the numbers) is counted
//! (`runbom_node_agent_stream_missed_total`) and logged. A restarted sidecar starts from
//! what the node agent handed its predecessor, so a gap while it was away is counted too.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use hyper_util::rt::TokioIo;
use runbom_event::KernelEvent;
use runbom_otlp::ConvertOptions;
use tokio::{net::UnixStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Streaming,
    codegen::http::Uri,
    transport::{Channel, Endpoint},
};
use tracing::{info, warn};

use super::{
    ReceiverError,
    ebpf::{EventCounter, deliver},
};
use crate::{
    Telemetry,
    component::{ReceiverContext, Started},
    node_agent::{
        convert,
        proto::{
            self, StreamMessage, SubscribeRequest, node_agent_client::NodeAgentClient,
            stream_message::Message,
        },
    },
};

pub mod config;

use config::NodeAgentConfig;

/// What the stream brought, for `/metrics`.
#[derive(Debug, Default)]
struct StreamStats {
    received: AtomicU64,
    missed: AtomicU64,
    unreadable: AtomicU64,
    kernel_dropped: AtomicU64,
}

/// Subscribes once (a refusal fails the start with the node agent's reason; an absent node
/// agent is retried in the background), then reads until `stop`.
async fn start(
    config: &NodeAgentConfig,
    ctx: ReceiverContext<'_>,
) -> Result<Started, ReceiverError> {
    let ReceiverContext {
        ingest,
        kernel_events: correlate,
        telemetry,
        stop,
        ..
    } = ctx;
    let counts = Arc::new(StreamStats::default());
    register(telemetry, &counts);
    let mut reader = Reader {
        socket: config.socket.clone(),
        pod_cgroup: config.pod_cgroup.clone(),
        reconnect: config.reconnect_interval,
        last: 0,
        stats: counts,
    };
    let first = match reader.subscribe().await {
        Ok(s) => Some(s),
        Err(status) if refused(&status) => {
            return Err(ReceiverError::NodeAgentRefused {
                socket: config.socket.display().to_string(),
                reason: status.message().to_owned(),
            });
        }
        Err(status) => {
            warn!(
                "node agent at {} not reachable ({}); retrying every {:?}",
                config.socket.display(),
                status.message(),
                config.reconnect_interval
            );
            None
        }
    };
    let host_name = first
        .as_ref()
        .map_or_else(super::ebpf::host_name, |(h, _)| h.host_name.clone());
    let opts = std::sync::Arc::new(ConvertOptions {
        host_name,
        uncorrelated_spans: config.uncorrelated_spans,
    });
    let (tx, rx) = mpsc::channel(64);
    let stop = stop.clone();
    let counter = EventCounter::new(telemetry.metrics());
    let reading = tokio::spawn(async move { reader.run(first, tx, stop).await });
    let task = tokio::spawn(async move {
        deliver(
            rx,
            correlate,
            &ingest,
            &opts,
            &counter,
            super::ebpf::default_workers(),
        )
        .await;
        reading.await.map_err(ReceiverError::StreamReaderTask)?
    });
    Ok(Started {
        tasks: vec![task],
        keep: None,
    })
}

/// Whether the node agent said no (as opposed to not being there).
fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument
    )
}

struct Reader {
    socket: PathBuf,
    pod_cgroup: String,
    reconnect: Duration,
    /// The last sequence number handed on (or known missed).
    last: u64,
    stats: Arc<StreamStats>,
}

impl Reader {
    /// Connects, subscribes after `self.last` and reads the node agent's `Hello`.
    async fn subscribe(
        &mut self,
    ) -> Result<(proto::Hello, Streaming<StreamMessage>), tonic::Status> {
        let socket = self.socket.clone();
        // The URI is not used: every connection goes to the socket.
        let channel: Channel = Endpoint::from_static("http://node-agent.invalid")
            .connect_with_connector(UdsConnector(socket))
            .await
            .map_err(|e| {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tonic::Status::unavailable(cause.unwrap_or_else(|| e.to_string()))
            })?;
        let mut client = NodeAgentClient::new(channel);
        let request = SubscribeRequest {
            pod_cgroup: self.pod_cgroup.clone(),
            resume_after: self.last,
            client: format!(
                "runbom {} pid {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ),
        };
        let mut stream = client.subscribe(request).await?.into_inner();
        let Some(StreamMessage {
            message: Some(Message::Hello(hello)),
        }) = stream.message().await?
        else {
            return Err(tonic::Status::invalid_argument(
                "the node agent's stream did not start with Hello",
            ));
        };
        if hello.next_sequence <= self.last {
            warn!(
                "the node agent's numbering starts over (it restarted): events while it was away \
                 are unknown"
            );
            self.last = 0;
        }
        info!(
            pod = hello.pod_cgroup,
            cgroup = hello.caller_cgroup,
            node = hello.host_name,
            protocol = hello.protocol,
            next_sequence = hello.next_sequence,
            "subscribed to the node agent's kernel events"
        );
        Ok((hello, stream))
    }

    /// Reads streams until `stop`, subscribing again after every break.
    async fn run(
        mut self,
        mut current: Option<(proto::Hello, Streaming<StreamMessage>)>,
        tx: mpsc::Sender<Vec<KernelEvent>>,
        stop: CancellationToken,
    ) -> Result<(), ReceiverError> {
        loop {
            if let Some((_, mut stream)) = current.take() {
                loop {
                    let msg = tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        msg = stream.message() => msg,
                    };
                    match msg {
                        Ok(Some(m)) => {
                            if !self.take(m, &tx).await {
                                return Ok(());
                            }
                        }
                        Ok(None) => {
                            warn!("the node agent ended the stream; subscribing again");
                            break;
                        }
                        Err(status) => {
                            warn!("the node agent's stream broke: {}", status.message());
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.reconnect) => {}
            }
            match self.subscribe().await {
                Ok(s) => current = Some(s),
                Err(status) if refused(&status) => {
                    return Err(ReceiverError::NodeAgentRefused {
                        socket: self.socket.display().to_string(),
                        reason: status.message().to_owned(),
                    });
                }
                Err(status) => warn!("node agent not reachable: {}", status.message()),
            }
        }
    }

    /// Handles one message; `false` when the pipelines are gone.
    async fn take(&mut self, m: StreamMessage, tx: &mpsc::Sender<Vec<KernelEvent>>) -> bool {
        match m.message {
            Some(Message::Events(batch)) => {
                self.stats
                    .kernel_dropped
                    .fetch_max(batch.kernel_dropped_total, Relaxed);
                let mut events = Vec::with_capacity(batch.events.len());
                for e in batch.events {
                    let Some((seq, event)) = convert::from_proto(e) else {
                        self.stats.unreadable.fetch_add(1, Relaxed);
                        continue;
                    };
                    if seq <= self.last {
                        continue; // already handed on (a replay after a reconnect)
                    }
                    if seq > self.last.saturating_add(1) {
                        self.missed(self.last + 1, seq - 1, "unannounced");
                    }
                    self.last = seq;
                    events.push(event);
                }
                self.stats.received.fetch_add(events.len() as u64, Relaxed);
                events.is_empty() || tx.send(events).await.is_ok()
            }
            Some(Message::Gap(gap)) => {
                if gap.last > self.last {
                    let reason = match proto::gap::Reason::try_from(gap.reason) {
                        Ok(proto::gap::Reason::SubscriberSlow) => "this sidecar did not keep up",
                        Ok(proto::gap::Reason::NotSubscribed) => {
                            "no sidecar was subscribed and the node agent's backlog overflowed"
                        }
                        _ => "unknown reason",
                    };
                    self.missed(gap.first.max(self.last + 1), gap.last, reason);
                    self.last = gap.last;
                }
                true
            }
            Some(Message::Hello(_)) | None => true,
        }
    }

    fn missed(&self, first: u64, last: u64, reason: &str) {
        // A gap whose first is past its last names no event.
        let Some(n) = last.checked_sub(first).map(|d| d.saturating_add(1)) else {
            return;
        };
        self.stats.missed.fetch_add(n, Relaxed);
        warn!(
            first,
            last,
            "{n} kernel events of this pod were missed ({reason}): sequence numbers {first} to {last}"
        );
    }
}

/// A connector that dials the node agent's Unix socket, whatever the URI.
#[derive(Clone)]
struct UdsConnector(PathBuf);

impl tonic::codegen::Service<Uri> for UdsConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let socket = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(socket).await?)) })
    }
}

fn register(telemetry: &Telemetry, stats: &Arc<StreamStats>) {
    type Read = fn(&StreamStats) -> &AtomicU64;
    let counters: [(&'static str, &'static str, Read); 4] = [
        (
            "runbom_node_agent_stream_events_total",
            "Kernel events received from the node agent.",
            |s| &s.received,
        ),
        (
            "runbom_node_agent_stream_missed_total",
            "Kernel events of this pod the node agent could not deliver (counted from gaps in \
             the sequence numbers).",
            |s| &s.missed,
        ),
        (
            "runbom_node_agent_stream_unreadable_total",
            "Events from the node agent this build cannot read (a newer node agent's kinds).",
            |s| &s.unreadable,
        ),
        (
            "runbom_node_agent_kernel_dropped_total",
            "Kernel events the node's kernel dropped (whole node; as the node agent reports).",
            |s| &s.kernel_dropped,
        ),
    ];
    for (name, help, read) in counters {
        let s = stats.clone();
        telemetry.counter_fn(name, help, move || read(&s).load(Relaxed));
    }
}
