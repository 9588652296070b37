//! The component types this build has: the one list that parsing, `runbom validate`, the
//! "this build has: ..." messages and building read. A new component type is its own file
//! (or folder) plus one line here.

use serde::de::DeserializeOwned;

use crate::{
    component::{ExporterConfig, ProcessorConfig, ReceiverConfig},
    config::{
        model::Config,
        section::{ConfigError, Section},
    },
    exporter::{debug, file, nop, otlp, otlphttp},
    processor::{aibom, batch, correlate, memory_limiter},
    receiver::{ebpf, otlp as otlp_receiver},
};

/// Receiver types, in the order the "this build has" message lists them.
pub const RECEIVERS: &[Factory<dyn ReceiverConfig>] = &[
    receiver::<ebpf::config::EbpfConfig>("ebpf"),
    receiver::<otlp_receiver::OtlpReceiverConfig>("otlp"),
];

/// Processor types.
pub const PROCESSORS: &[Factory<dyn ProcessorConfig>] = &[
    processor::<aibom::config::AibomConfig>("aibom"),
    processor::<batch::config::BatchConfig>("batch"),
    processor::<correlate::config::CorrelateConfig>("correlate")
        .checking_pipelines(correlate::config::check_pipelines),
    processor::<memory_limiter::config::MemoryLimiterConfig>("memory_limiter"),
];

/// Exporter types.
pub const EXPORTERS: &[Factory<dyn ExporterConfig>] = &[
    exporter::<otlp::OtlpExporterConfig>("otlp"),
    exporter::<otlphttp::OtlpHttpExporterConfig>("otlphttp"),
    exporter::<file::FileExporterConfig>("file"),
    exporter::<debug::DebugExporterConfig>("debug"),
    exporter::<nop::NopConfig>("nop"),
];

/// One component type: its name in the configuration (before any `/name`) and how to read
/// its section. What the configuration then does (its checks, what it builds) is the
/// configuration type's own ([`crate::component`]).
pub struct Factory<C: ?Sized> {
    pub name: &'static str,
    pub parse: fn(&Section, &serde_yaml::Value) -> Result<Box<C>, ConfigError>,
    /// A check across the pipelines that components of this type need, run once.
    pub check_pipelines: Option<PipelinesCheck>,
}

/// A check of the whole configuration's pipelines.
pub type PipelinesCheck = fn(&Config) -> Result<(), ConfigError>;

impl<C: ?Sized> Factory<C> {
    const fn checking_pipelines(mut self, check: PipelinesCheck) -> Self {
        self.check_pipelines = Some(check);
        self
    }
}

/// The names of `table`'s types, as the "this build has" message lists them.
#[must_use]
pub fn names<C: ?Sized>(table: &[Factory<C>]) -> String {
    table.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

const fn receiver<T: ReceiverConfig + DeserializeOwned>(
    name: &'static str,
) -> Factory<dyn ReceiverConfig> {
    Factory {
        name,
        parse: |at, v| Ok(Box::new(at.parse::<T>(v)?)),
        check_pipelines: None,
    }
}

const fn processor<T: ProcessorConfig + DeserializeOwned>(
    name: &'static str,
) -> Factory<dyn ProcessorConfig> {
    Factory {
        name,
        parse: |at, v| Ok(Box::new(at.parse::<T>(v)?)),
        check_pipelines: None,
    }
}

const fn exporter<T: ExporterConfig + DeserializeOwned>(
    name: &'static str,
) -> Factory<dyn ExporterConfig> {
    Factory {
        name,
        parse: |at, v| Ok(Box::new(at.parse::<T>(v)?)),
        check_pipelines: None,
    }
}
