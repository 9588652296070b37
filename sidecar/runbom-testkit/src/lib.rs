//! runbom's one test kit, shared by every crate's integration tests and the benchmarks.
//!
//! - [`TempDir`], [`free_port`]: a scratch directory and loopback ports per test;
//! - [`Proc`]: a child process that is always killed, with bounded waits ([`run_bounded`]);
//! - [`Runbom`] and [`SidecarConfig`]: the `runbom` binary started on a configuration and
//!   stopped with SIGTERM, and the configuration most tests give it;
//! - [`Sink`], [`Rotel`], [`DnsServer`], [`HttpServer`]: real peers (`tests/otlp_sink.py`,
//!   rotel's agent, `tests/http_workload.py server`);
//! - [`python`]: the project's Python helpers (`tests/*.py`, the OpenTelemetry SDK);
//! - [`requests`], [`harness`], [`client`]: sample OTLP requests, an in-process receiver
//!   harness and raw HTTP/gRPC clients for `runbom-pipeline`'s tests;
//! - [`random`]: random OTLP trace and log requests from a seed (encoders checked against
//!   prost and `serde_json`);
//! - [`random_events`]: random kernel events from a seed, and a busy node's mix of them (log
//!   records written from the events checked against the typed path, and timed);
//! - [`agent_trace`]: traces shaped like the reference agent's, for the AI-BOM tests;
//! - [`leak`]: scans everything runbom wrote for a secret and its 12-character pieces;
//! - [`heap`]: a global allocator that tracks the heap bytes held and their peak.
//!
//! Nothing here mocks runbom's peers: the receivers are the OpenTelemetry protocol's own
//! Python bindings, the workloads real processes doing real syscalls. Every helper panics
//! with a message on failure (these are tests), except the launcher's `try_` functions that
//! the benchmarks use.

// Every helper panics with a message when what it waits for does not happen: that is how a
// test fails, so it is not repeated on each function.
#![allow(clippy::missing_panics_doc)]

pub mod agent_trace;
pub mod client;
pub mod config;
pub mod coverage;
pub mod cpu;
pub mod fs;
pub mod h2_peers;
pub mod harness;
pub mod heap;
pub mod http_server;
pub mod items;
pub mod kernel;
pub mod kube;
pub mod leak;
pub mod net;
pub mod otlp_file;
pub mod peers;
pub mod pki;
pub mod process;
pub mod python;
pub mod random;
pub mod random_events;
pub mod requests;
pub mod runbom;
pub mod shadow_run;
pub mod sink;

pub use config::{SidecarConfig, pipeline};
pub use fs::{TempDir, lines_of, python_bin, test_script, workspace_root};
pub use http_server::HttpServer;
pub use net::{free_port, http_exchange, http_get, metrics, wait_listening};
pub use peers::{DnsServer, Rotel, RssSampler};
pub use process::{Proc, eventually, indent, run_bounded, strip_ansi};
pub use runbom::{READY_LINE, Ready, Runbom, config_command, runbom_command, stop_summary};
pub use sink::Sink;

/// The path of the `runbom` binary under test; only `runbom`'s own integration tests (and
/// benchmarks) have it, so it is a macro expanded there.
#[macro_export]
macro_rules! runbom_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_runbom"))
    };
}
