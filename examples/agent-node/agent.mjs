#!/usr/bin/env node
// runbom's reference AI agent, written for Node: the tool-calling support agent of
// examples/agent/ with the OpenTelemetry JS SDK (GenAI semantic conventions, OTLP export) and the
// `openai` npm package.
//
//   OPENAI_API_KEY=sk-… NODE_EXTRA_CA_CERTS=cert.pem node agent.mjs
//       [--mode sequential|threads|asyncio] [--scenario benign|injected] [--llm-url URL]
//       [--ticketing-url URL] [--customers-url URL] [--data-dir DIR] [--model M]
//       [--otlp-endpoint URL] [--otlp-protocol http/protobuf|grpc|none]
//       [--record FILE] [--no-content] [--no-thread-id] [--sdk-clock] [--timeout S]
//
// Modes: `sequential` runs one conversation; `threads` two at once, each on a worker thread;
// `asyncio` two at once as async functions on the one event-loop thread (the second always
// benign). It needs the stub LLM and the services
// running (examples/agent/run.py --agent node starts everything). The API key comes from
// OPENAI_API_KEY and is never printed; the LLM's certificate is trusted the way Node
// applications trust a private CA, NODE_EXTRA_CA_CERTS.
//
// Spans carry `thread.id` (--no-thread-id: not) and are stamped on the performance clock, to the
// sub-µs (--sdk-clock: as the OpenTelemetry JS SDK stamps them by itself, start at Date.now(),
// whole milliseconds, so a span's interval is off by up to 1 ms, more than a synchronous tool
// call lasts; runbom places a syscall by the span interval that contains it).
//
// Prints one line per conversation (`conversation N ok|failed: …`); with --record, writes the
// ground-truth notes (spans and kernel-visible actions) as JSON, in the Python agent's format.
// Exits 0 when every conversation finished, 1 otherwise, 2 on a usage error.

import { realpathSync } from "node:fs";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";

import { Agent, tracerOf } from "./conversation.mjs";
import { MODEL, MODES, SCENARIOS, conversations } from "./scenarios.mjs";
import { CONVERSATION, PROTOCOLS, Recorder, nowNs, setupTracing, shutdownTracing,
  useSdkClock } from "./telemetry.mjs";
import { noteFetchConnects } from "./transport.mjs";

const HOST = "127.0.0.1";
const USAGE = 2;

function usage(message) {
  process.stderr.write(`agent: ${message}\n`);
  process.exit(USAGE);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({ options: {
      mode: { type: "string", default: "sequential" },
      scenario: { type: "string", default: "benign" },
      "llm-url": { type: "string", default: `https://${HOST}:18443/v1` },
      "ticketing-url": { type: "string", default: `http://${HOST}:18080/api` },
      "customers-url": { type: "string", default: `http://${HOST}:18081` },
      "data-dir": { type: "string", default: "/tmp/runbom-agent/data" },
      model: { type: "string", default: MODEL },
      "otlp-endpoint": { type: "string", default: process.env.OTEL_EXPORTER_OTLP_ENDPOINT },
      "otlp-protocol": { type: "string",
        default: process.env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf" },
      record: { type: "string" },
      "no-content": { type: "boolean", default: false },
      "no-thread-id": { type: "boolean", default: false },
      "sdk-clock": { type: "boolean", default: false },
      timeout: { type: "string", default: "60" },
    } }));
  } catch (e) {
    usage(e.message);
  }
  if (!MODES.includes(values.mode)) usage(`--mode must be one of ${MODES.join(", ")}`);
  if (!SCENARIOS.includes(values.scenario)) usage(`--scenario must be one of ${SCENARIOS.join(", ")}`);
  if (!PROTOCOLS.includes(values["otlp-protocol"])) {
    usage(`--otlp-protocol must be one of ${PROTOCOLS.join(", ")}`);
  }
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) usage(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  values.timeout = timeout;
  values["otlp-endpoint"] ??=
    `http://${HOST}:${values["otlp-protocol"] === "grpc" ? 4317 : 4318}`;
  return values;
}

async function withTimeout(promise, ms, index) {
  let timer;
  const expired = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ index, ok: false, text: `timed out after ${ms / 1000} s` }), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** One worker thread per conversation, released together once all are ready; their notes
 * are merged into `recorder`. */
async function runOnWorkers(convs, shared, recorder, deadline) {
  const workers = convs.map((conv) => new Worker(new URL("./worker.mjs", import.meta.url),
    { workerData: { ...shared, conv }, name: `conversation-${conv.index}` }));
  const ready = workers.map((w) => new Promise((resolve, reject) => {
    w.once("message", resolve);
    w.once("error", reject);
  }));
  const done = workers.map((w, i) => new Promise((resolve) => {
    w.on("message", (m) => {
      if (m.notes) {
        recorder.merge(m.notes);
        resolve({ ...m.outcome, flushed: m.flushed });
      }
    });
    w.on("error", (e) => resolve({ index: convs[i].index, ok: false, text: `${e.name}: ${e.message}` }));
    w.on("exit", () => resolve({ index: convs[i].index, ok: false, text: "worker exited early" }));
  }));
  try {
    await Promise.all(ready);
  } catch (e) {
    workers.forEach((w) => w.terminate());
    return convs.map((c) => ({ index: c.index, ok: false, text: `worker failed to start: ${e.message}` }));
  }
  workers.forEach((w) => w.postMessage("go"));
  const results = await Promise.all(done.map((p, i) => withTimeout(p, deadline, convs[i].index)));
  await Promise.all(workers.map((w) => w.terminate()));
  return results;
}

async function main() {
  const args = options();
  const apiKey = process.env.OPENAI_API_KEY ?? "";
  if (!apiKey) usage("set OPENAI_API_KEY (run.py makes a fake one)");
  let dataDir;
  try {
    dataDir = realpathSync(args["data-dir"]);
  } catch (e) {
    usage(`--data-dir ${args["data-dir"]}: ${e.code ?? e.message}`);
  }
  const config = { llmUrl: args["llm-url"], apiKey, ticketingUrl: args["ticketing-url"],
    customersUrl: args["customers-url"], dataDir, model: args.model,
    captureContent: !args["no-content"], maxTurns: 12 };
  if (args["sdk-clock"]) useSdkClock();
  const recorder = new Recorder();
  const provider = setupTracing(args["otlp-protocol"], args["otlp-endpoint"], recorder,
    !args["no-thread-id"]);
  noteFetchConnects(recorder);
  const agent = new Agent(config, tracerOf(), recorder);

  const convs = conversations(args.scenario, args.mode);
  const one = (conv) => CONVERSATION.run(conv.index, () => agent.converse(conv).then(
    (text) => ({ index: conv.index, ok: true, text }),
    (e) => ({ index: conv.index, ok: false, text: `${e.name}: ${e.message}` })));
  const deadline = args.timeout * 1000;
  const started = nowNs();
  let outcomes;
  if (args.mode === "sequential") {
    outcomes = [];
    for (const conv of convs) outcomes.push(await withTimeout(one(conv), deadline, conv.index));
  } else if (args.mode === "threads") {
    outcomes = await runOnWorkers(convs, { config, threadId: !args["no-thread-id"],
      sdkClock: args["sdk-clock"], otlp: { protocol: args["otlp-protocol"],
        endpoint: args["otlp-endpoint"] } }, recorder, deadline);
  } else {
    outcomes = await Promise.all(convs.map((conv) => withTimeout(one(conv), deadline, conv.index)));
  }
  const ended = nowNs();
  // In threads mode each worker flushed its own exporter: all of them must have.
  const flushed = await shutdownTracing(provider) && outcomes.every((o) => o.flushed !== false);
  outcomes = outcomes.map(({ index, ok, text }) => ({ index, ok, text }));
  for (const o of outcomes) process.stdout.write(`conversation ${o.index} ${o.ok ? "ok" : "failed"}: ${o.text}\n`);
  if (!flushed) process.stderr.write("agent: the OTLP exporter did not flush in time\n");
  if (args.record) {
    recorder.dump(args.record, { mode: args.mode, scenario: args.scenario, started_ns: started,
      ended_ns: ended, flushed, span_thread_id: !args["no-thread-id"],
      otlp: { protocol: args["otlp-protocol"], endpoint: args["otlp-endpoint"] }, outcomes,
      service_name: provider.resource?.attributes?.["service.name"] ?? "support-agent" });
  }
  // Explicitly: a conversation that timed out may still hold sockets open (stdout and stderr
  // are synchronous on Linux pipes and files, so nothing written is lost).
  process.exit(outcomes.every((o) => o.ok) ? 0 : 1);
}

await main();
