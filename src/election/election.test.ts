/**
 * The election's state machine on a real SQLite store, with a manual clock and manual timers: each
 * transition of the table in election.ts, the fencing token, fenced writes refused by the store and by
 * the local deadline, a half-open connection and a paused process.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ManualTimers } from '../catalog/timers.js';
import { InvalidOptionError, NotLeaderError } from '../errors/index.js';
import { SqliteStore, text, type Store } from '../store/index.js';
import { Election, type ElectionChange, type ElectionOptions } from './index.js';

async function openStore(t: TestContext): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-election-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db') });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

/** Lets the store's promises and the election's reactions run. */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function elect(t: TestContext, store: Store, time: ManualTimers, id: string, extra: Partial<ElectionOptions> = {}): { e: Election; log: ElectionChange[] } {
  const e = new Election({ store, name: 'test', id, ttl: 2, retryDelay: 100, clock: time, timers: time, ...extra });
  const log: ElectionChange[] = [];
  e.onChange((c) => log.push(c));
  t.after(() => e.close());
  return { e, log };
}

test('the first candidate leads with its key\'s createRevision as fencing token; the next takes over at once when it resigns', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  const b = elect(t, store, time, 'b');
  a.e.campaign();
  const la = await a.e.whenLeader();
  b.e.campaign();
  await until(() => b.e.state.value === 'candidate' && (b.e.state as { token?: number }).token !== undefined, 'b to hold a key');
  await settle();
  assert.equal(b.e.state.value, 'candidate');
  const key = await store.get(la.key);
  assert.equal(la.token, key!.createRevision);
  assert.equal(text(key!.value), 'a');
  assert.deepEqual(await a.e.leader(), { id: 'a', token: la.token, key: la.key, lease: la.lease });

  await a.e.resign();
  assert.equal(a.e.state.value, 'resigned');
  assert.ok(la.signal.aborted, 'the leadership signal aborts on resign');
  assert.equal(await store.get(la.key), undefined, 'resigning deletes the key (revokes the lease)');
  const lb = await b.e.whenLeader();
  assert.ok(lb.token > la.token, 'the token grows with every leadership');
  assert.deepEqual(
    a.log.map((c) => c.to),
    ['candidate', 'candidate', 'leader', 'resigned'],
  );
  // A resigned candidate may campaign again; it queues behind b.
  a.e.campaign();
  await until(() => (a.e.state as { token?: number }).token !== undefined, 'a to hold a key again');
  await settle();
  assert.equal(a.e.state.value, 'candidate');
  assert.equal((await a.e.leader())!.id, 'b');
});

test('renewals keep the leader leading past its TTL; the local deadline moves with each answer', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  a.e.campaign();
  const l = await a.e.whenLeader();
  for (let i = 0; i < 12; i++) {
    time.advance(400); // 4.8 s in all, renewals every 667 ms
    await settle();
  }
  assert.equal(a.e.state.value, 'leader');
  assert.ok(l.valid);
  assert.equal((await store.leaseTimeToLive(l.lease))!.grantedTtl, 2);
});

test('lease lost on the server: the leader is deposed, its fenced writes are refused, and it campaigns again', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  const b = elect(t, store, time, 'b');
  a.e.campaign();
  const la = await a.e.whenLeader();
  b.e.campaign();
  await until(() => (b.e.state as { token?: number }).token !== undefined, 'b to hold a key');

  // The server lets a's lease expire (as after a long partition): the key goes at once.
  await store.revokeLease(la.lease);
  const lb = await b.e.whenLeader();
  await until(() => a.e.state.value !== 'leader', 'a to notice');
  assert.equal(a.e.state.value, 'deposed');
  assert.ok(la.signal.aborted);
  assert.equal(la.valid, false);
  await assert.rejects(la.txn({ success: [{ type: 'put', key: '/job', value: 'from a' }] }), NotLeaderError);
  assert.equal(await store.get('/job'), undefined, 'the deposed leader wrote nothing');
  const ok = await lb.txn({ success: [{ type: 'put', key: '/job', value: 'from b' }] });
  assert.ok(ok.succeeded);

  time.advance(100); // retryDelay: a campaigns again, behind b
  await until(() => a.e.state.value === 'candidate' && (a.e.state as { token?: number }).token !== undefined, 'a to campaign again');
  assert.ok(a.log.some((c) => c.to === 'deposed' && typeof c.reason === 'string'));
});

test('a candidate whose lease is gone is deposed at its next renewal, then campaigns again with a new key', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  const b = elect(t, store, time, 'b');
  a.e.campaign();
  await a.e.whenLeader();
  b.e.campaign();
  await until(() => (b.e.state as { token?: number }).token !== undefined, 'b to hold a key');
  const first = b.e.state as { lease: string; token: number };
  await store.revokeLease(first.lease);
  time.advance(700); // b's renewal (every ttl/3) finds the lease gone
  await until(() => b.log.some((c) => c.to === 'deposed'), 'b to be deposed');
  time.advance(100); // retryDelay
  await until(() => b.e.state.value === 'candidate' && (b.e.state as { token?: number }).token !== undefined && (b.e.state as { token: number }).token > first.token, 'b to campaign again');
  assert.equal(a.e.state.value, 'leader', 'the leader is untouched');
  assert.deepEqual(
    b.log.map((c) => c.to),
    ['candidate', 'candidate', 'deposed', 'candidate', 'candidate'],
  );
});

test('the store refuses a fenced write once the leader key is gone, even before the leader noticed', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  a.e.campaign();
  const l = await a.e.whenLeader();
  // Delete and write in the same tick: the election's watch has not delivered the deletion yet.
  const deleted = store.delete(l.key);
  const write = l.txn({ success: [{ type: 'put', key: '/late', value: 'x' }] });
  await deleted;
  await assert.rejects(write, (err: unknown) => err instanceof NotLeaderError && /refused/.test(err.message));
  assert.equal(await store.get('/late'), undefined);
  assert.equal(a.e.state.value, 'deposed', 'a refused fenced write steps down');
});

test('a fenced transaction reports the caller\'s own failed compares as succeeded: false, and takes no failure branch', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  a.e.campaign();
  const l = await a.e.whenLeader();
  const r = await l.txn({ compare: [{ key: '/x', target: 'version', cmp: '>', value: 0 }], success: [{ type: 'put', key: '/y', value: '1' }] });
  assert.equal(r.succeeded, false);
  assert.equal(await store.get('/y'), undefined);
  assert.equal(a.e.state.value, 'leader');
  await assert.rejects(
    l.txn({ success: [], failure: [{ type: 'put', key: '/z', value: '1' }] } as never),
    InvalidOptionError,
  );
  assert.equal(l.fence().length, 2);
});

test('half-open connection: renewals never answer; the leader steps down before the TTL could end on the server', async (t) => {
  const real = await openStore(t);
  let hang = false;
  let txns = 0;
  // The real store, except that while `hang` is set keep-alives get no answer (a half-open TCP connection).
  const store: Store = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'keepAlive') {
        return (lease: string, opts: { signal?: AbortSignal } = {}) =>
          hang ? new Promise((_, reject) => opts.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true })) : target.keepAlive(lease, opts);
      }
      if (prop === 'txn') {
        return (...args: Parameters<Store['txn']>) => {
          txns++;
          return target.txn(...args);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  a.e.campaign();
  const l = await a.e.whenLeader();
  const grantedAt = time.now();
  hang = true;
  let deposedAt: number | undefined;
  a.e.onChange((c) => {
    if (c.to === 'deposed') deposedAt = time.now();
  });
  for (let i = 0; i < 40 && deposedAt === undefined; i++) {
    time.advance(50);
    await settle(2);
  }
  assert.ok(deposedAt !== undefined, 'stepped down');
  assert.ok(deposedAt - grantedAt < 2_000, `stepped down after ${deposedAt - grantedAt} ms, before the 2 s TTL`);
  assert.ok(deposedAt - grantedAt >= 1_500, `but not much before: ${deposedAt - grantedAt} ms`);
  const before = txns;
  await assert.rejects(l.txn({ success: [{ type: 'put', key: '/late', value: 'x' }] }), NotLeaderError);
  assert.equal(txns, before, 'refused locally: nothing was even sent');
});

test('a paused process (its timers have not fired) checks the local deadline before every fenced action', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  let skew = 0;
  // The clock jumps as after SIGSTOP/SIGCONT, while no timer has run yet.
  const clock = { now: () => time.now() + skew };
  const a = elect(t, store, time, 'a', { clock });
  a.e.campaign();
  const l = await a.e.whenLeader();
  assert.ok(l.valid);
  skew = 2_000;
  assert.equal(l.valid, false);
  await assert.rejects(l.txn({ success: [{ type: 'put', key: '/late', value: 'x' }] }), NotLeaderError);
  assert.throws(() => l.fence(), NotLeaderError);
  assert.equal(a.e.state.value, 'deposed');
  assert.equal(a.e.isLeader, false);
  assert.equal(await store.get('/late'), undefined);
});

test('close() revokes the lease, rejects whenLeader, and is final; an aborted signal closes too', async (t) => {
  const store = await openStore(t);
  const time = new ManualTimers();
  const a = elect(t, store, time, 'a');
  const b = elect(t, store, time, 'b');
  a.e.campaign();
  const la = await a.e.whenLeader();
  b.e.campaign();
  const waiting = b.e.whenLeader().then(
    () => new Error('resolved'),
    (err: unknown) => err,
  );
  await until(() => (b.e.state as { token?: number }).token !== undefined, 'b to hold a key');
  const bKey = (await store.range(b.e.prefix)).kvs.find((kv) => text(kv.value) === 'b')!;
  await b.e.close();
  assert.match(String(await waiting), /closed/);
  assert.equal(b.e.state.value, 'closed');
  assert.equal(await store.get(bKey.key), undefined);
  b.e.campaign(); // does nothing once closed
  assert.equal(b.e.state.value, 'closed');

  const ac = new AbortController();
  const c = elect(t, store, time, 'c', { signal: ac.signal });
  c.e.campaign();
  await until(() => (c.e.state as { token?: number }).token !== undefined, 'c to hold a key');
  ac.abort();
  await until(() => c.e.state.value === 'closed', 'c to close');
  assert.equal(a.e.leadership, la);
  await a.e.close();
  assert.equal(await store.get(la.key), undefined);
  assert.equal(await a.e.leader(), undefined);
});

test('options are checked where they enter', async (t) => {
  const store = await openStore(t);
  assert.throws(() => new Election({ store, ttl: 0 }), InvalidOptionError);
  assert.throws(() => new Election({ store, ttl: 1.5 }), InvalidOptionError);
  assert.throws(() => new Election({ store, name: 'a/b' }), InvalidOptionError);
  assert.throws(() => new Election({ store, id: '' }), InvalidOptionError);
  assert.throws(() => new Election({ store: {} as Store }), InvalidOptionError);
  assert.throws(() => new Election({ store, retryDelay: -1 }), InvalidOptionError);
});
