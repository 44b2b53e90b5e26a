import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidOptionError } from '../errors/index.js';
import { RetryBudget } from './budget.js';
import { ManualClock } from './clock.js';

test('a fresh budget holds one second of the floor, capped by maxTokens', () => {
  const clock = new ManualClock();
  assert.equal(new RetryBudget({ clock }).available, 10);
  assert.equal(new RetryBudget({ clock, minRetriesPerSecond: 3 }).available, 3);
  assert.equal(new RetryBudget({ clock, minRetriesPerSecond: 50, maxTokens: 20 }).available, 20);
  assert.equal(new RetryBudget({ clock, minRetriesPerSecond: 0 }).available, 0);
});

test('each call deposits ratio tokens: five calls at 20% buy exactly one retry', () => {
  const budget = new RetryBudget({ ratio: 0.2, minRetriesPerSecond: 0, clock: new ManualClock() });
  assert.equal(budget.tryAcquire(), false);
  for (let i = 0; i < 4; i++) budget.recordCall();
  assert.equal(budget.tryAcquire(), false, 'four calls make 0.8 of a token');
  budget.recordCall();
  assert.equal(budget.tryAcquire(), true);
  assert.equal(budget.tryAcquire(), false);
  for (let i = 0; i < 50; i++) budget.recordCall();
  assert.equal(budget.available, 10);
});

test('time refills the floor lazily, and a clock set back grants nothing', () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 10, clock });
  for (let i = 0; i < 10; i++) assert.ok(budget.tryAcquire());
  assert.equal(budget.tryAcquire(), false);
  clock.advance(99);
  assert.equal(budget.tryAcquire(), false, '0.99 of a token');
  clock.advance(1);
  assert.equal(budget.tryAcquire(), true);
  clock.set(0);
  assert.equal(budget.available, 0);
  clock.advance(200);
  assert.equal(budget.available, 2);
});

test('the bucket never holds more than maxTokens, however long it rests', () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 1, minRetriesPerSecond: 10, maxTokens: 25, clock });
  clock.advance(3_600_000);
  for (let i = 0; i < 1_000; i++) budget.recordCall();
  assert.equal(budget.available, 25);
});

test('options are validated, naming the option and the bad value', () => {
  const cases: Array<[object, string]> = [
    [{ ratio: -0.1 }, 'ratio'],
    [{ ratio: Infinity }, 'ratio'],
    [{ minRetriesPerSecond: Number.NaN }, 'minRetriesPerSecond'],
    [{ maxTokens: 0.5 }, 'maxTokens'],
    [{ maxTokens: '10' }, 'maxTokens'],
  ];
  for (const [options, option] of cases) {
    assert.throws(
      () => new RetryBudget(options),
      (err: unknown) => err instanceof InvalidOptionError && err.option === option,
      option,
    );
  }
  assert.throws(() => new RetryBudget({ ratio: -1 }), /RetryBudget: option "ratio" must be a finite number >= 0; got -1/);
});

type Step = { kind: 'call' } | { kind: 'retry' } | { kind: 'wait'; ms: number };

test('property: retries granted never exceed the initial tokens + ratio × calls + floor × elapsed seconds', () => {
  const step = fc.oneof(
    fc.constant<Step>({ kind: 'call' }),
    fc.constant<Step>({ kind: 'retry' }),
    fc.integer({ min: 0, max: 2_000 }).map((ms): Step => ({ kind: 'wait', ms })),
  );
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 2, noNaN: true }),
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 1, max: 200 }),
      fc.array(step, { maxLength: 400 }),
      (ratio, minRetriesPerSecond, maxTokens, steps) => {
        const clock = new ManualClock();
        const budget = new RetryBudget({ ratio, minRetriesPerSecond, maxTokens, clock });
        const initial = Math.min(maxTokens, minRetriesPerSecond);
        let calls = 0;
        let granted = 0;
        for (const s of steps) {
          if (s.kind === 'call') {
            budget.recordCall();
            calls++;
          } else if (s.kind === 'retry') {
            if (budget.tryAcquire()) granted++;
          } else {
            clock.advance(s.ms);
          }
          const allowance = initial + ratio * calls + (minRetriesPerSecond * clock.now()) / 1_000;
          // 1e-6 per call: ratio is counted to the nearest millionth of a token.
          assert.ok(granted <= allowance + calls * 1e-6, `${granted} retries > ${allowance}`);
        }
      },
    ),
  );
});
