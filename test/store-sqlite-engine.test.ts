// SQLite-engine specifics: group commit, durability across SIGKILL, leases and watches across restarts,
// automatic compaction, slow watchers, file locking. The engine-neutral contract is in store-sqlite.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ErrorCode, isSpoflessError } from '../src/errors/index.js';
import { SqliteStore, type SqliteStoreOptions } from '../src/store/sqlite.js';
import { text } from '../src/store/bytes.js';
import type { WatchEvent } from '../src/store/types.js';

class TestClock {
  constructor(public t = 1_000_000) {}
  now(): number {
    return this.t;
  }
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: { after(fn: () => Promise<void>): void }, options: SqliteStoreOptions): Promise<SqliteStore> {
  const store = await SqliteStore.open(options);
  t.after(() => store.close());
  return store;
}

test('group commit: concurrent writes share one transaction, each with its own revision', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  const before = store.stats;
  const results = await Promise.all(Array.from({ length: 64 }, (_, i) => store.put(`/g/${i}`, `${i}`)));
  const after = store.stats;
  assert.equal(after.commits - before.commits, 1, '64 puts arriving together are one commit (one fsync)');
  assert.equal(after.writes - before.writes, 64);
  const revisions = results.map((r) => r.revision).sort((a, b) => a - b);
  for (let i = 1; i < revisions.length; i++) assert.equal(revisions[i], revisions[i - 1]! + 1, 'one revision each, no gap');
});

test('group commit: a failing write in the batch fails alone', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  await store.put('/cas', 'v1');
  const commits = store.stats.commits;
  const outcomes = await Promise.allSettled([
    store.put('/ok/1', 'a'),
    store.put('/bad', 'x', { lease: '999999' }),
    store.txn({ compare: [{ key: '/cas', target: 'value', cmp: '=', value: 'nope' }], success: [{ type: 'put', key: '/cas', value: 'v2' }] }),
    store.txn({ compare: [{ key: '/cas', target: 'value', cmp: '=', value: 'v1' }], success: [{ type: 'put', key: '/cas', value: 'v3' }] }),
    store.put('/ok/2', 'b'),
  ]);
  assert.equal(store.stats.commits - commits, 1);
  assert.equal(outcomes[0].status, 'fulfilled');
  assert.ok(outcomes[1].status === 'rejected' && isSpoflessError(outcomes[1].reason, ErrorCode.StoreLeaseNotFound));
  assert.ok(outcomes[2].status === 'fulfilled' && !outcomes[2].value.succeeded);
  assert.ok(outcomes[3].status === 'fulfilled' && outcomes[3].value.succeeded);
  assert.ok(outcomes[4].status === 'fulfilled');
  const revs = [outcomes[0], outcomes[3], outcomes[4]].map((o) => (o.status === 'fulfilled' ? o.value.revision : 0));
  assert.deepEqual(revs, [revs[0]!, revs[0]! + 1, revs[0]! + 2], 'failed writes take no revision');
  assert.equal(await store.get('/bad'), undefined);
  assert.equal(text((await store.get('/cas'))!.value), 'v3');
});

test('group commit: throughput at 1 and 64 concurrent callers (durable puts/s)', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  async function run(callers: number, ms: number): Promise<{ perSecond: number; perCommit: number }> {
    const c0 = store.stats.commits;
    let n = 0;
    const end = performance.now() + ms;
    await Promise.all(
      Array.from({ length: callers }, async (_, c) => {
        for (let i = 0; performance.now() < end; i++) {
          await store.put(`/tp/${c}/${i % 100}`, 'x'.repeat(100));
          n++;
        }
      }),
    );
    return { perSecond: Math.round((n * 1000) / ms), perCommit: n / (store.stats.commits - c0) };
  }
  const one = await run(1, 700);
  const many = await run(64, 700);
  t.diagnostic(`1 caller: ${one.perSecond} puts/s; 64 callers: ${many.perSecond} puts/s, ${many.perCommit.toFixed(1)} puts per commit`);
  assert.ok(many.perCommit > 16, `64 callers are batched (${many.perCommit} puts per commit)`);
  assert.ok(many.perSecond > one.perSecond * 2, 'batching multiplies throughput');
});

test('durability: every acknowledged put survives SIGKILL of the writing process', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's.db');
  const writer = fileURLToPath(new URL('./store-sqlite-writer.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', writer, path, '16'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const acked = new Map<string, number>();
  let buffered = '';
  let ready = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!; // a partial last line is not an acknowledgement
    for (const line of lines) {
      if (line === 'ready') ready = true;
      else {
        const [key, rev] = line.split(' ');
        acked.set(key!, Number(rev));
      }
    }
  });
  const deadline = Date.now() + 15_000;
  while (acked.size < 3000 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  assert.ok(ready, 'the writer started');
  child.kill('SIGKILL');
  const [code, signal] = (await exited) as [number | null, string | null];
  assert.equal(signal, 'SIGKILL', `the writer was killed (exit code ${code})`);
  assert.ok(acked.size >= 1000, `enough acknowledged writes to mean something (${acked.size})`);

  const store = await openStore(t, { path });
  let missing = 0;
  for (const [key, rev] of acked) {
    const kv = await store.get(key);
    if (kv === undefined || kv.modRevision !== rev || text(kv.value) !== `value of ${key}`) missing++;
  }
  assert.equal(missing, 0, `all ${acked.size} acknowledged puts are there after SIGKILL`);
  const maxAcked = Math.max(...acked.values());
  assert.ok(store.revision >= maxAcked);
  // The revision sequence on disk has no hole: each revision up to the last one has its event.
  const watch = store.watch('/crash/', { prefix: true, startRevision: 1 });
  let expect = 1;
  for await (const r of watch) {
    for (const e of r.events) assert.equal(e.kv.modRevision, expect++);
    if (r.revision >= store.revision) break;
  }
  assert.equal(expect, store.revision + 1);
});

test('a write aborted while queued is not applied; one committed before the abort stands', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  const ac = new AbortController();
  const queued = store.put('/abort/a', 'v', { signal: ac.signal });
  ac.abort(); // same turn: the group commit has not run yet
  await assert.rejects(queued, (e) => isSpoflessError(e, ErrorCode.Aborted) && /not applied/.test(e.message));
  assert.equal(await store.get('/abort/a'), undefined);
  const late = new AbortController();
  const done = await store.put('/abort/b', 'v', { signal: late.signal });
  late.abort();
  assert.equal((await store.get('/abort/b'))?.modRevision, done.revision);
});

test('durability settings: WAL journal on disk, and a second opener is locked out', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's.db');
  const store = await openStore(t, { path });
  await store.put('/x', 'y');
  await assert.rejects(SqliteStore.open({ path }), (err) => isSpoflessError(err, ErrorCode.InvalidOption) && /locked/.test(err.message));
  await store.close();
  const raw = new Database(path, { readonly: true });
  try {
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  } finally {
    raw.close();
  }
});

test('checkpoints: a new database has 2 KiB pages; the WAL is checkpointed once writes pause', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's.db');
  const store = await openStore(t, { path });
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`/k/${i}`, 'v'.repeat(128))));
  for (let i = 0; i < 20; i++) await store.put('/k/0', `w${i}`);
  const before = store.stats.idleCheckpoints;
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(store.stats.idleCheckpoints, before + 1, 'one checkpoint after the pause, and none while idle after it');
  await store.close();
  const raw = new Database(path, { readonly: true });
  try {
    assert.equal(raw.pragma('page_size', { simple: true }), 2048);
    assert.equal((raw.prepare('SELECT value FROM kv WHERE key = ?').get(Buffer.from('/k/0')) as { value: Buffer }).value.toString(), 'w19');
  } finally {
    raw.close();
  }
});

test('leases: expiry with an injected clock; after a restart live leases get a fresh TTL', async (t) => {
  const path = join(tempDir(t), 's.db');
  const clock = new TestClock();
  let store = await SqliteStore.open({ path, clock });
  try {
    const short = await store.grantLease(5);
    const long = await store.grantLease(10);
    await store.put('/l/short', 's', { lease: short.id });
    await store.put('/l/long', 'l', { lease: long.id });
    clock.t += 4_000;
    await store.expireLeases();
    assert.ok(await store.get('/l/short'), 'not yet');
    clock.t += 1_000;
    assert.equal(await store.leaseTimeToLive(short.id), undefined, 'expired means gone, even before the revoke is committed');
    await store.expireLeases();
    assert.equal(await store.get('/l/short'), undefined);
    clock.t += 4_000;
    assert.equal((await store.leaseTimeToLive(long.id))!.ttl, 1);

    await store.close();
    store = await SqliteStore.open({ path, clock });
    assert.equal((await store.leaseTimeToLive(long.id))!.ttl, 10, 'fresh TTL after restart');
    assert.equal(await store.leaseTimeToLive(short.id), undefined, 'an expired lease stays gone');
    clock.t += 9_000;
    await store.expireLeases();
    assert.ok(await store.get('/l/long'));
    await store.keepAlive(long.id);
    clock.t += 9_999;
    await store.expireLeases();
    assert.ok(await store.get('/l/long'), 'kept alive');
    clock.t += 1;
    await store.expireLeases();
    assert.equal(await store.get('/l/long'), undefined);
  } finally {
    await store.close();
  }
});

test('leases: one store timer revokes many leases with real time', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  const leases = await Promise.all(Array.from({ length: 200 }, () => store.grantLease(1)));
  await Promise.all(leases.map((l, i) => store.put(`/many/${i}`, 'x', { lease: l.id })));
  const start = Date.now();
  while ((await store.range('/many/', { limit: 1 })).kvs.length > 0) {
    assert.ok(Date.now() - start < 3000, 'all expired within TTL + 2 s');
    await new Promise((r) => setTimeout(r, 50));
  }
});

test('watch: resumes across a restart under write load with a continuous revision sequence', async (t) => {
  const path = join(tempDir(t), 's.db');
  let store = await SqliteStore.open({ path });
  try {
    const seen: WatchEvent[] = [];
    let last = 0;
    for (let round = 0; round < 3; round++) {
      const watch = store.watch('/r/', { prefix: true, startRevision: last + 1 });
      const writes = Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`/r/${round}/${i}`, 'v')));
      const target = (await writes).reduce((m, r) => Math.max(m, r.revision), 0);
      for await (const r of watch) {
        seen.push(...r.events);
        last = r.revision;
        if (last >= target) break;
      }
      await store.close();
      store = await SqliteStore.open({ path });
    }
    assert.equal(seen.length, 150);
    seen.forEach((e, i) => assert.equal(e.kv.modRevision, i + 1, 'no gap, no duplicate'));
  } finally {
    await store.close();
  }
});

test('watch: a slow consumer is not cut off; its backlog is replayed from disk', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db'), maxWatchBuffer: 8 });
  const watch = store.watch('/slow/', { prefix: true, startRevision: 1 });
  for (let i = 0; i < 30; i++) await Promise.all(Array.from({ length: 10 }, (_, j) => store.put(`/slow/${i}/${j}`, 'v')));
  const revs: number[] = [];
  for await (const r of watch) {
    revs.push(...r.events.map((e) => e.kv.modRevision));
    if (r.revision >= store.revision) break;
  }
  assert.deepEqual(revs, Array.from({ length: 300 }, (_, i) => i + 1));
});

test('watch: a replay holds whole revisions, even one larger than a replay page', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db') });
  for (let i = 0; i < 30; i++) {
    await store.txn({ success: Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: `/big/${i}/${j}`, value: 'v' })) });
  }
  const del = await store.deletePrefix('/big/');
  assert.equal(del.deleted, 3000);
  const watch = store.watch('/big/', { prefix: true, startRevision: 1 });
  let count = 0;
  for await (const r of watch) {
    const byRev = new Map<number, number>();
    for (const e of r.events) byRev.set(e.kv.modRevision, (byRev.get(e.kv.modRevision) ?? 0) + 1);
    for (const [rev, n] of byRev) assert.equal(n, rev === del.revision ? 3000 : 100, `revision ${rev} whole`);
    count += r.events.length;
    if (r.revision >= del.revision) break;
  }
  assert.equal(count, 6000);
});

test('compaction: keep the last N revisions', async (t) => {
  const store = await openStore(t, { path: join(tempDir(t), 's.db'), compaction: { keepRevisions: 20 } });
  for (let i = 0; i < 100; i++) await store.put(`/c/${i % 7}`, `${i}`);
  await store.put('/c/flush', 'x'); // the compaction queued by the last write commits with this one
  assert.ok(store.compactRevision >= 101 - 20 - 2 && store.compactRevision <= 101 - 20 + 1, `compact revision ${store.compactRevision}`);
  await assert.rejects(store.range('/c/', { revision: 50 }), (e) => isSpoflessError(e, ErrorCode.StoreCompacted));
  const r = await store.range('/c/', { revision: 101 - 19 });
  assert.equal(r.kvs.length, 7);
});

test('compaction: keep the last T minutes', async (t) => {
  const wall = new TestClock(Date.now());
  const store = await openStore(t, { path: join(tempDir(t), 's.db'), compaction: { keepMinutes: 1 }, wallClock: wall });
  for (let i = 0; i < 10; i++) await store.put('/t/a', `${i}`);
  wall.t += 59_000;
  const keep = await store.put('/t/a', 'recent');
  wall.t += 7_000; // past the minute for the first ten, and past the check interval (a tenth of the window)
  await store.put('/t/a', 'now');
  await store.put('/t/a', 'flush');
  assert.equal(store.compactRevision, keep.revision, 'revisions older than a minute are gone, newer ones kept');
});

test('options are checked when the store opens', async () => {
  for (const bad of [{ path: '' }, { path: '/nonexistent-dir/x/store.db' }, { path: 'x', compaction: { keepRevisions: 0 } }, { path: 'x', compaction: {} }, { path: 'x', maxWatchBuffer: -1 }]) {
    await assert.rejects(SqliteStore.open(bad), (e) => isSpoflessError(e, ErrorCode.InvalidOption));
  }
});
