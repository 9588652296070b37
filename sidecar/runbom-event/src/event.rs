//! The kernel event model: one [`KernelEvent`] per observed syscall (or captured HTTP request),
//! with the process that caused it and what happened ([`Detail`]). The telemetry contract
//! (`docs/telemetry-contract.md` §1) says how each one is exported.

use std::{net::SocketAddr, sync::Arc};

use crate::{
    process::ProcessInfo,
    semconv::{capture, event},
};

/// A kernel event ready to be exported.
#[derive(Clone, Debug)]
pub struct KernelEvent {
    pub pid: u32,
    pub tid: u32,
    pub cgroup_id: u64,
    /// Unix nanoseconds at the syscall's entry.
    pub start_ns: u64,
    /// Unix nanoseconds at its return (equal to `start_ns` when the return was not observed).
    pub end_ns: u64,
    /// The process as it was when the event happened.
    pub process: Arc<ProcessInfo>,
    pub detail: Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    Exec {
        path: String,
        argv_truncated: bool,
    },
    Exit {
        /// `None` when the process was killed (no `exit_group` call was seen).
        code: Option<i32>,
    },
    Connect {
        remote: SocketAddr,
        /// The socket's local end (`client.*`): known for TCP once the kernel bound a port;
        /// `None` for UDP and failed connects.
        local: Option<SocketAddr>,
        transport: Option<Transport>,
        /// The errno name when the call failed (`EINPROGRESS` is not a failure).
        error: Option<&'static str>,
        /// The socket's file descriptor in its process: the requests later written on it went
        /// over the connection this call opened. Not exported.
        fd: Option<i32>,
    },
    Accept {
        peer: Option<SocketAddr>,
    },
    FileOpen {
        path: String,
        flags: u32,
        error: Option<&'static str>,
    },
    DnsQuery {
        name: String,
        /// The question's type (`A`, `AAAA`, …).
        qtype: &'static str,
        server: SocketAddr,
    },
    /// An HTTP/1.x request seen at the socket or inside TLS (contract §1 `http.request`).
    HttpRequest(Box<HttpRequest>),
    /// One side of an MCP call (contract §1 `mcp.client`, `mcp.server`).
    Mcp(Box<crate::McpCall>),
}

/// Where an HTTP request was captured (`runbom.capture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Plaintext, at the socket write.
    Socket,
    /// Inside TLS, at OpenSSL's `SSL_write`/`SSL_write_ex`.
    Openssl,
    /// Inside TLS, at Go's `crypto/tls`.
    GoTls,
}

impl Capture {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => capture::SOCKET,
            Self::Openssl => capture::OPENSSL,
            Self::GoTls => capture::GO_TLS,
        }
    }
}

/// A W3C `traceparent` header, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// What runbom exports of a captured HTTP request; credentials are already redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub capture: Capture,
    pub method: String,
    /// The `Host` header, else the peer address when known.
    pub host: Option<String>,
    /// The request target with query values redacted.
    pub target: String,
    /// The connected peer (for `network.peer.*`, `server.port`) when known.
    pub peer: Option<SocketAddr>,
    pub traceparent: Option<TraceParent>,
    pub user_agent: Option<String>,
    /// `Content-Length`, when given.
    pub body_size: Option<u64>,
    /// `model` of an LLM API request body (`gen_ai.request.model`).
    pub model: Option<String>,
    /// The response status, when the response was seen.
    pub status: Option<u16>,
    /// HTTP/1.x or HTTP/2 (`network.protocol.version`).
    pub version: HttpVersion,
    /// The gRPC call an HTTP/2 request carries (`content-type: application/grpc`).
    pub grpc: Option<GrpcCall>,
    /// What the exchange said as an LLM API call (`gen_ai.*`), when it was one and the response
    /// was read.
    pub genai: Option<Box<crate::GenAi>>,
    /// The socket written to, for an HTTP/1.x `socket` capture: with the process, it names the
    /// connection the request went over (the `Detail::Connect` of the same fd). Not exported.
    pub fd: Option<i32>,
}

/// The HTTP version a request was seen in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersion {
    #[default]
    Http1,
    Http2,
}

impl HttpVersion {
    /// `network.protocol.version`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "1.1",
            Self::Http2 => "2",
        }
    }
}

/// A gRPC call: `:path` `/{service}/{method}` and the `grpc-status` of its trailers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcCall {
    pub service: String,
    pub method: String,
    pub status: Option<u32>,
}

impl GrpcCall {
    /// The call named by an HTTP/2 `:path` of the form `/package.Service/Method`.
    #[must_use]
    pub fn from_path(path: &str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains(['/', '?']) {
            return None;
        }
        Some(Self {
            service: service.to_owned(),
            method: method.to_owned(),
            status: None,
        })
    }
}

impl Detail {
    /// The W3C trace context the event carried from the application: a captured HTTP
    /// request's `traceparent` header, an MCP request's `params._meta.traceparent`.
    #[must_use]
    pub fn traceparent(&self) -> Option<TraceParent> {
        match self {
            Self::HttpRequest(h) => h.traceparent,
            Self::Mcp(m) => m.traceparent,
            _ => None,
        }
    }

    /// The contract's `runbom.event` value.
    #[must_use]
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Exec { .. } => event::PROCESS_EXEC,
            Self::Exit { .. } => event::PROCESS_EXIT,
            Self::Connect { .. } => event::NET_CONNECT,
            Self::Accept { .. } => event::NET_ACCEPT,
            Self::FileOpen { .. } => event::FILE_OPEN,
            Self::DnsQuery { .. } => event::DNS_QUERY,
            Self::HttpRequest(_) => event::HTTP_REQUEST,
            Self::Mcp(m) => match m.side {
                crate::McpSide::Client => event::MCP_CLIENT,
                crate::McpSide::Server => event::MCP_SERVER,
            },
        }
    }
}
