// The abort and timeout paths of the resilience policies leave nothing behind: no timer (referenced or
// not) and no 'abort' listener on any signal, once every call has settled. Also, in a child process:
// a pending retry or timeout keeps the process alive until it settles (their timers are referenced).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { fileURLToPath } from 'node:url';
import { constantBackoff } from '../src/resilience/backoff.js';
import { Bulkhead } from '../src/resilience/bulkhead.js';
import { ManualClock } from '../src/resilience/clock.js';
import type { PolicyContext } from '../src/resilience/policy.js';
import { RetryPolicy } from '../src/resilience/retry.js';
import { Deadline, TimeoutPolicy } from '../src/resilience/timeout.js';
import { wrap } from '../src/resilience/wrap.js';

const ROUNDS = 25;

// Timers counted through async_hooks: process.getActiveResourcesInfo() lists only referenced timers,
// so an unref()ed timer left running would escape it.
const liveTimers = new Set<number>();
const hook = createHook({
  init(id, type) {
    if (type === 'Timeout') liveTimers.add(id);
  },
  destroy(id) {
    liveTimers.delete(id);
  },
});

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const never = <T>(): Promise<T> => new Promise<T>(() => {});
// Waits without a timer of its own (it would be counted).
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await turn();
}
async function until(condition: () => boolean, limit = 500): Promise<void> {
  const start = performance.now();
  while (!condition() && performance.now() - start < limit) await turn();
}
const referencedTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

/** Runs `scenarios` while counting timers, then checks that no timer and no abort listener is left. */
async function expectNothingLeft(scenarios: (signals: AbortSignal[]) => Promise<void>): Promise<void> {
  // Some scenarios wait on unref()ed timers only; without this the loop would empty and node:test
  // would cancel the test. Made before the hook is on, so it is neither counted nor in the way.
  const keepAlive = setInterval(() => {}, 1_000);
  await turns(3);
  const baseline = referencedTimers();
  liveTimers.clear();
  hook.enable();
  const signals: AbortSignal[] = [];
  try {
    await scenarios(signals);
    // Destroy hooks are delivered asynchronously, after the timer was cleared or has fired.
    await until(() => liveTimers.size === 0);
  } finally {
    hook.disable();
    clearInterval(keepAlive);
  }
  assert.equal(liveTimers.size, 0, `${liveTimers.size} timer(s) still pending`);
  assert.ok(referencedTimers() <= baseline, `active resources: ${process.getActiveResourcesInfo().join(', ')}`);
  assert.ok(signals.length > 0);
  const withListeners = signals.filter((s) => getEventListeners(s, 'abort').length > 0);
  assert.equal(withListeners.length, 0, `${withListeners.length} of ${signals.length} signals still have abort listeners`);
}

test('the check itself sees an unref()ed timer and a listener left behind', async () => {
  let leaked: ReturnType<typeof setTimeout> | undefined;
  await assert.rejects(
    expectNothingLeft(async (signals) => {
      leaked = setTimeout(() => {}, 60_000);
      leaked.unref();
      signals.push(AbortSignal.abort());
    }),
    /timer\(s\) still pending/,
  );
  clearTimeout(leaked);
  await turns(3);
  const controller = new AbortController();
  controller.signal.addEventListener('abort', () => {});
  await assert.rejects(
    expectNothingLeft(async (signals) => {
      signals.push(controller.signal);
    }),
    /still have abort listeners/,
  );
});

test('TimeoutPolicy: success, failure, timeout, caller abort and deadlines leave nothing', async () => {
  await expectNothingLeft(async (signals) => {
    const timeout = new TimeoutPolicy({ duration: 5 });
    const unrefTimeout = new TimeoutPolicy({ duration: 5, unref: true });
    const keep = (ctx: PolicyContext): void => void signals.push(ctx.signal);
    for (let i = 0; i < ROUNDS; i++) {
      const caller = new AbortController();
      signals.push(caller.signal);
      await timeout.execute((ctx) => (keep(ctx), 'fast'), caller.signal);
      await assert.rejects(timeout.execute((ctx) => (keep(ctx), Promise.reject(new Error('x'))), caller.signal));
      await assert.rejects(timeout.execute((ctx) => (keep(ctx), never()), caller.signal));
      await assert.rejects(unrefTimeout.execute((ctx) => (keep(ctx), never()), caller.signal));

      const aborting = new AbortController();
      signals.push(aborting.signal);
      const slow = new TimeoutPolicy({ duration: 60_000 });
      const call = slow.execute((ctx) => (keep(ctx), never()), aborting.signal);
      aborting.abort();
      await assert.rejects(call);

      const deadline = new Deadline(60_000, { signal: caller.signal });
      signals.push(deadline.signal);
      await slow.execute((ctx) => (keep(ctx), 1), deadline.signal);
      deadline.dispose();

      const clock = new ManualClock();
      const passed = new Deadline(1, { clock, signal: caller.signal });
      clock.advance(1);
      signals.push(passed.signal);
      await assert.rejects(slow.execute(() => 1, passed.signal));
      await assert.rejects(slow.execute(() => never(), new Deadline(3).signal));
      passed.dispose();
    }
  });
});

test('RetryPolicy: aborted sleeps, real sleeps and deadline give-ups leave nothing', async () => {
  await expectNothingLeft(async (signals) => {
    const failTwice = (): (() => Promise<string>) => {
      let n = 0;
      return () => (n++ < 2 ? Promise.reject(new Error('down')) : Promise.resolve('up'));
    };
    const sleepy = new RetryPolicy({ backoff: constantBackoff(60_000) });
    const quick = new RetryPolicy({ backoff: constantBackoff(1) });
    const unrefQuick = new RetryPolicy({ backoff: constantBackoff(1), unref: true });
    for (let i = 0; i < ROUNDS; i++) {
      const caller = new AbortController();
      signals.push(caller.signal);
      const sleeping = assert.rejects(sleepy.execute(failTwice(), caller.signal));
      await turns(2);
      caller.abort();
      await sleeping;

      const other = new AbortController();
      signals.push(other.signal);
      assert.equal(await quick.execute(failTwice(), other.signal), 'up');
      assert.equal(await unrefQuick.execute(failTwice()), 'up');

      const deadline = new Deadline(20, { signal: other.signal });
      signals.push(deadline.signal);
      await assert.rejects(sleepy.execute(failTwice(), deadline.signal), { message: 'down' });
      deadline.dispose();
    }
  });
});

test('Bulkhead: queued callers that abort, and ones that get their turn, leave nothing', async () => {
  await expectNothingLeft(async (signals) => {
    const bulkhead = new Bulkhead({ maxConcurrent: 1, maxQueue: 3 });
    for (let i = 0; i < ROUNDS; i++) {
      let release!: () => void;
      const running = bulkhead.execute(() => new Promise<void>((resolve) => (release = resolve)));
      const leaving = new AbortController();
      const staying = new AbortController();
      signals.push(leaving.signal, staying.signal);
      const a = bulkhead.execute(() => 'a', leaving.signal);
      const b = bulkhead.execute(({ signal }) => (signals.push(signal), 'b'), staying.signal);
      leaving.abort();
      await assert.rejects(a);
      release();
      await running;
      assert.equal(await b, 'b');
    }
  });
});

test('wrap(timeout, retry, timeout, bulkhead): timeouts and aborts through the stack leave nothing', async () => {
  await expectNothingLeft(async (signals) => {
    const policy = wrap(
      new TimeoutPolicy({ duration: 30 }),
      new RetryPolicy({ maxAttempts: Infinity, backoff: constantBackoff(2) }),
      new TimeoutPolicy({ duration: 4 }),
      new Bulkhead({ maxConcurrent: 2, maxQueue: 2 }),
    );
    for (let i = 0; i < 10; i++) {
      const caller = new AbortController();
      signals.push(caller.signal);
      await assert.rejects(policy.execute((ctx) => (signals.push(ctx.signal), never()), caller.signal));
      // Handled from the start: under load the deadline may end the call before the abort does.
      const aborted = assert.rejects(policy.execute((ctx) => (signals.push(ctx.signal), never()), caller.signal));
      await turns(2);
      caller.abort();
      await aborted;
    }
  });
});

test('a pending retry sleep or timeout keeps a script alive until it settles', () => {
  const module = (name: string): string => new URL(`../src/resilience/${name}.ts`, import.meta.url).href;
  const script = `
    import { RetryPolicy } from ${JSON.stringify(module('retry'))};
    import { constantBackoff } from ${JSON.stringify(module('backoff'))};
    import { TimeoutPolicy } from ${JSON.stringify(module('timeout'))};
    let n = 0;
    const retry = new RetryPolicy({ backoff: constantBackoff(50) });
    console.log(await retry.execute(() => (n++ === 0 ? Promise.reject(new Error('once')) : 'retried')));
    const timeout = new TimeoutPolicy({ duration: 50 });
    console.log(await timeout.execute(() => new Promise(() => {})).catch((err) => err.code));
  `;
  const root = fileURLToPath(new URL('..', import.meta.url));
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  assert.equal(child.stderr, '');
  assert.equal(child.status, 0, 'an unref()ed timer would end the script early with exit code 13');
  assert.deepEqual(child.stdout.trim().split('\n'), ['retried', 'SPOF_ERR_TIMEOUT']);
});
