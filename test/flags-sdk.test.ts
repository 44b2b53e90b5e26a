// The streaming flag SDK against a real control plane: NOT_READY before the first sync, a toggle
// reaching 100 SDKs (each its own client and TCP connection), fail static from the bootstrap file when
// the control plane is down at start, from the last saved state after a restart, and staleness while
// the stream is down.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FlagClient } from '../src/client/index.js';
import { fullJitterBackoff } from '../src/resilience/index.js';
import { startControlPlane } from '../src/server/index.js';
import { call, startServer } from './server-helpers.js';

const FAST = fullJitterBackoff({ base: 20, cap: 150 });
const FLAG = { key: 'new-checkout', type: 'boolean', enabled: true, variants: { on: true, off: false }, defaultVariant: 'off', offVariant: 'off' };

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-flags-sdk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('before the first sync: the caller default with reason NOT_READY; after ready(): the flag', async (t) => {
  const { url } = await startServer(t);
  await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, defaultVariant: 'on' });
  const sdk = new FlagClient({ url, environment: 'prod' });
  t.after(() => sdk.close());
  assert.deepEqual(sdk.evaluate('new-checkout', false), {
    key: 'new-checkout',
    value: false,
    reason: 'NOT_READY',
    errorCode: 'PROVIDER_NOT_READY',
    errorMessage: 'the flag client has not synced yet: await ready()',
  });
  assert.equal(sdk.state, 'starting');
  await sdk.ready();
  assert.equal(sdk.boolean('new-checkout', false), true);
  assert.equal(sdk.source, 'control-plane');
  assert.equal(sdk.staleness, 0);
  assert.equal(sdk.evaluate('new-checkout', 'x', {}, 'string').errorCode, 'TYPE_MISMATCH');
  assert.equal(sdk.evaluate('nope', 1).errorCode, 'FLAG_NOT_FOUND');
});

test('a toggle reaches 100 connected SDKs, each on its own connection, and each sees it', async (t) => {
  const { url, cp } = await startServer(t);
  await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
  const sdks = Array.from({ length: 100 }, () => new FlagClient({ url, environment: 'prod', backoff: FAST }));
  t.after(() => {
    for (const s of sdks) s.close();
  });
  await Promise.all(sdks.map((s) => s.ready()));
  await until('100 watch streams', () => cp.watchStats.subscribers >= 100 && sdks.every((s) => s.connected));
  assert.equal(cp.watchStats.subscribers, 100);
  const ctx = { targetingKey: 'user-1' };
  assert.ok(sdks.every((s) => s.boolean('new-checkout', true, ctx) === false));
  const seen = new Set<number>();
  sdks.forEach((s, i) => s.onChange(() => seen.add(i)));
  const started = Date.now();
  const toggled = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, defaultVariant: 'on' });
  assert.equal(toggled.status, 200);
  await until('every SDK to see the toggle', () => sdks.every((s) => s.boolean('new-checkout', false, ctx)), 5_000);
  const elapsed = Date.now() - started;
  assert.equal(seen.size, 100);
  assert.ok(sdks.every((s) => s.revision >= (toggled.body.revision as number)));
  assert.ok(elapsed < 1_000, `the toggle took ${elapsed} ms to reach 100 SDKs`);
  // the kill switch, the same way
  await call(url, 'POST', '/v1/flags/prod/flags/new-checkout/off');
  await until('every SDK to see the kill switch', () => sdks.every((s) => s.evaluate('new-checkout', true, ctx).reason === 'DISABLED'));
});

test('control plane down at start: the SDK serves the bootstrap file (static, stale), then switches to the control plane when it comes up', async (t) => {
  const dir = tmp(t);
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}`;
  const bootstrap = join(dir, 'flags.flagd.json');
  writeFileSync(bootstrap, JSON.stringify({ flags: { 'new-checkout': { state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'on' } } }));
  const sdk = new FlagClient({ url, environment: 'prod', bootstrap, backoff: FAST });
  t.after(() => sdk.close());
  await sdk.ready();
  assert.equal(sdk.source, 'bootstrap');
  assert.equal(sdk.state, 'static');
  assert.equal(sdk.connected, false);
  assert.equal(sdk.staleness, Number.POSITIVE_INFINITY);
  assert.deepEqual(sdk.evaluate('new-checkout', false), { key: 'new-checkout', value: true, variant: 'on', reason: 'STATIC' });

  // The control plane comes up (on that port) with another value: the SDK moves to it.
  const cp = await startControlPlane({ port, logger: false, healthChecks: false, dataDir: join(dir, 'cp') });
  t.after(() => cp.close());
  await call(cp.url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
  await until('the SDK to sync', () => sdk.source === 'control-plane' && sdk.connected, 8_000);
  assert.equal(sdk.boolean('new-checkout', true), false);
  assert.equal(sdk.staleness, 0);
});

test('a bootstrap file that is not valid is refused where it enters', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-flags-sdk-'));
  try {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "zzz"}}}');
    assert.throws(() => new FlagClient({ url: 'http://127.0.0.1:1', bootstrap: bad }), /option "bootstrap" must be a flagd document or a saved flag state/);
    assert.throws(() => new FlagClient({ url: 'http://127.0.0.1:1', bootstrap: join(dir, 'missing.json') }), /option "bootstrap" must be a readable file/);
    assert.throws(() => new FlagClient({ environment: 'a b' }), /option "environment"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fail static from the last saved state: an SDK started while the control plane is down serves what the last one saw', async (t) => {
  const dir = tmp(t);
  const cacheFile = join(dir, 'cache', 'flags.json');
  const cp = await startControlPlane({ port: 0, logger: false, healthChecks: false, dataDir: join(dir, 'cp') });
  let cpClosed = false;
  t.after(async () => {
    if (!cpClosed) await cp.close();
  });
  await call(cp.url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
  await call(cp.url, 'PUT', '/v1/flags/prod/segments/staff', { key: 'staff', included: ['u-1'] });
  const first = new FlagClient({ url: cp.url, environment: 'prod', cacheFile, backoff: FAST });
  await first.ready();
  await call(cp.url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, rules: [{ conditions: [{ segment: 'staff' }], serve: { variant: 'on' } }] });
  await until('the change to arrive', () => first.boolean('new-checkout', false, { targetingKey: 'u-1' }));
  await until('the state to be saved', () => existsSync(cacheFile) && readFileSync(cacheFile, 'utf8').includes('staff'), 3_000);
  first.close();
  await cp.close();
  cpClosed = true;

  const second = new FlagClient({ url: cp.url, environment: 'prod', cacheFile, backoff: FAST });
  t.after(() => second.close());
  await second.ready();
  assert.equal(second.source, 'cache-file');
  assert.equal(second.state, 'static');
  assert.equal(second.boolean('new-checkout', false, { targetingKey: 'u-1' }), true);
  assert.equal(second.boolean('new-checkout', true, { targetingKey: 'u-2' }), false);
  assert.ok(Number.isFinite(second.staleness) && second.staleness >= 0 && second.staleness < 60_000, `staleness ${second.staleness}`);
});

test('while the stream is down the last state keeps serving and staleness grows; changes made meanwhile arrive on reconnect', async (t) => {
  const dir = tmp(t);
  const cp1 = await startControlPlane({ port: 0, logger: false, healthChecks: false, dataDir: join(dir, 'cp') });
  const port = cp1.port;
  await call(cp1.url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
  const states: string[] = [];
  const sdk = new FlagClient({ url: cp1.url, environment: 'prod', backoff: FAST });
  t.after(() => sdk.close());
  sdk.onStateChange((s) => states.push(s));
  await sdk.ready();
  await until('live', () => sdk.connected);
  await cp1.close();
  await until('the SDK to notice', () => sdk.state === 'stale');
  assert.equal(sdk.boolean('new-checkout', true), false);
  await new Promise((r) => setTimeout(r, 120));
  assert.ok(sdk.staleness >= 100, `staleness ${sdk.staleness}`);

  const cp2 = await startControlPlane({ port, logger: false, healthChecks: false, dataDir: join(dir, 'cp') });
  t.after(() => cp2.close());
  await call(cp2.url, 'POST', '/v1/flags/prod/flags/new-checkout/rollout', { percent: 100 });
  await until('the change made during the outage', () => sdk.boolean('new-checkout', false, { targetingKey: 'u' }), 8_000);
  assert.equal(sdk.state, 'live');
  assert.equal(sdk.staleness, 0);
  assert.deepEqual(states.slice(0, 3), ['live', 'stale', 'live']);
});

test('a resume point that was compacted away: the SDK lists again, serves the changes made meanwhile and reports them', async (t) => {
  const { FakeControlPlane } = await import('./helpers/fake-control-plane.js');
  const { flagKey } = await import('../src/flags/keys.js');
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  cp.put(flagKey('prod', 'a'), JSON.stringify({ ...FLAG, key: 'a' }));
  cp.put(flagKey('prod', 'b'), JSON.stringify({ ...FLAG, key: 'b' }));
  const changes: string[][] = [];
  const sdk = new FlagClient({ url: cp.url, environment: 'prod', backoff: FAST, onChange: (c) => changes.push([...c.flags]) });
  t.after(() => sdk.close());
  await sdk.ready();
  await until('live', () => sdk.connected);
  assert.equal(sdk.boolean('a', true), false);
  await cp.stop();
  // While it was away: a flag switched on, another deleted, then the history compacted.
  cp.put(flagKey('prod', 'a'), JSON.stringify({ ...FLAG, key: 'a', defaultVariant: 'on' }));
  cp.delete([flagKey('prod', 'b')]);
  cp.compact(cp.revision);
  await cp.start();
  await until('the list after compaction', () => sdk.boolean('a', false) && sdk.connected, 8_000);
  assert.equal(sdk.boolean('b', true), true, 'b is gone: the caller default');
  assert.equal(sdk.state, 'live');
  assert.deepEqual(changes.at(-1)?.sort(), ['a', 'b']);
});
