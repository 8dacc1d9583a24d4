// Operating wsgate with real processes and the official client:
// - /metrics under load, checked by `promtool check metrics`; JSON logs carry no token;
// - limits: --max-connections and the per-socket event rate, each refusal answered;
// - graceful drain: SIGTERM one of 3 replicas holding 2,000 clients; every client
//   reconnects to another replica, rejoins and receives the next publish; exit code 0;
// - deploy/local-fleet.sh: haproxy in front of 3 replicas, 300 clients with the default
//   transports (long-polling, then websocket) through it.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startGateway, startRedis, runWsgate, connectClient, expectConnectError, closeAllClients,
  recorder, ack, sleep, waitUntil, freePort, gatewayBin,
} from './harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function scrape(url) {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** The value of one sample line `name{labels} value` (labels as written by the exporter). */
function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Connect `n` clients in parallel batches; each joins `project`. */
async function connectMany(urls, n, { token = 'valid-token-1', project = 'project_one', opts = { transports: ['websocket'] }, batch = 200 } = {}) {
  const clients = [];
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, async (_, k) => {
      const idx = i + k;
      const url = urls[idx % urls.length];
      const socket = await connectClient(url, { ...opts, auth: { token } }, { timeoutMs: 20000 });
      const rec = recorder(socket);
      assert.equal(await socket.timeout(20000).emitWithAck('join_project', { projectId: project }), `You have joined ${project}!`);
      return { idx, url, socket, rec };
    }));
    clients.push(...part);
  }
  return clients;
}

function closeAll(clients) {
  for (const c of clients) { try { c.socket.close(); } catch { /* ignore */ } }
}

// ===========================================================================

describe('metrics and logs under load', () => {
  let redis;
  let gw;
  let clients = [];
  before(async () => {
    redis = await startRedis();
    gw = await startGateway(['--redis-url', redis.url, '--log-format', 'json'], { env: { RUST_LOG: 'wsgate=debug,info' } });
  });
  after(async () => { closeAll(clients); closeAllClients(); await gw?.stop(); await redis?.stop(); });

  test('/metrics reports connects, joins, events, deliveries, latency; promtool accepts it; no token in the logs', async () => {
    clients = await connectMany([gw.url], 100);
    await expectConnectError(gw.url, { transports: ['websocket'], auth: { token: 'wrong-token' } });
    const denied = await ack(clients[0].socket, 'join_project', { projectId: 'project_two' });
    assert.equal(denied.message, 'Project not found');
    // 200 stamped publishes through Redis, each to 100 sockets.
    const pub = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--event', 'chat',
      '--data', '{"n":1}', '--count', '200', '--every', '5ms'], { timeoutMs: 30000 });
    assert.equal(pub.code, 0, pub.stderr);
    await waitUntil(() => clients.every((c) => c.rec.of('chat').length === 200), { timeoutMs: 15000, what: '200 chats at every client' });

    const text = await scrape(gw.url);
    assert.equal(sample(text, 'wsgate_connections'), 100);
    assert.equal(sample(text, 'wsgate_connects_total{result="ok"}'), 100);
    assert.equal(sample(text, 'wsgate_connects_total{result="unauthorized"}'), 1);
    assert.equal(sample(text, 'wsgate_joins_total{result="ok"}'), 100);
    assert.equal(sample(text, 'wsgate_joins_total{result="denied"}'), 1);
    assert.equal(sample(text, 'wsgate_events_received_total{event="join_project"}'), 101);
    assert.equal(sample(text, 'wsgate_backplane_messages_total{kind="broadcast"}'), 200);
    assert.equal(sample(text, 'wsgate_deliveries_total{outcome="sent"}'), 20000);
    assert.equal(sample(text, 'wsgate_deliveries_total{outcome="dropped_buffer_full"}'), 0);
    assert.equal(sample(text, 'wsgate_fanout_seconds_count'), 200);
    assert.equal(sample(text, 'wsgate_publish_latency_seconds_count'), 200);
    assert.equal(sample(text, 'wsgate_backplane_connected'), 1);
    // project_one and the clients' user room (`user:<id>`: they share one demo user).
    assert.equal(sample(text, 'wsgate_backplane_subscriptions'), 2);
    assert.ok(text.includes('# HELP wsgate_deliveries_total'), 'metrics carry help text');
    assert.ok(!/project_one|user_1|valid-token/.test(text), 'no room, user or token as a label');
    if (process.env.WSGATE_METRICS_SAMPLE) (await import('node:fs')).writeFileSync(process.env.WSGATE_METRICS_SAMPLE, text);

    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);

    const lines = gw.stderr().split('\n').filter((l) => l.trim() !== '');
    for (const l of lines) JSON.parse(l); // every line is JSON
    assert.ok(lines.some((l) => l.includes('"connected"')), 'connection lifecycle logged at debug');
    assert.ok(lines.some((l) => l.includes('refused handshake')), 'refusals logged at debug');
    assert.ok(!gw.stderr().includes('valid-token') && !gw.stderr().includes('wrong-token'), 'no token in any log line');
  });
});

describe('limits', () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--max-connections', '3', '--max-event-rate', '5', '--event-burst', '5']);
  });
  after(async () => { closeAllClients(); await gw?.stop(); });

  test('a handshake over --max-connections gets HTTP 503 (connect_error, the client retries) and is counted', async () => {
    const opts = { transports: ['websocket'], auth: { token: 'valid-token-1' } };
    const held = [await connectClient(gw.url, opts), await connectClient(gw.url, opts), await connectClient(gw.url, opts)];
    // Engine.IO sessions count from the handshake on: the fourth is refused before any
    // session exists; socket.io-client reports a transport error and would retry.
    const err = await expectConnectError(gw.url, opts);
    assert.equal(err.message, 'websocket error');
    assert.match(String(err.description?.message ?? err.description), /503/);
    const polling = await expectConnectError(gw.url, { ...opts, transports: ['polling'] });
    assert.equal(polling.message, 'xhr poll error');
    assert.equal(polling.description, 503);
    held[0].close();
    await waitUntil(async () => sample(await scrape(gw.url), 'wsgate_engine_sessions') === 2, { what: 'a slot freed' });
    (await connectClient(gw.url, opts)).close();
    assert.equal(sample(await scrape(gw.url), 'wsgate_network_refusals_total{limit="sessions"}'), 2);
    for (const s of held) s.close();
  });

  test('events over --max-event-rate get an exception "Rate limited" (and the ack), and are counted', async () => {
    await waitUntil(async () => sample(await scrape(gw.url), 'wsgate_connections') === 0, { what: 'no clients left' });
    const socket = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
    const rec = recorder(socket);
    const answers = await Promise.all(Array.from({ length: 20 }, () => socket.timeout(5000).emitWithAck('message', 'x')));
    const ok = answers.filter((a) => a === 'Hello world!').length;
    const limited = answers.filter((a) => JSON.stringify(a) === JSON.stringify(
      { status: 'error', message: 'Rate limited', cause: { pattern: 'message' } }));
    assert.ok(ok >= 5 && ok < 20, `burst of 5 served, the rest refused (served ${ok})`);
    assert.equal(ok + limited.length, 20, `every event answered: ${JSON.stringify(answers)}`);
    await rec.waitFor('exception', (a) => JSON.stringify(a[0]) === JSON.stringify(
      { status: 'error', message: 'Rate limited', cause: { pattern: 'message' } }));
    assert.equal(sample(await scrape(gw.url), 'wsgate_events_limited_total'), limited.length);
    // The bucket refills: after a second the socket is served again.
    await sleep(1100);
    assert.equal(await ack(socket, 'message', 'x'), 'Hello world!');
    socket.close();
  });
});

/** A replica started without the harness's guard, so the test can send it SIGTERM. */
async function startSignalable(args) {
  const child = spawn(gatewayBin(), ['serve', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20000); });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  const address = await new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('no WSGATE_LISTENING')), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /WSGATE_LISTENING=(\S+)/.exec(out);
      if (m) { clearTimeout(t); resolve(m[1]); }
    });
  });
  return { url: `http://${address}`, child, exited, stderr: () => stderr };
}

describe('graceful drain on SIGTERM', () => {
  const N = 2000;
  let redis;
  let others = [];
  let draining;
  let clients = [];
  before(async () => {
    redis = await startRedis();
    const args = ['--redis-url', redis.url, '--drain-window', '3s', '--drain-deadline', '8s'];
    draining = await startSignalable(args);
    others = [await startGateway(args), await startGateway(args)];
  });
  after(async () => {
    closeAll(clients);
    closeAllClients();
    try { draining?.child.kill('SIGKILL'); } catch { /* ignore */ }
    for (const g of others) await g.stop();
    await redis?.stop();
  });

  test(`${N} clients: the drained replica's clients reconnect elsewhere, rejoin and get the next publish; exit 0 in time`, async () => {
    const urls = [draining.url, others[0].url, others[1].url];
    clients = await connectMany(urls, N);
    const onDrained = clients.filter((c) => c.url === draining.url);
    const moved = [];
    const disconnectTimes = [];
    const reconnections = onDrained.map((c, i) => new Promise((resolve, reject) => {
      c.socket.once('disconnect', async (reason) => {
        disconnectTimes.push(Date.now());
        try {
          // The transport is closed, never a namespace disconnect: a stock client comes back
          // by itself (tests/js/continuity.test.mjs drives stock clients through haproxy).
          assert.equal(reason, 'transport close');
          // These clients connect to replicas directly, with reconnection off: what the load
          // balancer does for a stock client, send it to another replica.
          const url = others[i % 2].url;
          const socket = await connectClient(url, { transports: ['websocket'], auth: { token: 'valid-token-1' } }, { timeoutMs: 20000 });
          const rec = recorder(socket);
          assert.equal(await socket.timeout(20000).emitWithAck('join_project', { projectId: 'project_one' }), 'You have joined project_one!');
          const m = { idx: c.idx, url, socket, rec };
          moved.push(m);
          resolve(m);
        } catch (e) { reject(e); }
      });
    }));

    const signalled = Date.now();
    draining.child.kill('SIGTERM');
    await waitUntil(async () => (await fetch(`${draining.url}/readyz`)).status === 503, { timeoutMs: 1000, intervalMs: 20, what: '/readyz 503 at once' });
    const refused = await expectConnectError(draining.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
    assert.ok(refused, 'a new client is refused while draining');

    await Promise.all(reconnections);
    const exit = await draining.exited;
    assert.equal(exit.code, 0, `exit code (signal ${exit.signal}); stderr:\n${draining.stderr()}`);
    assert.ok(exit.at - signalled < 8000, `exited ${exit.at - signalled} ms after SIGTERM, before the 8 s deadline`);
    const spread = Math.max(...disconnectTimes) - Math.min(...disconnectTimes);
    assert.ok(spread > 1000, `disconnects spread over the 3 s window, not all at once (spread ${spread} ms)`);

    const live = clients.filter((c) => c.url !== draining.url).concat(moved);
    assert.equal(live.length, N);
    const pub = await runWsgate(['publish', '--redis-url', redis.url, '--room', 'project_one', '--event', 'chat', '--data', '"after drain"']);
    assert.equal(pub.code, 0, pub.stderr);
    await waitUntil(() => live.every((c) => c.rec.of('chat').some((a) => a[0] === 'after drain')), {
      timeoutMs: 15000, what: `"after drain" at ${live.filter((c) => !c.rec.of('chat').length).length} clients`,
    });
    clients = live;
  });
});

/** Run deploy/local-fleet.sh in its own process group; resolves once it prints FLEET_READY. */
async function startFleet(env) {
  const child = spawn(path.join(ROOT, 'deploy', 'local-fleet.sh'), [], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  const kill = (sig) => { try { process.kill(-child.pid, sig); } catch { /* gone */ } };
  process.once('exit', () => kill('SIGKILL'));
  let out = '';
  child.stderr.on('data', (d) => { out = (out + d).slice(-20000); });
  const ready = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no FLEET_READY within 30 s:\n${out}`)), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /FLEET_READY lb=(\S+) redis=(\S+) replicas=(\S+)/.exec(out);
      if (m) { clearTimeout(t); resolve({ lb: m[1], redis: m[2], replicas: m[3].split(',') }); }
    });
    child.on('exit', (code) => { clearTimeout(t); reject(new Error(`local-fleet.sh exited ${code}:\n${out}`)); });
  });
  return {
    ...ready,
    async stop() {
      kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
      kill('SIGKILL');
    },
  };
}

describe('haproxy in front of a local fleet (deploy/local-fleet.sh)', () => {
  const N = 300;
  let fleet;
  let clients = [];
  before(async () => {
    const [redisPort, p1, p2, p3, lbPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    fleet = await startFleet({
      WSGATE_BIN: gatewayBin(), REDIS_PORT: String(redisPort), PORTS: `${p1} ${p2} ${p3}`, LB_PORT: String(lbPort),
    });
  });
  after(async () => { closeAll(clients); closeAllClients(); await fleet?.stop(); });

  test(`${N} clients with the default transports through the load balancer join and receive a publish`, async () => {
    // Default transports: a long-polling handshake, then the websocket upgrade. The
    // cookie haproxy sets keeps every request of a session on one replica.
    clients = await connectMany([fleet.lb], N, { opts: { withCredentials: true }, batch: 100 });
    await waitUntil(() => clients.every((c) => c.socket.io.engine.transport.name === 'websocket'), { timeoutMs: 10000, what: 'upgrades' });
    const perReplica = await Promise.all(fleet.replicas.map(async (r) => sample(await scrape(r), 'wsgate_connections')));
    assert.equal(perReplica.reduce((a, b) => a + b, 0), N, `connections per replica ${perReplica}`);
    assert.ok(perReplica.every((n) => n > 0), `round robin reaches every replica: ${perReplica}`);
    const pub = await runWsgate(['publish', '--redis-url', fleet.redis, '--room', 'project_one', '--event', 'chat', '--data', '"via lb"']);
    assert.equal(pub.code, 0, pub.stderr);
    await waitUntil(() => clients.every((c) => c.rec.of('chat').some((a) => a[0] === 'via lb')), { timeoutMs: 10000, what: 'publish at every client' });
  });
});
