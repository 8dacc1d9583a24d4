// Mixed fleet on Redis Cluster (docs/backplane.md, sharded pub/sub): a Node socket.io server
// with `createShardedAdapter` (node-redis v4 cluster clients) beside 2 wsgate replicas in
// `--redis-mode cluster`. A room broadcast from either side reaches the other side's
// clients, and `wsgate publish --redis-mode cluster` reaches both.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { createCluster } from 'redis';
import { createShardedAdapter } from '@socket.io/redis-adapter';
import { Server } from 'socket.io';
import {
  startGateway, runWsgate, connectClient, closeAllClients, recorder, ack, sleep, waitUntil,
} from './harness.mjs';
import { startCluster } from './cluster.mjs';

function nonce() { return crypto.randomBytes(4).toString('hex'); }

describe('mixed fleet on Redis Cluster: Node createShardedAdapter + 2 wsgate replicas', () => {
  let cluster;
  let gws = [];
  let pubClient; let subClient;
  let io; let httpServer; let nodeUrl;
  let nodeClient; let w1; let w2;

  before(async () => {
    cluster = await startCluster();
    // Replica 0 also pushes the seed's periodic `chat` (a broadcast that starts in wsgate).
    gws = await Promise.all([['--demo-push', '300ms'], []].map((extra) => startGateway(
      ['--redis-mode', 'cluster', '--redis-url', cluster.seeds, ...extra])));
    pubClient = createCluster({ rootNodes: cluster.rootNodes });
    subClient = pubClient.duplicate();
    pubClient.on('error', () => {});
    subClient.on('error', () => {});
    await Promise.all([pubClient.connect(), subClient.connect()]);
    httpServer = http.createServer();
    io = new Server(httpServer, { adapter: createShardedAdapter(pubClient, subClient) });
    io.on('connection', (socket) => {
      const room = socket.handshake.auth?.room;
      if (typeof room === 'string') socket.join(room);
      // A Node-side broadcast to a room, asked for by the test through its client.
      socket.on('shout', (room2, payload) => io.to(room2).emit('from_node', payload));
    });
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
    for (const g of gws) {
      await waitUntil(async () => (await fetch(`${g.url}/readyz`)).status === 200, { timeoutMs: 15000, what: 'wsgate ready' });
    }
    nodeClient = await connectClient(nodeUrl, { transports: ['websocket'], auth: { room: 'project_two' } });
    const join = async (gw) => {
      const s = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'valid-token-2' } });
      assert.equal(await ack(s, 'join_project', { projectId: 'project_two' }), 'You have joined project_two!');
      return { socket: s, rec: recorder(s) };
    };
    w1 = await join(gws[0]);
    w2 = await join(gws[1]);
    nodeClient.rec = recorder(nodeClient);
  });

  after(async () => {
    closeAllClients();
    io?.close();
    await Promise.allSettled([pubClient?.disconnect(), subClient?.disconnect()]);
    await Promise.all(gws.map((g) => g.stop()));
    await cluster?.stop();
  });

  test('a Node server broadcast reaches the clients of both wsgate replicas', async () => {
    const id = nonce();
    // The Node server subscribes to the room channel when its member joins; publish until seen.
    await waitUntil(async () => {
      nodeClient.emit('shout', 'project_two', { id });
      await sleep(150);
      return w1.rec.of('from_node').some((a) => a[0]?.id === id) && w2.rec.of('from_node').some((a) => a[0]?.id === id);
    }, { timeoutMs: 8000, what: 'Node broadcast at both wsgate clients' });
    // The Node server's own client gets it too (local delivery), once per shout.
    assert.ok(nodeClient.rec.of('from_node').some((a) => a[0]?.id === id));
  });

  test('a wsgate replica broadcast reaches the Node server client and the other replica', async () => {
    const want = /^Hello, project_two! Time is -- .* --$/;
    await waitUntil(() => [nodeClient, w2].every((c) => c.rec.of('chat').some((a) => want.test(a[0]))),
      { timeoutMs: 5000, what: 'demo push at the Node client and at replica 1' });
  });

  test('wsgate publish --redis-mode cluster reaches the Node server and both replicas', async () => {
    const id = nonce();
    const r = await runWsgate(['publish', '--redis-mode', 'cluster', '--redis-url', cluster.seeds,
      '--room', 'project_two', '--event', 'cli', '--data', JSON.stringify({ id })]);
    assert.equal(r.code, 0, r.stderr);
    await waitUntil(() => [nodeClient, w1, w2].every((c) => c.rec.of('cli').some((a) => a[0]?.id === id)),
      { timeoutMs: 5000, what: '"cli" at Node and wsgate clients' });
    await sleep(400);
    for (const c of [nodeClient, w1, w2]) assert.equal(c.rec.of('cli').filter((a) => a[0]?.id === id).length, 1);
  });

  test('a publish with room history (the sharded format in msgpack, history flags appended) reaches Node and both replicas once', async () => {
    const id = nonce();
    const r = await runWsgate(['publish', '--redis-mode', 'cluster', '--redis-url', cluster.seeds,
      '--history-size', '100', '--room', 'project_two', '--event', 'hist', '--data', JSON.stringify({ id })]);
    assert.equal(r.code, 0, r.stderr);
    await waitUntil(() => [nodeClient, w1, w2].every((c) => c.rec.of('hist').some((a) => a[0]?.id === id)),
      { timeoutMs: 5000, what: '"hist" at Node and wsgate clients' });
    await sleep(400);
    for (const c of [nodeClient, w1, w2]) {
      const got = c.rec.of('hist').filter((a) => a[0]?.id === id);
      assert.equal(got.length, 1);
      // The flags are the adapter's business: clients get the data only (these replicas
      // run without recovery, so no offset is added either).
      assert.deepEqual(got[0], [{ id }]);
    }
  });

  test('socketsJoin and fetchSockets from the Node server are acted on and answered by wsgate', async () => {
    // socketsJoin puts the wsgate clients into a new room fleet-wide...
    io.in('project_two').socketsJoin('extra_room');
    const id = nonce();
    // ...so a Node broadcast to it reaches them (publish until their subscriptions are up).
    await waitUntil(async () => {
      io.to('extra_room').emit('extra', { id });
      await sleep(150);
      return [w1, w2].every((c) => c.rec.of('extra').some((a) => a[0]?.id === id));
    }, { timeoutMs: 5000, what: 'broadcast to a socketsJoin room at the wsgate clients' });
    // 1 Node socket + 1 per wsgate replica: wsgate answered on the requester's channel.
    const sockets = await io.in('project_two').fetchSockets();
    assert.equal(sockets.length, 3, JSON.stringify(sockets.map((s) => s.id)));
  });
});
