//! Unit tests of the kernel event → OTLP conversion.

use std::net::SocketAddr;

use super::*;
use runbom_event::Transport;

fn event(detail: Detail) -> KernelEvent {
    KernelEvent {
        pid: 42,
        tid: 43,
        cgroup_id: 1,
        start_ns: 1_000,
        end_ns: 2_000,
        process: Arc::new(ProcessInfo {
            pid: 42,
            ppid: 1,
            uid: 1000,
            exe: "/usr/bin/curl".into(),
            command_line: "curl http://x".into(),
            container_id: None,
            trace_id: [7; 16],
            ..ProcessInfo::default()
        }),
        detail,
    }
}

fn opts() -> ConvertOptions {
    ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: true,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

#[test]
fn http_span_is_named_by_server_address() {
    let ev = event(Detail::HttpRequest(Box::new(runbom_event::HttpRequest {
        capture: runbom_event::Capture::Openssl,
        method: "POST".into(),
        host: Some("api.openai.com:443".into()),
        target: "/v1/chat/completions?x=[REDACTED]".into(),
        peer: None,
        traceparent: None,
        user_agent: None,
        body_size: Some(12),
        model: Some("gpt-4o-mini".into()),
        status: Some(200),
        version: runbom_event::HttpVersion::Http1,
        grpc: None,
        genai: None,
        fd: None,
    })));
    let batch = convert(&[ev], &[], &opts());
    let span = &batch.traces.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "http.request POST api.openai.com");
    assert_eq!(
        attr(&span.attributes, "server.port"),
        Some(&Value::IntValue(443))
    );
    assert_eq!(
        attr(&span.attributes, "url.path"),
        Some(&Value::StringValue("/v1/chat/completions".into()))
    );
}

#[test]
fn grpc_call_has_rpc_attributes() {
    let ev = event(Detail::HttpRequest(Box::new(runbom_event::HttpRequest {
        capture: runbom_event::Capture::Socket,
        method: "POST".into(),
        host: Some("127.0.0.1:50051".into()),
        target: "/helloworld.Greeter/SayHello".into(),
        peer: None,
        traceparent: None,
        user_agent: None,
        body_size: None,
        model: None,
        status: Some(200),
        version: runbom_event::HttpVersion::Http2,
        grpc: Some(runbom_event::GrpcCall {
            service: "helloworld.Greeter".into(),
            method: "SayHello".into(),
            status: Some(14),
        }),
        genai: None,
        fd: None,
    })));
    let batch = convert(&[ev], &[], &opts());
    let span = &batch.traces.resource_spans[0].scope_spans[0].spans[0];
    let s = |v: &str| Some(Value::StringValue(v.into()));
    assert_eq!(
        attr(&span.attributes, "network.protocol.version").cloned(),
        s("2")
    );
    assert_eq!(attr(&span.attributes, "rpc.system").cloned(), s("grpc"));
    assert_eq!(
        attr(&span.attributes, "rpc.service").cloned(),
        s("helloworld.Greeter")
    );
    assert_eq!(attr(&span.attributes, "rpc.method").cloned(), s("SayHello"));
    assert_eq!(
        attr(&span.attributes, "rpc.grpc.status_code"),
        Some(&Value::IntValue(14))
    );
    assert_eq!(
        attr(&span.attributes, "url.full").cloned(),
        s("http://127.0.0.1:50051/helloworld.Greeter/SayHello")
    );
}

#[test]
fn refused_connect_is_an_error_client_span() {
    let remote: SocketAddr = "[::1]:8080".parse().unwrap();
    let ev = event(Detail::Connect {
        remote,
        local: None,
        transport: Some(Transport::Tcp),
        error: Some("ECONNREFUSED"),
        fd: None,
    });
    let batch = convert(&[ev], &[], &opts());
    let span = &batch.traces.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "net.connect [::1]:8080");
    assert_eq!(attr(&span.attributes, "client.port"), None);
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(
        attr(&span.attributes, "error.type"),
        Some(&Value::StringValue("ECONNREFUSED".into()))
    );
    assert_eq!(
        attr(&span.attributes, "network.type"),
        Some(&Value::StringValue("ipv6".into()))
    );
    let log = &batch.logs.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(log.event_name, "net.connect");
    assert_eq!(log.span_id, span.span_id);
    assert_eq!(log.trace_id, vec![7; 16]);
}

#[test]
fn connect_names_its_local_end_as_the_client() {
    let ev = event(Detail::Connect {
        remote: "10.0.0.12:443".parse().unwrap(),
        local: Some("10.0.0.2:40321".parse().unwrap()),
        transport: Some(Transport::Tcp),
        error: None,
        fd: None,
    });
    let batch = convert(&[ev], &[], &opts());
    let span = &batch.traces.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        attr(&span.attributes, "client.address"),
        Some(&Value::StringValue("10.0.0.2".into()))
    );
    assert_eq!(
        attr(&span.attributes, "client.port"),
        Some(&Value::IntValue(40321))
    );
    assert_eq!(
        attr(&span.attributes, "network.peer.port"),
        Some(&Value::IntValue(443))
    );
    let log = &batch.logs.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        attr(&log.attributes, "client.port"),
        Some(&Value::IntValue(40321))
    );
}

#[test]
fn exit_is_a_log_only_and_spans_can_be_off() {
    let batch = convert(&[event(Detail::Exit { code: Some(3) })], &[], &opts());
    assert_eq!((batch.span_count(), batch.log_count()), (0, 1));
    let open = event(Detail::FileOpen {
        path: "/etc/hosts".into(),
        flags: 0,
        error: None,
    });
    let mut o = opts();
    o.uncorrelated_spans = false;
    let batch = convert(&[open], &[], &o);
    assert_eq!((batch.span_count(), batch.log_count()), (0, 1));
    let log = &batch.logs.resource_logs[0].scope_logs[0].log_records[0];
    assert!(log.span_id.is_empty());
}

#[test]
fn events_group_by_process() {
    let a = event(Detail::Exec {
        path: "/usr/bin/curl".into(),
        argv_truncated: false,
    });
    let mut b = a.clone();
    b.process = Arc::new(ProcessInfo {
        pid: 50,
        ..(*a.process).clone()
    });
    let batch = convert(&[a.clone(), b, a], &[], &opts());
    assert_eq!(batch.traces.resource_spans.len(), 2);
    assert_eq!(batch.span_count(), 3);
    let res = batch.traces.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&res.attributes, "service.name"),
        Some(&Value::StringValue("curl".into()))
    );
}

#[test]
fn placed_events_join_the_application_trace() {
    let app = Arc::new(Resource {
        attributes: vec![kv_str("service.name", "support-agent")],
        ..Default::default()
    });
    let placement = Placement {
        trace_id: [9; 16],
        parent_span_id: [3; 8],
        resource: app,
        method: "thread",
        confidence: "high",
    };
    let open = event(Detail::FileOpen {
        path: "/etc/hosts".into(),
        flags: 0,
        error: None,
    });
    let exit = event(Detail::Exit { code: Some(0) });
    let mut o = opts();
    o.uncorrelated_spans = false;
    let batch = convert(
        &[open.clone(), exit, open],
        &[Some(placement.clone()), Some(placement)],
        &o,
    );
    // The placed open is a span even with uncorrelated spans off; the unplaced one is not.
    assert_eq!((batch.span_count(), batch.log_count()), (1, 3));
    let rs = &batch.traces.resource_spans[0];
    assert_eq!(
        attr(&rs.resource.as_ref().unwrap().attributes, "service.name"),
        Some(&Value::StringValue("support-agent".into()))
    );
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(
        rs.scope_spans[0].scope.as_ref().unwrap().name,
        scope::KERNEL
    );
    assert_eq!(
        (span.trace_id.as_slice(), span.parent_span_id.as_slice()),
        (&[9; 16][..], &[3; 8][..])
    );
    assert_eq!(
        attr(&span.attributes, "runbom.correlation.method"),
        Some(&Value::StringValue("thread".into()))
    );
    let logs = &batch.logs.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(logs[0].span_id, span.span_id);
    // The exit is a log only: it points at the application span it happened in.
    assert_eq!(
        (logs[1].trace_id.as_slice(), logs[1].span_id.as_slice()),
        (&[9; 16][..], &[3; 8][..])
    );
    let unplaced = &batch.logs.resource_logs[1].scope_logs[0].log_records[0];
    assert!(unplaced.trace_id.is_empty());
}

fn mcp_call(side: runbom_event::McpSide) -> runbom_event::McpCall {
    runbom_event::McpCall {
        side,
        span_id: [5; 8],
        method: "tools/call".into(),
        target: Some("write_file".into()),
        request_id: Some("7".into()),
        resource_uri: None,
        session_id: None,
        protocol_version: None,
        transport: runbom_event::McpTransport::Pipe,
        traceparent: None,
        tool_error: true,
        rpc_error_code: None,
        arguments: None,
        peer_pid: Some(99),
        server_command_line: None,
        server_name: None,
        server_url: None,
        tools: vec![],
        answered: true,
    }
}

#[test]
fn mcp_spans_follow_the_mcp_semantic_conventions() {
    use runbom_event::McpSide;
    let client = event(Detail::Mcp(Box::new(mcp_call(McpSide::Client))));
    let server = event(Detail::Mcp(Box::new(mcp_call(McpSide::Server))));
    let batch = convert(&[client, server], &[], &opts());
    let spans: Vec<&Span> = batch
        .traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans[0].spans)
        .collect();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].kind, SpanKind::Client as i32);
    assert_eq!(spans[1].kind, SpanKind::Server as i32);
    for span in spans {
        assert_eq!(span.name, "tools/call write_file");
        assert_eq!(span.span_id, [5; 8], "the id chosen at pairing");
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (1_000, 2_000)
        );
        let a = &span.attributes;
        let s = |k| match attr(a, k) {
            Some(Value::StringValue(v)) => v.as_str(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(s("mcp.method.name"), "tools/call");
        assert_eq!(s("gen_ai.tool.name"), "write_file");
        assert_eq!(s("gen_ai.operation.name"), "execute_tool");
        assert_eq!(s("jsonrpc.request.id"), "7");
        assert_eq!(s("network.transport"), "pipe");
        assert_eq!(s("error.type"), "tool_error");
        assert_eq!(
            s("runbom.event"),
            if span.kind == SpanKind::Client as i32 {
                "mcp.client"
            } else {
                "mcp.server"
            }
        );
        assert_eq!(attr(a, "runbom.mcp.peer.pid"), Some(&Value::IntValue(99)));
        assert!(attr(a, "gen_ai.tool.call.arguments").is_none());
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
    }
    let logs = &batch.logs.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(logs[0].event_name, "mcp.client");
    let body = match logs[0].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(b)) => b.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        body.contains("mcp call tools/call write_file id 7 failed: tool_error"),
        "{body}"
    );
}

#[test]
fn mcp_error_responses_and_unanswered_requests() {
    let mut m = mcp_call(runbom_event::McpSide::Client);
    m.tool_error = false;
    m.rpc_error_code = Some(-32601);
    let batch = convert(&[event(Detail::Mcp(Box::new(m.clone())))], &[], &opts());
    let a = &batch.traces.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(
        attr(a, "error.type"),
        Some(&Value::StringValue("-32601".into()))
    );
    assert_eq!(
        attr(a, "rpc.response.status_code"),
        Some(&Value::StringValue("-32601".into()))
    );
    m.rpc_error_code = None;
    m.answered = false;
    m.arguments = Some(r#"{"path":"/x"}"#.into());
    let batch = convert(&[event(Detail::Mcp(Box::new(m)))], &[], &opts());
    let a = &batch.traces.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert!(attr(a, "error.type").is_none());
    assert_eq!(
        attr(a, "runbom.mcp.unanswered"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(a, "gen_ai.tool.call.arguments"),
        Some(&Value::StringValue(r#"{"path":"/x"}"#.into()))
    );
}

/// Addresses in bodies and attributes are written as their `Display` writes them (IPv4 is
/// written octet by octet, not through `Display`).
#[test]
fn addresses_read_as_their_display() {
    for (remote, local) in [
        ("0.0.0.0:0", "255.255.255.255:65535"),
        ("10.0.12.7:443", "192.168.100.2:40000"),
        ("[::1]:8080", "[2001:db8::2]:1"),
        ("[::ffff:10.0.0.1]:80", "[fe80::1%2]:5"),
    ] {
        let (remote, local): (SocketAddr, SocketAddr) = (
            remote.parse().expect("address"),
            local.parse().expect("address"),
        );
        for detail in [
            Detail::Connect {
                remote,
                local: Some(local),
                transport: None,
                error: None,
                fd: None,
            },
            Detail::Accept { peer: Some(remote) },
        ] {
            let accept = matches!(detail, Detail::Accept { .. });
            let logs = convert(&[event(detail)], &[], &opts()).logs;
            let log = &logs.resource_logs[0].scope_logs[0].log_records[0];
            let body = match log.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("body {other:?}"),
            };
            let verb = if accept { "accepted" } else { "connect" };
            assert_eq!(body, format!("curl [42] {verb} {remote}"));
            let text = |ip: std::net::IpAddr| Some(Value::StringValue(ip.to_string()));
            assert_eq!(
                attr(&log.attributes, "network.peer.address").cloned(),
                text(remote.ip())
            );
            let other = if accept {
                "client.address"
            } else {
                "server.address"
            };
            assert_eq!(attr(&log.attributes, other).cloned(), text(remote.ip()));
            if !accept {
                assert_eq!(
                    attr(&log.attributes, "client.address").cloned(),
                    text(local.ip())
                );
            }
        }
    }
}
