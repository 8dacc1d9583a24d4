// A throw-away Redis Cluster (3 primaries, 3 replicas) on free loopback ports, for the
// cluster-mode tests. Every node runs under the harness's guard (killed when this Node
// process goes away); every wait has a timeout.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, redisRaw, sleep, spawnGuarded, stopGuarded } from './harness.mjs';

const run = promisify(execFile);

/** A free port P whose cluster bus port P + 10000 is free too. */
async function freeClusterPort() {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p >= 55000 || p === 6379) continue;
    const busFree = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', () => resolve(false));
      srv.listen(p + 10000, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (busFree) return p;
  }
  throw new Error('no free cluster port pair');
}

/**
 * Start 6 nodes and join them as 3 shards. Returns
 * { ports, seeds: "redis://..,redis://..", rootNodes: [{url}], stop() }.
 */
export async function startCluster({ timeoutMs = 30000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wsgate-js-cluster-'));
  const nodes = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => stopGuarded(n.child, n.exitedPromise)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 6; i++) {
      const port = await freeClusterPort();
      const { child, exitedPromise } = spawnGuarded('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--cluster-enabled', 'yes', '--cluster-node-timeout', '1000',
        '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--dir', dir,
        '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
        '--loglevel', 'warning',
      ]);
      child.stdout.resume();
      child.stderr.resume();
      nodes.push({ port, child, exitedPromise });
    }
    const deadline = Date.now() + timeoutMs;
    for (const n of nodes) {
      for (;;) {
        try { if ((await redisRaw(n.port, 'PING\r\n', 500)).startsWith('+PONG')) break; } catch { /* retry */ }
        if (Date.now() > deadline) throw new Error(`cluster node ${n.port} did not start`);
        await sleep(25);
      }
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas', '1', '--cluster-yes'], { timeout: timeoutMs });
    for (const n of nodes) {
      for (;;) {
        const info = await redisRaw(n.port, 'CLUSTER INFO\r\n', 1000).catch(() => '');
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`cluster node ${n.port} not ok`);
        await sleep(50);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const ports = nodes.map((n) => n.port);
  return {
    ports,
    seeds: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    rootNodes: ports.map((p) => ({ url: `redis://127.0.0.1:${p}` })),
    stop,
  };
}
