// Issue 14: Socket.IO's stock connection-state recovery, with the official socket.io-client
// and no helper library. The application code of every client is only "on `connect`, emit
// `join_project` for my rooms" (a fifth of them use the idiom the Socket.IO docs give,
// "join unless `socket.recovered`", which shows the rooms come back without asking). No
// test calls `connect()` by hand: the library reconnects by itself and sends back the `pid`
// of the CONNECT reply and the last offset it saw (the last string argument of an event).
//
// Updates come from `wsgate publish` with room history; each update's data is `{"room": R}`
// and its last argument the offset, a string the test treats as opaque except for two
// things: the same update carries the same offset for every client, and offsets grow (digit
// runs compared as numbers: `1796044132593887`, `<ms>-<n>`). The updates of a room are
// numbered 1, 2, 3... by the offsets any client (or a witness connected to a replica
// directly) received, and each client's sequence is checked against that numbering.
//
// (a) a rolling SIGTERM-and-restart of 3 replicas behind haproxy, 500 clients (half
//     websocket-only, half default transports; a tenth in two rooms), 200 updates/s over 5
//     rooms: every client gets every update of each of its rooms exactly once, in order, and
//     `socket.recovered === true` after every reconnection;
// (b) a replica SIGKILLed under the same load: the same;
// (c) away (haproxy down) longer than --connection-state-recovery: `recovered === false`,
//     none of the updates published while away, live again after its own rejoin;
// (d) access to a room revoked while away (--authz redis, SREM + `wsgate revoke`): none of
//     that room's updates after the reconnection, its other room recovered;
// (e) --connection-state-recovery without --history-size is refused at start-up;
// (f) the last event a client got before leaving was a `join_project` answer, a string that
//     socket.io-client keeps as its offset and sends back: still recovered.
// Plus `wsgate_session_recoveries_total{result=...}` on /metrics.

import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { createClient } from 'redis';
import {
  startRedis, startReplica, startHaproxy, runWsgate, gatewayBin, sleep, waitUntil, freePort,
} from './harness.mjs';
import { startCluster } from './cluster.mjs';

const ROOMS = ['r0', 'r1', 'r2', 'r3', 'r4'];
const HIST = ['--history-size', '5000', '--history-ttl', '2m'];
const RESULTS = ['recovered', 'expired', 'trimmed', 'epoch_changed', 'unavailable'];

let dir;
let tokensFile;
let identity;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'wsgate-csr-'));
  tokensFile = path.join(dir, 'tokens.json');
  const perms = path.join(dir, 'permissions.json');
  await writeFile(tokensFile, JSON.stringify({ tok: 'u', tokv: 'v', tokw: 'w' }));
  await writeFile(perms, JSON.stringify({ u: ROOMS, v: ROOMS, w: ROOMS }));
  identity = ['--tokens', tokensFile, '--permissions', perms];
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

/** Fails with a clear message when the binary has no --connection-state-recovery yet. */
function requireFeature() {
  let help = '';
  try { help = execFileSync(gatewayBin(), ['serve', '--help'], { encoding: 'utf8' }); } catch (e) { help = String(e.stdout ?? e.message); }
  assert.match(help, /--connection-state-recovery/, `${gatewayBin()} serve --help has no --connection-state-recovery`);
}

// ---------------------------------------------------------------------------
// a stock client
// ---------------------------------------------------------------------------

/** Offsets in order: digit runs compared as numbers (`1796044132593887`, `<ms>-<n>`). */
function cmpOffset(a, b) {
  const da = a.match(/\d+/g) ?? [];
  const db = b.match(/\d+/g) ?? [];
  for (let i = 0; i < Math.min(da.length, db.length); i++) {
    const x = BigInt(da[i]);
    const y = BigInt(db[i]);
    if (x !== y) return x < y ? -1 : 1;
  }
  if (da.length !== db.length) return da.length - db.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Number each room's updates 1, 2, 3... by their offsets, over every update any of
 * `clients` received; sets `n` on each received update. Returns {room: distinct offsets}.
 */
function numberUpdates(clients, key = (room, offset) => offset) {
  const byRoom = {};
  for (const c of clients) {
    for (const [room, list] of Object.entries(c.got)) {
      byRoom[room] ??= new Set();
      for (const g of list) byRoom[room].add(key(room, g.offset));
    }
  }
  const counts = {};
  for (const [room, set] of Object.entries(byRoom)) {
    const rank = new Map([...set].sort(cmpOffset).map((o, i) => [o, i + 1]));
    counts[room] = rank.size;
    for (const c of clients) for (const g of c.got[room] ?? []) g.n = rank.get(key(room, g.offset));
  }
  return counts;
}

/**
 * On a Redis Cluster an offset is `c<shard>.<order>_<shard>.<order>...`: the replica's
 * progress in every shard. An update of a room is the order in the room's own shard (the
 * primary owning the room channel's slot), so `key` picks that part. Returns the key
 * function for `redis` (identity on one Redis).
 */
async function updateKeys(redis, rooms) {
  if (!redis.cluster) return (room, offset) => offset;
  const node = createClient({ url: `redis://127.0.0.1:${redis.ports[0]}` });
  await node.connect();
  const nodes = String(await node.sendCommand(['CLUSTER', 'NODES']));
  const masters = nodes.split('\n').map((l) => l.trim().split(' ')).filter((f) => f.length > 8 && f[2].includes('master'));
  const shardOf = {};
  for (const room of rooms) {
    const slot = Number(await node.sendCommand(['CLUSTER', 'KEYSLOT', `socket.io#/#${room}#`]));
    const owner = masters.find((f) => f.slice(8).some((r) => {
      const [a, b = a] = r.split('-').map(Number);
      return slot >= a && slot <= b;
    }));
    assert.ok(owner, `a primary owns slot ${slot} of ${room}: ${nodes}`);
    shardOf[room] = owner[0].slice(0, 8);
  }
  await node.quit();
  return (room, offset) => {
    if (!offset.startsWith('c')) return `not a cluster offset: ${offset}`;
    const part = offset.slice(1).split('_').find((p) => p.startsWith(`${shardOf[room]}.`));
    return part ? part.split('.')[1] : `no part for shard ${shardOf[room]}: ${offset}`;
  };
}

/** Problems when the clients together did not see exactly `published[room]` distinct offsets. */
function offsetCountProblems(counts, published) {
  return Object.entries(published).filter(([room, k]) => counts[room] !== k).map(([room, k]) =>
    `room ${room}: ${k} updates published, but the clients together got ${counts[room] ?? 0} distinct offsets ` +
    '(more: the same update came with different offsets, e.g. a replay or another replica stamping it differently; ' +
    'fewer: no client got some of them)');
}

let nextId = 0;

/**
 * A stock socket.io-client client of `rooms`. `kind`: 'ws' (websocket only) or 'default'
 * (long-polling, then the upgrade; it sends haproxy's affinity cookie back, as a browser
 * does). `idiom`: 'join-always' (join on every `connect`) or 'join-unless-recovered' (the
 * Socket.IO docs' `if (!socket.recovered) join`). The rest only records what happens.
 */
function stockClient(url, rooms, kind, { idiom = 'join-always', token = 'tok' } = {}) {
  const opts = {
    forceNew: true, auth: { token }, reconnectionDelay: 300, reconnectionDelayMax: 1000,
  };
  if (kind === 'ws') opts.transports = ['websocket'];
  else opts.withCredentials = true;
  const socket = io(url, opts);
  const c = {
    id: nextId++, kind, idiom, rooms, token, socket,
    connects: [], // {at, recovered, had: {room: updates received before this connect}}
    disconnects: [], connectErrors: [], answers: [], exceptions: [], bad: [],
    got: Object.fromEntries(rooms.map((r) => [r, []])), // room -> [{n, conn, at, offset}]
    other: [], // updates of rooms it never joined
  };
  // ---- the application code ----
  const join = (room) => {
    const conn = c.connects.length;
    socket.timeout(10000).emit('join_project', { projectId: room }, (err, answer) => {
      c.answers.push({ conn, room, ok: !err && answer === `You have joined ${room}!`, answer: err ? `ack error: ${err.message}` : answer, at: Date.now() });
    });
  };
  socket.on('connect', () => {
    const had = Object.fromEntries(Object.entries(c.got).map(([r, g]) => [r, g.length]));
    c.connects.push({ at: Date.now(), recovered: socket.recovered, had });
    if (idiom === 'join-unless-recovered' && socket.recovered) return;
    for (const room of rooms) join(room);
  });
  /** The user opens another project while connected. */
  c.open = (room) => {
    rooms.push(room);
    c.got[room] = [];
    join(room);
  };
  socket.on('disconnect', (reason) => c.disconnects.push({ reason, at: Date.now() }));
  socket.on('connect_error', (err) => c.connectErrors.push({ message: err.message, at: Date.now() }));
  socket.on('exception', (e) => c.exceptions.push({ conn: c.connects.length, e }));
  socket.on('update', (...args) => {
    const at = Date.now();
    const data = args[0];
    const offset = args.at(-1);
    if (args.length !== 2 || typeof offset !== 'string' || offset === '') { c.bad.push({ args, conn: c.connects.length }); return; }
    const entry = { n: null, conn: c.connects.length, at, offset }; // n: numberUpdates()
    if (c.got[data?.room]) c.got[data.room].push(entry);
    else c.other.push({ room: data?.room, ...entry });
  });
  /** Connected, and (if it asks) joined every room on its latest connection. */
  c.live = () => {
    if (!socket.connected || c.connects.length === 0) return false;
    const conn = c.connects.length;
    const last = c.connects.at(-1);
    if (idiom === 'join-unless-recovered' && last.recovered) return true;
    return rooms.every((r) => c.answers.some((a) => a.conn === conn && a.room === r));
  };
  c.close = () => socket.close();
  return c;
}

/**
 * The `i`-th client of a fleet test: kinds alternate; a fifth use join-unless-recovered;
 * a tenth are in a second room (half of those join-unless-recovered).
 */
function fleetClient(url, i, rooms = ROOMS) {
  const group = Math.floor(i / rooms.length);
  const mine = [rooms[i % rooms.length]];
  if (group % 20 === 0 || group % 20 === 13) mine.push(rooms[(i + 2) % rooms.length]);
  return stockClient(url, mine, i % 2 === 0 ? 'ws' : 'default', {
    idiom: group % 5 === 0 ? 'join-unless-recovered' : 'join-always',
  });
}

/** `n` fleet clients, arriving 100 every 200 ms, as users do. */
async function connectInWaves(url, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(fleetClient(url, i));
    if (i % 100 === 99) await sleep(200);
  }
  return out;
}

// ---------------------------------------------------------------------------
// checks and reports
// ---------------------------------------------------------------------------

/** `1..5, 7, 9..12` */
function ranges(ns) {
  const out = [];
  for (let i = 0; i < ns.length;) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j] + 1) j++;
    out.push(i === j ? `${ns[i]}` : `${ns[i]}..${ns[j]}`);
    i = j + 1;
  }
  const s = out.join(', ');
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

/** What is wrong with the numbers `got` of one room against `expected` (null: nothing). */
function seqProblem(got, expected) {
  const ns = got.map((g) => g.n);
  if (ns.length === expected.length && ns.every((n, i) => n === expected[i])) return null;
  const seen = new Map();
  for (const n of ns) seen.set(n, (seen.get(n) ?? 0) + 1);
  const dups = [...seen].filter(([, k]) => k > 1).map(([n]) => n).sort((a, b) => a - b);
  const want = new Set(expected);
  const missing = expected.filter((n) => !seen.has(n));
  const extra = [...seen.keys()].filter((n) => !want.has(n)).sort((a, b) => a - b);
  let firstBad = ns.findIndex((n, i) => n !== expected[i]);
  if (firstBad < 0) firstBad = Math.min(ns.length, expected.length);
  const from = Math.max(0, firstBad - 3);
  const excerpt = got.slice(from, firstBad + 6).map((g) => `${g.n}@c${g.conn}`).join(' ');
  return `got ${ns.length} updates, expected ${expected.length} (${ranges(expected)}); ` +
    `missing [${ranges(missing)}], duplicated [${ranges(dups)}], unexpected [${ranges(extra)}]; ` +
    `first difference at index ${firstBad}: expected ${expected.slice(from, firstBad + 6).join(' ')} | ` +
    `got (n@connection) ${excerpt} (offsets ${got.slice(from, firstBad + 6).map((g) => g.offset).join(' ')})`;
}

/** Up to 5 sequence failures, the worst kinds first (missing, unexpected, out of order, duplicated), 2 of each. */
function examples(failures) {
  const kind = (p) => ['missing', 'unexpected', 'duplicated'].find((k) => !new RegExp(`${k} \\[\\]`).test(p)) ?? 'order';
  const rank = { missing: 0, unexpected: 1, order: 2, duplicated: 3 };
  const out = [];
  for (const k of Object.keys(rank)) out.push(...failures.filter((f) => kind(f.p) === k).slice(0, 2));
  return out.slice(0, 5);
}

/** Where the first duplicate of `room` at `c` arrived, relative to its connection (or ''). */
function dupDetail(c, room) {
  const list = c.got[room];
  const seen = new Map();
  for (let i = 0; i < list.length; i++) {
    const g = list[i];
    if (seen.has(g.n)) {
      const j = seen.get(g.n);
      const k = c.connects[g.conn - 1];
      const rel = (t) => `+${t - k.at} ms`;
      const firstOnConn = list.find((x) => x.conn === g.conn);
      const join = c.answers.find((a) => a.conn === g.conn && a.room === room);
      return `first duplicate: update ${g.n} (offset ${g.offset}) at index ${j} (${rel(list[j].at)}, connection ${list[j].conn}) ` +
        `and again at index ${i} (${rel(g.at)}, connection ${g.conn}); connection ${g.conn} began (recovered=${k.recovered}) with ` +
        `${k.had[room]} updates of ${room}, its first update of ${room} came at ${firstOnConn ? rel(firstOnConn.at) : '-'} ` +
        `(update ${firstOnConn?.n}), its join answer at ${join ? rel(join.at) : '- (no join)'}`;
    }
    seen.set(g.n, i);
  }
  return '';
}

/** One client's life, relative to its first connect (for failure messages). */
function describeClient(c) {
  const t0 = c.connects[0]?.at ?? 0;
  return `client #${c.id} (${c.kind}, ${c.idiom}, rooms ${c.rooms.join('+')}, token ${c.token}): ` + JSON.stringify({
    connected: c.socket.connected,
    transport: c.socket.io.engine?.transport?.name,
    connects: c.connects.map((k) => ({ t: k.at - t0, recovered: k.recovered, had: k.had })),
    disconnects: c.disconnects.map((d) => [d.at - t0, d.reason]),
    connectErrors: c.connectErrors.length,
    lastConnectErrors: c.connectErrors.slice(-2).map((e) => [e.at - t0, e.message]),
    joinAnswers: c.answers.filter((a) => !a.ok || a.conn > 1).slice(0, 6).map((a) => [a.conn, a.room, a.answer]),
    exceptions: c.exceptions.slice(0, 3),
    badUpdates: c.bad.slice(0, 3).map((b) => JSON.stringify(b.args).slice(0, 200)),
    otherRooms: c.other.slice(0, 3),
  });
}

function countBy(items, key) {
  const out = {};
  for (const i of items) { const k = key(i); out[k] = (out[k] ?? 0) + 1; }
  return out;
}

/**
 * Every room of every client got exactly `expected(c, room)` (a list of update numbers),
 * and every reconnection was recovered. Returns a report; fails with the first clients'
 * details and a summary by kind when it does not hold.
 */
function checkClients(clients, expected, { recoveredAfter = true } = {}) {
  const seqFailures = [];
  for (const c of clients) {
    for (const room of c.rooms) {
      const p = seqProblem(c.got[room], expected(c, room));
      if (p) seqFailures.push({ c, room, p });
    }
  }
  const reconnections = clients.flatMap((c) => c.connects.slice(1).map((k) => ({ c, k })));
  const notRecovered = reconnections.filter(({ k }) => k.recovered !== recoveredAfter);
  const firstNoPid = clients.filter((c) => c.connects[0] && c.connects[0].recovered !== false);
  const bad = clients.filter((c) => c.bad.length > 0);
  // A join cut by the next disconnect (its replica drained or died) is not an answer.
  const cut = (c, a) => /socket has been disconnected/.test(String(a.answer)) && a.conn < c.connects.length;
  const refusedJoins = clients.flatMap((c) => c.answers.filter((a) => !a.ok && !cut(c, a)).map((a) => ({ c, a })));
  const report = [
    `${clients.length} clients (${JSON.stringify(countBy(clients, (c) => `${c.kind}/${c.idiom}/${c.rooms.length} room(s)`))}), ` +
      `${reconnections.length} reconnections (by kind ${JSON.stringify(countBy(reconnections, ({ c }) => c.kind))}; ` +
      `clients reconnected 0/1/2/3+ times: ${[0, 1, 2, 3].map((k) => clients.filter((c) => (k < 3 ? c.connects.length - 1 === k : c.connects.length - 1 >= 3)).length).join('/')}); ` +
      `socket.recovered on reconnection: ${JSON.stringify(countBy(reconnections, ({ k }) => String(k.recovered)))}`,
    `disconnect reasons: ${JSON.stringify(countBy(clients.flatMap((c) => c.disconnects), (d) => `${d.reason}`))}; ` +
      `failed attempts: ${clients.reduce((a, c) => a + c.connectErrors.length, 0)}`,
  ];
  const problems = [];
  if (firstNoPid.length) {
    problems.push(`${firstNoPid.length} clients' first connect has socket.recovered = ${String(firstNoPid[0].connects[0].recovered)} ` +
      '(expected false: a CONNECT reply without `pid` leaves it undefined), e.g. ' + describeClient(firstNoPid[0]));
  }
  if (bad.length) {
    problems.push(`${bad.length} clients got updates whose last argument is not a string offset, e.g. ` +
      JSON.stringify(bad[0].bad[0].args).slice(0, 300));
  }
  if (notRecovered.length) {
    const by = countBy(notRecovered, ({ c, k }) => `${c.kind}/${c.rooms.length} room(s): recovered=${String(k.recovered)}`);
    problems.push(`${notRecovered.length}/${reconnections.length} reconnections with socket.recovered !== ${recoveredAfter} ${JSON.stringify(by)}; e.g.\n    ` +
      [...new Set(notRecovered.map(({ c }) => c))].slice(0, 3).map(describeClient).join('\n    '));
  }
  if (seqFailures.length) {
    const by = countBy(seqFailures, ({ c }) => `${c.kind}/${c.idiom}/${c.rooms.length} room(s)`);
    const kinds = countBy(seqFailures, ({ p }) => ['missing', 'duplicated', 'unexpected']
      .filter((k) => !new RegExp(`${k} \\[\\]`).test(p)).join('+') || 'order');
    const afterFalse = seqFailures.filter(({ c }) => c.connects.slice(1).some((k) => k.recovered !== true)).length;
    problems.push(`${seqFailures.length} (client, room) pairs without every update exactly once and in order ` +
      `(${new Set(seqFailures.map((f) => f.c)).size} clients; by what went wrong ${JSON.stringify(kinds)}; ` +
      `${afterFalse} of them after a reconnection that was not recovered; by client ${JSON.stringify(by)}); first ones:\n    ` +
      examples(seqFailures).map(({ c, room, p }) => `room ${room}: ${p}\n      ${dupDetail(c, room) || '(no duplicate)'}\n      ${describeClient(c)}`).join('\n    '));
  }
  if (refusedJoins.length) {
    problems.push(`${refusedJoins.length} join_project answers were not "You have joined": ` +
      JSON.stringify(countBy(refusedJoins, ({ a }) => JSON.stringify(a.answer).slice(0, 120))));
  }
  const others = clients.filter((c) => c.other.length);
  if (others.length) problems.push(`${others.length} clients got updates of rooms they never joined, e.g. ${describeClient(others[0])}`);
  return { report: report.join('\n'), problems };
}

/** How many (client, room) pairs have fewer than `want` updates, and the fewest. */
function behind(clients, want) {
  const counts = clients.flatMap((c) => c.rooms.map((r) => c.got[r].length));
  const short = counts.filter((k) => k < want);
  return `${short.length} (client, room) pairs short of ${want}, the fewest ${Math.min(...counts)}`;
}

function range(from, to) {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

function publish(redis, room, { count, every = '25ms' }) {
  return runWsgate(['publish', '--redis-url', redis.url, ...(redis.modeArgs ?? []), '--room', room, '--event', 'update',
    '--data', JSON.stringify({ room }), '--count', String(count), '--every', every, ...HIST], { timeoutMs: 90000 });
}

async function publishAll(redis, rooms, opts) {
  const res = await Promise.all(rooms.map((r) => publish(redis, r, opts)));
  for (const [i, p] of res.entries()) assert.equal(p.code, 0, `wsgate publish to ${rooms[i]}: ${p.stderr}`);
}

/** Sum of `name{labels}` samples in a Prometheus text exposition. */
function metricSum(text, name, want = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** {recovered, expired, ...} of one replica (null when /metrics does not answer). */
async function recoveries(url) {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const out = Object.fromEntries(RESULTS.map((r) => [r, metricSum(text, 'wsgate_session_recoveries_total', { result: r })]));
    out.lines = text.split('\n').filter((l) => /recover|session/.test(l) && !l.startsWith('#')).join(' | ');
    return out;
  } catch {
    return null;
  }
}

function addUp(list) {
  const out = Object.fromEntries(RESULTS.map((r) => [r, 0]));
  for (const x of list) if (x) for (const r of RESULTS) out[r] += x[r];
  return out;
}

async function waitFor(fn, timeoutMs) {
  try { await waitUntil(fn, { timeoutMs, intervalMs: 100 }); return true; } catch { return false; }
}

function fleetArgs(redis, csr, extra = []) {
  return ['--redis-url', redis.url, ...(redis.modeArgs ?? []), ...HIST, '--connection-state-recovery', csr,
    '--drain-window', '1500ms', '--drain-deadline', '4s', '--ping-interval', '10s', '--ping-timeout', '5s', ...extra];
}

/** A 3-shard Redis Cluster (3 primaries, 3 replicas) as the tests use a Redis. */
async function startClusterRedis() {
  const c = await startCluster();
  return { url: c.seeds, ports: c.ports, cluster: true, modeArgs: ['--redis-mode', 'cluster'], stop: c.stop };
}

/**
 * Redis (`mode`: one, or a 3-shard cluster), 3 replicas with recovery (30 s) and haproxy
 * in front, for one describe block: started before its tests, torn down after them (with
 * the clients the tests left in `f.clients`).
 */
function fleetOf3(mode) {
  const f = { redis: null, lb: null, replicas: [], clients: [] };
  before(async () => {
    requireFeature();
    f.redis = mode === 'cluster' ? await startClusterRedis() : await startRedis();
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    f.replicas = await Promise.all(ports.map((port) => startReplica([...fleetArgs(f.redis, '30s'), ...identity], { port })));
    f.lb = await startHaproxy(ports);
  });
  after(async () => {
    for (const c of f.clients) c.close();
    await f.lb?.stop();
    for (const r of f.replicas) await r.kill();
    await f.redis?.stop();
  });
  return f;
}

// ===========================================================================

const N = Number(process.env.WSGATE_CSR_CLIENTS ?? 500);

// Both fleet tests run on one Redis and on a 3-shard Redis Cluster (the cluster's offsets
// are one order per shard: `updateKeys`).
const MODES = (process.env.WSGATE_CSR_MODES ?? 'standalone,cluster').split(',');

for (const mode of MODES) {
describe(`(a) rolling SIGTERM-and-restart of 3 replicas behind haproxy (${mode} Redis)`, () => {
  const PER_ROOM = 480; // 40 updates/s per room, 200/s over 5 rooms, for 12 s
  const f = fleetOf3(mode);

  test(`${N} stock clients, 200 updates/s over 5 rooms: every update once, in order; recovered after every reconnection`, { timeout: 100000 }, async (t) => {
    const t0 = Date.now();
    f.clients = await connectInWaves(f.lb.url, N);
    assert.ok(await waitFor(() => f.clients.every((c) => c.live()), 30000),
      `all connected and joined: ${f.clients.filter((c) => !c.live()).length} not; e.g. ${describeClient(f.clients.find((c) => !c.live()) ?? f.clients[0])}`);
    t.diagnostic(`${N} clients live in ${Date.now() - t0} ms`);

    const args = [...fleetArgs(f.redis, '30s'), ...identity];
    const publishing = publishAll(f.redis, ROOMS, { count: PER_ROOM });
    const scraped = [];
    await sleep(1000);
    for (let i = 0; i < f.replicas.length; i++) {
      const old = f.replicas[i];
      scraped.push(await recoveries(old.url));
      const signalled = Date.now();
      old.child.kill('SIGTERM');
      const exit = await Promise.race([old.exited, sleep(10000).then(() => null)]);
      assert.ok(exit, `replica ${i} still running 10 s after SIGTERM`);
      assert.equal(exit.code, 0, `replica ${i} exit (signal ${exit.signal}); stderr:\n${old.stderr().slice(-3000)}`);
      f.replicas[i] = await startReplica(args, { port: old.port });
      t.diagnostic(`replica ${i}: drained in ${exit.at - signalled} ms; live clients ${f.clients.filter((c) => c.live()).length}/${N}`);
      await sleep(1500); // haproxy sees it up again (rise 2 x 300 ms) before the next one goes
    }
    await publishing;
    const published = Date.now();
    const done = await waitFor(() => f.clients.every((c) => c.rooms.every((r) => c.got[r].length >= PER_ROOM)), 20000);
    await sleep(500); // duplicates, if any, show up
    scraped.push(...await Promise.all(f.replicas.map((r) => recoveries(r.url))));
    const metrics = addUp(scraped);

    const counts = numberUpdates(f.clients, await updateKeys(f.redis, ROOMS));
    const { report, problems } = checkClients(f.clients, () => range(1, PER_ROOM));
    problems.unshift(...offsetCountProblems(counts, Object.fromEntries(ROOMS.map((r) => [r, PER_ROOM]))));
    const moved = f.clients.filter((c) => c.connects.length > 1).length;
    const msg = `${report}\nmetric wsgate_session_recoveries_total (summed over the replicas, each scraped before its SIGTERM and at the end): ${JSON.stringify(metrics)}` +
      `\nall updates in ${done ? `${Date.now() - published} ms after the last publish` : `NOT within 20 s (${behind(f.clients, PER_ROOM)})`}; test ${Date.now() - t0} ms`;
    t.diagnostic(msg);
    console.log(`# csr rolling restart: ${msg.replace(/\n/g, '\n# ')}`);
    if (problems.length) assert.fail(`\n${problems.join('\n')}\n${msg}`);
    assert.ok(moved >= N / 2, `most clients were moved by the restarts (${moved}/${N})`);
    assert.ok(metrics.recovered > 0, `wsgate_session_recoveries_total{result="recovered"} counted the recoveries: ${JSON.stringify(scraped.map((s) => s?.lines))}`);
    for (const r of RESULTS.filter((x) => x !== 'recovered')) {
      assert.equal(metrics[r], 0, `no recovery failed (${r}): ${JSON.stringify(scraped.map((s) => s?.lines))}`);
    }
  });
});

describe(`(b) a replica SIGKILLed under load (${mode} Redis)`, () => {
  const PER_ROOM = 320; // 8 s at 40 updates/s per room
  const f = fleetOf3(mode);

  test(`${N} stock clients, 200 updates/s: the killed replica's clients recover everything elsewhere`, { timeout: 80000 }, async (t) => {
    const t0 = Date.now();
    f.clients = await connectInWaves(f.lb.url, N);
    assert.ok(await waitFor(() => f.clients.every((c) => c.live()), 30000),
      `all connected and joined: ${f.clients.filter((c) => !c.live()).length} not; e.g. ${describeClient(f.clients.find((c) => !c.live()) ?? f.clients[0])}`);
    const survivors = [f.replicas[0], f.replicas[2]];
    const publishing = publishAll(f.redis, ROOMS, { count: PER_ROOM });
    await sleep(2500);
    const before = addUp(await Promise.all(survivors.map((r) => recoveries(r.url))));
    f.replicas[1].child.kill('SIGKILL');
    await f.replicas[1].exited;
    const killedAt = Date.now();
    await publishing;
    const done = await waitFor(() => f.clients.every((c) => c.rooms.every((r) => c.got[r].length >= PER_ROOM)), 20000);
    await sleep(500);
    const afterKill = addUp(await Promise.all(survivors.map((r) => recoveries(r.url))));
    const delta = Object.fromEntries(RESULTS.map((r) => [r, afterKill[r] - before[r]]));

    const moved = f.clients.filter((c) => c.connects.length > 1);
    const back = moved.map((c) => c.connects[1].at - killedAt).sort((a, b) => a - b);
    const counts = numberUpdates(f.clients, await updateKeys(f.redis, ROOMS));
    const { report, problems } = checkClients(f.clients, () => range(1, PER_ROOM));
    problems.unshift(...offsetCountProblems(counts, Object.fromEntries(ROOMS.map((r) => [r, PER_ROOM]))));
    const msg = `${report}\n${moved.length} clients were on the killed replica; back after p50 ${back[Math.floor(back.length / 2)]} ms, ` +
      `max ${back.at(-1)} ms\nmetric wsgate_session_recoveries_total on the survivors since the kill: ${JSON.stringify(delta)}` +
      `\nall updates ${done ? 'delivered' : `NOT delivered within 20 s (${behind(f.clients, PER_ROOM)})`}; test ${Date.now() - t0} ms`;
    t.diagnostic(msg);
    console.log(`# csr SIGKILL: ${msg.replace(/\n/g, '\n# ')}`);
    if (problems.length) assert.fail(`\n${problems.join('\n')}\n${msg}`);
    assert.ok(moved.length > 0, 'some clients were on the killed replica');
    assert.ok(delta.recovered >= 1, `the survivors counted the recoveries: ${JSON.stringify(delta)}`);
    for (const r of RESULTS.filter((x) => x !== 'recovered')) assert.equal(delta[r], 0, `no recovery failed (${r}): ${JSON.stringify(delta)}`);
  });
});

}

describe('(c)/(d)/(f) away behind a stopped load balancer', () => {
  let redis;
  let redisCmd;
  let lb;
  let ports;
  let replicas = [];
  let clients = [];
  let witness = null;
  const cleanup = async () => {
    for (const c of clients) c.close();
    clients = [];
    witness?.close();
    witness = null;
    await lb?.stop();
    lb = null;
    for (const r of replicas) await r.kill();
    replicas = [];
    await redisCmd?.quit().catch(() => {});
    redisCmd = null;
    await redis?.stop();
    redis = null;
  };
  afterEach(cleanup);

  async function fleet(csr, extra) {
    requireFeature();
    redis = await startRedis();
    redisCmd = createClient({ url: redis.url });
    await redisCmd.connect();
    ports = await Promise.all([freePort(), freePort()]);
    replicas = await Promise.all(ports.map((port) => startReplica([...fleetArgs(redis, csr), ...extra], { port })));
    lb = await startHaproxy(ports);
  }

  /** A client connected to a replica directly (not through haproxy): it sees every update. */
  async function startWitness(rooms, token = 'tok') {
    witness = stockClient(replicas[0].url, rooms, 'ws', { token });
    assert.ok(await waitFor(() => witness.live(), 10000), `witness joined: ${describeClient(witness)}`);
  }

  /** Stop haproxy: every client loses its connection and cannot come back until restart(). */
  async function away() {
    await lb.stop();
    const at = Date.now();
    await waitUntil(() => clients.every((c) => !c.socket.connected), { timeoutMs: 5000, what: 'every client disconnected' });
    return at;
  }
  async function restart() {
    lb = await startHaproxy(ports, { port: lb.port });
  }

  /** Every client (and the witness) has at least `want(c, room)` updates of each room. */
  const has = (want) => [...clients, witness].every((c) => c.rooms.every((r) => c.got[r].length >= want(c, r)));
  const short = (want) => [...clients, witness].filter((c) => !c.rooms.every((r) => c.got[r].length >= want(c, r)))
    .slice(0, 3).map(describeClient).join('\n');

  test('(c) away longer than --connection-state-recovery: recovered false, nothing of the away time, live after its own rejoin', { timeout: 40000 }, async (t) => {
    await fleet('2s', identity);
    const rooms = ['r0', 'r1'];
    await startWitness(rooms);
    clients = Array.from({ length: 16 }, (_, i) => stockClient(lb.url, i % 4 === 3 ? rooms : [rooms[i % 2]],
      i % 2 === 0 ? 'ws' : 'default', { idiom: i % 8 < 4 ? 'join-always' : 'join-unless-recovered' }));
    assert.ok(await waitFor(() => clients.every((c) => c.live()), 10000), 'all joined');
    await publishAll(redis, rooms, { count: 5, every: '5ms' }); // 1..5
    assert.ok(await waitFor(() => has(() => 5), 5000), `updates 1..5:\n${short(() => 5)}`);

    const gone = await away();
    await sleep(300);
    await publishAll(redis, rooms, { count: 5, every: '5ms' }); // 6..10, while away
    await sleep(Math.max(0, gone + 2000 + 2000 - Date.now())); // DURATION 2 s, plus 2 s
    await restart();
    const restartedAt = Date.now();
    const backOk = await waitFor(() => clients.every((c) => c.connects.length >= 2 && c.live()), 10000);
    const backAt = Date.now();
    await sleep(500); // a replay, if any, arrives
    await publishAll(redis, rooms, { count: 3, every: '5ms' }); // 11..13, live
    const want = (c) => (c === witness ? 13 : 8);
    await waitFor(() => has(want), 5000);
    await sleep(300);
    const metrics = addUp(await Promise.all(replicas.map((r) => recoveries(r.url))));
    const counts = numberUpdates([witness, ...clients]);
    const { report, problems } = checkClients(clients, () => [...range(1, 5), ...range(11, 13)], { recoveredAfter: false });
    const w = checkClients([witness], () => range(1, 13));
    problems.unshift(...offsetCountProblems(counts, { r0: 13, r1: 13 }), ...w.problems.map((p) => `witness: ${p}`));
    const msg = `${report}\nmetric wsgate_session_recoveries_total: ${JSON.stringify(metrics)}; away ${backAt - gone} ms (haproxy down ${restartedAt - gone} ms)`;
    t.diagnostic(msg);
    assert.ok(backOk, `every client came back and rejoined: ${clients.filter((c) => !c.live()).map(describeClient).slice(0, 3).join('\n')}`);
    if (problems.length) assert.fail(`\n${problems.join('\n')}\n${msg}`);
    for (const c of clients) assert.equal(c.connects.length, 2, `one reconnection: ${describeClient(c)}`);
    assert.equal(metrics.recovered, 0, `nothing recovered: ${JSON.stringify(metrics)}`);
    assert.equal(metrics.expired, clients.length, `every client's return counted as expired: ${JSON.stringify(metrics)}`);
  });

  test('(d) a room revoked while away: none of its updates after the reconnection; the other room recovered', { timeout: 40000 }, async (t) => {
    // Permissions in Redis sets, cached 10 min: only the revocation makes a replica ask again.
    await fleet('30s', ['--tokens', tokensFile, '--authz', 'redis', '--perm-cache-ttl', '10m']);
    await redisCmd.sAdd('wsgate:perm:u', ['r0', 'r1']);
    await redisCmd.sAdd('wsgate:perm:v', ['r1']);
    await redisCmd.sAdd('wsgate:perm:w', ['r0', 'r1']);
    await startWitness(['r0', 'r1'], 'tokw');
    const us = Array.from({ length: 8 }, (_, i) => stockClient(lb.url, ['r0', 'r1'], i % 2 === 0 ? 'ws' : 'default',
      { idiom: i % 4 < 2 ? 'join-always' : 'join-unless-recovered' }));
    const vs = Array.from({ length: 4 }, (_, i) => stockClient(lb.url, ['r1'], i % 2 === 0 ? 'ws' : 'default', { token: 'tokv' }));
    clients = [...us, ...vs];
    assert.ok(await waitFor(() => clients.every((c) => c.live()), 10000), 'all joined');
    await publishAll(redis, ['r0', 'r1'], { count: 3, every: '5ms' }); // 1..3
    assert.ok(await waitFor(() => has(() => 3), 5000), `updates 1..3:\n${short(() => 3)}`);

    await away();
    await sleep(300);
    await publishAll(redis, ['r0', 'r1'], { count: 2, every: '5ms' }); // 4..5, before the revocation
    await redisCmd.sRem('wsgate:perm:u', 'r1');
    const rv = await runWsgate(['revoke', '--redis-url', redis.url, '--user', 'u', '--project', 'r1']);
    assert.equal(rv.code, 0, `wsgate revoke: ${rv.stderr}`);
    t.diagnostic(`wsgate revoke: ${rv.stdout.trim()}`);
    await publishAll(redis, ['r0', 'r1'], { count: 2, every: '5ms' }); // 6..7, after it
    await restart();
    const backOk = await waitFor(() => clients.every((c) => c.connects.length >= 2 && c.socket.connected), 10000);
    await sleep(800); // the replay, and the join answers
    await publishAll(redis, ['r0', 'r1'], { count: 2, every: '5ms' }); // 8..9, live
    const want = (c, room) => (c.token === 'tok' && room === 'r1' ? 3 : 9);
    await waitFor(() => has(want), 5000);
    await sleep(300);
    const metrics = addUp(await Promise.all(replicas.map((r) => recoveries(r.url))));
    const counts = numberUpdates([witness, ...clients]);

    assert.ok(backOk, `every client came back: ${clients.filter((c) => !c.socket.connected).map(describeClient).slice(0, 3).join('\n')}`);
    const bad = new Map(); // client -> what is wrong with it
    const note = (c, line) => { if (!bad.has(c)) bad.set(c, []); bad.get(c).push(line); };
    for (const p of offsetCountProblems(counts, { r0: 9, r1: 9 })) note(witness, p);
    for (const room of ['r0', 'r1']) {
      const p = seqProblem(witness.got[room], range(1, 9));
      if (p) note(witness, `room ${room}: ${p}`);
    }
    for (const c of us) {
      const r0 = seqProblem(c.got.r0, range(1, 9));
      if (r0) note(c, `room r0 (still allowed): ${r0}`);
      const r1 = c.got.r1.filter((g) => g.conn > 1 || g.n > 3);
      if (r1.length) {
        note(c, `room r1 (revoked while away): got ${r1.length} updates after the revocation ` +
          `(n@connection ${r1.map((g) => `${g.n}@c${g.conn}`).join(' ')})`);
      }
      const k = c.connects.at(-1);
      if (k.recovered !== true) note(c, `socket.recovered = ${String(k.recovered)} (expected true: r0 is still allowed)`);
      // Its own join of r1 on connect is refused (the app learns it may no longer see r1).
      for (const a of c.answers.filter((x) => x.conn > 1 && x.room === 'r1' && x.ok)) note(c, `rejoin of r1 answered ${JSON.stringify(a.answer)}`);
    }
    for (const c of vs) {
      const p = seqProblem(c.got.r1, range(1, 9));
      if (p) note(c, `room r1 (allowed): ${p}`);
      if (c.connects.at(-1).recovered !== true) note(c, `socket.recovered = ${String(c.connects.at(-1).recovered)}`);
    }
    const who = (c) => ({ tok: 'u', tokv: 'v', tokw: 'w (witness)' })[c.token];
    const msg = `metric wsgate_session_recoveries_total: ${JSON.stringify(metrics)}; u's r1 rejoin answers: ` +
      JSON.stringify(countBy(us.flatMap((c) => c.answers.filter((a) => a.conn > 1 && a.room === 'r1')), (a) => JSON.stringify(a.answer).slice(0, 100)));
    t.diagnostic(msg);
    if (bad.size) {
      assert.fail(`${bad.size} clients (user u: ${us.filter((c) => bad.has(c)).length}/${us.length}, ` +
        `user v: ${vs.filter((c) => bad.has(c)).length}/${vs.length}, witness: ${bad.has(witness)}); first ones:\n` +
        [...bad].slice(0, 5).map(([c, lines]) => `  user ${who(c)}: ${lines.join('\n    ')}\n    ${describeClient(c)}`).join('\n') + `\n${msg}`);
    }
    assert.equal(metrics.recovered, clients.length, `every return counted as recovered: ${JSON.stringify(metrics)}`);
  });

  test('(f) the last event before leaving was a join answer (a string, which socket.io-client keeps as its offset): still recovered', { timeout: 45000 }, async (t) => {
    // socket.io-client takes the last string argument of ANY event as its offset; the
    // `join_project` answer event ("You have joined r1!") is one, unless the server gives it
    // an offset too. The client sends back whatever it kept.
    await fleet('30s', identity);
    await startWitness(['r0', 'r1']);
    clients = Array.from({ length: 6 }, (_, i) => stockClient(lb.url, ['r0'], i % 2 === 0 ? 'ws' : 'default',
      { idiom: i % 3 === 2 ? 'join-unless-recovered' : 'join-always' }));
    assert.ok(await waitFor(() => clients.every((c) => c.live()), 10000), 'all joined');
    await publishAll(redis, ['r0'], { count: 3, every: '5ms' }); // r0 1..3
    assert.ok(await waitFor(() => has((c, r) => (r === 'r0' ? 3 : 0)), 5000), `updates 1..3:\n${short((c, r) => (r === 'r0' ? 3 : 0))}`);
    const answerEvents = new Map(clients.map((c) => [c, []]));
    for (const c of clients) c.socket.on('join_project', (...args) => answerEvents.get(c).push(args));
    for (const c of clients) c.open('r1');
    assert.ok(await waitFor(() => clients.every((c) => c.live() && answerEvents.get(c).length > 0), 5000), 'r1 joined');
    // What the client will send back (socket.io-client's private field, read for the report only).
    const lastOffsets = countBy(clients, (c) => JSON.stringify(c.socket._lastOffset));
    await away();
    await sleep(300);
    await publishAll(redis, ['r0', 'r1'], { count: 2, every: '5ms' }); // r0 4..5, r1 1..2
    await restart();
    const backOk = await waitFor(() => clients.every((c) => c.connects.length >= 2 && c.live()), 20000); // a bound, not a timing: a loaded CI host once took > 10 s
    await sleep(500);
    await publishAll(redis, ['r0', 'r1'], { count: 1, every: '5ms' }); // r0 6, r1 3, live
    const want = (c, r) => (r === 'r0' ? 6 : 3);
    await waitFor(() => has(want), 5000);
    await sleep(300);
    const metrics = addUp(await Promise.all(replicas.map((r) => recoveries(r.url))));
    const counts = numberUpdates([witness, ...clients]);
    const msg = `offsets the clients sent back: ${JSON.stringify(lastOffsets)}; join_project answer events: ` +
      `${JSON.stringify(answerEvents.get(clients[0]))}; metric wsgate_session_recoveries_total: ${JSON.stringify(metrics)}`;
    t.diagnostic(msg);
    assert.ok(backOk, `every client came back: ${clients.filter((c) => !c.live()).map(describeClient).slice(0, 3).join('\n')}`);
    const { report, problems } = checkClients(clients, (c, room) => range(1, want(c, room)));
    problems.unshift(...offsetCountProblems(counts, { r0: 6, r1: 3 }));
    t.diagnostic(report);
    if (problems.length) assert.fail(`\n${problems.join('\n')}\n${report}\n${msg}`);
    assert.equal(metrics.recovered, clients.length, `every return counted as recovered: ${JSON.stringify(metrics)}`);
  });
});

describe('(e) start-up', () => {
  let redis;
  before(async () => { redis = await startRedis(); });
  after(async () => { await redis?.stop(); });

  async function refused(args, env = {}) {
    let res;
    try {
      res = await runWsgate(['serve', '--listen', '127.0.0.1:0', '--redis-url', redis.url, ...identity, ...args], { timeoutMs: 8000, env });
    } catch (e) {
      assert.fail(`wsgate serve ${args.join(' ')} ${JSON.stringify(env)} started instead of refusing: ${e.message.slice(0, 500)}`);
    }
    assert.notEqual(res.code, 0, `exit code; stdout ${res.stdout} stderr ${res.stderr}`);
    assert.doesNotMatch(res.stdout, /WSGATE_LISTENING/);
    assert.doesNotMatch(res.stderr, /unexpected argument/, 'the binary knows the option');
    return res.stderr;
  }

  test('--connection-state-recovery without --history-size is refused with a message about history', { timeout: 30000 }, async (t) => {
    requireFeature();
    const a = await refused(['--connection-state-recovery', '30s']);
    assert.match(a, /history/i, `stderr names history: ${a}`);
    const b = await refused([], { WSGATE_CONNECTION_STATE_RECOVERY: '30s' });
    assert.match(b, /history/i, `stderr names history (env): ${b}`);
    const c = await refused(['--connection-state-recovery', '30s', '--history-size', '0']);
    assert.match(c, /history/i, `stderr names history (--history-size 0): ${c}`);
    const d = await refused([...HIST, '--connection-state-recovery', 'soon']);
    t.diagnostic(`messages:\n${a.trim()}\n${b.trim()}\n${c.trim()}\n${d.trim()}`);
    // And with history it starts.
    const ok = await startReplica(['--redis-url', redis.url, ...identity, ...HIST, '--connection-state-recovery', '30s']);
    await ok.kill();
  });
});
