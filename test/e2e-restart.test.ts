/**
 * End to end: restart the control plane under write load. Writers put distinct keys as fast as they
 * can through the SDK client while a watcher follows the prefix from revision 1; the control plane is
 * SIGKILLed mid-load and started again on the same port and data directory.
 *
 * Afterwards: every acknowledged write is there with its value; the watcher saw every key that exists
 * exactly once, in strictly increasing revisions, and the revisions it saw are exactly the revisions of
 * the keys that exist: 1, 2, 3, ... with no gap and no duplicate, across the restart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlaneClient, type WatchMessage } from '../src/client/index.js';
import { constantBackoff } from '../src/resilience/index.js';
import { controlPlane, tempDir, until } from './helpers/procs.js';

test('SIGKILL the control plane under write load: no acknowledged write lost, the watch resumes without gap or duplicate', { timeout: 60_000 }, async (t) => {
  const dataDir = tempDir(t, 'e2e-restart');
  let cp = await controlPlane(t, { dataDir });
  const writer = new ControlPlaneClient({ url: cp.url, timeout: 2_000 });
  const watcherClient = new ControlPlaneClient({ url: cp.url });
  t.after(() => {
    writer.close();
    watcherClient.close();
  });

  const seen: Array<{ revision: number; key: string; value: string }> = [];
  let reconnects = 0;
  const watch = watcherClient.watch('/load/', { startRevision: 1, backoff: constantBackoff(50) });
  const watching = (async () => {
    for await (const msg of watch as AsyncIterable<WatchMessage>) {
      if (msg.type === 'connected') reconnects++;
      if (msg.type === 'compacted') throw new Error(`unexpected compaction: ${JSON.stringify(msg)}`);
      if (msg.type === 'events') for (const e of msg.events) if (e.type === 'put') seen.push({ revision: e.kv.modRevision, key: e.kv.key, value: e.kv.value });
    }
  })();

  const acked = new Map<string, { value: string; revision: number }>();
  let failed = 0;
  let stop = false;
  let n = 0;
  const writers = Array.from({ length: 8 }, async (_, w) => {
    while (!stop) {
      const key = `/load/${w}/${String(n++).padStart(6, '0')}`;
      const value = `v-${key}`;
      try {
        const { revision } = await writer.put(key, value);
        acked.set(key, { value, revision });
      } catch {
        failed++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });

  await until(() => acked.size >= 200, 10_000, '200 acknowledged writes');
  const ackedBeforeKill = acked.size;
  cp.child.kill('SIGKILL');
  await cp.child.exited;
  await new Promise((r) => setTimeout(r, 300));
  cp = await controlPlane(t, { dataDir, port: cp.port });
  const ackedAtRestart = acked.size;
  await until(() => acked.size >= ackedAtRestart + 200, 10_000, '200 more acknowledged writes after the restart');
  stop = true;
  await Promise.all(writers);

  // Everything that exists now, at one revision.
  const all = await writer.range('/load/');
  assert.equal(all.more, false);
  await until(() => seen.length >= all.kvs.length, 10_000, `the watcher to catch up to ${all.kvs.length} keys (has ${seen.length})`);
  watch.close();
  await watching;
  t.diagnostic(`${acked.size} writes acknowledged (${ackedBeforeKill} before the kill), ${failed} failed while down; ${all.kvs.length} keys stored; watcher saw ${seen.length} puts over ${reconnects} connections`);

  // Every acknowledged write is there, with its value and revision.
  const stored = new Map(all.kvs.map((kv) => [kv.key, kv]));
  for (const [key, { value, revision }] of acked) {
    const kv = stored.get(key);
    assert.ok(kv !== undefined, `acknowledged write ${key} (revision ${revision}) lost`);
    assert.equal(kv.value, value);
    assert.equal(kv.modRevision, revision);
  }
  // The watcher: strictly increasing revisions, no duplicate key, and exactly the stored set.
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.revision > seen[i - 1]!.revision, `revision ${seen[i]!.revision} after ${seen[i - 1]!.revision}`);
  assert.equal(new Set(seen.map((s) => s.key)).size, seen.length, 'a key delivered twice');
  assert.deepEqual(
    seen.map((s) => s.revision),
    all.kvs.map((kv) => kv.modRevision).sort((a, b) => a - b),
    'the watched revisions are exactly the stored ones',
  );
  // Nothing else writes to this store, so the sequence is the revisions 1, 2, 3, ... without a hole.
  assert.deepEqual(
    seen.map((s) => s.revision),
    Array.from({ length: seen.length }, (_, i) => i + 1),
    'a continuous revision sequence',
  );
  assert.ok(reconnects >= 2, 'the watch reconnected');
});
