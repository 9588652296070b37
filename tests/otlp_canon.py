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
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from otlp_ids import base64_to_hex, hex_to_base64

REQUEST = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}

def to_dict(message):
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    base64_to_hex(out)
    return out


def json_lines(path):
    """The JSON value of each non-empty line of a file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


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
        return [
            json_format.ParseDict(record["request"], request_type())
            for record in json_lines(path)
            if record["signal"] == signal and (not transport or record["transport"] == transport)
        ]
    if kind == "otlpjson":
        out = []
        for data in json_lines(rest):
            hex_to_base64(data)
            out.append(json_format.ParseDict(data, request_type(), ignore_unknown_fields=True))
        return out
    raise SystemExit(f"otlp_canon: unknown source kind {kind!r} in {source!r}")


def items(requests, scopes_of, items_of):
    """Each span or log record of `requests` with its resource and scope (as dicts) and the
    resource and scope messages."""
    for request in requests:
        for resources in getattr(request, scopes_of[0]):
            resource = to_dict(resources.resource)
            for scopes in getattr(resources, scopes_of[1]):
                scope = to_dict(scopes.scope)
                for item in getattr(scopes, items_of):
                    yield item, resources, resource, scopes, scope


def canon_traces(requests, result):
    spans = items(requests, ("resource_spans", "scope_spans"), "spans")
    for span, resource_spans, resource, scope_spans, scope in spans:
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
    records = items(requests, ("resource_logs", "scope_logs"), "log_records")
    for record, _, resource, _, scope in records:
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
