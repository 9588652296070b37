//! MCP: what a server process does while it serves a call goes under the call's `mcp.server`
//! span, placed by the request's traceparent or by ancestry.

use super::*;

/// An MCP call's server side at `[start, end]` seconds, by `server`, for the client's span
/// `tp` (as `params._meta.traceparent` says), exported with span id `[id; 8]`.
fn served_at(
    server: &Arc<ProcessInfo>,
    start: f64,
    end: f64,
    tp: Option<(u8, u8)>,
    id: u8,
) -> KernelEvent {
    let mut ev = open_at(server, server.pid, start, "");
    ev.end_ns = secs(end);
    ev.detail = Detail::Mcp(Box::new(runbom_event::McpCall {
        side: runbom_event::McpSide::Server,
        span_id: [id; 8],
        method: "tools/call".into(),
        target: Some("read_text_file".into()),
        request_id: Some("3".into()),
        resource_uri: None,
        session_id: None,
        protocol_version: None,
        transport: runbom_event::McpTransport::Pipe,
        traceparent: tp.map(|(trace, span)| TraceParent {
            trace_id: [trace; 16],
            span_id: [span; 8],
            sampled: true,
        }),
        tool_error: false,
        rpc_error_code: None,
        arguments: None,
        peer_pid: Some(AGENT),
        server_command_line: None,
        server_name: None,
        server_url: None,
        tools: vec![],
        answered: true,
    }));
    ev
}

#[test]
fn what_an_mcp_server_does_while_serving_a_call_goes_under_its_mcp_server_span() {
    let mut c = Correlator::new(settings());
    // The server was spawned by the agent's thread 1 during span 0x11 (its session).
    let server = process(300, AGENT, Some((1, 0.5)));
    c.add_events(
        vec![
            open_at(&server, 300, 0.8, "/startup"),
            open_at(&server, 300, 3.2, "/data/a.txt"),
            served_at(&server, 3.0, 3.5, Some((0xa, 0x13)), 0x77),
            open_at(&server, 300, 5.0, "/after"),
        ],
        secs(6.0),
    );
    c.add_spans(
        request(
            AGENT,
            vec![
                span(0xa, 0x11, None, 0.0, 10.0, Some(1)),
                // The SDK's span of the tool call, which the request's `_meta` names.
                span(0xa, 0x13, Some(0x11), 2.9, 3.6, Some(1)),
            ],
        ),
        secs(11.0),
    );
    let out = merge([c.poll(secs(11.0)), c.poll(secs(18.0)), c.flush()]);
    let k = kernel_spans(&out);
    assert_eq!(k.len(), 4, "{k:?}");
    let call_span = out
        .traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| s.span_id == [0x77; 8])
        .expect("the mcp.server span, with the id chosen at pairing");
    assert_eq!(
        call_span.parent_span_id, [0x13; 8],
        "under the call's traceparent"
    );
    let inside = find(&k, "/data/a.txt");
    assert_eq!((inside.trace, inside.parent), (0xa, 0x77), "{k:?}");
    assert_eq!(inside.method, "process");
    // Outside the call: where the agent was when it spawned the server.
    for path in ["/startup", "/after"] {
        let s = find(&k, path);
        assert_eq!(
            (s.trace, s.parent, s.method.as_str()),
            (0xa, 0x11, "ancestry"),
            "{path}"
        );
    }
}

#[test]
fn without_a_traceparent_the_served_call_is_placed_by_ancestry_and_still_holds_its_work() {
    let mut c = Correlator::new(settings());
    let server = process(300, AGENT, Some((1, 0.5)));
    c.add_events(
        vec![
            open_at(&server, 300, 3.2, "/data/a.txt"),
            served_at(&server, 3.0, 3.5, None, 0x77),
        ],
        secs(6.0),
    );
    c.add_spans(
        request(AGENT, vec![span(0xa, 0x11, None, 0.0, 10.0, Some(1))]),
        secs(11.0),
    );
    let out = merge([c.poll(secs(11.0)), c.poll(secs(18.0))]);
    let call_span = out
        .traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| s.span_id == [0x77; 8])
        .expect("the mcp.server span");
    assert_eq!(call_span.parent_span_id, [0x11; 8]);
    let k = kernel_spans(&out);
    let inside = find(&k, "/data/a.txt");
    assert_eq!((inside.trace, inside.parent), (0xa, 0x77), "{k:?}");
}
