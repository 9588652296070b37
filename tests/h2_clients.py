#!/usr/bin/env python3
"""Real Python HTTP/2 and gRPC peers for runbom's HTTP/2 coverage test
(`sidecar/runbom/tests/http2_coverage.rs`).

    h2_clients.py httpx --url URL --model M [--cert FILE]   # one POST with httpx, HTTP/2 only
    h2_clients.py grpc-server                               # prints READY port=<port>, serves
    h2_clients.py grpc-client --port N --name NAME          # one unary call, plaintext

httpx: one OpenAI-style POST (JSON body with `model`) over HTTP/2 (ALPN h2 for https, prior
knowledge for http), then one JSON line {"pid", "status"}. The gRPC peers use grpcio with raw
bytes (no generated code): the server answers `/runbom.test.Echo/Say` with the request's bytes
and any other method with UNIMPLEMENTED; the client prints {"pid", "status": 200, "grpc": code}.
"""

import argparse
import json
import os
import sys
import time
from concurrent import futures

SERVICE = "runbom.test.Echo"


def with_httpx(args) -> int:
    import httpx

    body = {"model": args.model, "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(verify=args.cert or True, http1=False, http2=True, timeout=20) as client:
        r = client.post(args.url, json=body)
        assert r.http_version == "HTTP/2", r.http_version
        return r.status_code


def grpc_server(_args) -> int:
    import grpc

    def say(request, _context):
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"READY port={port}", flush=True)
    server.wait_for_termination()
    return 0


def grpc_client(args) -> dict:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{args.port}") as channel:
        call = channel.unary_unary(f"/{SERVICE}/{args.name}")
        try:
            call(b"hello", timeout=20)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
    return {"status": 200, "grpc": code.value[0]}


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("httpx")
    h.add_argument("--url", required=True)
    h.add_argument("--model", required=True)
    h.add_argument("--cert")
    sub.add_parser("grpc-server")
    c = sub.add_parser("grpc-client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--name", default="Say")
    args = p.parse_args()
    if args.mode == "grpc-server":
        return grpc_server(args)
    if args.mode == "httpx":
        report = {"status": with_httpx(args)}
    else:
        report = grpc_client(args)
    print(json.dumps({"pid": os.getpid(), **report}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
