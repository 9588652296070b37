//! The attributes of a kernel event, described once against [`AttributeSink`]: what its span
//! and its log record carry (`docs/telemetry-contract.md` §1), whichever output they are
//! written to ([`super::sink`]).

use std::net::{IpAddr, SocketAddr};

use runbom_event::{
    Detail, KernelEvent, ProcessInfo, names,
    semconv::{
        CLIENT_ADDRESS, CLIENT_PORT, CONTAINER_ID, DNS_QUESTION_NAME, ERROR_TYPE, EVENT_NAME,
        FILE_PATH, GEN_AI_REQUEST_MODEL, HTTP_REQUEST_BODY_SIZE, HTTP_REQUEST_METHOD,
        HTTP_RESPONSE_STATUS_CODE, NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT, NETWORK_PROTOCOL_NAME,
        NETWORK_PROTOCOL_VERSION, NETWORK_TRANSPORT, NETWORK_TYPE, PROCESS_COMMAND_LINE,
        PROCESS_EXECUTABLE_PATH, PROCESS_EXIT_CODE, PROCESS_PARENT_PID, PROCESS_PID,
        PROCESS_USER_ID, RPC_GRPC_STATUS_CODE, RPC_METHOD, RPC_SERVICE, RPC_SYSTEM,
        RPC_SYSTEM_GRPC, RUNBOM_CAPTURE, RUNBOM_CORRELATION_CONFIDENCE, RUNBOM_CORRELATION_METHOD,
        RUNBOM_DNS_QUESTION_TYPE, RUNBOM_EVENT, RUNBOM_EXEC_ARGV_TRUNCATED, RUNBOM_FILE_FLAGS,
        SERVER_ADDRESS, SERVER_PORT, THREAD_ID, URL_FULL, URL_PATH, USER_AGENT_ORIGINAL,
    },
};

use super::{AttributeSink, Placement, genai, mcp};

/// What a log record carries beyond its event's attributes (those its span has too).
pub(crate) fn log_only_attributes(ev: &KernelEvent, a: &mut impl AttributeSink) {
    a.str(EVENT_NAME, ev.detail.event_name());
}

/// The attributes of an event (of its span, and of its log record before
/// [`log_only_attributes`]).
pub(crate) fn event_attributes_into(
    ev: &KernelEvent,
    placement: Option<&Placement>,
    a: &mut impl AttributeSink,
) {
    a.str(RUNBOM_EVENT, ev.detail.event_name());
    if let Some(placed) = placement {
        a.str(RUNBOM_CORRELATION_METHOD, placed.method);
        a.str(RUNBOM_CORRELATION_CONFIDENCE, placed.confidence);
    }
    a.int(PROCESS_PID, ev.pid.into());
    a.int(THREAD_ID, ev.tid.into());
    a.process(&ev.process);
    let net_type = |ip: &std::net::IpAddr| if ip.is_ipv4() { "ipv4" } else { "ipv6" };
    match &ev.detail {
        Detail::Exec { argv_truncated, .. } => {
            if *argv_truncated {
                a.bool(RUNBOM_EXEC_ARGV_TRUNCATED, true);
            }
        }
        Detail::Exit { code } => {
            if let Some(c) = code {
                a.int(PROCESS_EXIT_CODE, (*c).into());
            }
        }
        Detail::Connect {
            remote,
            local,
            transport,
            error,
            fd: _,
        } => {
            a.formatted(SERVER_ADDRESS, ip(remote.ip()));
            a.int(SERVER_PORT, remote.port().into());
            a.formatted(NETWORK_PEER_ADDRESS, ip(remote.ip()));
            a.int(NETWORK_PEER_PORT, remote.port().into());
            if let Some(local) = local {
                a.formatted(CLIENT_ADDRESS, ip(local.ip()));
                a.int(CLIENT_PORT, local.port().into());
            }
            if let Some(t) = transport {
                a.str(NETWORK_TRANSPORT, t.as_str());
            }
            a.str(NETWORK_TYPE, net_type(&remote.ip()));
            if let Some(e) = error {
                a.str(ERROR_TYPE, e);
            }
        }
        Detail::Accept { peer } => {
            a.str(NETWORK_TRANSPORT, "tcp");
            if let Some(peer) = peer {
                a.formatted(CLIENT_ADDRESS, ip(peer.ip()));
                a.int(CLIENT_PORT, peer.port().into());
                a.formatted(NETWORK_PEER_ADDRESS, ip(peer.ip()));
                a.int(NETWORK_PEER_PORT, peer.port().into());
                a.str(NETWORK_TYPE, net_type(&peer.ip()));
            }
        }
        Detail::FileOpen { path, flags, error } => {
            a.str(FILE_PATH, path);
            names::with_open_flags(*flags, |f| a.str(RUNBOM_FILE_FLAGS, f));
            if let Some(e) = error {
                a.str(ERROR_TYPE, e);
            }
        }
        Detail::DnsQuery {
            name,
            qtype,
            server,
        } => {
            a.str(DNS_QUESTION_NAME, name);
            a.str(RUNBOM_DNS_QUESTION_TYPE, qtype);
            a.formatted(SERVER_ADDRESS, ip(server.ip()));
            a.int(SERVER_PORT, server.port().into());
            a.str(NETWORK_TRANSPORT, "udp");
            a.str(NETWORK_TYPE, net_type(&server.ip()));
        }
        Detail::HttpRequest(h) => http_attributes(h, a),
        Detail::Mcp(m) => mcp::attributes(m, a),
    }
}

/// The attributes of an event that are its process's facts, the same for every event of the
/// process ([`AttributeSink::process`]).
pub(crate) fn process_attributes(p: &ProcessInfo, a: &mut impl AttributeSink) {
    if p.ppid != 0 {
        a.int(PROCESS_PARENT_PID, p.ppid.into());
    }
    if !p.exe.is_empty() {
        a.str(PROCESS_EXECUTABLE_PATH, &p.exe);
    }
    if !p.command_line.is_empty() {
        a.str(PROCESS_COMMAND_LINE, &p.command_line);
    }
    a.int(PROCESS_USER_ID, p.uid.into());
    if let Some(id) = &p.container_id {
        a.str(CONTAINER_ID, id);
    }
}

/// An address as [`AttributeSink::formatted`] writes it.
fn ip(ip: IpAddr) -> impl FnOnce(&mut String) {
    move |s| write_ip(ip, s)
}

/// `ip` as its `Display` writes it; an IPv4 address octet by octet (`Display` goes through the
/// formatting machinery for each).
fn write_ip(ip: IpAddr, s: &mut String) {
    use std::fmt::Write as _;
    match ip {
        IpAddr::V4(v4) => {
            let mut int = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(int.format(octet));
            }
        }
        // Writing into a `String` cannot fail.
        IpAddr::V6(v6) => drop(write!(s, "{v6}")),
    }
}

/// `addr` as its `Display` writes it.
pub(super) fn write_socket_addr(addr: SocketAddr, s: &mut String) {
    use std::fmt::Write as _;
    match addr {
        SocketAddr::V4(v4) => {
            write_ip(IpAddr::V4(*v4.ip()), s);
            s.push(':');
            s.push_str(itoa::Buffer::new().format(v4.port()));
        }
        // Writing into a `String` cannot fail.
        SocketAddr::V6(v6) => drop(write!(s, "{v6}")),
    }
}

fn http_attributes(h: &runbom_event::HttpRequest, a: &mut impl AttributeSink) {
    a.str(RUNBOM_CAPTURE, h.capture.as_str());
    a.str(HTTP_REQUEST_METHOD, &h.method);
    if let Some(host) = &h.host {
        let (name, _) = split_host_port(host);
        a.str(SERVER_ADDRESS, name);
    }
    if let Some(port) = h
        .host
        .as_deref()
        .and_then(|host| split_host_port(host).1)
        .or(h.peer.map(|p| p.port()))
    {
        a.int(SERVER_PORT, port.into());
    }
    if let Some(peer) = h.peer {
        a.formatted(NETWORK_PEER_ADDRESS, ip(peer.ip()));
        a.int(NETWORK_PEER_PORT, peer.port().into());
    }
    let path = h.target.split('?').next().unwrap_or(&h.target);
    a.str(URL_PATH, path);
    if let Some(host) = &h.host {
        let scheme = match h.capture {
            runbom_event::Capture::Openssl | runbom_event::Capture::GoTls => "https",
            runbom_event::Capture::Socket => "http",
        };
        a.formatted(URL_FULL, |s| {
            s.push_str(scheme);
            s.push_str("://");
            s.push_str(host);
            s.push_str(&h.target);
        });
    }
    if let Some(size) = h.body_size {
        a.int(
            HTTP_REQUEST_BODY_SIZE,
            i64::try_from(size).unwrap_or(i64::MAX),
        );
    }
    if let Some(status) = h.status {
        a.int(HTTP_RESPONSE_STATUS_CODE, status.into());
    }
    if let Some(ua) = &h.user_agent {
        a.str(USER_AGENT_ORIGINAL, ua);
    }
    if let Some(model) = &h.model {
        a.str(GEN_AI_REQUEST_MODEL, model);
    }
    a.str(NETWORK_PROTOCOL_NAME, "http");
    a.str(NETWORK_PROTOCOL_VERSION, h.version.as_str());
    if let Some(grpc) = &h.grpc {
        a.str(RPC_SYSTEM, RPC_SYSTEM_GRPC);
        a.str(RPC_SERVICE, &grpc.service);
        a.str(RPC_METHOD, &grpc.method);
        if let Some(code) = grpc.status {
            a.int(RPC_GRPC_STATUS_CODE, code.into());
        }
    }
    if let Some(g) = &h.genai {
        genai::attributes(g, a);
    }
}

/// `host[:port]` (IPv6 in brackets) split into the name and the port.
pub(super) fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((ip, tail)) = rest.split_once(']')
    {
        return (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}
