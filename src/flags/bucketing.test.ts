import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlagdCore } from '@openfeature/flagd-core';
import { bucketOf } from './evaluate.js';
import { FlagSet } from './flag-set.js';
import { validateFlag } from './validate.js';

function rolloutFlag(key: string, percent: number, seed?: string) {
  return validateFlag({
    key,
    type: 'boolean',
    enabled: true,
    variants: { on: true, off: false },
    defaultVariant: 'off',
    ...(seed === undefined ? {} : { seed }),
    rollout: { splits: percent >= 100 ? [{ variant: 'on', weight: 100 }] : [{ variant: 'on', weight: percent }, { variant: 'off', weight: 100 - percent }] },
  });
}

/** 10,000 distinct keys, different on every run (fast-check's seed is printed on failure). */
const keys10k = fc.uniqueArray(fc.string({ minLength: 1, maxLength: 24 }), { minLength: 10_000, maxLength: 10_000 });

test('uniform: 10,000 keys at 30% land within ±1.5 points of 30%', () => {
  fc.assert(
    fc.property(keys10k, fc.string({ minLength: 1, maxLength: 12 }).filter((s) => /^[A-Za-z0-9]/.test(s) && /^[A-Za-z0-9_.-]+$/.test(s)), (keys, flagKey) => {
      const set = new FlagSet();
      set.setFlag(rolloutFlag(flagKey, 30));
      let on = 0;
      for (const k of keys) if (set.evaluate(flagKey, false, { targetingKey: k }).value === true) on++;
      const pct = (on / keys.length) * 100;
      assert.ok(Math.abs(pct - 30) <= 1.5, `flag ${flagKey}: ${pct.toFixed(2)}% on`);
    }),
    { numRuns: 20 },
  );
});

test('stable and monotone: a key in at 10% stays in at 50% (and at every step between)', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ minLength: 1 }), { minLength: 1, maxLength: 500 }), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 }), (keys, a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      const small = new FlagSet();
      small.setFlag(rolloutFlag('checkout', lo));
      const big = new FlagSet();
      big.setFlag(rolloutFlag('checkout', hi));
      for (const k of keys) {
        const inSmall = small.evaluate('checkout', false, { targetingKey: k }).value;
        // stable: the same answer twice
        assert.equal(small.evaluate('checkout', false, { targetingKey: k }).value, inSmall);
        if (inSmall) assert.equal(big.evaluate('checkout', false, { targetingKey: k }).value, true, `${k} in at ${lo}% but out at ${hi}%`);
      }
    }),
    { numRuns: 300 },
  );
  // The headline case, on 10,000 keys.
  const ten = new FlagSet();
  ten.setFlag(rolloutFlag('checkout', 10));
  const fifty = new FlagSet();
  fifty.setFlag(rolloutFlag('checkout', 50));
  let inTen = 0;
  for (let i = 0; i < 10_000; i++) {
    const ctx = { targetingKey: `user-${i}` };
    if (ten.evaluate('checkout', false, ctx).value) {
      inTen++;
      assert.equal(fifty.evaluate('checkout', false, ctx).value, true);
    }
  }
  assert.ok(inTen > 800 && inTen < 1200, `${inTen} of 10,000 at 10%`);
});

test('uncorrelated across flags: being in one 50% rollout says nothing about another', () => {
  const a = new FlagSet();
  a.setFlag(rolloutFlag('flag-a', 50));
  a.setFlag(rolloutFlag('flag-b', 50));
  let both = 0;
  let onlyA = 0;
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    const ctx = { targetingKey: `user-${i}` };
    const x = a.evaluate('flag-a', false, ctx).value;
    const y = a.evaluate('flag-b', false, ctx).value;
    if (x && y) both++;
    if (x && !y) onlyA++;
  }
  // Independent: about 25% in both, 25% in A only (±1.5 points at n = 20,000 is > 6 sigma).
  assert.ok(Math.abs((both / n) * 100 - 25) < 1.5, `${((both / n) * 100).toFixed(2)}% in both`);
  assert.ok(Math.abs((onlyA / n) * 100 - 25) < 1.5, `${((onlyA / n) * 100).toFixed(2)}% in A only`);
  // The same seed correlates them completely (what the seed is for).
  const c = new FlagSet();
  c.setFlag(rolloutFlag('flag-c', 50, 'shared'));
  c.setFlag(rolloutFlag('flag-d', 50, 'shared'));
  for (let i = 0; i < 1000; i++) {
    const ctx = { targetingKey: `user-${i}` };
    assert.equal(c.evaluate('flag-c', false, ctx).value, c.evaluate('flag-d', false, ctx).value);
  }
});

test('same buckets as flagd: an equivalent flagd fractional puts every key in the same variant', () => {
  const core = new FlagdCore();
  core.setConfigurations(
    JSON.stringify({
      flags: {
        split: {
          state: 'ENABLED',
          variants: { a: 'a', b: 'b', c: 'c' },
          defaultVariant: 'a',
          targeting: { fractional: [['a', 15], ['b', 35], ['c', 50]] },
        },
      },
    }),
  );
  const set = new FlagSet();
  set.setFlag(
    validateFlag({
      key: 'split',
      type: 'string',
      enabled: true,
      variants: { a: 'a', b: 'b', c: 'c' },
      defaultVariant: 'a',
      rollout: { splits: [{ variant: 'a', weight: 15 }, { variant: 'b', weight: 35 }, { variant: 'c', weight: 50 }] },
    }),
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }), (k) => {
      assert.equal(set.evaluate('split', 'x', { targetingKey: k }).value, core.resolveStringEvaluation('split', 'x', { targetingKey: k }).value);
    }),
    { numRuns: 3_000 },
  );
});

test('bucketOf: numbers bucket like their text; other types have no bucket', () => {
  assert.equal(bucketOf('s', 42), bucketOf('s', '42'));
  assert.equal(bucketOf('s', undefined), -1);
  assert.equal(bucketOf('s', { id: 1 }), -1);
  assert.equal(bucketOf('s', Number.NaN), -1);
  const b = bucketOf('s', 'x');
  assert.ok(b >= 0 && b < 10_000);
});
