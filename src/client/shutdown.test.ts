import assert from 'node:assert/strict';
import { createServer, request as httpRequest, Agent, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { InvalidOptionError } from '../errors/index.js';
import { closeGracefully, serverOf, trackRequests } from './shutdown.js';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function get(port: number, path: string, agent: Agent): Promise<{ status: number; body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A server whose /slow answers after `ms`. */
function slowServer(ms: number): Server {
  return createServer((req, res) => {
    const delay = req.url === '/slow' ? ms : 0;
    setTimeout(() => res.end(`done ${req.url}`), delay);
  });
}

test('a request in flight finishes, then the server closes; new connections are refused meanwhile', async (t) => {
  const server = slowServer(300);
  trackRequests(server);
  const port = await listen(server);
  const agent = new Agent({ keepAlive: true });
  t.after(() => {
    agent.destroy();
    server.closeAllConnections();
  });
  // An idle keep-alive connection, and a slow request in flight on another.
  await get(port, '/fast', agent);
  const slow = get(port, '/slow', agent);
  await new Promise((r) => setTimeout(r, 50));
  const closing = closeGracefully(server, { grace: 5_000 });
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(get(port, '/late', new Agent()), /ECONNREFUSED/);
  const res = await slow;
  assert.equal(res.body, 'done /slow');
  const result = await closing;
  assert.equal(result.forced, false);
  assert.equal(result.inFlightAtStart, 1);
  assert.ok(result.elapsed >= 200 && result.elapsed < 2_000, `elapsed ${result.elapsed}`);
});

test('a request that arrives on a kept-alive connection while closing is served with Connection: close', async (t) => {
  const server = slowServer(200);
  trackRequests(server);
  const port = await listen(server);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = get(port, '/slow', agent);
  await new Promise((r) => setTimeout(r, 50));
  const closing = closeGracefully(server, { grace: 5_000 });
  // Queued behind the slow one on the same socket: it reaches the server after close() began.
  const second = await get(port, '/next', agent).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  await first;
  if (!(second instanceof Error)) {
    assert.equal(second.body, 'done /next');
    assert.equal(second.connection, 'close');
  }
  assert.equal((await closing).forced, false);
});

test('after the grace period the remaining connections are cut', async () => {
  const server = slowServer(10_000);
  const port = await listen(server);
  const pending = get(port, '/slow', new Agent()).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 50));
  const result = await closeGracefully(server, { grace: 150 });
  assert.equal(result.forced, true);
  assert.ok(result.elapsed < 2_000);
  assert.ok((await pending) instanceof Error);
});

test('accepts a fastify-like object holding the server; rejects anything else with a typed error', async () => {
  const server = createServer((_q, s) => s.end());
  assert.equal(serverOf({ server }), server);
  assert.throws(() => serverOf({}), InvalidOptionError);
  assert.throws(() => serverOf(42), /node http.Server/);
  // A server that never listened closes at once.
  assert.equal((await closeGracefully({ server })).forced, false);
});

test('a fastify app: closes through app.server, letting its request in flight finish', async () => {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  app.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 200));
    return { ok: true };
  });
  trackRequests(serverOf(app));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const pending = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.json() as Promise<{ ok: boolean }>);
  await new Promise((r) => setTimeout(r, 50));
  const result = await closeGracefully(app);
  assert.deepEqual(await pending, { ok: true });
  assert.equal(result.forced, false);
  assert.equal(app.server.listening, false);
});
