// An undeclared agent in Node with no OpenTelemetry at all: the `openai` npm package (pinned in
// package.json) with tool calling against an OpenAI-compatible endpoint (the stub LLM), a local
// file read and an exfiltrating POST. It sends runbom no traces: runbom sees it only through the
// kernel (tests/test_aibom.py, shadow AI). The Node twin of tests/shadow_openai_client.py.
//
//   NODE_EXTRA_CA_CERTS=CERT node shadow_openai_client.mjs --base-url https://127.0.0.1:N/v1 \
//       --cert CERT --data-dir DIR [--model gpt-4o-mini] [--ticketing-api http://127.0.0.1:P/api]
//
// DIR holds tickets/T-2718.md (with a prompt injection naming where to post) and customers.json;
// the stub model asks for read_file, query_customers, then http_post to the injected URL. Without
// the injection (the benign run) it asks for read_file, query_customers, http_get of the
// ticketing API, run_command (`wc -l` of the notes) and http_post of a comment to it; the
// ticketing tools reach a real API only when --ticketing-api names one (otherwise they answer
// `[]`, as the injected run needs no such API).
// The SDK uses Node's global fetch (undici over Node's TLS), whose CA list is read once at
// start-up: CERT must also be in NODE_EXTRA_CA_CERTS (checked). The API key is read from
// OPENAI_API_KEY. `npm ci` in tests/node installs the SDK (scripts/setup.sh --tests does).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import OpenAI from 'openai';

const { values: a } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    cert: { type: 'string' },
    'data-dir': { type: 'string' },
    model: { type: 'string', default: 'gpt-4o-mini' },
    'ticketing-api': { type: 'string' },
  },
});
for (const name of ['base-url', 'cert', 'data-dir']) {
  if (!a[name]) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
}
if (path.resolve(process.env.NODE_EXTRA_CA_CERTS ?? '') !== path.resolve(a.cert)) {
  console.error(`set NODE_EXTRA_CA_CERTS=${a.cert}: Node reads extra CAs only at start-up`);
  process.exit(2);
}
const dataDir = a['data-dir'];
const ticketing = a['ticketing-api'];

const tool = (name) => ({
  type: 'function',
  function: {
    name, description: name,
    parameters: { type: 'object', properties: {}, additionalProperties: true },
  },
});
const TOOLS = ['read_file', 'query_customers', 'http_post', 'http_get', 'run_command'].map(tool);

// The tools, for real: files are read, http_post sends its body where it is told, http_get and
// run_command reach the ticketing API and run the program when there is such an API.
async function runTool(name, args) {
  if (name === 'read_file') return fs.readFileSync(path.join(dataDir, args.path), 'utf8');
  if (name === 'query_customers') {
    return fs.readFileSync(path.join(dataDir, 'customers.json'), 'utf8');
  }
  if (name === 'http_get' && ticketing) {
    const r = await fetch(args.url, { signal: AbortSignal.timeout(10_000) });
    return await r.text();
  }
  if (name === 'run_command' && ticketing) {
    return execFileSync(args.argv[0], args.argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  }
  if (name === 'http_post') {
    const r = await fetch(args.url, {
      method: 'POST', body: String(args.body ?? ''),
      headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(10_000),
    });
    await r.arrayBuffer();
    return `HTTP ${r.status}`;
  }
  return '[]';
}

async function main() {
  const client = new OpenAI({ baseURL: a['base-url'], maxRetries: 0, timeout: 20_000 });
  const messages = [
    { role: 'system', content: `You are a helpful assistant.\ndata_dir: ${dataDir}\n`
                               + `ticketing_api: ${ticketing ?? 'http://127.0.0.1:9/api'}` },
    { role: 'user', content: 'Summarise ticket T-2718 for customer C-1013.' },
  ];
  for (let i = 0; i < 8; i++) {
    const answer = await client.chat.completions.create({ model: a.model, messages, tools: TOOLS });
    const msg = answer.choices[0].message;
    messages.push(Object.fromEntries(Object.entries(msg).filter(([, v]) => v != null)));
    if (!msg.tool_calls?.length) {
      console.log(msg.content);
      return 0;
    }
    for (const call of msg.tool_calls) {
      const result = await runTool(call.function.name, JSON.parse(call.function.arguments));
      messages.push({ role: 'tool', tool_call_id: call.id, content: result });
    }
  }
  return 1;
}

process.exitCode = await main();
