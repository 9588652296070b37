//! What can go wrong starting or running a receiver.

use std::io;

/// A receiver that did not start, or that stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("{what}: cannot listen on {addr} (is another collector already using it?)")]
    Bind {
        what: String,
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A `tls` section whose files do not load (the message names the section).
    #[error("{0}")]
    Tls(String),
    /// An `auth` section naming no enabled authenticator.
    #[error("{0}")]
    Auth(String),
    /// A server that stopped on an error (`what` names the receiver and its protocol).
    #[error("{what}")]
    Serve {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The probes did not load: privileges, BTF, the verifier.
    #[error(transparent)]
    Probes(#[from] runbom_kernel::ProbeError),
    #[error("starting the OpenSSL watcher")]
    OpensslWatcher(#[source] io::Error),
    /// The task reading the node agent's event stream ended abnormally (it panicked).
    #[error("the task reading the node agent's events")]
    StreamReaderTask(#[source] tokio::task::JoinError),
    #[error("reading the ring buffer")]
    Reader(#[source] io::Error),
    /// The node agent refused this sidecar (not in a pod, or a claim of another pod).
    #[error("the node agent at {socket} refused this sidecar: {reason}")]
    NodeAgentRefused { socket: String, reason: String },
}
