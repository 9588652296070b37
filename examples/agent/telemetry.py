"""OpenTelemetry set-up of the reference agent, and its ground-truth notebook.

* `setup_tracing` builds a TracerProvider (resource `service.name=support-agent`,
  `process.pid`, …) exporting OTLP over HTTP/protobuf or gRPC, plus a span processor that sets
  `thread.id` (the kernel's thread id, what runbom matches with its eBPF events) and
  `thread.name` on every span, which the SDK does not do by itself. With `thread_id=False`
  (agent.py --no-thread-id) the spans are left as the SDK makes them: no `thread.*`.
* `Recorder` notes, as the agent runs, every span it created and every action with an effect the
  kernel can see (file opens, connects, HTTP requests, execs), each with the span that was
  current when it happened. The harness turns these notes into the ground-truth JSON.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from scenarios import AGENT_NAME, AGENT_VERSION

# Which conversation the running code belongs to (set per thread / per asyncio task).
CONVERSATION: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "conversation", default=None)

PROTOCOLS = ("http/protobuf", "grpc", "none")


def hex_ids(ctx: trace.SpanContext) -> tuple[str, str]:
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


class Recorder:
    """Thread-safe notes of spans and kernel-visible actions, dumped as JSON at the end."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._span_conversation: dict[int, int | None] = {}
        self._span_thread: dict[int, int] = {}
        self.spans: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.orphans: list[dict[str, Any]] = []
        self.conversations: list[dict[str, Any]] = []

    # spans -------------------------------------------------------------------------------
    def span_started(self, span: Span) -> None:
        span_id = span.get_span_context().span_id
        with self._lock:
            self._span_conversation[span_id] = CONVERSATION.get()
            # The thread that started it, whether or not the span says so (thread.id).
            self._span_thread[span_id] = threading.get_native_id()

    def span_ended(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        assert ctx is not None  # always set on SDK spans
        trace_id, span_id = hex_ids(ctx)
        attrs = span.attributes or {}
        with self._lock:
            conversation = self._span_conversation.pop(ctx.span_id, None)
            thread_id = self._span_thread.pop(ctx.span_id, attrs.get("thread.id"))
            self.spans.append({
                "conversation": conversation,
                "trace_id": trace_id,
                "span_id": span_id,
                "parent_span_id": trace.format_span_id(span.parent.span_id)
                if span.parent else None,
                "name": span.name,
                "kind": span.kind.name,
                "pid": self.pid,
                "thread_id": thread_id,
                "start_ns": span.start_time,
                "end_ns": span.end_time,
                "status": span.status.status_code.name,
                "operation": attrs.get("gen_ai.operation.name"),
                "tool": attrs.get("gen_ai.tool.name"),
            })

    # actions -----------------------------------------------------------------------------
    def action(self, kind: str, *, start_ns: int | None = None, pid: int | None = None,
               thread_id: int | None = None, span: trace.Span | None = None,
               **fields: Any) -> dict[str, Any]:
        """Note an action under `span` (default: the current span); returns the mutable note."""
        ctx = (span or trace.get_current_span()).get_span_context()
        trace_id, span_id = hex_ids(ctx) if ctx.is_valid else (None, None)
        now = time.time_ns()
        entry = {
            "kind": kind,
            "conversation": CONVERSATION.get(),
            "pid": pid if pid is not None else self.pid,
            "thread_id": thread_id if thread_id is not None else threading.get_native_id(),
            "trace_id": trace_id,
            "span_id": span_id,
            "start_ns": start_ns if start_ns is not None else now,
            "end_ns": now,
            **fields,
        }
        with self._lock:
            self.actions.append(entry)
        return entry

    @contextmanager
    def timed(self, kind: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Note an action whose interval is the body of the `with` block."""
        start = time.time_ns()
        entry = self.action(kind, start_ns=start, **fields)
        try:
            yield entry
        except BaseException as e:
            entry["error"] = type(e).__name__
            raise
        finally:
            entry["end_ns"] = time.time_ns()

    def orphan(self, orphan: trace.Span, stitch_under: trace.Span) -> None:
        """Note a span that lost its parent context and the span it really ran inside."""
        o_trace, o_span = hex_ids(orphan.get_span_context())
        p_trace, p_span = hex_ids(stitch_under.get_span_context())
        with self._lock:
            self.orphans.append({
                "conversation": CONVERSATION.get(), "trace_id": o_trace, "span_id": o_span,
                "stitch_parent_trace_id": p_trace, "stitch_parent_span_id": p_span,
            })

    def conversation(self, **info: Any) -> None:
        with self._lock:
            self.conversations.append(info)

    def dump(self, path: Path, **extra: Any) -> None:
        with self._lock:
            doc = {"pid": self.pid, "executable": sys.executable, **extra,
                   "conversations": sorted(self.conversations, key=lambda c: c["index"]),
                   "spans": sorted(self.spans, key=lambda s: s["start_ns"]),
                   "actions": sorted(self.actions, key=lambda a: a["start_ns"]),
                   "orphans": self.orphans}
        path.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")


class ThreadAndRecordProcessor(SpanProcessor):
    """Sets `thread.id`/`thread.name` on every span (unless `thread_id` is False: plain SDK
    spans) and tells the recorder about it."""

    def __init__(self, recorder: Recorder, thread_id: bool = True) -> None:
        self._recorder = recorder
        self._thread_id = thread_id

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._thread_id:
            span.set_attribute("thread.id", threading.get_native_id())
            span.set_attribute("thread.name", threading.current_thread().name)
        self._recorder.span_started(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._recorder.span_ended(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def make_exporter(protocol: str, endpoint: str) -> SpanExporter | None:
    """The SDK's own OTLP span exporter for `protocol`, or None for "none"."""
    if protocol == "none":
        return None
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        url = endpoint.rstrip("/")
        return OTLPSpanExporter(endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces",
                                timeout=10)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        u = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        return GrpcExporter(endpoint=u.netloc, insecure=u.scheme != "https", timeout=10)
    raise ValueError(f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


class ExportTimeLog(SpanExporter):
    """Wraps an exporter and appends, per export call, when it was sent and which span ids it
    carried (JSON lines) — for measuring how soon after an application span reaches runbom its
    kernel children come out (RUNBOM_AGENT_EXPORT_LOG=FILE)."""

    def __init__(self, inner: SpanExporter, path: str) -> None:
        self._inner = inner
        self._path = path

    def export(self, spans):  # type: ignore[no-untyped-def]
        sent_ns = time.time_ns()
        result = self._inner.export(spans)
        line = json.dumps({
            "sent_ns": sent_ns,
            "done_ns": time.time_ns(),
            "span_ids": [hex_ids(s.context)[1] for s in spans],
        })
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def setup_tracing(protocol: str, endpoint: str, recorder: Recorder,
                  thread_id: bool = True) -> TracerProvider:
    """A TracerProvider for the agent; `shutdown_tracing` flushes it. `thread_id=False`: no
    `thread.id`/`thread.name` on the spans (the OpenTelemetry SDK's defaults)."""
    resource = Resource.create({
        "service.name": AGENT_NAME,
        "service.version": AGENT_VERSION,
        "process.pid": os.getpid(),
        "process.executable.path": sys.executable,
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": ".".join(map(str, sys.version_info[:3])),
    })
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(ThreadAndRecordProcessor(recorder, thread_id))
    exporter = make_exporter(protocol, endpoint)
    if exporter is not None:
        if log := os.environ.get("RUNBOM_AGENT_EXPORT_LOG"):
            exporter = ExportTimeLog(exporter, log)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def shutdown_tracing(provider: TracerProvider, timeout_s: float = 15.0) -> bool:
    """Export everything still queued (bounded), then shut the exporters down."""
    flushed = provider.force_flush(timeout_millis=int(timeout_s * 1000))
    provider.shutdown()
    return flushed
