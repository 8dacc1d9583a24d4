// Test harness for the wsgate end-to-end tests.
//
// - startGateway(): runs `wsgate serve --listen 127.0.0.1:0 ...` and parses the
//   `WSGATE_LISTENING=host:port` line it prints on stdout.
// - startRedis(): runs a throw-away `redis-server` on a free loopback port
//   (never 6379) with persistence off, and waits until it answers PING.
// - startReplica(): a replica on a chosen port that the test can SIGTERM (drain) or
//   SIGKILL, and restart on the same port; startHaproxy(): haproxy in front of replicas
//   (round robin, /readyz checks, cookie affinity for long-polling).
// - startPyClients(): stock python-socketio clients (tests/py/stock_client.py).
// - small socket.io-client helpers (connect, wait for an event, record events).
//
// Every child process is started through a tiny `sh` guard that kills the child
// when this Node process goes away (its stdin pipe closes), so nothing leaks even
// when the test runner is killed. Every wait has a timeout.

import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { io } from 'socket.io-client';

export { sleep };

/** A sleep that does not keep the process alive (for Promise.race timeouts beside a live handle). */
export const idleSleep = (ms) => sleep(ms, undefined, { ref: false });

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');

/**
 * Path of the gateway binary: $WSGATE_BIN (a relative path is taken from the directory
 * npm was started in), else ../../target/debug/wsgate relative to tests/js.
 */
export function gatewayBin() {
  const fromEnv = process.env.WSGATE_BIN;
  if (fromEnv && fromEnv.trim() !== '') return path.resolve(process.env.INIT_CWD ?? process.cwd(), fromEnv);
  return path.resolve(HERE, '..', '..', 'target', 'debug', 'wsgate');
}

// ---------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------

const children = new Set();

// `sh -c GUARD guard CMD ARGS...`: runs CMD in the background, kills it with
// SIGKILL when our stdin (a pipe from this Node process) reaches EOF or when the
// shell gets SIGTERM/SIGINT, and exits with CMD's own status otherwise.
const GUARD = [
  'exec 3<&0',
  '"$@" </dev/null & pid=$!',
  '(cat <&3 >/dev/null; kill -9 $pid 2>/dev/null) &',
  'trap \'kill -9 $pid 2>/dev/null\' TERM INT',
  'wait $pid',
  'exit $?',
].join('\n');

function cleanEnv(extra = {}) {
  const env = { ...process.env };
  // Never let the caller's WSGATE_* settings leak into the gateway under test.
  for (const k of Object.keys(env)) if (k.startsWith('WSGATE_')) delete env[k];
  return { ...env, ...extra };
}

function spawnGuarded(cmd, args, { env } = {}) {
  const child = spawn('sh', ['-c', GUARD, 'guard', cmd, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: env ?? process.env,
  });
  const state = { exited: false, code: null, signal: null };
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      state.exited = true;
      state.code = code;
      state.signal = signal;
      children.delete(child);
      resolve(state);
    });
  });
  child.on('error', () => {});
  child.stdin.on('error', () => {});
  children.add(child);
  return { child, state, exitedPromise };
}

async function stopGuarded(child, exitedPromise) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try { child.stdin.end(); } catch { /* ignore */ }
  try { child.kill('SIGTERM'); } catch { /* ignore */ }
  const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* ignore */ } }, 3000);
  await Promise.race([exitedPromise, idleSleep(5000)]);
  clearTimeout(t);
}

function killAllSync() {
  for (const c of children) {
    try { c.stdin.end(); } catch { /* ignore */ }
    try { c.kill('SIGTERM'); } catch { /* ignore */ }
  }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAllSync(); process.exit(130); });
}

function tail(buf, max = 8000) {
  return buf.length > max ? '…' + buf.slice(-max) : buf;
}

// ---------------------------------------------------------------------------
// gateway
// ---------------------------------------------------------------------------

/**
 * Start `wsgate serve --listen 127.0.0.1:0 ...args`.
 * Returns { address: "127.0.0.1:PORT", url: "http://127.0.0.1:PORT", host, port,
 *           alive(), exitInfo(), stderr(), stop() }.
 */
export async function startGateway(args = [], { timeoutMs = 20000, env = {}, port = 0 } = {}) {
  const bin = gatewayBin();
  if (!existsSync(bin)) {
    throw new Error(`wsgate binary not found at ${bin} (build it with \`cargo build\` or set WSGATE_BIN)`);
  }
  const fullArgs = ['serve', '--listen', `127.0.0.1:${port}`, ...args];
  const { child, state, exitedPromise } = spawnGuarded(bin, fullArgs, { env: cleanEnv(env) });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr = tail(stderr + d, 200000); });
  child.stdout.setEncoding('utf8');

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`wsgate did not print WSGATE_LISTENING within ${timeoutMs} ms\n` +
        `args: ${fullArgs.join(' ')}\nstdout: ${tail(stdout)}\nstderr: ${tail(stderr)}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /^WSGATE_LISTENING=(\S+)\s*$/m.exec(stdout);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exitedPromise.then((st) => {
      clearTimeout(timer);
      reject(new Error(`wsgate exited early (code ${st.code}, signal ${st.signal})\n` +
        `args: ${fullArgs.join(' ')}\nstdout: ${tail(stdout)}\nstderr: ${tail(stderr)}`));
    });
  }).catch(async (e) => { await stopGuarded(child, exitedPromise); throw e; });

  const logDir = process.env.WSGATE_TEST_LOGS;
  if (logDir) {
    // Keep each replica's stderr in WSGATE_TEST_LOGS/wsgate-PORT.log for post-mortems.
    const file = path.join(logDir, `wsgate-${address.replace(/[^0-9A-Za-z.]/g, '_')}.log`);
    mkdirSync(logDir, { recursive: true });
    appendFileSync(file, `# ${bin} ${fullArgs.join(' ')}\n${stderr}`);
    child.stderr.on('data', (d) => { try { appendFileSync(file, d); } catch { /* ignore */ } });
  }

  const [host, portStr] = [address.slice(0, address.lastIndexOf(':')), address.slice(address.lastIndexOf(':') + 1)];
  return {
    address,
    host,
    port: Number(portStr),
    url: `http://${address}`,
    wsUrl: `ws://${address}`,
    child,
    alive: () => !state.exited,
    exitInfo: () => ({ ...state }),
    stderr: () => stderr,
    stdout: () => stdout,
    stop: () => stopGuarded(child, exitedPromise),
  };
}

/** Run `wsgate ARGS...` to completion (e.g. `publish`). Resolves {code, signal, stdout, stderr}. */
export async function runWsgate(args, { timeoutMs = 20000, env = {} } = {}) {
  const bin = gatewayBin();
  if (!existsSync(bin)) throw new Error(`wsgate binary not found at ${bin}`);
  const { child, exitedPromise } = spawnGuarded(bin, args, { env: cleanEnv(env) });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout = tail(stdout + d, 100000); });
  child.stderr.on('data', (d) => { stderr = tail(stderr + d, 100000); });
  const res = await Promise.race([exitedPromise, idleSleep(timeoutMs).then(() => null)]);
  if (res === null) {
    await stopGuarded(child, exitedPromise);
    throw new Error(`wsgate ${args.join(' ')} did not finish within ${timeoutMs} ms\nstderr: ${tail(stderr)}`);
  }
  // let the pipes drain
  await sleep(20);
  return { code: res.code, signal: res.signal, stdout, stderr };
}

// ---------------------------------------------------------------------------
// replicas that get real signals, and haproxy in front of them
// ---------------------------------------------------------------------------

// Started without the guard (which would turn SIGTERM into SIGKILL), so that a test can
// drain them; killed with SIGKILL when this process exits.
const unguarded = new Set();
process.on('exit', () => { for (const c of unguarded) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

/**
 * Start `wsgate serve --listen 127.0.0.1:PORT ...args` (PORT 0: any free port), wait for
 * WSGATE_LISTENING and (unless `ready: false`) for /readyz 200. Send it signals with
 * child.kill(); `exited` resolves with {code, signal, at}. Returns
 * { url, port, address, child, exited, alive(), stderr(), kill() }.
 */
export async function startReplica(args, { port = 0, ready = true, timeoutMs = 20000, env = {} } = {}) {
  const bin = gatewayBin();
  if (!existsSync(bin)) throw new Error(`wsgate binary not found at ${bin}`);
  const fullArgs = ['serve', '--listen', `127.0.0.1:${port}`, ...args];
  const child = spawn(bin, fullArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(env) });
  unguarded.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr = tail(stderr + d, 50000); });
  const state = { exited: false };
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    state.exited = true;
    unguarded.delete(child);
    resolve({ code, signal, at: Date.now() });
  }));
  const address = await new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`replica ${fullArgs.join(' ')}: no WSGATE_LISTENING\n${tail(stderr)}`)), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^WSGATE_LISTENING=(\S+)\s*$/m.exec(out);
      if (m) { clearTimeout(t); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(t);
      reject(new Error(`replica ${fullArgs.join(' ')} exited (code ${code}, signal ${signal})\n${tail(stderr)}`));
    });
  }).catch((e) => { try { child.kill('SIGKILL'); } catch { /* gone */ } throw e; });
  const logDir = process.env.WSGATE_TEST_LOGS;
  if (logDir) {
    const file = path.join(logDir, `wsgate-${address.replace(/[^0-9A-Za-z.]/g, '_')}.log`);
    mkdirSync(logDir, { recursive: true });
    appendFileSync(file, `# ${bin} ${fullArgs.join(' ')}\n${stderr}`);
    child.stderr.on('data', (d) => { try { appendFileSync(file, d); } catch { /* ignore */ } });
  }
  const url = `http://${address}`;
  if (ready) {
    await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, { timeoutMs, what: `${url} ready` });
  }
  return {
    url,
    address,
    port: Number(address.slice(address.lastIndexOf(':') + 1)),
    child,
    exited,
    alive: () => !state.exited,
    stderr: () => stderr,
    async kill() {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      await Promise.race([exited, idleSleep(5000)]);
    },
  };
}

/**
 * haproxy on a free loopback port in front of the replicas on `ports`, configured as
 * deploy/local-fleet.sh does: round robin, health checks on /readyz (a draining replica
 * gets no new clients), and a cookie that keeps every request of a long-polling session on
 * one replica (a Node client sends it back with `withCredentials: true`). Websockets are
 * tunnelled. Options: `port` (default: a free one), `inter`, `rise`. Returns
 * { url, port, stop(), log() }.
 */
export async function startHaproxy(ports, { inter = '300ms', rise = 2, port: fixedPort } = {}) {
  // `port`: restart one on the port a stopped one had (its clients come back to it).
  const port = fixedPort ?? await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wsgate-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfg, [
    'global', '  maxconn 4096',
    'defaults', '  mode http', '  timeout connect 2s', '  timeout client 70s', '  timeout server 70s', '  timeout tunnel 1h',
    'frontend wsgate', `  bind 127.0.0.1:${port}`, '  default_backend wsgate',
    'backend wsgate', '  balance roundrobin', '  cookie WSGATE insert indirect nocache',
    '  option httpchk GET /readyz', '  http-check expect status 200',
    `  default-server inter ${inter} fall 1 rise ${rise}`,
    ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p} check cookie r${i}`), '',
  ].join('\n'));
  const child = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  unguarded.add(child);
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { log = tail(log + d, 20000); });
  const exited = new Promise((resolve) => child.on('exit', () => { unguarded.delete(child); resolve(); }));
  child.on('error', (e) => { log += `\n${e.message}`; });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntil(async () => (await fetch(`${url}/healthz`)).status === 200, { timeoutMs: 10000, what: `haproxy up (${log})` });
  } catch (e) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
    throw e;
  }
  return {
    url,
    port,
    log: () => log,
    async stop() {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      await Promise.race([exited, idleSleep(5000)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------
// python-socketio clients (tests/py/stock_client.py)
// ---------------------------------------------------------------------------

/**
 * The Python that has tests/py/requirements.txt installed: $WSGATE_PYTHON (tests/run.sh
 * sets it), else target/py-venv/bin/python (where tests/run.sh creates it).
 */
export function pythonBin() {
  const fromEnv = process.env.WSGATE_PYTHON;
  if (fromEnv && fromEnv.trim() !== '') return path.resolve(process.env.INIT_CWD ?? process.cwd(), fromEnv);
  return path.join(ROOT, 'target', 'py-venv', 'bin', 'python');
}

/**
 * Run stock python-socketio clients (default reconnection; on every `connect` each joins
 * its project) in one Python process. `clients`: [{token, project, transports?}]
 * (`transports` absent: the library's default, long-polling then websocket).
 * Returns { clients, stderr(), alive(), stop() }; each of `clients` is kept up to date from
 * the process's reports: { spec, connected, connects: [t], joins: [{t, answer}],
 * disconnects: [{reason, at}], connectErrors: [{message, at}], events: [{name, args, at}] }.
 */
export async function startPyClients(url, clients, { timeoutMs = 10000 } = {}) {
  const bin = pythonBin();
  if (!existsSync(bin)) {
    throw new Error(`no Python with python-socketio at ${bin}: run tests/run.sh (it creates target/py-venv ` +
      'from tests/py/requirements.txt) or set WSGATE_PYTHON');
  }
  const script = path.join(ROOT, 'tests', 'py', 'stock_client.py');
  const { child, state, exitedPromise } = spawnGuarded(bin, ['-u', script, JSON.stringify({ url, clients })]);
  const records = clients.map((spec) => ({
    spec, connected: false, connects: [], joins: [], disconnects: [], connectErrors: [], events: [],
  }));
  let started = false;
  let stderr = '';
  let buf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr = tail(stderr + d, 50000); });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() === '') continue;
      let r;
      try { r = JSON.parse(line); } catch { stderr = tail(`${stderr}\nnot JSON on stdout: ${line}`, 50000); continue; }
      if (r.ev === 'started') { started = true; continue; }
      const c = records[r.c];
      if (!c) { stderr = tail(`${stderr}\n${line}`, 50000); continue; }
      if (r.ev === 'connect') { c.connected = true; c.connects.push(r.t); }
      else if (r.ev === 'joined') c.joins.push({ t: r.t, answer: r.answer });
      else if (r.ev === 'disconnect') { c.connected = false; c.disconnects.push({ reason: r.reason, at: r.t }); }
      else if (r.ev === 'connect_error') c.connectErrors.push({ message: r.message, at: r.t });
      else if (r.ev === 'event') c.events.push({ name: r.name, args: r.args, at: r.t });
    }
  });
  try {
    await waitUntil(() => started || state.exited, { timeoutMs, what: 'python clients started' });
  } catch (e) {
    await stopGuarded(child, exitedPromise);
    throw new Error(`${e.message}\n${stderr}`);
  }
  if (state.exited) throw new Error(`${bin} ${script} exited (code ${state.code}):\n${stderr}`);
  return {
    clients: records,
    stderr: () => stderr,
    alive: () => !state.exited,
    stop: () => stopGuarded(child, exitedPromise),
  };
}

// ---------------------------------------------------------------------------
// redis
// ---------------------------------------------------------------------------

export async function freePort() {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    if (port !== 6379) return port;
  }
  throw new Error('no free port');
}

/** Send a raw RESP command and return the first reply chunk (or throw). */
export function redisRaw(port, command, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('redis timeout')); }, timeoutMs);
    sock.on('connect', () => sock.write(command));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) { clearTimeout(timer); sock.destroy(); resolve(buf); }
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/**
 * Start redis-server on a free loopback port (or on `port`, e.g. to restart one).
 * Returns { port, url, stop(), alive(), child }.
 */
export async function startRedis({ timeoutMs = 10000, port: fixed } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = fixed ?? await freePort();
    if (port === 6379) continue; // never touch the shared Redis
    const { child, state, exitedPromise } = spawnGuarded('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--protected-mode', 'no', '--loglevel', 'warning',
    ]);
    let out = '';
    child.stdout.on('data', (d) => { out = tail(out + d, 20000); });
    child.stderr.on('data', (d) => { out = tail(out + d, 20000); });
    const deadline = Date.now() + timeoutMs;
    let ok = false;
    while (Date.now() < deadline && !state.exited) {
      try {
        const r = await redisRaw(port, 'PING\r\n', 500);
        if (r.startsWith('+PONG')) { ok = true; break; }
      } catch (e) { lastErr = e; }
      await sleep(50);
    }
    if (ok) {
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        child,
        exited: exitedPromise,
        alive: () => !state.exited,
        stop: () => stopGuarded(child, exitedPromise),
      };
    }
    await stopGuarded(child, exitedPromise);
    lastErr = new Error(`redis-server on port ${port} did not answer PING: ${out}`);
  }
  throw lastErr ?? new Error('could not start redis-server');
}

// ---------------------------------------------------------------------------
// socket.io-client helpers
// ---------------------------------------------------------------------------

const openSockets = new Set();

/**
 * Create a socket.io-client socket (forceNew, no reconnection) and wait for
 * `connect` (resolve) or `connect_error` (reject with the error).
 */
export function connectClient(url, opts = {}, { timeoutMs = 8000 } = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: timeoutMs, ...opts });
  openSockets.add(socket);
  socket.on('disconnect', () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no connect/connect_error within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.once('disconnect', (reason) => {
      clearTimeout(timer);
      socket.close();
      reject(new Error(`disconnected before connect/connect_error: ${reason}`));
    });
  });
}

/** Expect the connection to be refused; resolves with the connect_error Error. */
export async function expectConnectError(url, opts = {}, { timeoutMs = 8000 } = {}) {
  try {
    const s = await connectClient(url, opts, { timeoutMs });
    s.close();
  } catch (err) {
    return err;
  }
  throw new Error('connection was accepted but should have been refused');
}

export function closeAllClients() {
  for (const s of openSockets) {
    try { s.close(); } catch { /* ignore */ }
  }
  openSockets.clear();
}

/** Wait for one `event` on an emitter-like object; resolves with the argument array. */
export function nextEvent(emitter, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => { clearTimeout(timer); resolve(args); };
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for event "${event}"`));
    }, timeoutMs);
    emitter.once(event, handler);
  });
}

/**
 * Record every incoming event of a socket.io-client socket.
 * rec.events: [{event, args, at}], rec.of(name), rec.waitFor(name, pred, ms), rec.clear()
 */
export function recorder(socket) {
  const events = [];
  const waiters = new Set();
  const listener = (event, ...args) => {
    const entry = { event, args, at: Date.now() };
    events.push(entry);
    for (const w of waiters) {
      if (w.event === event && w.pred(args)) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(args);
      }
    }
  };
  socket.onAny(listener);
  return {
    events,
    of: (name) => events.filter((e) => e.event === name).map((e) => e.args),
    clear: () => { events.length = 0; },
    stop: () => socket.offAny(listener),
    /** Wait for an event (already recorded or future) whose args satisfy pred. */
    waitFor(event, pred = () => true, timeoutMs = 5000) {
      const found = events.find((e) => e.event === event && pred(e.args));
      if (found) return Promise.resolve(found.args);
      return new Promise((resolve, reject) => {
        const w = { event, pred, resolve };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for event "${event}"; ` +
            `recorded: ${JSON.stringify(events.map((e) => [e.event, ...e.args])).slice(0, 2000)}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
  };
}

/** emitWithAck with a timeout (socket.timeout(ms).emitWithAck). */
export function ack(socket, event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args);
}

/** Poll `fn` (sync or async, truthy = done) until it succeeds or the timeout passes. */
export async function waitUntil(fn, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (e) { lastErr = e; }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (lastErr ? `: ${lastErr.message}` : ''));
}

/** JSON.stringify comparison (checks key order too). */
export function sameJson(actual, expected) {
  return JSON.stringify(actual) === JSON.stringify(expected);
}

// For helpers in other files (cluster.mjs) that start their own guarded processes.
export { spawnGuarded, stopGuarded };
