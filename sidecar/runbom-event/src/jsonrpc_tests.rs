use super::*;

/// What the Python SDK writes (key order as `strace` shows it).
const PY_CALL: &[u8] = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/data/a.txt"},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}
"#;
/// What the TypeScript SDK's server writes: `jsonrpc` and `id` last.
const TS_RESULT: &[u8] = br#"{"result":{"content":[{"type":"text","text":"denied"}],"isError":true},"jsonrpc":"2.0","id":3}
"#;

#[test]
fn python_request_with_traceparent() {
    let m = parse_messages(PY_CALL, true, &[]);
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m.kind, Some(Kind::Request));
    assert_eq!(m.id, Some(Id::Number(3)));
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    assert_eq!(m.name.as_deref(), Some("read_text_file"));
    assert_eq!(m.arguments.as_deref(), Some(r#"{"path":"/data/a.txt"}"#));
    let tp = m.traceparent.expect("traceparent");
    assert_eq!(tp.span_id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
    assert!(!m.truncated);
}

#[test]
fn typescript_tool_error_response() {
    let m = parse_messages(TS_RESULT, true, &[]);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Some(Kind::Response));
    assert_eq!(m[0].id, Some(Id::Number(3)));
    assert!(m[0].tool_error);
}

#[test]
fn notifications_errors_and_initialize() {
    let data = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":"a-1","error":{"code":-32601,"message":"Method not found"}}
{"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"fs","version":"1"}},"jsonrpc":"2.0","id":1}
"#;
    let m = parse_messages(data, true, &[]);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].kind, Some(Kind::Notification));
    assert_eq!(m[1].id, Some(Id::Str("a-1".into())));
    assert_eq!(m[1].error_code, Some(-32601));
    assert_eq!(m[2].protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(m[2].server_name.as_deref(), Some("fs"));
}

#[test]
fn non_json_rpc_is_ignored() {
    for data in [
        &b"{\"level\":\"info\",\"msg\":\"hello\"}\n"[..],
        b"not json at all",
        b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}",
        b"{\"jsonrpc\":\"2.0\"",
        b"",
    ] {
        assert!(parse_messages(data, true, &[]).is_empty(), "{data:?}");
    }
}

#[test]
fn a_cut_request_keeps_what_it_named() {
    let full = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/x","content":"aaaaaaaaaaaaaaaa"}}}"#;
    let cut = &full[..full.len() - 20];
    let m = parse_messages(cut, false, &[]);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, Some(Id::Number(9)));
    assert_eq!(m[0].name.as_deref(), Some("write_file"));
    assert_eq!(m[0].arguments.as_deref(), Some(r#"{"path":"/x"}"#));
    assert!(m[0].truncated);
}

#[test]
fn a_cut_typescript_message_takes_its_id_from_the_tail() {
    let mut full =
        br#"{"method":"tools/call","params":{"name":"write_file","arguments":{"content":""#
            .to_vec();
    full.extend(std::iter::repeat_n(b'a', 200));
    full.extend_from_slice(br#""}},"jsonrpc":"2.0","id":12}"#);
    full.push(b'\n');
    let tail = &full[full.len() - 64..];
    let m = parse_messages(&full[..120], false, tail);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Some(Kind::Request));
    assert_eq!(m[0].id, Some(Id::Number(12)));
    assert_eq!(m[0].name.as_deref(), Some("write_file"));

    let mut list = br#"{"result":{"tools":[{"name":"read_file","description":"x"},{"name":"write_file","description":""#.to_vec();
    list.extend(std::iter::repeat_n(b'b', 100));
    let m = parse_messages(&list, false, br#"...}]},"jsonrpc":"2.0","id":"s-2"}"#);
    assert_eq!(m[0].kind, Some(Kind::Response));
    assert_eq!(m[0].id, Some(Id::Str("s-2".into())));
    // The second tool is cut inside its description: its name, complete, is kept.
    assert_eq!(m[0].tools, ["read_file", "write_file"]);
}

#[test]
fn secrets_in_arguments_are_redacted() {
    let data = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://x","api_key":"sk-abcdefabcdefabcdefabcdef","headers":"Authorization: Bearer abc.def.ghi"}}}"#;
    let m = parse_messages(data, true, &[]);
    let args = m[0].arguments.as_deref().unwrap();
    assert!(!args.contains("sk-abcdef"), "{args}");
    assert!(!args.contains("abc.def.ghi"), "{args}");
    assert!(args.contains("https://x"), "{args}");
}

#[test]
fn event_stream_and_batches() {
    let sse =
        b"event: message\ndata: {\"result\":{\"content\":[]},\"jsonrpc\":\"2.0\",\"id\":4}\n\n";
    let m = parse_messages(sse, true, &[]);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, Some(Id::Number(4)));
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
    assert_eq!(parse_messages(batch, true, &[]).len(), 2);
}

#[test]
fn prefixes_close_at_their_last_complete_value() {
    let close = |s: &str| close_prefix(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
    assert_eq!(close(r#"{"a":1,"b":"x,y"#).as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(close(r#"{"a":[1,2,"#).as_deref(), Some(r#"{"a":[1,2]}"#));
    assert_eq!(close(r#"{"a":{"b":"c\","#).as_deref(), Some(r#"{"a":{}}"#));
    assert_eq!(
        close(r#"{"a":{"b":1}"#).as_deref(),
        Some(r#"{"a":{"b":1}}"#)
    );
    assert_eq!(close("abc"), None);
    assert_eq!(close(&"[".repeat(100)), None);
}

#[test]
fn tail_ids() {
    assert_eq!(
        id_in_tail(br#"x,"jsonrpc":"2.0","id":42}"#),
        Some(Id::Number(42))
    );
    assert_eq!(id_in_tail(br#""id": "abc"}"#), Some(Id::Str("abc".into())));
    assert_eq!(id_in_tail(b"no id here"), None);
    assert_eq!(id_in_tail(b""), None);
}
