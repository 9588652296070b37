//! What can go wrong turning a processor's configuration into its running settings.

/// A processor whose settings could not be loaded (its files, mostly).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("processors.{name}.bom: the declared AI-BOM does not load")]
    Bom {
        name: String,
        #[source]
        source: runbom_aibom::BomError,
    },
    #[error("processors.{name}.ignore_endpoints: {reason}")]
    IgnoreEndpoint { name: String, reason: String },
    #[error("processors.{name}.baseline: the baseline does not load")]
    Baseline {
        name: String,
        #[source]
        source: runbom_aibom::baseline::BaselineError,
    },
    #[error("processors.{name}: {reason}")]
    K8s { name: String, reason: String },
}
