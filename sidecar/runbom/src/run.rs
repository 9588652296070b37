//! `runbom run`: builds the pipelines from the checked configuration (every component through
//! its own configuration, see `runbom_pipeline::components`), starts the receivers and the
//! admin endpoint, and on Ctrl-C/SIGTERM stops in order: receivers first (the kernel ring is
//! drained, open requests finish), then every pipeline drains into its exporters.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use runbom_pipeline::{
    Config, Graph, Telemetry,
    admin::{self, Readiness},
    component::ReceiverContext,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::selftel;

/// What `service.shutdown_timeout` keeps back from the exporters' retries to drop, count and
/// flush what they still hold (at most a tenth of it).
const FLUSH_MARGIN: Duration = Duration::from_secs(1);

/// How long runbom's own telemetry may take to send what it holds at the end.
const SELFTEL_SHUTDOWN: Duration = Duration::from_secs(5);

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("{what}: cannot listen on {addr} (is another collector already using it?)")
    })
}

/// Raises the soft limit of open files to the hard limit, so that many clients (each
/// connection is a descriptor) exhaust neither the default 1,024 nor good clients' chances.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        warn!(
            "cannot read the open-files limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let soft = lim.rlim_cur;
    if soft >= lim.rlim_max {
        info!(soft, hard = lim.rlim_max, "open-files limit");
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } == 0 {
        info!(
            was = soft,
            now = lim.rlim_cur,
            hard = lim.rlim_max,
            "open-files limit raised to the hard limit"
        );
    } else {
        warn!(
            soft,
            hard = lim.rlim_max,
            "cannot raise the open-files limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

pub async fn run(config: Config, selftel: selftel::SelfTelemetry) -> Result<()> {
    // Listening from the first step: the probes read events before start-up ends, so a stop
    // asked for during start-up stops runbom in order once it has started, rather than the
    // signal's default action killing it with events unexported.
    let mut shutdown = std::pin::pin!(shutdown_signal());
    raise_open_files_limit();
    let metrics = selftel::metrics(&config.service.telemetry)?;
    let telemetry = Arc::new(Telemetry::new(metrics.clone()));
    let stop = CancellationToken::new();
    let mut asked = false;
    let started = {
        // Dropped at the end of this block: the start-up span ends with start-up.
        let starting = start(&config, &telemetry, &stop).instrument(info_span!("runbom.start"));
        let mut starting = std::pin::pin!(starting);
        tokio::select! {
            started = &mut starting => started,
            () = &mut shutdown => {
                asked = true;
                info!("stop asked for during start-up: stopping in order once started (a second Ctrl-C stops at once)");
                tokio::spawn(second_signal_stops_at_once());
                starting.await
            }
        }
    };
    let outcome = match started {
        Ok(running) => {
            crate::resident::started(&stop);
            if !asked {
                shutdown.await;
            }
            running
                .stop(&config, &telemetry, &stop)
                .instrument(info_span!("runbom.shutdown"))
                .await
        }
        Err(e) => Err(e),
    };
    // runbom's own telemetry stops last, so that the pipelines' final summary goes out too.
    // The last metrics export shows everything, also what new series still hold back.
    metrics.release_pending();
    let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    selftel.shutdown(SELFTEL_SHUTDOWN).await;
    outcome
}

/// What runs between start-up and shutdown.
struct Running {
    graph: Graph,
    receivers: Vec<JoinHandle<Result<(), runbom_pipeline::receiver::ReceiverError>>>,
    /// What receivers keep alive until they have stopped (the eBPF probes).
    kept: Vec<Box<dyn std::any::Any + Send>>,
    ready: Arc<Readiness>,
    admin: Option<JoinHandle<()>>,
}

/// Builds the pipelines, starts the receivers and the admin endpoint.
async fn start(
    config: &Config,
    telemetry: &Arc<Telemetry>,
    stop: &CancellationToken,
) -> Result<Running> {
    let processors = config.processor_specs()?;
    let queues = config.persistent_queues()?;
    let mut graph = Graph::build_with_queues(
        &config.pipeline_specs(&processors),
        (config.graph_settings(), &queues),
        telemetry.clone(),
        stop,
        |name, _signal, retries| config.exporters[name].build(retries),
    )?;

    let authenticators = config.authenticators()?;
    let mut receivers = Vec::new();
    let mut kept = Vec::new();
    for (name, cfg) in &config.receivers {
        let Some(ingest) = graph.take_ingest(name) else {
            warn!("receiver `{name}` is in no pipeline; not started");
            continue;
        };
        let ctx = ReceiverContext {
            ingest,
            kernel_events: graph.take_kernel_events(name),
            telemetry,
            stop,
            authenticators: &authenticators,
        };
        let started = cfg.start(name, ctx).await?;
        receivers.extend(started.tasks);
        kept.extend(started.keep);
    }

    let ready = Arc::new(Readiness::default());
    if let Some(gate) = graph.memory_gate() {
        ready.watch_memory(gate);
    }
    let admin = start_admin(config, telemetry, &ready, stop).await?;
    ready.set(true);
    info!(
        config = %config.source,
        instance = runbom_event::ids::instance_id(),
        "runbom is running"
    );
    Ok(Running {
        graph,
        receivers,
        kept,
        ready,
        admin,
    })
}

impl Running {
    /// Stops in order: receivers first, then every pipeline drains into its exporters, within
    /// `service.shutdown_timeout`. An error when data was lost on the way.
    async fn stop(
        self,
        config: &Config,
        telemetry: &Telemetry,
        stop: &CancellationToken,
    ) -> Result<()> {
        let Self {
            graph,
            receivers,
            kept,
            ready,
            admin,
        } = self;
        let limit = config.service.shutdown_timeout;
        info!(
            "stopping: receivers first, then every pipeline drains into its exporters (at most {limit:?}; a second Ctrl-C stops at once)"
        );
        tokio::spawn(second_signal_stops_at_once());
        ready.set(false);
        stop.cancel();
        let deadline = tokio::time::Instant::now() + limit;
        for task in receivers {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => error!("{:#}", anyhow::Error::from(e)),
                Ok(Err(e)) => error!("receiver task: {e}"),
                Err(_) => error!("a receiver did not stop within {limit:?}"),
            }
        }
        drop(kept);
        // Exporters retry until shortly before the deadline; then what they hold is dropped and
        // counted.
        let failed_before = failed_items(telemetry);
        let grace = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(FLUSH_MARGIN.min(limit / 10));
        let drained = tokio::time::timeout_at(deadline, graph.drain(grace))
            .await
            .is_ok();
        let dropped = failed_items(telemetry).saturating_sub(failed_before);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        summary(telemetry);
        if !drained {
            anyhow::bail!(
                "exporters were still delivering after service.shutdown_timeout ({limit:?}); what they held is lost"
            )
        }
        if dropped > 0 {
            anyhow::bail!(
                "{dropped} items were dropped at shutdown: the exporters could not deliver them within service.shutdown_timeout ({limit:?})"
            )
        }
        Ok(())
    }
}

/// Items the exporters gave up on so far.
fn failed_items(telemetry: &Telemetry) -> u64 {
    telemetry
        .stages()
        .iter()
        .filter(|c| c.stage == "exporter")
        .map(|c| c.failed())
        .sum()
}

/// Serves `/metrics`, `/healthz` and `/readyz` unless the address is `none`.
async fn start_admin(
    config: &Config,
    telemetry: &Arc<Telemetry>,
    ready: &Arc<Readiness>,
    stop: &CancellationToken,
) -> Result<Option<JoinHandle<()>>> {
    let addr = config.service.telemetry.admin_address();
    if addr == "none" {
        return Ok(None);
    }
    let listener = bind("service.telemetry.metrics", &addr).await?;
    info!(
        "/metrics, /healthz and /readyz on http://{}",
        listener.local_addr()?
    );
    Ok(Some(tokio::spawn(admin::serve(
        listener,
        telemetry.clone(),
        ready.clone(),
        stop.clone(),
    ))))
}

fn summary(telemetry: &Telemetry) {
    let stages = telemetry.stages();
    let sum = |stage: &str, f: fn(&runbom_pipeline::StageCounters) -> u64| -> u64 {
        stages
            .iter()
            .filter(|c| c.stage == stage)
            .map(|c| f(c))
            .sum()
    };
    info!(
        received = sum("receiver", runbom_pipeline::StageCounters::accepted),
        refused = sum("receiver", runbom_pipeline::StageCounters::refused),
        exported = sum("exporter", runbom_pipeline::StageCounters::sent),
        failed = sum("exporter", runbom_pipeline::StageCounters::failed),
        retried = sum("exporter", runbom_pipeline::StageCounters::retried),
        "runbom stopped"
    );
    for c in stages
        .iter()
        .filter(|c| c.stage == "exporter" && c.failed() > 0)
    {
        error!(
            "exporter `{}` gave up on {} {} (see errors above)",
            c.name,
            c.failed(),
            c.signal.item()
        );
    }
}

/// Exits at once on the next Ctrl-C or SIGTERM: what is not exported yet is lost.
async fn second_signal_stops_at_once() {
    shutdown_signal().await;
    eprintln!("runbom: second signal: stopping now; data not yet exported is lost");
    std::process::exit(130);
}

/// Ctrl-C or SIGTERM, listened for from the call on (not from the first poll).
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let mut interrupt = match interrupt {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot watch Ctrl-C ({e}); stop runbom with SIGTERM");
                if let Ok(mut term) = terminate {
                    term.recv().await;
                } else {
                    std::future::pending::<()>().await;
                }
                return;
            }
        };
        match terminate {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!("cannot watch SIGTERM ({e}); stop runbom with Ctrl-C");
                interrupt.recv().await;
            }
        }
    }
}
