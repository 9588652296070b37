//! runbom's kernel event model and the telemetry contract's names, free of anything that loads
//! eBPF: the events ([`event`]) and the process that caused them ([`process`]), names for the
//! numbers the kernel reports ([`names`]), credential redaction ([`redact`]), HTTP/1.x head
//! parsing ([`http`]) and span and trace ids ([`ids`]).

pub mod event;
pub mod http;
pub mod ids;
pub mod names;
pub mod process;
pub mod redact;

pub use event::{Capture, Detail, HttpRequest, KernelEvent, TraceParent, Transport};
pub use process::ProcessInfo;
