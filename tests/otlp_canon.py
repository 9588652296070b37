#!/usr/bin/env python3
"""Reduces OTLP traces or logs from any of the project's test sources to one comparable form.

    otlp_canon.py --signal traces|logs [--counts-only] SOURCE...

Each SOURCE is one of
  * `sent:FILE`    what `sdk_client.py` printed (its `request`: the SDK encoder's protobuf, hex);
  * `sink:FILE[:grpc|http]`  the JSON lines `otlp_sink.py` recorded (optionally one transport);
  * `otlpjson:FILE` OTLP/JSON lines (runbom's `file` exporter: hex ids, camelCase names).

Every request is parsed into the protocol's own protobuf classes (opentelemetry-proto), so the
three encodings meet in one model, and printed as JSON on stdout:

    {"requests": N,
     "spans": {"<span id hex>": {span fields..., "resource": ..., "scope": ...,
                                 "resource_schema_url": ..., "scope_schema_url": ...}},
     "logs": [ {log record fields..., "resource": ..., "scope": ...}, ... ]}   # sorted

Field names are the proto names; trace and span ids (also in links) are lowercase hex; fields at
their default value are left out (protobuf's JSON mapping), so two sources agree exactly when
they carry the same data. A span id seen twice is reported in `duplicate_span_ids`.
`trace_span_counts` maps every trace id to its number of spans; with --counts-only it is all
that is printed (for load tests, whose requests repeat span ids).
"""

import argparse
import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

REQUEST = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def hex_to_base64(node):
    """OTLP/JSON writes ids as hex; the protobuf JSON mapping (what `Parse` reads) as base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_KEYS and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                hex_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            hex_to_base64(item)


def base64_to_hex(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                base64_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            base64_to_hex(item)


def to_dict(message):
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    base64_to_hex(out)
    return out


def read_requests(source, signal):
    kind, _, rest = source.partition(":")
    request_type = REQUEST[signal]
    if kind == "sent":
        with open(rest, encoding="utf-8") as f:
            sent = json.load(f)
        message = request_type()
        message.ParseFromString(bytes.fromhex(sent["request"]))
        return [message]
    if kind == "sink":
        path, _, transport = rest.partition(":")
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                record = json.loads(line)
                if record["signal"] != signal or (transport and record["transport"] != transport):
                    continue
                out.append(json_format.ParseDict(record["request"], request_type()))
        return out
    if kind == "otlpjson":
        out = []
        with open(rest, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                data = json.loads(line)
                hex_to_base64(data)
                out.append(json_format.ParseDict(data, request_type(), ignore_unknown_fields=True))
        return out
    raise SystemExit(f"otlp_canon: unknown source kind {kind!r} in {source!r}")


def canon_traces(requests, result):
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = to_dict(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                scope = to_dict(scope_spans.scope)
                for span in scope_spans.spans:
                    entry = to_dict(span)
                    entry["resource"] = resource
                    entry["resource_schema_url"] = resource_spans.schema_url
                    entry["scope"] = scope
                    entry["scope_schema_url"] = scope_spans.schema_url
                    trace_id = span.trace_id.hex()
                    counts = result["trace_span_counts"]
                    counts[trace_id] = counts.get(trace_id, 0) + 1
                    if result["counts_only"]:
                        continue
                    span_id = span.span_id.hex()
                    if span_id in result["spans"]:
                        result["duplicate_span_ids"].append(span_id)
                    result["spans"][span_id] = entry


def canon_logs(requests, result):
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = to_dict(resource_logs.resource)
            for scope_logs in resource_logs.scope_logs:
                scope = to_dict(scope_logs.scope)
                for record in scope_logs.log_records:
                    entry = to_dict(record)
                    entry["resource"] = resource
                    entry["scope"] = scope
                    result["logs"].append(entry)
    result["logs"].sort(key=lambda e: json.dumps(e, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=sorted(REQUEST), required=True)
    parser.add_argument("--counts-only", action="store_true")
    parser.add_argument("sources", nargs="+")
    args = parser.parse_args()
    result = {
        "requests": 0,
        "spans": {},
        "logs": [],
        "duplicate_span_ids": [],
        "trace_span_counts": {},
        "counts_only": args.counts_only,
    }
    for source in args.sources:
        requests = read_requests(source, args.signal)
        result["requests"] += len(requests)
        if args.signal == "traces":
            canon_traces(requests, result)
        else:
            canon_logs(requests, result)
    if args.counts_only:
        result = {"requests": result["requests"], "trace_span_counts": result["trace_span_counts"]}
    json.dump(result, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
