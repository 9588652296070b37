//! Processors: stages between a pipeline's receivers and its exporters. Each folder holds the
//! processor, its section of the configuration (`config.rs`) and the conversion into the
//! settings its stage takes.

pub mod aibom;
pub mod batch;
pub mod correlate;
mod error;
pub mod k8sattributes;
pub mod memory_limiter;

pub use error::ProcessorError;
