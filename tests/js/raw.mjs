// Raw protocol clients for the malformed-input tests: Engine.IO over the `ws`
// package, a hand-made websocket framer over TCP (to send frames `ws` refuses
// to produce), plain TCP and HTTP long-polling with fetch.

import net from 'node:net';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { sleep, idleSleep } from './harness.mjs';

// ---------------------------------------------------------------------------
// Engine.IO v4 over the `ws` package
// ---------------------------------------------------------------------------

/**
 * Open `ws://addr/socket.io/?EIO=4&transport=websocket` and wait for the
 * Engine.IO open packet. Answers pings. Returns a handle with send(),
 * messages (strings, or Buffers for binary frames), waitFor(pred), closed.
 */
export async function rawEio(gw, { token = 'valid-token-1', query = 'EIO=4&transport=websocket', timeoutMs = 5000, waitOpen = true } = {}) {
  const headers = token ? { Authorization: token } : {};
  const ws = new WebSocket(`${gw.wsUrl}/socket.io/?${query}`, { headers, maxPayload: 64 * 1024 * 1024 });
  const h = {
    ws,
    messages: [],
    isClosed: false,
    closeInfo: null,
    waiters: new Set(),
  };
  h.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      h.isClosed = true;
      h.closeInfo = { code, reason: reason.toString() };
      resolve(h.closeInfo);
      for (const w of h.waiters) w.check();
    });
  });
  ws.on('error', (e) => { h.error = e; });
  ws.on('message', (data, isBinary) => {
    const m = isBinary ? Buffer.from(data) : data.toString();
    if (m === '2') { try { ws.send('3'); } catch { /* ignore */ } }
    h.messages.push(m);
    for (const w of h.waiters) w.check();
  });
  h.send = (data, opts) => new Promise((resolve) => {
    if (ws.readyState !== WebSocket.OPEN) return resolve(false);
    ws.send(data, opts ?? {}, () => resolve(true));
  });
  /** Wait for a message matching pred (or for close when pred is 'close'). Resolves the message, or null on close/timeout. */
  h.waitFor = (pred, ms = 3000) => new Promise((resolve) => {
    const w = {};
    const done = (v) => { clearTimeout(w.timer); h.waiters.delete(w); resolve(v); };
    w.check = () => {
      const found = h.messages.find((m) => typeof m === 'string' && pred(m));
      if (found !== undefined) return done(found);
      if (h.isClosed) return done(null);
    };
    w.timer = setTimeout(() => done(null), ms);
    h.waiters.add(w);
    w.check();
  });
  h.close = () => { try { ws.terminate(); } catch { /* ignore */ } };
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('raw websocket did not open')), timeoutMs);
    ws.once('open', () => { clearTimeout(timer); resolve(); });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
    ws.once('unexpected-response', (_req, res) => { clearTimeout(timer); reject(new Error(`HTTP ${res.statusCode}`)); });
  });
  if (waitOpen) {
    const open = await h.waitFor((m) => m.startsWith('0'), timeoutMs);
    if (!open) throw new Error(`no Engine.IO open packet; got ${JSON.stringify(h.messages)}`);
    h.open = JSON.parse(open.slice(1));
  }
  return h;
}

/** rawEio + Socket.IO CONNECT to "/" (auth via the header) and wait for `40{...}`. */
export async function rawSio(gw, opts = {}) {
  const h = await rawEio(gw, opts);
  await h.send(opts.connectPacket ?? '40');
  const ok = await h.waitFor((m) => m.startsWith('40') || m.startsWith('44'), 3000);
  if (!ok || !ok.startsWith('40')) throw new Error(`Socket.IO CONNECT failed: ${ok}`);
  return h;
}

// ---------------------------------------------------------------------------
// hand-made websocket frames over TCP
// ---------------------------------------------------------------------------

/** Build one client->server websocket frame. */
export function wsFrame(opcode, payload, { fin = true, rsv = 0, mask = true, lengthOverride } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? '');
  const len = lengthOverride ?? data.length;
  const head = [((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f))];
  let ext = Buffer.alloc(0);
  if (len < 126) {
    head.push((mask ? 0x80 : 0) | len);
  } else if (len < 65536) {
    head.push((mask ? 0x80 : 0) | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push((mask ? 0x80 : 0) | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  let body = data;
  let key = Buffer.alloc(0);
  if (mask) {
    key = crypto.randomBytes(4);
    body = Buffer.from(data.map((b, i) => b ^ key[i % 4]));
  }
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

/**
 * Open a TCP connection, do the websocket upgrade on /socket.io/ by hand and
 * (optionally) the Socket.IO CONNECT. Returns { sock, write(buf), frames (server
 * frames as {opcode, payload}), closed, waitText(pred), close() }.
 */
export async function rawFramer(gw, { token = 'valid-token-1', connect = true, timeoutMs = 5000 } = {}) {
  const sock = net.connect({ host: gw.host, port: gw.port });
  sock.on('error', () => {});
  const h = { sock, frames: [], isClosed: false, waiters: new Set() };
  h.closed = new Promise((resolve) => sock.on('close', () => {
    h.isClosed = true;
    resolve();
    for (const w of h.waiters) w.check();
  }));
  let buf = Buffer.alloc(0);
  let upgraded = false;
  let onUpgrade;
  const upgradeDone = new Promise((resolve, reject) => { onUpgrade = { resolve, reject }; });
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const idx = buf.indexOf('\r\n\r\n');
      if (idx < 0) return;
      const head = buf.subarray(0, idx).toString('latin1');
      buf = buf.subarray(idx + 4);
      if (!/^HTTP\/1\.1 101/.test(head)) {
        onUpgrade.reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        return;
      }
      upgraded = true;
      onUpgrade.resolve();
    }
    // parse server frames (unmasked)
    for (;;) {
      if (buf.length < 2) break;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf[1] & 0x80) off += 4;
      if (buf.length < off + len) break;
      const payload = buf.subarray(off, off + len);
      buf = buf.subarray(off + len);
      h.frames.push({ opcode, payload });
      if (opcode === 1 && payload.toString() === '2') sock.write(wsFrame(1, '3'));
      for (const w of h.waiters) w.check();
    }
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcp connect timeout')), timeoutMs);
    sock.once('connect', () => { clearTimeout(timer); resolve(); });
    sock.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${gw.address}\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    (token ? `Authorization: ${token}\r\n` : '') + '\r\n',
  );
  await Promise.race([upgradeDone, idleSleep(timeoutMs).then(() => { throw new Error('upgrade timeout'); })]);
  h.write = (b) => new Promise((resolve) => {
    if (sock.destroyed) return resolve(false);
    sock.write(b, () => resolve(true));
  });
  h.texts = () => h.frames.filter((f) => f.opcode === 1).map((f) => f.payload.toString());
  h.waitText = (pred, ms = 3000) => new Promise((resolve) => {
    const w = {};
    const done = (v) => { clearTimeout(w.timer); h.waiters.delete(w); resolve(v); };
    w.check = () => {
      const t = h.texts().find(pred);
      if (t !== undefined) return done(t);
      if (h.isClosed) return done(null);
    };
    w.timer = setTimeout(() => done(null), ms);
    h.waiters.add(w);
    w.check();
  });
  h.close = () => { sock.destroy(); };
  const open = await h.waitText((t) => t.startsWith('0'), timeoutMs);
  if (!open) throw new Error('no Engine.IO open packet on raw framer');
  if (connect) {
    await h.write(wsFrame(1, '40'));
    const ok = await h.waitText((t) => t.startsWith('40') || t.startsWith('44'), timeoutMs);
    if (!ok || !ok.startsWith('40')) throw new Error(`raw framer CONNECT failed: ${ok}`);
  }
  return h;
}

// ---------------------------------------------------------------------------
// plain TCP
// ---------------------------------------------------------------------------

/** Connect, write each chunk (with a small pause between), read for up to `readMs`, then destroy. Resolves the bytes received. */
export async function rawTcp(gw, chunks, { readMs = 1000, pauseMs = 10 } = {}) {
  const sock = net.connect({ host: gw.host, port: gw.port });
  sock.on('error', () => {});
  const received = [];
  sock.on('data', (d) => received.push(d));
  const closed = new Promise((resolve) => sock.on('close', resolve));
  await Promise.race([new Promise((r) => sock.once('connect', r)), idleSleep(3000)]);
  for (const c of chunks) {
    if (sock.destroyed) break;
    await new Promise((resolve) => sock.write(c, () => resolve()));
    if (pauseMs) await sleep(pauseMs);
  }
  await Promise.race([closed, idleSleep(readMs)]);
  sock.destroy();
  return Buffer.concat(received);
}

// ---------------------------------------------------------------------------
// HTTP long-polling
// ---------------------------------------------------------------------------

/** fetch with a timeout; resolves {status, body (string)} or {status: 0, error}. */
export async function httpReq(url, { method = 'GET', headers = {}, body, timeoutMs = 5000 } = {}) {
  try {
    const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, body: text, headers: res.headers };
  } catch (e) {
    return { status: 0, error: e };
  }
}

/** Open an Engine.IO polling session (and Socket.IO CONNECT when connect=true). Returns {sid, base}. */
export async function pollingSession(gw, { token = 'valid-token-1', connect = true } = {}) {
  const headers = token ? { Authorization: token } : {};
  const hs = await httpReq(`${gw.url}/socket.io/?EIO=4&transport=polling`, { headers });
  if (hs.status !== 200 || !hs.body.startsWith('0')) {
    throw new Error(`polling handshake failed: ${hs.status} ${hs.body} ${hs.error ?? ''}`);
  }
  const { sid } = JSON.parse(hs.body.slice(1));
  const base = `${gw.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  if (connect) {
    const post = await httpReq(base, { method: 'POST', headers: { ...headers, 'Content-Type': 'text/plain;charset=UTF-8' }, body: '40' });
    if (post.status !== 200) throw new Error(`polling CONNECT POST failed: ${post.status} ${post.body}`);
    // The answer may come after other packets (e.g. an early ping): read up to 4 times.
    const seen = [];
    let ok = false;
    for (let i = 0; i < 4 && !ok; i++) {
      const get = await httpReq(base, { headers, timeoutMs: 3000 });
      seen.push(`${get.status} ${get.body ?? get.error}`);
      if (get.status !== 200) break;
      const packets = get.body.split('\u001e');
      if (packets.some((p) => p.startsWith('40{'))) ok = true;
      if (packets.includes('2')) await httpReq(base, { method: 'POST', headers, body: '3' });
    }
    if (!ok) throw new Error(`polling CONNECT answer missing: ${JSON.stringify(seen)}`);
  }
  return { sid, base, headers };
}
