// Backplane contract (docs/backplane.md) with the official Node packages:
// - a fleet of 3 wsgate replicas on one Redis, driven by @socket.io/redis-emitter
//   and by `wsgate publish`;
// - a mixed fleet: a Node socket.io server with @socket.io/redis-adapter beside
//   2 wsgate replicas on one Redis.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { createClient } from 'redis';
import { Emitter } from '@socket.io/redis-emitter';
import { createAdapter } from '@socket.io/redis-adapter';
import { Server } from 'socket.io';
import {
  startGateway, startRedis, runWsgate, connectClient, closeAllClients, recorder, ack, sleep, waitUntil,
} from './harness.mjs';

const QUIET_MS = 600; // how long "receives nothing" is watched

function nonce() { return crypto.randomBytes(4).toString('hex'); }

/** A connected wsgate client that has joined `rooms`, with an event recorder. */
async function member(gw, token, rooms, opts = { transports: ['websocket'] }) {
  const socket = await connectClient(gw.url, { ...opts, auth: { token } });
  for (const projectId of rooms) {
    assert.equal(await ack(socket, 'join_project', { projectId }), `You have joined ${projectId}!`);
  }
  const rec = recorder(socket);
  const disconnects = [];
  socket.on('disconnect', (reason) => disconnects.push(reason));
  return { socket, rec, disconnects, name: `${token}@${gw.port}[${rooms.join(',')}]` };
}

/**
 * Publish `probe` events (through `publishProbe(id)`) every 100 ms until every
 * client in `targets` has received one carrying the same id. Makes sure the
 * replicas' room subscriptions are in place before exact counts are checked.
 */
async function warmUp(targets, publishProbe, { timeoutMs = 8000, event = 'probe' } = {}) {
  const id = nonce();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await publishProbe(id);
    await sleep(100);
    if (targets.every((t) => t.rec.of(event).some((a) => a[0] === id))) return;
  }
  const missing = targets.filter((t) => !t.rec.of(event).some((a) => a[0] === id)).map((t) => t.name);
  throw new Error(`warm-up probe never reached: ${missing.join(', ')}`);
}

/** Wait until each expected client got `event` `count` times, then QUIET_MS more, and check exact counts everywhere. */
async function expectDelivery(event, all, expectedMembers, expectedArgs, { count = 1, timeoutMs = 5000 } = {}) {
  await waitUntil(() => expectedMembers.every((m) => m.rec.of(event).length >= count), {
    timeoutMs,
    what: `"${event}" at ${expectedMembers.filter((m) => m.rec.of(event).length < count).map((m) => m.name).join(', ')}`,
  });
  await sleep(QUIET_MS);
  for (const c of all) {
    const got = c.rec.of(event);
    if (expectedMembers.includes(c)) {
      assert.equal(got.length, count, `${c.name} should get "${event}" exactly ${count}x, got ${JSON.stringify(got)}`);
      if (expectedArgs !== undefined) {
        for (const args of got) assert.deepEqual(args, expectedArgs, `${c.name} "${event}" arguments`);
      }
    } else {
      assert.equal(got.length, 0, `${c.name} must not get "${event}", got ${JSON.stringify(got)}`);
    }
  }
}

async function numsub(client, channel) {
  const r = await client.sendCommand(['PUBSUB', 'NUMSUB', channel]);
  return Number(r[1]);
}

// ===========================================================================

describe('fleet: 3 wsgate replicas on one Redis', () => {
  let redis;
  let gws = [];
  let pub;
  let emitter;
  let a1; let a2; let a3; let n1; let n2; let n3;
  let all;

  before(async () => {
    redis = await startRedis();
    gws = await Promise.all([0, 1, 2].map(() => startGateway(['--redis-url', redis.url])));
    pub = createClient({ url: redis.url });
    pub.on('error', () => {});
    await pub.connect();
    emitter = new Emitter(pub);
    a1 = await member(gws[0], 'valid-token-1', ['project_one']);
    a2 = await member(gws[1], 'valid-token-2', ['project_one', 'project_two']);
    a3 = await member(gws[2], 'valid-token-2', ['project_one'], {}); // polling upgraded to websocket
    n1 = await member(gws[0], 'valid-token-3', ['project_three']);
    n2 = await member(gws[2], 'valid-token-1', []);
    n3 = await member(gws[1], 'valid-token-3', ['project_three'], { transports: ['polling'], upgrade: false });
    all = [a1, a2, a3, n1, n2, n3];
    await warmUp([a1, a2, a3], (id) => emitter.to('project_one').emit('probe', id));
    await warmUp([n1, n3], (id) => emitter.to('project_three').emit('probe', id));
  });

  after(async () => {
    closeAllClients();
    try { await pub?.quit(); } catch { /* ignore */ }
    await Promise.all(gws.map((g) => g.stop()));
    await redis?.stop();
  });

  test('every replica subscribes to the request channel', async () => {
    assert.ok(await numsub(pub, 'socket.io-request#/#') >= 3,
      `PUBSUB NUMSUB socket.io-request#/# = ${await numsub(pub, 'socket.io-request#/#')}`);
  });

  test('emitter.to(room).emit reaches room members on every replica, nobody else', async () => {
    emitter.to('project_one').emit('update', 'r1', { n: 1, s: 'é\u{1F600}' });
    await expectDelivery('update', all, [a1, a2, a3], ['r1', { n: 1, s: 'é\u{1F600}' }]);
  });

  test('emitter to several rooms delivers once per socket', async () => {
    emitter.to('project_one').to('project_three').emit('multi', 1);
    await expectDelivery('multi', all, [a1, a2, a3, n1, n3], [1]);
    emitter.to(['project_one', 'project_two']).emit('multi2', 2); // a2 is in both rooms
    await expectDelivery('multi2', all, [a1, a2, a3], [2]);
  });

  test('emitter.except skips the excluded room', async () => {
    emitter.to('project_one').except('project_two').emit('exc', 'e');
    await expectDelivery('exc', all, [a1, a3], ['e']);
    emitter.except('project_one').emit('exc2', 'e2'); // everyone but project_one members
    await expectDelivery('exc2', all, [n1, n2, n3], ['e2']);
  });

  test('emitter.emit (no room) reaches every client of every replica', async () => {
    emitter.emit('everyone', 'hello', 42, null, [1, { x: true }]);
    await expectDelivery('everyone', all, all, ['hello', 42, null, [1, { x: true }]]);
  });

  test('binary arguments (msgpack bin) arrive as binary attachments', async () => {
    emitter.to('project_one').emit('bin', Buffer.from([1, 2, 3, 0, 255]), { inner: Buffer.from([7]) });
    await expectDelivery('bin', all, [a1, a2, a3]);
    for (const m of [a1, a2, a3]) {
      const [[b, obj]] = m.rec.of('bin');
      assert.ok(Buffer.isBuffer(b) || b instanceof ArrayBuffer, `${m.name}: first argument is not binary: ${JSON.stringify(b)}`);
      assert.deepEqual([...new Uint8Array(b)], [1, 2, 3, 0, 255]);
      assert.deepEqual([...new Uint8Array(obj.inner)], [7]);
    }
  });

  test('`wsgate publish` reaches room members on every replica', async () => {
    const r = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--event', 'cli', '--data', '"x"']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectDelivery('cli', all, [a1, a2, a3], ['x']);
    const r2 = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--room', 'project_three',
      '--except', 'project_two', '--event', 'cli2', '--data', '{"k":[1,2]}']);
    assert.equal(r2.code, 0, `wsgate publish failed: ${r2.stderr}`);
    await expectDelivery('cli2', all, [a1, a3, n1, n3], [{ k: [1, 2] }]);
    const r3 = await runWsgate(['publish', '--redis-url', redis.url, '--event', 'cli3', '--data', '"all"']);
    assert.equal(r3.code, 0, `wsgate publish failed: ${r3.stderr}`);
    await expectDelivery('cli3', all, all, ['all']);
  });

  test('socketsJoin adds the selected sockets of every replica to a room', async () => {
    emitter.in('project_three').socketsJoin('extra');
    emitter.in('project_one').socketsJoin(['room_a', 'room_b']);
    await warmUp([n1, n3], (id) => emitter.to('extra').emit('probe_extra', id), { event: 'probe_extra' });
    await warmUp([a1, a2, a3], (id) => emitter.to('room_a').emit('probe_a', id), { event: 'probe_a' });
    await warmUp([a1, a2, a3], (id) => emitter.to('room_b').emit('probe_b', id), { event: 'probe_b' });
    for (const c of [a1, a2, a3, n2]) assert.deepEqual(c.rec.of('probe_extra'), [], `${c.name} is not in "extra"`);
    for (const c of [n1, n2, n3]) assert.deepEqual(c.rec.of('probe_a'), [], `${c.name} is not in "room_a"`);
    emitter.to('extra').emit('in_extra', 'x');
    await expectDelivery('in_extra', all, [n1, n3], ['x']);
  });

  test('socketsLeave removes the selected sockets of every replica from a room', async () => {
    emitter.in('project_one').socketsLeave('room_a');
    emitter.in('project_two').socketsLeave('room_b'); // only a2
    await sleep(700);
    emitter.to('room_a').emit('after_leave_a', 1);
    emitter.to('room_b').emit('after_leave_b', 2);
    await expectDelivery('after_leave_b', all, [a1, a3], [2]);
    for (const c of all) assert.deepEqual(c.rec.of('after_leave_a'), [], `${c.name} left room_a`);
  });

  test('a replica unsubscribes from a room channel when its last local member leaves', async () => {
    // project_two has one member in the whole fleet: a2 on replica 1
    await waitUntil(async () => await numsub(pub, 'socket.io#/#project_two#') === 1,
      { what: 'one subscriber on socket.io#/#project_two#' });
    assert.equal(await ack(a2.socket, 'leave_project', { projectId: 'project_two' }), 'You have left project_two!');
    await waitUntil(async () => await numsub(pub, 'socket.io#/#project_two#') === 0,
      { what: 'no subscriber left on socket.io#/#project_two#' });
    assert.equal(await ack(a2.socket, 'join_project', { projectId: 'project_two' }), 'You have joined project_two!');
    await waitUntil(async () => await numsub(pub, 'socket.io#/#project_two#') === 1,
      { what: 'subscription again on socket.io#/#project_two#' });
  });

  test('a steady stream for 7 s: every member on every replica gets every message, in order', async () => {
    // 350 messages, one every 20 ms: longer than any periodic health check of the
    // backplane connection, so a subscriber that reconnects (and loses what was
    // published meanwhile) shows up here.
    const N = 350;
    for (let i = 0; i < N; i++) {
      emitter.to('project_one').emit('seq', i);
      await sleep(20);
    }
    await waitUntil(() => [a1, a2, a3].every((m) => m.rec.of('seq').length >= N),
      { timeoutMs: 5000, what: 'all seq messages' }).catch(() => {});
    await sleep(300);
    for (const m of [a1, a2, a3]) {
      const got = m.rec.of('seq').map((a) => a[0]);
      const missing = [];
      for (let i = 0; i < N; i++) if (!got.includes(i)) missing.push(i);
      assert.deepEqual(missing, [], `${m.name} lost ${missing.length}/${N} messages (e.g. ${missing.slice(0, 10).join(',')})`);
      assert.deepEqual(got, [...Array(N).keys()], `${m.name}: out of order or duplicated`);
    }
    for (const c of [n1, n2, n3]) assert.deepEqual(c.rec.of('seq'), [], `${c.name} is not in project_one`);
  });

  test('disconnectSockets on a room disconnects its members on every replica only', async () => {
    emitter.in('project_three').disconnectSockets();
    await waitUntil(() => n1.disconnects.length > 0 && n3.disconnects.length > 0, { what: 'project_three members disconnected' });
    assert.deepEqual(n1.disconnects, ['io server disconnect']);
    assert.deepEqual(n3.disconnects, ['io server disconnect']);
    await sleep(QUIET_MS);
    for (const c of [a1, a2, a3, n2]) {
      assert.deepEqual(c.disconnects, [], `${c.name} must stay connected`);
      assert.equal(await ack(c.socket, 'message'), 'Hello world!');
    }
  });

  test('disconnectSockets(true) on everyone disconnects every remaining client', async () => {
    emitter.disconnectSockets(true);
    await waitUntil(() => [a1, a2, a3, n2].every((c) => c.disconnects.length > 0), { what: 'every client disconnected' });
    for (const c of [a1, a2, a3, n2]) assert.equal(c.socket.connected, false);
    for (const g of gws) assert.equal(g.alive(), true, 'replica still running');
  });
});

describe('fleet: a replica\'s own publications are delivered once (demo push through Redis)', () => {
  let redis;
  let gws = [];
  before(async () => {
    redis = await startRedis();
    gws = [
      await startGateway(['--redis-url', redis.url, '--demo-push', '200ms']),
      await startGateway(['--redis-url', redis.url]),
    ];
  });
  after(async () => {
    closeAllClients();
    await Promise.all(gws.map((g) => g.stop()));
    await redis?.stop();
  });

  test('members on the publishing replica and on another replica each get every update exactly once', async () => {
    const local = await member(gws[0], 'valid-token-1', ['project_one']);
    const remote = await member(gws[1], 'valid-token-2', ['project_one']);
    await waitUntil(() => local.rec.of('chat').length >= 2 && remote.rec.of('chat').length >= 2, { what: 'demo chat on both replicas' });
    local.rec.clear();
    remote.rec.clear();
    await sleep(1500);
    for (const m of [local, remote]) {
      const texts = m.rec.of('chat').map((a) => a[0]);
      assert.ok(texts.length >= 4, `${m.name} got only ${texts.length} updates in 1.5 s`);
      assert.equal(new Set(texts).size, texts.length, `${m.name} got duplicates: ${JSON.stringify(texts)}`);
      for (const t of texts) assert.match(t, /^Hello, project_one! Time is -- .+ --$/);
    }
  });

  test('/readyz is 200 with Redis up and 503 once Redis is down; /healthz stays 200', async () => {
    for (const g of gws) {
      const r = await fetch(`${g.url}/readyz`, { signal: AbortSignal.timeout(3000) });
      assert.equal(r.status, 200, `readyz with Redis up: ${r.status}`);
    }
    await redis.stop();
    await waitUntil(async () => {
      const r = await fetch(`${gws[1].url}/readyz`, { signal: AbortSignal.timeout(2000) });
      return r.status === 503;
    }, { timeoutMs: 10000, what: '/readyz to answer 503 after Redis went down' });
    const h = await fetch(`${gws[1].url}/healthz`, { signal: AbortSignal.timeout(2000) });
    assert.equal(h.status, 200, '/healthz while Redis is down');
    for (const g of gws) assert.equal(g.alive(), true, 'a replica must survive losing Redis');
  });

  test('`wsgate publish` exits non-zero with a message when Redis is unreachable', async () => {
    const r = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--data', '"x"'], { timeoutMs: 20000 });
    assert.notEqual(r.code, 0, 'exit code');
    assert.ok(r.stderr.trim().length > 0, 'an error message on stderr');
  });
});

// ===========================================================================

describe('mixed fleet: Node socket.io server (@socket.io/redis-adapter) + 2 wsgate replicas', () => {
  let redis;
  let gws = [];
  let pubClient; let subClient;
  let io;
  let httpServer;
  let nodeUrl;
  let nodeClient; let w1; let w2; let w3;
  let wall;

  before(async () => {
    redis = await startRedis();
    gws = await Promise.all([0, 1].map(() => startGateway(['--redis-url', redis.url])));
    pubClient = createClient({ url: redis.url });
    subClient = pubClient.duplicate();
    pubClient.on('error', () => {});
    subClient.on('error', () => {});
    await Promise.all([pubClient.connect(), subClient.connect()]);
    httpServer = http.createServer();
    io = new Server(httpServer, { adapter: createAdapter(pubClient, subClient, { requestsTimeout: 4000 }) });
    io.on('connection', (socket) => {
      const room = socket.handshake.auth?.room;
      if (typeof room === 'string') socket.join(room);
    });
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
    // let the adapter's subscriptions settle
    await waitUntil(async () => await numsub(pubClient, 'socket.io-request#/#') >= 3,
      { what: 'node + 2 wsgate replicas subscribed to socket.io-request#/#', timeoutMs: 8000 });

    const nc = await connectClient(nodeUrl, { transports: ['websocket'], auth: { room: 'project_one' } });
    nodeClient = { socket: nc, rec: recorder(nc), disconnects: [], name: 'node-server client[project_one]' };
    w1 = await member(gws[0], 'valid-token-1', ['project_one']);
    w2 = await member(gws[1], 'valid-token-2', ['project_one']);
    w3 = await member(gws[1], 'valid-token-3', ['project_three']);
    wall = [nodeClient, w1, w2, w3];
    await warmUp([nodeClient, w1, w2], (id) => { io.to('project_one').emit('probe', id); });
  });

  after(async () => {
    closeAllClients();
    try { io?.close(); } catch { /* ignore */ }
    try { httpServer?.closeAllConnections?.(); } catch { /* ignore */ }
    try { await pubClient?.quit(); } catch { /* ignore */ }
    try { await subClient?.quit(); } catch { /* ignore */ }
    await Promise.all(gws.map((g) => g.stop()));
    await redis?.stop();
  });

  test('io.to("project_one").emit from the Node server reaches wsgate clients in project_one', async () => {
    io.to('project_one').emit('chat', 'from-node', { n: 1 });
    await expectDelivery('chat', wall, [nodeClient, w1, w2], ['from-node', { n: 1 }]);
  });

  test('`wsgate publish --room project_one --event chat` reaches the Node server\'s client in project_one', async () => {
    nodeClient.rec.clear(); w1.rec.clear(); w2.rec.clear(); w3.rec.clear();
    const r = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--event', 'chat', '--data', '"x"']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectDelivery('chat', wall, [nodeClient, w1, w2], ['x']);
  });

  test('io.fetchSockets() counts the wsgate sockets too and does not time out', async () => {
    const t0 = Date.now();
    const sockets = await io.fetchSockets();
    const ms = Date.now() - t0;
    assert.equal(sockets.length, 4, `fetchSockets returned ${sockets.length}: ${JSON.stringify(sockets.map((s) => [s.id, [...s.rooms]]))}`);
    assert.equal(new Set(sockets.map((s) => s.id)).size, 4, 'socket ids are distinct');
    assert.ok(ms < 3500, `fetchSockets took ${ms} ms`);
    const inRoom = await io.in('project_one').fetchSockets();
    assert.equal(inRoom.length, 3, `io.in("project_one").fetchSockets() returned ${inRoom.length}`);
    for (const s of inRoom) assert.ok([...s.rooms].includes('project_one'), `socket ${s.id} rooms ${JSON.stringify([...s.rooms])}`);
  });

  test('Node server socketsJoin / emit / disconnectSockets act on wsgate sockets', async () => {
    io.in('project_one').socketsJoin('node_room');
    await warmUp([nodeClient, w1, w2], (id) => { io.to('node_room').emit('probe_nr', id); }, { event: 'probe_nr' });
    assert.deepEqual(w3.rec.of('probe_nr'), []);
    io.in('project_three').disconnectSockets();
    await waitUntil(() => w3.disconnects.length > 0, { what: 'wsgate client in project_three disconnected by the Node server' });
    await sleep(QUIET_MS);
    assert.deepEqual(w1.disconnects, []);
    assert.deepEqual(w2.disconnects, []);
    for (const g of gws) assert.equal(g.alive(), true);
  });
});
