// The `ssl` benchmark's workload (`sidecar/runbom-bench/src/ssl.rs`): Node 20 writing over TLS,
// one `SSL_write` of 64 non-HTTP bytes per iteration (each write awaited, so Node never merges
// two into one SSL_write).
//
//   node ssl_writes.mjs server KEY CERT        # prints `READY port=<port>`, discards what it reads
//   node ssl_writes.mjs client PORT CA N       # N writes; prints {"cpu_ns", "wall_ns", "writes"}
//
// The client's CPU time is process.cpuUsage() (user + system, every thread of the process)
// around the loop, after a warm-up of N/10 writes.
import fs from 'node:fs';
import tls from 'node:tls';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'server') {
  const [key, cert] = args;
  const server = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (s) => {
    s.on('data', () => {});
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => console.log(`READY port=${server.address().port}`));
} else if (mode === 'client') {
  const [port, ca, n] = [Number(args[0]), fs.readFileSync(args[1]), Number(args[2])];
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const chunk = Buffer.alloc(64, 'x');
  const write = () => new Promise((resolve, reject) => {
    socket.write(chunk, (e) => (e ? reject(e) : resolve()));
  });
  for (let i = 0; i < n / 10; i++) await write();
  const cpu0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await write();
  const wall = Number(process.hrtime.bigint() - wall0);
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ cpu_ns: (cpu.user + cpu.system) * 1000, wall_ns: wall, writes: n }));
  socket.end();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
