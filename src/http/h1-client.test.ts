/**
 * The hand-written HTTP/1.1 upstream client (h1.ts) against raw TCP servers that write exact bytes:
 * framing (content-length, chunked split at every byte, read until close, HEAD, 1xx), keep-alive reuse
 * and its limits, malformed answers refused with a code, timeouts, abort, backpressure, the
 * connection limit and close().
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { H1Pool, type H1Handler, type H1Request } from './h1-client.js';

interface Answer {
  status: number;
  statusText: string;
  headers: string[];
  body: string;
}

/** A raw server: `reply(request head, socket)` writes what it likes; counts connections. */
async function rawServer(t: TestContext, reply: (head: string, socket: Socket) => void): Promise<{ port: number; connections: () => number; heads: string[] }> {
  let connections = 0;
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        reply(head, socket);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as { port: number }).port, connections: () => connections, heads };
}

/** Writes `pieces` one per write, `gapMs` apart (a timer turn at least), so the client's reads see the splits. */
function writeInTurns(sock: Socket, pieces: readonly string[], gapMs: number): void {
  let i = 0;
  const next = (): void => {
    if (i >= pieces.length || sock.destroyed) return;
    sock.write(pieces[i++]!);
    setTimeout(next, gapMs);
  };
  next();
}

function pool(t: TestContext, port: number, over: Partial<{ connections: number; idleTimeoutMs: number; connectTimeoutMs: number }> = {}): H1Pool {
  const p = new H1Pool({ host: '127.0.0.1', port, connections: 8, idleTimeoutMs: 2_000, connectTimeoutMs: 1_000, ...over });
  t.after(() => p.destroy());
  return p;
}

const REQ: H1Request = { method: 'GET', path: '/x', headers: ['host', 'example', 'x-a', '1'], headersTimeout: 2_000, bodyTimeout: 2_000 };

/** One exchange; resolves with the answer or rejects with the error. */
function exchange(p: H1Pool, req: H1Request = REQ, hooks: { onData?: (chunk: Buffer) => boolean; onConnect?: (abort: (err?: Error) => void) => void } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answer: Answer | undefined;
    const chunks: Buffer[] = [];
    const handler: H1Handler = {
      onConnect: (abort) => hooks.onConnect?.(abort),
      onHeaders: (status, headers, _resume, statusText) => {
        answer = { status, statusText, headers, body: '' };
        return true;
      },
      onData: (chunk) => {
        chunks.push(Buffer.from(chunk));
        return hooks.onData?.(chunk) ?? true;
      },
      onComplete: () => {
        answer!.body = Buffer.concat(chunks).toString('latin1');
        resolve(answer!);
      },
      onError: reject,
    };
    p.dispatch(req, handler);
  });
}

test('content-length answer; keep-alive reuse of one socket; the request head as sent', async (t) => {
  const s = await rawServer(t, (_h, sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: two words \r\n\r\nhello'));
  const p = pool(t, s.port);
  const a = await exchange(p);
  assert.deepEqual(a, { status: 200, statusText: 'OK', headers: ['Content-Length', '5', 'X-B', 'two words'], body: 'hello' });
  await exchange(p);
  await exchange(p);
  assert.equal(s.connections(), 1, 'one socket reused');
  assert.equal(s.heads[0], 'GET /x HTTP/1.1\r\nhost: example\r\nx-a: 1');
  // Without a host header the upstream's address is sent.
  await exchange(p, { ...REQ, headers: [] });
  assert.equal(s.heads[3], `GET /x HTTP/1.1\r\nhost: 127.0.0.1:${s.port}`);
  // A bodiless POST says `content-length: 0`, as undici does.
  await exchange(p, { ...REQ, method: 'POST' });
  assert.equal(s.heads[4], 'POST /x HTTP/1.1\r\nhost: example\r\nx-a: 1\r\ncontent-length: 0');
});

test('chunked answers, split at every byte, with extensions and trailers; the socket is reused after', async (t) => {
  const wire = 'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n';
  let split = 1;
  const s = await rawServer(t, (_h, sock) => {
    // Piece by piece, each in its own write a turn apart, so the client's reads see the splits.
    sock.setNoDelay(true);
    const pieces: string[] = [];
    for (let i = 0; i < wire.length; i += split) pieces.push(wire.slice(i, i + split));
    writeInTurns(sock, pieces, 0);
  });
  const p = pool(t, s.port);
  for (split = 1; split <= 7; split++) {
    const a = await exchange(p);
    assert.equal(a.status, 201);
    assert.equal(a.body, 'hello 0123456789');
  }
  assert.equal(s.connections(), 1);
});

test('read-until-close answers, HEAD, 204, 1xx skipped, Connection: close not reused', async (t) => {
  const s = await rawServer(t, (head, sock) => {
    if (head.startsWith('HEAD')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n');
    else if (head.includes('/close')) sock.end('HTTP/1.1 200 OK\r\n\r\nuntil close');
    else if (head.includes('/204')) sock.write('HTTP/1.1 204 No Content\r\n\r\n');
    else if (head.includes('/1xx')) sock.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    else sock.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok');
  });
  const p = pool(t, s.port);
  assert.equal((await exchange(p, { ...REQ, path: '/close' })).body, 'until close');
  assert.equal((await exchange(p, { ...REQ, method: 'HEAD' })).body, '');
  assert.equal((await exchange(p, { ...REQ, path: '/204' })).status, 204);
  const hints = await exchange(p, { ...REQ, path: '/1xx' });
  assert.deepEqual([hints.status, hints.body], [200, 'ok']);
  // The first goes on the kept socket, which then closes; each later one needs a new socket.
  const before = s.connections();
  for (let i = 0; i < 3; i++) assert.equal((await exchange(p, { ...REQ, path: '/c' })).body, 'ok');
  assert.equal(s.connections(), before + 2, 'Connection: close is not reused');
});

test('malformed answers are upstream failures with a code', async (t) => {
  const bad: Record<string, string> = {
    '/status': 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n',
    '/proto': 'HTTX/1.1 200 OK\r\n\r\n',
    '/cl': 'HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n',
    '/cl2': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
    '/space': 'HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n',
    '/fold': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n',
    '/chunk': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    '/long': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n',
    '/101': 'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    '/both': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  };
  const s = await rawServer(t, (head, sock) => sock.write(bad[head.split(' ')[1]!]!));
  const p = pool(t, s.port);
  for (const path of Object.keys(bad)) {
    await assert.rejects(exchange(p, { ...REQ, path }), (err: Error & { code?: string }) => err.code === 'SPOF_ERR_GATEWAY_BAD_RESPONSE', path);
  }
  // A head larger than 64 KiB.
  const big = await rawServer(t, (_h, sock) => sock.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}`));
  await assert.rejects(exchange(pool(t, big.port)), (err: Error & { code?: string }) => err.code === 'SPOF_ERR_GATEWAY_BAD_RESPONSE');
});

test('failures: refused, reset before the answer, cut mid-body, headers timeout, body timeout', async (t) => {
  const s = await rawServer(t, (head, sock) => {
    if (head.includes('/reset')) sock.destroy();
    else if (head.includes('/cut')) {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
      setTimeout(() => sock.destroy(), 20);
    } else if (head.includes('/stall')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    // `/hang`: nothing.
  });
  const p = pool(t, s.port);
  await assert.rejects(exchange(p, { ...REQ, path: '/reset' }), (err: Error & { code?: string }) => err.code === 'UND_ERR_SOCKET');
  await assert.rejects(exchange(p, { ...REQ, path: '/cut' }), (err: Error & { code?: string }) => err.code === 'UND_ERR_SOCKET');
  await assert.rejects(exchange(p, { ...REQ, path: '/hang', headersTimeout: 100 }), (err: Error & { code?: string }) => err.code === 'UND_ERR_HEADERS_TIMEOUT');
  await assert.rejects(exchange(p, { ...REQ, path: '/stall', bodyTimeout: 100 }), (err: Error & { code?: string }) => err.code === 'UND_ERR_BODY_TIMEOUT');
  // A port nobody listens on.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));
  await assert.rejects(exchange(pool(t, deadPort)), (err: Error & { code?: string }) => err.code === 'ECONNREFUSED');
});

test('abort cancels once; an idle socket the upstream closes leaves the pool; the Keep-Alive hint shortens idle', async (t) => {
  const s = await rawServer(t, (head, sock) => {
    if (head.includes('/slow')) setTimeout(() => sock.writable && sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 200);
    else if (head.includes('/bye')) {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      setTimeout(() => sock.end(), 20);
    } else sock.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok');
  });
  const p = pool(t, s.port);
  let abort: ((err?: Error) => void) | undefined;
  const pending = exchange(p, { ...REQ, path: '/slow' }, { onConnect: (a) => (abort = a) });
  setTimeout(() => abort!(new Error('client gone')), 50);
  await assert.rejects(pending, /client gone/);
  abort!(new Error('again')); // a second abort does nothing

  await exchange(p, { ...REQ, path: '/bye' });
  await new Promise((r) => setTimeout(r, 100));
  const n = s.connections();
  await exchange(p); // not on the closed socket
  assert.equal(s.connections(), n + 1);
  // `Keep-Alive: timeout=1`: idle for at most 500 ms here (the hint minus a second, at least 500 ms).
  await new Promise((r) => setTimeout(r, 700));
  await exchange(p);
  assert.equal(s.connections(), n + 2);
});

test('backpressure pauses the socket until resume; the connection limit queues; close() lets them finish', async (t) => {
  const body = 'x'.repeat(1 << 20);
  const s = await rawServer(t, (_h, sock) => sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
  const p = pool(t, s.port, { connections: 2 });
  // Backpressure: refuse every chunk, resume a little later.
  let resume: (() => void) | undefined;
  let paused = 0;
  const got = await new Promise<number>((resolve, reject) => {
    let n = 0;
    p.dispatch(REQ, {
      onConnect: () => undefined,
      onHeaders: (_s, _h, r) => {
        resume = r;
        return true;
      },
      onData: (chunk) => {
        n += chunk.length;
        paused++;
        setTimeout(() => resume!(), 1);
        return false;
      },
      onComplete: () => resolve(n),
      onError: reject,
    });
  });
  assert.equal(got, body.length);
  assert.ok(paused > 1);
  // Five at once over two connections.
  const all = await Promise.all([1, 2, 3, 4, 5].map(() => exchange(p)));
  assert.ok(all.every((a) => a.body.length === body.length));
  assert.ok(s.connections() <= 2, `at most 2 connections, saw ${s.connections()}`);
  const inFlight = exchange(p);
  await p.close();
  assert.equal((await inFlight).body.length, body.length);
  await assert.rejects(exchange(p), (err: Error & { code?: string }) => err.code === 'UND_ERR_CLOSED');
});

test('body chunks handed on stay intact after later reads (the read buffer is shared by every socket)', async (t) => {
  // Each answer in three writes a turn apart; two exchanges on two sockets at once, their reads interleaved.
  const s = await rawServer(t, (head, sock) => {
    sock.setNoDelay(true);
    const tag = head.includes('/a') ? 'a' : 'b';
    writeInTurns(sock, ['HTTP/1.1 200 OK\r\nContent-Le', `ngth: 8\r\n\r\n${tag}1-`, `${tag}2-`, `${tag}3`], 15);
  });
  const p = pool(t, s.port);
  const kept = (path: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      p.dispatch(
        { ...REQ, path },
        {
          onConnect: () => undefined,
          onHeaders: () => true,
          onData: (chunk) => {
            chunks.push(chunk); // kept as handed over, not copied
            return true;
          },
          onComplete: () => resolve(Buffer.concat(chunks).toString()),
          onError: reject,
        },
      );
    });
  assert.deepEqual(await Promise.all([kept('/a'), kept('/b')]), ['a1-a2-a3', 'b1-b2-b3']);
});

test('one deadline per connection: a short headers timeout on a reused socket fires on time; a busy socket is not closed as idle; the idle one is', async (t) => {
  const s = await rawServer(t, (head, sock) => {
    if (head.includes('/hang')) return;
    const ms = head.includes('/slow') ? 900 : 0;
    setTimeout(() => sock.writable && sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), ms);
  });
  const p = pool(t, s.port, { idleTimeoutMs: 400, connections: 1 });
  await exchange(p);
  // The idle deadline (400 ms) is pending; a 60 ms headers timeout must not wait for it.
  const started = performance.now();
  await assert.rejects(exchange(p, { ...REQ, path: '/hang', headersTimeout: 60 }), (err: Error & { code?: string }) => err.code === 'UND_ERR_HEADERS_TIMEOUT');
  const took = performance.now() - started;
  assert.ok(took >= 55 && took < 350, `headers timeout after ${took.toFixed(0)} ms`);
  // A 900 ms answer outlasts two idle periods: the socket is busy, not idle, and is kept.
  await exchange(p); // a new socket (the timed-out one was closed)
  const before = s.connections();
  await exchange(p, { ...REQ, path: '/slow' });
  await exchange(p);
  assert.equal(s.connections(), before, 'the busy socket was not closed as idle');
  // Idle past 400 ms: closed, the next exchange opens a new socket.
  await new Promise((r) => setTimeout(r, 650));
  await exchange(p);
  assert.equal(s.connections(), before + 1);
});

test('a request body goes out with its head in one write, with its content-length; a second content-length is refused', async (t) => {
  let received = '';
  const server: Server = createServer((socket) => {
    // What the client wrote, read until the body is complete, then one answer.
    socket.on('data', (d) => {
      received += d.toString('latin1');
      const end = received.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/.exec(received)?.[1] ?? -1);
      if (end >= 0 && received.length - end - 4 === length) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const p = pool(t, (server.address() as { port: number }).port);
  const body = Buffer.from('{"key":"/k","value":"grüße ✓"}', 'utf8');
  const a = await exchange(p, { ...REQ, method: 'PUT', headers: ['content-type', 'application/json'], body });
  assert.equal(a.body, 'ok');
  const [head, sent] = received.split('\r\n\r\n');
  assert.equal(head, `PUT /x HTTP/1.1\r\ncontent-type: application/json\r\nhost: 127.0.0.1:${(server.address() as { port: number }).port}\r\ncontent-length: ${body.length}`);
  assert.equal(Buffer.from(sent!, 'latin1').toString('utf8'), '{"key":"/k","value":"grüße ✓"}', 'the body bytes as given (UTF-8 kept)');
  await assert.rejects(exchange(p, { ...REQ, method: 'PUT', headers: ['Content-Length', '3'], body: Buffer.from('abc') }), (e: Error & { code?: string }) => e.code === 'UND_ERR_INVALID_ARG' && /content-length/.test(e.message));
});

test('an idle keep-alive socket does not keep the process alive; a busy one does', async (t) => {
  const s = await rawServer(t, (_h, sock) => setTimeout(() => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 300));
  // A child process that makes one call and never closes its pool: it must exit once the answer is in
  // (the socket is then idle), and not before (the socket is busy while the server waits 300 ms).
  const { execFile } = await import('node:child_process');
  const script = `
    const { H1Pool } = await import(${JSON.stringify(new URL('./h1-client.ts', import.meta.url).href)});
    const p = new H1Pool({ host: '127.0.0.1', port: ${s.port}, connections: 1, idleTimeoutMs: 60000, connectTimeoutMs: 1000 });
    const t0 = Date.now();
    p.dispatch({ method: 'GET', path: '/', headers: [], headersTimeout: 5000, bodyTimeout: 5000 }, {
      onConnect() {}, onHeaders(status) { console.log('status', status); return true; }, onData() { return true; },
      onComplete() { console.log('complete after', Date.now() - t0 >= 250 ? 'the wait' : 'too soon'); }, onError(e) { console.log('error', e.message); },
    });`;
  const started = Date.now();
  // Asynchronously: the server answering lives in this process.
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }),
    );
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'status 200\ncomplete after the wait\n');
  assert.ok(Date.now() - started < 15_000, 'exited without waiting for the 60 s idle timeout');
});
