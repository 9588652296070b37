//! The node agent's gRPC server on its Unix socket: one `Subscribe` stream per sidecar, scoped
//! to the caller's pod by the kernel ([`caller`](super::caller)), fed by the [`Hub`].

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering::Relaxed},
};

use tokio::{net::UnixListener, sync::mpsc};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::{
    PROTOCOL,
    caller::{self, Caller},
    convert,
    hub::{Hub, Item, Items},
    peer::{Peer, PeerStream},
    proto::{
        self, StreamMessage,
        node_agent_server::{NodeAgent, NodeAgentServer},
        stream_message::Message,
    },
    slots::Slots,
};
use crate::receiver::ReceiverError;

/// What the server needs besides the hub.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub socket: PathBuf,
    /// Permission bits of the socket file (who may connect at all; who gets what is decided
    /// per caller).
    pub socket_mode: u32,
    /// cgroup v2 paths under which pods' cgroups lie.
    pub pod_roots: Vec<String>,
    pub host_name: String,
    /// Where `/proc` is (callers' cgroups are read there).
    pub proc_root: PathBuf,
}

/// The `NodeAgent` service.
struct Service {
    hub: Arc<Hub>,
    settings: Arc<ServeSettings>,
    kernel_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// Most connections the socket takes at once. Each sidecar holds one; any local user may connect
/// (the socket is open to all, who gets what is decided per caller), and without a bound one
/// could hold every file descriptor of this privileged process. Past it, or past its place's
/// share ([`slots`](super::slots)), a connection is closed at once, and counted in the log.
const CONNECTIONS_MAX: usize = 256;
/// Most connections of one pod at once: its sidecar's, and a reconnecting one's.
const CONNECTIONS_PER_POD: usize = 4;
/// Most connections at once of every caller outside a pod, together (they are refused at
/// `Subscribe`, and connect only to be told why).
const CONNECTIONS_OUTSIDE_PODS: usize = 8;

/// Binds the socket (replacing a stale one) and serves until `stop`.
pub fn start(
    hub: Arc<Hub>,
    settings: ServeSettings,
    kernel_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), ReceiverError>>, ReceiverError> {
    let slots = Slots::new(
        CONNECTIONS_MAX,
        CONNECTIONS_PER_POD,
        CONNECTIONS_OUTSIDE_PODS,
    );
    start_with(hub, settings, kernel_dropped, stop, slots)
}

/// [`start`], taking connections as `slots` have room.
fn start_with(
    hub: Arc<Hub>,
    settings: ServeSettings,
    kernel_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: CancellationToken,
    slots: Arc<Slots>,
) -> Result<tokio::task::JoinHandle<Result<(), ReceiverError>>, ReceiverError> {
    let listener = bind(&settings.socket, settings.socket_mode)?;
    info!(socket = %settings.socket.display(), "serving sidecars on {}", settings.socket.display());
    let socket = settings.socket.clone();
    // Each caller is identified as its connection is accepted (`peer`), not when it subscribes.
    let proc_root = settings.proc_root.clone();
    let pod_roots = settings.pod_roots.clone();
    let hub_stats = hub.clone();
    let service = Service {
        hub,
        settings: Arc::new(settings),
        kernel_dropped,
    };
    let mut refused = 0u64;
    let incoming = UnixListenerStream::new(listener).filter_map(move |accepted| {
        let io = match accepted {
            Ok(io) => io,
            Err(e) => return Some(Err(e)),
        };
        let (no_slot, peer) = match PeerStream::accept(io, &proc_root, &slots, &pod_roots) {
            Ok(stream) => return Some(Ok(stream)),
            Err(refusal) => refusal,
        };
        refused += 1;
        hub_stats.stats.connections_refused.fetch_add(1, Relaxed);
        // The first, then one line per thousand: a flood does not flood the log.
        if refused % 1000 == 1 {
            warn!(
                refused,
                pid = peer.as_ref().map(|p| p.pid),
                uid = peer.as_ref().map(|p| p.uid),
                "refused a connection to the node agent socket: {no_slot} ({refused} refused so far)"
            );
        }
        None
    });
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(NodeAgentServer::new(service))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await;
        let _ = std::fs::remove_file(&socket);
        served.map_err(|e| ReceiverError::Serve {
            what: format!("node agent socket {}", socket.display()),
            source: std::io::Error::other(e),
        })
    }))
}

fn bind(socket: &Path, mode: u32) -> Result<UnixListener, ReceiverError> {
    let bind_error = |source| ReceiverError::Bind {
        what: "ebpf receiver (sidecars)".into(),
        addr: socket.display().to_string(),
        source,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(bind_error)?;
    }
    // A socket file left by an earlier run: nobody listens on it any more.
    if std::os::unix::net::UnixStream::connect(socket).is_err() {
        let _ = std::fs::remove_file(socket);
    }
    let listener = UnixListener::bind(socket).map_err(bind_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode)).map_err(bind_error)?;
    Ok(listener)
}

type EventStream = ReceiverStream<Result<StreamMessage, Status>>;

#[tonic::async_trait]
impl NodeAgent for Service {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let peer = request
            .extensions()
            .get::<Option<Peer>>()
            .cloned()
            .flatten();
        let req = request.into_inner();
        let caller = peer
            .ok_or(caller::CallerError::NoCredentials)
            .and_then(|p| {
                caller::check(
                    p.pid,
                    p.uid,
                    p.cgroup,
                    &self.settings.pod_roots,
                    &req.pod_cgroup,
                )
            });
        let caller = match caller {
            Ok(c) => c,
            Err(e) => {
                warn!("sidecar refused: {e}");
                return Err(Status::permission_denied(e.to_string()));
            }
        };
        let sub = self.hub.subscribe(&caller, req.resume_after);
        info!(
            pid = caller.pid,
            uid = caller.uid,
            pod = caller.pod,
            client = req.client,
            resume_after = req.resume_after,
            "sidecar subscribed"
        );
        let hello = proto::Hello {
            protocol: PROTOCOL.into(),
            node_agent_version: env!("CARGO_PKG_VERSION").into(),
            host_name: self.settings.host_name.clone(),
            pod_cgroup: caller.pod.clone(),
            caller_cgroup: caller.cgroup.clone(),
            next_sequence: sub.next_sequence,
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(feed(
            self.hub.clone(),
            caller,
            sub.id,
            hello,
            sub.items,
            tx,
            self.kernel_dropped.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// How often an idle stream checks whether its subscriber fell behind.
const CATCH_UP_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Turns the subscriber's items into messages until either side goes.
async fn feed(
    hub: Arc<Hub>,
    caller: Caller,
    id: u64,
    hello: proto::Hello,
    mut items: Items,
    tx: mpsc::Sender<Result<StreamMessage, Status>>,
    kernel_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
) {
    let msg = |m| Ok(StreamMessage { message: Some(m) });
    if tx.send(msg(Message::Hello(hello))).await.is_ok() {
        loop {
            let item = tokio::select! {
                item = items.recv() => item,
                () = tx.closed() => None,
                // A subscriber that fell behind just as its queue emptied has nothing to wake
                // it: look now and then.
                () = tokio::time::sleep(CATCH_UP_POLL) => {
                    if items.lagging() {
                        hub.catch_up(&caller.pod, id);
                    }
                    continue;
                }
            };
            let Some(item) = item else { break };
            if items.lagging() {
                hub.catch_up(&caller.pod, id);
            }
            let (m, last) = match item {
                Item::Events(events) => {
                    let last = events.last().map(|(s, _)| *s);
                    let batch = proto::EventBatch {
                        events: events
                            .iter()
                            .map(|(s, e)| convert::to_proto(*s, e))
                            .collect(),
                        kernel_dropped_total: kernel_dropped(),
                    };
                    (Message::Events(batch), last)
                }
                Item::Gap { first, last, slow } => {
                    let reason = if slow {
                        proto::gap::Reason::SubscriberSlow
                    } else {
                        proto::gap::Reason::NotSubscribed
                    };
                    let gap = proto::Gap {
                        first,
                        last,
                        reason: reason.into(),
                    };
                    (Message::Gap(gap), Some(last))
                }
            };
            if tx.send(msg(m)).await.is_err() {
                break;
            }
            if let Some(last) = last {
                hub.delivered(&caller.pod, id, last);
            }
        }
    }
    hub.unsubscribe(&caller.pod, id);
    info!(pid = caller.pid, pod = caller.pod, "sidecar unsubscribed");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::UnixStream,
    };

    use runbom_testkit::kube::{PodCgroup, Runtime};

    use super::*;
    use crate::node_agent::hub::HubSettings;

    /// A new connection that has sent the HTTP/2 client preface.
    async fn connect(socket: &Path) -> UnixStream {
        let mut s = UnixStream::connect(socket).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        s
    }

    /// Reads what the server sends first: nothing (EOF) for a refused connection, its HTTP/2
    /// SETTINGS frame for one it serves.
    async fn first_read(s: &mut UnixStream) -> usize {
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the server answers or closes")
            .expect("read")
    }

    /// A node agent serving on a socket in `dir`, its pods under `pod_roots`.
    fn serve(
        dir: &runbom_testkit::TempDir,
        pod_roots: Vec<String>,
        slots: Arc<Slots>,
        stop: &CancellationToken,
    ) -> (
        PathBuf,
        tokio::task::JoinHandle<Result<(), ReceiverError>>,
        Arc<Hub>,
    ) {
        let socket = dir.path().join("node-agent.sock");
        let hub = Hub::new(HubSettings {
            cgroup_mount: dir.path().to_owned(),
            backlog_events: 16,
            subscriber_queue_events: 16,
        });
        let settings = ServeSettings {
            socket: socket.clone(),
            socket_mode: 0o666,
            pod_roots,
            host_name: "node".into(),
            proc_root: "/proc".into(),
        };
        let served =
            start_with(hub.clone(), settings, Arc::new(|| 0), stop.clone(), slots).unwrap();
        (socket, served, hub)
    }

    /// Stops the server and waits for it (shutting down waits for open connections: close
    /// the clients first).
    async fn stopped(
        stop: &CancellationToken,
        served: tokio::task::JoinHandle<Result<(), ReceiverError>>,
    ) {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_their_slots_come_back() {
        let dir = runbom_testkit::TempDir::new("node-agent-socket");
        let stop = CancellationToken::new();
        let (socket, served, _) = serve(&dir, Vec::new(), Slots::new(4, 4, 4), &stop);
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut s = connect(&socket).await;
            assert!(first_read(&mut s).await > 0, "served");
            held.push(s);
        }
        let mut refused = UnixStream::connect(&socket).await.unwrap();
        assert_eq!(
            first_read(&mut refused).await,
            0,
            "the fifth is closed at once"
        );
        // One closes: its slot is taken by the next connection.
        drop(held.pop());
        let mut again = connect(&socket).await;
        let mut answered = 0;
        // The closed connection's slot comes back when the server has seen it close.
        for _ in 0..50 {
            answered = first_read(&mut again).await;
            if answered > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            again = connect(&socket).await;
        }
        assert!(answered > 0, "a slot came back");
        // Shutting down waits for open connections: the clients go first.
        drop((held, refused, again));
        stopped(&stop, served).await;
    }

    /// A process in a pod's container that connects, sends the HTTP/2 preface and prints how
    /// many bytes the server answered first (0: closed or reset), then holds on until its
    /// stdin closes.
    fn pod_client(pod: &PodCgroup, socket: &Path) -> std::process::Child {
        const CLIENT: &str = "import socket, sys\n\
            s = socket.socket(socket.AF_UNIX)\n\
            s.connect(sys.argv[1])\n\
            s.settimeout(10)\n\
            try:\n\
            \x20   s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n')\n\
            \x20   n = len(s.recv(64))\n\
            except ConnectionError:\n\
            \x20   n = 0\n\
            print(n, flush=True)\n\
            sys.stdin.read()\n";
        pod.command(
            Path::new("/usr/bin/python3"),
            &["-c".into(), CLIENT.into(), socket.display().to_string()],
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3")
    }

    /// What a [`pod_client`] read first.
    fn answered(child: &mut std::process::Child) -> usize {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("the client's line");
        line.trim().parse().expect("a byte count")
    }

    /// One pod (or one host user) holding connections takes only its own share: the next pod's
    /// sidecar and a caller outside pods still get in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_holding_its_share_keeps_no_other_caller_out() {
        let pod = PodCgroup::create(
            "slots",
            Runtime::Containerd,
            "0000aaaa-0000-0000-0000-00000000510f",
            &format!("{:064x}", u128::from(std::process::id())),
        );
        let v2 = runbom_testkit::kube::cgroup2_root();
        let in_v2 = |dir: &Path| format!("/{}", dir.strip_prefix(&v2).unwrap().display());
        // The pod's root: the pod cgroup's parent's parent (`kubepods-besteffort.slice`).
        let root = in_v2(pod.dir.parent().unwrap().parent().unwrap());
        let dir = runbom_testkit::TempDir::new("node-agent-slots");
        let stop = CancellationToken::new();
        let (socket, served, hub) = serve(&dir, vec![root], Slots::new(4, 2, 1), &stop);
        let mut in_pod: Vec<_> = (0..3).map(|_| pod_client(&pod, &socket)).collect();
        let mut firsts: Vec<usize> = Vec::new();
        for c in &mut in_pod {
            let c_answered = tokio::task::block_in_place(|| answered(c));
            firsts.push(c_answered);
        }
        firsts.sort_unstable();
        assert!(
            firsts[0] == 0 && firsts[1] > 0 && firsts[2] > 0,
            "two of the pod's three served, one closed: {firsts:?}"
        );
        // This test runs outside pods: one slot for all such callers.
        let mut host = connect(&socket).await;
        assert!(
            first_read(&mut host).await > 0,
            "the host's first is served"
        );
        let mut second = UnixStream::connect(&socket).await.unwrap();
        assert_eq!(first_read(&mut second).await, 0, "the host's share is full");
        assert_eq!(
            hub.stats.connections_refused.load(Relaxed),
            2,
            "both counted"
        );
        for mut c in in_pod {
            drop(c.stdin.take());
            let _ = c.wait();
        }
        drop((host, second));
        stopped(&stop, served).await;
    }
}
