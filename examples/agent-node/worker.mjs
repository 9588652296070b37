// One conversation on a worker thread of its own (agent.mjs --mode threads): its own tracer
// provider and recorder on this thread, started when the main thread says so (all workers
// together), its notes handed back to the main thread at the end.

import { parentPort, workerData } from "node:worker_threads";

import { Agent, tracerOf } from "./conversation.mjs";
import { CONVERSATION, Recorder, setupTracing, shutdownTracing, useSdkClock } from "./telemetry.mjs";
import { noteFetchConnects } from "./transport.mjs";

const { config, conv, otlp, threadId, sdkClock } = workerData;
if (sdkClock) useSdkClock();
const recorder = new Recorder();
const provider = setupTracing(otlp.protocol, otlp.endpoint, recorder, threadId);
noteFetchConnects(recorder);
const agent = new Agent(config, tracerOf(), recorder);

parentPort.once("message", async () => {
  const outcome = await CONVERSATION.run(conv.index, () => agent.converse(conv).then(
    (text) => ({ index: conv.index, ok: true, text }),
    (e) => ({ index: conv.index, ok: false, text: `${e.name}: ${e.message}` })));
  const flushed = await shutdownTracing(provider);
  parentPort.postMessage({ outcome, flushed, notes: recorder.notes() });
});
parentPort.postMessage({ ready: true });
