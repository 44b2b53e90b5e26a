/**
 * The `Store` contract suite: every promise of the `Store` interface, as tests, runnable against any
 * engine. The SQLite engine runs it in `test/store-sqlite.test.ts`; the etcd engine runs the same suite.
 *
 * It relies only on the interface: no engine internals, no injected clock (lease expiry uses real
 * 1-second TTLs and polls, allowing for an engine that raises short TTLs to its minimum), no absolute
 * revision numbers (only their order and equality), and keys under a fresh prefix per test so an engine
 * whose key space outlives one test (an etcd cluster) can run it too.
 *
 * @example
 * ```ts
 * runStoreContract('sqlite', async () => {
 *   const dir = mkdtempSync(join(tmpdir(), 'store-'));
 *   let store = await SqliteStore.open({ path: join(dir, 's.db') });
 *   return {
 *     store,
 *     restart: async () => { await store.close(); return (store = await SqliteStore.open({ path: join(dir, 's.db') })); },
 *     cleanup: async () => { await store.close(); rmSync(dir, { recursive: true }); },
 *   };
 * });
 * ```
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ErrorCode, isSpoflessError, type SpoflessError } from '../errors/index.js';
import { bytes, text } from './bytes.js';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from './validate.js';
import type { KeyValue, Store, Watch, WatchEvent } from './types.js';

/** What the factory gives each test. */
export interface StoreFixture {
  readonly store: Store;
  /** Releases everything the fixture made; closes the current store (a closed store is fine). */
  readonly cleanup: () => Promise<void>;
  /**
   * Closes the store and opens it again on the same data, returning the new instance (which `cleanup`
   * then closes). Every engine must offer it: surviving a restart is part of the contract (for etcd,
   * close the client and connect again).
   */
  readonly restart: () => Promise<Store>;
}

export type StoreFactory = () => Promise<StoreFixture>;

/** How long the suite waits for a lease to expire, and for any watch to deliver. */
const EXPIRY_WAIT_MS = 8_000;
const WATCH_WAIT_MS = 5_000;

let prefixCounter = 0;
function freshPrefix(): string {
  return `/contract/${process.pid}-${randomBytes(4).toString('hex')}-${++prefixCounter}/`;
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<SpoflessError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isSpoflessError(err, code), `expected ${code}, got ${String(err)}`);
    if (message !== undefined) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected a rejection with ${code}, but the call succeeded`);
}

function throwsWith(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    assert.ok(isSpoflessError(err, code), `expected ${code}, got ${String(err)}`);
    return;
  }
  assert.fail(`expected ${code} to be thrown`);
}

/** Takes responses from `watch` until `done(events so far)` holds, or fails after `ms`. */
async function collect(watch: Watch, done: (events: readonly WatchEvent[]) => boolean, ms = WATCH_WAIT_MS): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const it = watch[Symbol.asyncIterator]();
  const deadline = Date.now() + ms;
  while (!done(events)) {
    const left = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, left));
    });
    try {
      const r = await Promise.race([it.next(), timeout]);
      if (r === 'timeout') {
        assert.fail(`watch delivered ${events.length} events in ${ms} ms, not what the test waited for: ${describeEvents(events)}`);
      }
      if (r.done === true) break;
      assert.ok(r.value.events.length > 0, 'a watch response holds at least one event');
      assert.equal(r.value.revision, r.value.events[r.value.events.length - 1]?.kv.modRevision, 'response revision is its last event');
      events.push(...r.value.events);
    } finally {
      clearTimeout(timer);
    }
  }
  return events;
}

function describeEvents(events: readonly WatchEvent[]): string {
  return events.map((e) => `${e.type} ${text(e.kv.key)}@${e.kv.modRevision}`).join(', ');
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = EXPIRY_WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function keys(kvs: readonly KeyValue[]): string[] {
  return kvs.map((kv) => text(kv.key));
}

/**
 * Registers the contract suite under `describe(name)`. Each test gets a fresh fixture from `factory`
 * and cleans it up, pass or fail.
 */
export function runStoreContract(name: string, factory: StoreFactory): void {
  async function withStore(fn: (f: StoreFixture, p: string) => Promise<void>): Promise<void> {
    const fixture = await factory();
    try {
      await fn(fixture, freshPrefix());
    } finally {
      await fixture.cleanup();
    }
  }

  describe(`Store contract: ${name}`, () => {
    describe('keys and revisions', () => {
      test('put stamps each change with a greater revision; keys carry createRevision, modRevision, version', () =>
        withStore(async ({ store }, p) => {
          const a1 = await store.put(`${p}a`, 'one');
          const b1 = await store.put(`${p}b`, 'x');
          const a2 = await store.put(`${p}a`, 'two');
          assert.ok(b1.revision > a1.revision && a2.revision > b1.revision, 'revisions strictly increase');
          const a = await store.get(`${p}a`);
          assert.ok(a);
          assert.equal(text(a.key), `${p}a`);
          assert.equal(text(a.value), 'two');
          assert.equal(a.createRevision, a1.revision);
          assert.equal(a.modRevision, a2.revision);
          assert.equal(a.version, 2);
          assert.equal(a.lease, undefined);
          assert.equal(await store.get(`${p}missing`), undefined);
        }));

      test('keys and values are bytes: any byte, text only a convenience', () =>
        withStore(async ({ store }, p) => {
          const key = Buffer.concat([bytes(p), Buffer.from([0x00, 0xff, 0x80, 0x0a])]);
          const value = Buffer.from([0xff, 0x00, 0xfe, 0x01]);
          await store.put(key, value);
          const got = await store.get(key);
          assert.ok(got);
          assert.deepEqual(Buffer.from(got.key), key);
          assert.deepEqual(Buffer.from(got.value), value);
          await store.put(`${p}empty`, '');
          assert.equal((await store.get(`${p}empty`))?.value.length, 0, 'an empty value is a value');
          await store.put(`${p}ünï`, 'çødé ✓');
          assert.equal(text((await store.get(`${p}ünï`))?.value ?? bytes('')), 'çødé ✓');
        }));

      test('put returns the previous state on request', () =>
        withStore(async ({ store }, p) => {
          const first = await store.put(`${p}k`, 'v1', { prevKv: true });
          assert.equal(first.prevKv, undefined, 'no previous state for a new key');
          const second = await store.put(`${p}k`, 'v2', { prevKv: true });
          assert.ok(second.prevKv);
          assert.equal(text(second.prevKv.value), 'v1');
          assert.equal(second.prevKv.modRevision, first.revision);
          const third = await store.put(`${p}k`, 'v3');
          assert.equal(third.prevKv, undefined, 'not asked, not given');
        }));

      test('delete removes one key at a new revision; deleting nothing takes no revision', () =>
        withStore(async ({ store }, p) => {
          const put = await store.put(`${p}k`, 'v');
          const del = await store.delete(`${p}k`, { prevKv: true });
          assert.equal(del.deleted, 1);
          assert.ok(del.revision > put.revision);
          assert.equal(del.prevKvs?.length, 1);
          assert.equal(text(del.prevKvs?.[0]?.value ?? bytes('')), 'v');
          assert.equal(await store.get(`${p}k`), undefined);
          const none = await store.delete(`${p}k`);
          assert.equal(none.deleted, 0);
          assert.equal(none.revision, del.revision, 'a delete that deletes nothing takes no revision');
          const again = await store.put(`${p}k`, 'back');
          const kv = await store.get(`${p}k`);
          assert.equal(kv?.version, 1, 'a re-created key starts again at version 1');
          assert.equal(kv?.createRevision, again.revision);
        }));

      test('deletePrefix removes every key under the prefix, and only those, at one revision', () =>
        withStore(async ({ store }, p) => {
          await store.put(`${p}d/1`, '1');
          await store.put(`${p}d/2`, '2');
          await store.put(`${p}d/3/x`, '3');
          await store.put(`${p}d0`, 'sibling');
          await store.put(`${p}d`, 'the prefix itself is a key under it');
          const del = await store.deletePrefix(`${p}d/`, { prevKv: true });
          assert.equal(del.deleted, 3);
          assert.deepEqual(keys(del.prevKvs ?? []), [`${p}d/1`, `${p}d/2`, `${p}d/3/x`]);
          assert.deepEqual(keys((await store.range(p)).kvs), [`${p}d`, `${p}d0`]);
        }));
    });

    describe('range', () => {
      test('range by prefix: bytewise order, only that prefix, limit and more', () =>
        withStore(async ({ store }, p) => {
          for (const k of ['b', 'a', 'c/1', 'c', 'B', 'a/x']) await store.put(`${p}r/${k}`, k);
          await store.put(`${p}r0`, 'sibling'); // '0' sorts right after '/': must not leak in
          await store.put(`${p}q`, 'before');
          const all = await store.range(`${p}r/`);
          assert.deepEqual(keys(all.kvs), ['B', 'a', 'a/x', 'b', 'c', 'c/1'].map((k) => `${p}r/${k}`));
          assert.equal(all.more, false);
          const page = await store.range(`${p}r/`, { limit: 2 });
          assert.deepEqual(keys(page.kvs), [`${p}r/B`, `${p}r/a`]);
          assert.equal(page.more, true);
          const exact = await store.range(`${p}r/`, { limit: 6 });
          assert.equal(exact.more, false, 'more is false when the limit is exactly met');
          const onlyKeys = await store.range(`${p}r/`, { keysOnly: true, limit: 1 });
          assert.equal(onlyKeys.kvs[0]?.value.length, 0);
          assert.equal(onlyKeys.kvs[0]?.version, 1);
        }));

      test('paging with fromKey at a fixed revision sees one consistent snapshot', () =>
        withStore(async ({ store }, p) => {
          for (let i = 0; i < 7; i++) await store.put(`${p}k${i}`, `v${i}`);
          const first = await store.range(p, { limit: 3 });
          // Writes between pages must not show up in later pages of the same snapshot.
          await store.put(`${p}k5`, 'changed');
          await store.delete(`${p}k6`);
          await store.put(`${p}k7`, 'new');
          const seen = [...first.kvs];
          let last = first;
          while (last.more) {
            const lastKey = last.kvs[last.kvs.length - 1]?.key ?? bytes('');
            last = await store.range(p, {
              limit: 3,
              revision: first.revision,
              fromKey: Buffer.concat([lastKey, Buffer.from([0])]),
            });
            assert.equal(last.revision, first.revision);
            seen.push(...last.kvs);
          }
          assert.deepEqual(keys(seen), [0, 1, 2, 3, 4, 5, 6].map((i) => `${p}k${i}`));
          assert.deepEqual(seen.map((kv) => text(kv.value)), [0, 1, 2, 3, 4, 5, 6].map((i) => `v${i}`));
        }));

      test('a read at a past revision returns the state as it was then', () =>
        withStore(async ({ store }, p) => {
          const r1 = await store.put(`${p}a`, 'a1');
          await store.put(`${p}b`, 'b1');
          const mid = (await store.range(p)).revision;
          await store.put(`${p}a`, 'a2');
          await store.delete(`${p}b`);
          await store.put(`${p}c`, 'c1');
          const now = await store.range(p);
          assert.deepEqual(keys(now.kvs), [`${p}a`, `${p}c`]);
          const then = await store.range(p, { revision: mid });
          assert.equal(then.revision, mid);
          assert.deepEqual(keys(then.kvs), [`${p}a`, `${p}b`]);
          assert.deepEqual(then.kvs.map((kv) => text(kv.value)), ['a1', 'b1']);
          assert.equal(then.kvs[0]?.modRevision, r1.revision);
          assert.equal(then.kvs[0]?.version, 1);
          assert.equal(text((await store.get(`${p}a`, { revision: r1.revision }))?.value ?? bytes('')), 'a1');
          assert.equal(await store.get(`${p}c`, { revision: mid }), undefined);
          const future = now.revision + 1000;
          await rejectsWith(store.range(p, { revision: future }), ErrorCode.StoreFutureRevision);
        }));
    });

    describe('transactions', () => {
      test('compare on value, version, createRevision, modRevision and lease, with = != < >', () =>
        withStore(async ({ store }, p) => {
          const k = `${p}k`;
          const put = await store.put(k, 'm');
          await store.put(k, 'm'); // version 2
          const lease = await store.grantLease(60);
          await store.put(`${p}leased`, 'x', { lease: lease.id });
          const kv = await store.get(k);
          assert.ok(kv);
          const cases: [Parameters<Store['txn']>[0]['compare'], boolean][] = [
            [[{ key: k, target: 'value', cmp: '=', value: 'm' }], true],
            [[{ key: k, target: 'value', cmp: '!=', value: 'm' }], false],
            [[{ key: k, target: 'value', cmp: '<', value: 'n' }], true],
            [[{ key: k, target: 'value', cmp: '>', value: 'n' }], false],
            [[{ key: k, target: 'value', cmp: '>', value: 'l' }], true],
            [[{ key: k, target: 'version', cmp: '=', value: 2 }], true],
            [[{ key: k, target: 'version', cmp: '>', value: 2 }], false],
            [[{ key: k, target: 'version', cmp: '<', value: 3 }], true],
            [[{ key: k, target: 'createRevision', cmp: '=', value: put.revision }], true],
            [[{ key: k, target: 'createRevision', cmp: '!=', value: put.revision }], false],
            [[{ key: k, target: 'modRevision', cmp: '=', value: kv.modRevision }], true],
            [[{ key: k, target: 'modRevision', cmp: '<', value: kv.modRevision }], false],
            [[{ key: `${p}leased`, target: 'lease', cmp: '=', value: lease.id }], true],
            [[{ key: `${p}leased`, target: 'lease', cmp: '=', value: null }], false],
            [[{ key: k, target: 'lease', cmp: '=', value: null }], true],
            // A missing key: version/revisions are 0; a value compare never holds.
            [[{ key: `${p}none`, target: 'version', cmp: '=', value: 0 }], true],
            [[{ key: `${p}none`, target: 'createRevision', cmp: '=', value: 0 }], true],
            [[{ key: `${p}none`, target: 'value', cmp: '!=', value: 'anything' }], false],
            [[{ key: `${p}none`, target: 'value', cmp: '=', value: '' }], false],
            // All compares must hold.
            [[{ key: k, target: 'version', cmp: '=', value: 2 }, { key: k, target: 'value', cmp: '=', value: 'no' }], false],
            [[], true],
          ];
          for (const [compare, expected] of cases) {
            const r = await store.txn(compare === undefined ? {} : { compare });
            assert.equal(r.succeeded, expected, `compare ${JSON.stringify(compare)}`);
          }
          await store.revokeLease(lease.id);
        }));

      test('the chosen branch runs atomically at one revision; the other does not run', () =>
        withStore(async ({ store }, p) => {
          await store.put(`${p}gate`, 'open');
          await store.put(`${p}old`, 'x');
          const ok = await store.txn({
            compare: [{ key: `${p}gate`, target: 'value', cmp: '=', value: 'open' }],
            success: [
              { type: 'put', key: `${p}a`, value: '1' },
              { type: 'put', key: `${p}b`, value: '2', prevKv: true },
              { type: 'delete', key: `${p}old`, prevKv: true },
              { type: 'range', key: `${p}a` },
            ],
            failure: [{ type: 'put', key: `${p}failed`, value: 'x' }],
          });
          assert.equal(ok.succeeded, true);
          assert.equal(ok.responses.length, 4);
          assert.deepEqual(ok.responses.map((r) => r.type), ['put', 'put', 'delete', 'range']);
          const del = ok.responses[2];
          assert.ok(del?.type === 'delete' && del.deleted === 1 && text(del.prevKvs?.[0]?.value ?? bytes('')) === 'x');
          const rng = ok.responses[3];
          assert.ok(rng?.type === 'range');
          assert.deepEqual(keys(rng.kvs), [`${p}a`], 'a range in a txn sees the earlier ops of the txn');
          const a = await store.get(`${p}a`);
          const b = await store.get(`${p}b`);
          assert.equal(a?.modRevision, ok.revision);
          assert.equal(b?.modRevision, ok.revision, 'every write of a txn shares its revision');
          assert.equal(await store.get(`${p}failed`), undefined);

          const no = await store.txn({
            compare: [{ key: `${p}gate`, target: 'value', cmp: '=', value: 'closed' }],
            success: [{ type: 'put', key: `${p}a`, value: 'should not' }],
            failure: [{ type: 'put', key: `${p}failed`, value: 'yes' }, { type: 'range', key: `${p}`, prefix: true, limit: 1 }],
          });
          assert.equal(no.succeeded, false);
          assert.equal(text((await store.get(`${p}a`))?.value ?? bytes('')), '1');
          assert.equal(text((await store.get(`${p}failed`))?.value ?? bytes('')), 'yes');
          const r = no.responses[1];
          assert.ok(r?.type === 'range' && r.kvs.length === 1 && r.more);

          const readOnly = await store.txn({ success: [{ type: 'range', key: `${p}a` }] });
          assert.equal(readOnly.revision, no.revision, 'a txn that writes nothing takes no revision');
        }));

      test('create-if-absent and compare-and-swap race: exactly one of many wins', () =>
        withStore(async ({ store }, p) => {
          const key = `${p}leader`;
          const results = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              store.txn({
                compare: [{ key, target: 'createRevision', cmp: '=', value: 0 }],
                success: [{ type: 'put', key, value: `candidate-${i}` }],
                failure: [{ type: 'range', key }],
              }),
            ),
          );
          assert.equal(results.filter((r) => r.succeeded).length, 1);
          const cur = await store.get(key);
          assert.ok(cur);
          const swaps = await Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              store.txn({
                compare: [{ key, target: 'modRevision', cmp: '=', value: cur.modRevision }],
                success: [{ type: 'put', key, value: `swap-${i}` }],
              }),
            ),
          );
          assert.equal(swaps.filter((r) => r.succeeded).length, 1, 'one failing compare does not affect the others, nor does one winning');
        }));

      test('a txn that writes one key twice is refused, and writes nothing', () =>
        withStore(async ({ store }, p) => {
          const before = (await store.range(p)).revision;
          await rejectsWith(
            store.txn({ success: [{ type: 'put', key: `${p}a`, value: '1' }, { type: 'put', key: `${p}a`, value: '2' }] }),
            ErrorCode.InvalidArgument,
            /twice/,
          );
          await rejectsWith(
            store.txn({ success: [{ type: 'put', key: `${p}a/b`, value: '1' }, { type: 'delete', key: `${p}a/`, prefix: true }] }),
            ErrorCode.InvalidArgument,
          );
          assert.equal((await store.range(p)).revision, before);
          assert.equal((await store.range(p)).kvs.length, 0);
        }));
    });

    describe('leases', () => {
      test('grant, attach keys, time-to-live, revoke: keys go at one revision, as events', () =>
        withStore(async ({ store }, p) => {
          const lease = await store.grantLease(30);
          assert.ok(lease.ttl >= 30);
          assert.match(lease.id, /^[1-9][0-9]*$/);
          await store.put(`${p}l/2`, 'b', { lease: lease.id });
          await store.put(`${p}l/1`, 'a', { lease: lease.id });
          await store.put(`${p}free`, 'stays');
          assert.equal((await store.get(`${p}l/1`))?.lease, lease.id);
          const info = await store.leaseTimeToLive(lease.id, { keys: true });
          assert.ok(info);
          assert.equal(info.id, lease.id);
          assert.ok(info.ttl > 0 && info.ttl <= info.grantedTtl, `ttl ${info.ttl} within (0, ${info.grantedTtl}]`);
          assert.equal(info.grantedTtl, lease.ttl);
          assert.deepEqual(info.keys?.map((k) => text(k)), [`${p}l/1`, `${p}l/2`]);
          const kept = await store.keepAlive(lease.id);
          assert.equal(kept.id, lease.id);
          assert.equal(kept.ttl, lease.ttl);

          const start = (await store.range(p)).revision + 1;
          const watch = store.watch(p, { prefix: true, startRevision: start, prevKv: true });
          try {
            const revoked = await store.revokeLease(lease.id);
            assert.equal(revoked.deleted, 2);
            const events = await collect(watch, (e) => e.length >= 2);
            assert.deepEqual(events.map((e) => [e.type, text(e.kv.key), e.kv.modRevision]), [
              ['delete', `${p}l/1`, revoked.revision],
              ['delete', `${p}l/2`, revoked.revision],
            ]);
            assert.equal(text(events[0]?.prevKv?.value ?? bytes('')), 'a');
          } finally {
            watch.close();
          }
          assert.deepEqual(keys((await store.range(p)).kvs), [`${p}free`]);
          assert.equal(await store.leaseTimeToLive(lease.id), undefined);
          await rejectsWith(store.keepAlive(lease.id), ErrorCode.StoreLeaseNotFound);
          await rejectsWith(store.revokeLease(lease.id), ErrorCode.StoreLeaseNotFound);
          await rejectsWith(store.put(`${p}late`, 'x', { lease: lease.id }), ErrorCode.StoreLeaseNotFound);
        }));

      test('a lease not kept alive expires and its keys are deleted (as events); one kept alive stays', () =>
        withStore(async ({ store }, p) => {
          const dying = await store.grantLease(1);
          const living = await store.grantLease(1);
          await store.put(`${p}dying`, 'x', { lease: dying.id });
          await store.put(`${p}living`, 'y', { lease: living.id });
          const start = (await store.range(p)).revision + 1;
          const watch = store.watch(p, { prefix: true, startRevision: start });
          let keeping = true;
          const keeper = (async () => {
            while (keeping) {
              await store.keepAlive(living.id);
              await new Promise((r) => setTimeout(r, 250));
            }
          })();
          try {
            await waitFor('the unrenewed lease to expire', async () => (await store.get(`${p}dying`)) === undefined);
            const events = await collect(watch, (e) => e.length >= 1);
            assert.equal(events[0]?.type, 'delete');
            assert.equal(text(events[0]?.kv.key ?? bytes('')), `${p}dying`);
            assert.equal(await store.leaseTimeToLive(dying.id), undefined);
            await rejectsWith(store.keepAlive(dying.id), ErrorCode.StoreLeaseNotFound);
            assert.ok(await store.get(`${p}living`), 'the lease kept alive still holds its key');
            assert.ok(await store.leaseTimeToLive(living.id));
          } finally {
            keeping = false;
            await keeper;
            watch.close();
          }
          await store.revokeLease(living.id);
        }));
    });

    describe('watch', () => {
      test('from a past revision: replays history, then continues live, in order, with prevKv', () =>
        withStore(async ({ store }, p) => {
          const r1 = await store.put(`${p}w/a`, '1');
          await store.put(`${p}other`, 'not watched');
          const r2 = await store.put(`${p}w/a`, '2');
          const r3 = await store.delete(`${p}w/a`);
          const watch = store.watch(`${p}w/`, { prefix: true, startRevision: r1.revision, prevKv: true });
          try {
            const live = (async () => {
              const t = await store.txn({
                success: [
                  { type: 'put', key: `${p}w/c`, value: 'c' },
                  { type: 'put', key: `${p}w/b`, value: 'b' },
                ],
              });
              return t.revision;
            })();
            const events = await collect(watch, (e) => e.length >= 5);
            const t = await live;
            assert.deepEqual(
              events.map((e) => [e.type, text(e.kv.key), e.kv.modRevision]),
              [
                ['put', `${p}w/a`, r1.revision],
                ['put', `${p}w/a`, r2.revision],
                ['delete', `${p}w/a`, r3.revision],
                ['put', `${p}w/c`, t],
                ['put', `${p}w/b`, t],
              ],
              'events of one txn come in the order the txn made them',
            );
            assert.equal(events[0]?.prevKv, undefined);
            assert.equal(text(events[1]?.prevKv?.value ?? bytes('')), '1');
            const del = events[2];
            assert.ok(del);
            assert.equal(del.kv.value.length, 0);
            assert.equal(del.kv.version, 0);
            assert.equal(del.kv.createRevision, 0);
            assert.equal(text(del.prevKv?.value ?? bytes('')), '2');
            assert.equal(events[3]?.kv.version, 1);
            assert.equal(events[3]?.kv.createRevision, t);
          } finally {
            watch.close();
          }
        }));

      test('a key watch sees that key only, in history and live; without prevKv no previous state', () =>
        withStore(async ({ store }, p) => {
          const start = (await store.range(p)).revision + 1;
          await store.put(`${p}k/child`, 'no');
          const a = await store.put(`${p}k`, 'v1');
          await store.put(`${p}kk`, 'no');
          const watch = store.watch(`${p}k`, { startRevision: start });
          try {
            const b = await store.put(`${p}k`, 'v2');
            await store.put(`${p}k0`, 'no');
            const c = await store.delete(`${p}k`);
            const events = await collect(watch, (e) => e.length >= 3);
            assert.deepEqual(events.map((e) => [e.type, text(e.kv.key), e.kv.modRevision]), [
              ['put', `${p}k`, a.revision],
              ['put', `${p}k`, b.revision],
              ['delete', `${p}k`, c.revision],
            ]);
            assert.equal(events[1]?.prevKv, undefined);
            assert.equal(events[2]?.prevKv, undefined);
          } finally {
            watch.close();
          }
        }));

      test('many concurrent writers: every event exactly once, in revision order, no gap', () =>
        withStore(async ({ store }, p) => {
          const start = (await store.range(p)).revision + 1;
          const watch = store.watch(p, { prefix: true, startRevision: start });
          try {
            const writes = await Promise.all([
              ...Array.from({ length: 150 }, (_, i) => store.put(`${p}k${i % 40}`, `v${i}`).then((r) => [`${p}k${i % 40}`, r.revision] as const)),
              ...Array.from({ length: 10 }, (_, i) =>
                store
                  .txn({ success: [{ type: 'put', key: `${p}t${i}/x`, value: 'x' }, { type: 'put', key: `${p}t${i}/y`, value: 'y' }] })
                  .then((r) => [`${p}t${i}/*`, r.revision] as const),
              ),
            ]);
            const events = await collect(watch, (e) => e.length >= 170);
            await new Promise((r) => setTimeout(r, 50));
            const revisions = events.map((e) => e.kv.modRevision);
            for (let i = 1; i < revisions.length; i++) {
              assert.ok((revisions[i] ?? 0) >= (revisions[i - 1] ?? 0), 'revision order');
            }
            const seen = new Set(events.map((e) => `${text(e.kv.key)}@${e.kv.modRevision}`));
            assert.equal(seen.size, events.length, 'no duplicates');
            for (const [key, rev] of writes) {
              if (key.endsWith('/*')) {
                const base = key.slice(0, -1);
                assert.ok(seen.has(`${base}x@${rev}`) && seen.has(`${base}y@${rev}`), `txn events at ${rev}`);
              } else {
                assert.ok(seen.has(`${key}@${rev}`), `event for ${key}@${rev}`);
              }
            }
            assert.equal(events.length, 170, 'no event beyond the writes');
          } finally {
            watch.close();
          }
        }));

      test('many watchers of one prefix each get every event; watchers of other keys get none of them', () =>
        withStore(async ({ store }, p) => {
          const start = (await store.range(p)).revision + 1;
          const hot = Array.from({ length: 100 }, () => store.watch(`${p}hot/`, { prefix: true, startRevision: start }));
          const cold = Array.from({ length: 100 }, (_, i) => store.watch(`${p}cold/${i}`, { startRevision: start }));
          try {
            for (let i = 0; i < 5; i++) await store.put(`${p}hot/${i}`, `${i}`);
            const marker = await store.put(`${p}cold/7`, 'marker');
            const all = await Promise.all(hot.map((w) => collect(w, (e) => e.length >= 5)));
            for (const events of all) assert.deepEqual(events.map((e) => text(e.kv.key)), [0, 1, 2, 3, 4].map((i) => `${p}hot/${i}`));
            const seven = cold[7];
            assert.ok(seven);
            const coldEvents = await collect(seven, (e) => e.length >= 1);
            assert.equal(coldEvents[0]?.kv.modRevision, marker.revision, 'the cold watcher saw only its own key');
          } finally {
            for (const w of [...hot, ...cold]) w.close();
          }
        }));

      test('a watch ends: close() and break finish quietly; abort throws AbortedError', () =>
        withStore(async ({ store }, p) => {
          const closed = store.watch(p, { prefix: true });
          closed.close();
          assert.equal(closed.closed, true);
          assert.deepEqual(await collect(closed, () => false), []);

          const broken = store.watch(p, { prefix: true });
          const loop = (async () => {
            for await (const _ of broken) break;
          })();
          await store.put(`${p}x`, '1');
          await loop;
          assert.equal(broken.closed, true);

          const ac = new AbortController();
          const aborted = store.watch(p, { prefix: true, signal: ac.signal });
          const pending = collect(aborted, () => false);
          ac.abort();
          await rejectsWith(pending, ErrorCode.Aborted);
          assert.equal(aborted.closed, true);

          const pre = new AbortController();
          pre.abort();
          await rejectsWith(collect(store.watch(p, { prefix: true, signal: pre.signal }), () => false), ErrorCode.Aborted);
        }));

      test('progressNotify: a replay that reaches the head says so, also when nothing matched; engines without watchProgress refuse the option', () =>
        withStore(async ({ store }, p) => {
          const first = await store.put(`${p}mine/a`, '1');
          // Only other keys move the store on: a resume after `first` has nothing to replay.
          for (let i = 0; i < 3; i++) await store.put(`${p}others/${i}`, `${i}`);
          const head = (await store.range(p)).revision;
          if (!store.watchProgress) {
            throwsWith(() => store.watch(`${p}mine/`, { prefix: true, startRevision: first.revision + 1, progressNotify: true }), ErrorCode.InvalidOption);
            return;
          }
          const take = async (w: Watch): Promise<{ events: string[]; revision: number }> => {
            const r = await Promise.race([
              w[Symbol.asyncIterator]().next(),
              new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), WATCH_WAIT_MS).unref()),
            ]);
            assert.ok(r !== 'timeout' && r.done !== true, 'a response within the wait');
            return { events: r.value.events.map((e) => text(e.kv.key)), revision: r.value.revision };
          };
          const empty = store.watch(`${p}mine/`, { prefix: true, startRevision: first.revision + 1, progressNotify: true });
          try {
            assert.deepEqual(await take(empty), { events: [], revision: head }, 'nothing to replay: progress at the head at once');
            const live = await store.put(`${p}mine/b`, '2');
            assert.deepEqual(await take(empty), { events: [`${p}mine/b`], revision: live.revision }, 'then live events as usual');
          } finally {
            empty.close();
          }
          const replay = store.watch(`${p}mine/`, { prefix: true, startRevision: first.revision, progressNotify: true });
          try {
            const got = await take(replay);
            assert.deepEqual(got.events, [`${p}mine/a`, `${p}mine/b`], 'the replay first');
            const progress = await take(replay);
            assert.deepEqual(progress.events, [], 'then progress');
            assert.equal(progress.revision, (await store.range(p)).revision, 'at the head (here the last replayed event)');
          } finally {
            replay.close();
          }
          const plain = store.watch(`${p}mine/`, { prefix: true, startRevision: first.revision + 1 });
          try {
            const marker = await store.put(`${p}mine/c`, '3');
            const events = await collect(plain, (e) => e.some((x) => x.kv.modRevision === marker.revision));
            assert.ok(events.length >= 1, 'without the option no empty response comes (collect fails on one)');
          } finally {
            plain.close();
          }
        }));
    });

    describe('compaction', () => {
      test('reads and watches before the compact revision fail with CompactedError naming it; from it on they work', () =>
        withStore(async ({ store }, p) => {
          const r1 = await store.put(`${p}a`, '1');
          const r2 = await store.put(`${p}a`, '2');
          const r3 = await store.put(`${p}b`, '3');
          await store.compact(r2.revision);
          const err = await rejectsWith(store.range(p, { revision: r1.revision }), ErrorCode.StoreCompacted);
          assert.equal((err as SpoflessError & { compactRevision: number }).compactRevision, r2.revision);
          assert.match(err.message, new RegExp(`${r2.revision}`));
          await rejectsWith(store.get(`${p}a`, { revision: r1.revision }), ErrorCode.StoreCompacted);
          const at = await store.range(p, { revision: r2.revision });
          assert.deepEqual(at.kvs.map((kv) => text(kv.value)), ['2'], 'the compact revision itself is still readable');

          const old = store.watch(p, { prefix: true, startRevision: r1.revision });
          const werr = await rejectsWith(collect(old, () => false), ErrorCode.StoreCompacted);
          assert.equal((werr as SpoflessError & { compactRevision: number }).compactRevision, r2.revision);
          assert.equal(old.closed, true);

          const fromCompact = store.watch(p, { prefix: true, startRevision: r2.revision });
          try {
            const events = await collect(fromCompact, (e) => e.length >= 2);
            assert.deepEqual(events.map((e) => e.kv.modRevision), [r2.revision, r3.revision]);
          } finally {
            fromCompact.close();
          }
          await store.compact(r1.revision); // at or below the compact revision: nothing to do
          await rejectsWith(store.compact(r3.revision + 1000), ErrorCode.StoreFutureRevision);
        }));
    });

    describe('validation: bad input is refused with a typed error and nothing is written', () => {
      test('keys, values, lease ids, TTLs, limits and revisions', () =>
        withStore(async ({ store }, p) => {
          const before = (await store.range(p)).revision;
          await rejectsWith(store.put('', 'v'), ErrorCode.StoreInvalidKey, /empty/);
          await rejectsWith(store.put('x'.repeat(MAX_KEY_BYTES + 1), 'v'), ErrorCode.StoreInvalidKey, new RegExp(`${MAX_KEY_BYTES}`));
          await rejectsWith(store.get(''), ErrorCode.StoreInvalidKey);
          await rejectsWith(store.delete(''), ErrorCode.StoreInvalidKey);
          await rejectsWith(store.put(`${p}big`, Buffer.alloc(MAX_VALUE_BYTES + 1)), ErrorCode.StoreValueTooLarge, /1572865 bytes/);
          await rejectsWith(store.put(`${p}bad`, 42 as unknown as string), ErrorCode.InvalidArgument);
          for (const ttl of [0, -1, 1.5, 9_000_000_001, Number.NaN, '10' as unknown as number]) {
            await rejectsWith(store.grantLease(ttl), ErrorCode.InvalidArgument, /TTL/);
          }
          await rejectsWith(store.put(`${p}l`, 'v', { lease: 'abc' }), ErrorCode.InvalidArgument, /lease id/);
          await rejectsWith(store.put(`${p}l`, 'v', { lease: '123456789' }), ErrorCode.StoreLeaseNotFound, /123456789/);
          await rejectsWith(store.keepAlive('123456789'), ErrorCode.StoreLeaseNotFound);
          await rejectsWith(store.revokeLease('123456789'), ErrorCode.StoreLeaseNotFound);
          assert.equal(await store.leaseTimeToLive('123456789'), undefined);
          await rejectsWith(store.range(p, { limit: 0 }), ErrorCode.InvalidArgument, /limit/);
          await rejectsWith(store.range(p, { revision: -3 }), ErrorCode.InvalidArgument, /revision/);
          throwsWith(() => store.watch(''), ErrorCode.StoreInvalidKey);
          throwsWith(() => store.watch(p, { prefix: true, startRevision: 0 }), ErrorCode.InvalidArgument);
          // A txn with one bad operation writes none of its good ones.
          await rejectsWith(
            store.txn({
              success: [
                { type: 'put', key: `${p}good`, value: 'v' },
                { type: 'put', key: `${p}big`, value: Buffer.alloc(MAX_VALUE_BYTES + 1) },
              ],
            }),
            ErrorCode.StoreValueTooLarge,
          );
          await rejectsWith(
            store.txn({ success: [{ type: 'put', key: `${p}good`, value: 'v' }, { type: 'put', key: `${p}l`, value: 'v', lease: '123456789' }] }),
            ErrorCode.StoreLeaseNotFound,
          );
          const after = await store.range(p);
          assert.equal(after.kvs.length, 0, 'nothing half-written');
          assert.equal(after.revision, before, 'no revision taken');
          const max = await store.put(`${p}max`, Buffer.alloc(MAX_VALUE_BYTES, 7));
          assert.ok(max.revision > before, `a value of exactly ${MAX_VALUE_BYTES} bytes is accepted`);
          assert.equal((await store.get(`${p}max`))?.value.length, MAX_VALUE_BYTES);
          const longest = await store.put(p + 'k'.repeat(MAX_KEY_BYTES - Buffer.byteLength(p)), 'longest key');
          assert.ok(longest.revision > max.revision, `a key of exactly ${MAX_KEY_BYTES} bytes is accepted`);
        }));

      test('an aborted signal: the call is refused and nothing is written', () =>
        withStore(async ({ store }, p) => {
          const ac = new AbortController();
          ac.abort();
          await rejectsWith(store.put(`${p}a`, 'v', { signal: ac.signal }), ErrorCode.Aborted);
          await rejectsWith(store.get(`${p}a`, { signal: ac.signal }), ErrorCode.Aborted);
          assert.equal(await store.get(`${p}a`), undefined);
        }));
    });

    describe('restart and close', () => {
      test('after a restart: data, revisions and leases are still there, and a watch resumes without a gap', async () => {
        const fixture = await factory();
        try {
          const p = freshPrefix();
          let store = fixture.store;
          const lease = await store.grantLease(60);
          const a = await store.put(`${p}a`, '1', { lease: lease.id });
          const b = await store.put(`${p}b`, '2');
          store = await fixture.restart();
          assert.equal(text((await store.get(`${p}b`))?.value ?? bytes('')), '2');
          assert.equal((await store.get(`${p}a`))?.lease, lease.id);
          const c = await store.put(`${p}c`, '3');
          assert.ok(c.revision > b.revision, 'revisions keep growing across a restart');
          assert.ok(((await store.leaseTimeToLive(lease.id))?.ttl ?? 0) > 0, 'the lease survived the restart');
          const watch = store.watch(p, { prefix: true, startRevision: a.revision });
          try {
            const events = await collect(watch, (e) => e.length >= 3);
            assert.deepEqual(events.map((e) => e.kv.modRevision), [a.revision, b.revision, c.revision]);
          } finally {
            watch.close();
          }
          await store.revokeLease(lease.id);
        } finally {
          await fixture.cleanup();
        }
      });

      test('close(): queued writes finish, watches end with StoreClosedError, later calls are refused', async () => {
        const fixture = await factory();
        try {
          const { store } = fixture;
          const p = freshPrefix();
          const watch = store.watch(p, { prefix: true });
          const ending = collect(watch, () => false);
          const write = store.put(`${p}last`, 'v');
          const closing = store.close();
          await write; // a write made before close() still completes
          await closing;
          await store.close(); // idempotent
          await rejectsWith(ending, ErrorCode.StoreClosed);
          await rejectsWith(store.put(`${p}after`, 'v'), ErrorCode.StoreClosed);
          await rejectsWith(store.get(`${p}last`), ErrorCode.StoreClosed);
        } finally {
          await fixture.cleanup();
        }
      });
    });
  });
}
