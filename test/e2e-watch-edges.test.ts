/**
 * End to end against the real control plane (in this process, on loopback), the two ways a watch
 * stream ends that a client must handle:
 *
 * - its history was compacted while the client was away: the discovery lists again and reports the
 *   difference;
 * - the client read too slowly and the server cut it off (`SPOF_ERR_WATCH_SLOW`): the watch resumes
 *   from its last revision and misses nothing.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlPlaneClient, type DiscoveryChange, type WatchMessage } from '../src/client/index.js';
import { constantBackoff } from '../src/resilience/index.js';
import { startControlPlane } from '../src/server/index.js';
import { SqliteStore } from '../src/store/index.js';
import { tempDir, until } from './helpers/procs.js';

const instanceJson = (id: string, port: number): string =>
  JSON.stringify({ service: 'svc', id, address: '127.0.0.1', port, tags: [], metadata: {}, status: 'passing' });

test('a discovery whose watch revision was compacted while the control plane was away lists again', { timeout: 30_000 }, async (t) => {
  const store = await SqliteStore.open({ path: join(tempDir(t, 'e2e-compact'), 'store.db'), compaction: false });
  t.after(() => store.close());
  const first = await startControlPlane({ store, port: 0, logger: false, healthChecks: false });
  const client = new ControlPlaneClient({ url: first.url });
  t.after(() => client.close());
  await store.put('/spofless/catalog/instances/svc/a', instanceJson('a', 1001));
  const changes: DiscoveryChange[] = [];
  const svc = await client.discover('svc', { backoff: constantBackoff(50), onChange: (c) => changes.push(c) });
  await until(() => svc.connected, 5_000, 'the watch to open');
  await first.close();
  await until(() => !svc.connected, 5_000, 'the discovery to notice');

  // While it is away: a instance leaves, b arrives, other writes pile up, and history is compacted.
  await store.delete('/spofless/catalog/instances/svc/a');
  await store.put('/spofless/catalog/instances/svc/b', instanceJson('b', 1002));
  for (let i = 0; i < 10; i++) await store.put(`/other/${i}`, 'x');
  const { revision } = await store.put('/other/last', 'x');
  await store.compact(revision);
  assert.deepEqual(svc.instances.map((i) => i.id), ['a'], 'fail static meanwhile');

  const second = await startControlPlane({ store, port: first.port, logger: false, healthChecks: false });
  t.after(() => second.close());
  await until(() => svc.connected && svc.instances.length === 1 && svc.instances[0]!.id === 'b', 10_000, 'the re-list');
  assert.equal(svc.revision >= revision, true);
  assert.deepEqual([changes.at(-1)!.added.map((i) => i.id), changes.at(-1)!.removed.map((i) => i.id)], [['b'], ['a']]);
  // And it follows changes again after the re-list.
  await store.put('/spofless/catalog/instances/svc/c', instanceJson('c', 1003));
  await until(() => svc.instances.length === 2, 5_000, 'c to arrive');
});

test('a watch cut off as a slow subscriber resumes from its last revision with nothing missed', { timeout: 30_000 }, async (t) => {
  const cp = await startControlPlane({ port: 0, dataDir: tempDir(t, 'e2e-slow'), logger: false, healthChecks: false, watch: { maxBufferedBytes: 16 * 1024 } });
  t.after(() => cp.close());
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const watch = client.watch('/slow/', { startRevision: 1, backoff: constantBackoff(20) });
  const it = watch[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal((first.value as WatchMessage).type, 'connected');

  // The consumer stops reading while ~8 MB of changes are written: kernel buffers fill, then the server's.
  const value = 'v'.repeat(64 * 1024);
  const N = 120;
  const t0 = Date.now();
  for (let i = 0; i < N; i++) await cp.store.put(`/slow/${String(i).padStart(4, '0')}`, value);
  const t1 = Date.now();
  let cuts = 0;

  const revisions: number[] = [];
  let cut: unknown;
  while (revisions.length < N) {
    const next = await it.next();
    assert.equal(next.done, false);
    const msg = next.value;
    if (msg.type === 'events') for (const e of msg.events) revisions.push(e.kv.modRevision);
    if (msg.type === 'disconnected') {
      cut ??= msg.error;
      cuts++;
    }
  }
  t.diagnostic(`writes ${t1 - t0} ms, reads ${Date.now() - t1} ms, ${cuts} cut(s)`);
  watch.close();
  t.diagnostic(`cut off with: ${String((cut as Error | undefined)?.message ?? cut)}`);
  assert.ok(cut !== undefined, 'the server cut the slow subscriber off');
  assert.equal((cut as { code?: string }).code, 'SPOF_ERR_WATCH_SLOW');
  assert.deepEqual(revisions, Array.from({ length: N }, (_, i) => i + 1));
});
