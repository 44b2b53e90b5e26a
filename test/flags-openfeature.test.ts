// The real @openfeature/ofrep-provider against the running control plane's OFREP endpoints, and our
// OpenFeature provider over the streaming SDK, driven through @openfeature/server-sdk: the same
// flags and contexts give the same value, variant, reason and error code.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature, ProviderEvents, type EvaluationDetails, type FlagValue, type JsonValue } from '@openfeature/server-sdk';
import fc from 'fast-check';
import { SpoflessProvider } from '../src/client/index.js';
import { fullJitterBackoff } from '../src/resilience/index.js';
import { startControlPlane } from '../src/server/index.js';
import { call, startServer } from './server-helpers.js';

const FLAGS = [
  {
    key: 'new-checkout',
    type: 'boolean',
    enabled: true,
    variants: { on: true, off: false },
    defaultVariant: 'off',
    rules: [
      { conditions: [{ segment: 'staff' }], serve: { variant: 'on' } },
      { conditions: [{ attribute: 'appVersion', op: 'semver_gte', value: '3.2.0' }, { attribute: 'country', op: 'in', value: ['de', 'at'] }], serve: { variant: 'on' } },
    ],
    rollout: { splits: [{ variant: 'on', weight: 30 }, { variant: 'off', weight: 70 }] },
    metadata: { owner: 'payments', ticket: 42 },
  },
  { key: 'banner', type: 'string', enabled: true, variants: { a: 'Welcome', b: 'Hello' }, defaultVariant: 'a', rules: [{ conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }], serve: { variant: 'b' } }] },
  { key: 'rate-limit', type: 'number', enabled: false, variants: { low: 10, high: 500 }, defaultVariant: 'high', offVariant: 'low' },
  { key: 'ui', type: 'object', enabled: true, variants: { compact: { density: 'compact', columns: 3 }, wide: { density: 'wide', columns: 5 } }, defaultVariant: 'compact', rollout: { bucketBy: 'email', splits: [{ variant: 'wide', weight: 50 }, { variant: 'compact', weight: 50 }] } },
];

function comparable(d: EvaluationDetails<FlagValue>): Record<string, unknown> {
  return { value: d.value, variant: d.variant, reason: d.reason, errorCode: d.errorCode, flagMetadata: d.flagMetadata };
}

test('the OFREP provider (remote) and the spofless provider (local) return the same results for the same contexts', async (t) => {
  const { url } = await startServer(t);
  await call(url, 'PUT', '/v1/flags/prod/segments/staff', { key: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }] });
  for (const f of FLAGS) assert.equal((await call(url, 'PUT', `/v1/flags/prod/flags/${f.key}`, f)).status, 201);

  const remote = new OFREPProvider({ baseUrl: url, headers: [['x-spofless-environment', 'prod']] });
  const local = new SpoflessProvider({ url, environment: 'prod' });
  await OpenFeature.setProviderAndWait('ofrep', remote);
  await OpenFeature.setProviderAndWait('spofless', local);
  t.after(async () => {
    await OpenFeature.close();
  });
  const r = OpenFeature.getClient('ofrep');
  const l = OpenFeature.getClient('spofless');

  const contexts = fc.record(
    {
      targetingKey: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 12 }),
      email: fc.constantFrom('a@acme.com', 'b@example.org', 'c@acme.co'),
      appVersion: fc.constantFrom('3.1.0', '3.2.0', '4.0.0-beta.1', 'v3.3'),
      country: fc.constantFrom('de', 'fr', 'at'),
      plan: fc.constantFrom('free', 'pro'),
    },
    { requiredKeys: ['targetingKey'] },
  );
  const samples = fc.sample(contexts, { numRuns: 40, seed: 6 });
  for (const ctx of samples) {
    assert.deepEqual(comparable(await l.getBooleanDetails('new-checkout', false, ctx)), comparable(await r.getBooleanDetails('new-checkout', false, ctx)), JSON.stringify(ctx));
    assert.deepEqual(comparable(await l.getStringDetails('banner', 'x', ctx)), comparable(await r.getStringDetails('banner', 'x', ctx)));
    assert.deepEqual(comparable(await l.getNumberDetails('rate-limit', 0, ctx)), comparable(await r.getNumberDetails('rate-limit', 0, ctx)));
    assert.deepEqual(comparable(await l.getObjectDetails<JsonValue>('ui', {}, ctx)), comparable(await r.getObjectDetails<JsonValue>('ui', {}, ctx)));
  }
  // The reasons covered above, checked outright once.
  const staff = await l.getBooleanDetails('new-checkout', false, { targetingKey: 'x', email: 'a@acme.com' });
  assert.deepEqual(comparable(staff), { value: true, variant: 'on', reason: 'TARGETING_MATCH', errorCode: undefined, flagMetadata: { owner: 'payments', ticket: 42 } });
  assert.equal((await l.getNumberDetails('rate-limit', 0, {})).reason, 'DISABLED');
  assert.equal((await l.getBooleanDetails('new-checkout', false, { targetingKey: 'k', email: 'z@z.z' })).reason, 'SPLIT');
  assert.equal((await l.getBooleanDetails('new-checkout', false, {})).reason, 'DEFAULT');

  // Errors: a missing flag and a type mismatch give the caller's default and the same error code.
  for (const client of [l, r]) {
    const missing = await client.getBooleanDetails('missing', true, {});
    assert.deepEqual([missing.value, missing.reason, missing.errorCode], [true, 'ERROR', 'FLAG_NOT_FOUND']);
    const mismatch = await client.getNumberDetails('banner', 7, {});
    assert.deepEqual([mismatch.value, mismatch.reason, mismatch.errorCode], [7, 'ERROR', 'TYPE_MISMATCH']);
  }

  // A change made through the API is seen by both; ours also says which flag changed.
  const changed = new Promise<string[]>((resolve) => l.addHandler(ProviderEvents.ConfigurationChanged, (e) => resolve(e?.flagsChanged ?? [])));
  await call(url, 'POST', '/v1/flags/prod/flags/banner/off');
  assert.deepEqual(await changed, ['banner']);
  for (const client of [l, r]) assert.equal((await client.getStringDetails('banner', 'x', { plan: 'pro' })).reason, 'DISABLED');
});

test('the spofless provider: NOT_READY before its first sync, an error past initTimeout, READY once the control plane answers; PROVIDER_STALE from a bootstrap', async (t) => {
  t.after(() => OpenFeature.close());
  const port = await closedPort();
  const provider = new SpoflessProvider({ url: `http://127.0.0.1:${port}`, environment: 'prod', initTimeout: 300, backoff: fullJitterBackoff({ base: 20, cap: 100 }) });
  const client = OpenFeature.getClient('not-ready');
  assert.deepEqual(provider.flags.evaluate('anything', 1), { key: 'anything', value: 1, reason: 'NOT_READY', errorCode: 'PROVIDER_NOT_READY', errorMessage: 'the flag client has not synced yet: await ready()' });
  await assert.rejects(OpenFeature.setProviderAndWait('not-ready', provider), /no flags within 300 ms/);
  assert.equal(client.providerStatus, 'ERROR');
  const d = await client.getBooleanDetails('anything', true, {});
  assert.deepEqual([d.value, d.reason], [true, 'ERROR']);
  // The control plane comes up: the provider syncs and says READY.
  const readyAgain = new Promise<void>((resolve) => client.addHandler(ProviderEvents.Ready, () => resolve()));
  const dataDir = mkdtempSync(join(tmpdir(), 'spofless-of-cp-'));
  const cp = await startControlPlane({ port, logger: false, healthChecks: false, dataDir });
  t.after(async () => {
    await cp.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await call(cp.url, 'PUT', '/v1/flags/prod/flags/anything', { key: 'anything', type: 'boolean', enabled: true, variants: { on: true }, defaultVariant: 'on' });
  await readyAgain;
  assert.equal(client.providerStatus, 'READY');
  assert.equal(await client.getBooleanValue('anything', false, {}), true);
  await OpenFeature.clearProviders();

  const dir = mkdtempSync(join(tmpdir(), 'spofless-of-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bootstrap = join(dir, 'boot.json');
  writeFileSync(bootstrap, JSON.stringify({ flags: { banner: { state: 'ENABLED', variants: { a: 'Welcome' }, defaultVariant: 'a' } } }));
  const fromBoot = new SpoflessProvider({ url: `http://127.0.0.1:${await closedPort()}`, environment: 'prod', bootstrap });
  const stale = new Promise<void>((resolve) => OpenFeature.getClient('boot').addHandler(ProviderEvents.Stale, () => resolve()));
  await OpenFeature.setProviderAndWait('boot', fromBoot);
  await stale;
  const boot = OpenFeature.getClient('boot');
  assert.equal(boot.providerStatus, 'STALE');
  const b = await boot.getStringDetails('banner', 'x', {});
  assert.deepEqual([b.value, b.variant, b.reason], ['Welcome', 'a', 'STATIC']);
  await OpenFeature.clearProviders();
});

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}
