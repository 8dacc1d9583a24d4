// Zero-loss delivery (docs/history.md) with real processes: Redis, wsgate replicas, haproxy and
// the official client wrapped by clients/recover.mjs (the documented opt-in helper).
// (a) a rolling restart of 3 replicas behind haproxy while 500 clients receive 200
//     updates/s over 5 rooms: every client gets every update once, in order;
// (b) a replica SIGKILL: its clients reconnect through haproxy and recover everything;
// (c) Redis SIGKILL and restart without persistence: `recovered: false`, never a replay
//     of the lost history;
// (d) a client away longer than the history bound: `recovered: false, reason: trimmed`;
//     plus the contract edges (no opt-in: unchanged; no Redis: unavailable; bad since).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { io } from 'socket.io-client';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { startCluster } from './cluster.mjs';
import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';
import {
  startGateway, startRedis, runWsgate, connectClient, closeAllClients, ack, sleep, waitUntil,
  freePort, redisRaw, startReplica, startHaproxy,
} from './harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { withRecovery, seqOf } = await import(path.join(ROOT, 'clients', 'recover.mjs'));

const ROOMS = ['r0', 'r1', 'r2', 'r3', 'r4'];
let dir;
let identity;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'wsgate-recover-'));
  const tokens = path.join(dir, 'tokens.json');
  const perms = path.join(dir, 'permissions.json');
  await writeFile(tokens, JSON.stringify({ tok: 'u' }));
  await writeFile(perms, JSON.stringify({ u: ROOMS }));
  identity = ['--tokens', tokens, '--permissions', perms];
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

/**
 * A client as an application would write it with clients/recover.mjs: it joins `room` with
 * recovery and records the offsets of the `update`s it gets, its resets and join answers.
 */
function recoveringClient(url, room, opts = {}) {
  const socket = io(url, {
    forceNew: true, transports: ['websocket'], auth: { token: 'tok' },
    reconnectionDelay: 100, reconnectionDelayMax: 1000, ...opts,
  });
  const c = { socket, room, got: [], resets: [], answers: [] };
  socket.on('join_project', (a) => c.answers.push(a));
  c.rooms = withRecovery(socket, { onReset: (p, reason) => c.resets.push(reason) });
  c.rooms.on('update', (data, pos) => { c.got.push(pos ? `${pos.epoch}/${seqOf(pos.offset)}` : `plain:${JSON.stringify(data)}`); });
  c.rooms.join(room);
  return c;
}

const range = (epoch, from, to) => Array.from({ length: to - from + 1 }, (_, i) => `${epoch}/${from + i}`);

/** `redis`: a URL, or `{url, modeArgs}` (a Redis Cluster: `--redis-mode cluster`). */
function publish(redis, room, { count, every = '25ms', history = ['--history-size', '1000', '--history-ttl', '1m'], data = '{"v":1}' }) {
  const target = typeof redis === 'string' ? [redis] : [redis.url, ...redis.modeArgs];
  return runWsgate(['publish', '--redis-url', ...target, '--room', room, '--event', 'update', '--data', data,
    '--count', String(count), '--every', every, ...history], { timeoutMs: 60000 });
}

async function epochOf(c) {
  await waitUntil(() => c.answers.length > 0, { timeoutMs: 15000, what: 'join answer' });
  return c.answers.at(-1).position.epoch;
}

/** The client with the fewest updates, told in full (for timeouts). */
function slowest(clients) {
  const c = clients.reduce((a, b) => (b.got.length < a.got.length ? b : a));
  const seqs = c.got.map((g) => g.split('/').at(-1));
  const gaps = seqs.filter((s, i) => i > 0 && Number(s) !== Number(seqs[i - 1]) + 1).slice(0, 5);
  return `${c.got.length} in ${c.room}, connected ${c.socket.connected}, resets ${JSON.stringify(c.resets)}, ` +
    `answers ${JSON.stringify(c.answers).slice(0, 600)}, first jumps to ${gaps.join(' ')}, last ${seqs.slice(-3).join(' ')}`;
}

function closeClients(clients) {
  for (const c of clients) { try { c.socket.close(); } catch { /* ignore */ } }
}

// ===========================================================================

// On one Redis, and on a 3-shard Redis Cluster (fewer clients and updates: the same paths).
for (const mode of ['standalone', 'cluster']) {
describe(`a fleet behind haproxy: rolling restart and replica loss (${mode} Redis)`, () => {
  const N = mode === 'cluster' ? 200 : 500;
  const PER_ROOM = mode === 'cluster' ? 240 : 480; // 40 updates/s per room, 200/s in all, for 12 s (6 s)
  let redis;
  let lb;
  let replicas = [];
  let clients = [];
  let args;
  before(async () => {
    if (mode === 'cluster') {
      const c = await startCluster();
      redis = { url: c.seeds, modeArgs: ['--redis-mode', 'cluster'], stop: c.stop };
    } else {
      redis = await startRedis();
      redis.modeArgs = [];
    }
    args = ['--redis-url', redis.url, ...redis.modeArgs, ...identity, '--history-size', '1000', '--history-ttl', '1m',
      '--drain-window', '1500ms', '--drain-deadline', '4s'];
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    replicas = await Promise.all(ports.map((port) => startReplica(args, { port })));
    lb = await startHaproxy(ports);
  });
  after(async () => {
    closeClients(clients);
    await lb?.stop();
    for (const r of replicas) await r.kill();
    await redis?.stop();
  });

  test(`(a) rolling restart of 3 replicas, ${N} clients, 200 updates/s over 5 rooms: every update once, in order`, async () => {
    clients = Array.from({ length: N }, (_, i) => recoveringClient(lb.url, ROOMS[i % ROOMS.length]));
    await waitUntil(() => clients.every((c) => c.answers.length === 1), { timeoutMs: 30000, what: 'all joined' });
    const epochs = Object.fromEntries(await Promise.all(ROOMS.map(async (r) => [r, await epochOf(clients.find((c) => c.room === r))])));

    const publishing = Promise.all(ROOMS.map((r) => publish(redis, r, { count: PER_ROOM })));
    await sleep(1000);
    for (let i = 0; i < replicas.length; i++) {
      const old = replicas[i];
      old.child.kill('SIGTERM');
      const exit = await old.exited;
      assert.equal(exit.code, 0, `drained replica exit; stderr:\n${old.stderr()}`);
      replicas[i] = await startReplica(args, { port: old.port });
      await sleep(1500); // haproxy sees it up again (rise 2 x 300 ms) before the next one goes
    }
    for (const p of await publishing) assert.equal(p.code, 0, p.stderr);

    await waitUntil(() => clients.every((c) => c.got.length >= PER_ROOM), {
      timeoutMs: 30000, what: `all ${PER_ROOM} updates (slowest: ${slowest(clients)})`,
    });
    await sleep(300);
    const moved = clients.filter((c) => c.answers.length > 1).length;
    assert.ok(moved >= N / 2, `most clients were moved by the restarts and rejoined (${moved})`);
    for (const c of clients) {
      assert.deepEqual(c.got, range(epochs[c.room], 1, PER_ROOM), `client of ${c.room}: exactly 1..${PER_ROOM}`);
      assert.deepEqual(c.resets, [], 'nothing was lost');
      for (const a of c.answers.slice(1)) assert.equal(a.recovered, true, JSON.stringify(a));
    }
  });

  test('(b) a replica SIGKILLed mid-stream: its clients reconnect elsewhere and recover everything', async () => {
    const before = Object.fromEntries(ROOMS.map((r) => [r, clients.find((c) => c.room === r).got.length]));
    const answersBefore = clients.map((c) => c.answers.length);
    const MORE = 200;
    const publishing = Promise.all(ROOMS.map((r) => publish(redis, r, { count: MORE })));
    await sleep(1500);
    replicas[1].child.kill('SIGKILL');
    await replicas[1].exited;
    for (const p of await publishing) assert.equal(p.code, 0, p.stderr);
    await waitUntil(() => clients.every((c) => c.got.length >= before[c.room] + MORE), {
      timeoutMs: 30000, what: `all updates after the kill (slowest: ${slowest(clients)})`,
    });
    await sleep(300);
    const killedClients = clients.filter((c, i) => c.answers.length > answersBefore[i]);
    assert.ok(killedClients.length > 0, 'some clients were on the killed replica');
    for (const c of clients) {
      const epoch = c.got[0].split('/')[0];
      assert.deepEqual(c.got, range(epoch, 1, before[c.room] + MORE));
      assert.deepEqual(c.resets, []);
    }
    for (const c of killedClients) assert.equal(c.answers.at(-1).recovered, true);
  });
});
}

describe('Redis lost and restarted without persistence', () => {
  let redis;
  let gws = [];
  let clients = [];
  after(async () => {
    closeClients(clients);
    for (const g of gws) await g.stop();
    await redis?.stop();
  });

  test('(c) clients get recovered: false (epoch_changed) and never a replay of the lost history', async () => {
    redis = await startRedis();
    const args = ['--redis-url', redis.url, ...identity, '--history-size', '1000', '--history-ttl', '1m'];
    gws = [await startGateway(args), await startGateway(args)];
    clients = Array.from({ length: 20 }, (_, i) => recoveringClient(gws[i % 2].url, 'r0'));
    await waitUntil(() => clients.every((c) => c.answers.length === 1), { timeoutMs: 10000, what: 'joined' });
    const e1 = await epochOf(clients[0]);
    assert.equal((await publish(redis.url, 'r0', { count: 30, every: '2ms' })).code, 0);
    await waitUntil(() => clients.every((c) => c.got.length === 30), { what: '30 updates' });

    // SIGKILL (the harness guard kills it with -9) and a new empty Redis on the same port.
    const port = redis.port;
    redis.child.kill('SIGTERM');
    await redis.exited;
    redis = await startRedis({ port });
    for (const g of gws) await waitUntil(async () => (await fetch(`${g.url}/readyz`)).status === 200, { timeoutMs: 15000, what: 'replica reconnected' });

    // Half the clients reconnect (and rejoin with since); half stay connected.
    const movers = clients.filter((_, i) => i % 2 === 0);
    for (const c of movers) c.socket.io.engine.close();
    await waitUntil(() => movers.every((c) => c.answers.length === 2), { timeoutMs: 15000, what: 'rejoined' });
    for (const c of movers) {
      const a = c.answers[1];
      assert.equal(a.recovered, false, JSON.stringify(a));
      assert.equal(a.reason, 'epoch_changed');
      assert.notEqual(a.position.epoch, e1);
      assert.equal(a.position.offset, '0-0');
      assert.deepEqual(c.resets, ['epoch_changed']);
    }
    assert.equal((await publish(redis.url, 'r0', { count: 10, every: '2ms' })).code, 0);
    await waitUntil(() => clients.every((c) => c.got.length === 40), { what: '10 updates of the new epoch' });
    const e2 = movers[0].answers[1].position.epoch;
    for (const c of clients) {
      assert.deepEqual(c.got, [...range(e1, 1, 30), ...range(e2, 1, 10)], 'nothing replayed from the lost history');
      // Those that stayed learn it from the first update of the new epoch.
      assert.deepEqual(c.resets, ['epoch_changed']);
    }
  });
});

describe('history bound and contract edges', () => {
  let redis;
  let gw;
  let clients = [];
  before(async () => {
    redis = await startRedis();
    gw = await startGateway(['--redis-url', redis.url, ...identity, '--history-size', '100', '--history-ttl', '1s']);
  });
  after(async () => {
    closeClients(clients);
    closeAllClients();
    await gw?.stop();
    await redis?.stop();
  });

  test('(d) a client away longer than the history bound gets recovered: false (trimmed); a short absence recovers', async () => {
    const hist = ['--history-size', '100', '--history-ttl', '1s'];
    const away = recoveringClient(gw.url, 'r1', { reconnection: false });
    const brief = recoveringClient(gw.url, 'r1', { reconnection: false });
    clients = [away, brief];
    await waitUntil(() => clients.every((c) => c.answers.length === 1), { what: 'joined' });
    assert.equal((await publish(redis.url, 'r1', { count: 1, history: hist })).code, 0);
    await waitUntil(() => clients.every((c) => c.got.length === 1), { what: 'first update' });

    // The clients leave and come back by their own choice (disconnect(), later connect()),
    // so each absence is timed exactly: this tests the history's bound, not how a client
    // survives a server event (the other tests here use no manual connect()).
    away.socket.disconnect();
    assert.equal((await publish(redis.url, 'r1', { count: 2, every: '1ms', history: hist })).code, 0);
    await sleep(1300);
    brief.socket.disconnect();
    // This publish trims everything older than 1 s: the away client's updates 2 and 3.
    assert.equal((await publish(redis.url, 'r1', { count: 1, history: hist })).code, 0);
    brief.socket.connect();
    away.socket.connect();
    await waitUntil(() => clients.every((c) => c.answers.length === 2), { what: 'rejoined' });
    assert.equal(away.answers[1].recovered, false);
    assert.equal(away.answers[1].reason, 'trimmed');
    assert.deepEqual(away.resets, ['trimmed']);
    assert.equal(brief.answers[1].recovered, true);
    await waitUntil(() => brief.got.length === 4, { what: 'brief client recovered update 4' });
    assert.deepEqual(brief.got.map((g) => g.split('/')[1]), ['1', '2', '3', '4']);
    assert.deepEqual(away.got.map((g) => g.split('/')[1]), ['1'], 'no replay across the gap');
  });

  test('updates a replica missed live (its Redis subscription dropped) are noticed and replayed', async () => {
    const c = recoveringClient(gw.url, 'r4', { reconnection: false });
    clients.push(c);
    await waitUntil(() => c.answers.length === 1, { what: 'joined' });
    const publishing = publish(redis.url, 'r4', { count: 300, every: '2ms', history: ['--history-size', '1000', '--history-ttl', '1m'] });
    await sleep(200);
    // Pub/sub is at-most-once: while the replica resubscribes, updates pass it by.
    const killed = await redisRaw(redis.port, 'CLIENT KILL TYPE pubsub\r\n');
    assert.match(killed, /^:[1-9]/, killed);
    assert.equal((await publishing).code, 0);
    await waitUntil(() => c.got.length === 300, { timeoutMs: 15000, what: `300 updates (have ${c.got.length})` });
    assert.deepEqual(c.got.map((g) => Number(g.split('/')[1])), Array.from({ length: 300 }, (_, i) => i + 1));
    assert.deepEqual(c.resets, []);
    assert.ok(c.answers.length > 1 && c.answers.slice(1).every((a) => a.recovered === true), JSON.stringify(c.answers.slice(1)));
  });

  test('history messages stay readable by a Node socket.io server; emitter messages reach opted-in clients live', async () => {
    const pubClient = createClient({ url: redis.url });
    const subClient = pubClient.duplicate();
    await Promise.all([pubClient.connect(), subClient.connect()]);
    const httpServer = http.createServer();
    const nodeIo = new Server(httpServer, { adapter: createAdapter(pubClient, subClient) });
    nodeIo.on('connection', (socket) => socket.join('r3'));
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    try {
      const nodeClient = await connectClient(`http://127.0.0.1:${httpServer.address().port}`, { transports: ['websocket'] });
      const c = recoveringClient(gw.url, 'r3', { reconnection: false });
      clients.push(c);
      await waitUntil(() => c.answers.length === 1, { what: 'joined' });
      // wsgate subscribes to the room's channel, the Node adapter to a pattern.
      await waitUntil(async () => (await pubClient.sendCommand(['PUBSUB', 'NUMSUB', 'socket.io#/#r3#']))[1] >= 1
        && await pubClient.sendCommand(['PUBSUB', 'NUMPAT']) >= 1, { what: 'both servers subscribed' });
      const atNode = new Promise((resolve) => nodeClient.once('update', (...a) => resolve(a)));
      assert.equal((await publish(redis.url, 'r3', { count: 1, data: '{"x":1}' })).code, 0);
      assert.deepEqual(await atNode, [{ x: 1 }], 'the Node server delivers the update as it always did');
      new Emitter(pubClient).to('r3').emit('update', { from: 'emitter' });
      await waitUntil(() => c.got.length === 2, { what: 'both updates at the wsgate client' });
      assert.equal(c.got[1], 'plain:{"from":"emitter"}', 'emitter messages: live, no position');
      nodeClient.close();
    } finally {
      nodeIo.close();
      await pubClient.quit();
      await subClient.quit();
    }
  });

  test('a client that did not opt in sees exactly what it sees today', async () => {
    const plain = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'tok' } });
    assert.equal(await ack(plain, 'join_project', { projectId: 'r2' }), 'You have joined r2!');
    const got = new Promise((resolve) => plain.once('update', (...a) => resolve(a)));
    assert.equal((await publish(redis.url, 'r2', { count: 1, data: '{"x":1}' })).code, 0);
    assert.deepEqual(await got, [{ x: 1 }]);
    plain.close();
  });

  test('a bad since is a Validation error with a zod-shaped issue', async () => {
    const s = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'tok' } });
    const a = await ack(s, 'join_project', { projectId: 'r2', since: { epoch: 'e', offset: 'yesterday' } });
    assert.deepEqual(a, {
      status: 'error', message: 'Validation failed',
      errors: [{ validation: 'regex', code: 'invalid_string', message: 'Must be an offset such as 1700000000000-42', path: ['since', 'offset'] }],
    });
    s.close();
  });

  test('without Redis (one replica): recover answers recovered: false, reason unavailable', async () => {
    const lone = await startGateway([...identity]);
    try {
      const s = await connectClient(lone.url, { transports: ['websocket'], auth: { token: 'tok' } });
      const a = await ack(s, 'join_project', { projectId: 'r3', since: { epoch: 'e', offset: '1-1' } });
      assert.deepEqual(a, { status: 'ok', message: 'You have joined r3!', position: null, recovered: false, reason: 'unavailable' });
      s.close();
    } finally {
      await lone.stop();
    }
  });
});
