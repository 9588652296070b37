//! From the checked configuration to what the pipelines take: processor settings (BOMs and
//! baselines loaded), pipeline descriptions, queue sizes, and the `runbom validate` check that
//! everything builds.

use std::{collections::BTreeMap, sync::Arc};

use super::model::Config;
use crate::{
    GraphSettings, PipelineSpec, ProcessorSpec,
    component::SpecContext,
    exporter::{ExportError, queue::QueueSizer},
    host::host_name,
    processor::ProcessorError,
    receiver::ReceiverError,
};

/// Something the configuration names that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("exporter `{name}`")]
    Exporter {
        name: String,
        #[source]
        source: Box<ExportError>,
    },
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    #[error(transparent)]
    Extension(#[from] crate::extension::ExtensionError),
    #[error("cannot start an async runtime to check the exporters")]
    Runtime(#[source] std::io::Error),
}

impl Config {
    /// Every processor's settings by name (a BOM that does not load stops runbom here, with
    /// the file, the JSON path and the reason).
    pub fn processor_specs(&self) -> Result<BTreeMap<String, ProcessorSpec>, ProcessorError> {
        let own_endpoints = self.own_endpoints();
        let host_name = host_name();
        let mut out = BTreeMap::new();
        for (name, p) in &self.processors {
            // The pipeline that lists it; checked when the configuration was read: a
            // correlating pipeline lists one source.
            let kernel_source = self
                .pipelines()
                .find(|(_, _, pipeline)| pipeline.processors.contains(name))
                .and_then(|(_, _, pipeline)| {
                    pipeline
                        .receivers
                        .iter()
                        .find(|r| self.receivers.get(*r).is_some_and(|r| r.kernel_events()))
                })
                .map(String::as_str);
            let ctx = SpecContext {
                name,
                kernel_source,
                own_endpoints: &own_endpoints,
                host_name: &host_name,
            };
            out.insert(name.clone(), p.spec(&ctx)?);
        }
        Ok(out)
    }

    /// The pipelines as [`crate::Graph`] takes them.
    #[must_use]
    pub fn pipeline_specs(
        &self,
        processors: &BTreeMap<String, ProcessorSpec>,
    ) -> Vec<PipelineSpec> {
        self.pipelines()
            .map(|(name, signal, p)| PipelineSpec {
                name: name.to_owned(),
                signal,
                receivers: p.receivers.clone(),
                processors: p
                    .processors
                    .iter()
                    .filter_map(|name| processors.get(name).cloned())
                    .collect(),
                exporters: p.exporters.clone(),
            })
            .collect()
    }

    /// Queue sizes: the largest `sending_queue` of each sizer.
    #[must_use]
    pub fn graph_settings(&self) -> GraphSettings {
        let largest = |sizer| {
            self.exporters
                .values()
                .filter_map(|e| e.sending_queue())
                .filter(|q| q.enabled && q.sizer == sizer)
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

    /// runbom's own receivers' addresses: traffic to them is never drift.
    #[must_use]
    pub fn own_endpoints(&self) -> Vec<String> {
        self.receivers
            .values()
            .flat_map(|r| r.own_endpoints())
            .collect()
    }

    /// Checks that every exporter can be built (endpoints and headers parse, TLS files load),
    /// that every processor's files load and that every receiver's TLS files load.
    pub fn validate(&self) -> Result<(), SetupError> {
        // A gRPC exporter spawns its channel's worker when built: `runbom validate` has no
        // runtime.
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(SetupError::Runtime)?,
            ),
        };
        let _entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
        for (name, cfg) in &self.exporters {
            cfg.build(Arc::default())
                .map_err(|source| SetupError::Exporter {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
        }
        self.processor_specs()?;
        self.authenticators()?;
        self.check_persistent_queues()?;
        for (name, cfg) in &self.receivers {
            cfg.validate(name)?;
        }
        Ok(())
    }
}
