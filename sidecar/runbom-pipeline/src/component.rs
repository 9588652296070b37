//! What every component type provides, whatever its kind: a configuration that checks itself
//! and builds the running component. [`crate::components`] lists the types; each type's
//! configuration lives beside it (`receiver/ebpf/config.rs`, `exporter/file.rs`, ...).

use std::{
    any::Any,
    fmt::Debug,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
};

use runbom_event::KernelEvent;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    Ingest, ProcessorSpec, SignalKind, Telemetry,
    config::section::{ConfigError, Section},
    exporter::{BoxExporter, ExportError, queue::SendingQueue},
    extension::Authenticators,
    processor::ProcessorError,
    receiver::ReceiverError,
};

/// A receiver's configuration (`receivers.<name>`).
pub trait ReceiverConfig: Any + Debug + Send + Sync {
    /// Values the YAML types allow but the receiver does not.
    fn check(&self, _at: &Section) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Why it cannot feed a pipeline of `signal`, if it cannot.
    fn refuses(&self, _signal: SignalKind) -> Option<String> {
        None
    }

    /// Whether it produces kernel events (which a `correlate` processor takes).
    fn kernel_events(&self) -> bool {
        false
    }

    /// The addresses it listens on: traffic to them is runbom's own.
    fn own_endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    /// The extensions its `auth` sections name: (YAML path under the receiver, name).
    fn authenticators(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Loads what it will need (certificates) without starting anything (`runbom validate`).
    fn validate(&self, _name: &str) -> Result<(), ReceiverError> {
        Ok(())
    }

    /// Starts the receiver configured as `name`.
    fn start<'a>(&'a self, name: &'a str, ctx: ReceiverContext<'a>) -> StartFuture<'a>;
}

/// What a starting receiver is given.
pub struct ReceiverContext<'a> {
    /// Where its requests go.
    pub ingest: Ingest,
    /// The correlate processor's input, when one takes this receiver's kernel events.
    pub kernel_events: Option<mpsc::Sender<Vec<KernelEvent>>>,
    pub telemetry: &'a Arc<Telemetry>,
    pub stop: &'a CancellationToken,
    /// The enabled authenticators, for `auth` sections.
    pub authenticators: &'a Authenticators,
}

/// A started receiver: its tasks (which end after `stop`), and what must live until they
/// have ended (the eBPF probes).
#[derive(Default)]
pub struct Started {
    pub tasks: Vec<JoinHandle<Result<(), ReceiverError>>>,
    pub keep: Option<Box<dyn Any + Send>>,
}

/// What [`ReceiverConfig::start`] returns.
pub type StartFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Started, ReceiverError>> + Send + 'a>>;

/// A processor's configuration (`processors.<name>`).
pub trait ProcessorConfig: Any + Debug + Send + Sync {
    /// Values the YAML types allow but the processor does not.
    fn check(&self, _at: &Section) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Why the processor configured as `name` cannot be in a pipeline of `signal`, if it
    /// cannot.
    fn refuses(&self, _name: &str, _signal: SignalKind) -> Option<String> {
        None
    }

    /// Whether it gives alerts (listed among a logs pipeline's receivers, it feeds them).
    fn gives_alerts(&self) -> bool {
        false
    }

    /// The settings the pipeline stage takes (loading the files they name).
    fn spec(&self, ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError>;
}

/// What a processor's [`ProcessorConfig::spec`] may need to know.
pub struct SpecContext<'a> {
    /// The processor's configured name.
    pub name: &'a str,
    /// The receiver of kernel events in the pipeline that lists the processor.
    pub kernel_source: Option<&'a str>,
    /// Every address runbom's own receivers listen on.
    pub own_endpoints: &'a [String],
    /// This node's name (`host.name`).
    pub host_name: &'a str,
}

/// An exporter's configuration (`exporters.<name>`).
pub trait ExporterConfig: Any + Debug + Send + Sync {
    /// Values the YAML types allow but the exporter does not.
    fn check(&self, _at: &Section) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Builds the exporter; `retries` counts its retried attempts. Needs a Tokio runtime.
    fn build(&self, retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError>;

    /// Its `sending_queue`, when it has one and it is enabled.
    fn sending_queue(&self) -> Option<&SendingQueue> {
        None
    }
}
