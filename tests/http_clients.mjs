// Real Node.js clients for runbom's coverage test (`sidecar/runbom/tests/http_coverage.rs`),
// standard library only (Node 20: `https`/`http` modules, `fetch` = undici, `tls`).
//
//   node http_clients.mjs <https|http|fetch|tls-early> <url> <model> [ca.pem]
//
// One OpenAI-style POST (JSON body with `model`), then one JSON line {"pid", "status"}.
// - https/http: the `https`/`http` module, `request(...).end(body)`;
// - fetch: global `fetch` (undici: plain HTTP writes `writev([head, body])`); for HTTPS the test
//   sets NODE_EXTRA_CA_CERTS;
// - tls-early: `tls.connect` and the whole request written at once, before the handshake is
//   done: Node's first `SSL_write` calls return -1 and are retried once it completes.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';

const [mode, url, model, caFile] = process.argv.slice(2);
const ca = caFile ? fs.readFileSync(caFile) : undefined;
const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });
const done = (status) => {
  console.log(JSON.stringify({ pid: process.pid, status }));
};

function viaModule(mod) {
  return new Promise((resolve, reject) => {
    const req = mod.request(url, {
      method: 'POST',
      ca,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function viaFetch() {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
  });
  await res.arrayBuffer();
  return res.status;
}

function tlsEarly() {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: u.hostname, port: Number(u.port), ca });
    // Written before 'secureConnect': the handshake has not even started.
    socket.write(
      `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => { text += d; });
    socket.on('end', () => resolve(Number(text.split(' ')[1])));
    socket.on('error', reject);
  });
}

const run = {
  https: () => viaModule(https),
  http: () => viaModule(http),
  fetch: viaFetch,
  'tls-early': tlsEarly,
}[mode];
if (!run) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
done(await run());
