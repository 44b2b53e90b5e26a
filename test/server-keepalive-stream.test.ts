/**
 * The lease keep-alive stream (`POST /v1/leases/keepalive`) over real sockets: one long-lived request
 * whose NDJSON body renews leases line by line, answered in order on the streamed response.
 */
import assert from 'node:assert/strict';
import { createServer, request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { KeepAliveStreams } from '../src/server/index.js';
import type { LeaseGrant, Store } from '../src/store/index.js';
import { call, startServer } from './server-helpers.js';

interface Line {
  id?: string;
  ttl?: number;
  error?: { code: string; message: string };
}

/** A keep-alive stream from this process: write lines, read answers one by one. */
class StreamClient {
  readonly req: ClientRequest;
  res: IncomingMessage | undefined;
  readonly lines: Line[] = [];
  ended = false;
  #buf = '';
  #waiters: (() => void)[] = [];

  constructor(url: string, contentType = 'application/x-ndjson') {
    this.req = request(`${url}/v1/leases/keepalive`, { method: 'POST', headers: { 'content-type': contentType }, agent: false });
    this.req.on('error', () => undefined);
    this.req.flushHeaders();
  }

  response(): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      this.req.once('error', reject);
      this.req.once('response', (res) => {
        this.res = res;
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          this.#buf += s;
          let nl;
          while ((nl = this.#buf.indexOf('\n')) >= 0) {
            this.lines.push(JSON.parse(this.#buf.slice(0, nl)) as Line);
            this.#buf = this.#buf.slice(nl + 1);
          }
          this.#wake();
        });
        res.on('end', () => {
          this.ended = true;
          this.#wake();
        });
        res.on('error', () => undefined);
        resolve(res);
      });
    });
  }

  write(s: string): void {
    this.req.write(s);
  }

  /** Resolves once `n` answers have arrived (or the response ended). */
  async until(n: number, ms = 5_000): Promise<Line[]> {
    const deadline = Date.now() + ms;
    while (this.lines.length < n && !this.ended) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} answers; have ${this.lines.length}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.lines.slice(0, n);
  }

  async untilEnded(ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the response to end');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  destroy(): void {
    this.req.destroy();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

async function open(t: TestContext, url: string): Promise<StreamClient> {
  const s = new StreamClient(url);
  t.after(() => s.destroy());
  const res = await s.response();
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'application/x-ndjson');
  assert.equal(res.headers['transfer-encoding'], undefined, 'the answers are close-delimited, not chunked');
  return s;
}

async function grant(url: string, ttl: number): Promise<string> {
  const r = await call(url, 'POST', '/v1/leases', { ttl });
  assert.equal(r.status, 200);
  return r.body.id as string;
}

test('many lines on one stream are answered one each, in order; leases are renewed', async (t) => {
  const { url, store } = await startServer(t);
  const ids = [await grant(url, 5), await grant(url, 7), await grant(url, 9)];
  const s = await open(t, url);
  // Lines written one by one, some in one chunk, one split across two writes.
  const n = 600;
  let batch = '';
  for (let i = 0; i < n; i++) {
    const line = `{"id":"${ids[i % 3]!}"}\n`;
    if (i === 300) {
      s.write(batch + line.slice(0, 5));
      batch = '';
      s.write(line.slice(5));
    } else if (i % 50 === 0) {
      s.write(batch + line);
      batch = '';
    } else {
      batch += line;
    }
  }
  s.write(batch);
  const lines = await s.until(n);
  assert.equal(lines.length, n);
  lines.forEach((l, i) => assert.deepEqual(l, { id: ids[i % 3], ttl: [5, 7, 9][i % 3] }, `answer ${i}`));
  // The lease really was renewed: its time to live is back to the full TTL.
  const info = await store.leaseTimeToLive(ids[0]!);
  assert.equal(info?.ttl, 5);
  assert.equal(s.ended, false, 'the stream stays open');
  // The client ends its body: the server answers what is left and ends the response.
  s.write(`{"id":"${ids[1]!}"}`);
  s.req.end();
  await s.untilEnded();
  assert.deepEqual(s.lines.at(-1), { id: ids[1], ttl: 7 });
});

test('an unknown lease is an error line (SPOF_ERR_STORE_LEASE_NOT_FOUND) and the stream goes on', async (t) => {
  const { url } = await startServer(t);
  const id = await grant(url, 10);
  const s = await open(t, url);
  s.write(`{"id":"123456789"}\n{"id":"${id}"}\n`);
  const [bad, good] = await s.until(2);
  assert.equal(bad!.id, '123456789');
  assert.equal(bad!.error?.code, 'SPOF_ERR_STORE_LEASE_NOT_FOUND');
  assert.match(bad!.error.message, /123456789/);
  assert.deepEqual(good, { id, ttl: 10 });
});

test('a malformed line gets an error line naming what was wrong; the next line is served', async (t) => {
  const { url } = await startServer(t);
  const id = await grant(url, 10);
  const s = await open(t, url);
  s.write('not json\n\n{"lease":"1"}\n[1]\n{"id":12}\r\n');
  s.write(`{"id":"${id}","extra":true}\n{"id":"${id}"}\r\n`);
  const lines = await s.until(6);
  const msgs = lines.slice(0, 5).map((l) => {
    assert.equal(l.error?.code, 'SPOF_ERR_INVALID_ARGUMENT');
    return l.error.message;
  });
  assert.match(msgs[0]!, /line 1 is not valid JSON/);
  // Line 2 is blank: no answer, but it counts.
  assert.match(msgs[1]!, /line 3: "id" must be a lease id string; got undefined/);
  assert.match(msgs[2]!, /line 4 must be a JSON object/);
  assert.match(msgs[3]!, /line 5: "id" must be a lease id string; got 12/);
  assert.match(msgs[4]!, /line 6: unknown field "extra"/);
  assert.equal(lines[4]!.id, id);
  assert.deepEqual(lines[5], { id, ttl: 10 });
  assert.equal(s.ended, false);
});

test('a line longer than 1 KiB is refused and skipped, whole or in pieces; the stream goes on', async (t) => {
  const { url } = await startServer(t);
  const id = await grant(url, 10);
  const s = await open(t, url);
  const long = `{"id":"${'1'.repeat(5_000)}"}`;
  // In one chunk with the line after it.
  s.write(`${long}\n{"id":"${id}"}\n`);
  await s.until(2);
  // In pieces, none of them with a newline until the last.
  for (let i = 0; i < long.length; i += 700) {
    s.write(long.slice(i, i + 700));
    await new Promise((r) => setTimeout(r, 2));
  }
  s.write(`\n{"id":"${id}"}\n`);
  const lines = await s.until(4);
  for (const i of [0, 2]) {
    assert.equal(lines[i]!.error?.code, 'SPOF_ERR_INVALID_ARGUMENT');
    assert.match(lines[i]!.error.message, /longer than 1024 bytes/);
  }
  assert.match(lines[2]!.error!.message, /^line 3 /);
  assert.deepEqual(lines[1], { id, ttl: 10 });
  assert.deepEqual(lines[3], { id, ttl: 10 });
  assert.equal(lines.length, 4);
});

test('closing the server ends every stream at once, after answering what was read', async (t) => {
  const { url, cp } = await startServer(t);
  const id = await grant(url, 10);
  const streams = [await open(t, url), await open(t, url)];
  for (const s of streams) s.write(`{"id":"${id}"}\n`);
  await Promise.all(streams.map((s) => s.until(1)));
  const started = Date.now();
  await cp.close();
  await Promise.all(streams.map((s) => s.untilEnded(2_000)));
  const took = Date.now() - started;
  // Not the 5 s grace that a connection still in use would get.
  assert.ok(took < 2_000, `close took ${took} ms`);
  for (const s of streams) assert.deepEqual(s.lines, [{ id, ttl: 10 }]);
});

test('other content types are refused with 415; the per-request keepalive still works', async (t) => {
  const { url } = await startServer(t);
  const r = await call(url, 'POST', '/v1/leases/keepalive', {});
  assert.equal(r.status, 415);
  assert.equal(r.body.error?.code, 'SPOF_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE');
  assert.match(r.body.error.message, /application\/x-ndjson/);
  const id = await grant(url, 10);
  const k = await call(url, 'POST', `/v1/leases/${id}/keepalive`);
  assert.deepEqual(k.body, { id, ttl: 10 });
});

test('backpressure: at most maxPending lines are read and unanswered; reading resumes as answers go out', async (t) => {
  // A store whose renewals wait until released, behind a bare node:http server.
  const waiting: (() => void)[] = [];
  let calls = 0;
  const store = {
    keepAlive(id: string): Promise<LeaseGrant> {
      calls++;
      return new Promise((resolve) => waiting.push(() => resolve({ id, ttl: 3 })));
    },
  } as unknown as Store;
  const streams = new KeepAliveStreams({ store, maxPending: 8 });
  const server = createServer((req, res) => streams.serve(req, res, () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    streams.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const s = await open(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  for (let i = 0; i < 40; i++) {
    s.write(`{"id":"${i + 1}"}\n`);
    await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls, 8, 'reading paused at 8 pending answers');
  // Answer them all, and whatever reading brings in next, until all 40 are answered.
  while (s.lines.length < 40) {
    for (const w of waiting.splice(0)) w();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.deepEqual(
    s.lines.map((l) => l.id),
    Array.from({ length: 40 }, (_, i) => String(i + 1)),
  );
  assert.equal(calls, 40);
});
