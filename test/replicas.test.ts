/**
 * Control-plane replicas in one process over one shared store (the SQLite engine, shared in-process
 * as an etcd cluster is shared between machines): one leader runs the health checks, `GET /v1/leader`
 * agrees on every replica, a resigning leader hands over at once, a watch on either replica sees the
 * same revisions, and the checker's writes carry the leader's fence.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ControlPlaneClient, type WatchMessage } from '../src/client/index.js';
import { HealthChecker, instanceKey } from '../src/catalog/index.js';
import { Election } from '../src/election/index.js';
import { NotLeaderError } from '../src/errors/index.js';
import { startControlPlane, type ControlPlane } from '../src/server/index.js';
import { SqliteStore } from '../src/store/index.js';
import { call } from './server-helpers.js';

async function sharedStore(t: TestContext): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-replicas-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db'), compaction: false });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function replica(t: TestContext, store: SqliteStore, id: string): Promise<ControlPlane> {
  const cp = await startControlPlane({ port: 0, logger: false, store, election: { ttl: 2, id }, healthChecks: { retryDelay: 100 } });
  t.after(() => cp.close());
  return cp;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 8_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A loopback port with nothing listening: a probe to it is refused. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('a single control plane on SQLite leads without an election', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-replicas-'));
  const cp = await startControlPlane({ port: 0, logger: false, dataDir: dir });
  t.after(async () => {
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(cp.election, undefined);
  assert.equal(cp.isLeader, true);
  assert.equal(cp.healthChecker?.running, true);
  const r = await call(cp.url, 'GET', '/v1/leader');
  assert.equal(r.status, 200);
  assert.equal(r.body.mode, 'single');
  assert.equal(r.body.leader, true);
  await assert.rejects(startControlPlane({ port: 0, logger: false, dataDir: dir, election: { ttl: 0 } }), /election\.ttl/);
});

test('two replicas: one leads and runs the checks, both say who leads, the other takes over at once when the leader closes', async (t) => {
  const store = await sharedStore(t);
  const a = await replica(t, store, 'cp-a');
  await until(() => a.isLeader, 'cp-a to lead');
  const b = await replica(t, store, 'cp-b');
  await until(async () => (await b.leader()).state === 'candidate', 'cp-b to be a candidate');
  assert.equal(a.healthChecker?.running, true);
  assert.equal(b.healthChecker?.running, false, 'the health checker runs on the leader only');

  for (const cp of [a, b]) {
    const r = await call(cp.url, 'GET', '/v1/leader');
    assert.equal(r.status, 200);
    assert.deepEqual((r.body.current as { id: string }).id, 'cp-a');
    assert.equal(r.body.mode, 'election');
    assert.equal(r.body.leader, cp === a);
    assert.equal(r.body.ttl, 2);
  }
  const tokenA = (await a.leader()).token!;

  const started = Date.now();
  await a.close();
  await until(() => b.isLeader, 'cp-b to lead');
  const handover = Date.now() - started;
  assert.ok(handover < 2_000, `handed over in ${handover} ms (a resign revokes the lease: no TTL wait)`);
  await until(() => b.healthChecker?.running === true, 'cp-b to run the checks');
  assert.ok((await b.leader()).token! > tokenA, 'the fencing token grew');
});

test('a watch on either replica sees the same revisions', async (t) => {
  const store = await sharedStore(t);
  const a = await replica(t, store, 'cp-a');
  const b = await replica(t, store, 'cp-b');
  const ca = new ControlPlaneClient({ url: a.url });
  const cb = new ControlPlaneClient({ url: b.url });
  t.after(() => {
    ca.close();
    cb.close();
  });
  const start = (await ca.range('/w/')).revision + 1;
  const seen: Record<string, number[]> = { a: [], b: [] };
  const follow = async (c: ControlPlaneClient, into: number[]): Promise<void> => {
    for await (const m of c.watch('/w/', { startRevision: start }) as AsyncIterable<WatchMessage>) {
      if (m.type === 'events') for (const e of m.events) into.push(e.kv.modRevision);
      if (into.length >= 20) return;
    }
  };
  const done = Promise.all([follow(ca, seen.a!), follow(cb, seen.b!)]);
  const written: number[] = [];
  for (let i = 0; i < 20; i++) written.push((await (i % 2 === 0 ? ca : cb).put(`/w/${i}`, String(i))).revision);
  await done;
  assert.deepEqual(seen.a, written);
  assert.deepEqual(seen.b, written);
});

test('the leader\'s health checks mark a dead instance critical, with fenced writes; a deposed leader\'s checker writes nothing', async (t) => {
  const store = await sharedStore(t);
  const a = await replica(t, store, 'cp-a');
  await until(() => a.isLeader, 'cp-a to lead');
  const b = await replica(t, store, 'cp-b');
  const changes: string[] = [];
  a.healthChecker!.onStatusChange((e) => changes.push(`a:${e.to}`));
  b.healthChecker!.onStatusChange((e) => changes.push(`b:${e.to}`));
  const client = new ControlPlaneClient({ url: b.url });
  t.after(() => client.close());
  const port = await deadPort();
  await client.registerInstance('svc', 'i1', { address: '127.0.0.1', port, ttl: 30, check: { type: 'tcp', interval: 100, timeout: 100, rise: 1, fall: 1, initialStatus: 'passing' } });
  await until(async () => (await client.instances('svc')).instances[0]?.status === 'critical', 'the instance to turn critical');
  assert.deepEqual(changes, ['a:critical'], 'only the leader wrote');

  // A checker fenced by a leadership that has ended writes nothing, even with a check due.
  const e = new Election({ store, name: 'fence-test', ttl: 2 });
  t.after(() => e.close());
  e.campaign();
  const l = await e.whenLeader();
  await e.resign();
  const stale = new HealthChecker({ store, fence: () => l.fence(), random: () => 0 });
  const staleChanges: string[] = [];
  stale.onStatusChange((c) => staleChanges.push(c.to));
  await client.registerInstance('svc', 'i2', { address: '127.0.0.1', port, ttl: 30, check: { type: 'tcp', interval: 100, timeout: 100, rise: 1, fall: 1, initialStatus: 'passing' } });
  await b.close(); // only the stale checker and a remain
  await a.close();
  await stale.start();
  t.after(() => stale.stop());
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(staleChanges, []);
  const i2 = await store.get(instanceKey('svc', 'i2'));
  assert.ok(i2 !== undefined);
  assert.equal((JSON.parse(Buffer.from(i2.value).toString()) as { status: string }).status, 'passing', 'the stale checker\'s write never landed');
  assert.throws(() => l.fence(), NotLeaderError);
});

test('spofless up --election-ttl: checked where it enters (needs --store etcd://, whole seconds)', async () => {
  const { run } = await import('../src/cli/run.js');
  const err: string[] = [];
  const io = { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} };
  assert.equal(await run(['up', '--election-ttl', '5'], io), 2);
  assert.match(err.join(''), /--election-ttl needs --store etcd/);
  err.length = 0;
  assert.equal(await run(['up', '--store', 'etcd://127.0.0.1:1', '--election-ttl', '1.5'], io), 2);
  assert.match(err.join(''), /--election-ttl must be a positive integer/);
  err.length = 0;
  assert.equal(await run(['up', '--store', 'etcd://127.0.0.1:1', '--election-ttl', '4000'], io), 2);
  assert.match(err.join(''), /1 to 3600/);
});
