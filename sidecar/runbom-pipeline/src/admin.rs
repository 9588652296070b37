//! runbom's own HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz`
//! (every receiver is listening, runbom is not shutting down, and no `memory_limiter` is
//! refusing data).

use std::{
    convert::Infallible,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{Telemetry, processor::memory_limiter::MemoryGate};

/// Readiness shared with whoever starts and stops the pipelines.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    /// The memory limiter's gate: not ready while it refuses data.
    gate: OnceLock<Arc<MemoryGate>>,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    #[must_use]
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Reports not ready while `gate` refuses data (over the memory limiter's soft limit), so
    /// that a load balancer sends clients elsewhere meanwhile.
    pub fn watch_memory(&self, gate: Arc<MemoryGate>) {
        let _ = self.gate.set(gate);
    }

    fn refusing(&self) -> bool {
        self.gate.get().is_some_and(|g| g.refusing())
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn route(
    req: &Request<Incoming>,
    telemetry: &Telemetry,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            telemetry.render_prometheus(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready.get() && ready.refusing() => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "refusing data: memory above the memory_limiter's soft limit\n".into(),
        ),
        "/readyz" if ready.get() => respond(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    ready: Arc<Readiness>,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!("admin endpoint: accept failed: {e}");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let (telemetry, ready) = (telemetry.clone(), ready.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = route(&req, &telemetry, &ready);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, "admin endpoint connection: {e}");
            }
        });
    }
}
