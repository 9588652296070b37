//! `socket`, `connect` and `accept` keep their call in a per-thread slot between the syscall's
//! entry and exit. Against the real kernel: threads connect at the same time (to a listener, and
//! to a port that refuses) while another thread accepts, so their entries and exits interleave;
//! every call must come out once, with its own result and its own ends: the local port the
//! kernel bound for that connect, the peer of that accept, `ECONNREFUSED` for the refused ones.
//!
//! Needs root. Other processes on the machine run meanwhile: every check is about this test's
//! ports.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Barrier,
};

use runbom_testkit::{
    TempDir,
    config::start_kernel_to_file,
    otlp_file::{Items, for_each_item, str_attribute},
    runbom::closing_fields,
    runbom_bin,
};
use serde_json::Value;

const THREADS: usize = 4;
const CONNECTS_PER_THREAD: usize = 150;

/// The integer value of attribute `key` of a span in OTLP/JSON (`intValue` is a string there).
fn int_attribute(item: &Value, key: &str) -> Option<i64> {
    let value = &item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["intValue"];
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_i64())
}

/// Connects to `open` and to `refused` in turn; returns the local ports of the connects that
/// succeeded and how many were refused.
fn connect_in_turn(open: SocketAddr, refused: SocketAddr) -> (Vec<u16>, usize) {
    let (mut ports, mut refusals) = (Vec::new(), 0);
    for _ in 0..CONNECTS_PER_THREAD {
        let stream = TcpStream::connect(open).expect("connect to the listener");
        ports.push(stream.local_addr().expect("local address").port());
        let err = TcpStream::connect(refused).expect_err("the port refuses");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        refusals += 1;
    }
    (ports, refusals)
}

#[test]
fn concurrent_connects_and_accepts_each_come_out_with_their_own_ends() {
    let dir = TempDir::new("socket-calls");
    // Opens of a directory nobody uses: other processes' opens must not fill the ring (connects
    // are shed once it is 85 % full).
    let ebpf = format!(
        "    file:\n      include: [\"{}/\"]",
        dir.join("watched").display()
    );
    let (rb, out) = start_kernel_to_file(runbom_bin!(), &dir, &ebpf);

    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let open = listener.local_addr().expect("listener address");
    // Bound, never listening: every connect to it is refused.
    let holder = refusing_port();
    let refused = holder.local_addr().expect("refused address");
    let total = THREADS * CONNECTS_PER_THREAD;
    let start = Barrier::new(THREADS + 1);
    let (made, accepted): (Vec<(Vec<u16>, usize)>, Vec<u16>) = std::thread::scope(|s| {
        let acceptor = s.spawn(|| {
            start.wait();
            (0..total)
                .map(|_| listener.accept().expect("accept").1.port())
                .collect::<Vec<u16>>()
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    connect_in_turn(open, refused)
                })
            })
            .collect();
        let made = handles
            .into_iter()
            .map(|h| h.join().expect("connecting thread"))
            .collect();
        (made, acceptor.join().expect("accepting thread"))
    });
    let log = rb.stop_ok();
    let fields = closing_fields(&log).expect("closing summary");

    // Our connects: local port → how many exported; refusals; our accepts: peer port → count.
    let (mut connected, mut refusals, mut accepts) = (BTreeMap::new(), 0, BTreeMap::new());
    for_each_item(&out.join("traces.jsonl"), Items::Spans, |span| {
        let name = span["name"].as_str().unwrap_or_default();
        let server_port = int_attribute(span, "server.port");
        let client_port = int_attribute(span, "client.port");
        if name.starts_with("net.connect ") && server_port == Some(i64::from(open.port())) {
            assert_eq!(str_attribute(span, "error.type"), None, "{span}");
            assert_eq!(str_attribute(span, "client.address"), Some("127.0.0.1"));
            *connected.entry(client_port.unwrap_or(0)).or_insert(0) += 1;
        } else if name.starts_with("net.connect ") && server_port == Some(i64::from(refused.port()))
        {
            assert_eq!(str_attribute(span, "error.type"), Some("ECONNREFUSED"));
            refusals += 1;
        } else if name.starts_with("net.accept ") {
            *accepts.entry(client_port.unwrap_or(0)).or_insert(0) += 1;
        }
    })
    .expect("read the exported spans");

    let mut ports: Vec<u16> = made.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    ports.sort_unstable();
    // Loopback connects may reuse a local port in TIME_WAIT (`tcp_tw_reuse`): count them.
    let mut expected: BTreeMap<i64, i32> = BTreeMap::new();
    for p in &ports {
        *expected.entry(i64::from(*p)).or_insert(0) += 1;
    }
    assert_eq!(ports.len(), total);
    assert_eq!(
        connected, expected,
        "every connect exported once, with its own local port ({fields:?})"
    );
    assert_eq!(refusals, made.iter().map(|(_, r)| r).sum::<usize>());
    // Accepts of other processes on the machine may be exported too: only ours are compared.
    let ours: BTreeMap<i64, i32> = accepts
        .into_iter()
        .filter(|(port, _)| expected.contains_key(port))
        .collect();
    let mut peers = accepted;
    peers.sort_unstable();
    assert_eq!(peers, ports, "the acceptor saw our connects");
    assert_eq!(
        ours, expected,
        "every accept exported once with its own peer ({fields:?})"
    );
    assert_eq!(
        fields.get("inflight_full_drops").copied(),
        Some(0),
        "no call lost: {fields:?}"
    );
}

/// A loopback TCP socket bound to a free port and never listening.
fn refusing_port() -> std::net::TcpListener {
    // std binds only to listen; a socket bound and never listening is what refuses.
    // SAFETY: plain socket calls on a descriptor we create; ownership passes to the listener
    // type only for its `local_addr` and its close on drop.
    unsafe {
        use std::os::fd::FromRawFd as _;
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        std::net::TcpListener::from_raw_fd(fd)
    }
}
