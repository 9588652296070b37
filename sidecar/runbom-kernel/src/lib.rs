//! runbom's kernel side in userspace: loads the eBPF probes ([`probes`]), reads their ring buffer
//! ([`reader`]), and turns records into [`runbom_event::KernelEvent`]s ([`enrich`]) enriched with
//! the process that caused them ([`proctable`]) and Unix times ([`clock`]), an open's two records
//! joined first ([`openjoin`]); TLS and plaintext
//! HTTP requests are paired with their bodies and responses ([`httptrack`]), MCP's JSON-RPC
//! requests with their responses ([`mcptrack`]), and processes that
//! map a file exporting OpenSSL's functions are watched for ([`openssl`], [`elf`]). What is
//! shed under overload, and when the reader is woken: [`overload`]. The path filter's rules and
//! its first-level table: [`filter`].

pub mod btf;
pub mod clock;
pub mod containers;
pub mod elf;
pub mod enrich;
pub mod filter;
pub mod gotls;
pub mod h2;
pub mod httptrack;
pub mod mcphttp;
pub mod mcptrack;
pub mod openjoin;
pub mod openssl;
pub mod overload;
pub mod probes;
pub mod proctable;
pub mod reader;

pub use enrich::Enricher;
pub use probes::{HttpCapture, Losses, McpCapture, ProbeError, ProbeSettings, Probes};
