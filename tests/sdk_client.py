#!/usr/bin/env python3
"""Export GenAI-shaped telemetry with the real OpenTelemetry Python SDK to an OTLP receiver.

    sdk_client.py --protocol grpc|http/protobuf|http/json --endpoint HOST:PORT
                  [--signal traces|logs|metrics] [--gzip]
                  [--ca-file CA.pem [--client-cert CERT.pem --client-key KEY.pem]]
                  [--header NAME=VALUE ...]

`grpc` and `http/protobuf` use the SDK's own OTLP exporters. The SDK has no OTLP/JSON
exporter, so `http/json` encodes the same data with the SDK's encoder and posts it as
OTLP/JSON the way the Collector's `otlphttp` exporter (`encoding: json`) does: the protobuf
JSON mapping with integer enums and 64-bit integers as strings, but trace and span ids as
hex (OTLP/JSON's one departure from the mapping, which would use base64).

With `--ca-file`, the export goes over TLS (`https://HOST:PORT`), the server's certificate
checked against that CA; `--client-cert` and `--client-key` add a client certificate (mTLS).
`--header` adds a header (gRPC metadata) to every export, through the exporters' own
`headers` setting (e.g. `authorization=Bearer TOKEN`).

Prints what was sent as JSON on stdout and exits non-zero if the export failed:
- `request`: the export request the SDK's encoder makes of the data, protobuf, hex-encoded
  (what the receiver should have got, whatever the protocol);
- `resource`: the resource attributes set;
- `spans` (traces only): per span its name, hex ids, attributes, event names and links.
"""

import argparse
import gzip
import importlib
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from otlp_ids import base64_to_hex

RESOURCE = {
    "service.name": "runbom-interop",
    "service.version": "1.2.3",
    "deployment.environment.name": "test",
}


def make_spans():
    """An agent run: an earlier embedding call, then a chat call and a tool call linked to it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("runbom.interop", "0.1.0")

    with tracer.start_as_current_span("embeddings text-embedding-3-small") as embed:
        embed.set_attribute("gen_ai.operation.name", "embeddings")
        embed.set_attribute("gen_ai.request.model", "text-embedding-3-small")
        embed_context = embed.get_span_context()

    with tracer.start_as_current_span(
        "invoke_agent support", kind=SpanKind.INTERNAL
    ) as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "support")
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            links=[Link(embed_context, {"link.reason": "retrieval"})],
        ) as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-4o")
            chat.set_attribute("gen_ai.request.temperature", 0.2)
            chat.set_attribute("gen_ai.usage.input_tokens", 42)
            chat.set_attribute("gen_ai.usage.output_tokens", 7)
            chat.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            chat.set_attribute("server.port", 443)
            chat.add_event(
                "gen_ai.user.message", {"gen_ai.event.content": "What is the weather?"}
            )
            chat.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
        with tracer.start_as_current_span(
            "execute_tool get_weather", kind=SpanKind.INTERNAL
        ) as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "get_weather")
            tool.set_attribute("error.type", "timeout")
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def make_logs():
    """Two log records, one inside a span (so it carries trace and span ids)."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("runbom.interop", "0.1.0")
    tracer = TracerProvider(resource=Resource.create(RESOURCE)).get_tracer("runbom.interop")
    with tracer.start_as_current_span("chat gpt-4o"):
        logger.emit(
            body={"role": "user", "content": "What is the weather?"},
            severity_number=SeverityNumber.INFO,
            attributes={"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 42},
            event_name="gen_ai.client.inference.operation.details",
        )
    logger.emit(body="tool timed out", severity_number=SeverityNumber.WARN, severity_text="WARN")
    provider.shutdown()
    return list(memory.get_finished_logs())


def make_metrics():
    """A token-usage histogram, a request counter, an up-down counter and a gauge."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    meter = provider.get_meter("runbom.interop", "0.1.0")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    tokens.record(42, {"gen_ai.token.type": "input", "gen_ai.request.model": "gpt-4o"})
    tokens.record(7, {"gen_ai.token.type": "output", "gen_ai.request.model": "gpt-4o"})
    meter.create_counter("gen_ai.requests").add(3, {"gen_ai.provider.name": "openai"})
    meter.create_up_down_counter("gen_ai.inflight").add(-2)
    meter.create_gauge("gen_ai.temperature").set(0.2)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def read(path):
    with open(path, "rb") as file:
        return file.read()


def extra_headers(args):
    """`--header NAME=VALUE` options as a dict (names lower case, as gRPC metadata wants)."""
    return {name.strip().lower(): value for name, _, value in (h.partition("=") for h in args.header)}


def export_json(request, path, endpoint, use_gzip, tls):
    request = json_format.MessageToDict(request, use_integers_for_enums=True)
    base64_to_hex(request)
    body = json.dumps(request).encode()
    headers = {"Content-Type": "application/json", **extra_headers(tls)}
    if use_gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    scheme, context = "http", None
    if tls.ca_file:
        scheme, context = "https", ssl.create_default_context(cafile=tls.ca_file)
        if tls.client_cert:
            context.load_cert_chain(tls.client_cert, tls.client_key)
    post = urllib.request.Request(
        f"{scheme}://{endpoint}{path}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(post, timeout=10, context=context) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read()!r}", file=sys.stderr)
        return False
    if answer.get("partialSuccess"):
        print(f"partial success: {answer['partialSuccess']}", file=sys.stderr)
        return False
    return True


SIGNALS = {
    # signal: (make the data, encode it as an export request, URL path, exporter module)
    "traces": (make_spans, encode_spans, "/v1/traces", "trace_exporter", "OTLPSpanExporter"),
    "logs": (make_logs, encode_logs, "/v1/logs", "_log_exporter", "OTLPLogExporter"),
    "metrics": (make_metrics, encode_metrics, "/v1/metrics", "metric_exporter", "OTLPMetricExporter"),
}


def export(protocol, endpoint, use_gzip, signal, data, tls):
    _, encode, path, module, exporter_class = SIGNALS[signal]
    if protocol == "http/json":
        return export_json(encode(data), path, endpoint, use_gzip, tls)
    if protocol == "grpc":
        import grpc
        from grpc import Compression

        secure = {"endpoint": endpoint, "insecure": True}
        if tls.ca_file:
            secure = {
                "endpoint": f"https://{endpoint}",
                "credentials": grpc.ssl_channel_credentials(
                    root_certificates=read(tls.ca_file),
                    private_key=read(tls.client_key) if tls.client_key else None,
                    certificate_chain=read(tls.client_cert) if tls.client_cert else None,
                ),
            }
        exporter = getattr(
            importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{module}"),
            exporter_class,
        )(
            **secure,
            timeout=10,
            compression=Compression.Gzip if use_gzip else None,
            headers=extra_headers(tls) or None,
        )
    else:
        import requests
        from opentelemetry.exporter.otlp.proto.http import Compression

        secure = {"endpoint": f"http://{endpoint}{path}"}
        if tls.ca_file:
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA file
            # unless the session ignores the environment.
            session = requests.Session()
            session.trust_env = False
            secure = {
                "endpoint": f"https://{endpoint}{path}",
                "certificate_file": tls.ca_file,
                "session": session,
            }
            if tls.client_cert:
                secure["client_certificate_file"] = tls.client_cert
                secure["client_key_file"] = tls.client_key
        exporter = getattr(
            importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module}"),
            exporter_class,
        )(
            **secure,
            timeout=10,
            compression=Compression.Gzip if use_gzip else Compression.NoCompression,
            headers=extra_headers(tls) or None,
        )
    result = exporter.export(data)
    exporter.shutdown()
    return result.name == "SUCCESS"


def describe(spans):
    def ids(context):
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

    out = []
    for span in spans:
        trace_id, span_id = ids(span.context)
        out.append(
            {
                "name": span.name,
                "trace_id": trace_id,
                "span_id": span_id,
                "parent_span_id": trace.format_span_id(span.parent.span_id)
                if span.parent
                else "",
                "attributes": {k: v if not isinstance(v, tuple) else list(v) for k, v in span.attributes.items()},
                "events": [event.name for event in span.events],
                "links": [
                    {"trace_id": ids(link.context)[0], "span_id": ids(link.context)[1]}
                    for link in span.links
                ],
            }
        )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf", "http/json"], required=True)
    parser.add_argument("--endpoint", required=True, help="HOST:PORT of the receiver")
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="traces")
    parser.add_argument("--gzip", action="store_true", help="gzip the request body")
    parser.add_argument("--ca-file", help="export over TLS, trusting this CA (PEM)")
    parser.add_argument("--client-cert", help="client certificate (PEM) for mTLS; needs --ca-file")
    parser.add_argument("--client-key", help="the client certificate's private key (PEM)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="a header sent with every export (repeatable)")
    args = parser.parse_args()
    if (args.client_cert is None) != (args.client_key is None) or (
        args.client_cert and not args.ca_file
    ):
        parser.error("--client-cert and --client-key go together, and with --ca-file")

    make, encode, *_ = SIGNALS[args.signal]
    data = make()
    if not export(args.protocol, args.endpoint, args.gzip, args.signal, data, args):
        print(f"{args.signal} export over {args.protocol} to {args.endpoint} failed", file=sys.stderr)
        return 1
    sent = {
        "resource": RESOURCE,
        "request": encode(data).SerializeToString().hex(),
        "pid": os.getpid(),
    }
    if args.signal == "traces":
        sent["spans"] = describe(data)
    json.dump(sent, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
