//! runbom's own protocol between the node agent and the per-pod sidecars
//! (`proto/node_agent.proto`, docs/sidecar.md).
//!
//! Node agent side: the `ebpf` receiver with a `sidecars` section diverts the kernel events of
//! subscribed pods into a [`hub::Hub`] and serves them on a Unix socket ([`server`]), each
//! caller identified by the kernel when it connects ([`peer`], [`caller`]) and given a slot in
//! its pod's share of the connections ([`slots`]). Sidecar side: the `node_agent` receiver
//! (`receiver/node_agent`) subscribes and hands the events on as the `ebpf` receiver would.
//! [`convert`] turns kernel events into the stream's messages and back.

pub mod caller;
pub mod config;
pub mod convert;
mod genai;
pub mod hub;
pub mod peer;
pub mod server;
pub mod slots;

#[cfg(test)]
mod hub_tests;

/// The generated messages, client and server of `proto/node_agent.proto`.
#[allow(clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("runbom.nodeagent.v1");
}

/// The protocol version a node agent announces in its `Hello` (the proto package's).
pub const PROTOCOL: &str = "v1";
