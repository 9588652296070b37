#!/usr/bin/env python3
"""A real OTLP receiver for runbom's integration tests, built on the protocol's own bindings.

    otlp_sink.py --out FILE [--grpc-port N] [--http-port N] [--max-lifetime SECONDS]

Serves, on 127.0.0.1:
  * OTLP/gRPC: TraceService/Export and LogsService/Export (opentelemetry-proto's `*_pb2_grpc`
    servicers on grpcio; gzip-compressed messages are decompressed by grpcio itself);
  * OTLP/HTTP: POST /v1/traces and /v1/logs with protobuf bodies (`application/x-protobuf`,
    also `application/json`), `Content-Encoding: gzip` honoured, on a second port (http.server).

A port of 0 (the default) picks a free one. Every export request received is appended to FILE
as one JSON line and flushed before the request is answered:

    {"signal": "traces"|"logs", "transport": "grpc"|"http",
     "compression": "gzip"|"none"|"unknown", "received_ns": <Unix ns>,
     "request": MessageToDict(request, preserving_proto_field_name=True)}

(grpcio decompresses gRPC messages before the servicer runs and hides the `grpc-encoding`
header, so gRPC requests say "unknown" unless the client repeated it as metadata.) When both
servers listen, prints one line `READY grpc=<port> http=<port>` on stdout. Exits 0 on SIGTERM
or SIGINT, and on its own after --max-lifetime seconds (default 600) so that a test that died
cannot leave it running.
"""

import argparse
import gzip
import http.server
import json
import signal
import sys
import threading
import time
import zlib
from concurrent import futures

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

REQUEST_TYPES = {
    "traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}


class Recorder:
    """Appends one JSON line per export request, flushed at once, from any thread."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as we do)
        self._lock = threading.Lock()
        self.count = 0

    def record(self, signal_name, transport, compression, message):
        line = json.dumps(
            {
                "signal": signal_name,
                "transport": transport,
                "compression": compression,
                "received_ns": time.time_ns(),
                "request": json_format.MessageToDict(
                    message, preserving_proto_field_name=True
                ),
            },
            sort_keys=True,
        )
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self):
        with self._lock:
            self._file.close()


def grpc_compression(context):
    for key, value in context.invocation_metadata():
        if key == "grpc-encoding":
            return value
    return "unknown"


def grpc_service(servicer, signal, response):
    """A gRPC service of `signal` that records each request and answers `response()`."""

    class Service(servicer):
        def __init__(self, recorder):
            self.recorder = recorder

        def Export(self, request, context):  # noqa: N802 (generated name)
            self.recorder.record(signal, "grpc", grpc_compression(context), request)
            return response()

    return Service


TraceService = grpc_service(
    trace_service_pb2_grpc.TraceServiceServicer,
    "traces",
    trace_service_pb2.ExportTraceServiceResponse,
)
LogsService = grpc_service(
    logs_service_pb2_grpc.LogsServiceServicer,
    "logs",
    logs_service_pb2.ExportLogsServiceResponse,
)


def make_http_handler(recorder):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 (inherited signature)
            pass  # keep the test's output clean; errors are answered with a status and body

        def reply(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def fail(self, status, text):
            self.reply(status, "text/plain; charset=utf-8", text.encode())

        def do_POST(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            signal_name = {"/v1/traces": "traces", "/v1/logs": "logs"}.get(path)
            if signal_name is None:
                self.fail(404, f"no OTLP endpoint at {path}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding not in ("", "identity"):
                    self.fail(415, f"unsupported Content-Encoding {encoding!r}")
                    return
            except (OSError, EOFError, zlib.error) as e:
                self.fail(400, f"cannot decompress the {encoding} body: {e}")
                return
            request_type, response_type = REQUEST_TYPES[signal_name]
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            message = request_type()
            try:
                if content_type == "application/json":
                    json_format.Parse(body, message)
                else:
                    message.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 (any decode error is the client's)
                self.fail(400, f"cannot decode the {content_type or 'protobuf'} body: {e}")
                return
            recorder.record(signal_name, "http", encoding or "none", message)
            if content_type == "application/json":
                self.reply(200, "application/json", b"{}")
            else:
                self.reply(
                    200, "application/x-protobuf", response_type().SerializeToString()
                )

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON-lines file to append to")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--max-lifetime", type=float, default=600.0)
    args = parser.parse_args()

    recorder = Recorder(args.out)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(recorder), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(recorder), server)
    grpc_port = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    if grpc_port == 0:
        print(f"otlp_sink: cannot listen on 127.0.0.1:{args.grpc_port}", file=sys.stderr)
        return 1
    server.start()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", args.http_port), make_http_handler(recorder)
    )
    httpd.daemon_threads = True
    http_thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    http_thread.start()

    print(f"READY grpc={grpc_port} http={httpd.server_address[1]}", flush=True)
    if not stop.wait(args.max_lifetime):
        print(
            f"otlp_sink: stopping after --max-lifetime {args.max_lifetime} s", file=sys.stderr
        )
    server.stop(grace=2).wait(5)
    httpd.shutdown()
    httpd.server_close()
    recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
