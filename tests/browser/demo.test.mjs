// The demo page and the origin policy in a real browser: Debian's Chromium, headless,
// driven by playwright-core. Real wsgate processes, a real redis-server, and real
// `wsgate publish` runs (see ../js/harness.mjs; `npm ci` in tests/js first).
//
// Run: cd tests/browser && npm ci && WSGATE_BIN=../../target/debug/wsgate npm test
// (tests/run.sh does it all, installing Chromium when /usr/bin/chromium is missing).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { runWsgate, startGateway, startRedis } from '../js/harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const DEMO_DIR = path.join(ROOT, 'src', 'http', 'demo');
const SCREENSHOT = path.join(ROOT, 'target', 'demo-page.png');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
];
/** How soon a `wsgate publish` must show up on the page. */
const PUBLISH_SHOWN_WITHIN_MS = 2000;
const UI_TIMEOUT_MS = 8000;

/**
 * Serves the demo page's files (the same ones the binary embeds) from another origin:
 * `/` and `/demo/<file>`, like the gateway does.
 */
async function startStaticServer(host) {
  const files = {
    '/': ['index.html', 'text/html; charset=utf-8'],
    '/demo/app.js': ['app.js', 'text/javascript'],
    '/demo/socket.io.min.js': ['socket.io.min.js', 'text/javascript'],
  };
  const server = http.createServer((req, res) => {
    const entry = files[new URL(req.url, 'http://x').pathname];
    if (!entry) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': entry[1] }).end(readFileSync(path.join(DEMO_DIR, entry[0])));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address();
  return {
    origin: `http://${host}:${port}`,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

async function metrics(gateway) {
  const res = await fetch(`${gateway.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

function refusedCount(text, transport) {
  const m = new RegExp(`^wsgate_origin_refused_total\\{transport="${transport}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Picks a token and transports on the demo page and connects; waits for `connected`. */
async function connectPage(page, { token = 'valid-token-1', transports }) {
  await page.selectOption('#token', token);
  await page.selectOption('#transports', transports);
  await page.click('#connect');
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: UI_TIMEOUT_MS });
}

async function joinOnPage(page, project) {
  await page.click(`tr[data-project="${project}"] button[data-action="join"]`);
}

/** Log entries of one event kind, oldest first. */
async function logTexts(page, event) {
  const texts = await page.locator(`#log li[data-event="${event}"] .text`).allTextContents();
  return texts.reverse();
}

/** Publishes a `chat` update to project_one with `wsgate publish`; resolves once it exited 0. */
async function publishChat(redis, text) {
  const r = await runWsgate([
    'publish', '--redis-url', redis.url, '--room', 'project_one', '--event', 'chat',
    '--data', JSON.stringify({ text }),
  ]);
  assert.equal(r.code, 0, `wsgate publish failed: ${r.stderr}`);
}

describe('demo page in headless Chromium', { timeout: 90_000 }, () => {
  let context;
  let userDataDir;
  let redis;
  let gateway;
  let elsewhere;

  before(async () => {
    userDataDir = mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
    // A persistent context is how playwright takes a --user-data-dir of our own.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 760 },
      timeout: 30_000,
    });
    redis = await startRedis();
    // The embedded default apart from the Redis backplane: demo tokens, demo page on,
    // default origin policy.
    gateway = await startGateway(['--redis-url', redis.url]);
    // Another origin (127.0.0.2 is loopback too) serving the same page.
    elsewhere = await startStaticServer('127.0.0.2');
  });

  after(async () => {
    await context?.close();
    await elsewhere?.stop();
    await gateway?.stop();
    await redis?.stop();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  for (const [name, transports, shown] of [
    ['websocket only', 'websocket', 'websocket'],
    ['long-polling, then upgrade', 'polling,websocket', 'polling → websocket'],
  ]) {
    test(`${name}: auth.token connect, join project_one, a wsgate publish shows within 2 s, Project not found`, async () => {
      const page = await context.newPage();
      try {
        await page.goto(`${gateway.url}/`);
        await connectPage(page, { transports });
        await page.locator(`#transport[data-transport="websocket"]`).waitFor({ timeout: UI_TIMEOUT_MS });
        assert.equal(await page.textContent('#transport'), shown);

        await joinOnPage(page, 'project_one');
        await page.locator('tr[data-project="project_one"] td.member', { hasText: 'joined' })
          .waitFor({ timeout: UI_TIMEOUT_MS });
        assert.deepEqual(await logTexts(page, 'join_project'), ['You have joined project_one!']);

        for (const n of [1, 2]) {
          const text = `hello from wsgate publish #${n} (${transports})`;
          await publishChat(redis, text);
          await page.locator('#log li[data-event="chat"]', { hasText: text })
            .waitFor({ timeout: PUBLISH_SHOWN_WITHIN_MS });
        }

        await joinOnPage(page, 'project_two');
        await page.locator('#log li[data-event="exception"]', { hasText: 'Project not found' })
          .waitFor({ timeout: UI_TIMEOUT_MS });
        const [exception] = await logTexts(page, 'exception');
        assert.ok(exception.includes('"cause":{"pattern":"join_project","data":{"projectId":"project_two"}}'),
          exception);
        assert.equal(await page.textContent('tr[data-project="project_two"] td.member'), '');

        await page.click('#hello');
        await page.locator('#log li[data-event="message"]', { hasText: 'Hello world!' })
          .waitFor({ timeout: UI_TIMEOUT_MS });
        assert.equal(await page.getAttribute('#state', 'data-state'), 'connected');

        if (transports !== 'websocket') {
          mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
          await page.screenshot({ path: SCREENSHOT });
        }
        await page.click('#disconnect');
        await page.locator('#state[data-state="disconnected"]').waitFor({ timeout: UI_TIMEOUT_MS });
      } finally {
        await page.close();
      }
    });
  }

  test('a bad token shows Unauthorized and the page can connect again', async () => {
    const page = await context.newPage();
    try {
      await page.goto(`${gateway.url}/`);
      await page.selectOption('#token', 'not-a-token');
      await page.click('#connect');
      await page.locator('#state[data-state="error"]', { hasText: 'Unauthorized' })
        .waitFor({ timeout: UI_TIMEOUT_MS });
      await connectPage(page, { token: 'valid-token-3', transports: 'websocket' });
    } finally {
      await page.close();
    }
  });

  test('a page from an origin that is not allowed cannot connect, over either transport', async () => {
    const before = await metrics(gateway);
    const page = await context.newPage();
    try {
      for (const [transports, error, counted] of [
        ['websocket', 'websocket error', 'websocket'],
        ['polling', 'xhr poll error', 'polling'],
      ]) {
        await page.goto(`${elsewhere.origin}/?gateway=${encodeURIComponent(gateway.url)}`);
        await page.selectOption('#token', 'valid-token-1');
        await page.selectOption('#transports', transports);
        await page.click('#connect');
        await page.locator('#state[data-state="error"]', { hasText: error })
          .waitFor({ timeout: UI_TIMEOUT_MS });
        assert.equal(await page.locator('#log li[data-event="state"]').count(), 0,
          'the page must never have been connected');
        const now = await metrics(gateway);
        assert.ok(refusedCount(now, counted) > refusedCount(before, counted),
          `wsgate_origin_refused_total{transport="${counted}"} did not grow:\n${now}`);
      }
    } finally {
      await page.close();
    }
  });

  test('a page from an allowed other origin connects over long-polling (CORS, credentials)', async () => {
    const allowed = await startGateway(['--redis-url', redis.url,
      '--allowed-origins', elsewhere.origin, '--cors-credentials']);
    const page = await context.newPage();
    try {
      await page.goto(`${elsewhere.origin}/?gateway=${encodeURIComponent(allowed.url)}&credentials`);
      await connectPage(page, { transports: 'polling' });
      assert.equal(await page.textContent('#transport'), 'polling');
      await joinOnPage(page, 'project_one');
      await page.locator('tr[data-project="project_one"] td.member', { hasText: 'joined' })
        .waitFor({ timeout: UI_TIMEOUT_MS });
      const text = 'hello across origins';
      await publishChat(redis, text);
      await page.locator('#log li[data-event="chat"]', { hasText: text })
        .waitFor({ timeout: PUBLISH_SHOWN_WITHIN_MS });
    } finally {
      await page.close();
      await allowed.stop();
    }
  });
});
