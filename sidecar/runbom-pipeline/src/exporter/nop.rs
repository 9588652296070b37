//! The `nop` exporter: accepts everything and sends it nowhere (the Collector's `nop`).

use std::sync::{Arc, atomic::AtomicU64};

use runbom_otlp::signal::Signal;
use serde::Deserialize;

use super::{
    error::ExportError,
    export::{BoxExporter, ExportFuture, Exporter},
};
use crate::component::ExporterConfig;

/// The `nop` exporter's section: empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

impl ExporterConfig for NopConfig {
    fn build(&self, _retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError> {
        Ok(Box::new(NopExporter))
    }
}

/// Sends nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NopExporter;

impl Exporter for NopExporter {
    fn send<'a>(&'a mut self, _signal: &'a Signal) -> ExportFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn another(&self) -> Option<BoxExporter> {
        Some(Box::new(Self))
    }
}
