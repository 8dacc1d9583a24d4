// Issue 13: stock clients ride through rolling deploys and overload by themselves.
//
// Every client here is a stock client (the official `socket.io-client`, or python-socketio
// through tests/py/stock_client.py) with the library's default reconnection, and its only
// application code is the usual "join my project on every `connect`". No test calls
// `connect()` by hand: whether a client comes back after a server event is up to the
// library, i.e. to what the server did (docs/client-contract.md):
// (a) a rolling deploy of 3 replicas behind haproxy (round robin, /readyz checks, cookie
//     affinity for long-polling) with 500 socket.io-client clients (half websocket-only,
//     half default transports) and 50 python-socketio clients while updates are published:
//     every client ends connected, joined, and gets the next update; the longest outage and
//     the missed updates (pub/sub is at-most-once) are reported;
// (b) a slow consumer (its TCP socket stops being read) is evicted, counted, reconnects by
//     itself once it reads again, rejoins and gets updates again;
// (c) disconnectSockets(false / true) from @socket.io/redis-emitter and from a Node
//     socket.io server with @socket.io/redis-adapter (a mixed fleet): a wsgate client sees
//     what a client of the Node server sees (reason, whether it reconnects), measured here;
// (d) token expiry keeps the namespace disconnect: `io server disconnect`, no reconnection
//     (socket.io-client and python-socketio); a refusal over --max-connections-per-user
//     stays a refusal the client does not retry.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';
import {
  startGateway, startRedis, startReplica, startHaproxy, startPyClients, runWsgate, sleep, waitUntil, freePort,
} from './harness.mjs';

const ROOMS = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'];
/** The reasons socket.io-client gives when the transport closed (it reconnects by itself). */
const TRANSPORT_REASONS = ['transport close', 'transport error'];

let dir;
let identity;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'wsgate-continuity-'));
  const tokens = path.join(dir, 'tokens.json');
  const perms = path.join(dir, 'permissions.json');
  await writeFile(tokens, JSON.stringify({ tok: 'u' }));
  await writeFile(perms, JSON.stringify({ u: ROOMS }));
  identity = ['--tokens', tokens, '--permissions', perms];
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

// ---------------------------------------------------------------------------
// stock clients, seen the same way whatever their library
// ---------------------------------------------------------------------------

/**
 * A stock socket.io-client client of `room`: `kind` 'js-ws' (websocket only) or
 * 'js-default' (long-polling, then the websocket upgrade). The application code is the
 * `connect` handler that joins the room; the rest only records what happens.
 */
function jsClient(url, room, kind, { token = 'tok' } = {}) {
  const opts = { forceNew: true, auth: { token } };
  if (kind === 'js-ws') opts.transports = ['websocket'];
  // Long-polling: send back the load balancer's affinity cookie, as a browser does.
  else opts.withCredentials = true;
  const socket = io(url, opts);
  const c = {
    kind, room, socket, connects: [], joins: [], disconnects: [], connectErrors: [], seqs: [], joinErrors: [], events: [],
  };
  socket.on('connect', () => {
    c.connects.push(Date.now());
    socket.timeout(10000).emit('join_project', { projectId: room }, (err, answer) => {
      if (!err && answer === `You have joined ${room}!`) c.joins.push(Date.now());
      else c.joinErrors.push(err ? err.message : JSON.stringify(answer));
    });
  });
  socket.on('disconnect', (reason) => c.disconnects.push({ reason, at: Date.now(), active: socket.active }));
  socket.on('connect_error', (err) => c.connectErrors.push({ message: err.message, at: Date.now() }));
  socket.on('update', (u) => c.seqs.push(u?.seq));
  socket.onAny((name) => { if (name !== 'update' && name !== 'join_project') c.events.push({ name, at: Date.now() }); });
  c.connected = () => socket.connected;
  /** Will never come back by itself. */
  c.gaveUp = () => !socket.connected && !socket.active;
  c.close = () => socket.close();
  return c;
}

/** A view of one python-socketio client (startPyClients) with the fields of jsClient. */
function pyView(rec, kind) {
  const seqs = [];
  let seen = 0;
  return {
    kind,
    room: rec.spec.project,
    get connects() { return rec.connects; },
    get joins() { return rec.joins.filter((j) => j.answer === `You have joined ${rec.spec.project}!`).map((j) => j.t); },
    get disconnects() { return rec.disconnects; },
    get connectErrors() { return rec.connectErrors; },
    get seqs() {
      for (; seen < rec.events.length; seen++) {
        const e = rec.events[seen];
        if (e.name === 'update') seqs.push(e.args[0]?.seq);
      }
      return seqs;
    },
    get events() { return rec.events.filter((e) => e.name !== 'update' && e.name !== 'join_project'); },
    connected: () => rec.connected,
    // python-socketio does not reconnect after `server disconnect` (a Socket.IO
    // DISCONNECT, or an Engine.IO close packet) unless a retry shows up after it.
    gaveUp: () => {
      const last = rec.disconnects.at(-1);
      return !rec.connected && last !== undefined && last.reason === 'server disconnect'
        && !rec.connectErrors.some((e) => e.at >= last.at);
    },
  };
}

/** Connected, and joined its room on its latest connection. */
function live(c) {
  return c.connected() && c.joins.length > 0 && c.connects.length > 0 && c.joins.at(-1) >= c.connects.at(-1);
}

function countBy(items, key) {
  const out = {};
  for (const i of items) { const k = key(i); out[k] = (out[k] ?? 0) + 1; }
  return out;
}

/** One line per kind: how many are live, offline, given up, and the disconnect reasons seen. */
function summary(clients) {
  const kinds = [...new Set(clients.map((c) => c.kind))];
  return kinds.map((kind) => {
    const of = clients.filter((c) => c.kind === kind);
    const offline = of.filter((c) => !live(c));
    const reasons = countBy(of.flatMap((c) => c.disconnects), (d) => d.reason);
    const lastReasons = countBy(offline.filter((c) => c.disconnects.length), (c) => c.disconnects.at(-1).reason);
    return `${kind}: ${of.length - offline.length}/${of.length} live, ${offline.length} offline ` +
      `(${offline.filter((c) => c.gaveUp()).length} will not reconnect; last reasons ${JSON.stringify(lastReasons)}); ` +
      `all disconnect reasons ${JSON.stringify(reasons)}` +
      offline.filter((c) => !c.gaveUp()).slice(0, 3).map((c) => `\n  e.g. ${describeClient(c)}`).join('');
  }).join('\n');
}

/** What one client went through (for failure messages). */
function describeClient(c) {
  const t0 = Math.min(...c.connects, ...c.disconnects.map((d) => d.at));
  const rel = (t) => t - t0;
  return JSON.stringify({
    connected: c.connected(),
    connects: c.connects.map(rel),
    joins: c.joins.map(rel),
    joinErrors: c.joinErrors,
    disconnects: c.disconnects.map((d) => [rel(d.at), d.reason]),
    connectErrors: c.connectErrors.slice(-5).map((e) => [rel(e.at), e.message]),
    transport: c.socket?.io.engine?.transport?.name,
  });
}

/**
 * Wait until every client is live; give up early once every offline client will never
 * come back by itself (and stayed so for `settleMs`). Returns the offline ones.
 */
async function waitAllLive(clients, { timeoutMs = 30000, settleMs = 3000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let stuckSince = null;
  for (;;) {
    const down = clients.filter((c) => !live(c));
    if (down.length === 0 || Date.now() > deadline) return down;
    if (down.every((c) => c.gaveUp())) {
      stuckSince ??= Date.now();
      if (Date.now() - stuckSince > settleMs) return down;
    } else {
      stuckSince = null;
    }
    await sleep(100);
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Each outage of `c`: from a disconnect to the join answer of the next connection (ms). */
function outages(c) {
  const joins = c.joins;
  return c.disconnects.map((d) => {
    const back = joins.find((t) => t >= d.at);
    return back === undefined ? Infinity : back - d.at;
  });
}

/** Updates of its room that `c` missed between the first it got and `last` (and duplicates). */
function missed(c, last) {
  const got = c.seqs.filter((s) => typeof s === 'number' && s <= last);
  if (got.length === 0) return { missed: NaN, dup: 0 };
  const first = Math.min(...got);
  const distinct = new Set(got);
  return { missed: (last - first + 1) - distinct.size, dup: got.length - distinct.size };
}

async function scrape(url) {
  const res = await fetch(`${url}/metrics`);
  return res.text();
}

function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

// ===========================================================================

describe('(a) rolling deploy of 3 replicas behind haproxy', () => {
  const JS = Number(process.env.WSGATE_CONTINUITY_JS ?? 500);
  const PY = Number(process.env.WSGATE_CONTINUITY_PY ?? 50);
  const DEPLOY_ROOMS = ROOMS.slice(0, 4);
  let redis;
  let lb;
  let replicas = [];
  let args;
  let pub;
  let py;
  let clients = [];
  before(async () => {
    redis = await startRedis();
    // A shorter heartbeat than the default (25 s + 20 s): socket.io-client can wedge in a
    // websocket upgrade when its replica goes away between the probe's pong and the end of
    // the polling pause (the polling transport stays paused, the probe is gone); only its
    // ping timeout gets it out, and that should not take 45 s here.
    args = ['--redis-url', redis.url, ...identity, '--drain-window', '2s', '--drain-deadline', '5s',
      '--ping-interval', '10s', '--ping-timeout', '5s'];
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    replicas = await Promise.all(ports.map((port) => startReplica(args, { port })));
    lb = await startHaproxy(ports);
    pub = createClient({ url: redis.url });
    await pub.connect();
  });
  after(async () => {
    for (const c of clients) c.close?.();
    await py?.stop();
    await lb?.stop();
    for (const r of replicas) await r.kill();
    await pub?.quit().catch(() => {});
    await redis?.stop();
  });

  test(`${JS} socket.io-client (half websocket-only, half default transports) and ${PY} python-socketio clients come back by themselves`, async (t) => {
    const t0 = Date.now();
    // Clients connect in waves, as users arrive.
    for (let i = 0; i < JS; i += 100) {
      for (let k = i; k < Math.min(JS, i + 100); k++) {
        clients.push(jsClient(lb.url, DEPLOY_ROOMS[k % DEPLOY_ROOMS.length], k % 2 === 0 ? 'js-ws' : 'js-default'));
      }
      await sleep(200);
    }
    py = await startPyClients(lb.url, Array.from({ length: PY }, (_, k) => ({
      token: 'tok', project: DEPLOY_ROOMS[k % DEPLOY_ROOMS.length], ...(k % 2 === 0 ? { transports: ['websocket'] } : {}),
    })));
    clients.push(...py.clients.map((rec, k) => pyView(rec, k % 2 === 0 ? 'py-ws' : 'py-default')));
    const down = await waitAllLive(clients, { timeoutMs: 40000 });
    assert.equal(down.length, 0, `before the deploy:\n${summary(clients)}\n${py.stderr().slice(-2000)}`);
    const perReplica = await Promise.all(replicas.map(async (r) => sample(await scrape(r.url), 'wsgate_connections')));
    t.diagnostic(`${clients.length} clients live in ${Date.now() - t0} ms; per replica ${perReplica}`);
    assert.ok(perReplica.every((n) => n > 0), `round robin reaches every replica: ${perReplica}`);

    // Updates throughout: every 100 ms one per room, numbered per room.
    const emitter = new Emitter(pub);
    const seq = Object.fromEntries(DEPLOY_ROOMS.map((r) => [r, 0]));
    const publishAll = () => { for (const r of DEPLOY_ROOMS) emitter.to(r).emit('update', { room: r, seq: ++seq[r], at: Date.now() }); };
    const ticker = setInterval(publishAll, 100);
    try {
      await sleep(1000);
      // The deploy: each replica drained (SIGTERM) and replaced on the same port, in turn.
      for (let i = 0; i < replicas.length; i++) {
        const old = replicas[i];
        const signalled = Date.now();
        old.child.kill('SIGTERM');
        const exit = await Promise.race([old.exited, sleep(10000).then(() => null)]);
        assert.ok(exit, `replica ${i} still running 10 s after SIGTERM`);
        assert.equal(exit.code, 0, `replica ${i} exit (signal ${exit.signal}); stderr:\n${old.stderr().slice(-3000)}`);
        replicas[i] = await startReplica(args, { port: old.port });
        t.diagnostic(`replica ${i}: drained and exited in ${exit.at - signalled} ms, back after ${Date.now() - signalled} ms; ` +
          `live now: ${clients.filter(live).length}/${clients.length}`);
        await sleep(1200); // haproxy sees it up again (rise 2 x 300 ms) before the next one goes
      }
      const down2 = await waitAllLive(clients, { timeoutMs: 30000 });
      const report = summary(clients);
      t.diagnostic(`after the deploy (${Date.now() - t0} ms):\n${report}`);
      assert.equal(down2.length, 0, `every client is connected and joined after the deploy:\n${report}`);
    } finally {
      clearInterval(ticker);
    }

    // The next update reaches every client.
    const last = { ...seq };
    publishAll();
    await waitUntil(() => clients.every((c) => c.seqs.includes(last[c.room] + 1)), {
      timeoutMs: 10000,
      what: `the next update at every client (missing at ${clients.filter((c) => !c.seqs.includes(last[c.room] + 1)).length})`,
    });

    // Reported, not asserted: pub/sub is at-most-once without room history.
    const rows = [];
    for (const kind of [...new Set(clients.map((c) => c.kind))]) {
      const of = clients.filter((c) => c.kind === kind);
      const outs = of.flatMap(outages).sort((a, b) => a - b);
      const miss = of.map((c) => missed(c, last[c.room]));
      rows.push(`${kind}: ${of.length} clients, ${outs.length} outages, longest ${outs.at(-1)} ms, p50 ${percentile(outs, 50)} ms, ` +
        `p99 ${percentile(outs, 99)} ms; missed updates ${miss.reduce((a, m) => a + m.missed, 0)} in all, ` +
        `max ${Math.max(...miss.map((m) => m.missed))} per client, ${miss.filter((m) => m.missed > 0).length} clients missed some; ` +
        `duplicates ${miss.reduce((a, m) => a + m.dup, 0)}`);
    }
    const published = Object.values(last).reduce((a, b) => a + b, 0);
    t.diagnostic(`${published} updates published over ${DEPLOY_ROOMS.length} rooms; test took ${Date.now() - t0} ms\n${rows.join('\n')}\n` +
      `disconnect reasons: ${JSON.stringify(countBy(clients.flatMap((c) => c.disconnects.map((d) => `${c.kind}: ${d.reason}`)), (r) => r))}\n` +
      `failed reconnection attempts: ${JSON.stringify(countBy(clients.flatMap((c) => c.connectErrors.map((e) => `${c.kind}: ${JSON.stringify(e.message)}`)), (r) => r))}`);
    console.log(`# rolling deploy: ${rows.join('\n# rolling deploy: ')}`);
    for (const c of clients) assert.ok(c.disconnects.length >= 1, `every client was moved at least once (${c.kind})`);
    const reasons = clients.flatMap((c) => c.disconnects.map((d) => `${c.kind.slice(0, 2)}: ${d.reason}`));
    const byReason = countBy(reasons, (r) => r);
    // What a drain may give: the transport closed (`transport close` / `transport error`;
    // python-socketio says `transport error`), or, rarely, `ping timeout` for a
    // socket.io-client wedged in its websocket upgrade (see the heartbeat above).
    const expected = new Set(['js: transport close', 'js: transport error', 'js: ping timeout', 'py: transport error']);
    assert.deepEqual(Object.keys(byReason).filter((r) => !expected.has(r)), [],
      `a drain closes the transport, never a namespace disconnect: ${JSON.stringify(byReason)}`);
    const pingTimeouts = byReason['js: ping timeout'] ?? 0;
    assert.ok(pingTimeouts <= clients.length / 20, `a drain closes transports, it does not leave clients to time out: ${JSON.stringify(byReason)}`);
  });
});

// ===========================================================================

describe('(b) a slow consumer', () => {
  let redis;
  let gw;
  let pub;
  let clients = [];
  before(async () => {
    redis = await startRedis();
    gw = await startGateway(['--redis-url', redis.url, ...identity, '--max-buffer', '8']);
    pub = createClient({ url: redis.url });
    await pub.connect();
  });
  after(async () => {
    for (const c of clients) c.close();
    await gw?.stop();
    await pub?.quit().catch(() => {});
    await redis?.stop();
  });

  test('is evicted and counted, reconnects by itself once it reads again, rejoins and gets updates', async (t) => {
    const slow = jsClient(gw.url, 'p5', 'js-ws');
    clients.push(slow);
    await waitUntil(() => live(slow), { timeoutMs: 10000, what: 'slow client joined' });
    const emitter = new Emitter(pub);

    // It stops reading: its TCP socket is no longer read, so the kernel buffers fill up,
    // then the server's writes stall and its queue (--max-buffer 8) fills.
    const tcp = slow.socket.io.engine.transport.ws._socket;
    tcp.pause();
    const pad = 'x'.repeat(64 * 1024);
    let n = 0;
    let evicted = false;
    const deadline = Date.now() + 30000;
    while (!evicted && Date.now() < deadline) {
      for (let k = 0; k < 10; k++) emitter.to('p5').emit('update', { seq: ++n, pad });
      await sleep(20);
      if (n % 100 === 0) evicted = sample(await scrape(gw.url), 'wsgate_slow_consumer_disconnects_total') >= 1;
    }
    assert.ok(evicted, `evicted within 30 s (${n} updates of 64 KiB published)`);
    t.diagnostic(`evicted after ${n} updates of 64 KiB`);
    assert.equal(slow.disconnects.length, 0, 'nothing seen while not reading');

    // It reads again: it sees the transport close, reconnects and rejoins by itself.
    tcp.resume();
    await waitUntil(() => slow.disconnects.length > 0, { timeoutMs: 15000, what: 'the slow client sees its disconnect' });
    const d = slow.disconnects[0];
    assert.ok(TRANSPORT_REASONS.includes(d.reason),
      `an evicted client is welcome back: reason ${d.reason} (socket.active ${d.active}), want ${TRANSPORT_REASONS.join(' or ')}`);
    await waitUntil(() => live(slow) && slow.connects.length === 2, { timeoutMs: 15000, what: 'reconnected and rejoined' });
    const marker = n + 1;
    const until = Date.now() + 10000;
    while (!slow.seqs.includes(marker) && Date.now() < until) {
      emitter.to('p5').emit('update', { seq: marker });
      await sleep(200);
    }
    assert.ok(slow.seqs.includes(marker), 'updates reach it again');
    assert.equal(sample(await scrape(gw.url), 'wsgate_slow_consumer_disconnects_total'), 1);
  });
});

// ===========================================================================

describe('(c) disconnectSockets from an emitter and from a Node server: the reasons a Node fleet gives', () => {
  let redis;
  let gw;
  let nodeIo;
  let httpServer;
  let pubClient;
  let subClient;
  let nodeUrl;
  const clients = [];
  before(async () => {
    redis = await startRedis();
    gw = await startGateway(['--redis-url', redis.url, ...identity]);
    pubClient = createClient({ url: redis.url });
    subClient = pubClient.duplicate();
    await Promise.all([pubClient.connect(), subClient.connect()]);
    httpServer = http.createServer();
    nodeIo = new Server(httpServer, { adapter: createAdapter(pubClient, subClient) });
    // The Node server's side of the same client contract (join_project with an ack).
    nodeIo.on('connection', (socket) => {
      socket.on('join_project', ({ projectId }, answer) => { socket.join(projectId); answer(`You have joined ${projectId}!`); });
    });
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
  });
  after(async () => {
    for (const c of clients) c.close();
    nodeIo?.close();
    httpServer?.closeAllConnections?.();
    await pubClient?.quit().catch(() => {});
    await subClient?.quit().catch(() => {});
    await gw?.stop();
    await redis?.stop();
  });

  test('disconnectSockets(false) and (true): a wsgate client sees what the Node server\'s client sees', async (t) => {
    const emitter = new Emitter(pubClient);
    const ops = [
      { name: 'emitter disconnectSockets(false)', room: 'p0', run: (r) => emitter.in(r).disconnectSockets(false) },
      { name: 'emitter disconnectSockets(true)', room: 'p1', run: (r) => emitter.in(r).disconnectSockets(true) },
      { name: 'Node server disconnectSockets(false)', room: 'p2', run: (r) => nodeIo.in(r).disconnectSockets(false) },
      { name: 'Node server disconnectSockets(true)', room: 'p3', run: (r) => nodeIo.in(r).disconnectSockets(true) },
    ];
    for (const op of ops) {
      op.clients = [];
      for (const kind of ['js-ws', 'js-default']) {
        op.clients.push({ server: 'node', c: jsClient(nodeUrl, op.room, kind) }, { server: 'wsgate', c: jsClient(gw.url, op.room, kind) });
      }
      clients.push(...op.clients.map((x) => x.c));
    }
    await waitUntil(() => clients.every(live), { timeoutMs: 10000, what: 'every client joined' });
    // The Node adapter listens by pattern, wsgate per room: both are subscribed once joined.
    await waitUntil(() => clients.every((c) => c.kind !== 'js-default' || c.socket.io.engine.transport.name === 'websocket'),
      { timeoutMs: 10000, what: 'upgrades' });

    for (const op of ops) {
      op.run(op.room);
      await waitUntil(() => op.clients.every((x) => x.c.disconnects.length > 0), {
        timeoutMs: 5000, what: `${op.name}: every client of ${op.room} disconnected`,
      });
    }
    // Longer than the first reconnection delay (1 s +/- 50 %) and a rejoin.
    await sleep(3000);
    const seen = (c) => ({
      reason: c.disconnects[0].reason,
      activeAfter: c.disconnects[0].active,
      reconnected: c.connects.length > 1 && live(c),
    });
    const table = [];
    for (const op of ops) {
      for (const kind of ['js-ws', 'js-default']) {
        const node = seen(op.clients.find((x) => x.server === 'node' && x.c.kind === kind).c);
        const ws = seen(op.clients.find((x) => x.server === 'wsgate' && x.c.kind === kind).c);
        table.push({ op: op.name, kind, node, wsgate: ws });
      }
    }
    t.diagnostic(table.map((r) => `${r.op} [${r.kind}]: Node ${JSON.stringify(r.node)}, wsgate ${JSON.stringify(r.wsgate)}`).join('\n'));
    for (const r of table) assert.deepEqual(r.wsgate, r.node, `${r.op} [${r.kind}]: the wsgate client sees what the Node client sees`);
  });
});

// ===========================================================================

describe('(d) "do not come back": token expiry and identity refusals keep the namespace disconnect', () => {
  const SECRET = 'continuity-secret';
  let gw;
  let py;
  const clients = [];
  before(async () => {
    gw = await startGateway(['--auth', 'jwt', '--jwt-secret', SECRET, '--authz', 'claim', '--jwt-leeway', '0s']);
  });
  after(async () => {
    for (const c of clients) c.close();
    await py?.stop();
    await gw?.stop();
  });

  test('at exp a stock client gets `io server disconnect` and stays offline (socket.io-client and python-socketio)', async (t) => {
    const minted = await runWsgate(['token', '--secret', SECRET, '--user', 'alice', '--projects', 'p0', '--ttl', '3s']);
    assert.equal(minted.code, 0, minted.stderr);
    const token = minted.stdout.trim();
    const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp * 1000;
    const js = [jsClient(gw.url, 'p0', 'js-ws', { token }), jsClient(gw.url, 'p0', 'js-default', { token })];
    clients.push(...js);
    py = await startPyClients(gw.url, [{ token, project: 'p0', transports: ['websocket'] }, { token, project: 'p0' }]);
    const pys = py.clients.map((rec, k) => pyView(rec, k === 0 ? 'py-ws' : 'py-default'));
    const all = [...js, ...pys];
    await waitUntil(() => all.every(live), { timeoutMs: 10000, what: 'every client joined before exp' });
    assert.ok(Date.now() < exp, 'joined before the token expired');
    const attempts = js.map(() => 0);
    js.forEach((c, i) => c.socket.io.on('reconnect_attempt', () => { attempts[i]++; }));

    await waitUntil(() => all.every((c) => c.disconnects.length > 0), { timeoutMs: exp - Date.now() + 5000, what: 'every client disconnected at exp' });
    await sleep(3000); // longer than a first reconnection delay
    for (const [i, c] of js.entries()) {
      assert.ok(c.events.some((e) => e.name === 'token_expired'), `${c.kind}: told why (token_expired)`);
      assert.deepEqual(c.disconnects.map((d) => d.reason), ['io server disconnect'], c.kind);
      assert.equal(c.socket.active, false, `${c.kind}: socket.active`);
      assert.equal(attempts[i], 0, `${c.kind}: no reconnection attempt`);
      assert.equal(c.connects.length, 1, c.kind);
    }
    for (const c of pys) {
      assert.ok(c.events.some((e) => e.name === 'token_expired'), `${c.kind}: told why (token_expired)`);
      assert.deepEqual(c.disconnects.map((d) => d.reason), ['server disconnect'], c.kind);
      assert.equal(c.connects.length, 1, `${c.kind}: no reconnection`);
      assert.deepEqual(c.connectErrors, [], `${c.kind}: no reconnection attempt`);
    }
    t.diagnostic(`disconnects (reason, ms after exp) ${JSON.stringify(all.map((c) => [c.kind, c.disconnects[0].reason, c.disconnects[0].at - exp]))}`);
  });

  test('over --max-connections-per-user a stock client is refused and does not retry', async () => {
    const limited = await startGateway([...identity, '--max-connections-per-user', '1']);
    let pyRefused;
    try {
      const first = jsClient(limited.url, 'p0', 'js-ws');
      clients.push(first);
      await waitUntil(() => live(first), { what: 'the first connection joined' });
      const second = jsClient(limited.url, 'p0', 'js-ws');
      clients.push(second);
      let attempts = 0;
      second.socket.io.on('reconnect_attempt', () => { attempts++; });
      pyRefused = await startPyClients(limited.url, [{ token: 'tok', project: 'p0', transports: ['websocket'] }]);
      const third = pyView(pyRefused.clients[0], 'py-ws');
      await waitUntil(() => second.connectErrors.length > 0 && third.connectErrors.length > 0, { what: 'both refused' });
      await sleep(2500); // longer than a first reconnection delay
      assert.deepEqual(second.connectErrors.map((e) => e.message), ['Too many connections']);
      assert.equal(second.socket.active, false, 'socket.active');
      assert.equal(attempts, 0, 'no reconnection attempt');
      assert.deepEqual(third.connectErrors.map((e) => e.message), [{ message: 'Too many connections' }]);
      assert.deepEqual(third.connects, [], 'python-socketio: no connection');
      assert.ok(live(first), 'the first connection is untouched');
    } finally {
      await pyRefused?.stop();
      await limited.stop();
    }
  });
});
