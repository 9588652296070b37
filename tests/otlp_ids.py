"""Trace and span ids in OTLP over JSON: hex in OTLP/JSON, base64 in the protobuf JSON mapping
(what `google.protobuf.json_format` reads and writes). Shared by otlp_canon.py and
sdk_client.py."""

import base64

ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def convert_ids(node, convert):
    """Rewrites, in place, every string id (a value under one of ID_KEYS) of a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_KEYS and isinstance(value, str):
                node[key] = convert(value)
            else:
                convert_ids(value, convert)
    elif isinstance(node, list):
        for item in node:
            convert_ids(item, convert)


def hex_to_base64(node):
    """OTLP/JSON writes ids as hex; the protobuf JSON mapping (what `Parse` reads) as base64."""
    convert_ids(node, lambda value: base64.b64encode(bytes.fromhex(value)).decode())


def base64_to_hex(node):
    """The protobuf JSON mapping's base64 ids (what `MessageToDict` writes) as hex."""
    convert_ids(node, lambda value: base64.b64decode(value).hex())
