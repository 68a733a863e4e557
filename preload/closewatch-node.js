// closewatch-node.js - JavaScript frames for the sockets a Node program opens
// (preload/jsframes.c is the other half).
//
// Loaded with NODE_OPTIONS="--require /path/closewatch-node.js": `closewatch
// run` sets it; under plain LD_PRELOAD it is an opt-in (README). With the
// library preloaded, it loads it as a Node-API module and:
//   - remembers where each server was created (net.createServer, else its
//     listen()), and names that for every socket the server accepts, where
//     libuv's loop, not the program's JavaScript, called accept();
//   - for each client socket (diagnostics channel 'net.client.socket'),
//     the frames that asked for it (net.connect, http.get, an agent), named
//     once it connected, when its fd exists.
// Without the library it does nothing. It never throws into the program,
// prints nothing, and adds no property to the program's objects.
'use strict';
(function closewatchNode() {
  let cw;
  try {
    const lib = (process.env.LD_PRELOAD || '')
      .split(/[\s:]+/)
      .find((p) => /(^|\/)libclosewatch\.so$/.test(p));
    if (!lib) return;
    const m = { exports: {} };
    process.dlopen(m, lib);
    cw = m.exports;
    if (typeof cw.prepare !== 'function' || typeof cw.attach !== 'function') return;
  } catch (e) {
    return;
  }
  const net = require('net');
  const dc = require('diagnostics_channel');
  const self = __filename;
  const servers = new WeakMap(); // server -> where (see where())

  // The caller's frames as "function\tfile\tline" lines, innermost first,
  // without ours; Error's settings as the program left them. `limit` frames
  // at most (V8 takes ~1 us per frame); null when they are all Node's own
  // and the stack was cut (unless `last`), so the caller can look deeper.
  function frames(skip, limit, last) {
    const hadPrep = Object.prototype.hasOwnProperty.call(Error, 'prepareStackTrace');
    const prep = Error.prepareStackTrace;
    const savedLimit = Error.stackTraceLimit;
    let calls;
    try {
      Error.prepareStackTrace = (_, cs) => cs;
      Error.stackTraceLimit = limit;
      const o = {};
      Error.captureStackTrace(o, skip);
      calls = o.stack;
    } finally {
      if (hadPrep) Error.prepareStackTrace = prep;
      else delete Error.prepareStackTrace;
      Error.stackTraceLimit = savedLimit;
    }
    if (!Array.isArray(calls)) return '';
    let out = '';
    let user = false;
    for (const c of calls) {
      let file = c.getFileName() || '';
      if (file === self) continue;
      if (!out && file === 'node:diagnostics_channel') continue; // its call of ours
      if (file && !file.startsWith('node:')) user = true;
      if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7));
      // The function's own name only: getMethodName and getTypeName search
      // the receiver's prototype chain, several microseconds per frame.
      const name = c.getFunctionName() || '<anonymous>';
      out += name.replace(/[\t\n]/g, ' ') + '\t' + file.replace(/[\t\n]/g, ' ') + '\t' +
        (c.getLineNumber() || 0) + '\n';
    }
    return user || last || calls.length < limit ? out : null;
  }

  // Frames are interned in the ring once it exists (the first socket), and
  // once per distinct stack: a client connecting from the same place again
  // costs a Map lookup, not a crossing into the library.
  const interned = new Map(); // frames text -> language stack id
  // 32 frames hold the caller of net.connect or http.get; fetch() reaches
  // net.connect through ~35 frames of undici, all synchronous from the
  // program's call, so a stack of Node's frames only is taken again deeper.
  function where(skip) {
    const text = frames(skip, 32) ?? frames(skip, 128, true);
    return { text, id: 0 };
  }
  function attach(w, fd) {
    if (!w || typeof fd !== 'number' || fd < 0) return;
    if (!w.id) w.id = interned.get(w.text) || 0;
    if (!w.id) {
      w.id = cw.prepare(process.version, w.text);
      if (w.id && interned.size < 4096) interned.set(w.text, w.id);
    }
    if (w.id) cw.attach(fd, w.id);
  }
  function fdOf(socket) {
    const h = socket && socket._handle;
    return h && typeof h.fd === 'number' ? h.fd : -1;
  }

  const createServer = net.createServer;
  function wrappedCreateServer(...args) {
    const server = Reflect.apply(createServer, this, args);
    try {
      servers.set(server, where(wrappedCreateServer));
    } catch (e) {}
    return server;
  }
  Object.defineProperty(wrappedCreateServer, 'name', { value: 'createServer' });
  Object.defineProperty(wrappedCreateServer, 'length', { value: createServer.length });
  net.createServer = wrappedCreateServer;

  const listen = net.Server.prototype.listen;
  function wrappedListen(...args) {
    try {
      if (!servers.has(this)) servers.set(this, where(wrappedListen));
    } catch (e) {}
    return Reflect.apply(listen, this, args);
  }
  Object.defineProperty(wrappedListen, 'name', { value: 'listen' });
  Object.defineProperty(wrappedListen, 'length', { value: listen.length });
  net.Server.prototype.listen = wrappedListen;

  dc.subscribe('net.server.socket', (msg) => {
    try {
      const s = msg.socket;
      attach(servers.get(s.server || s._server), fdOf(s));
    } catch (e) {}
  });

  dc.subscribe('net.client.socket', (msg) => {
    try {
      const socket = msg.socket;
      const w = where(undefined);
      socket.once('connect', () => {
        try {
          attach(w, fdOf(socket));
        } catch (e) {}
      });
    } catch (e) {}
  });
})();
