//! `runbom run`: builds the pipelines from the configuration, starts the receivers and the
//! admin endpoint, and on Ctrl-C/SIGTERM stops in order: receivers first (the kernel ring is
//! drained, open requests finish), then every pipeline drains into its exporters.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use anyhow::{Context as _, Result};
use runbom_otlp::tls::ServerTlsSettings;
use runbom_pipeline::{
    Graph, GraphSettings, PipelineSpec, ProcessorSpec, Telemetry,
    admin::{self, Readiness},
    exporter::{
        BoxExporter, DebugExporter, ExportError, FileExporter, GrpcExporter, HttpExporter,
        NetworkSettings, RetryPolicy, Verbosity, nop::NopExporter,
    },
    processor::{aibom::AibomSpec, batch::BatchSettings, memory_limiter::MemoryLimit},
    receiver,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{
        ClientTlsConfig, Compression, Config, DebugVerbosity, ExporterConfig, NetworkExporter,
        OtlpServer, ProcessorConfig, QueueSizer, ReceiverConfig,
    },
    correlation, ebpf, selftel,
};

/// How long exporters keep retrying after SIGTERM (at most `service.shutdown_timeout`).
const EXPORT_GRACE: Duration = Duration::from_secs(5);

/// Builds the exporter configured as `cfg`.
pub fn build_exporter(
    cfg: &ExporterConfig,
    retries: Arc<AtomicU64>,
) -> Result<BoxExporter, ExportError> {
    Ok(match cfg {
        ExporterConfig::Otlp(n) => Box::new(GrpcExporter::new(network(n, retries))?),
        ExporterConfig::OtlpHttp(n) => Box::new(HttpExporter::new(network(n, retries))?),
        ExporterConfig::File(f) => Box::new(FileExporter::new(&f.path)?),
        ExporterConfig::Debug(d) => Box::new(DebugExporter {
            verbosity: match d.verbosity {
                DebugVerbosity::Basic => Verbosity::Basic,
                DebugVerbosity::Detailed => Verbosity::Detailed,
            },
        }),
        ExporterConfig::Nop => Box::new(NopExporter),
    })
}

fn network(n: &NetworkExporter, retries: Arc<AtomicU64>) -> NetworkSettings {
    let r = &n.retry_on_failure;
    NetworkSettings {
        endpoint: n.endpoint.clone(),
        headers: n.headers.clone(),
        gzip: n.compression == Compression::Gzip,
        timeout: n.timeout,
        tls: n
            .tls
            .as_ref()
            .map(ClientTlsConfig::settings)
            .unwrap_or_default(),
        retry: RetryPolicy {
            enabled: r.enabled,
            initial_interval: r.initial_interval,
            max_interval: r.max_interval,
            max_elapsed_time: r.max_elapsed_time,
        },
        retries,
    }
}

/// Loads the declared BOM of every `aibom` processor: a BOM that does not load stops runbom
/// here, with the file, the JSON path and the reason.
fn aibom_specs(config: &Config) -> Result<BTreeMap<String, AibomSpec>> {
    let mut out = BTreeMap::new();
    for (name, p) in &config.processors {
        let ProcessorConfig::Aibom(a) = p else {
            continue;
        };
        let watch = runbom_aibom::BomWatch::load(&a.bom)
            .with_context(|| format!("processors.{name}.bom: the declared AI-BOM does not load"))?;
        info!(
            processor = %name,
            bom = %a.bom.display(),
            serial = %watch.current().serial_number,
            agents = watch.current().agents.len(),
            "declared AI-BOM loaded"
        );
        let mut ignore = Vec::new();
        for e in a.ignore_endpoints.iter().chain(&own_endpoints(config)) {
            ignore.push(
                runbom_aibom::endpoint::Endpoint::parse(e)
                    .map_err(|why| anyhow::anyhow!("processors.{name}.ignore_endpoints: {why}"))?,
            );
        }
        let baseline = match &a.baseline {
            Some(b) => {
                let settings = runbom_aibom::baseline::Settings {
                    path: b.path.clone(),
                    learn_for: b.learn_for,
                    payload_factor: b.payload_factor,
                    payload_floor: b.payload_floor,
                };
                let baseline =
                    runbom_aibom::baseline::Baseline::open(settings, std::time::SystemTime::now())
                        .with_context(|| {
                            format!("processors.{name}.baseline: the baseline does not load")
                        })?;
                Some(Arc::new(Mutex::new(baseline)))
            }
            None => None,
        };
        out.insert(
            name.clone(),
            AibomSpec {
                name: name.clone(),
                settings: runbom_aibom::Settings {
                    wait: a.wait,
                    max_hold: a.max_hold,
                    max_spans: a.max_spans,
                    judge: runbom_aibom::judge::JudgeSettings { ignore },
                    baseline,
                },
                bom: Arc::new(Mutex::new(watch)),
                reload_interval: a.reload_interval,
                stats: Arc::default(),
            },
        );
    }
    Ok(out)
}

/// runbom's own OTLP receivers: traffic to them is never drift.
fn own_endpoints(config: &Config) -> Vec<String> {
    config
        .receivers
        .values()
        .filter_map(|r| match r {
            ReceiverConfig::Otlp(o) => Some(o),
            ReceiverConfig::Ebpf(_) => None,
        })
        .flat_map(|o| {
            [
                (o.protocols.grpc.as_ref(), "127.0.0.1:4317"),
                (o.protocols.http.as_ref(), "127.0.0.1:4318"),
            ]
        })
        .filter_map(|(server, default)| {
            server.map(|s| {
                let e = s.endpoint.as_deref().unwrap_or(default);
                // A wildcard listener is reached on loopback and on the node's addresses.
                e.replacen("localhost:", "127.0.0.1:", 1)
            })
        })
        .collect()
}

/// The pipelines as the pipeline crate describes them.
fn pipeline_specs(config: &Config, aiboms: &BTreeMap<String, AibomSpec>) -> Vec<PipelineSpec> {
    config
        .pipelines()
        .map(|(name, signal, p)| PipelineSpec {
            name: name.to_owned(),
            signal,
            receivers: p.receivers.clone(),
            processors: p
                .processors
                .iter()
                .filter_map(|name| {
                    Some(match &config.processors[name] {
                        ProcessorConfig::Aibom(_) => {
                            ProcessorSpec::Aibom(aiboms.get(name)?.clone())
                        }
                        ProcessorConfig::Batch(b) => ProcessorSpec::Batch(BatchSettings {
                            send_batch_size: b.send_batch_size,
                            send_batch_max_size: b.send_batch_max_size,
                            timeout: b.timeout,
                        }),
                        ProcessorConfig::MemoryLimiter(m) => {
                            ProcessorSpec::MemoryLimiter(MemoryLimit {
                                check_interval: m.check_interval,
                                limit_bytes: memory_limit_bytes(m.limit_mib, m.limit_percentage),
                            })
                        }
                        ProcessorConfig::Correlate(c) => {
                            // Checked when the configuration was read: the pipeline lists one.
                            let source =
                                correlation::source(config, &p.receivers).unwrap_or("ebpf");
                            ProcessorSpec::Correlate(Box::new(c.spec(source, ebpf::host_name())))
                        }
                    })
                })
                .collect(),
            exporters: p.exporters.clone(),
        })
        .collect()
}

fn memory_limit_bytes(limit_mib: Option<u64>, percentage: Option<u64>) -> u64 {
    if let Some(mib) = limit_mib {
        return mib << 20;
    }
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    total / 100 * percentage.unwrap_or(100)
}

fn graph_settings(config: &Config) -> GraphSettings {
    let queues = || {
        config.exporters.values().filter_map(|e| match e {
            ExporterConfig::Otlp(n) | ExporterConfig::OtlpHttp(n) if n.sending_queue.enabled => {
                Some(&n.sending_queue)
            }
            _ => None,
        })
    };
    let largest = |sizer| {
        queues()
            .filter(|q| q.sizer == sizer)
            .map(|q| q.queue_size.max(1))
            .max()
    };
    let defaults = GraphSettings::default();
    GraphSettings {
        exporter_queue: largest(QueueSizer::Requests).unwrap_or(defaults.exporter_queue),
        exporter_queue_items: largest(QueueSizer::Items)
            .map_or(defaults.exporter_queue_items, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            }),
        ..defaults
    }
}

/// Checks that every exporter can be built (endpoints and headers parse, TLS files load) and
/// that every receiver's TLS files load.
pub fn validate(config: &Config) -> Result<()> {
    // A gRPC exporter spawns its channel's worker when built: `runbom validate` has no runtime.
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(_) => None,
        Err(_) => Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start an async runtime to check the exporters")?,
        ),
    };
    let _entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
    for (name, cfg) in &config.exporters {
        build_exporter(cfg, Arc::default()).with_context(|| format!("exporter `{name}`"))?;
    }
    aibom_specs(config)?;
    for (name, cfg) in &config.receivers {
        if let ReceiverConfig::Otlp(o) = cfg {
            for (proto, server) in [("grpc", &o.protocols.grpc), ("http", &o.protocols.http)] {
                server_tls(name, proto, server.as_ref())?;
            }
        }
    }
    Ok(())
}

/// Reads a receiver's certificate files; `None` without a `tls` section.
fn server_tls(
    name: &str,
    proto: &str,
    server: Option<&OtlpServer>,
) -> Result<Option<rustls::ServerConfig>> {
    let Some(tls) = server.and_then(|s| s.tls.as_ref()) else {
        return Ok(None);
    };
    let section = format!("receivers.{name}.protocols.{proto}.tls");
    // Checked when the configuration was read; kept as an error rather than a panic.
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        anyhow::bail!("{section}: set both `cert_file` and `key_file`");
    };
    if tls.ca_file.is_some() {
        warn!(
            "{section}.ca_file does not check client certificates (nor does it in the Collector); \
             use client_ca_file for that"
        );
    }
    let settings = ServerTlsSettings {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        min_version: tls.min_version,
        max_version: tls.max_version,
        reload_interval: tls.reload_interval,
    };
    settings
        .load()
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}", e.under(&section)))
}

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("{what}: cannot listen on {addr} (is another collector already using it?)")
    })
}

/// Starts an `otlp` receiver's servers.
async fn start_otlp(
    name: &str,
    server_grpc: Option<&OtlpServer>,
    server_http: Option<&OtlpServer>,
    ingest: &runbom_pipeline::Ingest,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    let mut tasks = Vec::new();
    for (proto, server, default) in [
        ("grpc", server_grpc, "127.0.0.1:4317"),
        ("http", server_http, "127.0.0.1:4318"),
    ] {
        let tls = server_tls(name, proto, server)?;
        let Some(server) = server else { continue };
        let addr = server.endpoint.as_deref().unwrap_or(default);
        let listener = bind(&format!("receiver `{name}` ({proto})"), addr).await?;
        let limits = receiver::Limits {
            max_request_bytes: server
                .max_recv_msg_size_mib
                .map_or(receiver::Limits::default().max_request_bytes, |m| {
                    (m as usize) << 20
                }),
        };
        info!(
            receiver = name,
            "OTLP/{proto} listening on {}{}",
            listener.local_addr()?,
            if tls.is_some() { " (TLS)" } else { "" }
        );
        let ingest = ingest.clone();
        let what = format!("receiver `{name}` ({proto})");
        tasks.push(tokio::spawn(async move {
            let outcome = if proto == "grpc" {
                receiver::serve_grpc(listener, ingest, limits, tls).await
            } else {
                receiver::serve_http(listener, ingest, limits, tls).await
            };
            outcome.with_context(|| what)
        }));
    }
    Ok(tasks)
}

pub async fn run(config: Config, log_records: Option<selftel::LogRecords>) -> Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let stop = CancellationToken::new();
    // runbom's own telemetry outlives the pipelines, so that their final summary goes out too.
    let selftel_stop = CancellationToken::new();
    let selftel_tasks = selftel::start(
        &config.service.telemetry,
        &telemetry,
        log_records,
        &selftel_stop,
    )?;
    let aiboms = aibom_specs(&config)?;
    let mut graph = Graph::build(
        &pipeline_specs(&config, &aiboms),
        graph_settings(&config),
        telemetry.clone(),
        &stop,
        |name, _signal, retries| build_exporter(&config.exporters[name], retries),
    )?;

    let mut receivers: Vec<JoinHandle<Result<()>>> = Vec::new();
    let mut probes = None;
    for (name, cfg) in &config.receivers {
        let Some(ingest) = graph.take_ingest(name) else {
            warn!("receiver `{name}` is in no pipeline; not started");
            continue;
        };
        match cfg {
            ReceiverConfig::Otlp(o) => receivers.extend(
                start_otlp(
                    name,
                    o.protocols.grpc.as_ref(),
                    o.protocols.http.as_ref(),
                    &ingest,
                )
                .await?,
            ),
            ReceiverConfig::Ebpf(e) => {
                let correlate = graph.take_kernel_events(name);
                let running = ebpf::start(e, ingest, correlate, &telemetry, &stop)?;
                receivers.push(running.task);
                probes = Some(running.probes);
            }
        }
    }

    let ready = Arc::new(Readiness::default());
    let admin = start_admin(&config, &telemetry, &ready, &stop).await?;
    ready.set(true);
    info!(config = %config.source, "runbom is running");

    shutdown_signal().await;
    let limit = config.service.shutdown_timeout;
    info!(
        "stopping: receivers first, then every pipeline drains into its exporters (at most {limit:?}; a second Ctrl-C stops at once)"
    );
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("runbom: second signal: stopping now; data not yet exported is lost");
        std::process::exit(130);
    });
    ready.set(false);
    stop.cancel();
    let deadline = tokio::time::Instant::now() + limit;
    for task in receivers {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error!("{e:#}"),
            Ok(Err(e)) => error!("receiver task: {e}"),
            Err(_) => error!("a receiver did not stop within {limit:?}"),
        }
    }
    drop(probes);
    // Exporters may retry for a few seconds; then what they hold is dropped and counted.
    let drained = tokio::time::timeout_at(deadline, graph.drain(limit.min(EXPORT_GRACE)))
        .await
        .is_ok();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    summary(&telemetry);
    selftel_stop.cancel();
    for task in selftel_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if drained {
        Ok(())
    } else {
        anyhow::bail!(
            "exporters were still delivering after service.shutdown_timeout ({limit:?}); what they held is lost"
        )
    }
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

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch SIGTERM ({e}); stop runbom with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
