//! Processors: stages between a pipeline's receivers and its exporters.

pub mod aibom;
pub mod batch;
pub mod correlate;
pub mod memory_limiter;
