// The HealthChecker driven by a hand-moved clock, probing real tiny HTTP and TCP servers on loopback.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  Catalog,
  HealthChecker,
  ManualTimers,
  defaultProbe,
  instanceKey,
  type CheckResultEvent,
  type HealthCheckInput,
  type Instance,
  type Probe,
} from '../src/catalog/index.js';
import { SqliteStore, text } from '../src/store/index.js';

interface Rig {
  store: SqliteStore;
  catalog: Catalog;
  checker: HealthChecker;
  time: ManualTimers;
  results: CheckResultEvent[];
}

async function rig(t: TestContext, probe?: Probe): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-health-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db') });
  const time = new ManualTimers();
  const checker = new HealthChecker({ store, clock: time, timers: time, random: () => 0, ...(probe ? { probe } : {}) });
  const results: CheckResultEvent[] = [];
  checker.onResult((r) => results.push(r));
  await checker.start();
  t.after(async () => {
    await checker.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, catalog: new Catalog(store), checker, time, results };
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets a store watch deliver what was just written. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 20));
}

/** Runs the timers due within `ms` and waits for the checks (and status writes) they started. */
async function tick(r: Rig, ms: number): Promise<void> {
  r.time.advance(ms);
  await r.checker.whenIdle();
}

async function status(r: Rig, service: string, id: string): Promise<Instance | undefined> {
  const kv = await r.store.get(instanceKey(service, id));
  return kv === undefined ? undefined : (JSON.parse(text(kv.value)) as Instance);
}

/** An HTTP server whose answer the test sets; `hang` leaves requests unanswered. */
async function httpServer(t: TestContext): Promise<{ port: number; set(status: number, body?: string): void; hang(on: boolean): void }> {
  let code = 200;
  let body = 'ok';
  let hang = false;
  const server: HttpServer = createHttpServer((req, res) => {
    if (hang) return;
    res.writeHead(code, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as AddressInfo).port,
    set(s, b = 'ok') {
      code = s;
      body = b;
    },
    hang(on) {
      hang = on;
    },
  };
}

async function tcpServer(t: TestContext): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closed = false;
  const close = (): Promise<void> => {
    if (closed) return Promise.resolve();
    closed = true;
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(close);
  return { port: (server.address() as AddressInfo).port, close };
}

async function register(r: Rig, id: string, port: number, check: HealthCheckInput, extra: Record<string, unknown> = {}) {
  const res = await r.catalog.register('api', id, { address: '127.0.0.1', port, ttl: 60, check, ...extra });
  await until(() => r.checker.size >= 1, 'the checker to pick the instance up');
  return res;
}

test('http: critical until `rise` passes, then passing; `fall` failures make it critical (lease kept)', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  const { lease } = await register(r, 'i1', srv.port, { type: 'http', path: '/healthz', interval: 1000, timeout: 500, rise: 2, fall: 3 });
  assert.equal((await status(r, 'api', 'i1'))?.status, 'critical');

  await tick(r, 0); // first check (random() = 0: no delay)
  assert.equal(r.results.length, 1);
  assert.equal(r.results[0]?.ok, true);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'critical', 'one pass is not enough');
  await tick(r, 1000);
  const up = await status(r, 'api', 'i1');
  assert.equal(up?.status, 'passing');
  assert.equal(up?.statusReason, 'HTTP 200');
  assert.equal((await r.store.get(instanceKey('api', 'i1')))?.lease, lease, 'the status write keeps the lease');

  srv.set(503, 'busy');
  await tick(r, 1000);
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'passing', 'two failures of three');
  await tick(r, 1000);
  const down = await status(r, 'api', 'i1');
  assert.equal(down?.status, 'critical');
  assert.equal(down?.statusReason, 'HTTP 503 (expected 2xx)');

  srv.set(200);
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'critical');
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'passing');
  assert.deepEqual(
    r.results.map((x) => x.ok),
    [true, true, false, false, false, true, true],
  );
});

test('http: body match and expected status', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  srv.set(200, 'state: degraded');
  await register(r, 'i1', srv.port, { type: 'http', bodyMatch: 'state: ok', interval: 1000, rise: 1, fall: 1 });
  await tick(r, 0);
  assert.equal(r.results.at(-1)?.detail, 'HTTP 200, body does not contain "state: ok"');
  assert.equal((await status(r, 'api', 'i1'))?.status, 'critical');
  srv.set(200, 'uptime 5\nstate: ok\n');
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'passing');

  await r.catalog.register('api', 'i2', { address: '127.0.0.1', port: srv.port, ttl: 60, check: { type: 'http', expectStatus: 204, interval: 1000, rise: 1, fall: 1 } });
  await until(() => r.checker.size === 2, 'second instance tracked');
  await tick(r, 0);
  assert.equal((await status(r, 'api', 'i2'))?.statusReason, undefined);
  assert.equal(r.results.at(-1)?.detail, 'HTTP 200 (expected 204)');
  srv.set(204, '');
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i2'))?.status, 'passing');
});

test('http: a check that does not answer within its timeout fails', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  srv.hang(true);
  await register(r, 'i1', srv.port, { type: 'http', interval: 1000, timeout: 300, rise: 1, fall: 1, initialStatus: 'passing' });
  r.time.advance(0); // the check starts and hangs
  await new Promise((res) => setTimeout(res, 20)); // the request really reaches the server
  r.time.advance(299);
  await new Promise((res) => setTimeout(res, 5));
  assert.equal(r.results.length, 0, 'not yet timed out');
  await tick(r, 1);
  assert.equal(r.results[0]?.detail, 'timed out after 300 ms');
  const down = await status(r, 'api', 'i1');
  assert.equal(down?.status, 'critical');
  assert.equal(down?.statusReason, 'timed out after 300 ms');
  // The next check starts `interval` after the previous one started.
  srv.hang(false);
  await tick(r, 699);
  assert.equal(r.results.length, 1);
  await tick(r, 1);
  assert.equal(r.results.length, 2);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'passing');
});

test('tcp: a listening port passes, a closed one fails with "connection refused"', async (t) => {
  const r = await rig(t);
  const srv = await tcpServer(t);
  await register(r, 't1', srv.port, { type: 'tcp', interval: 500, rise: 1, fall: 2 });
  await tick(r, 0);
  assert.equal((await status(r, 'api', 't1'))?.status, 'passing');
  await srv.close();
  await tick(r, 500);
  assert.equal(r.results.at(-1)?.detail, 'connection refused');
  assert.equal((await status(r, 'api', 't1'))?.status, 'passing');
  await tick(r, 500);
  assert.equal((await status(r, 'api', 't1'))?.status, 'critical');
});

test('draining and maintenance instances are checked but never moved', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  srv.set(500);
  await register(r, 'i1', srv.port, { type: 'http', interval: 1000, rise: 1, fall: 1, initialStatus: 'passing' });
  await r.catalog.drain('api', 'i1');
  await settle(); // the watch brings the drain to the checker
  await tick(r, 0);
  await tick(r, 1000);
  assert.equal(r.results.filter((x) => !x.ok).length, 2);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'draining');
});

test('the checker follows the catalog: new instances at once, removed ones stop (timers cleared)', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  await register(r, 'i1', srv.port, { type: 'http', interval: 1000 });
  await r.catalog.register('api', 'i2', { address: '127.0.0.1', port: srv.port, ttl: 60 }); // no check: not tracked
  await r.catalog.register('api', 'i3', { address: '127.0.0.1', port: srv.port, ttl: 60, check: { type: 'tcp', interval: 1000 } });
  await until(() => r.checker.size === 2, 'two checked instances');
  assert.equal(r.time.pending, 2, 'one timer per check');
  await r.catalog.deregister('api', 'i1');
  await until(() => r.checker.size === 1, 'i1 dropped');
  assert.equal(r.time.pending, 1);
  // A re-registration without the check stops checking it.
  await r.catalog.register('api', 'i3', { address: '127.0.0.1', port: srv.port, ttl: 60 });
  await until(() => r.checker.size === 0, 'i3 dropped');
  assert.equal(r.time.pending, 0);
});

test('a re-registration that lands during a check is never overwritten (compare-and-swap)', async (t) => {
  // The checker's watch is held back (a gate) so that its view is stale when it writes: the
  // compare-and-swap must lose, and the re-registration must stand.
  const dir = mkdtempSync(join(tmpdir(), 'spofless-health-'));
  const real = await SqliteStore.open({ path: join(dir, 'store.db') });
  let gate: Promise<void> = Promise.resolve();
  let openGate: () => void = () => undefined;
  const gated = new Proxy(real, {
    get(target, prop) {
      if (prop !== 'watch') {
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      }
      return (key: string, options: object) => {
        const w = target.watch(key, options);
        const it = w[Symbol.asyncIterator]();
        return {
          close: () => w.close(),
          get closed() {
            return w.closed;
          },
          [Symbol.asyncIterator]: () => ({
            next: async () => {
              const r = await it.next();
              await gate;
              return r;
            },
            return: () => it.return?.() ?? Promise.resolve({ done: true, value: undefined }),
          }),
        };
      };
    },
  });
  const time = new ManualTimers();
  const logs: string[] = [];
  const logger = { info: (_o: object, m: string) => logs.push(m), warn: (_o: object, m: string) => logs.push(m), error: (_o: object, m: string) => logs.push(m) };
  let during: (() => Promise<void>) | undefined;
  const probe: Probe = async (address, port, check, signal) => {
    const res = await defaultProbe(address, port, check, signal);
    const hook = during;
    during = undefined;
    if (hook) await hook();
    return res;
  };
  const checker = new HealthChecker({ store: gated, clock: time, timers: time, random: () => 0, probe, logger });
  await checker.start();
  t.after(async () => {
    openGate();
    await checker.stop();
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const catalog = new Catalog(real);
  const srv = await httpServer(t);
  const check = { type: 'http', interval: 1000, rise: 1, fall: 1 } as const;
  const { lease } = await catalog.register('api', 'i1', { address: '127.0.0.1', port: srv.port, ttl: 60, check });
  await until(() => checker.size === 1, 'tracked');
  gate = new Promise((resolve) => (openGate = resolve));
  // While the first check runs, the owner re-registers (same lease, same check) in maintenance.
  during = async () => {
    await catalog.register('api', 'i1', { address: '127.0.0.1', port: srv.port, lease, check, status: 'maintenance' });
  };
  time.advance(0);
  await checker.whenIdle();
  assert.ok(logs.includes('health checker: instance changed during a status update; will judge again'), logs.join('; '));
  const kv = await real.get(instanceKey('api', 'i1'));
  assert.equal((JSON.parse(text(kv!.value)) as Instance).status, 'maintenance', "the check's verdict lost the race and wrote nothing");
  assert.equal(kv?.lease, lease);
  openGate();
  // Back in service: the next verdict is judged against the new registration and applied.
  await catalog.setStatus('api', 'i1', 'critical');
  await settle();
  time.advance(1000);
  await checker.whenIdle();
  const after = await real.get(instanceKey('api', 'i1'));
  assert.equal((JSON.parse(text(after!.value)) as Instance).status, 'passing');
  assert.equal(after?.lease, lease);
});

test('a new owner (new lease) resets the counters; stop() clears every timer and start() resumes', async (t) => {
  const r = await rig(t);
  const srv = await httpServer(t);
  const check = { type: 'http', interval: 1000, rise: 2, fall: 1 } as const;
  await register(r, 'i1', srv.port, check);
  await tick(r, 0); // one pass of two
  await r.catalog.register('api', 'i1', { address: '127.0.0.1', port: srv.port, ttl: 60, check }); // new lease
  await until(() => r.time.pending === 1 && r.results.length === 1, 'reset');
  await tick(r, 0); // first pass for the new owner: still one of two
  assert.equal((await status(r, 'api', 'i1'))?.status, 'critical');

  await r.checker.stop();
  assert.equal(r.time.pending, 0);
  assert.equal(r.checker.size, 0);
  assert.equal(r.checker.running, false);
  r.time.advance(10_000);
  await r.checker.start();
  assert.equal(r.checker.size, 1);
  await tick(r, 0);
  await tick(r, 1000);
  assert.equal((await status(r, 'api', 'i1'))?.status, 'passing');
});
