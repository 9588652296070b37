// The Node agent's I/O, each operation noted for the ground truth under the span current when
// it was made (what runbom must place its kernel event under):
//
// * httpRequest: plain HTTP/1.1 with `node:http` (one connection per request, `Connection:
//   close`, `traceparent` of the current span injected); net.connect noted from before the
//   request until the socket's `connect`, http.request until the response was read (and
//   `sent_ns` at that `connect`, when node:http writes it);
// * the LLM's HTTPS goes through the `openai` package on Node's own fetch (undici over
//   `node:tls`, i.e. the OpenSSL linked into the `node` binary): `notingFetch` notes each
//   request, and undici's diagnostics channels note each connection it opens;
// * execFile: `child_process.spawn` (no shell), the child's exec noted.
//
// Node runs all of it on the one event-loop thread; the kernel sees `connect()` return
// EINPROGRESS and the connection complete afterwards.

import { spawn } from "node:child_process";
import diagnostics from "node:diagnostics_channel";
import http from "node:http";

import { context, propagation, trace } from "@opentelemetry/api";

import { nativeThreadId, nowNs } from "./telemetry.mjs";

export const USER_AGENT = "support-agent/0.1 (runbom reference agent, Node)";

export class TransportError extends Error {
  name = "TransportError";
}

function target(url) {
  const u = new URL(url);
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new TransportError(`not an http(s) URL: ${url}`);
  }
  const scheme = u.protocol.slice(0, -1);
  const port = Number(u.port) || (scheme === "https" ? 443 : 80);
  return { scheme, hostname: u.hostname, port, host: u.host, path: u.pathname + u.search,
    url: `${scheme}://${u.host}${u.pathname}${u.search}` };
}

function noteRequest(rec, method, t, traceparent, body, capture, extra = {}) {
  return rec.action("http.request", {
    method, scheme: t.scheme, host: t.host, server_address: t.hostname, server_port: t.port,
    path: t.path, url: t.url, capture, traceparent: traceparent ?? null,
    body_size: body ? Buffer.byteLength(body) : 0, separate_body_write: false, ...extra,
  });
}

/** Plain HTTP/1.1 request; resolves {status, headers, body (string)}. */
export function httpRequest(rec, method, url, { headers = {}, body = null, timeoutMs = 10000 } = {}) {
  const t = target(url);
  if (t.scheme !== "http") throw new TransportError(`the tools speak plain HTTP: ${url}`);
  const sent = { "User-Agent": USER_AGENT, Accept: "*/*", Connection: "close", ...headers };
  if (body !== null) sent["Content-Length"] = String(Buffer.byteLength(body));
  propagation.inject(context.active(), sent); // traceparent of the current span
  const connect = rec.action("net.connect", { address: t.hostname, port: t.port, transport: "tcp",
    tls: false, nonblocking: true });
  const note = noteRequest(rec, method, t, sent.traceparent, body, "socket");
  return new Promise((resolve, reject) => {
    const req = http.request({ host: t.hostname, port: t.port, path: t.path, method,
      headers: sent, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        note.status_code = res.statusCode;
        note.end_ns = nowNs();
        resolve({ status: res.statusCode, headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8") });
      });
      res.on("error", (e) => reject(new TransportError(`${method} ${url}: ${e.message}`)));
    });
    // node:http writes the request the moment its connection is up.
    req.on("socket", (socket) => socket.once("connect", () => {
      connect.end_ns = nowNs();
      connect.local_port = socket.localPort;
      note.sent_ns = connect.end_ns;
    }));
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (e) => {
      if (connect.local_port === undefined) connect.error = e.code ?? e.name;
      connect.end_ns = nowNs();
      reject(new TransportError(`${method} ${url}: ${e.message}`));
    });
    req.end(body ?? undefined);
  });
}

// Notes of fetch requests whose headers undici has not written yet, by traceparent. undici
// publishes `undici:client:sendHeaders` as it writes a request's headers to its socket: the
// moment the kernel sees the request, later than the note's start by the set-up of a new
// connection. Two conversations on one thread send the same requests at once, and that moment,
// not the start, tells the kernel's two requests apart (`sent_ns`, tests/score_correlation.py).
const unsent = new Map();
diagnostics.subscribe("undici:client:sendHeaders", ({ headers }) => {
  const text = Array.isArray(headers) ? headers.join("\r\n") : String(headers);
  const traceparent = /^traceparent: *([^\r\n]+)/im.exec(text)?.[1]?.trim();
  const note = traceparent && unsent.get(traceparent);
  if (note) {
    note.sent_ns = nowNs();
    unsent.delete(traceparent);
  }
});

/**
 * A fetch for the `openai` client that notes each request it sends (Node's own fetch does
 * the work). The caller finishes the note (status, end) once the SDK has read the answer:
 * `takeNote(traceparent)` hands it over.
 */
export function notingFetch(rec) {
  const open = new Map(); // traceparent -> note
  const fetchAndNote = async (url, init = {}) => {
    const t = target(String(url));
    const headers = new Headers(init.headers);
    const traceparent = headers.get("traceparent");
    const body = typeof init.body === "string" ? init.body : null;
    let model;
    try {
      model = body ? JSON.parse(body).model : undefined;
    } catch {
      model = undefined; // not JSON: no model to note
    }
    const note = noteRequest(rec, init.method ?? "GET", t, traceparent, body,
      t.scheme === "https" ? "openssl" : "socket", model ? { model } : {});
    if (traceparent) {
      open.set(traceparent, note);
      unsent.set(traceparent, note);
    }
    const resp = await fetch(url, init).finally(() => traceparent && unsent.delete(traceparent));
    note.status_code = resp.status;
    return resp;
  };
  fetchAndNote.takeNote = (traceparent) => {
    const note = open.get(traceparent);
    open.delete(traceparent);
    if (note) note.end_ns = nowNs();
    return note;
  };
  return fetchAndNote;
}

/**
 * Notes every connection undici (Node's fetch) opens, under the span current when it decided to
 * connect: `undici:client:beforeConnect` and `undici:client:connected` run in the context of the
 * request that made undici connect (each publishes its own copy of the connection parameters, so
 * the two are paired by that span and the destination, first come first served).
 */
export function noteFetchConnects(rec) {
  const pending = new Map(); // "span id destination" -> [notes]
  const key = ({ hostname, port, protocol }) =>
    `${trace.getActiveSpan()?.spanContext().spanId} ${hostname}:${portOf(port, protocol)}`;
  const finish = (connectParams, fields) => {
    const notes = pending.get(key(connectParams));
    const note = notes?.shift();
    if (notes && !notes.length) pending.delete(key(connectParams));
    if (note) Object.assign(note, { end_ns: nowNs(), ...fields });
  };
  diagnostics.subscribe("undici:client:beforeConnect", ({ connectParams: p }) => {
    const note = rec.action("net.connect", { address: p.hostname, port: portOf(p.port, p.protocol),
      transport: "tcp", tls: p.protocol === "https:", nonblocking: true });
    const k = key(p);
    pending.set(k, [...(pending.get(k) ?? []), note]);
  });
  diagnostics.subscribe("undici:client:connected", ({ connectParams, socket }) => {
    finish(connectParams, { local_port: socket.localPort });
  });
  diagnostics.subscribe("undici:client:connectError", ({ connectParams, error }) => {
    finish(connectParams, { error: error?.code ?? error?.name ?? "Error" });
  });
}

const portOf = (port, protocol) => Number(port) || (protocol === "https:" ? 443 : 80);

/** Runs a program (no shell); resolves {pid, code, stdout, stderr, startNs, endNs}. */
export function execFile(rec, argv, timeoutMs = 10000) {
  const startNs = nowNs();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs });
    const out = [];
    const err = [];
    // spawn() has forked and the child exec'd (or failed to) by the time it returns.
    const note = child.pid === undefined ? null : rec.action("process.exec", {
      start_ns: startNs, pid: child.pid, thread_id: child.pid, parent_pid: process.pid,
      parent_thread_id: nativeThreadId(), executable: argv[0], argv });
    child.stdout.on("data", (c) => out.push(c));
    child.stderr.on("data", (c) => err.push(c));
    child.on("error", (e) => reject(new TransportError(`cannot run ${argv[0]}: ${e.message}`)));
    child.on("close", (code, signal) => {
      const endNs = nowNs();
      if (note) note.end_ns = endNs;
      if (signal) {
        reject(new TransportError(`${argv[0]} ended by ${signal} (timeout ${timeoutMs} ms)`));
        return;
      }
      resolve({ pid: child.pid, code, stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"), startNs, endNs });
    });
  });
}
