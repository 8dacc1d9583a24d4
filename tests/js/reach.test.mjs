// Reach one user or one socket (issue 16, docs/backplane.md "Reaching users and sockets"):
// 2 wsgate replicas + 1 Node socket.io server with @socket.io/redis-adapter on one Redis,
// driven by @socket.io/redis-emitter, by the Node server and by `wsgate publish`. Every
// operation must reach exactly the sockets Node would reach, on both kinds of server.
// The Node server puts its sockets in `user:<user>` itself (what a Node backend writes).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { createClient, createCluster } from 'redis';
import { Emitter } from '@socket.io/redis-emitter';
import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import { Server } from 'socket.io';
import {
  startGateway, startRedis, runWsgate, connectClient, closeAllClients, recorder, ack, sleep, waitUntil,
} from './harness.mjs';
import { startCluster } from './cluster.mjs';

const QUIET_MS = 600; // how long "receives nothing" is watched

function nonce() { return crypto.randomBytes(4).toString('hex'); }

/** A wsgate client of `token`, with an event recorder. */
async function wsgateClient(gw, token, name) {
  const socket = await connectClient(gw.url, { transports: ['websocket'], auth: { token } });
  const rec = recorder(socket);
  const disconnects = [];
  socket.on('disconnect', (reason) => disconnects.push(reason));
  socket.on('ask', (x, cb) => cb?.({ from: name, x }));
  return { socket, rec, disconnects, name };
}

/** A client of the Node server as user `user`. */
async function nodeClient(url, user, name) {
  const socket = await connectClient(url, { transports: ['websocket'], auth: { user } });
  const rec = recorder(socket);
  const disconnects = [];
  socket.on('disconnect', (reason) => disconnects.push(reason));
  socket.on('ask', (x, cb) => cb?.({ from: name, x }));
  return { socket, rec, disconnects, name };
}

/** Publish probes until every target got one (subscriptions are in place). */
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

/**
 * The clients both suites use: user_1 on both wsgate replicas and on the Node server, user_2
 * on a replica and on Node, user_3 on a replica. Returned once every user room's probe
 * (`publishProbe(room, id)`) reaches its members, with their recorders cleared.
 */
async function cast(gws, nodeUrl, publishProbe) {
  const a1 = await wsgateClient(gws[0], 'valid-token-1', 'a1(user_1@wsgate0)');
  const a2 = await wsgateClient(gws[1], 'valid-token-1', 'a2(user_1@wsgate1)');
  const b1 = await wsgateClient(gws[1], 'valid-token-2', 'b1(user_2@wsgate1)');
  const c1 = await wsgateClient(gws[0], 'valid-token-3', 'c1(user_3@wsgate0)');
  const an = await nodeClient(nodeUrl, 'user_1', 'an(user_1@node)');
  const bn = await nodeClient(nodeUrl, 'user_2', 'bn(user_2@node)');
  const all = [a1, a2, an, b1, bn, c1];
  await warmUp([a1, a2, an], (id) => publishProbe('user:user_1', id));
  await warmUp([b1, bn], (id) => publishProbe('user:user_2', id));
  for (const c of all) c.rec.clear();
  return { a1, a2, an, b1, bn, c1, all };
}

/** Each expected client gets `event` exactly once with `args`; nobody else gets it. */
async function expectExactly(event, all, expected, args) {
  await waitUntil(() => expected.every((m) => m.rec.of(event).length >= 1), {
    timeoutMs: 5000,
    what: `"${event}" at ${expected.filter((m) => m.rec.of(event).length < 1).map((m) => m.name).join(', ')}`,
  });
  await sleep(QUIET_MS);
  for (const c of all) {
    const got = c.rec.of(event);
    if (expected.includes(c)) {
      assert.equal(got.length, 1, `${c.name} should get "${event}" once, got ${JSON.stringify(got)}`);
      if (args !== undefined) assert.deepEqual(got[0], args, `${c.name} "${event}" arguments`);
    } else {
      assert.equal(got.length, 0, `${c.name} must not get "${event}", got ${JSON.stringify(got)}`);
    }
  }
}

describe('reach one user or one socket: 2 wsgate replicas + 1 Node server + emitter', () => {
  let redis;
  let gws = [];
  let pub; let adapterPub; let sub; let emitter;
  let io; let httpServer; let nodeUrl;
  // user_1 (alice): a1 on replica 0, a2 on replica 1, an on the Node server;
  // user_2 (bob): b1 on replica 1, bn on the Node server; user_3: c1 on replica 0.
  let a1; let a2; let an; let b1; let bn; let c1;
  let all;

  before(async () => {
    redis = await startRedis();
    gws = await Promise.all([0, 1].map(() => startGateway(['--redis-url', redis.url])));
    pub = createClient({ url: redis.url });
    adapterPub = pub.duplicate();
    sub = pub.duplicate();
    for (const c of [pub, adapterPub, sub]) c.on('error', () => {});
    await Promise.all([pub.connect(), adapterPub.connect(), sub.connect()]);
    emitter = new Emitter(pub);
    httpServer = http.createServer();
    io = new Server(httpServer, { adapter: createAdapter(adapterPub, sub, { requestsTimeout: 4000 }) });
    io.on('connection', (socket) => {
      const user = socket.handshake.auth?.user;
      if (typeof user === 'string') socket.join(`user:${user}`);
    });
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
    ({ a1, a2, an, b1, bn, c1, all } = await cast(gws, nodeUrl, (room, id) => emitter.to(room).emit('probe', id)));
  });

  after(async () => {
    closeAllClients();
    try { io?.close(); } catch { /* ignore */ }
    try { httpServer?.closeAllConnections?.(); } catch { /* ignore */ }
    for (const c of [pub, adapterPub, sub]) {
      try { await c?.quit(); } catch { /* ignore */ }
    }
    await Promise.all(gws.map((g) => g.stop()));
    await redis?.stop();
  });

  test('emitter.to("user:user_1") reaches all of user_1\'s sockets on every server, once each', async () => {
    emitter.to('user:user_1').emit('u1', 'hi', { n: 1 });
    await expectExactly('u1', all, [a1, a2, an], ['hi', { n: 1 }]);
  });

  test('the Node server\'s io.to("user:user_1") reaches the wsgate sockets of user_1', async () => {
    io.to('user:user_1').emit('u2', 'from-node');
    await expectExactly('u2', all, [a1, a2, an], ['from-node']);
  });

  test('`wsgate publish --user user_2` reaches user_2 on every server', async () => {
    const r = await runWsgate(['publish', '--redis-url', redis.url, '--user', 'user_2', '--event', 'u3', '--data', '"p"']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectExactly('u3', all, [b1, bn], ['p']);
  });

  test('emitter.to(socketId) reaches that one socket, wsgate or Node', async () => {
    emitter.to(a2.socket.id).emit('s1', 'one');
    await expectExactly('s1', all, [a2], ['one']);
    emitter.to(bn.socket.id).emit('s2', 'node-one');
    await expectExactly('s2', all, [bn], ['node-one']);
  });

  test('emitter.to([id1, id2]) reaches both sockets, on different servers', async () => {
    emitter.to([a1.socket.id, b1.socket.id, an.socket.id]).emit('s3', 3);
    await expectExactly('s3', all, [a1, b1, an], [3]);
  });

  test('the Node server\'s io.to(wsgateSocketId) and `wsgate publish --socket` reach that socket', async () => {
    io.to(c1.socket.id).emit('s4', 4);
    await expectExactly('s4', all, [c1], [4]);
    const r = await runWsgate(['publish', '--redis-url', redis.url, '--socket', a1.socket.id, '--event', 's5', '--data', '5']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectExactly('s5', all, [a1], [5]);
  });

  test('except(socketId) skips that socket, from the emitter and from the Node server', async () => {
    emitter.to('user:user_1').except(a1.socket.id).emit('e1', 1);
    await expectExactly('e1', all, [a2, an], [1]);
    io.except([b1.socket.id, an.socket.id]).emit('e2', 2);
    await expectExactly('e2', all, [a1, a2, bn, c1], [2]);
    emitter.except('user:user_1').emit('e3', 3);
    await expectExactly('e3', all, [b1, bn, c1], [3]);
  });

  test('in(socketId).socketsJoin / socketsLeave act on that socket only', async () => {
    emitter.in(a2.socket.id).socketsJoin('room_x');
    io.in(bn.socket.id).socketsJoin('room_x');
    io.in(c1.socket.id).socketsJoin('room_x');
    await warmUp([a2, bn, c1], (id) => { emitter.to('room_x').emit('probe_x', id); }, { event: 'probe_x' });
    for (const c of [a1, an, b1]) assert.deepEqual(c.rec.of('probe_x'), [], `${c.name} joined room_x`);
    emitter.in(a2.socket.id).socketsLeave('room_x');
    await sleep(300);
    emitter.to('room_x').emit('x1', 1);
    await expectExactly('x1', all, [bn, c1], [1]);
    io.in(c1.socket.id).socketsLeave('room_x');
    await sleep(300);
    emitter.to('room_x').emit('x2', 2);
    await expectExactly('x2', all, [bn], [2]);
  });

  test('fetchSockets names the socket-id room and the user room, as Node does', async () => {
    const one = await io.in(a2.socket.id).fetchSockets();
    assert.equal(one.length, 1, JSON.stringify(one.map((s) => s.id)));
    assert.equal(one[0].id, a2.socket.id);
    assert.deepEqual([...one[0].rooms], [a2.socket.id, 'user:user_1']);
    const users = await io.in('user:user_1').fetchSockets();
    assert.deepEqual(users.map((s) => s.id).sort(), [a1, a2, an].map((c) => c.socket.id).sort());
    const node = users.find((s) => s.id === an.socket.id);
    assert.deepEqual([...node.rooms], [an.socket.id, 'user:user_1'], 'the Node socket, for comparison');
    const ids = await io.in([b1.socket.id, c1.socket.id]).fetchSockets();
    assert.deepEqual(ids.map((s) => s.id).sort(), [b1.socket.id, c1.socket.id].sort());
  });

  test('a client cannot join or leave another user\'s room or a socket-id room', async () => {
    const refused = (payload) => ({
      status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: payload },
    });
    for (const projectId of ['user:user_2', 'user:user_1', b1.socket.id, a1.socket.id, 'user:']) {
      const got = await ack(a1.socket, 'join_project', { projectId });
      assert.deepEqual(got, refused({ projectId }), `join_project ${projectId}`);
    }
    // Leaving answers as for any room the socket is not in, and changes nothing.
    for (const projectId of ['user:user_1', a1.socket.id]) {
      assert.equal(await ack(a1.socket, 'leave_project', { projectId }), `You have left ${projectId}!`);
    }
    emitter.to('user:user_2').emit('spoof', 1);
    emitter.to(b1.socket.id).emit('spoof2', 1);
    emitter.to('user:user_1').emit('still', 1);
    emitter.to(a1.socket.id).emit('still2', 1);
    await expectExactly('spoof', all, [b1, bn], [1]);
    await expectExactly('spoof2', all, [b1], [1]);
    await expectExactly('still', all, [a1, a2, an], [1]);
    await expectExactly('still2', all, [a1], [1]);
  });

  test('the user room and the socket-id room count toward no room limit', async () => {
    const gw = await startGateway(['--redis-url', redis.url, '--max-rooms-per-socket', '1']);
    try {
      const s = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'valid-token-2' } });
      assert.equal(await ack(s, 'join_project', { projectId: 'project_one' }), 'You have joined project_one!');
      const second = await ack(s, 'join_project', { projectId: 'project_two' });
      assert.equal(second?.message, 'Too many rooms', JSON.stringify(second));
      s.close();
    } finally {
      await gw.stop();
    }
    // A Node server waits for one answer per subscriber of the request channel: the next
    // tests need the extra replica gone from Redis's count too.
    await waitUntil(async () => {
      const r = await pub.sendCommand(['PUBSUB', 'NUMSUB', 'socket.io-request#/#']);
      return Number(r[1]) === 3;
    }, { what: 'node + 2 wsgate replicas on socket.io-request#/#' });
  });

  test('the Node server\'s emitWithAck gets every wsgate client\'s ack, within its timeout', async () => {
    const t0 = Date.now();
    const toUser = await io.timeout(4000).to('user:user_1').emitWithAck('ask', 'q1');
    assert.ok(Date.now() - t0 < 3500, `emitWithAck to a room took ${Date.now() - t0} ms (waited for the timeout)`);
    assert.deepEqual(toUser.map((r) => r.from).sort(), [a1, a2, an].map((c) => c.name).sort());
    for (const r of toUser) assert.equal(r.x, 'q1');
    const toAll = await io.timeout(4000).emitWithAck('ask', 'q2');
    assert.deepEqual(toAll.map((r) => r.from).sort(), all.map((c) => c.name).sort());
    const toOne = await io.timeout(4000).to(a2.socket.id).emitWithAck('ask', 'q3');
    assert.deepEqual(toOne, [{ from: a2.name, x: 'q3' }]);
    const except = await io.timeout(4000).except('user:user_1').emitWithAck('ask', 'q4');
    assert.deepEqual(except.map((r) => r.from).sort(), [b1, bn, c1].map((c) => c.name).sort());
  });

  test('a wsgate client that does not ack makes emitWithAck time out, as a Node client would', async () => {
    const mute = await connectClient(gws[1].url, { transports: ['websocket'], auth: { token: 'valid-token-3' } });
    try {
      await assert.rejects(io.timeout(1000).to('user:user_3').emitWithAck('ask', 'q5'), /timed out/);
    } finally {
      mute.close();
    }
  });

  test('in(socketId).disconnectSockets(true) disconnects that socket only', async () => {
    emitter.in(b1.socket.id).disconnectSockets(true);
    await waitUntil(() => b1.disconnects.length > 0, { what: 'b1 disconnected' });
    io.in(c1.socket.id).disconnectSockets();
    await waitUntil(() => c1.disconnects.length > 0, { what: 'c1 disconnected' });
    await sleep(QUIET_MS);
    for (const c of [a1, a2, an, bn]) assert.deepEqual(c.disconnects, [], `${c.name} disconnected`);
    for (const g of gws) assert.equal(g.alive(), true);
  });
});

// Redis Cluster: the Node server uses createShardedAdapter (dynamic subscription mode) and
// `wsgate publish --redis-mode cluster` publishes; the classic emitter has no sharded mode.
// Not covered: `io.to(oneWsgateSocketId)` from a Node server, which the adapter sends to
// that room's own shard channel (a replica has none per socket; docs/backplane.md).
describe('reach one user or one socket on Redis Cluster: 2 wsgate replicas + 1 Node sharded server', () => {
  let cluster;
  let gws = [];
  let pubClient; let subClient;
  let io; let httpServer; let nodeUrl;
  let a1; let a2; let an; let b1; let bn; let c1;
  let all;
  const publish = (args) => runWsgate(['publish', '--redis-mode', 'cluster', '--redis-url', cluster.seeds, ...args]);

  before(async () => {
    cluster = await startCluster();
    gws = await Promise.all([0, 1].map(() => startGateway(['--redis-mode', 'cluster', '--redis-url', cluster.seeds])));
    pubClient = createCluster({ rootNodes: cluster.rootNodes });
    subClient = pubClient.duplicate();
    pubClient.on('error', () => {});
    subClient.on('error', () => {});
    await Promise.all([pubClient.connect(), subClient.connect()]);
    httpServer = http.createServer();
    io = new Server(httpServer, { adapter: createShardedAdapter(pubClient, subClient) });
    io.on('connection', (socket) => {
      const user = socket.handshake.auth?.user;
      if (typeof user === 'string') socket.join(`user:${user}`);
    });
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
    for (const g of gws) {
      await waitUntil(async () => (await fetch(`${g.url}/readyz`)).status === 200, { timeoutMs: 15000, what: 'wsgate ready' });
    }
    ({ a1, a2, an, b1, bn, c1, all } = await cast(gws, nodeUrl, (room, id) => { io.to(room).emit('probe', id); }));
  });

  after(async () => {
    closeAllClients();
    try { io?.close(); } catch { /* ignore */ }
    try { httpServer?.closeAllConnections?.(); } catch { /* ignore */ }
    await Promise.allSettled([pubClient?.disconnect(), subClient?.disconnect()]);
    await Promise.all(gws.map((g) => g.stop()));
    await cluster?.stop();
  });

  test('the Node server\'s io.to("user:user_1") reaches user_1 on every server, once each', async () => {
    io.to('user:user_1').emit('cu1', 'hi');
    await expectExactly('cu1', all, [a1, a2, an], ['hi']);
  });

  test('`wsgate publish --redis-mode cluster --user` and `--socket` reach the user / the socket', async () => {
    let r = await publish(['--user', 'user_2', '--event', 'cu2', '--data', '2']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectExactly('cu2', all, [b1, bn], [2]);
    r = await publish(['--socket', a2.socket.id, '--event', 'cs1', '--data', '1']);
    assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
    await expectExactly('cs1', all, [a2], [1]);
  });

  test('Node io.to([ids]) and except(socketId) act on exactly those sockets', async () => {
    io.to([a1.socket.id, b1.socket.id, an.socket.id]).emit('cs2', 2);
    await expectExactly('cs2', all, [a1, b1, an], [2]);
    io.to('user:user_1').except(a1.socket.id).emit('ce1', 1);
    await expectExactly('ce1', all, [a2, an], [1]);
    io.except([b1.socket.id, an.socket.id]).emit('ce2', 2);
    await expectExactly('ce2', all, [a1, a2, bn, c1], [2]);
  });

  test('the Node server\'s emitWithAck gets the wsgate clients\' acks through the sharded adapter', async () => {
    const toUser = await io.timeout(4000).to('user:user_1').emitWithAck('ask', 'cq1');
    assert.deepEqual(toUser.map((r) => r.from).sort(), [a1, a2, an].map((c) => c.name).sort());
    const toAll = await io.timeout(4000).emitWithAck('ask', 'cq2');
    assert.deepEqual(toAll.map((r) => r.from).sort(), all.map((c) => c.name).sort());
  });

  test('Node in(socketId).socketsJoin / fetchSockets / disconnectSockets act on that socket', async () => {
    io.in(a2.socket.id).socketsJoin('croom');
    io.in(c1.socket.id).socketsJoin('croom');
    await warmUp([a2, c1], (id) => { io.to('croom').emit('probe_c', id); }, { event: 'probe_c' });
    for (const c of [a1, an, b1, bn]) assert.deepEqual(c.rec.of('probe_c'), [], `${c.name} joined croom`);
    const one = await io.in(a2.socket.id).fetchSockets();
    assert.equal(one.length, 1);
    assert.deepEqual([...one[0].rooms], [a2.socket.id, 'user:user_1', 'croom']);
    io.in(a2.socket.id).socketsLeave('croom');
    await sleep(300);
    io.to('croom').emit('cx', 1);
    await expectExactly('cx', all, [c1], [1]);
    io.in(b1.socket.id).disconnectSockets(true);
    await waitUntil(() => b1.disconnects.length > 0, { what: 'b1 disconnected' });
    await sleep(QUIET_MS);
    for (const c of [a1, a2, an, bn, c1]) assert.deepEqual(c.disconnects, [], `${c.name} disconnected`);
  });
});
