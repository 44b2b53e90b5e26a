/**
 * The SDK's transport on the wire: unary calls to an `http:` control plane go through the
 * hand-written keep-alive client (src/http/h1-client.ts), so these check what `fetch` did for them
 * before: the request as sent (base-URL path, host, JSON body in UTF-8), the answer decoded (chunked,
 * multi-byte characters split across reads), one kept-alive connection, headers checked where they
 * enter, a target that needs escaping handed to fetch, and a deadline that fires while a call still
 * waits for a free connection.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { ControlPlaneUnreachableError, InvalidOptionError } from '../errors/index.js';
import { ControlPlaneClient } from './client.js';
import { Transport } from './http.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A node:http server recording each request; `answer` writes the response. */
async function server(t: TestContext, answer: (req: IncomingMessage, res: import('node:http').ServerResponse, body: string) => void): Promise<{ url: string; seen: Seen[]; connections: () => number }> {
  const seen: Seen[] = [];
  let connections = 0;
  const s: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      answer(req, res, body);
    });
  });
  s.on('connection', () => connections++);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.after(() => {
    s.closeAllConnections();
    s.close();
  });
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen, connections: () => connections };
}

test('a put as sent: base-URL path, host, JSON in UTF-8 with its length; the answer decoded across chunked reads; one connection kept alive', async (t) => {
  const s = await server(t, (_req, res) => {
    // A chunked answer whose multi-byte characters are split between chunks (and so between reads).
    res.writeHead(200, { 'content-type': 'application/json' });
    const bytes = Buffer.from(JSON.stringify({ revision: 7, note: 'grüße ✓' }), 'utf8');
    const cut = bytes.indexOf(0xc3) + 1; // inside 'ü'
    res.write(bytes.subarray(0, cut));
    setTimeout(() => res.end(bytes.subarray(cut)), 20);
  });
  const client = new ControlPlaneClient({ url: `${s.url}/prefix/`, headers: { 'X-Team': 'core' } });
  t.after(() => client.close());
  const answer = await client.put('/k/ü', 'wert ✓');
  assert.deepEqual(answer, { revision: 7, note: 'grüße ✓' });
  await client.put('/k/2', 'v');
  await client.get('/k/2').catch(() => undefined);
  assert.equal(s.connections(), 1, 'three calls, one connection');
  const first = s.seen[0]!;
  assert.equal(first.method, 'PUT');
  assert.equal(first.url, '/prefix/v1/kv');
  assert.equal(first.headers.host, new URL(s.url).host);
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.headers['x-team'], 'core');
  assert.equal(first.headers.accept, 'application/json');
  assert.equal(Number(first.headers['content-length']), Buffer.byteLength(first.body, 'utf8'));
  assert.deepEqual(JSON.parse(first.body), { key: '/k/ü', value: 'wert ✓' });
  assert.equal(s.seen[2]!.url, '/prefix/v1/kv?key=%2Fk%2F2');
});

test('headers are checked where they enter: a line break, a bad name or a non-string is refused', () => {
  assert.throws(() => new ControlPlaneClient({ headers: { 'x-a': 'one\r\nx-evil: 1' } }), (e: unknown) => e instanceof InvalidOptionError && /"headers"/.test(e.message));
  assert.throws(() => new ControlPlaneClient({ headers: { 'bad name': 'v' } }), InvalidOptionError);
  assert.throws(() => new ControlPlaneClient({ headers: { 'x-n': 1 } as never }), InvalidOptionError);
  assert.throws(() => new ControlPlaneClient({ headers: 'x' as never }), InvalidOptionError);
});

test('a target the hand-written client would have to escape goes through fetch, which escapes it', async (t) => {
  const s = await server(t, (_req, res) => res.end('{}'));
  const tr = new Transport({ urls: [s.url], timeout: 2_000, headers: {} });
  t.after(() => tr.close());
  await tr.json('GET', '/v1/a b');
  assert.equal(s.seen[0]!.url, '/v1/a%20b');
});

test('a deadline that fires while the call still waits for a free connection rejects it; the pool serves the next call', async (t) => {
  // Every connection is taken by calls the server never answers; one more call waits in the pool's
  // queue. All of them must fail at their deadline, the queued one included, and not hang.
  const held: Array<import('node:http').ServerResponse> = [];
  let answerNow = false;
  const s = await server(t, (_req, res) => (answerNow ? res.end('{"ok":true}') : held.push(res)));
  const tr = new Transport({ urls: [s.url], timeout: 1_000, headers: {} });
  t.after(() => tr.close());
  let settled = 0;
  const busy = Array.from({ length: 256 }, (_, i) => tr.json('GET', `/v1/hold/${i}`).then(() => 'answered', (e: unknown) => e).finally(() => settled++));
  await until(() => held.length === 256, 'the 256 calls to reach the server');
  // The 257th waits in the queue; its own deadline is shorter than theirs.
  const started = Date.now();
  const queued = await tr.json('GET', '/v1/queued', { timeout: 150 }).then(() => 'answered', (e: unknown) => e);
  assert.ok(queued instanceof ControlPlaneUnreachableError && /no answer within 150 ms/.test(queued.message), String(queued));
  assert.ok(Date.now() - started < 900, 'rejected at its own deadline, not when a connection freed up');
  assert.equal(settled, 0, 'the busy calls were still waiting');
  assert.equal(s.connections(), 256, 'no connection beyond the limit');
  const results = await Promise.all(busy);
  assert.ok(results.every((r) => r instanceof ControlPlaneUnreachableError && /no answer within 1000 ms/.test(r.message)));
  answerNow = true;
  assert.deepEqual(await tr.json('GET', '/v1/after'), { ok: true });
});
