import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Catalog, instanceKey, type Instance } from '../src/catalog/index.js';
import { isSpoflessError } from '../src/errors/index.js';
import { SqliteStore, text } from '../src/store/index.js';

async function openStore(t: { after(fn: () => Promise<void> | void): void }): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-catalog-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db') });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function stored(store: SqliteStore, service: string, id: string): Promise<{ instance: Instance; lease: string | undefined } | undefined> {
  const kv = await store.get(instanceKey(service, id));
  return kv === undefined ? undefined : { instance: JSON.parse(text(kv.value)) as Instance, lease: kv.lease };
}

test('register with ttl grants a lease, stores the instance at its key under that lease', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store, { wallClock: { now: () => 1_700_000_000_000 } });
  const r = await catalog.register('api', 'api-1', { address: '127.0.0.1', port: 8080, zone: 'a', tags: ['x'], metadata: { k: 'v' }, ttl: 30 });
  assert.equal(r.instance.status, 'passing');
  assert.equal(r.instance.lease, r.lease);
  assert.equal(r.instance.registeredAt, 1_700_000_000_000);
  assert.deepEqual(Object.keys(r.instance), ['service', 'id', 'address', 'port', 'zone', 'tags', 'metadata', 'status', 'lease', 'registeredAt']);
  const s = await stored(store, 'api', 'api-1');
  assert.deepEqual(s?.instance, r.instance);
  assert.equal(s?.lease, r.lease);
  const info = await store.leaseTimeToLive(r.lease, { keys: true });
  assert.equal(info?.grantedTtl, 30);
  assert.deepEqual(info?.keys?.map(text), ['/spofless/catalog/instances/api/api-1']);
  // Revoking the lease removes the instance.
  await store.revokeLease(r.lease);
  assert.equal(await stored(store, 'api', 'api-1'), undefined);
});

test('registration status: body, check initialStatus, critical with a check, passing without', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  const check = { type: 'tcp' as const, interval: 1000 };
  assert.equal((await catalog.register('s', 'a', { address: 'h', port: 1 })).instance.status, 'passing');
  const withCheck = await catalog.register('s', 'b', { address: 'h', port: 1, check });
  assert.equal(withCheck.instance.status, 'critical');
  assert.deepEqual(withCheck.instance.check, { type: 'tcp', interval: 1000, timeout: 1000, rise: 2, fall: 3 });
  assert.equal((await catalog.register('s', 'c', { address: 'h', port: 1, check: { ...check, initialStatus: 'passing' } })).instance.status, 'passing');
  assert.equal((await catalog.register('s', 'd', { address: 'h', port: 1, check, status: 'warning' })).instance.status, 'warning');
});

test('re-registration by the same lease keeps the status; a new lease starts afresh', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  const { lease } = await catalog.register('api', 'i1', { address: '10.0.0.1', port: 80, ttl: 60 });
  await catalog.drain('api', 'i1');
  const again = await catalog.register('api', 'i1', { address: '10.0.0.1', port: 80, lease });
  assert.equal(again.instance.status, 'draining');
  const moved = await catalog.register('api', 'i1', { address: '10.0.0.2', port: 80, lease });
  assert.equal(moved.instance.status, 'passing', 'a new address is a new target: status from the rules');
  await catalog.drain('api', 'i1');
  const fresh = await catalog.register('api', 'i1', { address: '10.0.0.2', port: 80, ttl: 60 });
  assert.equal(fresh.instance.status, 'passing');
  assert.notEqual(fresh.lease, lease);
  assert.equal((await stored(store, 'api', 'i1'))?.lease, fresh.lease);
});

test('bad registrations are refused before anything is written', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  const before = store.revision;
  const cases: [string, string, unknown, RegExp][] = [
    ['api', 'i', { address: '127.0.0.1' }, /missing the required field "port"/],
    ['api', 'i', { address: '127.0.0.1', port: 0 }, /port must be an integer from 1 to 65535; got 0/],
    ['api', 'i', { address: '127.0.0.1', port: 80, prot: 1 }, /unknown field "prot"/],
    ['api', 'i', { address: 'not a host', port: 80 }, /address must be an IP address or a host name/],
    ['api', 'i', { address: 'h', port: 80, check: { type: 'udp' } }, /check.type must be "http" or "tcp"/],
    ['api', 'i', { address: 'h', port: 80, check: { type: 'tcp', path: '/' } }, /check.path applies only to an "http" check/],
    ['api', 'i', { address: 'h', port: 80, check: { type: 'http', intervl: 5 } }, /unknown field "intervl"/],
    ['api', 'i', { address: 'h', port: 80, lease: '1', ttl: 5 }, /both "lease" and "ttl"/],
    ['api', 'i', { address: 'h', port: 80, status: 'ok' }, /status must be one of/],
    ['a/b', 'i', { address: 'h', port: 80 }, /service name must be/],
    ['api', '', { address: 'h', port: 80 }, /instance id must be/],
    ['api', 'i', { address: 'h', port: 80, metadata: { k: 1 } }, /metadata\["k"\] must be a string/],
  ];
  for (const [svc, id, input, re] of cases) {
    await assert.rejects(catalog.register(svc, id, input as never), (err: unknown) => {
      assert.ok(isSpoflessError(err, 'SPOF_ERR_INVALID_ARGUMENT'), String(err));
      assert.match((err as Error).message, re);
      return true;
    });
  }
  assert.equal(store.revision, before, 'nothing was written, no lease granted');
});

test('registering under an unknown lease fails with LeaseNotFound and writes nothing', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  await assert.rejects(catalog.register('api', 'i', { address: 'h', port: 1, lease: '12345' }), (err: unknown) =>
    isSpoflessError(err, 'SPOF_ERR_STORE_LEASE_NOT_FOUND'),
  );
  assert.equal(await stored(store, 'api', 'i'), undefined);
});

test('deregister, drain, setStatus: not found is InstanceNotFound; drain keeps the lease', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  const { lease } = await catalog.register('api', 'i', { address: 'h', port: 1, ttl: 60 });
  const d = await catalog.drain('api', 'i');
  assert.equal(d.instance.status, 'draining');
  assert.equal((await stored(store, 'api', 'i'))?.lease, lease);
  const again = await catalog.drain('api', 'i');
  assert.equal(again.revision, d.revision, 'draining twice writes nothing');
  const m = await catalog.setStatus('api', 'i', 'maintenance', { reason: 'disk swap' });
  assert.equal(m.instance.statusReason, 'disk swap');
  await catalog.deregister('api', 'i');
  for (const call of [() => catalog.deregister('api', 'i'), () => catalog.drain('api', 'i'), () => catalog.get('api', 'i')]) {
    await assert.rejects(call(), (err: unknown) => isSpoflessError(err, 'SPOF_ERR_CATALOG_INSTANCE_NOT_FOUND'));
  }
});

test('listings: services with counts, instances filtered by status and zone; foreign keys skipped', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  await catalog.register('api', 'a1', { address: 'h', port: 1, zone: 'z1', ttl: 60 });
  await catalog.register('api', 'a2', { address: 'h', port: 2, zone: 'z2', ttl: 60 });
  await catalog.register('api', 'a3', { address: 'h', port: 3, zone: 'z1', ttl: 60, status: 'critical' });
  await catalog.register('db', 'd1', { address: 'h', port: 4, ttl: 60 });
  await store.put('/spofless/catalog/instances/api/garbage', 'not json');
  await store.put('/spofless/catalog/instances/zzz', '{}');
  const services = await catalog.listServices();
  assert.deepEqual(services.services, [
    { name: 'api', instances: 3, passing: 2 },
    { name: 'db', instances: 1, passing: 1 },
  ]);
  assert.equal(services.revision, store.revision);
  const ids = async (filter: Parameters<Catalog['listInstances']>[1]) => (await catalog.listInstances('api', filter)).instances.map((i) => i.id);
  assert.deepEqual(await ids({}), ['a1', 'a2', 'a3']);
  assert.deepEqual(await ids({ status: 'passing' }), ['a1', 'a2']);
  assert.deepEqual(await ids({ status: ['critical', 'warning'] }), ['a3']);
  assert.deepEqual(await ids({ zone: 'z1' }), ['a1', 'a3']);
  assert.deepEqual(await ids({ zone: 'z1', status: 'passing' }), ['a1']);
  assert.deepEqual((await catalog.listInstances('nope')).instances, []);
});

test('compareAndSwap loses to a concurrent write and keeps the lease when it wins', async (t) => {
  const store = await openStore(t);
  const catalog = new Catalog(store);
  const r = await catalog.register('api', 'i', { address: 'h', port: 1, ttl: 60 });
  const key = instanceKey('api', 'i');
  const kv = (await store.get(key))!;
  const won = await catalog.compareAndSwap(key, kv, { ...r.instance, status: 'critical' });
  assert.ok(won !== undefined);
  assert.equal((await store.get(key))?.lease, r.lease);
  const lost = await catalog.compareAndSwap(key, kv, { ...r.instance, status: 'warning' });
  assert.equal(lost, undefined);
  assert.equal((await stored(store, 'api', 'i'))?.instance.status, 'critical');
});

test('a registration whose write fails revokes the lease it granted', async (t) => {
  const store = await openStore(t);
  const granted: string[] = [];
  const failing = new Proxy(store, {
    get(target, prop) {
      if (prop === 'txn') return () => Promise.reject(new Error('disk on fire'));
      if (prop === 'grantLease') {
        return async (ttl: number) => {
          const g = await target.grantLease(ttl);
          granted.push(g.id);
          return g;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const catalog = new Catalog(failing);
  await assert.rejects(catalog.register('api', 'i', { address: 'h', port: 1, ttl: 30 }), /disk on fire/);
  assert.equal(granted.length, 1);
  assert.equal(await store.leaseTimeToLive(granted[0]!), undefined, 'the lease is gone');
});
