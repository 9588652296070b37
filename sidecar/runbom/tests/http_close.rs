//! `close(2)` ends what the HTTP captures know of a socket, against the real kernel: a process
//! that sent a request head on a socket and closed it reads a file under the same descriptor
//! number, and the file's bytes (a response's, to the letter) are not taken for the response.
//! And the kernel's note of which processes' closes look (`MARKING_PROCS`): a process's slot
//! names it once it sent a request head, and is freed when it exits.
//!
//! Needs root and the project's Python venv (`bash scripts/setup.sh`).

use std::{process::Command, time::Duration};

use runbom_event::Detail;
use runbom_kernel::ProbeSettings;
use runbom_testkit::{TempDir, python_bin, run_bounded};
use serde_json::Value;

/// Sends an LLM API request head with its body on a loopback socket (the peer reads it and
/// never answers), closes the socket, opens `argv[1]` (the lowest free descriptor: the
/// socket's) and reads it; prints its pid and both descriptor numbers.
const CLIENT: &str = r#"
import json, os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
sock_fd = client.fileno()
body = b'{"model":"llama3.2"}'
client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
peer.recv(65536)
client.close()
file_fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(file_fd, 4096)
os.close(file_fd)
print(json.dumps({"pid": os.getpid(), "sock_fd": sock_fd, "file_fd": file_fd}))
"#;

#[test]
fn a_file_read_under_a_closed_sockets_descriptor_is_not_its_response() {
    let dir = TempDir::new("http-close");
    let file = dir.path().join("response");
    std::fs::write(
        &file,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .expect("write the file");
    // Opens are not what this test is about: keep the ring to HTTP and process events.
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-http-test/".into()],
        ..ProbeSettings::default()
    };
    let (events, report) = runbom_testkit::kernel::capture(&settings, false, move || {
        let mut cmd = Command::new(python_bin());
        cmd.arg("-c").arg(CLIENT).arg(&file);
        let out = run_bounded(&mut cmd, Duration::from_mins(1));
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<Value>(stdout.trim()).expect("the client's JSON line")
    });
    assert_eq!(
        report["sock_fd"], report["file_fd"],
        "the file did not reuse the socket's descriptor: {report}"
    );
    let pid = u32::try_from(report["pid"].as_u64().expect("pid")).expect("pid fits u32");
    let requests: Vec<_> = events
        .iter()
        .filter(|e| e.pid == pid)
        .filter_map(|e| match &e.detail {
            Detail::HttpRequest(h) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/v1/chat/completions");
    assert_eq!(
        request.status, None,
        "the file's bytes were read as the closed socket's response: {request:#?}"
    );
}

/// Sends a request head on a loopback socket (which marks the process for the response
/// capture), prints its pid and waits for a line on stdin before it exits.
const MARKER: &str = r#"
import os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
peer.recv(65536)
print(os.getpid(), flush=True)
sys.stdin.readline()
"#;

#[test]
fn a_process_slot_is_claimed_when_it_marks_and_freed_when_it_exits() {
    use std::io::{BufRead, BufReader, Write};
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-http-test/".into()],
        ..ProbeSettings::default()
    };
    let probes = runbom_kernel::Probes::load(&settings).expect("load the probes");
    let mut child = Command::new(python_bin())
        .arg("-c")
        .arg(MARKER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the client");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the client's pid");
    let pid: u32 = line.trim().parse().expect("a pid");
    let held = probes.marking_slot(pid).expect("read the slot");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"exit\n")
        .expect("tell the client to exit");
    assert!(child.wait().expect("wait for the client").success());
    assert_eq!(
        held,
        u64::from(pid),
        "the slot of a process that sent a request head does not name it"
    );
    // The exit's tracepoint ran before `wait` returned (the parent is told after it).
    assert_eq!(
        probes.marking_slot(pid).expect("read the slot"),
        0,
        "the slot of an exited process was not freed"
    );
}
