// Malformed input at the raw protocol level. After EACH kind of bad input:
// - the gateway process is still running and /healthz answers 200,
// - a brand-new client (websocket and polling) connects, joins project_one and gets its answer,
// - the two long-lived clients opened at the start are still connected and answer `message`.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startGateway, connectClient, closeAllClients, ack, sleep,
} from './harness.mjs';
import {
  rawEio, rawSio, rawFramer, wsFrame, rawTcp, httpReq, pollingSession,
} from './raw.mjs';

const MB = 1024 * 1024;
let gw;
let longWs; // user_1, websocket only
let longPoll; // user_2, polling only
const longDisconnects = [];
const handles = [];

before(async () => {
  gw = await startGateway([]); // default --max-payload (1 MB)
  longWs = await connectClient(gw.url, { transports: ['websocket'], auth: { token: 'valid-token-1' } });
  longPoll = await connectClient(gw.url, { transports: ['polling'], upgrade: false, auth: { token: 'valid-token-2' } });
  longWs.on('disconnect', (r) => longDisconnects.push(`websocket client: ${r}`));
  longPoll.on('disconnect', (r) => longDisconnects.push(`polling client: ${r}`));
  assert.equal(await ack(longWs, 'join_project', { projectId: 'project_one' }), 'You have joined project_one!');
  assert.equal(await ack(longPoll, 'join_project', { projectId: 'project_two' }), 'You have joined project_two!');
});

after(async () => {
  for (const h of handles) h.close();
  closeAllClients();
  if (gw) await gw.stop();
});

function keep(h) { handles.push(h); return h; }

function closeAll() {
  while (handles.length) handles.pop().close();
}

async function assertHealthy(label) {
  assert.equal(gw.alive(), true,
    `[${label}] gateway process exited: ${JSON.stringify(gw.exitInfo())}\n${gw.stderr().slice(-4000)}`);
  const hz = await httpReq(`${gw.url}/healthz`, { timeoutMs: 3000 });
  assert.equal(hz.status, 200, `[${label}] /healthz answered ${hz.status} ${hz.error ?? ''}`);
  for (const opts of [{ transports: ['websocket'] }, { transports: ['polling'], upgrade: false }]) {
    const fresh = await connectClient(gw.url, { ...opts, auth: { token: 'valid-token-1' } }, { timeoutMs: 5000 });
    try {
      const answer = await ack(fresh, 'join_project', { projectId: 'project_one' });
      assert.equal(answer, 'You have joined project_one!', `[${label}] fresh ${opts.transports[0]} client join`);
    } finally {
      fresh.close();
    }
  }
  assert.deepEqual(longDisconnects, [], `[${label}] a long-lived client was disconnected`);
  assert.equal(longWs.connected, true, `[${label}] long-lived websocket client not connected`);
  assert.equal(longPoll.connected, true, `[${label}] long-lived polling client not connected`);
  assert.equal(await ack(longWs, 'message', 'still there?'), 'Hello world!', `[${label}] long-lived websocket client`);
  assert.equal(await ack(longPoll, 'message', 'still there?'), 'Hello world!', `[${label}] long-lived polling client`);
}

/** Send each packet on its own fresh Socket.IO-connected raw websocket (or one shared when shared=true). */
async function sendSio(packets, { shared = false, waitMs = 200, connect = true } = {}) {
  let h = shared ? keep(await (connect ? rawSio(gw) : rawEio(gw))) : null;
  const out = [];
  for (const p of packets) {
    if (!shared) h = keep(await (connect ? rawSio(gw) : rawEio(gw)));
    await h.send(p, typeof p === 'string' ? undefined : { binary: true });
    if (!shared) {
      await Promise.race([h.closed, sleep(waitMs)]);
      out.push(h);
    }
  }
  if (shared) {
    await Promise.race([h.closed, sleep(waitMs)]);
    out.push(h);
  }
  return out;
}

function nested(n, open = '[', close = ']') {
  return open.repeat(n) + close.repeat(n);
}

const CASES = [
  // ---------------- Socket.IO / Engine.IO packets over websocket ----------------
  ['event packet with bad JSON', async () => {
    await sendSio(['42["message",', '42{"a":', '42["message","unterminated]', '42["message",NaN]',
      '42["message",undefined]', "42['message']", '42["message",]', '42[\u0001]']);
  }],
  ['unknown Engine.IO packet types', async () => {
    await sendSio(['9garbage', 'x', '', '7', '\u0000', '-1'], { waitMs: 150 });
  }],
  ['unknown Socket.IO packet types', async () => {
    await sendSio(['47["message"]', '48', '4x["message"]', '4', '4/']);
  }],
  ['event name that is not a string', async () => {
    await sendSio(['42[5]', '42[null]', '42[{"a":1}]', '42[]', '42{}', '42"message"', '42[["message"]]',
      '42[true,1]', '42[1.5,"x"]', '42', '42null']);
  }],
  ['garbage ack ids', async () => {
    await sendSio(['42abc["message"]', '42-1["message"]', '421.5["message"]',
      '42999999999999999999999999999["message"]', '4218446744073709551616["message"]',
      '42 1["message"]', '421e5["message"]']);
  }],
  ['ACK / BINARY_ACK packets for ids that were never sent', async () => {
    await sendSio(['43999["x"]', '43["x"]', '43abc', '46abc-', '461-5[{"_placeholder":true,"num":0}]',
      '4318446744073709551616[1]'], { shared: true });
  }],
  ['huge and out-of-range numbers', async () => {
    await sendSio([
      '42["message",1e999999]',
      '42["join_project",{"projectId":1e400}]',
      `42["message",${'9'.repeat(5000)}]`,
      '42["message",-1e-999999]',
      '42["join_project",{"projectId":-0}]',
      `42${'9'.repeat(1000)}["message"]`,
    ], { shared: true });
  }],
  ['deeply nested JSON: 100000 levels of [', async () => {
    await sendSio([`42["message",${nested(100000)}]`, `42["message",${'['.repeat(100000)}`]);
  }],
  ['deeply nested JSON object as join_project payload', async () => {
    await sendSio([`42["join_project",${'{"projectId":'.repeat(50000)}"x"${'}'.repeat(50000)}]`,
      `42["join_project",{"projectId":${nested(100000)}}]`]);
  }],
  ['deeply nested CONNECT auth payload', async () => {
    for (const p of [`40{"token":${nested(100000)}}`, `40${nested(100000)}`, `40${'{"a":'.repeat(50000)}`]) {
      const h = keep(await rawEio(gw, { token: null }));
      await h.send(p);
      const reply = await h.waitFor((m) => m.startsWith('4'), 1000);
      assert.ok(!reply || !reply.startsWith('40{'), `nested auth payload must not be accepted: ${reply?.slice(0, 80)}`);
    }
  }],
  ['binary event with bogus attachment counts', async () => {
    const bin = Buffer.from([1, 2, 3]);
    await sendSio(['45abc-["message"]', '45-1-["message"]', '45-["message"]',
      '4599999999999999999999-["message",{"_placeholder":true,"num":0}]']);
    // a huge (but parsable) count, then a few attachments and a normal event
    const [h] = await sendSio(['4599999-["message",{"_placeholder":true,"num":0}]'], { waitMs: 50 });
    for (let i = 0; i < 5; i++) await h.send(bin, { binary: true });
    await h.send('42["message"]');
    await Promise.race([h.closed, sleep(200)]);
  }],
  ['binary event whose attachments are never sent', async () => {
    const [h] = await sendSio(['452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'], { waitMs: 50 });
    await h.send(Buffer.from([1]), { binary: true });
    await h.send('42["message","interleaved"]');
    await sleep(200);
    h.close(); // hang up with one attachment missing
    const [h2] = await sendSio(['451-["join_project",{"_placeholder":true,"num":0}]'], { waitMs: 50 });
    await sleep(300);
    h2.close();
  }],
  ['placeholders pointing at attachments that do not exist', async () => {
    for (const ph of ['{"_placeholder":true,"num":7}', '{"_placeholder":true,"num":-1}', '{"_placeholder":true,"num":"x"}',
      '{"_placeholder":true}', '{"_placeholder":"yes","num":0}']) {
      const [h] = await sendSio([`451-["message",${ph}]`], { waitMs: 20 });
      await h.send(Buffer.from([9, 9, 9]), { binary: true });
      await Promise.race([h.closed, sleep(100)]);
    }
  }],
  ['binary frames without a header packet', async () => {
    await sendSio([Buffer.from([0x04, 0x32]), Buffer.alloc(0), crypto.randomBytes(4096)], { shared: true });
    await sendSio([Buffer.from('42["message"]')], { connect: false });
  }],
  ['CONNECT to unknown namespaces', async () => {
    for (const p of ['40/nope,', '40/admin,{"token":"valid-token-1"}', '40/\u0000,', '40nonslash', '40/' + 'n'.repeat(10000) + ',']) {
      const h = keep(await rawEio(gw));
      await h.send(p);
      const reply = await h.waitFor((m) => m.startsWith('4'), 800);
      assert.ok(!reply || !/^40\/[^,]+,\{/.test(reply), `unknown namespace was accepted: ${reply?.slice(0, 100)}`);
    }
    // events to a namespace the socket never joined
    await sendSio(['42/nope,["message"]', '42/nope,1["join_project",{"projectId":"project_one"}]'], { shared: true });
  }],
  ['events before the Socket.IO CONNECT get no answer', async () => {
    const h = keep(await rawEio(gw));
    await h.send('42["join_project",{"projectId":"project_one"}]');
    await h.send('421["join_project",{"projectId":"project_one"}]');
    await h.send('42["message"]');
    const reply = await h.waitFor((m) => m.startsWith('42') || m.startsWith('43'), 800);
    assert.equal(reply, null, `an event before CONNECT was answered: ${reply}`);
  }],
  ['CONNECT twice, DISCONNECT with garbage', async () => {
    await sendSio(['40', '40{"token":"valid-token-3"}', '41garbage', '41/nope,', '41'], { shared: true });
  }],
  ['Engine.IO packets out of order (upgrade/noop/pong/probe on an open websocket, data after close)', async () => {
    await sendSio(['5', '6', '3', '3probe', '2probe', '4', '0', '0{"sid":"x"}'], { shared: true });
    await sendSio(['1', '42["message"]', '40']);
  }],
  ['message before open: frames pipelined with the upgrade request', async () => {
    const key = crypto.randomBytes(16).toString('base64');
    const req = Buffer.from(
      `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${gw.address}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: valid-token-1\r\n\r\n`);
    await rawTcp(gw, [Buffer.concat([req, wsFrame(1, '42["message"]'), wsFrame(1, '40'), wsFrame(1, '42["join_project",{"projectId":"project_one"}]')])], { readMs: 500 });
    // polling: data for a session that does not exist yet, and POST without sid
    await httpReq(`${gw.url}/socket.io/?EIO=4&transport=polling`, { method: 'POST', body: '40' });
    await httpReq(`${gw.url}/socket.io/?EIO=4&transport=polling`, { method: 'POST', body: '42["message"]', headers: { Authorization: 'valid-token-1' } });
  }],
  ['an event name of 500 KB and an event with 10000 arguments', async () => {
    await sendSio([`42["${'a'.repeat(500 * 1024)}"]`, `42["message",${Array(10000).fill('1').join(',')}]`,
      `42["join_project",{"projectId":"${'p'.repeat(500 * 1024)}"}]`], { shared: true });
  }],
  ['reserved event names and __proto__ keys', async () => {
    await sendSio(['42["connect"]', '42["disconnect"]', '42["connect_error",{}]', '42["newListener","message"]',
      '42["__proto__",{}]', '42["join_project",{"__proto__":{"projectId":"project_one"}}]',
      '42["join_project",{"constructor":{"prototype":{"projectId":"x"}}}]', '42["error"]', '42["exception"]'], { shared: true });
  }],
  ['a burst of 2000 invalid packets on one connection', async () => {
    const h = keep(await rawSio(gw));
    for (let i = 0; i < 2000 && !h.isClosed; i++) h.ws.send(i % 2 ? '42[' : '4z');
    await Promise.race([h.closed, sleep(500)]);
  }],

  // ---------------- size limit (default --max-payload 1 MB) ----------------
  ['a 1.5 MB websocket text frame disconnects that client only', async () => {
    const h = keep(await rawSio(gw));
    await h.send(`42["message","${'a'.repeat(1.5 * MB)}"]`);
    const closed = await Promise.race([h.closed.then(() => true), sleep(5000).then(() => false)]);
    assert.equal(closed, true, 'the client that sent 1.5 MB should have been disconnected');
    assert.equal(h.messages.includes('42["message","Hello world!"]'), false, 'oversized event must not be handled');
  }],
  ['a 1.5 MB binary attachment disconnects that client only', async () => {
    const h = keep(await rawSio(gw));
    await h.send('451-["message",{"_placeholder":true,"num":0}]');
    await h.send(crypto.randomBytes(1.5 * MB), { binary: true });
    const closed = await Promise.race([h.closed.then(() => true), sleep(5000).then(() => false)]);
    assert.equal(closed, true, 'the client that sent a 1.5 MB attachment should have been disconnected');
  }],
  ['a 1.5 MB message in 24 websocket fragments disconnects that client only', async () => {
    const h = keep(await rawFramer(gw));
    const chunk = 'b'.repeat(64 * 1024);
    await h.write(wsFrame(1, '42["message","', { fin: false }));
    for (let i = 0; i < 24 && !h.isClosed; i++) await h.write(wsFrame(0, chunk, { fin: false }));
    await h.write(wsFrame(0, '"]', { fin: true }));
    const closed = await Promise.race([h.closed.then(() => true), sleep(5000).then(() => false)]);
    assert.equal(closed, true, 'the client that sent 1.5 MB in fragments should have been disconnected');
  }],
  ['a websocket frame header announcing 2^62 bytes, then hang up', async () => {
    const h = keep(await rawFramer(gw));
    await h.write(wsFrame(1, 'abc', { lengthOverride: 2 ** 62 }));
    await Promise.race([h.closed, sleep(500)]);
    h.close();
  }],
  ['a 1.5 MB polling POST body disconnects that session only', async () => {
    const s = await pollingSession(gw);
    const big = await httpReq(s.base, {
      method: 'POST', headers: { ...s.headers, 'Content-Type': 'text/plain;charset=UTF-8' },
      body: `42["message","${'c'.repeat(1.5 * MB)}"]`, timeoutMs: 10000,
    });
    const after = await httpReq(s.base, { method: 'POST', headers: s.headers, body: '42["message"]' });
    assert.ok(big.status !== 200 || after.status !== 200,
      `the polling session that sent 1.5 MB is still usable (POST ${big.status}, then ${after.status} ${after.body})`);
  }],

  // ---------------- websocket framing ----------------
  ['invalid UTF-8 in a websocket text frame', async () => {
    for (const bad of [Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]),
      Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xc0, 0xaf, 0x22, 0x5d]),
      Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d]),
      Buffer.from([0x34, 0x30, 0xf8, 0x88, 0x80, 0x80, 0x80])]) {
      const h = keep(await rawFramer(gw));
      await h.write(wsFrame(1, bad));
      await Promise.race([h.closed, sleep(300)]);
    }
    // the same through the ws package (it sends a Buffer as a text frame unchecked)
    const h = keep(await rawSio(gw));
    h.ws.send(Buffer.from([0x34, 0x32, 0x5b, 0xff, 0x5d]), { binary: false });
    await Promise.race([h.closed, sleep(300)]);
  }],
  ['websocket protocol violations (RSV bits, bad opcodes, unmasked, stray continuation, bad control frames)', async () => {
    const frames = [
      wsFrame(1, '42["message"]', { rsv: 7 }),
      wsFrame(3, 'x'),
      wsFrame(0xb, 'x'),
      wsFrame(1, '42["message"]', { mask: false }),
      wsFrame(0, 'continuation without a start'),
      wsFrame(9, 'fragmented ping', { fin: false }),
      wsFrame(9, 'p'.repeat(200)),
      wsFrame(8, Buffer.from([0x03, 0xe7])), // close code 999
      wsFrame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe])), // close 1000 + invalid UTF-8 reason
      wsFrame(8, Buffer.from([0x03])), // 1-byte close payload
      Buffer.from([0x81]), // truncated header, then hang up
    ];
    for (const f of frames) {
      const h = keep(await rawFramer(gw));
      await h.write(f);
      await Promise.race([h.closed, sleep(200)]);
      h.close();
    }
  }],
  ['a text message started and never finished (fragment, then hang up)', async () => {
    const h = keep(await rawFramer(gw));
    await h.write(wsFrame(1, '42["mess', { fin: false }));
    await h.write(wsFrame(1, 'age"]', { fin: true })); // new data frame inside a fragmented message
    await sleep(100);
    const h2 = keep(await rawFramer(gw));
    await h2.write(wsFrame(1, '42["mess', { fin: false }));
    await sleep(100);
    h2.close();
  }],

  // ---------------- raw TCP / HTTP ----------------
  ['garbage bytes on raw TCP', async () => {
    await rawTcp(gw, [crypto.randomBytes(64 * 1024)], { readMs: 300 });
    await rawTcp(gw, [Buffer.from([0])], { readMs: 200 });
    await rawTcp(gw, [Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), crypto.randomBytes(500)])], { readMs: 300 });
    await rawTcp(gw, [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), crypto.randomBytes(100)], { readMs: 300 });
  }],
  ['garbage HTTP requests', async () => {
    const host = `Host: ${gw.address}\r\n`;
    const reqs = [
      'BLAH BLAH BLAH\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${host}Content-Length: -5\r\n\r\n`,
      `POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n${host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n`,
      `POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc`,
      `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${host}no colon here\r\n\r\n`,
      `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${host}X-Big: ${'h'.repeat(200 * 1024)}\r\n\r\n`,
      `GET /socket.io/\u0000?EIO=4 HTTP/1.1\r\n${host}\r\n`,
      `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${host}Authorization: valid-token-1\r\nContent-Length: 100\r\n\r\nonly ten b`,
      `GET /${'%'.repeat(10000)} HTTP/1.1\r\n${host}\r\n`,
    ];
    for (const r of reqs) await rawTcp(gw, [Buffer.from(r, 'latin1')], { readMs: 300 });
    // a request sent one byte at a time, then abandoned
    await rawTcp(gw, [...Buffer.from(`GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${host}`)].slice(0, 40).map((b) => Buffer.from([b])), { readMs: 100, pauseMs: 1 });
  }],
  ['bad Engine.IO handshake queries', async () => {
    const h = { Authorization: 'valid-token-1' };
    for (const q of ['EIO=3&transport=polling', 'EIO=5&transport=polling', 'EIO=abc&transport=polling', 'transport=polling',
      'EIO=4&transport=flash', 'EIO=4', 'EIO=4&transport=polling&sid=unknown', 'EIO=4&transport=polling&j=1',
      'EIO=4&transport=polling&b64=1&sid=%00', 'EIO=4&transport=websocket']) {
      const r = await httpReq(`${gw.url}/socket.io/?${q}`, { headers: h, timeoutMs: 2000 });
      assert.ok(r.status === 0 || r.status < 500 || r.status === 503, `GET ?${q} answered ${r.status}`);
    }
    // websocket upgrade with an unknown sid, and without Sec-WebSocket-Key
    await rawEio(gw, { query: 'EIO=4&transport=websocket&sid=doesnotexist', waitOpen: false }).then((x) => keep(x), () => {});
    await rawTcp(gw, [Buffer.from(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${gw.address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`)], { readMs: 300 });
  }],
  ['polling POST with a bad sid', async () => {
    for (const sid of ['bogus', '', 'x'.repeat(10000), '%00', '../../etc/passwd', 'AAAAAAAAAAAAAAAAAAAA']) {
      const r = await httpReq(`${gw.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`,
        { method: 'POST', body: '42["message"]', headers: { Authorization: 'valid-token-1' }, timeoutMs: 2000 });
      assert.notEqual(r.status, 200, `POST with sid=${sid.slice(0, 20)} was accepted`);
    }
  }],
  ['polling POST with a junk body', async () => {
    const bodies = [
      Buffer.from([0, 1, 2, 3, 255]),
      '\u001e\u001e\u001e',
      '4',
      '42["message",',
      'bAAAA!!!not-base64',
      Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]),
      '42[5]\u001e42[]\u001e9\u001e',
      `42["message",${nested(100000)}]`,
      '1\u001e42["message"]',
      '',
      crypto.randomBytes(8192),
    ];
    for (const body of bodies) {
      const s = await pollingSession(gw);
      await httpReq(s.base, { method: 'POST', headers: { ...s.headers, 'Content-Type': 'text/plain;charset=UTF-8' }, body, timeoutMs: 3000 });
    }
  }],
  ['two concurrent long-poll GETs on one session', async () => {
    const s = await pollingSession(gw);
    await Promise.all([httpReq(s.base, { timeoutMs: 2000 }), httpReq(s.base, { timeoutMs: 2000 })]);
  }],
  ['websocket upgrade of a polling session: probe then garbage', async () => {
    const s = await pollingSession(gw);
    const h = keep(await rawEio(gw, { query: `EIO=4&transport=websocket&sid=${encodeURIComponent(s.sid)}`, waitOpen: false }).catch(() => null) ?? { close() {} });
    if (h.send) {
      await h.send('2probe');
      await h.waitFor((m) => m === '3probe', 1000);
      await h.send('42["message"]'); // data before the upgrade packet
      await h.send('9');
      await Promise.race([h.closed, sleep(200)]);
      h.close();
    }
    await httpReq(s.base, { method: 'POST', headers: s.headers, body: '42["message"]', timeoutMs: 2000 });
  }],
];

describe('malformed input never harms the gateway or other clients', () => {
  test('baseline: healthy before any malformed input', async () => {
    await assertHealthy('baseline');
  });
  for (const [name, run] of CASES) {
    test(name, async () => {
      try {
        await run();
      } finally {
        closeAll();
      }
      await assertHealthy(name);
    });
  }
  test('still healthy at the end', async () => {
    await sleep(200);
    await assertHealthy('end');
    assert.ok(CASES.length >= 20);
  });
});
