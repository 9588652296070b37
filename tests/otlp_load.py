#!/usr/bin/env python3
"""Sends OTLP trace export requests as fast as a receiver takes them and reports every answer.

    otlp_load.py (--grpc HOST:PORT | --http HOST:PORT) [--threads N] [--duration S]
                 [--requests N] [--spans N] [--attr-bytes N] [--unique] [--acked FILE]
                 [--first-malformed]

Each request holds --spans GenAI-shaped spans (gen_ai.* attributes, one event), encoded once
with the protocol's own protobuf classes; gRPC requests go through grpcio as raw bytes,
HTTP requests are `POST /v1/traces` (`application/x-protobuf`) on a keep-alive connection per
thread. --unique gives each request its own trace id (patched into the encoded bytes) and
--acked FILE lists, one per line, the trace ids of the requests the receiver answered OK.
--first-malformed sends, on each thread's connection, one undecodable request before the rest.

Stops after --duration seconds or --requests requests, whichever comes first, and prints a JSON
summary on stdout:

    {"sent": N, "ok": N, "ok_spans": N,
     "codes": {"OK": N, "UNAVAILABLE": N, "HTTP 503": N, "CONNECTION": N, ...},
     "retry_info": N,            # refusals that carried a retry delay (RetryInfo / Retry-After)
     "retry_after_s": [..],      # the distinct delays seen, in seconds
     "malformed_codes": [..],    # answers to --first-malformed
     "errors": [..],             # a few error messages, for the reader
     "latency_ms": {"p50": .., "p99": .., "max": ..}}   # of all answered requests
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TRACE_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Patched per request with --unique; unlikely to occur anywhere else in an encoded request.
TEMPLATE_TRACE_ID = bytes.fromhex("5ca1ab1e0ddba11ca5cadeda7ab1e5ee")


def kv(key, value):
    if isinstance(value, bool):
        v = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        v = common_pb2.AnyValue(double_value=value)
    else:
        v = common_pb2.AnyValue(string_value=value)
    return common_pb2.KeyValue(key=key, value=v)


def build_request(spans, attr_bytes):
    now = time.time_ns()
    out = []
    for i in range(spans):
        attributes = [
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.request.temperature", 0.2),
            kv("gen_ai.usage.input_tokens", 1000 + i),
            kv("gen_ai.usage.output_tokens", 200 + i),
            kv("gen_ai.response.id", f"chatcmpl-{i:08d}"),
            kv("server.address", "api.openai.com"),
        ]
        if attr_bytes:
            attributes.append(kv("gen_ai.prompt", "x" * attr_bytes))
        out.append(
            trace_pb2.Span(
                trace_id=TEMPLATE_TRACE_ID,
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if i == 0 else (1).to_bytes(8, "big"),
                name="chat gpt-4o",
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1_000_000,
                attributes=attributes,
                events=[
                    trace_pb2.Span.Event(
                        time_unix_nano=now + 500_000,
                        name="gen_ai.choice",
                        attributes=[kv("index", 0), kv("finish_reason", "stop")],
                    )
                ],
            )
        )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[kv("service.name", "otlp-load"), kv("host.name", "bench")]
                ),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="otlp_load", version="1"),
                        spans=out,
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


class Stats:
    def __init__(self, budget):
        self.lock = threading.Lock()
        self.budget = budget  # requests left to send
        self.sent = 0
        self.ok = 0
        self.codes = {}
        self.retry_info = 0
        self.retry_after = set()
        self.malformed_codes = []
        self.errors = []
        self.latencies = []
        self.acked = []

    def take(self):
        """Claims one request of the budget; False once it is spent."""
        with self.lock:
            if self.budget <= 0:
                return False
            self.budget -= 1
            return True

    def record(self, code, latency, trace_id=None, retry_after=None, error=None):
        with self.lock:
            self.sent += 1
            self.codes[code] = self.codes.get(code, 0) + 1
            if latency is not None:
                self.latencies.append(latency)
            if code in ("OK", "HTTP 200"):
                self.ok += 1
                if trace_id is not None:
                    self.acked.append(trace_id.hex())
            if retry_after is not None:
                self.retry_info += 1
                self.retry_after.add(retry_after)
            if error and len(self.errors) < 5 and error not in self.errors:
                self.errors.append(error)


def grpc_retry_delay(error):
    """The retry delay an UNAVAILABLE answer carried, from either place a server may put it."""
    for key, value in error.trailing_metadata() or ():
        if key == "google.rpc.retryinfo-bin":
            info = error_details_pb2.RetryInfo.FromString(value)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def run_grpc(args, payload, stats, stop):
    channel = grpc.insecure_channel(args.grpc, options=[("grpc.use_local_subchannel_pool", 1)])
    call = channel.unary_unary(TRACE_PATH)  # bytes in, bytes out
    if args.first_malformed:
        try:
            call(b"\xff\xff\xff\xff", timeout=10)
            stats.malformed_codes.append("OK")
        except grpc.RpcError as e:
            stats.malformed_codes.append(e.code().name)
    while not stop.is_set() and stats.take():
        trace_id, body = next_payload(args, payload)
        start = time.perf_counter()
        try:
            call(body, timeout=30)
            stats.record("OK", time.perf_counter() - start, trace_id)
        except grpc.RpcError as e:
            latency = time.perf_counter() - start
            stats.record(e.code().name, latency, retry_after=grpc_retry_delay(e), error=e.details())
            if e.code() == grpc.StatusCode.UNAVAILABLE and args.pause_on_refusal:
                time.sleep(args.pause_on_refusal)
    channel.close()


def run_http(args, payload, stats, stop):
    host, port = args.http.rsplit(":", 1)
    conn = None

    def post(body):
        nonlocal conn
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(
            "POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"}
        )
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheader("Retry-After"), data

    if args.first_malformed:
        try:
            status, _, _ = post(b"\xff\xff\xff\xff")
            stats.malformed_codes.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as e:
            stats.malformed_codes.append(f"CONNECTION {e}")
            conn = None
    while not stop.is_set() and stats.take():
        trace_id, body = next_payload(args, payload)
        start = time.perf_counter()
        try:
            status, retry_after, data = post(body)
        except (OSError, http.client.HTTPException) as e:
            stats.record("CONNECTION", None, error=str(e))
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
            continue
        latency = time.perf_counter() - start
        delay = float(retry_after) if retry_after is not None else None
        error = None if status == 200 else data[:200].decode("utf-8", "replace")
        stats.record(f"HTTP {status}", latency, trace_id, retry_after=delay, error=error)
        if status == 503 and args.pause_on_refusal:
            time.sleep(args.pause_on_refusal)
    if conn is not None:
        conn.close()


def next_payload(args, payload):
    if not args.unique:
        return None, payload
    trace_id = os.urandom(16)
    return trace_id, payload.replace(TEMPLATE_TRACE_ID, trace_id)


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[index] * 1000, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--grpc", metavar="HOST:PORT")
    target.add_argument("--http", metavar="HOST:PORT")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=0, help="stop after this many (0: no limit)")
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--attr-bytes", type=int, default=0, help="add a gen_ai.prompt of N bytes")
    parser.add_argument("--unique", action="store_true")
    parser.add_argument("--acked", metavar="FILE")
    parser.add_argument("--first-malformed", action="store_true")
    parser.add_argument(
        "--pause-on-refusal", type=float, default=0.0, help="seconds to wait after a refusal"
    )
    args = parser.parse_args()

    payload = build_request(args.spans, args.attr_bytes)
    stats = Stats(args.requests or float("inf"))
    stop = threading.Event()
    worker = run_grpc if args.grpc else run_http
    threads = [
        threading.Thread(target=worker, args=(args, payload, stats, stop), daemon=True)
        for _ in range(args.threads)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    deadline = started + args.duration
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=40)
    latencies = sorted(stats.latencies)
    summary = {
        "sent": stats.sent,
        "ok": stats.ok,
        "ok_spans": stats.ok * args.spans,
        "request_bytes": len(payload),
        "codes": stats.codes,
        "retry_info": stats.retry_info,
        "retry_after_s": sorted(stats.retry_after),
        "malformed_codes": stats.malformed_codes,
        "errors": stats.errors,
        "elapsed_s": round(time.monotonic() - started, 3),
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": percentile(latencies, 1.0),
        },
    }
    if args.acked:
        with open(args.acked, "w", encoding="utf-8") as f:
            f.writelines(f"{t}\n" for t in stats.acked)
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
