#!/usr/bin/env python3
"""A local user forging runbom's evidence with the real OpenTelemetry Python SDK.

    forge_client.py --protocol grpc|http --endpoint HOST:PORT --case alert|kernel|pid
                    [--pid PID] [--seconds S]

- `alert`: a log record with `event.name=aibom.drift` (as attribute and as the record's
  event name), scope `runbom.aibom` and the alert's `aibom.*` attributes, as if runbom had found
  drift;
- `kernel`: spans shaped like runbom's kernel spans (scope `runbom.kernel`, `runbom.event`,
  `runbom.correlation.method`, `aibom.drift`) claiming a `file.open` of /etc/shadow and a
  `net.connect`;
- `pid`: an application span lasting `--seconds`, whose resource claims `process.pid` = `--pid`
  (another user's process), so that a correlator trusting it would place that process's kernel
  events under this trace.

Exports with the SDK's own OTLP exporters and prints JSON on stdout: `trace_id` (hex) of what
was sent and this process's `pid`. Exits non-zero if the export failed.
"""

import argparse
import json
import os
import sys
import time

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

FORGED_TRACE = {"trace_id": None}


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True),
                OTLPLogExporter(endpoint=f"http://{endpoint}", insecure=True))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (OTLPSpanExporter(endpoint=f"http://{endpoint}/v1/traces"),
            OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs"))


class Checked:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.ok = True

    def export(self, batch):
        result = self.inner.export(batch)
        self.ok &= result.name == "SUCCESS"
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def forge_alert(logs, resource):
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = provider.get_logger("runbom.aibom", "0.1.0")
    tracer = TracerProvider(resource=resource).get_tracer("forger")
    with tracer.start_as_current_span("POST") as span:
        FORGED_TRACE["trace_id"] = f"{span.get_span_context().trace_id:032x}"
        logger.emit(
            body="DRIFT undeclared_endpoint: forged finding",
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            event_name="aibom.drift",
            attributes={
                "event.name": "aibom.drift",
                "runbom.instance.id": "0123456789abcdef0123456789abcdef",
                "aibom.drift.kinds": ["undeclared_endpoint"],
                "aibom.drift.reason": "forged: the victim agent exfiltrated data",
                "aibom.agent.ref": "agent:support-agent",
                "aibom.chain": ["forged step"],
            },
        )
    provider.shutdown()


def forge_kernel(spans, resource):
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("runbom.kernel", "0.1.0")
    with tracer.start_as_current_span("invoke_agent support-agent") as root:
        FORGED_TRACE["trace_id"] = f"{root.get_span_context().trace_id:032x}"
        with tracer.start_as_current_span("file.open /etc/shadow", attributes={
            "runbom.event": "file.open",
            "file.path": "/etc/shadow",
            "runbom.file.flags": "O_RDONLY",
            "runbom.correlation.method": "thread",
            "runbom.correlation.confidence": "high",
            "aibom.drift": True,
            "aibom.drift.kinds": ["undeclared_file"],
        }):
            pass
        with tracer.start_as_current_span("net.connect 203.0.113.7:443", kind=SpanKind.CLIENT,
                                          attributes={
                                              "runbom.event": "net.connect",
                                              "server.address": "203.0.113.7",
                                              "server.port": 443,
                                          }):
            pass
    provider.shutdown()


def forge_pid(spans, resource, seconds):
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("forger")
    with tracer.start_as_current_span("invoke_agent forged") as root:
        FORGED_TRACE["trace_id"] = f"{root.get_span_context().trace_id:032x}"
        time.sleep(seconds)
    provider.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--case", choices=["alert", "kernel", "pid"], required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    attrs = {"service.name": f"forger-{a.case}", "aibom.agent.ref": "agent:support-agent"}
    if a.pid is not None:
        attrs["process.pid"] = a.pid
    resource = Resource.create(attrs)
    span_exporter, log_exporter = exporters(a.protocol, a.endpoint)
    spans, logs = Checked(span_exporter), Checked(log_exporter)
    if a.case == "alert":
        forge_alert(logs, resource)
    elif a.case == "kernel":
        forge_kernel(spans, resource)
    else:
        forge_pid(spans, resource, a.seconds)
    print(json.dumps({"trace_id": FORGED_TRACE["trace_id"], "pid": os.getpid()}))
    return 0 if spans.ok and logs.ok else 1


if __name__ == "__main__":
    sys.exit(main())
