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
mod extensions;
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
pub use service::{Pipeline, Pipelines, SelfOtlp, SelfProtocol, Service, Telemetry};
pub use tls::{ClientTlsConfig, ServerTlsConfig};

#[cfg(test)]
mod tests;

/// Test support: the message `text`, read as `c.yaml`, is refused with.
#[cfg(test)]
pub(crate) fn refusal(text: &str) -> String {
    Config::parse(text, "c.yaml").unwrap_err().0
}

/// Test support: asserts that `text` is refused with a message that contains `want`.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_refused(text: &str, want: &str) {
    let e = refusal(text);
    assert!(e.contains(want), "{e}");
}
