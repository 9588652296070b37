// Node 20's own HTTP/2 (`node:http2`) for runbom's HTTP/2 coverage test
// (`sidecar/runbom/tests/http2_coverage.rs`).
//
//   node h2_peers.mjs server CERT KEY   # prints `READY tls=<port> plain=<port>`, serves until killed
//   node h2_peers.mjs client URL MODEL   # one POST over HTTP/2 (https: TLS, http: h2c)
//   node h2_peers.mjs client-big URL MODEL  # GET /big (a 300 KB answer), then the POST, one session
//
// The server answers `/big` with 200 and 300 KB (many DATA frames, reads larger than any one
// capture) and every other request with 200 and a small JSON body, over TLS (ALPN h2) on one
// port and cleartext HTTP/2 with prior knowledge on the other. The client sends one
// OpenAI-style POST (JSON body with `model`) and prints one JSON line {"pid", "status"};
// for https it trusts the certificate in NODE_EXTRA_CA_CERTS.
import fs from "node:fs";
import http2 from "node:http2";

function serve(server) {
  server.on("stream", (stream, headers) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      if (headers[":path"] === "/big") {
        stream.respond({ ":status": 200, "content-type": "application/octet-stream" });
        stream.end(Buffer.alloc(300 * 1024, 0x61));
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end('{"ok":true}');
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

async function server(cert, key) {
  const tls = await serve(http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }));
  const plain = await serve(http2.createServer());
  process.stdout.write(`READY tls=${tls} plain=${plain}\n`);
}

function get(session, path) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "GET", ":path": path });
    let bytes = 0;
    req.on("data", (d) => {
      bytes += d.length;
    });
    req.on("end", () => resolve(bytes));
    req.on("error", reject);
    req.end();
  });
}

async function client(url, model, big) {
  const u = new URL(url);
  const session = http2.connect(u.origin);
  session.on("error", (e) => {
    console.error(e);
    process.exit(1);
  });
  if (big && (await get(session, "/big")) !== 300 * 1024) {
    console.error("short /big answer");
    process.exit(1);
  }
  const body = JSON.stringify({ model, messages: [{ role: "user", content: "hello" }] });
  const req = session.request({
    ":method": "POST",
    ":path": u.pathname,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  let status = 0;
  req.on("response", (h) => {
    status = h[":status"];
  });
  req.on("data", () => {});
  req.on("end", () => {
    session.close();
    console.log(JSON.stringify({ pid: process.pid, status }));
  });
  req.end(body);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "server") await server(...args);
else if (mode === "client") await client(...args, false);
else if (mode === "client-big") await client(...args, true);
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
