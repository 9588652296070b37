// The Node agent's tools, their OpenAI function specs and the spans they open: the same five as
// the Python agent's (examples/agent/tools.py).
//
// | tool | does | inner span |
// |---|---|---|
// | read_file | reads a file under the data dir | – (the execute_tool span) |
// | http_get | GET on an HTTP API | GET, a new root trace on purpose (below) |
// | http_post | POST on an HTTP API | POST (semconv HTTP client span) |
// | query_customers | SQL over HTTP on the customer database | SELECT customers (DB client span) |
// | run_command | runs a program (no shell) | – (the child's exec is under execute_tool) |
//
// http_get mimics instrumentation that drops the context: its HTTP client span is started from
// an empty context inside the execute_tool span, so it begins a new trace, and the traceparent
// it sends names that orphan span. The recorder notes which span it should be stitched under.

import { openSync, readSync, closeSync, realpathSync } from "node:fs";
import path from "node:path";

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";

import { nowNs, spanTime } from "./telemetry.mjs";
import { execFile, httpRequest } from "./transport.mjs";

const MAX_READ = 64 * 1024;
const MAX_RESULT = 8 * 1024;

export class ToolError extends Error {
  name = "ToolError";
}

const fn = (name, description, properties, required) => ({ type: "function",
  function: { name, description, parameters: { type: "object", properties, required } } });

export const TOOL_SPECS = [
  fn("read_file", "Read a text file from the support data directory.",
    { path: { type: "string", description: "path relative to the data dir" } }, ["path"]),
  fn("http_get", "GET a URL of the ticketing API.", { url: { type: "string" } }, ["url"]),
  fn("http_post", "POST a JSON or text body to a URL of the ticketing API.",
    { url: { type: "string" }, body: { type: "string" } }, ["url", "body"]),
  fn("query_customers", "Look customers up in the customer database.",
    { customer_id: { type: "string" }, all: { type: "boolean" } }, []),
  fn("run_command", "Run a program (absolute path, no shell) and return its output.",
    { argv: { type: "array", items: { type: "string" } } }, ["argv"]),
];
export const DESCRIPTIONS = Object.fromEntries(
  TOOL_SPECS.map((s) => [s.function.name, s.function.description]));

/** Runs `body(span)` inside a new span made current, ending it however body ends. */
export async function inSpan(tracer, name, options, parent, body) {
  const span = tracer.startSpan(name, { ...options, startTime: spanTime() }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => body(span));
  } finally {
    span.end(spanTime());
  }
}

function httpAttributes(method, url) {
  const u = new URL(url);
  return { "http.request.method": method, "url.full": url, "url.scheme": u.protocol.slice(0, -1),
    "server.address": u.hostname, "network.protocol.version": "1.1",
    "server.port": Number(u.port) || (u.protocol === "https:" ? 443 : 80) };
}

function httpResult(span, resp) {
  span.setAttribute("http.response.status_code", resp.status);
  if (resp.status >= 400) {
    span.setAttribute("error.type", String(resp.status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  return `HTTP ${resp.status}\n${resp.body.slice(0, MAX_RESULT)}`;
}

export class Tools {
  constructor(config, tracer, recorder) {
    this.config = config;
    this.tracer = tracer;
    this.recorder = recorder;
    this.dataDir = realpathSync(config.dataDir);
  }

  async run(name, args) {
    const tool = { read_file: this.readFile, http_get: this.httpGet, http_post: this.httpPost,
      query_customers: this.queryCustomers, run_command: this.runCommand }[name];
    if (!tool) throw new ToolError(`no tool named ${JSON.stringify(name)}`);
    return tool.call(this, args);
  }

  inDataDir(p) {
    const resolved = path.resolve(this.dataDir, String(p));
    if (!resolved.startsWith(this.dataDir + path.sep)) {
      throw new ToolError(`${JSON.stringify(p)} is outside the data directory`);
    }
    return resolved;
  }

  // Opened with the synchronous call on purpose: fs.promises opens on a libuv pool thread,
  // whose kernel thread id no JavaScript API tells, so the ground truth could not name it.
  readFile(args) {
    const file = this.inDataDir(args.path);
    const note = this.recorder.action("file.open", { path: file, flags: "O_RDONLY|O_CLOEXEC" });
    let fd;
    try {
      fd = openSync(file, "r");
    } catch (e) {
      note.error = e.code;
      throw e;
    } finally {
      note.end_ns = nowNs();
    }
    try {
      const buf = Buffer.alloc(MAX_READ);
      return buf.subarray(0, readSync(fd, buf, 0, MAX_READ, 0)).toString("utf8");
    } finally {
      closeSync(fd);
    }
  }

  async httpGet(args) {
    const url = String(args.url);
    const toolSpan = trace.getActiveSpan();
    // Deliberately broken context propagation: an empty parent context.
    return inSpan(this.tracer, "GET", { kind: SpanKind.CLIENT, attributes: httpAttributes("GET", url) },
      ROOT_CONTEXT, async (span) => {
        this.recorder.orphan(span, toolSpan);
        return httpResult(span, await httpRequest(this.recorder, "GET", url));
      });
  }

  async httpPost(args) {
    const url = String(args.url);
    const body = String(args.body ?? "");
    let contentType = "application/json";
    try {
      JSON.parse(body);
    } catch {
      contentType = "text/plain; charset=utf-8";
    }
    return inSpan(this.tracer, "POST", { kind: SpanKind.CLIENT,
      attributes: httpAttributes("POST", url) }, context.active(), async (span) => httpResult(span,
      await httpRequest(this.recorder, "POST", url, { headers: { "Content-Type": contentType },
        body })));
  }

  async queryCustomers(args) {
    let sql;
    let params;
    if (args.all) {
      [sql, params] = ["SELECT * FROM customers ORDER BY id", []];
    } else if (args.customer_id) {
      [sql, params] = ["SELECT * FROM customers WHERE id = ?", [String(args.customer_id)]];
    } else {
      throw new ToolError("give customer_id, or all=true");
    }
    const url = `${this.config.customersUrl.replace(/\/+$/, "")}/query`;
    const u = new URL(url);
    const attributes = { "db.system.name": "sqlite", "db.namespace": "crm",
      "db.collection.name": "customers", "db.operation.name": "SELECT", "db.query.text": sql,
      "server.address": u.hostname, "server.port": Number(u.port) || 80 };
    return inSpan(this.tracer, "SELECT customers", { kind: SpanKind.CLIENT, attributes },
      context.active(), async (span) => {
        const resp = await httpRequest(this.recorder, "POST", url, {
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sql, params }) });
        if (resp.status !== 200) {
          span.setAttribute("error.type", String(resp.status));
          throw new ToolError(`customer database answered HTTP ${resp.status}`);
        }
        const answer = JSON.parse(resp.body);
        const rows = answer.rows.map((row) => Object.fromEntries(
          answer.columns.map((c, i) => [c, row[i]])));
        span.setAttribute("db.response.returned_rows", rows.length);
        return JSON.stringify(rows);
      });
  }

  async runCommand(args) {
    const argv = (args.argv ?? []).map(String);
    if (!argv.length || !argv[0].startsWith("/")) {
      throw new ToolError("argv[0] must be an absolute program path");
    }
    const result = await execFile(this.recorder, argv);
    for (const arg of argv.slice(1)) { // files of ours the program opens (e.g. wc FILE)
      if (arg.startsWith(this.dataDir + path.sep)) {
        this.recorder.action("file.open", { start_ns: result.startNs, end_ns: result.endNs,
          pid: result.pid, thread_id: result.pid, path: arg, flags: "O_RDONLY", by: "child" });
      }
    }
    if (result.code !== 0) return `exit status ${result.code}: ${result.stderr.slice(0, MAX_RESULT)}`;
    return result.stdout.slice(0, MAX_RESULT);
  }
}
