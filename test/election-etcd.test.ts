/**
 * The election on a real etcd (one member), real clocks: the leader's key has the lowest createRevision
 * and its fencing token is that revision; a candidate takes over when the leader's lease ends on the
 * server (the process "died": renewals stopped) within the TTL plus etcd's expiry tick; a late write
 * carrying the dead leader's fence is refused by etcd itself; resign hands over at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Election } from '../src/election/index.js';
import { NotLeaderError } from '../src/errors/index.js';
import { openEtcdStore, type Store } from '../src/store/index.js';
import { startEtcd } from './support/etcd.js';

test('election on etcd: takeover after the leader stops renewing, the stale leader fenced by etcd, resign hands over at once', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcd({ members: 1 });
  t.after(() => etcd.stop());
  const store = await openEtcdStore({ endpoints: etcd.endpoints });
  t.after(() => store.close());

  // `a` runs on a store whose keep-alives are swallowed from `dead` on: a process that stopped renewing.
  let dead = false;
  const silent: Store = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'keepAlive') return (lease: string, o?: { signal?: AbortSignal }) => (dead ? new Promise(() => undefined) : target.keepAlive(lease, o));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  // A clock that never passes a's local deadline: a's own deadline does not step it down, so what
  // follows shows etcd's side of the fence.
  const frozenClock = { now: () => 0 };
  const a = new Election({ store: silent, name: 'etcd-test', id: 'a', ttl: 2, clock: frozenClock });
  const b = new Election({ store, name: 'etcd-test', id: 'b', ttl: 2 });
  t.after(async () => {
    await a.close();
    await b.close();
  });
  a.campaign();
  const la = await a.whenLeader();
  b.campaign();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(b.state.value, 'candidate');
  assert.equal((await store.get(la.key))?.createRevision, la.token);

  // The compares of a write a leader prepared just before it paused: what a late write carries.
  const lateFence = la.fence();
  dead = true;
  const diedAt = Date.now();
  const lb = await b.whenLeader();
  const takeover = Date.now() - diedAt;
  t.diagnostic(`takeover ${takeover} ms after the leader stopped renewing (TTL 2 s)`);
  assert.ok(takeover <= 2_000 + 1_000, `took over in ${takeover} ms: within the TTL plus etcd's expiry tick`);
  assert.ok(lb.token > la.token);

  // a's late write, with the fence it took while it led, is refused by etcd itself.
  const late = await store.txn({ compare: lateFence, success: [{ type: 'put', key: '/etcd-test/job', value: 'a' }] });
  assert.equal(late.succeeded, false);
  assert.equal(await store.get('/etcd-test/job'), undefined);
  // And a has seen its key go (its own watch): a fenced action now fails before reaching etcd.
  await assert.rejects(la.txn({ success: [{ type: 'put', key: '/etcd-test/job', value: 'a' }] }), NotLeaderError);
  assert.ok((await lb.txn({ success: [{ type: 'put', key: '/etcd-test/job', value: 'b' }] })).succeeded);

  // Resign hands over at once (the lease is revoked): a fresh candidate leads well before a TTL.
  const c = new Election({ store, name: 'etcd-test', id: 'c', ttl: 2 });
  t.after(() => c.close());
  c.campaign();
  await new Promise((r) => setTimeout(r, 300));
  await a.close();
  const resignedAt = Date.now();
  await b.resign();
  await c.whenLeader();
  const handover = Date.now() - resignedAt;
  assert.ok(handover < 1_000, `handed over in ${handover} ms`);
});
