#!/usr/bin/env python3
"""A deterministic workload for runbom's kernel-event integration tests.

    workload.py --scratch DIR --dns-port PORT [--exit-code N]

Does exactly this, in this order, from this one process (and one child), using only the
standard library so that nothing else runs in between:

 1. exec `/bin/echo runbom-marker-<uuid> --token=supersecret` (a child process; its exported
    command line must read `--token=[REDACTED]`);
 2. TCP connect to 127.0.0.1:<port of a listener this process opened> (succeeds; the listener
    never accepts, the kernel completes the handshake; the local port the kernel bound is
    reported, for `client.port`);
 3. TCP connect to 127.0.0.1:<port bound but not listening> (refused: ECONNREFUSED; the port
    stays bound, so no other process can take it in the meantime);
 4. TCP connect to [::1]:<port of an IPv6 listener> (succeeds);
 5. open(<DIR>/watched/data-<uuid>.txt, O_WRONLY|O_CREAT|O_TRUNC) and write a line;
 6. open(<DIR>/watched/missing-<uuid>.txt, O_RDONLY) (fails: ENOENT);
 7. open(<DIR>/ignored/data-<uuid>.txt, O_WRONLY|O_CREAT|O_TRUNC) and write a line;
 8. one DNS query (wire format, type A, for `q-<uuid>.runbom.test`) sent with sendto() over
    UDP to 127.0.0.1:<PORT>, where the test runs a DNS server; waits up to 5 s for its answer.

Then prints one JSON line on stdout with its pid, the child's pid, the markers, ports and paths
it used and what each step returned, and exits with --exit-code (default 0).
"""

import argparse
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import uuid


def connect(family, address):
    """Connects a fresh TCP socket; returns "ok" or the errno's name, and the socket's local
    port (None when the connect failed).

    The socket stays blocking (no timeout): Python implements timeouts with a non-blocking
    connect, whose syscall returns EINPROGRESS and reports a refusal only later (SO_ERROR).
    Loopback connects complete or fail within the call.
    """
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.connect(address)
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e)), None
        return "ok", s.getsockname()[1]


def listener(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(8)
    return s


def create(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def dns_query(name, txid):
    """A standard query (RD set) for `name`, type A, class IN."""
    header = struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0)
    question = b"".join(
        bytes([len(label)]) + label.encode("ascii") for label in name.split(".")
    )
    return header + question + b"\x00" + struct.pack(">HH", 1, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--dns-port", type=int, required=True)
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()

    tag = uuid.uuid4().hex
    marker = f"runbom-marker-{tag}"
    watched_dir = os.path.join(args.scratch, "watched")
    ignored_dir = os.path.join(args.scratch, "ignored")
    os.makedirs(watched_dir, exist_ok=True)
    os.makedirs(ignored_dir, exist_ok=True)

    # Sockets are set up before anything is measured, so the steps below are back to back.
    listen4 = listener(socket.AF_INET, "127.0.0.1")
    listen6 = listener(socket.AF_INET6, "::1")
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    ok_port = listen4.getsockname()[1]
    refused_port = closed.getsockname()[1]
    v6_port = listen6.getsockname()[1]

    # 1. exec with a secret on the command line.
    child = subprocess.Popen(
        ["/bin/echo", marker, "--token=supersecret"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    echo_out, _ = child.communicate(timeout=10)

    # 2-4. connects.
    connect_ok, local_ok = connect(socket.AF_INET, ("127.0.0.1", ok_port))
    connect_refused, _ = connect(socket.AF_INET, ("127.0.0.1", refused_port))
    connect_v6, local_v6 = connect(socket.AF_INET6, ("::1", v6_port))

    # 5-7. opens.
    watched = os.path.join(watched_dir, f"data-{tag}.txt")
    missing = os.path.join(watched_dir, f"missing-{tag}.txt")
    ignored = os.path.join(ignored_dir, f"data-{tag}.txt")
    create(watched, f"{marker}\n")
    try:
        os.close(os.open(missing, os.O_RDONLY))
        open_missing = "ok"
    except OSError as e:
        open_missing = errno.errorcode.get(e.errno, str(e))
    create(ignored, f"{marker}\n")

    # 8. DNS.
    dns_name = f"q-{tag}.runbom.test"
    txid = int(tag[:4], 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(dns_query(dns_name, txid), ("127.0.0.1", args.dns_port))
        try:
            answer, _ = udp.recvfrom(512)
            dns_answered = len(answer) >= 12 and struct.unpack(">H", answer[:2])[0] == txid
        except OSError:  # TimeoutError included
            dns_answered = False

    for s in (listen4, listen6, closed):
        s.close()

    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "child_pid": child.pid,
                "child_exit_code": child.returncode,
                "child_stdout": echo_out.decode(errors="replace").strip(),
                "marker": marker,
                "tag": tag,
                "executable": sys.executable,
                "ports": {
                    "tcp_ok": ok_port,
                    "tcp_refused": refused_port,
                    "tcp6_ok": v6_port,
                    "dns": args.dns_port,
                },
                "local_ports": {"tcp_ok": local_ok, "tcp6_ok": local_v6},
                "results": {
                    "connect_ok": connect_ok,
                    "connect_refused": connect_refused,
                    "connect_v6": connect_v6,
                    "open_missing": open_missing,
                    "dns_answered": dns_answered,
                },
                "paths": {"watched": watched, "missing": missing, "ignored": ignored},
                "dns_name": dns_name,
            }
        ),
        flush=True,
    )
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
