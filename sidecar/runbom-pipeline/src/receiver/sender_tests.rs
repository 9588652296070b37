//! Who sent a request: lookups against real sockets, and what the sender's identity replaces.

use std::net::{TcpListener, TcpStream};

use super::*;

#[test]
fn parses_kernel_addresses() {
    assert_eq!(
        parse_addr("0100007F:1F90"),
        Some("127.0.0.1:8080".parse().unwrap())
    );
    assert_eq!(
        parse_addr("00000000000000000000000001000000:0050"),
        Some("[::1]:80".parse().unwrap())
    );
    assert_eq!(
        parse_addr("0000000000000000FFFF00000100007F:0050"),
        Some("127.0.0.1:80".parse().unwrap()),
        "IPv4-mapped addresses are reported as IPv4"
    );
    assert_eq!(parse_addr("zz:1"), None);
}

#[test]
fn finds_the_process_behind_a_loopback_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let client = TcpStream::connect(server).unwrap();
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    let pids = SenderPids::default();
    assert_eq!(
        pids.lookup(Peer::accepted(peer, Some(server))),
        Some(std::process::id())
    );
    // The server's own end does not match the client address.
    assert_eq!(
        pids.lookup(Peer::accepted("127.0.0.1:1".parse().unwrap(), Some(server))),
        None
    );
}

/// A client in a network namespace of its own (as a pod's is): its socket is only in that
/// namespace's table, and is found there.
#[test]
fn an_unverified_senders_claimed_identity_moves_under_received() {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
    };
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    let mut signal = Signal::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv(PROCESS_PID, Value::IntValue(1)),
                    kv(CONTAINER_ID, Value::StringValue("abc".into())),
                    kv("service.name", Value::StringValue("agent".into())),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }],
    });
    unverified(&mut signal);
    let Signal::Traces(t) = signal else {
        unreachable!()
    };
    let keys: Vec<_> = t.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "received.process.pid",
            "received.container.id",
            "service.name"
        ]
    );
}

#[test]
fn finds_the_process_behind_a_connection_in_another_network_namespace() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    if !nix_root() {
        eprintln!("skipped: needs root (unshare -n)");
        return;
    }
    let script = "import socket,sys,time\n\
        l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen()\n\
        c=socket.create_connection(l.getsockname()); a,_=l.accept()\n\
        print(c.getsockname()[1], flush=True); sys.stdin.read()\n";
    let mut child = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec python3 -c \"$0\"",
            script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the client's port");
    let client = SocketAddr::from(([127, 0, 0, 1], port));
    // unshare and sh exec: the child's pid is the python's.
    let found = SenderPids::default().lookup(Peer::accepted(client, None));
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(
        found,
        Some(child.id()),
        "the client's process, in its own namespace"
    );
}

/// A client's port is free again once its connection closes: another process's socket
/// bound to it (here on purpose, as a forger would) is a new connection, whose owner is
/// looked up, never the first one's answer.
#[test]
fn a_new_connection_from_a_reused_client_address_is_looked_up_again() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Child, Command, Stdio};
    // Connects from the port given (0: any), prints it, and holds on until stdin closes.
    const CLIENT: &str = "import socket,sys\n\
        s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
        s.bind(('127.0.0.1',int(sys.argv[1]))); s.connect(('127.0.0.1',int(sys.argv[2])))\n\
        print(s.getsockname()[1], flush=True); sys.stdin.read()\n";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let connect = |port: u16| -> (Child, SocketAddr, TcpStream) {
        let mut child = Command::new("python3")
            .args(["-c", CLIENT, &port.to_string(), &server.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let (accepted, client) = listener.accept().unwrap();
        assert_eq!(client.port(), line.trim().parse::<u16>().unwrap());
        (child, client, accepted)
    };
    let finish = |mut child: Child| {
        child.stdin.take().unwrap().flush().unwrap();
        child.wait().unwrap();
    };
    let pids = SenderPids::default();
    let (first, client, accepted) = connect(0);
    let first_peer = Peer::accepted(client, Some(server));
    assert_eq!(pids.lookup(first_peer), Some(first.id()));
    // The server closes first: the client's end leaves no TIME_WAIT behind.
    drop(accepted);
    let first_pid = first.id();
    finish(first);
    let (second, again, _accepted) = connect(client.port());
    assert_eq!(
        again, client,
        "the second socket has the first one's address"
    );
    let found = pids.lookup(Peer::accepted(again, Some(server)));
    let second_pid = second.id();
    finish(second);
    assert_ne!(first_pid, second_pid);
    assert_eq!(
        found,
        Some(second_pid),
        "the second connection's own process"
    );
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn annotates_resources_and_replaces_a_pid_that_is_not_the_senders() {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
    };
    let with_pid = |pid: i64| Resource {
        attributes: vec![KeyValue {
            key: "process.pid".into(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(pid)),
            }),
        }],
        ..Default::default()
    };
    let mut signal = Signal::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(with_pid(42)),
                ..Default::default()
            },
            ResourceSpans::default(),
            ResourceSpans {
                resource: Some(with_pid(1)),
                ..Default::default()
            },
        ],
    });
    assert_eq!(
        annotate(&mut signal, 42, None),
        1,
        "one resource claimed another pid"
    );
    let Signal::Traces(r) = signal else {
        unreachable!()
    };
    let attrs = |i: usize| -> Vec<(String, Option<Value>)> {
        r.resource_spans[i]
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect()
    };
    let pid = |k: &str, v: i64| (k.to_owned(), Some(Value::IntValue(v)));
    assert_eq!(
        attrs(0),
        vec![pid("process.pid", 42)],
        "the sender's own pid is kept"
    );
    assert_eq!(
        attrs(1),
        vec![pid("process.pid", 42)],
        "a missing pid is added"
    );
    assert_eq!(
        attrs(2),
        vec![pid("received.process.pid", 1), pid("process.pid", 42)],
        "a forged pid is replaced and kept under received."
    );
}

#[test]
fn a_resources_container_is_the_senders_own() {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
    };
    let claiming = |id: Option<&str>| ResourceSpans {
        resource: Some(Resource {
            attributes: id
                .map(|id| KeyValue {
                    key: "container.id".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(id.into())),
                    }),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let keys = |container: Option<&str>| -> Vec<Vec<(String, String)>> {
        let mut signal = Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                claiming(Some("ours")),
                claiming(Some("victim")),
                claiming(None),
            ],
        });
        annotate(&mut signal, 42, container);
        let Signal::Traces(r) = signal else {
            unreachable!()
        };
        r.resource_spans
            .iter()
            .map(|rs| {
                let attrs = &rs.resource.as_ref().unwrap().attributes;
                attrs
                    .iter()
                    .filter(|kv| kv.key.ends_with("container.id"))
                    .map(
                        |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(v)) => (kv.key.clone(), v.clone()),
                            other => panic!("{other:?}"),
                        },
                    )
                    .collect()
            })
            .collect()
    };
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        keys(Some("ours")),
        vec![
            vec![kv("container.id", "ours")],
            vec![
                kv("received.container.id", "victim"),
                kv("container.id", "ours")
            ],
            vec![kv("container.id", "ours")],
        ],
        "the sender's container is set; another pod's, claimed, is kept under received."
    );
    assert_eq!(
        keys(None),
        vec![
            vec![kv("received.container.id", "ours")],
            vec![kv("received.container.id", "victim")],
            vec![],
        ],
        "a sender in no container names none"
    );
}
