import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidOptionError } from '../errors/index.js';
import { constantBackoff, decorrelatedJitterBackoff, exponentialBackoff, fullJitterBackoff } from './backoff.js';

test('constantBackoff waits the same before every retry', () => {
  const b = constantBackoff(250);
  assert.deepEqual([0, 1, 7].map((r) => b.delay(r, 0)), [250, 250, 250]);
});

test('exponentialBackoff grows by its factor up to the cap, and stays there for huge retry counts', () => {
  const b = exponentialBackoff({ initial: 100, factor: 2, cap: 1_000 });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((r) => b.delay(r, 0)), [100, 200, 400, 800, 1_000, 1_000]);
  assert.equal(b.delay(5_000, 0), 1_000); // 2 ** 5000 is Infinity: still the cap, not NaN
  assert.equal(exponentialBackoff().delay(0, 0), 100);
});

test('fullJitterBackoff draws from [0, min(cap, base * 2^retry)) with the injected random source', () => {
  let r = 0;
  const b = fullJitterBackoff({ base: 100, cap: 1_000, random: () => r });
  assert.equal(b.delay(3, 0), 0);
  r = 0.5;
  assert.equal(b.delay(0, 0), 50);
  assert.equal(b.delay(2, 0), 200);
  assert.equal(b.delay(10, 0), 500); // the cap bounds the range
});

test('decorrelatedJitterBackoff draws from [base, previous * 3), capped, starting from base', () => {
  let r = 0;
  const b = decorrelatedJitterBackoff({ base: 100, cap: 1_000, random: () => r });
  assert.equal(b.delay(0, 0), 100); // random 0: the base
  r = 0.5;
  assert.equal(b.delay(0, 0), 200); // previous counts as base: [100, 300) -> 200
  assert.equal(b.delay(1, 200), 350); // [100, 600) -> 350
  assert.equal(b.delay(2, 900), 1_000); // [100, 2700) -> 1400, capped
});

test('backoff options are validated, naming the option and the bad value', () => {
  const cases: Array<[() => unknown, string]> = [
    [() => constantBackoff(-1), 'delay'],
    [() => constantBackoff(Number.NaN), 'delay'],
    [() => exponentialBackoff({ initial: Infinity }), 'initial'],
    [() => exponentialBackoff({ factor: 0.5 }), 'factor'],
    [() => exponentialBackoff({ cap: -5 }), 'cap'],
    [() => fullJitterBackoff({ base: 10, cap: 5 }), 'cap'],
    [() => decorrelatedJitterBackoff({ random: 0.5 as never }), 'random'],
  ];
  for (const [make, option] of cases) {
    assert.throws(make, (err: unknown) => err instanceof InvalidOptionError && err.option === option, option);
  }
  assert.throws(() => exponentialBackoff({ factor: 0.5 }), /exponentialBackoff: option "factor" must be a finite number >= 1; got 0.5/);
});

test('property: jittered delays stay within [0, cap], decorrelated ones within [base, cap]', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.nat(1_000),
      fc.integer({ min: 1, max: 100_000 }),
      fc.double({ min: 0, max: 1e9, noNaN: true }),
      (r, base, extra, retry, previous) => {
        const cap = base + extra;
        const full = fullJitterBackoff({ base, cap, random: () => r }).delay(retry, previous);
        assert.ok(full >= 0 && full <= cap, `full jitter ${full}`);
        const dec = decorrelatedJitterBackoff({ base, cap, random: () => r }).delay(retry, previous);
        assert.ok(dec >= base && dec <= cap, `decorrelated ${dec}`);
      },
    ),
  );
});
