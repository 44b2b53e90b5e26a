/**
 * The SDK's on-disk instance list (`discover(service, { cacheDir })`), with real processes on loopback:
 * a control plane started by the CLI and a replica of the sample service registered through the SDK.
 * The control plane is killed with SIGKILL, and a new SDK process starts while it is down: it serves the saved list (stale, with the time it was last known current) and
 * calls reach the replica. When the control plane is back the list is listed again and is current.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlPlaneClient } from '../src/client/index.js';
import { constantBackoff } from '../src/resilience/index.js';
import { Child, controlPlane, sampleService, tempDir, until } from './helpers/procs.js';

const FIXTURE = 'test/fixtures/discover-cached.ts';

test('an SDK started while the control plane is down serves the list saved on disk, says it is stale, and lists again when it is back', { timeout: 60_000 }, async (t) => {
  const dataDir = tempDir(t, 'e2e-discovery-cache');
  const cacheDir = tempDir(t, 'e2e-discovery-cache-files');
  let cp = await controlPlane(t, { dataDir });
  const replica = await sampleService(t, { SPOFLESS_URL: cp.url, SERVICE: 'sample', ID: 'r1', TTL: '30', DRAIN_DELAY: '0', GRACE: '2000' });

  // First SDK: lists, and saves the list (debounced, atomically).
  const first = new ControlPlaneClient({ url: cp.url });
  t.after(() => first.close());
  const d1 = await first.discover('sample', { cacheDir });
  assert.equal(d1.source, 'control-plane');
  assert.equal(d1.stale, false);
  const file = join(cacheDir, 'discovery-sample.json');
  await until(() => existsSync(file), 5_000, 'the cache file');
  assert.deepEqual(
    readdirSync(cacheDir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary file left behind',
  );
  const syncedBefore = Date.now();
  first.close();

  // Without a cache, an SDK cannot start while the control plane is down; with one, it can.
  cp.child.kill('SIGKILL');
  await cp.child.exited;
  const second = new ControlPlaneClient({ url: cp.url, timeout: 1_000 });
  t.after(() => second.close());
  await assert.rejects(second.discover('sample', { backoff: constantBackoff(100) }));
  // A new SDK process (nothing in memory) started while the control plane is down.
  const sdk = new Child([FIXTURE], { SPOFLESS_URL: cp.url, SERVICE: 'sample', CACHE_DIR: cacheDir });
  t.after(() => sdk.proc.kill('SIGKILL'));
  const started = JSON.parse((await sdk.line(/^state (.*)$/, 20_000))[1]!) as { source: string; stale: boolean; connected: boolean; lastSyncedAt: number; ids: string[] };
  assert.equal(started.source, 'cache-file');
  assert.equal(started.stale, true);
  assert.equal(started.connected, false);
  assert.deepEqual(started.ids, ['r1']);
  assert.ok(started.lastSyncedAt > 0 && started.lastSyncedAt <= syncedBefore, `lastSyncedAt ${started.lastSyncedAt}`);
  // Calls go to the replica from the saved list: the data plane does not need the control plane.
  const answered = await sdk.line(/^call (.*)$/);
  assert.match(answered[1]!, /^200 /);

  // The control plane comes back on the same port and data: the SDK lists again and is current.
  cp = await controlPlane(t, { dataDir, port: cp.port });
  const current = JSON.parse((await sdk.line(/^current (.*)$/, 20_000))[1]!) as typeof started;
  assert.equal(current.source, 'control-plane');
  assert.equal(current.stale, false);
  assert.deepEqual(current.ids, ['r1']);
  assert.equal((await sdk.exited).code, 0);
  replica.child.kill('SIGKILL');
});

test('a cache file that is unreadable, for another service, or malformed is not served; bad options are refused', async (t) => {
  const dir = tempDir(t, 'discovery-cache-bad');
  // Nothing listens on this port: the control plane is unreachable.
  const client = new ControlPlaneClient({ url: 'http://127.0.0.1:9', timeout: 500 });
  t.after(() => client.close());
  const file = join(dir, 'x.json');
  for (const content of ['{not json', JSON.stringify({ format: 'spofless-discovery/1', service: 'other', revision: 1, savedAt: 1, instances: [] }), JSON.stringify({ format: 'spofless-discovery/1', service: 'api', revision: 1, savedAt: 1, instances: [{ id: 1 }] })]) {
    writeFileSync(file, content);
    await assert.rejects(client.discover('api', { cacheFile: file }), (err: Error) => !/cache/i.test(err.message));
  }
  writeFileSync(file, JSON.stringify({ format: 'spofless-discovery/1', service: 'api', revision: 3, savedAt: 1_000, instances: [{ id: 'a', address: '127.0.0.1', port: 1 }] }));
  const d = await client.discover('api', { cacheFile: file });
  assert.equal(d.source, 'cache-file');
  assert.equal(d.lastSyncedAt, 1_000);
  assert.equal(d.instances[0]!.status, 'passing');
  d.close();
  await assert.rejects(client.discover('api', { cacheFile: file, cacheDir: dir }), /not both cacheFile and cacheDir/);
  await assert.rejects(client.discover('api', { cacheDir: '' }), /cacheDir/);
});
