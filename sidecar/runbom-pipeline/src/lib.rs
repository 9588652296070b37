//! runbom's Collector-compatible pipeline: receivers push OTLP requests through an [`Ingest`]
//! into per-signal pipelines (bounded channels, one owning task per stage), processors batch
//! them, and exporter stages deliver them. [`graph::Graph`] builds and drains it all.
//!
//! Every component sits in its own file or folder with its section of the configuration, its
//! checks and what it builds ([`component`]); [`components`] is the one list of types, and
//! [`config`] reads a configuration through it.

pub mod admin;
pub mod component;
pub mod components;
pub mod config;
pub mod exporter;
pub mod extension;
pub mod graph;
pub mod host;
pub mod ingest;
pub mod node_agent;
pub mod processor;
pub mod receiver;
pub mod telemetry;
pub mod transport;

pub use config::{Config, ConfigError};
pub use graph::{DEFAULT_QUEUE_ITEMS, Graph, GraphSettings, PipelineSpec, ProcessorSpec};
pub use ingest::{Ingest, Refusal};
pub use runbom_otlp::signal::{Signal, SignalKind};
pub use telemetry::{StageCounters, Telemetry};
