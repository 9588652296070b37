//! An in-process receiver harness for `runbom-pipeline`'s tests: an `Ingest` over channels the
//! test reads, and the OTLP receivers served from it on ephemeral ports.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use runbom_pipeline::{
    Ingest, Signal, SignalKind, StageCounters, Telemetry,
    receiver::{Limits, serve_grpc, serve_http},
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use rustls::ServerConfig;

use crate::{
    pki::Pki,
    requests::{sample_logs, sample_metrics, sample_traces},
};

/// The sample traces, logs and metrics ([`crate::requests`]), one request of each signal.
#[must_use]
pub fn samples() -> [Signal; 3] {
    [
        Signal::Traces(sample_traces()),
        Signal::Logs(sample_logs()),
        Signal::Metrics(sample_metrics()),
    ]
}

/// A receiver's address and its task (the receiver's result when it stops).
pub type Served = (SocketAddr, JoinHandle<std::io::Result<()>>);

/// An `Ingest` whose pipelines are channels the test reads.
pub struct Harness {
    pub ingest: Ingest,
    pub traces: mpsc::Receiver<Signal>,
    pub logs: mpsc::Receiver<Signal>,
    pub metrics: mpsc::Receiver<Signal>,
    pub counters: Vec<(SignalKind, Arc<StageCounters>)>,
    pub stop: CancellationToken,
}

impl Harness {
    /// Pipelines for `kinds`, each a channel of `capacity`; a push waits `accept_timeout`.
    #[must_use]
    pub fn new(kinds: &[SignalKind], capacity: usize, accept_timeout: Duration) -> Self {
        let telemetry = Telemetry::default();
        let stop = CancellationToken::new();
        let (traces_tx, traces) = mpsc::channel(capacity);
        let (logs_tx, logs) = mpsc::channel(capacity);
        let (metrics_tx, metrics) = mpsc::channel(capacity);
        let mut routes = Vec::new();
        let mut counters = Vec::new();
        for (kind, tx) in [
            (SignalKind::Traces, traces_tx),
            (SignalKind::Logs, logs_tx),
            (SignalKind::Metrics, metrics_tx),
        ] {
            if kinds.contains(&kind) {
                routes.push((kind, tx));
                counters.push((kind, telemetry.stage("receiver", "otlp", kind)));
            }
        }
        let ingest = Ingest::new(
            "otlp".into(),
            routes,
            counters.clone(),
            accept_timeout,
            stop.clone(),
        );
        Self {
            ingest,
            traces,
            logs,
            metrics,
            counters,
            stop,
        }
    }

    /// All three signals, roomy channels.
    #[must_use]
    pub fn all() -> Self {
        Self::new(&SignalKind::ALL, 16, Duration::from_secs(5))
    }

    #[must_use]
    pub fn counters(&self, kind: SignalKind) -> &StageCounters {
        let (_, counters) = self
            .counters
            .iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("no {kind:?} counters registered"));
        counters
    }

    pub fn channel(&mut self, kind: SignalKind) -> &mut mpsc::Receiver<Signal> {
        match kind {
            SignalKind::Traces => &mut self.traces,
            SignalKind::Logs => &mut self.logs,
            SignalKind::Metrics => &mut self.metrics,
        }
    }

    /// The next request in `kind`'s channel; panics if none arrives within 5 s.
    pub async fn next(&mut self, kind: SignalKind) -> Signal {
        tokio::time::timeout(Duration::from_secs(5), self.channel(kind).recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} request arrived within 5 s"))
            .unwrap_or_else(|| panic!("the {kind:?} channel closed"))
    }

    /// Asserts that the next request in `want`'s channel is `want`.
    pub async fn assert_next(&mut self, want: Signal) {
        let got = self.next(want.kind()).await;
        assert_eq!(got, want, "the request that arrived is not the one sent");
    }

    /// Cancels the harness and asserts that `server` (`what`) returns `Ok` within 5 s.
    pub async fn assert_stops(&self, what: &str, server: JoinHandle<std::io::Result<()>>) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap_or_else(|_| panic!("{what} should return soon after the stop signal"))
            .unwrap_or_else(|e| panic!("the {what} task should not panic: {e}"));
        assert!(result.is_ok(), "{result:?}");
    }

    /// Asserts that the [`samples`] arrived.
    pub async fn assert_samples(&mut self) {
        for sample in samples() {
            self.assert_next(sample).await;
        }
    }

    /// Panics if `kind`'s channel holds anything.
    pub fn assert_empty(&mut self, kind: SignalKind) {
        if let Ok(signal) = self.channel(kind).try_recv() {
            panic!("unexpected {kind:?} request in the channel: {signal:?}");
        }
    }

    pub async fn start_grpc(&self, limits: Limits) -> Served {
        self.start_grpc_with(limits, None).await
    }

    pub async fn start_http(&self, limits: Limits) -> Served {
        self.start_http_with(limits, None).await
    }

    /// The gRPC and the HTTP receiver, both over TLS when `tls` is set.
    pub async fn start_both(
        &self,
        limits: Limits,
        tls: Option<ServerConfig>,
    ) -> (SocketAddr, SocketAddr) {
        let (grpc, _) = self.start_grpc_with(limits, tls.clone()).await;
        let (http, _) = self.start_http_with(limits, tls).await;
        (grpc, http)
    }

    /// The gRPC receiver, over TLS when `tls` is set.
    pub async fn start_grpc_with(&self, limits: Limits, tls: Option<ServerConfig>) -> Served {
        let (listener, addr) = bind().await;
        (
            addr,
            tokio::spawn(serve_grpc(listener, self.ingest.clone(), limits, tls, None)),
        )
    }

    /// The HTTP receiver, over TLS when `tls` is set.
    pub async fn start_http_with(&self, limits: Limits, tls: Option<ServerConfig>) -> Served {
        let (listener, addr) = bind().await;
        (
            addr,
            tokio::spawn(serve_http(listener, self.ingest.clone(), limits, tls, None)),
        )
    }
}

/// The gRPC and HTTP receivers of one [`Harness`] over TLS, with throwaway certificates.
pub struct TlsReceivers {
    pub pki: Pki,
    /// The CA that signed the receivers' certificate (`ca.pem` of `pki`).
    pub ca: PathBuf,
    pub h: Harness,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl TlsReceivers {
    /// Both receivers presenting `server.pem`; requiring a client certificate signed by
    /// `ca.pem` when `client_ca` is set.
    pub async fn start(client_ca: bool) -> Self {
        let pki = Pki::new();
        let h = Harness::all();
        let (grpc, http) = h
            .start_both(Limits::default(), Some(pki.server_tls(client_ca)))
            .await;
        let ca = pki.path("ca.pem");
        Self {
            pki,
            ca,
            h,
            grpc,
            http,
        }
    }
}

/// A listener on an ephemeral loopback port, and its address.
pub async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0 should work");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, addr)
}
