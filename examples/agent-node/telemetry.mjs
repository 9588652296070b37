// OpenTelemetry set-up of the Node reference agent, and its ground-truth notebook: the same
// notes, in the same JSON, as the Python agent's telemetry.py (examples/agent/), so that
// examples/agent/run.py and groundtruth.py build the ground truth of either agent.
//
// * setupTracing: a NodeTracerProvider (resource service.name=support-agent, process.pid, …;
//   AsyncLocalStorage context, W3C propagation) exporting OTLP over HTTP/protobuf or gRPC with
//   the SDK's own exporters, plus a span processor that sets `thread.id` (the kernel thread id,
//   what runbom matches its eBPF events with) and `thread.name` on every span, which the SDK
//   does not do by itself; `threadId: false` leaves them off (plain SDK spans).
// * Recorder: notes every span the agent made and every action with an effect the kernel can
//   see (file opens, connects, HTTP requests, execs) with the span current when it happened.

import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync, readlinkSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

import { AGENT_NAME, AGENT_VERSION } from "./scenarios.mjs";

export const PROTOCOLS = ["http/protobuf", "grpc", "none"];

// Which conversation the running code belongs to (each conversation runs inside its own store).
export const CONVERSATION = new AsyncLocalStorage();

/** Unix time (ms, fractional) of the performance clock's zero, measured here: at the moment
 * Date.now() turns to a new millisecond, Unix time is that millisecond exactly. Of five such
 * turns the one read between the closest pair of performance-clock readings is kept (least
 * disturbed by preemption). `performance.timeOrigin` is not used: Node reads it apart from the
 * clock it pairs with, and on a loaded machine it was off by 8-11 ms, which moved every span
 * and note of a run against the kernel's clock. */
function measuredOriginMs() {
  let best = { width: Infinity, origin: performance.timeOrigin };
  let lastDate = Date.now();
  let lastBefore = performance.now();
  for (let turns = 0; turns < 5;) {
    const before = performance.now();
    const date = Date.now();
    const after = performance.now();
    if (date !== lastDate) {
      // The turn happened between the previous Date.now() and this one.
      const width = after - lastBefore;
      if (width < best.width) best = { width, origin: date - (lastBefore + after) / 2 };
      turns += 1;
    }
    lastDate = date;
    lastBefore = before;
  }
  return best.origin;
}

const ORIGIN_NS = BigInt(Math.round(measuredOriginMs() * 1e6));

/** Unix time in ns (BigInt), within microseconds of the kernel's real-time clock. */
export function nowNs() {
  return ORIGIN_NS + BigInt(Math.round(performance.now() * 1e6));
}

let preciseClock = true;

/** Leaves span times to the SDK: it stamps a span's start with Date.now() (whole ms) and adds
 * the duration measured on the performance clock, so each span is shifted by its own 0-1 ms. */
export function useSdkClock() {
  preciseClock = false;
}

/** The start or end time to give a span: now on the performance clock (sub-µs, within µs of
 * the kernel's real-time clock), or undefined for the SDK's own (see useSdkClock). */
export function spanTime() {
  if (!preciseClock) return undefined;
  const ns = nowNs();
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

/** The kernel thread id of the calling JavaScript thread (the main thread's is the pid). */
export function nativeThreadId() {
  return Number(readlinkSync("/proc/thread-self").split("/").pop());
}

const hrNs = ([s, ns]) => BigInt(s) * 1_000_000_000n + BigInt(ns);
const KINDS = { [SpanKind.INTERNAL]: "INTERNAL", [SpanKind.SERVER]: "SERVER",
  [SpanKind.CLIENT]: "CLIENT", [SpanKind.PRODUCER]: "PRODUCER", [SpanKind.CONSUMER]: "CONSUMER" };
const STATUS = { [SpanStatusCode.UNSET]: "UNSET", [SpanStatusCode.OK]: "OK",
  [SpanStatusCode.ERROR]: "ERROR" };

export class Recorder {
  constructor() {
    this.pid = process.pid;
    this.spanInfo = new Map(); // span id -> {conversation, thread}
    this.spans = [];
    this.actions = [];
    this.orphans = [];
    this.conversations = [];
  }

  spanStarted(span) {
    this.spanInfo.set(span.spanContext().spanId,
      { conversation: CONVERSATION.getStore() ?? null, thread: nativeThreadId() });
  }

  spanEnded(span) {
    const ctx = span.spanContext();
    const info = this.spanInfo.get(ctx.spanId) ?? {};
    this.spanInfo.delete(ctx.spanId);
    const attrs = span.attributes ?? {};
    this.spans.push({
      conversation: info.conversation ?? null,
      trace_id: ctx.traceId,
      span_id: ctx.spanId,
      parent_span_id: span.parentSpanContext?.spanId ?? null,
      name: span.name,
      kind: KINDS[span.kind],
      pid: this.pid,
      thread_id: info.thread ?? attrs["thread.id"],
      start_ns: hrNs(span.startTime),
      end_ns: hrNs(span.endTime),
      status: STATUS[span.status.code],
      operation: attrs["gen_ai.operation.name"] ?? null,
      tool: attrs["gen_ai.tool.name"] ?? null,
    });
  }

  /** Notes an action under `span` (default: the active span); returns the mutable note. */
  action(kind, fields = {}, span = trace.getActiveSpan()) {
    const ctx = span?.spanContext();
    const now = nowNs();
    const entry = {
      kind,
      conversation: CONVERSATION.getStore() ?? null,
      pid: this.pid,
      thread_id: nativeThreadId(),
      trace_id: ctx?.traceId ?? null,
      span_id: ctx?.spanId ?? null,
      start_ns: now,
      end_ns: now,
      ...fields,
    };
    this.actions.push(entry);
    return entry;
  }

  /** Notes a span that lost its parent context and the span it really ran inside. */
  orphan(orphan, stitchUnder) {
    const o = orphan.spanContext();
    const p = stitchUnder.spanContext();
    this.orphans.push({ conversation: CONVERSATION.getStore() ?? null, trace_id: o.traceId,
      span_id: o.spanId, stitch_parent_trace_id: p.traceId, stitch_parent_span_id: p.spanId });
  }

  conversation(info) {
    this.conversations.push(info);
  }

  /** What was noted, for another thread's recorder to merge (worker threads). */
  notes() {
    return { spans: this.spans, actions: this.actions, orphans: this.orphans,
      conversations: this.conversations };
  }

  merge(notes) {
    for (const key of ["spans", "actions", "orphans", "conversations"]) this[key].push(...notes[key]);
  }

  dump(path, extra) {
    const byStart = (a, b) => (a.start_ns < b.start_ns ? -1 : a.start_ns > b.start_ns ? 1 : 0);
    const doc = { pid: this.pid, executable: process.execPath, ...extra,
      conversations: [...this.conversations].sort((a, b) => a.index - b.index),
      spans: [...this.spans].sort(byStart), actions: [...this.actions].sort(byStart),
      orphans: this.orphans };
    // Unix ns do not fit a double: BigInts are written as plain JSON integers.
    const text = JSON.stringify(doc, (_, v) => (typeof v === "bigint" ? `${v}#ns` : v), 1)
      .replace(/"(-?\d+)#ns"/g, "$1");
    writeFileSync(path, text);
  }
}

/** Sets thread.id/thread.name on every span (unless threadId is false) and tells the recorder. */
class ThreadAndRecordProcessor {
  constructor(recorder, threadId) {
    this.recorder = recorder;
    this.threadId = threadId;
  }

  onStart(span) {
    if (this.threadId) {
      const tid = nativeThreadId();
      span.setAttribute("thread.id", tid);
      span.setAttribute("thread.name", tid === process.pid ? "main" : `thread-${tid}`);
    }
    this.recorder.spanStarted(span);
  }

  onEnd(span) {
    this.recorder.spanEnded(span);
  }

  forceFlush() {
    return Promise.resolve();
  }

  shutdown() {
    return Promise.resolve();
  }
}

/** The SDK's own OTLP span exporter for `protocol`, or null for "none". */
export function makeExporter(protocol, endpoint) {
  if (protocol === "none") return null;
  const url = endpoint.replace(/\/+$/, "");
  if (protocol === "http/protobuf") {
    return new ProtoExporter({ url: url.endsWith("/v1/traces") ? url : `${url}/v1/traces`,
      timeoutMillis: 10000 });
  }
  if (protocol === "grpc") return new GrpcExporter({ url, timeoutMillis: 10000 });
  throw new Error(`unknown OTLP protocol ${protocol}; use one of ${PROTOCOLS.join(", ")}`);
}

/** Wraps an exporter and appends, per export call, when it was sent and which span ids it
 * carried (JSON lines; RUNBOM_AGENT_EXPORT_LOG=FILE), as the Python agent does. */
class ExportTimeLog {
  constructor(inner, path) {
    this.inner = inner;
    this.path = path;
  }

  export(spans, done) {
    const sent = nowNs();
    this.inner.export(spans, (result) => {
      appendFileSync(this.path, `${JSON.stringify({ sent_ns: `${sent}#ns`, done_ns: `${nowNs()}#ns`,
        span_ids: spans.map((s) => s.spanContext().spanId) }).replace(/"(-?\d+)#ns"/g, "$1")}\n`);
      done(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

/** A registered NodeTracerProvider for the agent; shutdownTracing flushes it. */
export function setupTracing(protocol, endpoint, recorder, threadId = true) {
  const resource = resourceFromAttributes({
    "service.name": AGENT_NAME,
    "service.version": AGENT_VERSION,
    "process.pid": process.pid,
    "process.executable.path": process.execPath,
    "process.runtime.name": "nodejs",
    "process.runtime.version": process.versions.node,
  });
  const spanProcessors = [new ThreadAndRecordProcessor(recorder, threadId)];
  let exporter = makeExporter(protocol, endpoint);
  if (exporter !== null) {
    if (process.env.RUNBOM_AGENT_EXPORT_LOG) {
      exporter = new ExportTimeLog(exporter, process.env.RUNBOM_AGENT_EXPORT_LOG);
    }
    spanProcessors.push(new BatchSpanProcessor(exporter));
  }
  const provider = new NodeTracerProvider({ resource, spanProcessors });
  provider.register();
  return provider;
}

/** Exports everything still queued (bounded), then shuts the exporters down; true if flushed. */
export async function shutdownTracing(provider, timeoutMs = 15000) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
  try {
    return await Promise.race([provider.forceFlush().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.race([provider.shutdown().catch(() => {}),
      new Promise((resolve) => { setTimeout(resolve, 2000).unref(); })]);
  }
}
