import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import {
  AbortedError,
  BrokenCircuitError,
  ErrorCode,
  InvalidOptionError,
  IsolatedCircuitError,
  RetryBudgetExhaustedError,
  TimeoutError,
} from '../errors/index.js';
import { constantBackoff, type Backoff } from './backoff.js';
import { RetryBudget } from './budget.js';
import { ManualClock } from './clock.js';
import { DEFAULT_CONTEXT } from './policy.js';
import { RetryPolicy, isNeverRetried, parseRetryAfter, retryAfterOf, type GiveUpEvent, type RetryEvent } from './retry.js';
import { Deadline } from './timeout.js';

const noWait = constantBackoff(0);

/** An operation that fails `failures` times (with fresh errors from `make`), then returns 'ok'. */
function flaky(failures: number, make: (n: number) => Error = (n) => new Error(`fail ${n}`)) {
  const attempts: number[] = [];
  const fn = ({ attempt }: { attempt: number }): Promise<string> => {
    attempts.push(attempt);
    return attempts.length <= failures ? Promise.reject(make(attempts.length)) : Promise.resolve('ok');
  };
  return { fn, attempts };
}

test('retries a failing operation until it succeeds; the context carries the 0-based attempt', async () => {
  const retry = new RetryPolicy({ maxAttempts: 5, backoff: constantBackoff(1) });
  const events: RetryEvent[] = [];
  retry.onRetry((e) => events.push(e));
  const { fn, attempts } = flaky(2);
  assert.equal(await retry.execute(fn), 'ok');
  assert.deepEqual(attempts, [0, 1, 2]);
  assert.deepEqual(
    events.map((e) => [e.attempt, e.delay, e.outcome.ok]),
    [
      [0, 1, false],
      [1, 1, false],
    ],
  );
});

test('after maxAttempts the last error is thrown as it was, and onGiveUp says why', async () => {
  const retry = new RetryPolicy({ maxAttempts: 3, backoff: noWait });
  const giveUps: GiveUpEvent[] = [];
  retry.onGiveUp((e) => giveUps.push(e));
  const { fn, attempts } = flaky(10);
  await assert.rejects(retry.execute(fn), { message: 'fail 3' });
  assert.deepEqual(attempts, [0, 1, 2]);
  assert.equal(giveUps.length, 1);
  assert.equal(giveUps[0]!.reason, 'attempts');
  assert.equal(giveUps[0]!.attempts, 3);
});

test('maxAttempts 1 never retries', async () => {
  const { fn, attempts } = flaky(1);
  await assert.rejects(new RetryPolicy({ maxAttempts: 1 }).execute(fn));
  assert.deepEqual(attempts, [0]);
});

test('retryOnResult retries returned values; when attempts run out, the last value is returned', async () => {
  const statuses = [503, 503, 200];
  const retry = new RetryPolicy({ backoff: noWait, retryOnResult: (v) => (v as { status: number }).status >= 500 });
  let i = 0;
  assert.deepEqual(await retry.execute(() => ({ status: statuses[i++]! })), { status: 200 });
  const always = new RetryPolicy({ maxAttempts: 2, backoff: noWait, retryOnResult: () => true });
  let calls = 0;
  assert.equal(await always.execute(() => ++calls), 2);
});

test('never retries an open or isolated circuit, or an abort, whatever retryOn says (also from another package copy)', async () => {
  const foreign = Object.assign(new Error('open elsewhere'), { code: ErrorCode.BrokenCircuit, retryable: true });
  Object.defineProperty(foreign, Symbol.for('spofless.error'), { value: true });
  const errors = [new BrokenCircuitError(), new IsolatedCircuitError(), new AbortedError(), foreign];
  for (const error of errors) {
    const retry = new RetryPolicy({ backoff: noWait, retryOn: () => true });
    const { fn, attempts } = flaky(5, () => error);
    await assert.rejects(retry.execute(fn), (err) => err === error);
    assert.deepEqual(attempts, [0], error.message);
    assert.ok(isNeverRetried(error));
  }
  assert.ok(!isNeverRetried(new TimeoutError('slow')));
  assert.ok(!isNeverRetried(new Error('plain')));
});

test('by default retries any error except a spofless error marked not retryable', async () => {
  const retry = new RetryPolicy({ backoff: noWait });
  const timeouts = flaky(2, () => new TimeoutError('slow'));
  assert.equal(await retry.execute(timeouts.fn), 'ok');
  const invalid = flaky(5, () => new InvalidOptionError('X', 'y', 1, 'z'));
  await assert.rejects(retry.execute(invalid.fn), InvalidOptionError);
  assert.deepEqual(invalid.attempts, [0]);
  const exhausted = flaky(5, () => new RetryBudgetExhaustedError(new Error('inner')));
  await assert.rejects(retry.execute(exhausted.fn), RetryBudgetExhaustedError);
  assert.deepEqual(exhausted.attempts, [0], 'an inner budget refusal is not multiplied by an outer retry');
});

test('retryOn chooses which errors are retried', async () => {
  const retry = new RetryPolicy({ backoff: noWait, retryOn: (err) => (err as { status?: number }).status !== 404 });
  const notFound = flaky(5, () => Object.assign(new Error('nf'), { status: 404 }));
  await assert.rejects(retry.execute(notFound.fn), { message: 'nf' });
  assert.deepEqual(notFound.attempts, [0]);
  const busy = flaky(1, () => Object.assign(new Error('busy'), { status: 503 }));
  assert.equal(await retry.execute(busy.fn), 'ok');
});

test('the backoff strategy gets the retry number and its own previous delay', async () => {
  const seen: Array<[number, number]> = [];
  const backoff: Backoff = {
    delay: (retry, previous) => {
      seen.push([retry, previous]);
      return retry + 1;
    },
  };
  await new RetryPolicy({ maxAttempts: 4, backoff }).execute(flaky(3).fn);
  assert.deepEqual(seen, [
    [0, 0],
    [1, 1],
    [2, 2],
  ]);
});

test('a Retry-After hint replaces the backoff, capped by maxDelay', async () => {
  const retry = new RetryPolicy({ backoff: constantBackoff(10_000), maxDelay: 25 });
  const delays: number[] = [];
  retry.onRetry((e) => delays.push(e.delay));
  const hinted = flaky(2, (n) => Object.assign(new Error('429'), { retryAfterMs: n === 1 ? 5 : 60_000 }));
  const start = performance.now();
  assert.equal(await retry.execute(hinted.fn), 'ok');
  assert.deepEqual(delays, [5, 25]);
  assert.ok(performance.now() - start < 5_000, 'neither the 10 s backoff nor the 60 s hint was waited');
});

test('a retryAfter option reads the hint from a failed result, e.g. a Retry-After header', async () => {
  const responses = [{ status: 503, retryAfter: '0' }, { status: 200 }];
  const retry = new RetryPolicy({
    backoff: constantBackoff(10_000),
    retryOnResult: (r) => (r as { status: number }).status === 503,
    retryAfter: (r) => parseRetryAfter((r as { retryAfter?: string }).retryAfter),
  });
  const delays: number[] = [];
  retry.onRetry((e) => delays.push(e.delay));
  let i = 0;
  assert.deepEqual(await retry.execute(() => responses[i++]!), { status: 200 });
  assert.deepEqual(delays, [0]);
});

test('retryAfterOf reads a finite, non-negative retryAfterMs and nothing else', () => {
  assert.equal(retryAfterOf({ retryAfterMs: 1_500 }), 1_500);
  assert.equal(retryAfterOf({ retryAfterMs: -1 }), undefined);
  assert.equal(retryAfterOf({ retryAfterMs: Infinity }), undefined);
  assert.equal(retryAfterOf({ retryAfterMs: '10' }), undefined);
  assert.equal(retryAfterOf(null), undefined);
  assert.equal(retryAfterOf('boom'), undefined);
});

test('parseRetryAfter reads delay-seconds and the three HTTP-date formats, and rejects the rest', () => {
  const now = Date.parse('2015-10-21T07:28:00Z');
  assert.equal(parseRetryAfter('120', now), 120_000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000);
  assert.equal(parseRetryAfter('Wednesday, 21-Oct-15 07:29:00 GMT', now), 60_000);
  assert.equal(parseRetryAfter('Wed Oct 21 07:28:05 2015', now), 5_000);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now), 0, 'a date in the past: retry now');
  for (const bad of ['1.5', '-1', '', 'soon', '2015-10-21T07:28:30Z', null, undefined]) {
    assert.equal(parseRetryAfter(bad, now), undefined, String(bad));
  }
});

test('gives up at once when the wait would not end before the caller deadline', async () => {
  const clock = new ManualClock();
  const deadline = new Deadline(1_000, { clock });
  clock.advance(950); // 50 ms left
  const retry = new RetryPolicy({ backoff: constantBackoff(10) });
  const giveUps: GiveUpEvent[] = [];
  retry.onGiveUp((e) => giveUps.push(e));
  const hinted = flaky(5, () => Object.assign(new Error('busy'), { retryAfterMs: 20_000 }));
  const start = performance.now();
  await assert.rejects(retry.execute(hinted.fn, deadline.signal), { message: 'busy' });
  assert.ok(performance.now() - start < 5_000, 'no 20 s sleep into a certain timeout');
  assert.deepEqual(hinted.attempts, [0]);
  assert.deepEqual(
    giveUps.map((e) => [e.reason, e.attempts]),
    [['deadline', 1]],
  );
  // A short backoff still fits in what remains: retried.
  const short = flaky(1);
  assert.equal(await retry.execute(short.fn, deadline.signal), 'ok');
  deadline.dispose();
});

test('an abort during the backoff sleep rejects at once, clears the timer and leaves no listener', async () => {
  const retry = new RetryPolicy({ backoff: constantBackoff(20_000) });
  const controller = new AbortController();
  const { fn, attempts } = flaky(5);
  retry.onRetry(() => setImmediate(() => controller.abort('stop')));
  const start = performance.now();
  await assert.rejects(retry.execute(fn, controller.signal), (err) => err instanceof AbortedError && err.cause === 'stop');
  assert.ok(performance.now() - start < 5_000, 'the 20 s sleep was cut short');
  assert.deepEqual(attempts, [0]);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('an abort from an onRetry listener stops the call even with a zero delay', async () => {
  const retry = new RetryPolicy({ backoff: noWait });
  const controller = new AbortController();
  retry.onRetry(() => controller.abort());
  const { fn, attempts } = flaky(5);
  await assert.rejects(retry.execute(fn, controller.signal), AbortedError);
  assert.deepEqual(attempts, [0]);
});

test('a caller abort during an attempt is not retried; an already aborted signal runs nothing', async () => {
  const retry = new RetryPolicy({ backoff: noWait });
  const controller = new AbortController();
  const attempts: number[] = [];
  const call = retry.execute(async ({ signal, attempt }) => {
    attempts.push(attempt);
    controller.abort('cancelled');
    await sleep(1);
    throw signal.reason;
  }, controller.signal);
  await assert.rejects(call, (err) => err instanceof AbortedError && err.cause === 'cancelled');
  assert.deepEqual(attempts, [0]);

  let called = false;
  await assert.rejects(
    retry.execute(() => {
      called = true;
    }, AbortSignal.abort()),
    AbortedError,
  );
  assert.equal(called, false);
});

test('the operation gets the caller signal; a synchronous throw counts as a failure', async () => {
  const retry = new RetryPolicy({ backoff: noWait });
  const controller = new AbortController();
  const signals: AbortSignal[] = [];
  let n = 0;
  const value = await retry.execute(({ signal }) => {
    signals.push(signal);
    if (n++ === 0) throw new Error('sync');
    return 'done';
  }, controller.signal);
  assert.equal(value, 'done');
  assert.deepEqual(signals, [controller.signal, controller.signal]);
  await retry.execute(({ signal }) => assert.equal(signal, DEFAULT_CONTEXT.signal));
});

test('a refused retry budget rejects with RetryBudgetExhaustedError whose cause is the last failure', async () => {
  const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 1, clock: new ManualClock() });
  const retry = new RetryPolicy({ maxAttempts: 5, backoff: noWait, budget });
  const giveUps: GiveUpEvent[] = [];
  retry.onGiveUp((e) => giveUps.push(e));
  const { fn, attempts } = flaky(5);
  await assert.rejects(retry.execute(fn), (err) => {
    assert.ok(err instanceof RetryBudgetExhaustedError);
    assert.equal((err.cause as Error).message, 'fail 2');
    assert.equal(err.retryable, false);
    return true;
  });
  assert.deepEqual(attempts, [0, 1], 'one token: one retry');
  assert.deepEqual(
    giveUps.map((e) => [e.reason, e.attempts]),
    [['budget', 2]],
  );
  const values = new RetryPolicy({ backoff: noWait, budget, retryOnResult: () => true });
  await assert.rejects(values.execute(() => 'still 503'), (err) => err instanceof RetryBudgetExhaustedError && err.cause === 'still 503');
});

test('one budget is shared by several retry policies', async () => {
  const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 2, clock: new ManualClock() });
  const a = new RetryPolicy({ backoff: noWait, budget });
  const b = new RetryPolicy({ backoff: noWait, budget });
  assert.equal(await a.execute(flaky(2).fn), 'ok'); // takes both tokens
  await assert.rejects(b.execute(flaky(1).fn), RetryBudgetExhaustedError);
});

test('no budget token is spent on a retry that the deadline refuses', async () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 1, clock });
  const deadline = new Deadline(10, { clock });
  const retry = new RetryPolicy({ backoff: constantBackoff(50), budget });
  await assert.rejects(retry.execute(flaky(5).fn, deadline.signal), { message: 'fail 1' });
  assert.equal(budget.available, 1);
  deadline.dispose();
});

test('options are validated, naming the option and the bad value', () => {
  const cases: Array<[object, string]> = [
    [{ maxAttempts: 0 }, 'maxAttempts'],
    [{ maxAttempts: 2.5 }, 'maxAttempts'],
    [{ maxAttempts: Number.NaN }, 'maxAttempts'],
    [{ maxDelay: -1 }, 'maxDelay'],
    [{ maxDelay: 2 ** 31 }, 'maxDelay'],
    [{ backoff: 100 }, 'backoff'],
    [{ retryOn: true }, 'retryOn'],
    [{ retryOnResult: 'yes' }, 'retryOnResult'],
    [{ retryAfter: 5 }, 'retryAfter'],
    [{ budget: {} }, 'budget'],
  ];
  for (const [options, option] of cases) {
    assert.throws(
      () => new RetryPolicy(options),
      (err: unknown) => err instanceof InvalidOptionError && err.option === option,
      option,
    );
  }
  assert.throws(() => new RetryPolicy({ maxAttempts: 0 }), /RetryPolicy: option "maxAttempts" must be an integer >= 1 or Infinity; got 0/);
  assert.equal(new RetryPolicy({ maxAttempts: Infinity }).maxAttempts, Infinity);
});

test('property: through retry policies, retries never exceed ratio × calls + the minimum allowance', async () => {
  const call = fc.record({
    failures: fc.integer({ min: 0, max: 6 }),
    policy: fc.integer({ min: 0, max: 2 }),
    waitMs: fc.integer({ min: 0, max: 500 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 0, max: 5 }),
      fc.array(call, { maxLength: 60 }),
      async (ratio, minRetriesPerSecond, calls) => {
        const clock = new ManualClock();
        const budget = new RetryBudget({ ratio, minRetriesPerSecond, clock });
        const policies = [2, 4, 8].map((maxAttempts) => new RetryPolicy({ maxAttempts, backoff: noWait, budget }));
        let attempts = 0;
        for (const c of calls) {
          clock.advance(c.waitMs);
          let left = c.failures;
          await policies[c.policy]!
            .execute(() => {
              attempts++;
              return left-- > 0 ? Promise.reject(new Error('down')) : 'up';
            })
            .catch(() => undefined);
        }
        const retries = attempts - calls.length;
        const minimum = minRetriesPerSecond + (minRetriesPerSecond * clock.now()) / 1_000;
        assert.ok(retries <= ratio * calls.length + minimum + 1e-6 * calls.length, `${retries} retries for ${calls.length} calls`);
      },
    ),
  );
});
