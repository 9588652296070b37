//! runbom's AI-BOM processor (`docs/aibom.md`).
//!
//! - [`bom`]: the declared CycloneDX AI-BOM (`docs/declared-bom.md`), with errors that
//!   name the JSON path; [`reload`] keeps it current and keeps the last good one.
//! - [`span`]: what a span is, across the GenAI, OpenInference and OpenLLMetry families and
//!   runbom's kernel events; [`endpoint`] and [`glob`]: the matching rules.
//! - [`judge`]: one trace against the BOM: the `aibom.*` attributes and drift flags
//!   (`docs/telemetry-contract.md` §3). It reads each span's [`view`], concludes a [`verdict`] per span
//!   by the declared workload's [`rules`], and returns what it [`judged`] of the trace.
//! - [`alert`]: one log record per finding with the execution chain (§4); [`processor`]: spans
//!   held per trace for `wait`, bounded, then judged and released.
//! - [`baseline`]: the learned behavioural baseline per agent and its `baseline_*` flags.
//! - [`observed`]: the runtime BOM of what was seen, from the file exporter's OTLP/JSON;
//!   [`diff`]: declared against observed.
//! - [`shadow`]: shadow AI in the kernel log records no trace claimed (`shadow_ai`);
//!   [`unclaimed`]: drift in those of declared agents' processes; [`workloads`]: the
//!   workloads both remember and the alerts they hold.
//! - [`scrub`]: nothing written contains a credential (§5).

pub mod alert;
mod annotate;
pub mod arguments;
pub mod baseline;
pub mod bom;
pub mod diff;
pub mod endpoint;
pub mod glob;
pub mod guardrail;
pub mod iri;
pub mod judge;
pub mod judged;
pub mod observed;
pub mod otlp;
pub mod pids;
pub mod processor;
pub mod reload;
pub mod rules;
pub mod scrub;
pub mod shadow;
pub mod span;
pub mod unclaimed;
pub mod verdict;
pub mod view;
mod workloads;

pub use bom::{BomError, DeclaredBom, Kind};
pub use processor::{AnnotatedRelease, Processor, Released, Settings, Stats};
pub use reload::BomWatch;
