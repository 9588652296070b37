use runbom_event::jsonrpc::parse_messages;

use super::*;

/// A fixed world: stdin inodes and parents by pid.
#[derive(Default)]
struct World {
    stdin: HashMap<u32, u64>,
    parent: HashMap<u32, u32>,
}

impl Processes for World {
    fn stdin_channel(&self, pid: u32) -> Option<u64> {
        self.stdin.get(&pid).copied()
    }

    fn descends_from(&mut self, pid: u32, ancestor: u32) -> bool {
        let mut at = pid;
        while let Some(&p) = self.parent.get(&at) {
            if p == ancestor {
                return true;
            }
            at = p;
        }
        false
    }
}

fn origin(pid: u32, time_ns: u64, channel: Option<u64>) -> Origin {
    Origin {
        pid,
        tid: pid,
        cgroup_id: 0,
        time_ns,
        process: Arc::new(ProcessInfo {
            pid,
            command_line: format!("prog-{pid} --stdio"),
            ..ProcessInfo::default()
        }),
        transport: McpTransport::Pipe,
        channel,
        fd: 5,
    }
}

fn feed(t: &mut McpTracker, w: &mut World, o: &Origin, data: &str) {
    for m in parse_messages(data.as_bytes(), true, &[]) {
        t.message(o, &m, w);
    }
}

fn calls(t: &mut McpTracker) -> Vec<(u32, McpCall, u64, u64)> {
    let mut out = Vec::new();
    t.take_ready(&mut out);
    out.into_iter()
        .map(|e| match e.detail {
            Detail::Mcp(c) => (e.pid, *c, e.start_ns, e.end_ns),
            other => panic!("not mcp: {other:?}"),
        })
        .collect()
}

#[test]
fn a_tool_call_is_paired_into_a_client_and_a_server_side() {
    let (mut t, mut w) = (McpTracker::default(), World::default());
    // Server 20 reads the pipe client 10 writes into.
    w.stdin.insert(20, 7);
    feed(
        &mut t,
        &mut w,
        &origin(10, 100, Some(7)),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a"}}}"#,
    );
    assert!(t.has_pending());
    assert!(calls(&mut t).is_empty());
    feed(
        &mut t,
        &mut w,
        &origin(20, 250, Some(8)),
        r#"{"result":{"content":[],"isError":true},"jsonrpc":"2.0","id":3}"#,
    );
    let got = calls(&mut t);
    assert_eq!(got.len(), 2);
    let (pid, client, start, end) = &got[0];
    assert_eq!((*pid, *start, *end), (10, 100, 250));
    assert_eq!(client.side, McpSide::Client);
    assert_eq!(client.span_name(), "tools/call read_file");
    assert_eq!(client.request_id.as_deref(), Some("3"));
    assert!(client.tool_error && client.answered);
    assert_eq!(client.peer_pid, Some(20));
    assert_eq!(
        client.server_command_line.as_deref(),
        Some("prog-20 --stdio")
    );
    let (pid, server, start, end) = &got[1];
    assert_eq!((*pid, *start, *end), (20, 100, 250));
    assert_eq!(server.side, McpSide::Server);
    assert_eq!(server.peer_pid, Some(10));
    assert_eq!(server.server_command_line, None);
    assert!(!t.has_pending());
}

#[test]
fn a_response_goes_to_the_request_written_into_its_stdin() {
    let (mut t, mut w) = (McpTracker::default(), World::default());
    // One client, two servers, both asked id 1; server 31 reads pipe 8.
    w.stdin.insert(31, 8);
    w.parent.extend([(30, 10), (31, 10)]);
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    feed(&mut t, &mut w, &origin(10, 1, Some(7)), req);
    feed(&mut t, &mut w, &origin(10, 2, Some(8)), req);
    feed(
        &mut t,
        &mut w,
        &origin(31, 5, Some(9)),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"b"}]}}"#,
    );
    let got = calls(&mut t);
    assert_eq!(got[0].2, 2, "the request into pipe 8");
    assert_eq!(got[0].1.tools, ["b"]);
    // The other one is answered by the other child: by ancestry.
    feed(
        &mut t,
        &mut w,
        &origin(30, 6, None),
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
    );
    let got = calls(&mut t);
    assert_eq!((got[0].2, got[1].0), (1, 30));
}

#[test]
fn a_process_that_neither_reads_the_pipe_nor_descends_from_the_sender_answers_nothing() {
    let (mut t, mut w) = (McpTracker::default(), World::default());
    // Client 10 asks its child 11 through pipe 7; 40 is another test's server (or a forger)
    // answering id 1 first: it reads pipe 9 and is nobody's child here.
    w.stdin.extend([(11, 7), (40, 9)]);
    w.parent.insert(11, 10);
    feed(
        &mut t,
        &mut w,
        &origin(10, 1, Some(7)),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#,
    );
    feed(
        &mut t,
        &mut w,
        &origin(40, 2, Some(12)),
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#,
    );
    assert!(calls(&mut t).is_empty(), "not paired with the stranger");
    assert!(t.has_pending());
    feed(
        &mut t,
        &mut w,
        &origin(11, 3, Some(13)),
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
    );
    let got = calls(&mut t);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1.peer_pid, got[0].3), (10, Some(11), 3));
    assert!(!got[0].1.tool_error, "the real server's answer");
    // A request only the stranger answers: exported unanswered when its wait ends.
    feed(
        &mut t,
        &mut w,
        &origin(10, 4, Some(7)),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    feed(
        &mut t,
        &mut w,
        &origin(40, 5, Some(12)),
        r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
    );
    t.expire(Instant::now() + RESPONSE_WAIT, RESPONSE_WAIT);
    let got = calls(&mut t);
    assert_eq!(got.len(), 1);
    assert!(!got[0].1.answered && got[0].1.peer_pid.is_none());
}

#[test]
fn notifications_at_once_unanswered_requests_at_expiry() {
    let (mut t, mut w) = (McpTracker::default(), World::default());
    feed(
        &mut t,
        &mut w,
        &origin(10, 1, None),
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
    );
    let got = calls(&mut t);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.method, "notifications/initialized");
    assert_eq!(got[0].1.request_id, None);
    // A response from the sender itself answers nothing.
    feed(
        &mut t,
        &mut w,
        &origin(10, 2, None),
        r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
    );
    assert!(calls(&mut t).is_empty());
    t.expire(Instant::now() + RESPONSE_WAIT, RESPONSE_WAIT);
    let got = calls(&mut t);
    assert_eq!(got.len(), 1);
    assert!(!got[0].1.answered);
    assert!(!t.has_pending());
}

#[test]
fn flush_releases_everything_and_errors_carry_their_code() {
    let (mut t, mut w) = (McpTracker::default(), World::default());
    w.parent.insert(11, 10);
    feed(
        &mut t,
        &mut w,
        &origin(10, 1, None),
        r#"{"jsonrpc":"2.0","id":"x","method":"prompts/get","params":{"name":"p"}}"#,
    );
    feed(
        &mut t,
        &mut w,
        &origin(11, 2, None),
        r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"bad"}}"#,
    );
    let got = calls(&mut t);
    assert_eq!(got[0].1.rpc_error_code, Some(-32602));
    feed(
        &mut t,
        &mut w,
        &origin(10, 3, None),
        r#"{"jsonrpc":"2.0","id":"y","method":"resources/read","params":{"uri":"file:///a"}}"#,
    );
    t.flush();
    let got = calls(&mut t);
    assert_eq!(got[0].1.resource_uri.as_deref(), Some("file:///a"));
}
