// Client contract (docs/client-contract.md) checked with the official socket.io-client,
// on every transport mode: polling upgraded to websocket, websocket only, polling only.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import {
  startGateway, runWsgate, connectClient, expectConnectError, closeAllClients, recorder, ack,
  sleep, nextEvent,
} from './harness.mjs';

const MODES = [
  { name: 'polling upgraded to websocket', opts: {}, expectTransport: 'websocket', upgrade: true },
  { name: 'websocket only', opts: { transports: ['websocket'] }, expectTransport: 'websocket' },
  { name: 'polling only', opts: { transports: ['polling'], upgrade: false }, expectTransport: 'polling' },
];

const TOKENS = { user_1: 'valid-token-1', user_2: 'valid-token-2', user_3: 'valid-token-3' };

let gw;

before(async () => {
  gw = await startGateway(['--demo-push', '200ms']);
});

after(async () => {
  closeAllClients();
  if (gw) await gw.stop();
});

/** Exact JSON (key order included) comparison with a readable failure. */
function assertJson(actual, expected, what = 'payload') {
  assert.equal(JSON.stringify(actual), JSON.stringify(expected), `${what}: exact JSON differs`);
}

/** Collect an exact-JSON mismatch instead of failing at the first one. */
function checkJson(mismatches, what, actual, expected) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) mismatches.push(`${what}:\n    expected ${e}\n    received ${a}`);
}

function reportMismatches(mismatches) {
  assert.equal(mismatches.length, 0, `${mismatches.length} mismatch(es):\n  ${mismatches.join('\n  ')}`);
}

// ---------------------------------------------------------------------------
// zod v3 issues from the contract
// ---------------------------------------------------------------------------

const issueRequired = { code: 'invalid_type', expected: 'object', received: 'undefined', path: [], message: 'Required' };
const issueNotObject = (received) => ({
  code: 'invalid_type', expected: 'object', received, path: [], message: `Expected object, received ${received}`,
});
const issueMissingId = {
  code: 'invalid_type', expected: 'string', received: 'undefined', path: ['projectId'], message: 'Required',
};
const issueIdType = (received) => ({
  code: 'invalid_type', expected: 'string', received, path: ['projectId'], message: `Expected string, received ${received}`,
});
const issueEmpty = {
  code: 'too_small', minimum: 1, type: 'string', inclusive: true, exact: false,
  message: 'String must contain at least 1 character(s)', path: ['projectId'],
};
const issueTooBig = {
  code: 'too_big', maximum: 256, type: 'string', inclusive: true, exact: false,
  message: 'String must contain at most 256 character(s)', path: ['projectId'],
};
const issueControl = {
  validation: 'regex', code: 'invalid_string', message: 'Must not contain control characters', path: ['projectId'],
};

// [label, args to emit after the event name, expected issue]
const VALIDATION_CASES = [
  ['no payload', [], issueRequired],
  ['string payload', ['project_one'], issueNotObject('string')],
  ['number payload', [5], issueNotObject('number')],
  ['boolean payload', [true], issueNotObject('boolean')],
  ['null payload', [null], issueNotObject('null')],
  ['array payload', [[{ projectId: 'project_one' }]], issueNotObject('array')],
  ['empty object', [{}], issueMissingId],
  ['other keys only', [{ project: 'project_one' }], issueMissingId],
  ['projectId number', [{ projectId: 5 }], issueIdType('number')],
  ['projectId null', [{ projectId: null }], issueIdType('null')],
  ['projectId boolean', [{ projectId: false }], issueIdType('boolean')],
  ['projectId object', [{ projectId: { id: 'project_one' } }], issueIdType('object')],
  ['projectId array', [{ projectId: ['project_one'] }], issueIdType('array')],
  ['projectId empty string', [{ projectId: '' }], issueEmpty],
  ['projectId 257 ASCII chars', [{ projectId: 'a'.repeat(257) }], issueTooBig],
  ['projectId 129 emoji (258 UTF-16 units)', [{ projectId: '\u{1F600}'.repeat(129) }], issueTooBig],
  ['projectId 257 two-byte chars', [{ projectId: '\u00e9'.repeat(257) }], issueTooBig],
  ['projectId with NUL', [{ projectId: 'project\u0000one' }], issueControl],
  ['projectId with U+001F', [{ projectId: 'a\u001f' }], issueControl],
  ['projectId with newline', [{ projectId: 'project_one\n' }], issueControl],
  ['projectId with DEL U+007F', [{ projectId: '\u007fproject' }], issueControl],
  ['projectId with U+0080', [{ projectId: 'x\u0080y' }], issueControl],
  ['projectId with U+009F', [{ projectId: 'x\u009f' }], issueControl],
];

// ---------------------------------------------------------------------------
// authentication
// ---------------------------------------------------------------------------

describe('connect: authentication', () => {
  const ACCEPTED = [
    ['raw token in Authorization header', { extraHeaders: { Authorization: 'valid-token-1' } }],
    ['Bearer token in Authorization header', { extraHeaders: { Authorization: 'Bearer valid-token-2' } }],
    ['auth.token in the handshake', { auth: { token: 'valid-token-3' } }],
  ];
  for (const mode of MODES) {
    for (const [label, opts] of ACCEPTED) {
      test(`${mode.name}: accepted with ${label}`, async () => {
        const s = await connectClient(gw.url, { ...mode.opts, ...opts });
        try {
          assert.equal(s.connected, true);
          const answer = await ack(s, 'message', 'hi');
          assert.equal(answer, 'Hello world!');
        } finally {
          s.close();
        }
      });
    }
  }

  const REFUSED = [
    ['no token at all', {}],
    ['auth object without token', { auth: {} }],
    ['empty auth.token', { auth: { token: '' } }],
    ['empty Authorization header', { extraHeaders: { Authorization: '' } }],
    ['"Bearer " with nothing after it', { extraHeaders: { Authorization: 'Bearer ' } }],
    ['numeric auth.token (5)', { auth: { token: 5 } }],
    ['null auth.token', { auth: { token: null } }],
    ['boolean auth.token', { auth: { token: true } }],
    ['array auth.token', { auth: { token: ['valid-token-1'] } }],
    ['object auth.token', { auth: { token: { token: 'valid-token-1' } } }],
    ['unknown auth.token', { auth: { token: 'not-a-token' } }],
    ['unknown raw header token', { extraHeaders: { Authorization: 'not-a-token' } }],
    ['unknown Bearer header token', { extraHeaders: { Authorization: 'Bearer not-a-token' } }],
    ['valid token with a trailing character', { auth: { token: 'valid-token-1x' } }],
    ['valid token prefix', { auth: { token: 'valid-token-' } }],
    // auth that is not an object: the client API allows it through an auth function.
    ['auth is a string (not an object)', { auth: (cb) => cb('valid-token-1') }],
    ['auth is an array (not an object)', { auth: (cb) => cb(['valid-token-1']) }],
  ];
  for (const mode of MODES) {
    for (const [label, opts] of REFUSED) {
      test(`${mode.name}: refused with ${label} -> connect_error "Unauthorized"`, async () => {
        const err = await expectConnectError(gw.url, { ...mode.opts, ...opts });
        assert.equal(err.message, 'Unauthorized', `connect_error message (got ${JSON.stringify(err.message)})`);
      });
    }
  }

  test('raw websocket: CONNECT with a non-object auth payload gets CONNECT_ERROR Unauthorized', async () => {
    for (const payload of ['"valid-token-1"', '5', '["valid-token-1"]', 'null', 'true']) {
      const frames = await rawConnectFrames(`40${payload}`);
      const reply = frames.find((f) => f.startsWith('44') || f.startsWith('40'));
      assert.ok(reply, `no CONNECT/CONNECT_ERROR reply for auth ${payload}; got ${JSON.stringify(frames)}`);
      assert.ok(reply.startsWith('44'), `auth ${payload}: expected CONNECT_ERROR, got ${reply}`);
      assert.equal(JSON.parse(reply.slice(2)).message, 'Unauthorized', `auth ${payload}: ${reply}`);
    }
  });
});

/** Open a raw engine.io websocket, send `packet` after the open packet, return the text frames received in 1.5 s. */
async function rawConnectFrames(packet) {
  const ws = new WebSocket(`${gw.wsUrl}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  const done = new Promise((resolve) => {
    ws.on('close', resolve);
    ws.on('error', resolve);
  });
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '<binary>' : data.toString();
    frames.push(text);
    if (text.startsWith('0')) ws.send(packet);
    if (text === '2') ws.send('3');
    if (text.startsWith('44') || text.startsWith('40')) setTimeout(() => ws.close(), 50);
  });
  await Promise.race([done, sleep(1500)]);
  try { ws.terminate(); } catch { /* ignore */ }
  return frames;
}

// ---------------------------------------------------------------------------
// events, per transport mode
// ---------------------------------------------------------------------------

for (const mode of MODES) {
  describe(`events over ${mode.name}`, () => {
    let s1; // user_1: project_one only
    let r1;

    before(async () => {
      s1 = await connectClient(gw.url, { ...mode.opts, auth: { token: TOKENS.user_1 } });
      if (mode.upgrade) {
        if (s1.io.engine.transport.name !== 'websocket') {
          await nextEvent(s1.io.engine, 'upgrade', 5000);
        }
      }
      r1 = recorder(s1);
    });
    after(() => { s1?.close(); });

    test(`transport is ${mode.expectTransport}`, () => {
      assert.equal(s1.io.engine.transport.name, mode.expectTransport);
      assert.equal(s1.connected, true);
    });

    test('message without ack -> event message "Hello world!"', async () => {
      r1.clear();
      s1.emit('message', 'hello');
      const [reply] = await r1.waitFor('message');
      assert.equal(reply, 'Hello world!');
    });

    test('message with any payload and ack -> ack "Hello world!" and event message', async () => {
      const payloads = [[], ['text'], [42], [null], [{ a: [1, 2, { b: 'c' }] }], [[1, 2, 3]], [true, 'two', 3],
        [Buffer.from([1, 2, 3, 255])]];
      for (const args of payloads) {
        r1.clear();
        const answer = await ack(s1, 'message', ...args);
        assert.equal(answer, 'Hello world!', `ack for message(${JSON.stringify(args)})`);
        const [ev] = await r1.waitFor('message');
        assert.equal(ev, 'Hello world!', `event for message(${JSON.stringify(args)})`);
      }
    });

    test('join_project / leave_project with events', async () => {
      r1.clear();
      s1.emit('join_project', { projectId: 'project_one' });
      const [joined] = await r1.waitFor('join_project');
      assert.equal(joined, 'You have joined project_one!');
      s1.emit('leave_project', { projectId: 'project_one' });
      const [left] = await r1.waitFor('leave_project');
      assert.equal(left, 'You have left project_one!');
      assert.equal(r1.of('exception').length, 0, `unexpected exception: ${JSON.stringify(r1.of('exception'))}`);
    });

    test('join_project / leave_project with emitWithAck (ack and event)', async () => {
      r1.clear();
      const joined = await ack(s1, 'join_project', { projectId: 'project_one' });
      assert.equal(joined, 'You have joined project_one!');
      const [joinedEv] = await r1.waitFor('join_project');
      assert.equal(joinedEv, 'You have joined project_one!');
      const left = await ack(s1, 'leave_project', { projectId: 'project_one' });
      assert.equal(left, 'You have left project_one!');
      const [leftEv] = await r1.waitFor('leave_project');
      assert.equal(leftEv, 'You have left project_one!');
      assert.equal(r1.of('exception').length, 0, `unexpected exception: ${JSON.stringify(r1.of('exception'))}`);
    });

    test('join_project with extra keys beside projectId is accepted', async () => {
      const joined = await ack(s1, 'join_project', { projectId: 'project_one', extra: 1 });
      assert.equal(joined, 'You have joined project_one!');
      await ack(s1, 'leave_project', { projectId: 'project_one' });
    });

    test('join_project with 256-unit projectId passes validation (then Project not found)', async () => {
      for (const projectId of ['a'.repeat(256), '\u{1F600}'.repeat(128), 'x\u00a0y']) {
        const payload = { projectId };
        const answer = await ack(s1, 'join_project', payload);
        assertJson(answer, {
          status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: payload },
        }, `ack for projectId of length ${projectId.length}`);
      }
    });

    test('validation: every issue, as exception event (no ack)', async () => {
      const mismatches = [];
      for (const [label, args, issue] of VALIDATION_CASES) {
        r1.clear();
        s1.emit('join_project', ...args);
        const [exc] = await r1.waitFor('exception');
        checkJson(mismatches, `exception for ${label}`, exc, { message: 'Validation failed', errors: [issue] });
        if (r1.of('join_project').length !== 0) mismatches.push(`${label}: unexpected join_project event`);
      }
      reportMismatches(mismatches);
    });

    test('validation: every issue, through the ack and also as exception event', async () => {
      const mismatches = [];
      for (const [label, args, issue] of VALIDATION_CASES) {
        r1.clear();
        const answer = await ack(s1, 'join_project', ...args);
        checkJson(mismatches, `ack for ${label}`, answer, { status: 'error', message: 'Validation failed', errors: [issue] });
        const [exc] = await r1.waitFor('exception');
        checkJson(mismatches, `exception event for ${label}`, exc, { message: 'Validation failed', errors: [issue] });
      }
      reportMismatches(mismatches);
    });

    test('validation applies to leave_project too', async () => {
      const mismatches = [];
      for (const [label, args, issue] of VALIDATION_CASES.filter((_, i) => i % 3 === 0)) {
        r1.clear();
        const answer = await ack(s1, 'leave_project', ...args);
        checkJson(mismatches, `leave_project ack for ${label}`, answer,
          { status: 'error', message: 'Validation failed', errors: [issue] });
        const [exc] = await r1.waitFor('exception');
        checkJson(mismatches, `leave_project exception for ${label}`, exc, { message: 'Validation failed', errors: [issue] });
      }
      reportMismatches(mismatches);
    });

    test('Project not found: forbidden and nonexistent projects get identical answers (event)', async () => {
      const answers = [];
      for (const projectId of ['project_two', 'project_three', 'no_such_project']) {
        r1.clear();
        const payload = { projectId };
        s1.emit('join_project', payload);
        const [exc] = await r1.waitFor('exception');
        assertJson(exc, {
          status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: payload },
        }, `exception for ${projectId}`);
        answers.push(JSON.stringify(exc).replace(projectId, 'X'));
        assert.equal(r1.of('join_project').length, 0);
      }
      assert.equal(new Set(answers).size, 1, `answers differ: ${answers.join(' | ')}`);
    });

    test('Project not found: through the ack (and the exception event)', async () => {
      for (const projectId of ['project_two', 'no_such_project']) {
        r1.clear();
        const payload = { projectId };
        const expected = {
          status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: payload },
        };
        const answer = await ack(s1, 'join_project', payload);
        assertJson(answer, expected, `ack for ${projectId}`);
        const [exc] = await r1.waitFor('exception');
        assertJson(exc, expected, `exception event for ${projectId}`);
      }
    });

    test('user_2 may join all three projects', async () => {
      const s2 = await connectClient(gw.url, { ...mode.opts, extraHeaders: { Authorization: `Bearer ${TOKENS.user_2}` } });
      try {
        for (const p of ['project_one', 'project_two', 'project_three']) {
          assert.equal(await ack(s2, 'join_project', { projectId: p }), `You have joined ${p}!`);
        }
      } finally {
        s2.close();
      }
    });

    test('room updates (--demo-push 200ms) reach members only', async () => {
      const member = s1; // user_1
      const bystander = await connectClient(gw.url, { ...mode.opts, auth: { token: TOKENS.user_1 } });
      const other = await connectClient(gw.url, { ...mode.opts, auth: { token: TOKENS.user_3 } });
      try {
        const rb = recorder(bystander);
        const ro = recorder(other);
        assert.equal(await ack(other, 'join_project', { projectId: 'project_three' }), 'You have joined project_three!');
        r1.clear();
        assert.equal(await ack(member, 'join_project', { projectId: 'project_one' }), 'You have joined project_one!');
        const re = /^Hello, project_one! Time is -- \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) --$/;
        const args = await r1.waitFor('chat', () => true, 3000);
        assert.equal(args.length, 1, `chat should carry one argument, got ${JSON.stringify(args)}`);
        assert.match(args[0], re);
        await r1.waitFor('chat', () => r1.of('chat').length >= 3, 3000);
        for (const a of r1.of('chat')) assert.match(a[0], re, 'member of project_one only gets project_one updates');
        // user_3 in project_three gets project_three updates only
        await ro.waitFor('chat', () => true, 3000);
        for (const a of ro.of('chat')) {
          assert.match(a[0], /^Hello, project_three! Time is -- .+ --$/, `non-member got ${JSON.stringify(a)}`);
        }
        // a connected client in no room gets nothing
        assert.deepEqual(rb.of('chat'), [], 'a client in no room must not receive room updates');
        // after leave_project: no more updates
        assert.equal(await ack(member, 'leave_project', { projectId: 'project_one' }), 'You have left project_one!');
        await sleep(300);
        r1.clear();
        await sleep(800);
        assert.deepEqual(r1.of('chat'), [], 'updates after leave_project');
        assert.deepEqual(rb.of('chat'), [], 'a client in no room must not receive room updates');
      } finally {
        bystander.close();
        other.close();
      }
    });
  });
}

test('a Bearer header token over websocket-only (extraHeaders) is honoured and identifies the user', async () => {
  // user_3 may join project_three but not project_one: proves the header identified user_3.
  const s = await connectClient(gw.url, { transports: ['websocket'], extraHeaders: { Authorization: 'Bearer valid-token-3' } });
  try {
    assert.equal(await ack(s, 'join_project', { projectId: 'project_three' }), 'You have joined project_three!');
    const denied = await ack(s, 'join_project', { projectId: 'project_one' });
    assertJson(denied, { status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: { projectId: 'project_one' } } });
  } finally {
    s.close();
  }
});

test('the gateway is still running after the contract tests', () => {
  assert.equal(gw.alive(), true, `gateway exited: ${JSON.stringify(gw.exitInfo())}\n${gw.stderr().slice(-4000)}`);
});

// ---------------------------------------------------------------------------
// command line (the parts of the contract a client can observe)
// ---------------------------------------------------------------------------

describe('command line', () => {
  let dir;
  before(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'wsgate-js-')); });
  after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  test('GET /healthz and /readyz answer 200 on a replica without Redis', async () => {
    for (const p of ['/healthz', '/readyz']) {
      const r = await fetch(`${gw.url}${p}`, { signal: AbortSignal.timeout(3000) });
      assert.equal(r.status, 200, `${p} -> ${r.status}`);
    }
  });

  for (const [label, args, env, mention] of [
    ['--max-payload abc', ['--max-payload', 'abc'], {}, /max.payload/i],
    ['WSGATE_MAX_PAYLOAD=abc', [], { WSGATE_MAX_PAYLOAD: 'abc' }, /max.payload/i],
    ['--demo-push nonsense', ['--demo-push', 'nonsense'], {}, /demo.push/i],
    ['--tokens pointing at a missing file', ['--tokens', '/nonexistent/wsgate-tokens.json'], {}, /tokens/i],
  ]) {
    test(`a bad setting (${label}) exits non-zero naming the setting`, async () => {
      const r = await runWsgate(['serve', '--listen', '127.0.0.1:0', ...args], { env, timeoutMs: 10000 });
      assert.notEqual(r.code, 0, `exit code for ${label}`);
      assert.doesNotMatch(r.stdout, /WSGATE_LISTENING=/, 'must not start listening');
      assert.match(r.stderr, mention, `stderr should name the setting: ${r.stderr.slice(0, 500)}`);
    });
  }

  for (const format of ['json', 'toml']) {
    test(`--tokens and --permissions ${format.toUpperCase()} files replace the demo tables`, async () => {
      const tokens = path.join(dir, `tokens.${format}`);
      const perms = path.join(dir, `permissions.${format}`);
      if (format === 'json') {
        await writeFile(tokens, JSON.stringify({ 'tok-alice': 'alice', 'tok-bob': 'bob' }));
        await writeFile(perms, JSON.stringify({ alice: ['p_a', 'p_shared'], bob: ['p_shared'] }));
      } else {
        await writeFile(tokens, '"tok-alice" = "alice"\n"tok-bob" = "bob"\n');
        await writeFile(perms, 'alice = ["p_a", "p_shared"]\nbob = ["p_shared"]\n');
      }
      const g = await startGateway(['--tokens', tokens, '--permissions', perms]);
      try {
        const err = await expectConnectError(g.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
        assert.equal(err.message, 'Unauthorized', 'demo tokens are gone');
        const alice = await connectClient(g.url, { transports: ['websocket'], extraHeaders: { Authorization: 'Bearer tok-alice' } });
        const bob = await connectClient(g.url, { transports: ['websocket'], auth: { token: 'tok-bob' } });
        try {
          assert.equal(await ack(alice, 'join_project', { projectId: 'p_a' }), 'You have joined p_a!');
          assert.equal(await ack(bob, 'join_project', { projectId: 'p_shared' }), 'You have joined p_shared!');
          assertJson(await ack(bob, 'join_project', { projectId: 'p_a' }),
            { status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: { projectId: 'p_a' } } });
          assertJson(await ack(alice, 'join_project', { projectId: 'project_one' }),
            { status: 'error', message: 'Project not found', cause: { pattern: 'join_project', data: { projectId: 'project_one' } } });
        } finally {
          alice.close();
          bob.close();
        }
      } finally {
        await g.stop();
      }
    });
  }

  test('--max-payload 64KiB: a 100 KB message disconnects that client only, 60 KB is fine', async () => {
    const g = await startGateway(['--max-payload', '65536']);
    try {
      const small = await connectClient(g.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
      const big = await connectClient(g.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
      const other = await connectClient(g.url, { transports: ['polling'], upgrade: false, auth: { token: 'valid-token-2' } });
      try {
        assert.equal(await ack(small, 'message', 'x'.repeat(60 * 1024)), 'Hello world!');
        const gone = nextEvent(big, 'disconnect', 5000);
        big.emit('message', 'x'.repeat(100 * 1024));
        await gone;
        assert.equal(await ack(small, 'message'), 'Hello world!');
        assert.equal(await ack(other, 'message'), 'Hello world!');
        // polling: a POST body over the limit
        const pollBig = await connectClient(g.url, { transports: ['polling'], upgrade: false, auth: { token: 'valid-token-3' } });
        const gone2 = nextEvent(pollBig, 'disconnect', 8000);
        pollBig.emit('message', 'y'.repeat(100 * 1024));
        await gone2;
        assert.equal(await ack(other, 'message'), 'Hello world!');
        assert.equal(await ack(small, 'message'), 'Hello world!');
      } finally {
        small.close(); big.close(); other.close();
      }
    } finally {
      await g.stop();
    }
  });
});
