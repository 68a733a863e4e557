// node_churn.js - N connect/echo/close cycles against its own net server,
// one at a time, for tests/test_lang_node.c (same output with and without
// closewatch) and the Node churn measurement.
//
//   node node_churn.js N     prints "done N BYTES" and exits 0
'use strict';
const net = require('net');

const total = Number(process.argv[2] || 2000);
let bytes = 0;
const server = net.createServer((sock) => {
  sock.on('data', (d) => sock.write(d));
  sock.on('end', () => sock.end());
});
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  let done = 0;
  const next = () => {
    if (done === total) {
      server.close();
      console.log('done ' + done + ' ' + bytes);
      return;
    }
    const c = net.connect(port, '127.0.0.1', () => c.write('ping'));
    c.on('data', (d) => {
      bytes += d.length;
      c.end();
    });
    c.on('close', () => {
      done++;
      next();
    });
  };
  next();
});
