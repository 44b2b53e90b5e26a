import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { AbortedError, BulkheadRejectedError, InvalidOptionError } from '../errors/index.js';
import { Bulkhead, type BulkheadRejectEvent } from './bulkhead.js';
import { DEFAULT_CONTEXT } from './policy.js';

/** A promise settled by hand. */
function gate<T = void>() {
  let open!: (value: T) => void;
  let fail!: (error: Error) => void;
  const promise = new Promise<T>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('runs up to maxConcurrent calls and refuses the next at once with BulkheadRejectedError', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 2 });
  const events: BulkheadRejectEvent[] = [];
  bulkhead.onReject((e) => events.push(e));
  const g = gate<string>();
  const a = bulkhead.execute(() => g.promise);
  const b = bulkhead.execute(() => g.promise);
  assert.equal(bulkhead.executing, 2);
  let ran = false;
  await assert.rejects(
    bulkhead.execute(() => {
      ran = true;
    }),
    (err) => err instanceof BulkheadRejectedError && err.maxConcurrent === 2 && err.maxQueue === 0 && err.retryable,
  );
  assert.equal(ran, false);
  assert.deepEqual(events, [{ executing: 2, queued: 0 }]);
  g.open('done');
  assert.deepEqual(await Promise.all([a, b]), ['done', 'done']);
  assert.equal(bulkhead.executing, 0);
});

test('queued calls wait their turn, first in first out, and start as soon as a slot frees', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 2 });
  const order: string[] = [];
  const first = gate();
  const running = bulkhead.execute(async () => {
    order.push('first');
    await first.promise;
  });
  const second = bulkhead.execute(() => order.push('second'));
  const third = bulkhead.execute(() => order.push('third'));
  assert.equal(bulkhead.queued, 2);
  await assert.rejects(bulkhead.execute(() => order.push('fourth')), BulkheadRejectedError);
  first.open();
  await Promise.all([running, second, third]);
  assert.deepEqual(order, ['first', 'second', 'third']);
  assert.equal(bulkhead.queued, 0);
  assert.equal(bulkhead.executing, 0);
});

test('a freed slot goes to the line, not to a caller arriving at the same moment', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 1 });
  const g = gate();
  const h = gate();
  const order: string[] = [];
  const a = bulkhead.execute(() => g.promise);
  const queued = bulkhead.execute(async () => {
    order.push('queued');
    await h.promise;
  });
  g.open();
  await a;
  // The queued call took the slot the moment `a` released it: a newcomer must wait behind it.
  assert.equal(bulkhead.executing, 1);
  assert.equal(bulkhead.queued, 0);
  const late = bulkhead.execute(() => order.push('late'));
  assert.equal(bulkhead.queued, 1);
  h.open();
  await Promise.all([queued, late]);
  assert.deepEqual(order, ['queued', 'late']);
});

test('a queued caller that aborts leaves the line at once, with AbortedError and no listener left', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 3 });
  const g = gate();
  const running = bulkhead.execute(() => g.promise);
  const controller = new AbortController();
  let ran = false;
  const leaving = bulkhead.execute(() => {
    ran = true;
  }, controller.signal);
  const staying = bulkhead.execute(() => 'stayed');
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
  controller.abort('changed my mind');
  await assert.rejects(leaving, (err) => err instanceof AbortedError && err.cause === 'changed my mind');
  assert.equal(bulkhead.queued, 1);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  g.open();
  await running;
  assert.equal(await staying, 'stayed');
  assert.equal(ran, false);
});

test('a queued caller that gets its slot leaves no listener on its signal', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 1 });
  const g = gate();
  const running = bulkhead.execute(() => g.promise);
  const controller = new AbortController();
  const queued = bulkhead.execute(({ signal }) => signal, controller.signal);
  g.open();
  await running;
  assert.equal(await queued, controller.signal, 'the operation gets the caller signal');
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('an aborted signal is refused before taking a slot', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1 });
  await assert.rejects(bulkhead.execute(() => 1, AbortSignal.abort()), AbortedError);
  assert.equal(bulkhead.executing, 0);
});

test('failures, thrown or rejected, free their slot', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1 });
  await assert.rejects(
    bulkhead.execute(() => {
      throw new Error('sync');
    }),
    { message: 'sync' },
  );
  assert.equal(bulkhead.executing, 0);
  await assert.rejects(bulkhead.execute(() => Promise.reject(new Error('async'))), { message: 'async' });
  assert.equal(bulkhead.executing, 0);
  assert.equal(await bulkhead.execute(() => 'free'), 'free');
});

test('a queued call that throws synchronously frees the slot for the next in line', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 2 });
  const g = gate();
  const running = bulkhead.execute(() => g.promise);
  const thrower = bulkhead.execute(() => {
    throw new Error('sync');
  });
  const next = bulkhead.execute(() => 'next');
  g.open();
  await running;
  await assert.rejects(thrower, { message: 'sync' });
  assert.equal(await next, 'next');
  await flush();
  assert.equal(bulkhead.executing, 0);
});

test('without a signal the operation gets the shared default context', async () => {
  const bulkhead = new Bulkhead({ maxConcurrent: 1 });
  assert.equal(await bulkhead.execute((ctx) => ctx), DEFAULT_CONTEXT);
  assert.equal(await bulkhead.execute((ctx) => ctx, DEFAULT_CONTEXT.signal), DEFAULT_CONTEXT);
});

test('options are validated, naming the option and the bad value', () => {
  const cases: Array<[unknown, string]> = [
    [{ maxConcurrent: 0 }, 'maxConcurrent'],
    [{ maxConcurrent: 1.5 }, 'maxConcurrent'],
    [{ maxConcurrent: Infinity }, 'maxConcurrent'],
    [{ maxConcurrent: 1, maxQueue: -1 }, 'maxQueue'],
    [{ maxConcurrent: 1, maxQueue: '5' }, 'maxQueue'],
    [undefined, 'options'],
  ];
  for (const [options, option] of cases) {
    assert.throws(
      () => new Bulkhead(options as never),
      (err: unknown) => err instanceof InvalidOptionError && err.option === option,
      option,
    );
  }
  assert.throws(() => new Bulkhead({ maxConcurrent: 0 }), /Bulkhead: option "maxConcurrent" must be an integer >= 1; got 0/);
});
