//! Kubernetes metadata for runbom: which pod, container and workload a process belongs to.
//!
//! A process's cgroup path names its container and pod ([`runbom_event::cgroup`]); this
//! node's pods come from the API server, watched with a `spec.nodeName` field selector
//! ([`watch`]), kept in a [`PodIndex`] by pod uid and container id, and turned into the
//! OpenTelemetry resource attributes of the Kubernetes semantic conventions ([`PodMeta`]).
//! [`Resolver`] answers "what are the `k8s.*` attributes of pid N".

pub mod index;
pub mod meta;
pub mod owner;
pub mod resolve;
pub mod watch;

pub use index::PodIndex;
pub use meta::{ContainerMeta, Owner, PodMeta};
pub use resolve::{Place, Resolver};
pub use watch::{Auth, WatchError, check, start};
