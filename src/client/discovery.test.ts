import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FakeControlPlane } from '../../test/helpers/fake-control-plane.js';
import { ControlPlaneUnreachableError, NoInstanceAvailableError } from '../errors/index.js';
import { constantBackoff } from '../resilience/index.js';
import { roundRobin } from './balancer.js';
import { ControlPlaneClient } from './client.js';
import type { DiscoveryChange } from './discovery.js';

async function until(cond: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A real HTTP backend answering its name. */
async function backend(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(name));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

function register(cp: FakeControlPlane, id: string, port: number, extra: Record<string, unknown> = {}): void {
  cp.put(`/spofless/catalog/instances/api/${id}`, JSON.stringify({ service: 'api', id, address: '127.0.0.1', port, tags: [], metadata: {}, status: 'passing', ...extra }));
}

test('lists, then follows changes; only passing and warning instances take calls', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  register(cp, 'a', 1);
  register(cp, 'b', 2, { status: 'critical' });
  const changes: DiscoveryChange[] = [];
  const api = await client.discover('api', { onChange: (c) => changes.push(c) });
  assert.deepEqual(api.instances.map((i) => i.id), ['a', 'b']);
  assert.deepEqual(api.healthy.map((i) => i.id), ['a']);
  assert.equal(api.revision, 2);
  register(cp, 'c', 3, { status: 'warning' });
  cp.delete(['/spofless/catalog/instances/api/a']);
  register(cp, 'b', 2, { status: 'draining' });
  cp.put('/spofless/catalog/instances/other/x', '{}');
  await until(() => api.revision === 5);
  assert.deepEqual(api.healthy.map((i) => i.id), ['c']);
  assert.deepEqual(changes.map((c) => [c.added.map((i) => i.id), c.removed.map((i) => i.id), c.updated.map((i) => i.id)]), [
    [['c'], [], []],
    [[], ['a'], []],
    [[], [], ['b']],
  ]);
  assert.equal(api.connected, true);
  assert.equal(api.staleness, 0);
});

test('fails static: with the control plane down it keeps serving the last list and says how stale it is', async (t) => {
  const cp = await new FakeControlPlane().start();
  const b1 = await backend('one');
  const b2 = await backend('two');
  t.after(async () => {
    await cp.stop();
    b1.server.close();
    b2.server.close();
    b1.server.closeAllConnections();
    b2.server.closeAllConnections();
  });
  register(cp, 'one', b1.port);
  register(cp, 'two', b2.port);
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const api = await client.discover('api', { balancer: roundRobin(), backoff: constantBackoff(30) });
  await until(() => api.connected);
  await cp.stop();
  await until(() => !api.connected);
  await new Promise((r) => setTimeout(r, 120));
  assert.ok(api.staleness >= 100, `staleness ${api.staleness}`);
  assert.equal(api.instances.length, 2);
  const bodies = await Promise.all([1, 2, 3, 4].map(async () => (await api.request('/')).text()));
  assert.deepEqual(bodies.sort(), ['one', 'one', 'two', 'two']);
  // It comes back: the watch resumes, staleness returns to 0, and a change made meanwhile arrives.
  register(cp, 'three', b1.port);
  await cp.start();
  await until(() => api.connected && api.instances.length === 3);
  assert.equal(api.staleness, 0);
  // With no first list to fall back on, discover() itself fails.
  await cp.stop();
  await assert.rejects(client.discover('api'), ControlPlaneUnreachableError);
});

test('a refused connection is retried on another instance; the dead instance\'s breaker opens', async (t) => {
  const cp = await new FakeControlPlane().start();
  const live = await backend('live');
  const dead = await backend('dead');
  await new Promise<void>((r) => dead.server.close(() => r()));
  t.after(async () => {
    await cp.stop();
    live.server.close();
    live.server.closeAllConnections();
  });
  register(cp, 'dead', dead.port);
  register(cp, 'live', live.port);
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const api = await client.discover('api', { balancer: roundRobin() });
  for (let i = 0; i < 20; i++) assert.equal(await (await api.request('/')).text(), 'live');
  assert.equal(api.breaker('dead').state, 'open');
  assert.equal(api.breaker('live').state, 'closed');
  // Nothing left: a typed error whose cause is the last failure.
  cp.delete(['/spofless/catalog/instances/api/live']);
  await until(() => api.instances.length === 1);
  api.breaker('dead').reset();
  const err = await api.request('/').catch((e: unknown) => e);
  assert.ok(err instanceof NoInstanceAvailableError);
  assert.match(err.message, /no instance of service "api" available/);
  // An empty list says so.
  cp.delete(['/spofless/catalog/instances/api/dead']);
  await until(() => api.instances.length === 0);
  await assert.rejects(api.request('/'), /the list is empty/);
});

test('after compaction the discovery lists again and reports the difference', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  register(cp, 'a', 1);
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const changes: DiscoveryChange[] = [];
  const api = await client.discover('api', { backoff: constantBackoff(20), onChange: (c) => changes.push(c) });
  await until(() => api.connected);
  await cp.stop();
  // While it was away: a change, then its history compacted.
  register(cp, 'b', 2);
  cp.delete(['/spofless/catalog/instances/api/a']);
  cp.compact(cp.revision);
  await cp.start();
  await until(() => api.instances.map((i) => i.id).join() === 'b' && api.connected);
  assert.equal(api.revision, 3);
  assert.deepEqual(changes.at(-1)?.added.map((i) => i.id), ['b']);
  assert.deepEqual(changes.at(-1)?.removed.map((i) => i.id), ['a']);
});
