import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, InvalidOptionError, TimeoutError } from '../errors/index.js';
import { ManualClock } from './clock.js';
import { Deadline, TimeoutPolicy, deadlineOf, errorForAbort, remainingTime, type TimeoutEvent } from './timeout.js';

const never = <T>(): Promise<T> => new Promise<T>(() => {});

test('a call that finishes in time resolves with its value, and its signal is never aborted', async () => {
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  let seen: AbortSignal | undefined;
  const value = await timeout.execute(({ signal }) => {
    seen = signal;
    return 42;
  });
  assert.equal(value, 42);
  assert.equal(seen?.aborted, false);
  await sleep(5);
  assert.equal(seen?.aborted, false);
});

test('errors from the operation, thrown or rejected, pass through unchanged', async () => {
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  const boom = new Error('boom');
  await assert.rejects(
    timeout.execute(() => {
      throw boom;
    }),
    (err) => err === boom,
  );
  await assert.rejects(
    timeout.execute(() => Promise.reject(boom)),
    (err) => err === boom,
  );
});

test('at the deadline: rejects with TimeoutError without waiting, aborts the operation, emits onTimeout', async () => {
  const timeout = new TimeoutPolicy({ duration: 20 });
  const events: TimeoutEvent[] = [];
  timeout.onTimeout((e) => events.push(e));
  let seen: AbortSignal | undefined;
  const start = performance.now();
  await assert.rejects(
    timeout.execute(({ signal }) => {
      seen = signal;
      return never(); // ignores its signal: the policy must not wait for it
    }),
    (err) => err instanceof TimeoutError && /timed out after 20 ms/.test(err.message),
  );
  assert.ok(performance.now() - start < 5_000);
  assert.equal(seen?.aborted, true);
  assert.ok(seen?.reason instanceof TimeoutError, 'the operation learns why it was aborted');
  assert.deepEqual(events, [{ duration: 20 }]);
});

test('a late result or error after a timeout is dropped, not reported as unhandled', async () => {
  const timeout = new TimeoutPolicy({ duration: 5 });
  await assert.rejects(timeout.execute(() => sleep(30).then(() => Promise.reject(new Error('late')))), TimeoutError);
  await sleep(40); // an unhandled rejection would fail the test run here
});

test('caller abort rejects with AbortedError (cause = reason), aborts the operation, and is no timeout', async () => {
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  const events: TimeoutEvent[] = [];
  timeout.onTimeout((e) => events.push(e));
  const controller = new AbortController();
  const reason = new Error('client went away');
  let seen: AbortSignal | undefined;
  const call = timeout.execute(({ signal }) => {
    seen = signal;
    return never();
  }, controller.signal);
  controller.abort(reason);
  await assert.rejects(call, (err) => err instanceof AbortedError && err.cause === reason && !(err instanceof TimeoutError));
  assert.equal(seen?.aborted, true);
  assert.equal(seen?.reason, reason);
  assert.equal(events.length, 0);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('an already aborted signal rejects at once without calling the operation', async () => {
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  let called = false;
  await assert.rejects(
    timeout.execute(() => {
      called = true;
    }, AbortSignal.abort('stop')),
    (err) => err instanceof AbortedError && err.cause === 'stop',
  );
  assert.equal(called, false);
});

test('no listener is left on the caller signal when a call settles, whichever way', async () => {
  const timeout = new TimeoutPolicy({ duration: 10 });
  const controller = new AbortController();
  await timeout.execute(() => 1, controller.signal);
  await assert.rejects(timeout.execute(() => Promise.reject(new Error('x')), controller.signal));
  await assert.rejects(timeout.execute(() => never(), controller.signal), TimeoutError);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('the operation signal carries its deadline; an inner timeout honours what remains of an outer one', async () => {
  const clock = new ManualClock(1_000);
  const outer = new TimeoutPolicy({ duration: 10_000, clock });
  const inner = new TimeoutPolicy({ duration: 20_000, clock });
  let innerDeadline: number | undefined;
  let innerRemaining = 0;
  const start = performance.now();
  const call = outer.execute(({ signal }) => {
    assert.equal(deadlineOf(signal), 11_000);
    clock.advance(9_970); // the outer budget is mostly spent before the inner call starts
    return inner.execute(({ signal: s }) => {
      innerDeadline = deadlineOf(s);
      innerRemaining = remainingTime(s);
      return never();
    }, signal);
  });
  await assert.rejects(call, (err) => err instanceof TimeoutError && /deadline exceeded/.test(err.message));
  assert.equal(innerDeadline, 11_000, 'min(own 20 s, 30 ms left of the outer deadline)');
  assert.equal(innerRemaining, 30);
  // The inner timer ran for 30 ms (the remaining budget), not the outer's 10 s or its own 20 s.
  assert.ok(performance.now() - start < 5_000, `took ${performance.now() - start} ms`);
});

test('an inner timeout whose outer deadline has already passed rejects without calling the operation', async () => {
  const clock = new ManualClock();
  const deadline = new Deadline(50, { clock });
  clock.advance(50);
  const timeout = new TimeoutPolicy({ duration: 1_000, clock });
  const events: TimeoutEvent[] = [];
  timeout.onTimeout((e) => events.push(e));
  let called = false;
  await assert.rejects(
    timeout.execute(() => {
      called = true;
    }, deadline.signal),
    TimeoutError,
  );
  assert.equal(called, false);
  assert.deepEqual(events, [{ duration: 0 }]);
  deadline.dispose();
  assert.equal(getEventListeners(deadline.signal, 'abort').length, 0);
});

test('a caller signal aborted by its own deadline gives that TimeoutError, not AbortedError', async () => {
  const timeout = new TimeoutPolicy({ duration: 1_000 });
  const upstream = new AbortController();
  const reason = new TimeoutError('the upstream deadline passed');
  const call = timeout.execute(() => never(), upstream.signal);
  upstream.abort(reason);
  await assert.rejects(call, (err) => err === reason);

  // With a real Deadline both timers end together; either way the call is a timeout.
  const deadline = new Deadline(15);
  await assert.rejects(timeout.execute(() => never(), deadline.signal), TimeoutError);
  assert.equal(getEventListeners(deadline.signal, 'abort').length, 0);
});

test('Deadline: aborts with TimeoutError when time is up; remaining() counts down on its clock', async () => {
  const clock = new ManualClock(500);
  const d = new Deadline(20, { clock });
  assert.equal(d.at, 520);
  assert.equal(d.budget, 20);
  assert.equal(deadlineOf(d.signal), 520);
  clock.advance(5);
  assert.equal(d.remaining(), 15);
  assert.equal(remainingTime(d.signal), 15);
  clock.advance(100);
  assert.equal(d.remaining(), 0, 'never negative');
  await sleep(40); // the timer is real
  assert.equal(d.signal.aborted, true);
  assert.ok(d.signal.reason instanceof TimeoutError);
});

test('Deadline: follows its parent signal, and dispose() unlinks it without aborting', () => {
  const parent = new AbortController();
  const child = new Deadline(10_000, { signal: parent.signal });
  assert.equal(getEventListeners(parent.signal, 'abort').length, 1);
  parent.abort('gone');
  assert.equal(child.signal.aborted, true);
  assert.equal(child.signal.reason, 'gone');
  assert.equal(getEventListeners(parent.signal, 'abort').length, 0);

  const parent2 = new AbortController();
  const other = new Deadline(10_000, { signal: parent2.signal });
  other.dispose();
  other.dispose(); // idempotent
  assert.equal(other.signal.aborted, false);
  assert.equal(getEventListeners(parent2.signal, 'abort').length, 0);
  parent2.abort();
  assert.equal(other.signal.aborted, false, 'unlinked');

  const born = new Deadline(10, { signal: AbortSignal.abort('early') });
  assert.equal(born.signal.reason, 'early');
});

test('signals made elsewhere carry no deadline', () => {
  assert.equal(deadlineOf(new AbortController().signal), undefined);
  assert.equal(deadlineOf(undefined), undefined);
  assert.equal(remainingTime(undefined), Infinity);
  assert.equal(remainingTime(new AbortController().signal), Infinity);
});

test('errorForAbort: TimeoutError reasons pass through, anything else becomes AbortedError with the cause', () => {
  const t = new TimeoutError('late');
  assert.equal(errorForAbort(AbortSignal.abort(t)), t);
  const e = errorForAbort(AbortSignal.abort('why'));
  assert.ok(e instanceof AbortedError);
  assert.equal(e.cause, 'why');
});

test('options are validated: duration must be a positive number a timer can hold', () => {
  for (const duration of [0, -1, Number.NaN, Infinity, 2 ** 31, '10']) {
    assert.throws(
      () => new TimeoutPolicy({ duration: duration as number }),
      (err: unknown) => err instanceof InvalidOptionError && err.option === 'duration',
      String(duration),
    );
  }
  assert.throws(() => new TimeoutPolicy(undefined as never), InvalidOptionError);
  assert.throws(() => new Deadline(-1), /Deadline: option "ms" must be/);
});
