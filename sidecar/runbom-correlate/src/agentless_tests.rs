//! Tests of the agentless runs (`agentless.rs`).

use std::{sync::Arc, time::Duration};

use opentelemetry_proto::tonic::trace::v1::Span;
use runbom_event::{Capture, Detail, GenAi, HttpRequest, KernelEvent, ProcessInfo, ToolCall};

use crate::{Correlator, Output, Settings};

const S: u64 = 1_000_000_000;

fn event(p: &Arc<ProcessInfo>, start: u64, end: u64, detail: Detail) -> KernelEvent {
    KernelEvent {
        pid: p.pid,
        tid: p.pid,
        cgroup_id: 1,
        start_ns: start,
        end_ns: end,
        process: p.clone(),
        detail,
    }
}

fn http(target: &str, genai: Option<GenAi>) -> Detail {
    Detail::HttpRequest(Box::new(HttpRequest {
        capture: Capture::Openssl,
        method: "POST".into(),
        host: Some("api.openai.com".into()),
        target: target.into(),
        peer: None,
        traceparent: None,
        user_agent: None,
        body_size: None,
        model: Some("gpt-4o-mini".into()),
        status: Some(200),
        version: runbom_event::HttpVersion::Http1,
        grpc: None,
        genai: genai.map(Box::new),
        fd: None,
    }))
}

fn chat(tools: &[&str]) -> GenAi {
    GenAi {
        operation: "chat",
        provider: "openai",
        api: "openai.chat_completions",
        request_model: Some("gpt-4o-mini".into()),
        input_tokens: Some(10),
        output_tokens: Some(2),
        tool_calls: tools
            .iter()
            .map(|t| ToolCall {
                name: (*t).into(),
                id: Some(format!("call_{t}")),
                arguments: None,
            })
            .collect(),
        ..GenAi::default()
    }
}

fn open(path: &str) -> Detail {
    Detail::FileOpen {
        path: path.into(),
        flags: 0,
        error: None,
    }
}

fn spans(out: &Output) -> Vec<&Span> {
    out.traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect()
}

#[test]
fn a_run_without_traces_becomes_one_agent_trace() {
    let p = Arc::new(ProcessInfo {
        pid: 7,
        exe: "/usr/bin/python3".into(),
        trace_id: [7; 16],
        ..ProcessInfo::default()
    });
    let mut c = Correlator::new(Settings {
        wait: Duration::from_secs(1),
        uncorrelated_spans: true,
        ..Settings::default()
    });
    // In arrival order: a request completes (arrives) after its response, so the POST that
    // started inside the read_file window arrives after the next LLM call.
    let events = vec![
        event(&p, S, S, open("/usr/lib/python3/os.py")),
        event(
            &p,
            2 * S,
            3 * S,
            http("/v1/chat/completions", Some(chat(&["read_file"]))),
        ),
        event(&p, 3 * S + 10, 3 * S + 20, open("/data/ticket.md")),
        event(
            &p,
            4 * S,
            5 * S,
            http("/v1/chat/completions", Some(chat(&[]))),
        ),
        event(&p, 3 * S + 30, 3 * S + 40, http("/upload", None)),
        event(&p, 6 * S, 6 * S, Detail::Exit { code: Some(0) }),
    ];
    c.add_events(events, 10 * S);
    let mut all = c.poll(12 * S);
    let first = spans(&all).len();
    assert!(
        !spans(&all)
            .iter()
            .any(|s| s.name.starts_with("invoke_agent")),
        "the run stays open a while after the exit"
    );
    let later = c.poll(12 * S + super::EXIT_GRACE);
    all.traces
        .resource_spans
        .extend(later.traces.resource_spans);
    let spans = spans(&all);
    assert!(spans.len() > first);
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let agent = named("invoke_agent python3");
    assert!(agent.parent_span_id.is_empty());
    assert_eq!(agent.trace_id, vec![7; 16]);
    assert_eq!(agent.end_time_unix_nano, 6 * S);
    let tool = named("execute_tool read_file");
    assert_eq!(tool.parent_span_id, agent.span_id);
    assert_eq!(
        (tool.start_time_unix_nano, tool.end_time_unix_nano),
        (3 * S, 4 * S)
    );
    let chats: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "chat gpt-4o-mini")
        .collect();
    assert_eq!(chats.len(), 2);
    assert!(chats.iter().all(|c| c.parent_span_id == agent.span_id));
    let parent_of = |path: &str| {
        spans
            .iter()
            .find(|s| {
                s.attributes.iter().any(|kv| {
                    (kv.key == "file.path" || kv.key == "url.path")
                        && kv.value.as_ref().and_then(|v| v.value.as_ref())
                            == Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(path.into()))
                })
            })
            .map(|s| s.parent_span_id.clone())
    };
    assert_eq!(parent_of("/data/ticket.md"), Some(tool.span_id.clone()));
    assert_eq!(
        parent_of("/upload"),
        Some(tool.span_id.clone()),
        "placed by when it started"
    );
    assert_eq!(
        parent_of("/usr/lib/python3/os.py"),
        Some(Vec::new()),
        "before the first LLM call"
    );
    let llm: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("http.request"))
        .filter(|s| chats.iter().any(|c| c.span_id == s.parent_span_id))
        .collect();
    assert_eq!(llm.len(), 2, "each exchange under its chat span");
}

#[test]
fn reaching_the_llm_again_is_no_tool_work() {
    let p = Arc::new(ProcessInfo {
        pid: 8,
        exe: "/usr/bin/node".into(),
        trace_id: [8; 16],
        ..ProcessInfo::default()
    });
    let mut c = Correlator::new(Settings {
        wait: Duration::from_secs(1),
        uncorrelated_spans: true,
        ..Settings::default()
    });
    let local_llm = |genai| {
        let mut d = http("/v1/chat/completions", Some(genai));
        if let Detail::HttpRequest(h) = &mut d {
            h.host = Some("127.0.0.1:8443".into());
        }
        d
    };
    let connect = |remote: &str| Detail::Connect {
        remote: remote.parse().expect("an address"),
        local: None,
        transport: None,
        error: None,
        fd: None,
    };
    let events = vec![
        event(&p, 2 * S, 3 * S, local_llm(chat(&["http_get"]))),
        event(&p, 3 * S + 10, 3 * S + 10, connect("127.0.0.1:9000")),
        // The next request's new connection, before the request itself.
        event(&p, 3 * S + 50, 3 * S + 50, connect("127.0.0.1:8443")),
        event(&p, 4 * S, 5 * S, local_llm(chat(&[]))),
    ];
    c.add_events(events, 10 * S);
    let mut all = c.poll(12 * S);
    let later = c.poll(12 * S + super::IDLE);
    all.traces
        .resource_spans
        .extend(later.traces.resource_spans);
    let spans = spans(&all);
    let id = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .map_or_else(|| panic!("no {name}"), |s| s.span_id.clone())
    };
    let (agent, tool) = (id("invoke_agent node"), id("execute_tool http_get"));
    let parent_of_connect = |port: &str| {
        spans
            .iter()
            .find(|s| {
                s.name.starts_with("net.connect")
                    && s.attributes.iter().any(|kv| {
                        kv.key == "network.peer.port"
                        && kv.value.as_ref().and_then(|v| v.value.as_ref())
                            == Some(
                                &opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(
                                    port.parse().expect("a port"),
                                ),
                            )
                    })
            })
            .map_or_else(
                || panic!("no connect to {port}"),
                |s| s.parent_span_id.clone(),
            )
    };
    assert_eq!(parent_of_connect("9000"), tool, "the tool's own connection");
    assert_eq!(
        parent_of_connect("8443"),
        agent,
        "the agent's, to its model"
    );
}
