/**
 * The gateway's listener (src/gateway/h1server.ts): the fast path for bodiless GET/HEAD and the hand-over
 * of everything else to node's HTTP server, over raw sockets.
 *
 * - the same calls on a `FastResponse` and on node's `ServerResponse` put the same bytes on the wire
 *   (content-length, chunked, HEAD, 204, Connection: close, Date added or kept);
 * - keep-alive, pipelining answered in order, a client's FIN cancelling the request in flight;
 * - bodies, 100-continue, HTTP/1.0, upgrades, split heads and malformed requests go to node, which
 *   answers them as it always did, also later on the same connection;
 * - `writeHead` refuses what node refuses, with node's codes; `req.headers` follows node's rules;
 * - backpressure (`write` false, then `drain`), idle timeout, closeIdleConnections / closeAllConnections.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { FastServer, headersObject, type FastRequest, type FastResponse } from '../src/gateway/h1server.js';
import { until } from './helpers/procs.js';

type Req = IncomingMessage | FastRequest;
type Res = ServerResponse | FastResponse;

/** One handler for both servers, so that their bytes can be compared. */
function handle(req: Req, res: Res): void {
  const url = new URL(req.url ?? '/', 'http://x');
  switch (url.pathname) {
    case '/len':
      res.writeHead(200, ['content-type', 'text/plain', 'content-length', '2']);
      res.end('ok');
      return;
    case '/chunked':
      res.writeHead(200, 'Fine', ['x-a', '1']);
      res.write(Buffer.from('ab'));
      res.write(Buffer.from('cde'));
      res.end();
      return;
    case '/nocontent':
      res.writeHead(204, ['x-b', '2']);
      res.end();
      return;
    case '/dated':
      res.writeHead(200, ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT', 'content-length', '0']);
      res.end();
      return;
    case '/closing':
      res.writeHead(200, ['content-length', '1', 'connection', 'close']);
      res.end('c');
      return;
    case '/later':
      setTimeout(() => {
        res.writeHead(200, ['content-length', String(url.search.length)]);
        res.end(url.search);
      }, Number(url.searchParams.get('ms') ?? 0));
      return;
    default:
      res.writeHead(404, ['content-length', '0']);
      res.end();
  }
}

interface Servers {
  fast: FastServer;
  port: number;
  /** Requests the fast path served, and those node's server did (handed over). */
  served: { fast: string[]; node: string[] };
  http: HttpServer;
}

async function start(t: TestContext, over: { keepAliveTimeoutMs?: number; onFast?: (req: FastRequest, res: FastResponse) => void; onNode?: (req: IncomingMessage, res: ServerResponse) => void } = {}): Promise<Servers> {
  const served = { fast: [] as string[], node: [] as string[] };
  const keepAliveTimeoutMs = over.keepAliveTimeoutMs ?? 65_000;
  const http = createHttpServer({ keepAliveTimeout: keepAliveTimeoutMs, requestTimeout: 0 }, (req, res) => {
    served.node.push(`${req.method} ${req.url}`);
    (over.onNode ?? handle)(req, res);
  });
  http.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  const fast = new FastServer({
    http,
    keepAliveTimeoutMs,
    onRequest: (req, res) => {
      served.fast.push(`${req.method} ${req.url}`);
      (over.onFast ?? handle)(req, res);
    },
  });
  await new Promise<void>((r) => fast.listen(0, '127.0.0.1', r));
  t.after(() => {
    fast.close();
    fast.closeAllConnections();
  });
  return { fast, port: (fast.address() as AddressInfo).port, served, http };
}

/** A plain node:http server with the same handler: what the fast path must match. */
async function nodeServer(t: TestContext): Promise<number> {
  const s = createHttpServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, handle);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.after(() => {
    s.closeAllConnections();
    s.close();
  });
  return (s.address() as AddressInfo).port;
}

/** A raw client: send bytes, read until a condition holds. */
class Raw {
  readonly socket: Socket;
  data = '';
  closed = false;
  constructor(port: number, allowHalfOpen = false) {
    this.socket = connect({ port, host: '127.0.0.1', allowHalfOpen });
    this.socket.on('data', (d: Buffer) => (this.data += d.toString('latin1')));
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => undefined);
  }
  send(s: string): void {
    this.socket.write(s, 'latin1');
  }
  async read(cond: (data: string) => boolean, what: string): Promise<string> {
    await until(() => cond(this.data), 3_000, what);
    const d = this.data;
    this.data = '';
    return d;
  }
  /** Waits for `n` complete answers (content-length, chunked or bodiless), returns them. */
  async answers(n: number): Promise<string[]> {
    let got: string[] = [];
    await until(
      () => {
        got = splitAnswers(this.data);
        return got.length >= n;
      },
      3_000,
      `${n} answers (have ${JSON.stringify(this.data)})`,
    );
    this.data = '';
    return got;
  }
}

/** Splits a byte stream of answers (HEAD answers must not be mixed in). */
function splitAnswers(s: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (;;) {
    const end = s.indexOf('\r\n\r\n', at);
    if (end < 0) return out;
    const head = s.slice(at, end);
    let bodyEnd = end + 4;
    const len = /\r\ncontent-length: (\d+)/i.exec(head);
    const status = Number(head.slice(9, 12));
    if (/transfer-encoding: chunked/i.test(head)) {
      const last = s.indexOf('\r\n0\r\n\r\n', end + 2);
      if (last < 0) return out;
      bodyEnd = last + 7;
    } else if (len !== null && status !== 204 && status !== 304 && !head.startsWith('HEAD')) bodyEnd += Number(len[1]);
    if (bodyEnd > s.length) return out;
    out.push(s.slice(at, bodyEnd));
    at = bodyEnd;
  }
}

const noDate = (s: string): string => s.replace(/\r\nDate: [^\r]+/g, '\r\nDate: X');

async function exchange(port: number, request: string, head = false): Promise<string> {
  const c = new Raw(port);
  c.send(request);
  const got = head ? await c.read((d) => d.includes('\r\n\r\n'), 'a head') : (await c.answers(1))[0]!;
  c.socket.destroy();
  return got;
}

test('the fast path puts the same bytes on the wire as node for the same calls', async (t) => {
  const { port, served } = await start(t);
  const nodePort = await nodeServer(t);
  const cases: [string, boolean][] = [
    ['GET /len HTTP/1.1\r\nHost: a\r\n\r\n', false],
    ['GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n', false],
    ['HEAD /chunked HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['HEAD /len HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['GET /nocontent HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['GET /dated HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['GET /closing HTTP/1.1\r\nHost: a\r\n\r\n', false],
    ['GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', false],
    ['GET /chunked HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-foo\r\n\r\n', false],
    ['GET /missing?q=1 HTTP/1.1\r\nHost: a\r\nX-Spaces:   v  \r\n\r\n', true],
  ];
  for (const [req, head] of cases) {
    const fast = await exchange(port, req, head);
    const viaNode = await exchange(nodePort, req, head);
    assert.equal(noDate(fast), noDate(viaNode), `same answer to ${JSON.stringify(req)}`);
    assert.match(fast, /\r\nDate: /);
  }
  assert.equal(served.fast.length, cases.length, 'all served by the fast path');
  assert.equal(served.node.length, 0);
});

test('keep-alive, pipelining in order, Connection: close, a client FIN cancelling the request in flight', async (t) => {
  let closedInFlight = 0;
  const { port, served, fast } = await start(t, {
    onFast: (req, res) => {
      if (req.url === '/hang') {
        res.on('close', () => closedInFlight++);
        return;
      }
      handle(req, res);
    },
  });
  const c = new Raw(port);
  c.send('GET /later?ms=60 HTTP/1.1\r\nHost: a\r\n\r\nGET /len HTTP/1.1\r\nHost: a\r\n\r\nGET /later?ms=0&x HTTP/1.1\r\nHost: a\r\n\r\n');
  const [a, b, d] = await c.answers(3);
  assert.match(a!, /\r\n\r\n\?ms=60$/);
  assert.match(b!, /\r\n\r\nok$/);
  assert.match(d!, /\r\n\r\n\?ms=0&x$/);
  c.send('GET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  await c.answers(1);
  assert.equal(fast.conns.size, 1, 'one connection for every request');
  c.send('GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.match((await c.answers(1))[0]!, /Connection: close/);
  // Closed by the server although this client keeps its side open; the request after it is dropped (as node does).
  await until(() => c.closed, 2_000, 'closed after Connection: close');
  assert.equal(c.data, '');
  // A client that keeps its side open after the server's FIN: the server's socket still goes.
  const half = new Raw(port, true);
  half.send('GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  await half.answers(1);
  await until(() => fast.conns.size === 0, 2_000, 'the server side closed');
  half.socket.destroy();

  const h = new Raw(port);
  h.send('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
  await until(() => served.fast.includes('GET /hang'), 2_000, 'hang request');
  h.socket.end();
  await until(() => closedInFlight === 1, 2_000, 'the close listener of the request in flight');
  await until(() => h.closed, 2_000, 'connection closed');
  assert.equal(served.node.length, 0);
});

test('hands over to node what it does not serve: bodies, 100-continue, HTTP/1.0, upgrades, split and malformed heads', async (t) => {
  const bodies: string[] = [];
  const { port, served, http } = await start(t, {
    onNode: (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        bodies.push(body);
        handle(req, res);
      });
    },
  });
  let upgrades = 0;
  http.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    upgrades++;
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n');
  });

  // A body: node takes the connection, and keeps it for the next (bodiless) request.
  const c = new Raw(port);
  c.send('POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello');
  assert.match((await c.answers(1))[0]!, /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok$/);
  c.send('GET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  await c.answers(1);
  assert.deepEqual(served.node, ['POST /len', 'GET /len']);
  assert.deepEqual(bodies, ['hello', '']);
  c.socket.destroy();

  // A fast request first, then a chunked body on the same connection.
  const d = new Raw(port);
  d.send('GET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  await d.answers(1);
  d.send('PUT /len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  await d.answers(1);
  assert.equal(bodies.at(-1), 'abc');
  d.socket.destroy();

  // Expect: 100-continue: node answers the interim response.
  const e = new Raw(port);
  e.send('POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n');
  assert.match(await e.read((x) => x.includes('100 Continue'), '100 Continue'), /^HTTP\/1\.1 100 Continue/);
  e.send('hi');
  await e.answers(1);
  e.socket.destroy();

  // A head in two pieces, HTTP/1.0, an absolute-form target.
  const f = new Raw(port);
  f.send('GET /len HTT');
  await new Promise((r) => setTimeout(r, 30));
  f.send('P/1.1\r\nHost: a\r\n\r\n');
  assert.match((await f.answers(1))[0]!, /\r\n\r\nok$/);
  f.socket.destroy();
  assert.match(await exchange(port, 'GET /len HTTP/1.0\r\nHost: a\r\n\r\n'), /^HTTP\/1\.1 200 OK[\s\S]*Connection: close/);
  assert.match(await exchange(port, 'GET http://a/len HTTP/1.1\r\nHost: a\r\n\r\n'), /\r\n\r\nok$/);

  // Malformed: node's 400 (the gateway's clientError answer), as before.
  for (const bad of ['GET /len HTTP/1.1\r\n\r\n', 'GET /len HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n', 'GET /l en HTTP/1.1\r\nHost: a\r\n\r\n', 'GET /len HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n']) {
    assert.match(await exchange(port, bad, true), /^HTTP\/1\.1 400 Bad Request/, JSON.stringify(bad));
  }

  // An upgrade goes to node's `upgrade` event.
  const u = new Raw(port);
  u.send('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n');
  assert.match(await u.read((x) => x.includes('\r\n\r\n'), '101'), /^HTTP\/1\.1 101/);
  assert.equal(upgrades, 1);
  u.socket.destroy();
  assert.equal(served.fast.filter((s) => s === 'GET /len').length, 1, 'only the one plain GET was on the fast path');
});

test('request headers: raw names kept, values trimmed; req.headers with node rules for duplicates', async (t) => {
  let seen: FastRequest | undefined;
  const { port } = await start(t, {
    onFast: (req, res) => {
      seen = req;
      handle(req, res);
    },
  });
  await exchange(port, 'GET /len HTTP/1.1\r\nHost: a\r\nX-A:  1 \r\nx-a: 2\r\nCookie: a=1\r\ncookie: b=2\r\nUser-Agent: u1\r\nuser-agent: u2\r\nSet-Cookie: s1\r\nset-cookie: s2\r\n\r\n');
  assert.deepEqual(seen!.rawHeaders, ['Host', 'a', 'X-A', '1', 'x-a', '2', 'Cookie', 'a=1', 'cookie', 'b=2', 'User-Agent', 'u1', 'user-agent', 'u2', 'Set-Cookie', 's1', 'set-cookie', 's2']);
  assert.deepEqual({ ...seen!.headers }, { host: 'a', 'x-a': '1, 2', cookie: 'a=1; b=2', 'user-agent': 'u1', 'set-cookie': ['s1', 's2'] });
  assert.equal(seen!.socket.remoteAddress, '127.0.0.1');
  assert.deepEqual(headersObject(['Content-Type', 'a', 'content-type', 'b']), { 'content-type': 'a' });
  // Tabs and spaces around a value go (only those), bytes past 0x7F are latin1, an empty value is kept: as node reads them.
  await exchange(port, 'GET /len HTTP/1.1\r\nHost: a\r\nX-L: \t caf\xe9\xa0\t \r\nX-E:\r\n\r\n');
  assert.deepEqual(seen!.rawHeaders, ['Host', 'a', 'X-L', 'caf\xe9\xa0', 'X-E', '']);
});

/** The same four bad `writeHead` calls on `res`: the code each throws, or 'none'. */
function refusals(res: Res): string[] {
  const codes: string[] = [];
  const calls = [(r: Res) => r.writeHead(200, ['x-a', 'a\nb']), (r: Res) => r.writeHead(200, ['bad name', 'v']), (r: Res) => r.writeHead(1000, []), (r: Res) => r.writeHead(200, 'a\rb', [])];
  for (const bad of calls) {
    try {
      bad(res);
      codes.push('none');
    } catch (err) {
      codes.push((err as { code: string }).code);
    }
  }
  return codes;
}

test('writeHead refuses what node refuses, with the same codes', async (t) => {
  const errors: string[] = [];
  const { port } = await start(t, {
    onFast: (_req, res) => {
      errors.push(...refusals(res));
      res.writeHead(200, 'OK', ['content-length', '0']);
      res.end();
    },
  });
  await exchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', true);
  const viaNode: string[] = [];
  const nodeRes = createHttpServer((_req, res) => {
    viaNode.push(...refusals(res));
    // node keeps a refused reason phrase for the next writeHead: name one.
    res.writeHead(200, 'OK', ['content-length', '0']);
    res.end();
  });
  await new Promise<void>((r) => nodeRes.listen(0, '127.0.0.1', r));
  t.after(() => {
    nodeRes.closeAllConnections();
    nodeRes.close();
  });
  await exchange((nodeRes.address() as AddressInfo).port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', true);
  assert.deepEqual(errors, viaNode);
  assert.deepEqual(errors, ['ERR_INVALID_CHAR', 'ERR_INVALID_HTTP_TOKEN', 'ERR_HTTP_INVALID_STATUS_CODE', 'ERR_INVALID_CHAR']);
});

test('backpressure: write() says false when the client does not read, drain follows', async (t) => {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const total = 64;
  let falses = 0;
  let drains = 0;
  const { port } = await start(t, {
    onFast: (_req, res) => {
      res.writeHead(200, ['content-length', String(chunk.length * total)]);
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          sent++;
          if (!res.write(chunk)) {
            falses++;
            res.once('drain', () => {
              drains++;
              pump();
            });
            return;
          }
        }
        res.end();
      };
      pump();
    },
  });
  const c = connect(port, '127.0.0.1');
  c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  c.pause();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(falses >= 1, 'write() returned false while the client did not read');
  let got = 0;
  const headEnd = await new Promise<number>((resolve) => {
    let head = '';
    c.on('data', (d: Buffer) => {
      if (head !== undefined && !head.includes('\r\n\r\n')) {
        head += d.toString('latin1');
        const i = head.indexOf('\r\n\r\n');
        if (i >= 0) {
          got += head.length - i - 4;
          resolve(i);
        }
        return;
      }
      got += d.length;
    });
    c.resume();
  });
  assert.ok(headEnd > 0);
  await until(() => got === chunk.length * total, 10_000, `all ${chunk.length * total} bytes (have ${got})`);
  assert.equal(drains, falses);
  c.destroy();
});

test('idle timeout, closeIdleConnections and closeAllConnections', async (t) => {
  let hanging = false;
  const { port, fast } = await start(t, {
    keepAliveTimeoutMs: 300,
    onFast: (req, res) => {
      if (req.url === '/hang') {
        hanging = true;
        return;
      }
      handle(req, res);
    },
  });
  const idle = new Raw(port);
  idle.send('GET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.match((await idle.answers(1))[0]!, /Keep-Alive: timeout=0/);
  await until(() => idle.closed, 3_000, 'closed after the keep-alive timeout');

  const a = new Raw(port);
  a.send('GET /len HTTP/1.1\r\nHost: a\r\n\r\n');
  await a.answers(1);
  const busy = new Raw(port);
  busy.send('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
  // The request must be in (not only the connection accepted), or the connection is still idle.
  await until(() => fast.conns.size === 2 && hanging, 2_000, 'two connections, one with a request in flight');
  fast.closeIdleConnections();
  await until(() => a.closed, 2_000, 'the idle one closed');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(busy.closed, false, 'a request in flight outlives the idle timeout and closeIdleConnections');
  fast.closeAllConnections();
  await until(() => busy.closed, 2_000, 'every connection closed');
});
