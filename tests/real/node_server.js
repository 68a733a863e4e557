// node_server.js - a net server and an http keep-alive client for the `real`
// suite (tests/test_real.c).
//
//   node node_server.js server leak|good         echo server on 127.0.0.1:0
//   node node_server.js server leak|good worker  the same in a worker thread
//   node node_server.js client leak|good PORT    http client, keepAlive agent
//   node node_server.js fetch leak|good PORT     fetch() (Node's bundled undici)
//
// Prints "listening PORT" (server) or "idle" (clients, after their request)
// and exits when stdin reaches EOF (the test closes its end).
//
// Server bug (`leak`): allowHalfOpen is on, so node leaves the socket open
// when the peer ends it, and the 'end' handler forgets to call end() or
// destroy(): the socket stays in CLOSE_WAIT. `good` ends it.
//
// Client bug (`leak`): a keep-alive agent that ignores its free sockets'
// closing: the socket is detached from node's own handling (its 'end'
// listener removed and reading paused), as a hand-rolled pool would, so the
// server's FIN sits unread. `good` uses the agent as it is, which destroys a
// free socket when the server closes it.
//
// fetch bug (`leak`): the response's body is never read. A body larger than
// undici's buffer keeps the connection assigned to that response, so when
// the server ends it undici neither reuses nor closes it: CLOSE_WAIT until
// the response is garbage-collected. `good` reads the body.
'use strict';
const net = require('net');
const http = require('http');
const wt = require('worker_threads');

const [role, mode, port] = process.argv.slice(2);
const leak = mode === 'leak';

function onStdinEnd(fn) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', fn);
  process.stdin.resume();
}

if (role === 'server' && process.argv[4] === 'worker' && wt.isMainThread) {
  const w = new wt.Worker(__filename, { argv: [role, mode] });
  w.on('message', (m) => {
    console.log(m);
    if (m.startsWith('bye ')) w.terminate();
  });
  w.on('error', (e) => {
    console.error(e.message);
    process.exit(1);
  });
  w.on('exit', () => process.exit(0));
  onStdinEnd(() => w.postMessage('stop'));
} else if (role === 'server') {
  const say = (m) => (wt.parentPort ? wt.parentPort.postMessage(m) : console.log(m));
  const open = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => { // cw-mark: server-created
    open.add(sock);
    sock.on('data', (d) => sock.write(d));
    sock.on('end', () => {
      if (!leak) {
        sock.end();
        open.delete(sock);
      }
      // leak: the half-open socket is forgotten
    });
    sock.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => {
    say('listening ' + server.address().port);
  });
  const stop = () => {
    server.close();
    say('bye ' + open.size);
    if (!wt.parentPort) process.exit(0); // a worker is ended by the main thread

  };
  if (wt.parentPort) wt.parentPort.on('message', stop);
  else onStdinEnd(stop);
} else if (role === 'fetch') {
  (async () => {
    const res = await fetch(`http://127.0.0.1:${port}/big`); // cw-mark: fetch-request
    if (res.status !== 200) {
      console.error('bad response', res.status);
      process.exit(1);
    }
    if (!leak) await res.arrayBuffer();
    globalThis.keptResponse = res; // not collected while the test looks
    console.log('idle');
  })().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
  onStdinEnd(() => {
    console.log('bye');
    process.exit(0);
  });
} else {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const req = http.get({ host: '127.0.0.1', port: Number(port), path: '/ping', agent }, (res) => { // cw-mark: client-request
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => {
      if (res.statusCode !== 200 || body !== 'ok') {
        console.error('bad response', res.statusCode, body);
        process.exit(1);
      }
      // Let the agent take the socket back into its free list first.
      setImmediate(() => {
        const free = Object.values(agent.freeSockets).flat();
        if (free.length !== 1) {
          console.error('expected one free socket, have', free.length);
          process.exit(1);
        }
        const sock = free[0];
        if (leak) {
          sock.removeAllListeners('end');
          sock.removeAllListeners('close');
          sock.pause();
          sock._handle.readStop();
        } else {
          sock.on('close', () => console.log('reaped'));
        }
        console.log('idle');
      });
    });
  });
  req.on('error', (e) => {
    console.error(e.message);
    process.exit(1);
  });
  onStdinEnd(() => {
    console.log('bye');
    process.exit(0);
  });
}
