#!/usr/bin/env python3
"""HTTP and HTTPS peers for runbom's `http.request` integration tests (standard library only).

    http_workload.py server --cert-dir DIR [--tls]     # prints READY port=<port>, serves
    http_workload.py client --port N [--split | --tls --cert FILE [--asyncio]] [--wait-stdin]

server: an HTTP/1.1 server on 127.0.0.1 (any free port) that answers every request 200 with
a small JSON body; with --tls, over TLS with a self-signed certificate made by the `openssl` CLI
(DIR/cert.pem is what the client trusts). Runs until killed.

client: one request, then prints one JSON line (its pid, what it sent, the status it got):
- plaintext: `POST /submit?user=alice&token=<secret>` with a 5 KiB `X-Filler` header *before*
  `traceparent` and `Host: localhost:<port>` (the connection goes to 127.0.0.1), sent with http.client's `request` (head and body in one send());
- --tls: `POST /v1/chat/completions` with `Authorization: Bearer sk-…` and an OpenAI-style JSON
  body `{"messages": […], "model": "gpt-4o-mini"}`, the head and the body in two writes (as
  the OpenAI SDK's HTTP stack does), through Python's `ssl` module (OpenSSL's SSL_write_ex).
With --split the plaintext request is instead an Ollama/OpenAI-style `POST /v1/chat/completions`
whose JSON body (`"model": "llama3.2"`) follows the head in a second send(), as httpx does.
With --asyncio the TLS request goes through asyncio streams instead (`ssl.SSLObject` over a
memory BIO: OpenSSL never sees the socket, `SSL_get_fd` is -1), head and body again in two
writes. With --wait-stdin the client imports everything, prints `LOADED pid=<pid>` and waits for a line
on stdin before it connects (so a test can wait until runbom has hooked its libssl).
"""

import argparse
import asyncio
import http.client
import http.server
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
API_KEY = "sk-runbomtest" + "A1b2C3d4E5f6G7h8I9j0" * 2
QUERY_SECRET = "qsecret-7d1f0c"


RESPONSE = (
    b'{"choices":[{"finish_reason":"tool_calls","index":0,"logprobs":null,"message":{"annota'
    b'tions":[],"content":null,"refusal":null,"role":"assistant","tool_calls":[{"function":{'
    b'"arguments":"{\\"city\\":\\"Tokyo\\"}","name":"get_temperature"},"id":"call_bhZkmIKKItNGJ4'
    b'1whHUHB7p9","type":"function"}]}}],"created":1744810634,"id":"chatcmpl-BMxEwRA0p0gJ52o'
    b'KS7806KAlfMhqq","model":"gpt-4.1-mini-2025-04-14","object":"chat.completion","service_'
    b'tier":"default","system_fingerprint":"fp_38647f5e19","usage":{"completion_tokens":15,"'
    b'completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning'
    b'_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":50,"prompt_tokens_details":'
    b'{"audio_tokens":0,"cached_tokens":0},"total_tokens":65}}'
)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        # A chat completion as api.openai.com answered one (recorded: sidecar/runbom-genai/tests/
        # fixtures/openai-chat-tool-calls).
        body = RESPONSE
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def make_certificate(cert_dir: Path) -> tuple[Path, Path]:
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=runbom test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def server(args):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.tls:
        cert, key = make_certificate(Path(args.cert_dir))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(f"READY port={httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


async def asyncio_request(args, headers: dict[str, str], target: str, body: bytes) -> int:
    ctx = ssl.create_default_context(cafile=args.cert)
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port, ssl=ctx)
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write((head + "\r\n").encode("latin-1"))
    await writer.drain()
    writer.write(body)
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
    length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                  if line.lower().startswith("content-length:"))
    await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return int(head.split()[1])


def client(args):
    traceparent = f"00-{TRACE_ID}-{SPAN_ID}-01"
    if args.wait_stdin:
        print(f"LOADED pid={os.getpid()}", flush=True)
        sys.stdin.readline()
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=ctx, timeout=10)
        body = json.dumps({
            "messages": [{"role": "user", "content": "hello"}],
            "model": "gpt-4o-mini",
        }).encode()
        target = "/v1/chat/completions"
        headers = {
            "Host": f"127.0.0.1:{args.port}",
            "Authorization": f"Bearer {API_KEY}",
            "traceparent": traceparent,
            "User-Agent": "runbom-test/1.0",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }
    if args.tls and args.asyncio:
        status = asyncio.run(asyncio_request(args, headers, target, body))
    elif args.tls:
        conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()  # the head, in one SSL_write_ex
        conn.send(body)  # the body, in a second one
    elif args.split:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
        body = json.dumps({
            "messages": [{"role": "user", "content": "hi"}],
            "model": "llama3.2",
        }).encode()
        target = "/v1/chat/completions"
        conn.putrequest("POST", target)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("traceparent", traceparent)
        conn.endheaders()  # the head, in one send()
        conn.send(body)  # the body, in a second one
    else:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
        body = b'{"hello":"world"}'
        target = f"/submit?user=alice&token={QUERY_SECRET}"
        # http.client sends the headers in this order; Host is added explicitly after the filler,
        # and names `localhost` so that it cannot be mistaken for the connected peer's address.
        headers = {
            "X-Filler": "f" * 5000,
            "traceparent": traceparent,
            "Host": f"localhost:{args.port}",
            "User-Agent": "runbom-test/1.0",
            "Content-Type": "application/json",
        }
        conn.request("POST", target, body=body, headers=headers)
    if not (args.tls and args.asyncio):
        resp = conn.getresponse()
        resp.read()
        conn.close()
        status = resp.status
    print(json.dumps({
        "pid": os.getpid(),
        "port": args.port,
        "status": status,
        "target": target,
        "body_size": len(body),
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "api_key": API_KEY,
        "query_secret": QUERY_SECRET,
    }), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--cert-dir", default=".")
    s.add_argument("--tls", action="store_true")
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tls", action="store_true")
    c.add_argument("--cert")
    c.add_argument("--asyncio", action="store_true")
    c.add_argument("--split", action="store_true")
    c.add_argument("--wait-stdin", action="store_true")
    args = p.parse_args()
    server(args) if args.cmd == "server" else client(args)


if __name__ == "__main__":
    main()
