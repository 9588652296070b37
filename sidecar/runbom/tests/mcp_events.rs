//! MCP over stdio against the real kernel: the official SDKs' clients and servers (`PyPI` `mcp`,
//! npm `@modelcontextprotocol/sdk` and `@modelcontextprotocol/server-filesystem`) talk through
//! real pipes while runbom's probes are loaded here; every `initialize`, `tools/list` and
//! `tools/call` must come out as a paired `mcp.client` / `mcp.server` event with its
//! attributes, and pipe traffic that is not JSON-RPC as nothing at all.
//!
//! Needs root, the project's Python venv and `npm ci` in tests/node (`bash scripts/setup.sh`).
//! Every assertion is about the test's own processes (other tests may load probes meanwhile).

use std::{fmt::Write as _, fs, process::Command, time::Duration};

use runbom_event::{Detail, KernelEvent, McpCall, McpSide, McpTransport};
use runbom_kernel::ProbeSettings;
use runbom_testkit::{TempDir, python_bin, run_bounded, test_script, workspace_root};
use serde_json::Value;

/// Every event seen while `work` ran, probes loaded here (opens left out).
fn capture<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> (Vec<KernelEvent>, T) {
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-mcp-test/".into()],
        ..ProbeSettings::default()
    };
    runbom_testkit::kernel::capture(&settings, false, work)
}

fn report(cmd: &mut Command) -> Value {
    let out = run_bounded(cmd, Duration::from_mins(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON line ({e}): {stdout:?}"))
}

fn pid_of(v: &Value) -> u32 {
    v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("report lacks pid: {v}"))
}

/// The MCP events of `pid`, in the order they were emitted.
fn mcp_of(events: &[KernelEvent], pid: u32) -> Vec<(&KernelEvent, &McpCall)> {
    events
        .iter()
        .filter(|e| e.pid == pid)
        .filter_map(|e| match &e.detail {
            Detail::Mcp(m) => Some((e, &**m)),
            _ => None,
        })
        .collect()
}

fn names(calls: &[(&KernelEvent, &McpCall)]) -> Vec<String> {
    calls.iter().map(|(_, m)| m.span_name()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The requests of a client session and the server's side of each, checked call by call.
fn assert_session(events: &[KernelEvent], client: u32, tool: &str, transport: McpTransport) -> u32 {
    let calls = mcp_of(events, client);
    let requests: Vec<_> = calls
        .iter()
        .filter(|(_, m)| m.side == McpSide::Client)
        .copied()
        .collect();
    let call_name = format!("tools/call {tool}");
    let want = [
        "initialize",
        "notifications/initialized",
        "tools/list",
        call_name.as_str(),
    ];
    for name in want {
        assert!(
            names(&requests).iter().any(|n| n == name),
            "client {client}: no {name} among {:#?}",
            names(&requests)
        );
    }
    let tool_calls: Vec<_> = requests
        .iter()
        .filter(|(_, m)| m.method == "tools/call")
        .collect();
    assert_eq!(tool_calls.len(), 2, "{tool_calls:#?}");
    let server = tool_calls[0]
        .1
        .peer_pid
        .expect("the tool call was answered");
    assert_ne!(server, client);
    for (e, m) in &requests {
        assert_eq!(m.transport, transport, "{m:#?}");
        if m.request_id.is_none() {
            assert_eq!(m.method, "notifications/initialized");
            continue;
        }
        assert!(m.answered, "unanswered: {m:#?}");
        assert_eq!(m.peer_pid, Some(server), "{m:#?}");
        assert!(e.start_ns < e.end_ns, "no duration: {e:#?}");
    }
    // The first call succeeds, the second is the tool's own failure (`isError`).
    assert!(!tool_calls[0].1.tool_error);
    assert!(tool_calls[1].1.tool_error);
    assert_eq!(tool_calls[0].1.target.as_deref(), Some(tool));
    let list = requests
        .iter()
        .find(|(_, m)| m.method == "tools/list")
        .expect("tools/list");
    assert!(list.1.tools.iter().any(|t| t == tool), "{:#?}", list.1);
    let init = requests
        .iter()
        .find(|(_, m)| m.method == "initialize")
        .expect("initialize");
    assert!(init.1.protocol_version.is_some(), "{:#?}", init.1);

    // The server's side: the same requests, answered, each spanning the same times.
    let answered_by_server: Vec<_> = mcp_of(events, server)
        .into_iter()
        .filter(|(_, m)| m.side == McpSide::Server)
        .collect();
    for (e, m) in requests.iter().filter(|(_, m)| m.request_id.is_some()) {
        let twin = answered_by_server
            .iter()
            .find(|(_, s)| s.request_id == m.request_id)
            .unwrap_or_else(|| {
                panic!("server {server} did not serve {m:#?}: {answered_by_server:#?}")
            });
        assert_eq!(twin.1.method, m.method);
        assert_eq!(twin.1.target, m.target);
        assert_eq!(twin.1.tool_error, m.tool_error);
        assert_eq!(twin.1.peer_pid, Some(client));
        assert_eq!((twin.0.start_ns, twin.0.end_ns), (e.start_ns, e.end_ns));
    }
    server
}

#[test]
fn python_client_and_the_node_filesystem_server() {
    let dir = TempDir::new("mcp-fs");
    fs::write(dir.path().join("hello.txt"), "hello\n").expect("write data");
    let data = dir.path().to_path_buf();
    let (events, client) = capture(move || {
        report(
            Command::new(python_bin())
                .arg(test_script("mcp_workload.py"))
                .args(["client", "--otel", "--server", "node", "--data-dir"])
                .arg(&data),
        )
    });
    let pid = pid_of(&client);
    let server = assert_session(&events, pid, "read_text_file", McpTransport::Pipe);
    let server_events = mcp_of(&events, server);
    let init = server_events
        .iter()
        .find(|(_, m)| m.method == "initialize")
        .expect("initialize served");
    assert_eq!(
        init.1.server_name.as_deref(),
        Some("secure-filesystem-server")
    );
    // The SDK propagated its own span of each request in `params._meta.traceparent`.
    let sent: Vec<(&str, &str, &str)> = client["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["trace_id"].as_str().unwrap_or(""),
                s["span_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let calls: Vec<_> = mcp_of(&events, pid)
        .into_iter()
        .filter(|(_, m)| m.method == "tools/call")
        .collect();
    let sdk_calls: Vec<_> = sent
        .iter()
        .filter(|(n, _, _)| n.starts_with("MCP send tools/call"))
        .collect();
    assert_eq!(calls.len(), sdk_calls.len(), "{sent:#?}");
    for ((_, m), (_, trace, span)) in calls.iter().zip(sdk_calls) {
        let tp = m
            .traceparent
            .unwrap_or_else(|| panic!("no traceparent: {m:#?}"));
        assert_eq!(
            (hex(&tp.trace_id).as_str(), hex(&tp.span_id).as_str()),
            (*trace, *span)
        );
    }
}

#[test]
fn typescript_client_and_a_python_server() {
    let node_client = workspace_root().join("tests/node/mcp_client.mjs");
    assert!(
        workspace_root()
            .join("tests/node/node_modules/@modelcontextprotocol/sdk")
            .is_dir(),
        "run `npm ci` in tests/node (bash scripts/setup.sh)"
    );
    let (events, client) = capture(move || {
        report(
            Command::new("node")
                .arg(node_client)
                .arg(python_bin())
                .arg(test_script("mcp_workload.py")),
        )
    });
    // Node gives a child's stdio a Unix socketpair.
    let server = assert_session(&events, pid_of(&client), "add", McpTransport::Unix);
    let server_events = mcp_of(&events, server);
    assert!(
        server_events
            .iter()
            .any(|(_, m)| m.server_name.as_deref() == Some("runbom-test-server")),
        "{server_events:#?}"
    );
}

#[test]
fn pipe_traffic_that_is_not_json_rpc_is_not_reported() {
    let (events, noise) = capture(|| {
        report(
            Command::new(python_bin())
                .arg(test_script("mcp_workload.py"))
                .arg("noise"),
        )
    });
    let writer = pid_of(&noise);
    let cat = u32::try_from(noise["cat_pid"].as_u64().expect("cat_pid")).expect("pid");
    // The workload ran while the probes were loaded: its exec was seen.
    assert!(
        events
            .iter()
            .any(|e| e.pid == cat && matches!(e.detail, Detail::Exec { .. })),
        "the probes saw nothing of the workload"
    );
    for pid in [writer, cat] {
        assert!(
            mcp_of(&events, pid).is_empty(),
            "{:#?}",
            mcp_of(&events, pid)
        );
    }
}
