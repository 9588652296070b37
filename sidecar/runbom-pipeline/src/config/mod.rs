//! runbom's configuration: Collector-shaped YAML (`receivers`, `processors`, `exporters`,
//! `service.pipelines`), with `${env:VAR}` substitution. Every struct refuses unknown keys and
//! every error names the file and the YAML path of what is wrong.
//!
//! This module holds what is shared: the loader ([`Config::parse`]), the `service` section,
//! durations, the `tls` sections and [`ConfigError`]. Each component's own section, its checks
//! and its conversion into running settings live beside the component; [`crate::components`]
//! lists the types.

pub mod duration;
mod env;
mod load;
pub mod model;
mod pipelines;
mod runtime;
pub mod section;
pub mod service;
pub mod tls;

pub use load::EMBEDDED_DEFAULT;
pub use model::Config;
pub use runtime::SetupError;
pub use section::{ConfigError, Section};
pub use service::{Pipeline, Pipelines, SelfOtlp, Service, Telemetry};
pub use tls::{ClientTlsConfig, ServerTlsConfig};

#[cfg(test)]
mod tests;
