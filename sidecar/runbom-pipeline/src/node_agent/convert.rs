//! Kernel events to the stream's messages and back (`proto/node_agent.proto`). Lossless for
//! everything [`KernelEvent`] holds; an event whose detail the reader does not know (a newer
//! node agent) reads as `None` and is counted by the caller, never an error.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use runbom_event::{
    Capture, Detail, GrpcCall, HttpRequest, HttpVersion, KernelEvent, McpCall, McpSide,
    McpTransport, ProcessInfo, TraceParent, Transport, names, semconv::capture,
};

use super::proto::{self, event::Detail as Pd};

/// The stream's form of `e`, numbered `sequence`.
#[must_use]
pub fn to_proto(sequence: u64, e: &KernelEvent) -> proto::Event {
    proto::Event {
        sequence,
        pid: e.pid,
        tid: e.tid,
        cgroup_id: e.cgroup_id,
        start_unix_nano: e.start_ns,
        end_unix_nano: e.end_ns,
        process: Some(process_to_proto(&e.process)),
        detail: Some(detail_to_proto(&e.detail)),
    }
}

fn process_to_proto(p: &ProcessInfo) -> proto::Process {
    proto::Process {
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        exe: p.exe.clone(),
        command_line: p.command_line.clone(),
        container_id: p.container_id.clone().unwrap_or_default(),
        trace_id: p.trace_id.to_vec(),
        fork_tid: p.fork_tid,
        fork_unix_nano: p.fork_ns,
    }
}

fn addr(a: SocketAddr) -> proto::SocketAddress {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    proto::SocketAddress {
        ip,
        port: u32::from(a.port()),
    }
}

fn detail_to_proto(d: &Detail) -> Pd {
    match d {
        Detail::Exec {
            path,
            argv_truncated,
        } => Pd::Exec(proto::Exec {
            path: path.clone(),
            argv_truncated: *argv_truncated,
        }),
        Detail::Exit { code } => Pd::Exit(proto::Exit { code: *code }),
        Detail::Connect {
            remote,
            local,
            transport,
            error,
            fd,
        } => Pd::Connect(proto::Connect {
            remote: Some(addr(*remote)),
            local: local.map(addr),
            transport: transport.map(Transport::as_str).unwrap_or_default().into(),
            error: error.unwrap_or_default().into(),
            fd: *fd,
        }),
        Detail::Accept { peer } => Pd::Accept(proto::Accept {
            peer: peer.map(addr),
        }),
        Detail::FileOpen { path, flags, error } => Pd::FileOpen(proto::FileOpen {
            path: path.clone(),
            flags: *flags,
            error: error.unwrap_or_default().into(),
        }),
        Detail::DnsQuery {
            name,
            qtype,
            server,
        } => Pd::DnsQuery(proto::DnsQuery {
            name: name.clone(),
            qtype: (*qtype).into(),
            server: Some(addr(*server)),
        }),
        Detail::HttpRequest(h) => Pd::HttpRequest(proto::HttpRequest {
            capture: h.capture.as_str().into(),
            method: h.method.clone(),
            host: h.host.clone(),
            target: h.target.clone(),
            peer: h.peer.map(addr),
            traceparent: h.traceparent.map(traceparent_to_proto),
            user_agent: h.user_agent.clone(),
            body_size: h.body_size,
            model: h.model.clone(),
            status: h.status.map(u32::from),
            version: h.version.as_str().into(),
            grpc: h.grpc.as_ref().map(|g| proto::GrpcCall {
                service: g.service.clone(),
                method: g.method.clone(),
                status: g.status,
            }),
            genai: h.genai.as_deref().map(super::genai::to_proto),
            fd: h.fd,
        }),
        Detail::Mcp(m) => Pd::Mcp(mcp_to_proto(m)),
    }
}

fn traceparent_to_proto(t: TraceParent) -> proto::TraceParent {
    proto::TraceParent {
        trace_id: t.trace_id.to_vec(),
        span_id: t.span_id.to_vec(),
        sampled: t.sampled,
    }
}

/// `Err` for an id of the wrong size.
fn traceparent_from_proto(t: Option<proto::TraceParent>) -> Result<Option<TraceParent>, ()> {
    Ok(match t {
        None => None,
        Some(t) => Some(TraceParent {
            trace_id: t.trace_id.try_into().map_err(drop)?,
            span_id: t.span_id.try_into().map_err(drop)?,
            sampled: t.sampled,
        }),
    })
}

fn mcp_to_proto(m: &McpCall) -> proto::McpCall {
    use proto::mcp_call::{Side, Transport as T};
    proto::McpCall {
        side: match m.side {
            McpSide::Client => Side::Client,
            McpSide::Server => Side::Server,
        } as i32,
        span_id: m.span_id.to_vec(),
        method: m.method.clone(),
        target: m.target.clone(),
        request_id: m.request_id.clone(),
        resource_uri: m.resource_uri.clone(),
        session_id: m.session_id.clone(),
        protocol_version: m.protocol_version.clone(),
        transport: match m.transport {
            McpTransport::Pipe => T::Pipe,
            McpTransport::Unix => T::Unix,
            McpTransport::Tcp => T::Tcp,
        } as i32,
        traceparent: m.traceparent.map(traceparent_to_proto),
        tool_error: m.tool_error,
        rpc_error_code: m.rpc_error_code,
        arguments: m.arguments.clone(),
        peer_pid: m.peer_pid,
        server_command_line: m.server_command_line.clone(),
        server_name: m.server_name.clone(),
        server_url: m.server_url.clone(),
        tools: m.tools.clone(),
        answered: m.answered,
    }
}

/// `None` for a side or transport this build does not know, or a malformed id.
fn mcp_from_proto(m: proto::McpCall) -> Option<McpCall> {
    use proto::mcp_call::{Side, Transport as T};
    Some(McpCall {
        side: match Side::try_from(m.side).ok()? {
            Side::Client => McpSide::Client,
            Side::Server => McpSide::Server,
        },
        span_id: m.span_id.try_into().ok()?,
        method: m.method,
        target: m.target,
        request_id: m.request_id,
        resource_uri: m.resource_uri,
        session_id: m.session_id,
        protocol_version: m.protocol_version,
        transport: match T::try_from(m.transport).ok()? {
            T::Pipe => McpTransport::Pipe,
            T::Unix => McpTransport::Unix,
            T::Tcp => McpTransport::Tcp,
        },
        traceparent: traceparent_from_proto(m.traceparent).ok()?,
        tool_error: m.tool_error,
        rpc_error_code: m.rpc_error_code,
        arguments: m.arguments,
        peer_pid: m.peer_pid,
        server_command_line: m.server_command_line,
        server_name: m.server_name,
        server_url: m.server_url,
        tools: m.tools,
        answered: m.answered,
    })
}

/// The kernel event `e` carries, with its sequence number; `None` when it holds a detail this
/// build does not know or a malformed field (an address of the wrong length, an id of the wrong
/// size).
#[must_use]
pub fn from_proto(e: proto::Event) -> Option<(u64, KernelEvent)> {
    let process = Arc::new(process_from_proto(e.process?)?);
    let detail = detail_from_proto(e.detail?)?;
    Some((
        e.sequence,
        KernelEvent {
            pid: e.pid,
            tid: e.tid,
            cgroup_id: e.cgroup_id,
            start_ns: e.start_unix_nano,
            end_ns: e.end_unix_nano,
            process,
            detail,
        },
    ))
}

fn process_from_proto(p: proto::Process) -> Option<ProcessInfo> {
    Some(ProcessInfo {
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        exe: p.exe,
        command_line: p.command_line,
        container_id: (!p.container_id.is_empty()).then_some(p.container_id),
        trace_id: p.trace_id.try_into().ok()?,
        fork_tid: p.fork_tid,
        fork_ns: p.fork_unix_nano,
    })
}

fn addr_from(a: &proto::SocketAddress) -> Option<SocketAddr> {
    let ip = match a.ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(a.ip.as_slice()).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(a.ip.as_slice()).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::try_from(a.port).ok()?))
}

/// An optional address: absent stays `Ok(None)`, malformed is an error (the event is
/// skipped).
fn opt_addr(a: Option<&proto::SocketAddress>) -> Result<Option<SocketAddr>, Malformed> {
    a.map(|a| addr_from(a).ok_or(Malformed)).transpose()
}

/// A field that does not hold what its type says.
struct Malformed;

fn error_name(e: &str) -> Option<&'static str> {
    (!e.is_empty()).then(|| names::errno_named(e))
}

fn detail_from_proto(d: Pd) -> Option<Detail> {
    Some(match d {
        Pd::Exec(x) => Detail::Exec {
            path: x.path,
            argv_truncated: x.argv_truncated,
        },
        Pd::Exit(x) => Detail::Exit { code: x.code },
        Pd::Connect(x) => Detail::Connect {
            remote: addr_from(x.remote.as_ref()?)?,
            local: opt_addr(x.local.as_ref()).ok()?,
            transport: match x.transport.as_str() {
                "tcp" => Some(Transport::Tcp),
                "udp" => Some(Transport::Udp),
                _ => None,
            },
            error: error_name(&x.error),
            fd: x.fd,
        },
        Pd::Accept(x) => Detail::Accept {
            peer: opt_addr(x.peer.as_ref()).ok()?,
        },
        Pd::FileOpen(x) => Detail::FileOpen {
            path: x.path,
            flags: x.flags,
            error: error_name(&x.error),
        },
        Pd::DnsQuery(x) => Detail::DnsQuery {
            name: x.name,
            qtype: names::dns_qtype_named(&x.qtype),
            server: addr_from(x.server.as_ref()?)?,
        },
        Pd::HttpRequest(h) => Detail::HttpRequest(Box::new(HttpRequest {
            capture: match h.capture.as_str() {
                capture::OPENSSL => Capture::Openssl,
                capture::GO_TLS => Capture::GoTls,
                _ => Capture::Socket,
            },
            method: h.method,
            host: h.host,
            target: h.target,
            peer: opt_addr(h.peer.as_ref()).ok()?,
            traceparent: traceparent_from_proto(h.traceparent).ok()?,
            user_agent: h.user_agent,
            body_size: h.body_size,
            model: h.model,
            status: match h.status {
                None => None,
                Some(s) => Some(u16::try_from(s).ok()?),
            },
            version: if h.version == HttpVersion::Http2.as_str() {
                HttpVersion::Http2
            } else {
                HttpVersion::Http1
            },
            grpc: h.grpc.map(|g| GrpcCall {
                service: g.service,
                method: g.method,
                status: g.status,
            }),
            genai: h.genai.and_then(super::genai::from_proto).map(Box::new),
            fd: h.fd,
        })),
        Pd::Mcp(m) => Detail::Mcp(Box::new(mcp_from_proto(m)?)),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn event(detail: Detail) -> KernelEvent {
        KernelEvent {
            pid: 42,
            tid: 43,
            cgroup_id: 7,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_000_001_000,
            process: Arc::new(ProcessInfo {
                pid: 42,
                ppid: 1,
                uid: 1000,
                exe: "/usr/bin/python3".into(),
                command_line: "python3 agent.py --api-key [REDACTED]".into(),
                container_id: Some("abc".into()),
                trace_id: [9; 16],
                fork_tid: 1,
                fork_ns: 5,
            }),
            detail,
        }
    }

    fn details() -> Vec<Detail> {
        let a: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let b: SocketAddr = "[::1]:5353".parse().unwrap();
        vec![
            Detail::Exec {
                path: "/bin/sh".into(),
                argv_truncated: true,
            },
            Detail::Exit { code: Some(3) },
            Detail::Exit { code: None },
            Detail::Connect {
                remote: a,
                local: Some(b),
                transport: Some(Transport::Tcp),
                error: Some("ECONNREFUSED"),
                fd: Some(7),
            },
            Detail::Connect {
                remote: b,
                local: None,
                transport: None,
                error: None,
                fd: None,
            },
            Detail::Accept { peer: Some(a) },
            Detail::FileOpen {
                path: "/data/x".into(),
                flags: 0o101,
                error: Some("ENOENT"),
            },
            Detail::DnsQuery {
                name: "api.openai.com".into(),
                qtype: "AAAA",
                server: b,
            },
            Detail::HttpRequest(Box::new(HttpRequest {
                capture: Capture::Openssl,
                method: "POST".into(),
                host: Some("api.openai.com".into()),
                target: "/v1/chat/completions".into(),
                peer: Some(a),
                traceparent: Some(TraceParent {
                    trace_id: [1; 16],
                    span_id: [2; 8],
                    sampled: true,
                }),
                user_agent: Some("OpenAI/Python".into()),
                body_size: Some(120),
                model: Some("gpt-4o-mini".into()),
                status: Some(200),
                version: HttpVersion::Http1,
                grpc: None,
                genai: Some(Box::new(super::super::genai::tests::exchange())),
                fd: Some(9),
            })),
            Detail::HttpRequest(Box::new(HttpRequest {
                capture: Capture::GoTls,
                method: "POST".into(),
                host: Some("models.internal:443".into()),
                target: "/inference.Model/Generate".into(),
                peer: Some(a),
                traceparent: None,
                user_agent: Some("grpc-go/1.60".into()),
                body_size: None,
                model: None,
                status: Some(200),
                version: HttpVersion::Http2,
                grpc: Some(GrpcCall {
                    service: "inference.Model".into(),
                    method: "Generate".into(),
                    status: Some(0),
                }),
                genai: None,
                fd: None,
            })),
            mcp_detail(),
        ]
    }

    /// An MCP server's side of a failed `tools/call`, every field set.
    fn mcp_detail() -> Detail {
        Detail::Mcp(Box::new(McpCall {
            side: McpSide::Server,
            span_id: [3; 8],
            method: "tools/call".into(),
            target: Some("write_file".into()),
            request_id: Some("4".into()),
            resource_uri: None,
            session_id: None,
            protocol_version: None,
            transport: McpTransport::Pipe,
            traceparent: Some(TraceParent {
                trace_id: [1; 16],
                span_id: [2; 8],
                sampled: true,
            }),
            tool_error: true,
            rpc_error_code: Some(-32602),
            arguments: Some("{\"path\":\"[REDACTED]\"}".into()),
            peer_pid: Some(41),
            server_command_line: Some("npx @modelcontextprotocol/server-filesystem /data".into()),
            server_name: Some("secure-filesystem-server".into()),
            server_url: Some("https://127.0.0.1:8931/mcp".into()),
            tools: vec!["read_file".into(), "write_file".into()],
            answered: true,
        }))
    }

    #[test]
    fn every_detail_round_trips_through_the_wire() {
        for (i, d) in details().into_iter().enumerate() {
            let e = event(d);
            let bytes = to_proto(i as u64 + 1, &e).encode_to_vec();
            let (seq, back) = from_proto(proto::Event::decode(bytes.as_slice()).unwrap()).unwrap();
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(back.detail, e.detail);
            assert_eq!(*back.process, *e.process);
            assert_eq!(
                (
                    back.pid,
                    back.tid,
                    back.cgroup_id,
                    back.start_ns,
                    back.end_ns
                ),
                (e.pid, e.tid, e.cgroup_id, e.start_ns, e.end_ns)
            );
        }
    }

    #[test]
    fn unknown_or_malformed_events_read_as_none() {
        let mut p = to_proto(1, &event(details().remove(0)));
        p.detail = None; // a detail a newer node agent added
        assert!(from_proto(p).is_none());
        let mut p = to_proto(1, &event(details().remove(3)));
        if let Some(Pd::Connect(c)) = &mut p.detail {
            c.remote.as_mut().unwrap().ip = vec![1, 2, 3];
        }
        assert!(from_proto(p).is_none());
        let mut p = to_proto(1, &event(details().remove(0)));
        p.process.as_mut().unwrap().trace_id = vec![1];
        assert!(from_proto(p).is_none());
    }
}
