#!/usr/bin/env python3
"""Real Python clients for runbom's coverage test (`sidecar/runbom/tests/http_coverage.rs`).

    http_clients.py requests --url URL --model M [--cert FILE]   # one POST with requests
    http_clients.py httpx --url URL --model M [--cert FILE]      # one POST with httpx (HTTP/1.1)
    http_clients.py dns --port N --name-write A --name-writev B  # DNS on a connected UDP socket

requests/httpx: one OpenAI-style `POST` (JSON body with `model`) and nothing else, then one JSON
line: {"pid", "status"}. dns: a UDP socket connected to 127.0.0.1:N, one query for A sent with
write(2) and one for B with writev(2) (as Go's resolver writes), each answer read; then one
JSON line {"pid", "answers"}.
"""

import argparse
import json
import os
import socket
import struct
import sys


def body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


def with_requests(args) -> int:
    import requests

    r = requests.post(args.url, json=body(args.model), verify=args.cert or True, timeout=20)
    return r.status_code


def with_httpx(args) -> int:
    import httpx

    with httpx.Client(verify=args.cert or True, http2=False, timeout=20) as client:
        return client.post(args.url, json=body(args.model)).status_code


def question(name: str, ident: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)


def dns(args) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", args.port))
    s.settimeout(5)
    answers = 0
    os.write(s.fileno(), question(args.name_write, 0x1234))
    answers += len(s.recv(512)) > 0
    os.writev(s.fileno(), [question(args.name_writev, 0x4321)])
    answers += len(s.recv(512)) > 0
    s.close()
    return answers


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=["requests", "httpx", "dns"])
    p.add_argument("--url")
    p.add_argument("--model")
    p.add_argument("--cert")
    p.add_argument("--port", type=int)
    p.add_argument("--name-write")
    p.add_argument("--name-writev")
    args = p.parse_args()
    if args.client == "dns":
        print(json.dumps({"pid": os.getpid(), "answers": dns(args)}))
        return
    run = with_requests if args.client == "requests" else with_httpx
    print(json.dumps({"pid": os.getpid(), "status": run(args)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
