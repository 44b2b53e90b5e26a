import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { AbortedError, BrokenCircuitError, TimeoutError } from '../errors/index.js';
import { constantBackoff } from './backoff.js';
import { CircuitBreaker } from './breaker.js';
import { Bulkhead } from './bulkhead.js';
import { ManualClock } from './clock.js';
import { DEFAULT_CONTEXT, NEVER_ABORTED, type Operation, type PolicyContext } from './policy.js';
import { RetryPolicy } from './retry.js';
import { TimeoutPolicy, deadlineOf } from './timeout.js';
import { PolicyWrap, wrap, type ContextOf, type ExtraResultOf, type PolicyLike, type WrappedContext } from './wrap.js';

/** A user-made policy that logs around the call and adds a field of its own to the context. */
function tracing<K extends string>(name: K, log: string[]) {
  return {
    async execute<T>(fn: Operation<T, PolicyContext & Record<K, true>>, signal?: AbortSignal): Promise<T> {
      log.push(`${name}>`);
      try {
        return await fn({ signal: signal ?? NEVER_ABORTED, [name]: true } as PolicyContext & Record<K, true>);
      } finally {
        log.push(`<${name}`);
      }
    },
  };
}

const never = <T>(): Promise<T> => new Promise<T>(() => {});

test('wrap(a, b, c) runs a around b around c around the operation', async () => {
  const log: string[] = [];
  const policy = wrap(tracing('a', log), tracing('b', log), tracing('c', log));
  const value = await policy.execute((ctx) => {
    log.push('fn');
    return [ctx.a, ctx.b, ctx.c];
  });
  assert.deepEqual(value, [true, true, true], 'every context field reaches the operation');
  assert.deepEqual(log, ['a>', 'b>', 'c>', 'fn', '<c', '<b', '<a']);
});

test('the operation gets attempt from a retry outside it, and the innermost signal', async () => {
  const retry = new RetryPolicy({ maxAttempts: 3, backoff: constantBackoff(0) });
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  const bulkhead = new Bulkhead({ maxConcurrent: 1 });
  const seen: Array<{ attempt: number; deadline: number | undefined }> = [];
  const value = await wrap(retry, timeout, bulkhead).execute(({ attempt, signal }) => {
    seen.push({ attempt, deadline: deadlineOf(signal) });
    if (attempt < 2) throw new Error('again');
    return 'ok';
  });
  assert.equal(value, 'ok');
  assert.deepEqual(
    seen.map((s) => s.attempt),
    [0, 1, 2],
  );
  assert.ok(seen.every((s) => s.deadline !== undefined), "the signal is the timeout's, which carries a deadline");
});

test('one signal flows through every policy: a caller abort reaches the operation', async () => {
  const controller = new AbortController();
  const policy = wrap(new RetryPolicy({ backoff: constantBackoff(0) }), new TimeoutPolicy({ duration: 5_000 }), new Bulkhead({ maxConcurrent: 2 }));
  let seen: AbortSignal | undefined;
  const call = policy.execute(({ signal }) => {
    seen = signal;
    return never();
  }, controller.signal);
  await new Promise((resolve) => setImmediate(resolve));
  controller.abort('stop');
  await assert.rejects(call, (err) => err instanceof AbortedError && err.cause === 'stop');
  assert.equal(seen?.aborted, true);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('a timeout outside a retry is a deadline for all attempts; one inside bounds each attempt', async () => {
  const attempts: number[] = [];
  const policy = wrap(
    new TimeoutPolicy({ duration: 150 }),
    new RetryPolicy({ maxAttempts: Infinity, backoff: constantBackoff(1) }),
    new TimeoutPolicy({ duration: 10 }),
  );
  const start = performance.now();
  await assert.rejects(
    policy.execute(({ attempt }) => {
      attempts.push(attempt);
      return never();
    }),
    TimeoutError,
  );
  const took = performance.now() - start;
  assert.ok(took >= 140 && took < 5_000, `took ${took} ms`);
  // 150 ms of deadline holds over ten 10 ms attempts; a loaded machine's late timers may allow fewer.
  assert.ok(attempts.length >= 2, `each attempt timed out on its own: ${attempts.length} attempts`);
});

test('the retry gives up before the deadline when its wait would not fit, with the last error', async () => {
  let attempts = 0;
  // Had the retry slept, the 50 ms timeout would have ended the call with a TimeoutError instead.
  const policy = wrap(new TimeoutPolicy({ duration: 50 }), new RetryPolicy({ maxAttempts: 10, backoff: constantBackoff(200) }));
  await assert.rejects(
    policy.execute(() => {
      attempts++;
      throw new Error('unavailable');
    }),
    { message: 'unavailable' },
  );
  assert.equal(attempts, 1);
});

test('a retry never retries into an open circuit', async () => {
  let calls = 0;
  const openBreaker: PolicyLike = {
    execute: () => {
      calls++;
      return Promise.reject(new BrokenCircuitError());
    },
  };
  const policy = wrap(new RetryPolicy({ maxAttempts: 5, backoff: constantBackoff(0), retryOn: () => true }), openBreaker);
  await assert.rejects(
    policy.execute(() => 'unreachable'),
    BrokenCircuitError,
  );
  assert.equal(calls, 1);
});

test('wrap() of nothing calls the operation with the shared default context; wraps nest', async () => {
  assert.equal(await wrap().execute((ctx) => ctx), DEFAULT_CONTEXT);
  const controller = new AbortController();
  assert.equal(await wrap().execute(({ signal }) => signal, controller.signal), controller.signal);
  await assert.rejects(
    wrap().execute(() => {
      throw new Error('sync');
    }),
    { message: 'sync' },
  );
  const log: string[] = [];
  const nested = wrap(wrap(tracing('a', log)), tracing('b', log));
  assert.deepEqual(await nested.execute((ctx) => [ctx.a, ctx.b]), [true, true]);
  assert.ok(nested instanceof PolicyWrap);
  assert.equal(nested.policies.length, 2);
});

test('with a real CircuitBreaker: the retry stops at the refusal once the circuit opens', async () => {
  const breaker = new CircuitBreaker({
    window: { type: 'count', size: 4 },
    minimumCalls: 2,
    failureRateThreshold: 0.5,
    clock: new ManualClock(),
  });
  let attempts = 0;
  const policy = wrap(new RetryPolicy({ maxAttempts: 10, backoff: constantBackoff(0) }), breaker, new TimeoutPolicy({ duration: 1_000 }));
  await assert.rejects(
    policy.execute(({ attempt }) => {
      attempts++;
      throw new Error(`down ${attempt}`);
    }),
    BrokenCircuitError,
  );
  assert.equal(attempts, 2, 'two failures open the circuit; the third attempt is refused and not retried');
});

test('a single policy: its own context reaches the operation as it is, not copied', async () => {
  const own = { signal: NEVER_ABORTED, mine: true };
  const policy: PolicyLike<typeof own> = { execute: async (fn) => fn(own) };
  assert.equal(await wrap(policy).execute((c) => c), own);
});

test('types: the wrapped context is the intersection of the policies contexts', () => {
  // Compile-time checks: a wrong type fails `npm run typecheck`.
  const retryAndTimeout: WrappedContext<[RetryPolicy, TimeoutPolicy]> = { signal: NEVER_ABORTED, attempt: 0 };
  const retryContext: ContextOf<RetryPolicy> = retryAndTimeout;
  const onlyTimeout: WrappedContext<[TimeoutPolicy, Bulkhead]> = { signal: NEVER_ABORTED };
  // @ts-expect-error -- no retry, so no attempt
  void onlyTimeout.attempt;
  const plain: [ExtraResultOf<RetryPolicy>] extends [never] ? true : false = true;
  const withFallback: [ExtraResultOf<PolicyLike<PolicyContext, 'fallback'>>] extends [never] ? false : true = true;
  const breakerFallback: ExtraResultOf<CircuitBreaker<{ stale: true }>> = { stale: true };
  const plainBreaker: [ExtraResultOf<CircuitBreaker>] extends [never] ? true : false = true;
  assert.ok(retryContext && plain && withFallback && breakerFallback && plainBreaker);
});

test('types: a breaker fallback joins the wrapped result type', async () => {
  const policy = wrap(new RetryPolicy({ maxAttempts: 1 }), new CircuitBreaker({ fallbackValue: { stale: true as const } }));
  const r: number | { stale: true } = await policy.execute(() => 1);
  // @ts-expect-error -- the fallback may come back instead of a number
  const n: number = await policy.execute(() => 1);
  assert.deepEqual([r, n], [1, 1]);
});
