//! What the network exporters (`otlp`, `otlphttp`) share: the Collector's section (endpoint,
//! headers, compression, timeout, `retry_on_failure`, `sending_queue`, `tls`), its checks, and
//! the settings the exporters take.

use std::{
    collections::BTreeMap,
    fmt,
    marker::PhantomData,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use crate::transport::tls::ClientTlsSettings;
use runbom_otlp::signal::{Signal, SignalKind};
use serde::Deserialize;

use super::{
    buffer::KeptBuffer,
    error::ExportError,
    export::{BoxExporter, Exporter},
    queue::SendingQueue,
    retry::RetryPolicy,
};
use crate::component::ExporterConfig;
use crate::config::{
    duration,
    section::{ConfigError, Section},
    tls::ClientTlsConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: SendingQueue,
    pub tls: Option<ClientTlsConfig>,
    /// `otlphttp` only: `proto` (the default; `json` is not supported yet).
    pub encoding: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    #[serde(with = "duration")]
    pub max_interval: Duration,
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = RetryPolicy::default();
        Self {
            enabled: p.enabled,
            initial_interval: p.initial_interval,
            max_interval: p.max_interval,
            max_elapsed_time: p.max_elapsed_time,
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NetworkConfig {
    /// Values the YAML types allow but the exporters do not.
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            tls.check(&at.at("tls"))?;
        }
        if self.sending_queue.num_consumers == 0 {
            return Err(at
                .at("sending_queue")
                .at("num_consumers")
                .error("must be at least 1"));
        }
        if self.encoding.as_deref().is_some_and(|e| e != "proto") {
            return Err(at.at("encoding").error("only `proto` is supported"));
        }
        Ok(())
    }

    /// The settings the exporters take; `retries` counts retried attempts.
    #[must_use]
    pub fn settings(&self, retries: Arc<AtomicU64>) -> NetworkSettings {
        let r = &self.retry_on_failure;
        NetworkSettings {
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            gzip: self.compression == Compression::Gzip,
            timeout: self.timeout,
            tls: self
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
}

/// Requests whose protobuf is larger than this are sent in parts under it, in order, each retried
/// on its own (`runbom_otlp::split`; a part that fails fails the request, so a queue that sends
/// it again sends the parts before it again too: at least once, as any retried request): the largest
/// message a gRPC server takes by default (the Collector's `max_recv_msg_size_mib`, grpc-go,
/// tonic) and the largest request runbom's own `otlp` receiver takes by default. A full batch of
/// kernel events (8 192 log records) is 4–5 MiB.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// How an exporter sizes the parts of a request held as kernel events: by the bytes per event
/// the last such request of its signal took, so that each part is written from the events at
/// about three quarters of [`MAX_REQUEST_BYTES`] instead of the whole request being written and
/// then cut on the wire (which reads and copies it again). Until one such request has been
/// written, and for any other request, the request is written whole and cut if it must be.
#[derive(Clone, Debug, Default)]
pub struct EventParts {
    /// Bytes per event of the last request held as events, by signal (0: none yet).
    event_bytes: BTreeMap<SignalKind, usize>,
}

impl EventParts {
    /// The parts `signal` is written in (`None`: written whole).
    #[must_use]
    pub fn plan(&self, signal: &Signal) -> Option<Vec<Vec<Vec<usize>>>> {
        let bytes = *self.event_bytes.get(&signal.kind())?;
        signal.event_parts(MAX_REQUEST_BYTES / 4 * 3 / bytes.max(1))
    }

    /// Learns from `signal` (or a part of it, `events` of its kernel events) written in `bytes`.
    pub fn learn(&mut self, signal: &Signal, events: usize, bytes: usize) {
        if events > 0 && bytes > 0 {
            self.event_bytes
                .insert(signal.kind(), bytes.div_ceil(events));
        }
    }
}

/// An exporter that sends a request's protobuf ([`export_protobuf`] writes it).
pub trait SendsProtobuf {
    /// Where a request goes (a gRPC path, a URL).
    type Target;
    fn buffer(&mut self) -> &mut KeptBuffer;
    fn parts(&mut self) -> &mut EventParts;
    /// Sends one encoded request (in parts under [`MAX_REQUEST_BYTES`] if it is larger),
    /// giving its buffer back when done.
    fn send(
        &mut self,
        target: &Self::Target,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), ExportError>> + Send;
}

/// Writes `signal` as protobuf and sends it: a request held as kernel events in the parts
/// [`EventParts`] plans, each written from the events; any other whole.
pub async fn export_protobuf<E: SendsProtobuf + Send>(
    exporter: &mut E,
    target: &E::Target,
    signal: &Signal,
) -> Result<(), ExportError>
where
    E::Target: Sync,
{
    if let Some(parts) = exporter.parts().plan(signal) {
        for part in parts {
            let mut body = exporter.buffer().take();
            signal.write_protobuf_part(&part, &mut body);
            let events = part.iter().map(Vec::len).sum();
            exporter.parts().learn(signal, events, body.len());
            if !body.is_empty() {
                exporter.send(target, body).await?;
            }
        }
        return Ok(());
    }
    let mut body = exporter.buffer().take();
    signal.write_protobuf(&mut body);
    if let Some(events) = signal.event_count() {
        exporter.parts().learn(signal, events, body.len());
    }
    exporter.send(target, body).await
}

/// An exporter built from the network section.
pub trait NetworkExporter: Exporter + Sized + 'static {
    /// Builds the exporter (reading its certificate files; a gRPC one needs a Tokio runtime).
    fn connect(settings: NetworkSettings) -> Result<Self, ExportError>;
}

/// The section of a network exporter of type `E` (`otlp`: gRPC, `otlphttp`: HTTP).
#[derive(Deserialize)]
#[serde(transparent)]
pub struct NetworkExporterConfig<E> {
    pub section: NetworkConfig,
    #[serde(skip)]
    exporter: PhantomData<fn() -> E>,
}

impl<E> fmt::Debug for NetworkExporterConfig<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.section.fmt(f)
    }
}

impl<E: NetworkExporter> ExporterConfig for NetworkExporterConfig<E> {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        self.section.check(at)
    }

    fn build(&self, retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError> {
        Ok(Box::new(E::connect(self.section.settings(retries))?))
    }

    fn sending_queue(&self) -> Option<&SendingQueue> {
        Some(&self.section.sending_queue)
    }
}

/// Settings shared by the network exporters.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub gzip: bool,
    pub timeout: Duration,
    /// The `tls` section; whether TLS is used also depends on the endpoint's scheme.
    pub tls: ClientTlsSettings,
    pub retry: RetryPolicy,
    /// Counts export attempts that were retried (shared with runbom's telemetry).
    pub retries: Arc<AtomicU64>,
}
