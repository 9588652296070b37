//! One event of every kind, with every optional part set in one of them and unset in another:
//! the fixed corpus the writers are compared over.

use std::net::SocketAddr;

use runbom_event::{
    Capture, Detail, GenAi, GrpcCall, HttpRequest, HttpVersion, McpCall, McpSide, McpTransport,
    Transport, genai::ToolCall,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn http(f: impl FnOnce(&mut HttpRequest)) -> Detail {
    let mut h = HttpRequest {
        capture: Capture::Openssl,
        method: "POST".into(),
        host: None,
        target: "/v1/chat/completions?key=[REDACTED]".into(),
        peer: None,
        traceparent: None,
        user_agent: None,
        body_size: None,
        model: None,
        status: None,
        version: HttpVersion::Http1,
        grpc: None,
        genai: None,
        fd: None,
    };
    f(&mut h);
    Detail::HttpRequest(Box::new(h))
}

fn mcp(side: McpSide, f: impl FnOnce(&mut McpCall)) -> Detail {
    let mut m = McpCall {
        side,
        span_id: [5; 8],
        method: "tools/call".into(),
        target: Some("write_file".into()),
        request_id: Some("7".into()),
        resource_uri: None,
        session_id: None,
        protocol_version: None,
        transport: McpTransport::Pipe,
        traceparent: None,
        tool_error: false,
        rpc_error_code: None,
        arguments: None,
        peer_pid: None,
        server_command_line: None,
        server_name: None,
        server_url: None,
        tools: vec![],
        answered: true,
    };
    f(&mut m);
    Detail::Mcp(Box::new(m))
}

/// Every kind of event, with and without each optional part.
pub(super) fn every_kind() -> Vec<Detail> {
    [processes_files_and_network(), http_requests(), mcp_calls()].concat()
}

fn genai() -> GenAi {
    GenAi {
        operation: "chat",
        provider: "openai",
        api: "openai.chat_completions",
        request_model: Some("gpt-4o-mini".into()),
        response_model: Some("gpt-4o-mini-2024".into()),
        response_id: Some("chatcmpl-1".into()),
        input_tokens: Some(12),
        output_tokens: Some(u64::MAX),
        finish_reasons: vec!["tool_calls".into()],
        max_tokens: Some(100),
        temperature: Some(0.7),
        streamed: true,
        tool_calls: vec![
            ToolCall {
                name: "read_file".into(),
                id: Some("call_1".into()),
                arguments: Some("{\"path\":\"a\"}".into()),
            },
            ToolCall {
                name: "post".into(),
                id: None,
                arguments: None,
            },
        ],
        declared_tools: vec!["read_file".into(), "post".into()],
        error_type: Some("rate_limited".into()),
        partial: true,
        input_messages: Some("[{\"role\":\"user\"}]".into()),
        output_messages: Some("[]".into()),
    }
}

fn processes_files_and_network() -> Vec<Detail> {
    vec![
        Detail::Exec {
            path: "/usr/bin/python3".into(),
            argv_truncated: false,
        },
        Detail::Exec {
            path: "/usr/bin/python3".into(),
            argv_truncated: true,
        },
        Detail::Exit { code: Some(3) },
        Detail::Exit { code: Some(-1) },
        Detail::Exit { code: None },
        Detail::Connect {
            remote: addr("10.0.0.1:443"),
            local: None,
            transport: None,
            error: None,
            fd: None,
        },
        Detail::Connect {
            remote: addr("[2001:db8::1]:443"),
            local: Some(addr("[2001:db8::2]:40000")),
            transport: Some(Transport::Tcp),
            error: None,
            fd: None,
        },
        Detail::Connect {
            remote: addr("127.0.0.1:9"),
            local: None,
            transport: Some(Transport::Udp),
            error: Some("ECONNREFUSED"),
            fd: None,
        },
        Detail::Accept { peer: None },
        Detail::Accept {
            peer: Some(addr("192.168.1.9:51000")),
        },
        Detail::Accept {
            peer: Some(addr("[::1]:51000")),
        },
        Detail::FileOpen {
            path: "/home/a/\"x\".json".into(),
            flags: 0o2_101_101,
            error: None,
        },
        Detail::FileOpen {
            path: "/tmp/\u{fffd}\u{fffd}\\bad\n\u{1}é".into(),
            flags: 0,
            error: Some("ENOENT"),
        },
        Detail::DnsQuery {
            name: "api.openai.com".into(),
            qtype: "A",
            server: addr("127.0.0.53:53"),
        },
        Detail::DnsQuery {
            name: "x".into(),
            qtype: "AAAA",
            server: addr("[fd00::a]:53"),
        },
    ]
}

fn http_requests() -> Vec<Detail> {
    vec![
        http(|_| {}),
        http(|h| {
            h.capture = Capture::Socket;
            h.host = Some("example.com".into());
            h.status = Some(404);
        }),
        http(|h| {
            h.capture = Capture::GoTls;
            h.host = Some("[2001:db8::1]:8443".into());
            h.peer = Some(addr("[2001:db8::1]:8443"));
            h.user_agent = Some("OpenAI/Python 2.0".into());
            h.body_size = Some(u64::MAX);
            h.model = Some("gpt-4o-mini".into());
            h.status = Some(200);
            h.version = HttpVersion::Http2;
            h.genai = Some(Box::new(genai()));
        }),
        http(|h| {
            h.peer = Some(addr("10.0.0.2:50051"));
            h.version = HttpVersion::Http2;
            h.grpc = Some(GrpcCall {
                service: "helloworld.Greeter".into(),
                method: "SayHello".into(),
                status: Some(14),
            });
        }),
        http(|h| {
            h.grpc = Some(GrpcCall {
                service: "s".into(),
                method: "m".into(),
                status: None,
            });
            h.genai = Some(Box::new(GenAi {
                temperature: None,
                tool_calls: vec![ToolCall {
                    name: "t".into(),
                    id: None,
                    arguments: None,
                }],
                ..genai()
            }));
        }),
    ]
}

fn mcp_calls() -> Vec<Detail> {
    vec![
        mcp(McpSide::Client, |m| {
            m.server_command_line = Some("npx @modelcontextprotocol/server-filesystem".into());
            m.arguments = Some("{\"path\":\"/etc/\\\"x\"}".into());
            m.peer_pid = Some(99);
            m.session_id = Some("s-1".into());
        }),
        mcp(McpSide::Server, |m| {
            m.method = "tools/list".into();
            m.target = None;
            m.tools = vec!["read_file".into(), "write\"file".into()];
            m.protocol_version = Some("2025-06-18".into());
            m.server_name = Some("fs".into());
            m.transport = McpTransport::Unix;
        }),
        mcp(McpSide::Client, |m| {
            m.method = "prompts/get".into();
            m.rpc_error_code = Some(-32601);
            m.server_url = Some("http://127.0.0.1:8000/mcp".into());
            m.transport = McpTransport::Tcp;
        }),
        mcp(McpSide::Server, |m| {
            m.tool_error = true;
            m.resource_uri = Some("file:///x".into());
        }),
        mcp(McpSide::Client, |m| {
            m.answered = false;
        }),
        mcp(McpSide::Client, |m| {
            m.method = "notifications/initialized".into();
            m.target = None;
            m.request_id = None;
            m.answered = false;
        }),
    ]
}
