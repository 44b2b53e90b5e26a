// Flags on the scale-out store: the same API, compare-and-swap, audit log, SDK stream and OFREP, with
// the control plane on a real etcd (one member).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FlagClient } from '../src/client/index.js';
import { startControlPlane } from '../src/server/index.js';
import { call } from './server-helpers.js';
import { startEtcd, type EtcdCluster } from './support/etcd.js';

let etcd: EtcdCluster | undefined;
before(async () => {
  etcd = await startEtcd({ members: 1 });
});
after(async () => {
  await etcd?.stop();
});

test('flags on etcd: CAS writes with If-Match, the audit log, a toggle reaching an SDK, OFREP', { timeout: 60_000 }, async (t) => {
  const hostPort = etcd!.endpoints[0]!.replace('http://', '');
  const cp = await startControlPlane({ port: 0, logger: false, healthChecks: false, store: `etcd://${hostPort}/flags-${process.pid}` });
  t.after(() => cp.close());
  const flag = { key: 'dark-mode', type: 'boolean', enabled: true, variants: { on: true, off: false }, defaultVariant: 'off' };
  const created = await call(cp.url, 'PUT', '/v1/flags/prod/flags/dark-mode', flag, { 'x-spofless-actor': 'alice' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const rev = created.body.revision as number;

  const sdk = new FlagClient({ url: cp.url, environment: 'prod' });
  t.after(() => sdk.close());
  await sdk.ready();
  assert.equal(sdk.boolean('dark-mode', true), false);

  const updated = await call(cp.url, 'PUT', '/v1/flags/prod/flags/dark-mode', { ...flag, defaultVariant: 'on' }, { 'if-match': `"${rev}"`, 'x-spofless-actor': 'bob' });
  assert.equal(updated.status, 200);
  const lost = await call(cp.url, 'PUT', '/v1/flags/prod/flags/dark-mode', flag, { 'if-match': `"${rev}"` });
  assert.equal(lost.status, 409);
  const deadline = Date.now() + 5_000;
  while (!sdk.boolean('dark-mode', false) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(sdk.boolean('dark-mode', false), true);

  const r = await fetch(`${cp.url}/ofrep/v1/evaluate/flags/dark-mode`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-spofless-environment': 'prod' }, body: '{"context":{}}' });
  assert.deepEqual(await r.json(), { key: 'dark-mode', value: true, reason: 'STATIC', variant: 'on' });
  const history = await call(cp.url, 'GET', '/v1/flags/prod/history');
  assert.deepEqual((history.body.records as Array<{ actor: string }>).map((x) => x.actor), ['bob', 'alice']);
});
