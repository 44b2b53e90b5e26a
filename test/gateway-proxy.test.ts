/**
 * The gateway's proxying, in one process with real sockets: a control plane on SQLite, upstream
 * node:http servers registered in its catalog, the gateway in front.
 *
 * - routing by host and path, headers (hop-by-hop stripped, X-Forwarded-*, Forwarded), the JSON 404;
 * - a route change applied live; an invalid stored route ignored and reported on /status;
 * - blue-green (active color), canary stickiness and the force header;
 * - misbehaving upstreams: reset mid-body, headers never sent (per-try timeout, retried elsewhere), a
 *   retryable status, a draining instance getting nothing new, the fallback when the pool is empty;
 * - a WebSocket echo; a 1 GB body streamed through with flat memory; admin endpoints.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { ControlPlaneClient } from '../src/client/index.js';
import { startGateway, type Gateway, type GatewayOptions } from '../src/gateway/index.js';
import { routeKey } from '../src/routing/keys.js';
import type { Route } from '../src/routing/types.js';
import { startServer } from './server-helpers.js';
import { until } from './helpers/procs.js';

interface Upstream {
  id: string;
  server: Server;
  port: number;
  hits: number;
}

async function upstream(t: TestContext, id: string, handler?: (req: IncomingMessage, res: ServerResponse, u: Upstream) => void): Promise<Upstream> {
  const u: Upstream = { id, server: undefined as unknown as Server, port: 0, hits: 0 };
  u.server = createServer((req, res) => {
    u.hits++;
    if (handler !== undefined) return handler(req, res, u);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('connection', 'keep-alive, x-hop');
      res.setHeader('x-hop', 'secret');
      res.end(JSON.stringify({ id, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
    });
  });
  await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r));
  u.port = (u.server.address() as AddressInfo).port;
  t.after(() => {
    u.server.closeAllConnections();
    u.server.close();
  });
  return u;
}

async function setup(t: TestContext, gwOptions: Partial<GatewayOptions> = {}): Promise<{ cp: ControlPlaneClient; gw: Gateway; url: string }> {
  const srv = await startServer(t);
  const cp = new ControlPlaneClient({ url: srv.url });
  t.after(() => cp.close());
  const gw = await startGateway({ controlPlane: srv.url, port: 0, adminPort: 0, graceMs: 0, drainTimeoutMs: 2_000, defaultHealthCheck: false, slowStartMs: 0, ...gwOptions });
  t.after(() => gw.destroy());
  return { cp, gw, url: srv.url };
}

async function register(cp: ControlPlaneClient, service: string, u: Upstream, extra: Record<string, unknown> = {}): Promise<void> {
  await cp.registerInstance(service, u.id, { address: '127.0.0.1', port: u.port, ttl: 60, ...extra });
}

async function putRoute(cp: ControlPlaneClient, route: Route | Record<string, unknown>): Promise<void> {
  await cp.put(routeKey(String(route.name)), JSON.stringify(route));
}

async function get(gw: Gateway, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; json: Record<string, unknown> }> {
  const res = await request(`${gw.url}${path}`, { headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** A GET with node:http, which (unlike undici) sends hop-by-hop headers as given. */
function rawGet(gw: Gateway, path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${gw.url}${path}`, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function status(gw: Gateway): Promise<Record<string, unknown>> {
  const res = await request(`${gw.adminUrl}/status`);
  return (await res.body.json()) as Record<string, unknown>;
}

test('routes by host and path, sets forwarding headers, strips hop-by-hop ones, answers a JSON 404', { timeout: 20_000 }, async (t) => {
  const { cp, gw } = await setup(t);
  const a = await upstream(t, 'a1');
  const b = await upstream(t, 'b1');
  await register(cp, 'svc-a', a);
  await register(cp, 'svc-b', b);
  await putRoute(cp, { name: 'a', match: { pathPrefix: '/' }, service: 'svc-a' });
  await putRoute(cp, { name: 'b', match: { host: 'b.example', pathPrefix: '/api' }, service: 'svc-b', stripPrefix: true });
  await until(() => gw.status().routes.length === 2 && gw.status().services.length === 2, 5_000, 'routes and instances');

  const r0 = await rawGet(gw, '/x', { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example' });
  assert.equal((r0.json.headers as Record<string, string>)['x-forwarded-proto'], 'https', 'kept from a proxy in front');
  assert.equal((r0.json.headers as Record<string, string>)['x-forwarded-host'], 'shop.example');
  const r1 = await rawGet(gw, '/x?q=1', { 'x-forwarded-for': '10.0.0.9', 'keep-alive': 'timeout=5', connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', te: 'trailers' });
  assert.equal(r1.status, 200);
  assert.equal(r1.json.id, 'a1');
  assert.equal(r1.json.url, '/x?q=1');
  const h = r1.json.headers as Record<string, string>;
  assert.equal(h['x-forwarded-for'], '10.0.0.9, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.match(h['x-forwarded-host']!, /^127\.0\.0\.1:\d+$/);
  assert.match(h.forwarded!, /^for=127\.0\.0\.1;host="127\.0\.0\.1:\d+";proto=http$/);
  assert.equal(h['x-drop-me'], undefined, 'a header named in Connection is hop-by-hop');
  assert.equal(h['keep-alive'], undefined);
  assert.equal(h.te, undefined);
  assert.equal(r1.headers['x-hop'], undefined, 'response headers named in Connection are stripped');

  const r2 = await get(gw, '/api/users/7', { host: 'b.example:8080' });
  assert.equal(r2.json.id, 'b1');
  assert.equal(r2.json.url, '/users/7', 'stripPrefix');
  // Segment boundary: /apix is not under /api, so the catch-all route takes it.
  const r3 = await get(gw, '/apix', { host: 'b.example' });
  assert.equal(r3.json.id, 'a1');

  await cp.delete(routeKey('a'));
  await until(() => gw.status().routes.length === 1, 5_000, 'route a gone');
  const r4 = await get(gw, '/nothing', { host: 'unknown.example' });
  assert.equal(r4.status, 404);
  assert.equal((r4.json.error as Record<string, string>).code, 'SPOF_ERR_GATEWAY_NO_ROUTE');
  assert.match(String((r4.json.error as Record<string, string>).message), /no route for host "unknown.example" and path "\/nothing"/);
});

test('a route change applies live; an invalid stored route is ignored (last valid kept) and reported', { timeout: 20_000 }, async (t) => {
  const { cp, gw } = await setup(t);
  const a = await upstream(t, 'a1');
  const b = await upstream(t, 'b1');
  await register(cp, 'svc-a', a);
  await register(cp, 'svc-b', b);
  await putRoute(cp, { name: 'r', match: { pathPrefix: '/' }, service: 'svc-a' });
  await until(() => gw.status().services.length === 2 && gw.status().routes.length === 1, 5_000, 'config');
  assert.equal((await get(gw, '/')).json.id, 'a1');
  await putRoute(cp, { name: 'r', match: { pathPrefix: '/' }, service: 'svc-b' });
  await until(() => gw.status().routes[0]?.service === 'svc-b', 5_000, 'route switched');
  assert.equal((await get(gw, '/')).json.id, 'b1');
  // A malformed value: the gateway keeps the last valid version and says why on /status.
  await cp.put(routeKey('r'), JSON.stringify({ name: 'r', match: { pathPrefix: 'no-slash' }, service: 'svc-a' }));
  await cp.put(routeKey('junk'), '{not json');
  await until(() => gw.status().invalidRoutes.length === 2, 5_000, 'invalid routes reported');
  const st = await status(gw);
  const invalid = st.invalidRoutes as Array<{ name: string; error: string }>;
  assert.deepEqual(invalid.map((i) => i.name).sort(), ['junk', 'r']);
  for (const i of invalid) assert.ok(i.error.length > 0);
  assert.equal((await get(gw, '/')).json.id, 'b1', 'the last valid route stays in use');
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
  assert.match(metrics, /spofless_gateway_invalid_routes 2/);
  assert.match(metrics, /spofless_gateway_requests_total\{route="r",code="200"\} \d+/);
  assert.match(metrics, /spofless_gateway_request_duration_seconds_bucket\{route="r",le="\+Inf"\} \d+/);
  assert.match(metrics, /spofless_gateway_upstream_requests_total\{service="svc-b",instance="b1"\} \d+/);
});

test('traffic: blue-green active color, canary sticky per user and share, force header; draining gets nothing new', { timeout: 30_000 }, async (t) => {
  const { cp, gw } = await setup(t);
  const blue = await upstream(t, 'blue');
  const green = await upstream(t, 'green');
  await register(cp, 'web', blue, { color: 'blue', version: '1.0.0' });
  await register(cp, 'web', green, { color: 'green', version: '2.0.0' });
  await putRoute(cp, { name: 'web', match: { pathPrefix: '/' }, service: 'web', traffic: { active: 'blue' } });
  await until(() => gw.status().services[0]?.instances.length === 2 && gw.status().routes.length === 1, 5_000, 'config');
  for (let i = 0; i < 20; i++) assert.equal((await get(gw, '/')).json.id, 'blue');
  assert.equal((await get(gw, '/', { 'x-spofless-version': 'green' })).json.id, 'green', 'force header');
  await putRoute(cp, { name: 'web', match: { pathPrefix: '/' }, service: 'web', traffic: { active: 'green', previous: 'blue' } });
  await until(() => (gw.status().routes[0]?.traffic as { active?: string } | null)?.active === 'green', 5_000, 'switch');
  for (let i = 0; i < 20; i++) assert.equal((await get(gw, '/')).json.id, 'green');

  // Canary 10% by user header: each user always lands on one version; the share is near 10%.
  await putRoute(cp, { name: 'web', match: { pathPrefix: '/' }, service: 'web', traffic: { active: '1.0.0', canary: { version: '2.0.0', weight: 10, stickyOn: { header: 'x-user' } } } });
  await until(() => (gw.status().routes[0]?.traffic as { canary?: unknown } | null)?.canary !== undefined, 5_000, 'canary');
  const seen = new Map<string, string>();
  let canary = 0;
  const users = 2_000;
  for (let i = 0; i < users; i++) {
    const user = `user-${i}`;
    const r = await get(gw, '/', { 'x-user': user });
    seen.set(user, r.json.id as string);
    if (r.json.id === 'green') canary++;
  }
  t.diagnostic(`canary share over ${users} users: ${((canary * 100) / users).toFixed(1)}%`);
  assert.ok(Math.abs((canary * 100) / users - 10) <= 2.5, `canary share ${(canary * 100) / users}%`);
  for (let i = 0; i < 200; i++) {
    const user = `user-${i}`;
    assert.equal((await get(gw, '/', { 'x-user': user })).json.id, seen.get(user), `user ${user} is sticky`);
  }

  // Drain: the draining instance gets no new request from the watch event on.
  await putRoute(cp, { name: 'web', match: { pathPrefix: '/' }, service: 'web' });
  await cp.drainInstance('web', 'blue');
  await until(() => gw.status().services[0]?.instances.find((i) => i.id === 'blue')?.status === 'draining', 5_000, 'draining seen');
  const before = blue.hits;
  for (let i = 0; i < 30; i++) assert.equal((await get(gw, '/')).json.id, 'green');
  assert.equal(blue.hits, before);
});

test('misbehaving upstreams: reset mid-body, headers never sent, retryable status; fallback on an empty pool', { timeout: 30_000 }, async (t) => {
  const { cp, gw } = await setup(t, { outlier: { consecutiveFailures: 1000 } });
  const good = await upstream(t, 'good');
  const hang = await upstream(t, 'hang', () => undefined);
  const reset = await upstream(t, 'reset', (_req, res) => {
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000, 97));
    setTimeout(() => res.socket?.destroy(), 20);
  });
  const busy = await upstream(t, 'busy', (_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('busy');
  });
  await register(cp, 'hang', hang);
  await register(cp, 'hang', good);
  await register(cp, 'reset', reset);
  await register(cp, 'busy', busy);
  await register(cp, 'busy', good);
  await register(cp, 'lonely', busy);
  await putRoute(cp, { name: 'hang', match: { pathPrefix: '/hang' }, service: 'hang', retry: { attempts: 2, on: ['timeout'] }, timeouts: { perTryMs: 300, totalMs: 2_000 } });
  await putRoute(cp, { name: 'reset', match: { pathPrefix: '/reset' }, service: 'reset' });
  await putRoute(cp, { name: 'busy', match: { pathPrefix: '/busy' }, service: 'busy', retry: { attempts: 2, on: [503] } });
  await putRoute(cp, { name: 'lonely', match: { pathPrefix: '/lonely' }, service: 'lonely', retry: { attempts: 3, on: [503] } });
  await putRoute(cp, { name: 'empty', match: { pathPrefix: '/empty' }, service: 'nobody', fallback: { status: 503, headers: { 'content-type': 'application/json' }, body: '{"fallback":true}' } });
  await until(() => gw.status().routes.length === 5 && gw.status().services.length === 4, 5_000, 'config');

  // Headers never sent: each try to `hang` times out after 300 ms and the retry lands on `good`.
  for (let i = 0; i < 6; i++) {
    const started = Date.now();
    const r = await get(gw, '/hang');
    assert.equal(r.status, 200);
    assert.equal(r.json.id, 'good');
    assert.ok(Date.now() - started < 1_500);
  }
  assert.ok(hang.hits > 0, 'the hanging instance was tried');

  // A retryable status: the 503 is read and dropped, the retry goes to the other instance.
  for (let i = 0; i < 6; i++) assert.equal((await get(gw, '/busy')).json.id, 'good');

  // No other instance to retry on: the upstream's own answer is passed on, body and all.
  const lonely = await request(`${gw.url}/lonely`);
  assert.equal(lonely.statusCode, 503);
  assert.equal(await lonely.body.text(), 'busy');

  // Reset mid-body: the client sees a broken response (not a short one), the gateway lives on.
  const res = await request(`${gw.url}/reset`);
  assert.equal(res.statusCode, 200);
  await assert.rejects(res.body.arrayBuffer());
  assert.equal((await get(gw, '/busy')).status, 200, 'still serving');

  const fb = await get(gw, '/empty');
  assert.equal(fb.status, 503);
  assert.deepEqual(fb.json, { fallback: true });
  const st = gw.status().routes.find((r) => r.name === 'hang')!;
  assert.ok((st.retries as number) >= 1);
});

test('WebSocket echo through the gateway', { timeout: 15_000 }, async (t) => {
  const { cp, gw } = await setup(t);
  const u = await upstream(t, 'ws');
  const wss = new WebSocketServer({ server: u.server });
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  t.after(() => wss.close());
  await register(cp, 'ws', u);
  await putRoute(cp, { name: 'ws', match: { pathPrefix: '/ws' }, service: 'ws' });
  await until(() => gw.status().routes.length === 1 && gw.status().services.length === 1, 5_000, 'config');
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws/echo`);
  t.after(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const echoes: string[] = [];
  for (const text of ['hello', 'through', 'the gateway']) {
    ws.send(text);
    echoes.push(await new Promise<string>((resolve) => ws.once('message', (m: Buffer) => resolve(m.toString()))));
  }
  assert.deepEqual(echoes, ['hello', 'through', 'the gateway']);
  assert.equal(gw.status().websockets, 1);
  ws.close();
  await until(() => gw.status().websockets === 0, 5_000, 'websocket closed');
});

test('a 1 GB request body and a 256 MiB answer stream through with flat memory', { timeout: 60_000 }, async (t) => {
  const { cp, gw } = await setup(t);
  let received = 0;
  const u = await upstream(t, 'sink', (req, res) => {
    if (req.method === 'POST') {
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('end', () => res.end(JSON.stringify({ received })));
      return;
    }
    // GET: a 1 GB answer, written with backpressure.
    const chunk = Buffer.alloc(64 * 1024, 120);
    let left = DOWN / chunk.length;
    res.writeHead(200, { 'content-length': String(DOWN) });
    const pump = (): void => {
      while (left > 0) {
        left--;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const GB = 1024 * 1024 * 1024;
  const DOWN = 256 * 1024 * 1024;
  await register(cp, 'sink', u);
  await putRoute(cp, { name: 'sink', match: { pathPrefix: '/' }, service: 'sink' });
  await until(() => gw.status().routes.length === 1 && gw.status().services.length === 1, 5_000, 'config');
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  t.after(() => clearInterval(sampler));

  // Upload: 1 GB generated on the fly.
  const chunk = Buffer.alloc(64 * 1024, 121);
  let n = GB / chunk.length;
  const body = new Readable({
    read() {
      this.push(n-- > 0 ? chunk : null);
    },
  });
  const up = await request(`${gw.url}/upload`, { method: 'POST', body, headers: { 'content-length': String(GB) } });
  assert.equal(up.statusCode, 200);
  assert.deepEqual(await up.body.json(), { received: GB });

  // Download: 256 MiB read as it comes (the same path; kept smaller so the suite stays short).
  const down = await request(`${gw.url}/download`);
  let got = 0;
  for await (const c of down.body) got += (c as Buffer).length;
  assert.equal(got, DOWN);
  clearInterval(sampler);
  const growth = (peak - rss0) / 1024 / 1024;
  t.diagnostic(`RSS growth while streaming 1 GiB up and 256 MiB down through the gateway (client, gateway and upstream in this process): ${growth.toFixed(0)} MiB`);
  assert.ok(growth < 150, `RSS grew ${growth.toFixed(0)} MiB`);
});

test('a client that goes away cancels the upstream request; close() fails readiness, serves the grace period, finishes in flight', { timeout: 20_000 }, async (t) => {
  const { cp, gw } = await setup(t, { graceMs: 400, drainTimeoutMs: 5_000 });
  let upstreamSawAbort = false;
  const u = await upstream(t, 'slow', (req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    res.on('close', () => {
      if (!res.writableFinished) upstreamSawAbort = true;
    });
    setTimeout(() => {
      if (!res.destroyed) res.end('done');
    }, ms);
  });
  await register(cp, 'slow', u);
  await putRoute(cp, { name: 'slow', match: { pathPrefix: '/' }, service: 'slow' });
  await until(() => gw.status().routes.length === 1 && gw.status().services.length === 1, 5_000, 'config');

  // Client abort: the upstream's request is closed too.
  const ac = new AbortController();
  const pending = request(`${gw.url}/?ms=3000`, { signal: ac.signal });
  await until(() => gw.status().inFlight === 1, 5_000, 'request in flight');
  ac.abort();
  await assert.rejects(pending);
  await until(() => upstreamSawAbort, 5_000, 'the upstream request to be cancelled');
  await until(() => gw.status().inFlight === 0, 5_000, 'in flight back to 0');

  // Graceful close with a request in flight that outlasts the grace period.
  const slow = request(`${gw.url}/?ms=1000`);
  await until(() => gw.status().inFlight === 1, 5_000, 'slow request in flight');
  const closing = gw.close();
  const readyz = await request(`${gw.adminUrl}/readyz`);
  assert.equal(readyz.statusCode, 503);
  await readyz.body.dump();
  // Still accepting during the grace period.
  const during = await request(`${gw.url}/?ms=0`);
  assert.equal(during.statusCode, 200);
  await during.body.dump();
  const res = await slow;
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), 'done');
  await closing;
  await assert.rejects(request(`${gw.url}/?ms=0`), /ECONNREFUSED/);
});

test('passive health: consecutive 5xx eject an instance (shown on /status and /metrics); it comes back after the ejection time', { timeout: 20_000 }, async (t) => {
  const { cp, gw } = await setup(t, { outlier: { consecutiveFailures: 3, baseEjectionMs: 1_500 } });
  const good = await upstream(t, 'good');
  const bad = await upstream(t, 'bad', (_req, res) => {
    res.writeHead(500);
    res.end('broken');
  });
  await register(cp, 'mixed', good);
  await register(cp, 'mixed', bad);
  await putRoute(cp, { name: 'mixed', match: { pathPrefix: '/' }, service: 'mixed', balancer: 'round-robin' });
  await until(() => gw.status().routes.length === 1 && gw.status().services[0]?.instances.length === 2, 5_000, 'config');
  let fives = 0;
  for (let i = 0; i < 12; i++) if ((await get(gw, '/').catch(() => ({ status: 500 }))).status === 500) fives++;
  assert.equal(fives, 3, 'three 500s, then the bad instance is ejected');
  const inst = gw.status().services[0]!.instances.find((i) => i.id === 'bad')!;
  assert.equal(inst.ejected, true);
  assert.equal(inst.ejections, 1);
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
  assert.match(metrics, /spofless_gateway_upstream_ejections_total\{service="mixed",instance="bad"\} 1/);
  assert.match(metrics, /spofless_gateway_upstream_ejected\{service="mixed",instance="bad"\} 1/);
  assert.match(metrics, /spofless_gateway_upstream_responses_total\{service="mixed",instance="bad",class="5xx"\} 3/);
  assert.match(metrics, /spofless_gateway_upstream_breaker_state\{service="mixed",instance="bad"\} \d/);
  await until(() => gw.status().services[0]!.instances.find((i) => i.id === 'bad')!.ejected === false, 5_000, 'ejection to end');
  const before = bad.hits;
  for (let i = 0; i < 4; i++) await get(gw, '/').catch(() => undefined);
  assert.ok(bad.hits > before, 'back in rotation after the ejection time');
});

test('control-plane fail-over: a dead first URL is passed over; the configuration comes from the next one', { timeout: 20_000 }, async (t) => {
  const srv = await startServer(t);
  const cp = new ControlPlaneClient({ url: srv.url });
  t.after(() => cp.close());
  const u = await upstream(t, 'u1');
  await register(cp, 'svc', u);
  await putRoute(cp, { name: 'r', match: { pathPrefix: '/' }, service: 'svc' });
  // A port nothing listens on (fetch refuses the well-known "bad ports" such as 9 outright).
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const deadPort = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const gw = await startGateway({ controlPlane: [`http://127.0.0.1:${deadPort}`, srv.url], port: 0, adminPort: 0, graceMs: 0, defaultHealthCheck: false });
  t.after(() => gw.destroy());
  assert.equal(gw.status().config.source, 'control-plane');
  assert.equal((await get(gw, '/')).json.id, 'u1');
  await putRoute(cp, { name: 'r2', match: { pathPrefix: '/two' }, service: 'svc' });
  await until(() => gw.status().routes.length === 2, 5_000, 'a live change through the second URL');
  assert.equal(gw.status().config.controlPlane, srv.url);
  await until(() => gw.status().config.connected, 5_000, 'watches live');
});
