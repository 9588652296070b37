//! runbom's kernel side in userspace: loads the eBPF probes ([`probes`]), reads their ring buffer
//! ([`reader`]), and turns records into [`event::KernelEvent`]s enriched with the process that
//! caused them ([`proctable`]), Unix times ([`clock`]) and names ([`names`]), with credentials
//! redacted ([`redact`]).

pub mod clock;
pub mod event;
pub mod http;
pub mod httptrack;
pub mod names;
pub mod openssl;
pub mod probes;
pub mod proctable;
pub mod reader;
pub mod redact;

pub use event::{Capture, Detail, Enricher, HttpRequest, KernelEvent, TraceParent, Transport};
pub use probes::{HttpCapture, Losses, ProbeError, ProbeSettings, Probes};
