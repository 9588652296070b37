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
    processor::{aibom, batch, correlate, k8sattributes, memory_limiter},
    receiver::{ebpf, node_agent, otlp as otlp_receiver},
};

/// Receiver types, in the order the "this build has" message lists them.
pub const RECEIVERS: &[Factory<dyn ReceiverConfig>] = &[
    Factory::of::<ebpf::config::EbpfConfig>("ebpf"),
    Factory::of::<otlp_receiver::OtlpReceiverConfig>("otlp"),
    Factory::of::<node_agent::config::NodeAgentConfig>("node_agent"),
];

/// Processor types.
pub const PROCESSORS: &[Factory<dyn ProcessorConfig>] = &[
    Factory::of::<aibom::config::AibomConfig>("aibom"),
    Factory::of::<batch::config::BatchConfig>("batch"),
    Factory::of::<correlate::config::CorrelateConfig>("correlate")
        .checking_pipelines(correlate::config::check_pipelines),
    Factory::of::<memory_limiter::config::MemoryLimiterConfig>("memory_limiter"),
    Factory::of::<k8sattributes::config::K8sAttributesConfig>("k8sattributes"),
];

/// Exporter types.
pub const EXPORTERS: &[Factory<dyn ExporterConfig>] = &[
    Factory::of::<otlp::OtlpExporterConfig>("otlp"),
    Factory::of::<otlphttp::OtlpHttpExporterConfig>("otlphttp"),
    Factory::of::<file::FileExporterConfig>("file"),
    Factory::of::<debug::DebugExporterConfig>("debug"),
    Factory::of::<nop::NopConfig>("nop"),
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
    /// The type named `name` whose section is a `T`.
    const fn of<T: DeserializeOwned + Boxed<C>>(name: &'static str) -> Self {
        Self {
            name,
            parse: |at, v| Ok(at.parse::<T>(v)?.boxed()),
            check_pipelines: None,
        }
    }

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

/// A configuration type as the trait object of its kind (`Box<dyn ReceiverConfig>`, ...).
pub trait Boxed<C: ?Sized> {
    fn boxed(self) -> Box<C>;
}

impl<T: ReceiverConfig> Boxed<dyn ReceiverConfig> for T {
    fn boxed(self) -> Box<dyn ReceiverConfig> {
        Box::new(self)
    }
}

impl<T: ProcessorConfig> Boxed<dyn ProcessorConfig> for T {
    fn boxed(self) -> Box<dyn ProcessorConfig> {
        Box::new(self)
    }
}

impl<T: ExporterConfig> Boxed<dyn ExporterConfig> for T {
    fn boxed(self) -> Box<dyn ExporterConfig> {
        Box::new(self)
    }
}
