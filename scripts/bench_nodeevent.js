// bench_nodeevent.js N: ns per net.connect()+destroy() cycle to a server in
// the same process (the median of 5 rounds of N), for `make bench`'s
// node-event section: plain vs closewatch with the JS preload, the
// difference is the cost of a recorded client socket with its JavaScript
// frames (captured, interned once per call site, attached) plus the
// accepted socket's (where its server was made).
'use strict';
const net = require('net');
const n = Number(process.argv[2]);

const server = net.createServer((s) => s.on('error', () => {}).resume());
server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  const cycle = () =>
    new Promise((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve();
      });
      c.on('error', reject);
    });
  const round = async (k) => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < k; i++) await cycle();
    return Number(process.hrtime.bigint() - t) / k;
  };
  await round(Math.ceil(n / 10)); // warm up: JIT, interned stacks, ring pages
  const r = [];
  for (let i = 0; i < 5; i++) r.push(await round(n));
  r.sort((a, b) => a - b);
  console.log(Math.round(r[2]));
  server.close();
});
