import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BreakerGroup, InvalidOptionError, ManualClock } from './index.js';

const boom = async (): Promise<never> => {
  throw new Error('boom');
};

test('one breaker per key, made on first use, sharing the group options', async () => {
  const g = new BreakerGroup({ breaker: { window: { type: 'count', size: 10 }, minimumCalls: 2 } });
  const a = g.get('a');
  assert.equal(g.get('a'), a);
  assert.notEqual(g.get('b'), a);
  assert.equal(g.size, 2);
  await g.tryExecute('a', boom);
  await g.tryExecute('a', boom);
  assert.equal(g.get('a').state, 'open', 'a failing key opens its own circuit');
  assert.equal(g.get('b').state, 'closed', 'and no other');
  assert.equal(await g.execute('b', async () => 'fine'), 'fine');
  assert.equal(g.peek('zzz'), undefined);
  assert.equal(g.size, 2, 'peek never creates');
});

test('the map never exceeds maxKeys', () => {
  const clock = new ManualClock(0);
  const g = new BreakerGroup({ maxKeys: 100, idleTtl: 60_000, clock });
  for (let i = 0; i < 1_000; i++) {
    g.get(`k${i}`);
    clock.advance(1);
    assert.ok(g.size <= 100);
  }
  assert.equal(g.size, 100);
});

test('idle keys are dropped as new keys arrive, and by sweep()', () => {
  const clock = new ManualClock(0);
  const g = new BreakerGroup({ maxKeys: 1_000, idleTtl: 1_000, clock });
  const evicted: string[] = [];
  g.onEvict(({ key }) => evicted.push(key));
  for (let i = 0; i < 10; i++) g.get(`old${i}`);
  clock.advance(1_000);
  g.get('new1');
  assert.deepEqual(evicted, ['old0', 'old1'], 'each new key drops up to two idle ones');
  assert.equal(g.sweep(), 8);
  assert.deepEqual([...g.keys()], ['new1']);
});

test('when full, a key in use is kept over a cold one, and an open circuit is evicted last', async () => {
  const clock = new ManualClock(0);
  const g = new BreakerGroup({ maxKeys: 3, idleTtl: 1_000, clock, breaker: { window: { type: 'count', size: 10 }, minimumCalls: 1, clock } });
  await g.tryExecute('open', boom); // oldest, and open
  g.get('hot');
  g.get('cold');
  clock.advance(2_000);
  g.get('hot'); // used recently
  const hung = g.tryExecute('cold', () => new Promise<string>(() => undefined));
  void hung;
  g.get('another');
  // 'open' is open, 'hot' recent, 'cold' has a call in flight: the bound still wins, taking the oldest
  // idle closed one if any, else the oldest entry.
  assert.equal(g.size, 3);
  assert.ok(g.peek('another'));
  assert.ok(g.peek('cold'), 'a breaker with a call in flight is kept');
});

test('group options are validated', () => {
  assert.throws(() => new BreakerGroup({ maxKeys: 0 }), InvalidOptionError);
  assert.throws(() => new BreakerGroup({ idleTtl: -1 }), /"idleTtl" must be a number >= 0/);
  assert.throws(() => new BreakerGroup({ breaker: { failureRateThreshold: 2 } }), /"failureRateThreshold"/);
  assert.throws(() => new BreakerGroup({ max: 3 } as never), /option "max" must be one of the known options/);
});
