import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import fc from 'fast-check';
import {
  AbortedError,
  BrokenCircuitError,
  CircuitBreaker,
  IsolatedCircuitError,
  InvalidOptionError,
  ManualClock,
  type CircuitBreakerOptions,
  type StateChangeEvent,
} from './index.js';

const ok = async (): Promise<string> => 'ok';
const boom = async (): Promise<never> => {
  throw new Error('boom');
};

function deferred<T = string>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function make<F = never>(options: CircuitBreakerOptions<F> = {}): { b: CircuitBreaker<F>; clock: ManualClock; changes: StateChangeEvent[] } {
  const clock = new ManualClock(1_000);
  const b = new CircuitBreaker<F>({ clock, window: { type: 'count', size: 10 }, minimumCalls: 4, openDuration: 1_000, halfOpenProbes: 2, ...options });
  const changes: StateChangeEvent[] = [];
  b.onStateChange((e) => changes.push(e));
  return { b, clock, changes };
}

async function fail(b: CircuitBreaker<unknown>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await b.execute(boom).catch(() => undefined);
}
async function succeed(b: CircuitBreaker<unknown>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await b.execute(ok);
}

test('closed -> open on failure rate once minimumCalls is reached, never before', async () => {
  const { b, changes } = make();
  await fail(b, 3);
  assert.equal(b.state, 'closed', 'below minimumCalls the circuit stays closed even at 100% failures');
  await fail(b, 1);
  assert.equal(b.state, 'open');
  assert.deepEqual(changes, [{ from: 'closed', to: 'open', reason: 'failure-rate' }]);
});

test('failure rate below the threshold keeps the circuit closed', async () => {
  const { b } = make({ failureRateThreshold: 0.5 });
  await succeed(b, 6);
  await fail(b, 4); // 4/10 = 40%
  assert.equal(b.state, 'closed');
  await fail(b, 1); // window of 10: 5 failures / 10
  assert.equal(b.state, 'open');
});

test('an open circuit rejects with a typed error without calling, and tryExecute does not throw', async () => {
  const { b } = make();
  await fail(b, 4);
  let called = false;
  await assert.rejects(
    b.execute(async () => {
      called = true;
    }),
    (e: unknown) => e instanceof BrokenCircuitError && e.code === 'SPOF_ERR_BROKEN_CIRCUIT',
  );
  const r1 = await b.tryExecute(ok);
  const r2 = await b.tryExecute(ok);
  assert.equal(r1.ok, false);
  assert.ok(!r1.ok && r1.error instanceof BrokenCircuitError);
  assert.equal(r1, r2, 'one result object serves every refusal of an open period');
  assert.equal(called, false);
  assert.equal(b.metrics().rejected, 3);
});

test('open -> half-open after the open duration; probes that pass close it', async () => {
  const { b, clock, changes } = make();
  await fail(b, 4);
  clock.advance(999);
  assert.equal((await b.tryExecute(ok)).ok, false, 'still open 1 ms before the duration');
  clock.advance(1);
  assert.equal(await b.execute(ok), 'ok');
  assert.equal(b.state, 'half-open');
  assert.equal(await b.execute(ok), 'ok');
  assert.equal(b.state, 'closed');
  assert.deepEqual(
    changes.map((c) => `${c.from}>${c.to}:${c.reason}`),
    ['closed>open:failure-rate', 'open>half-open:open-elapsed', 'half-open>closed:probes-passed'],
  );
  assert.equal(b.metrics().calls, 0, 'closing starts a fresh window');
});

test('half-open -> open when probes fail, with exponential backoff capped at max', async () => {
  const { b, clock, changes } = make({ openDuration: { initial: 100, max: 350, multiplier: 2 }, halfOpenProbes: 1 });
  await fail(b, 4);
  const durations: number[] = [];
  for (let round = 0; round < 4; round++) {
    const before = changes.length;
    let elapsed = 0;
    // Until a call finds the circuit half-open: it is the probe, and it fails.
    for (;;) {
      await b.tryExecute(boom);
      if (changes.length > before) break;
      clock.advance(10);
      elapsed += 10;
      assert.ok(elapsed <= 10_000, 'the circuit never went half-open');
    }
    assert.equal(b.state, 'open');
    durations.push(elapsed);
  }
  assert.deepEqual(durations, [100, 200, 350, 350]);
  assert.ok(changes.some((c) => c.reason === 'probes-failed'));
  // A recovery resets the backoff.
  clock.advance(350);
  await b.execute(ok);
  assert.equal(b.state, 'closed');
  await fail(b, 4);
  clock.advance(100);
  assert.equal(await b.execute(ok), 'ok');
});

test('half-open lets exactly N probes through and refuses the rest', async () => {
  const { b, clock } = make({ halfOpenProbes: 3 });
  await fail(b, 4);
  clock.advance(1_000);
  const gates = [deferred(), deferred(), deferred()];
  const probes = gates.map((g) => b.execute(() => g.promise));
  assert.equal(b.state, 'half-open');
  await assert.rejects(b.execute(ok), BrokenCircuitError);
  assert.equal(b.inFlight, 3);
  for (const g of gates) g.resolve('done');
  assert.deepEqual(await Promise.all(probes), ['done', 'done', 'done']);
  assert.equal(b.state, 'closed');
});

test('half-open decides as soon as the outcome is certain', async () => {
  const { b, clock } = make({ halfOpenProbes: 4, failureRateThreshold: 0.5 });
  await fail(b, 4);
  clock.advance(1_000);
  const gates = [deferred(), deferred(), deferred(), deferred()];
  const probes = gates.map((g) => b.tryExecute(() => g.promise));
  gates[0]!.reject(new Error('x'));
  gates[1]!.reject(new Error('x'));
  await Promise.all([probes[0], probes[1]]);
  assert.equal(b.state, 'open', '2 of 4 failed: 50% is reached whatever the others do');
  gates[2]!.resolve('late');
  gates[3]!.resolve('late');
  await Promise.all(probes);
  assert.equal(b.state, 'open', 'results of the finished half-open period change nothing');
});

test('a late result from an earlier generation cannot close or reopen the circuit', async () => {
  const { b, clock } = make({ halfOpenProbes: 1 });
  const slowOk = deferred();
  const slowFail = deferred();
  const p1 = b.execute(() => slowOk.promise);
  const p2 = b.execute(() => slowFail.promise).catch(() => 'failed');
  await fail(b, 4);
  assert.equal(b.state, 'open');
  clock.advance(1_000);
  const probe = deferred();
  const p3 = b.execute(() => probe.promise);
  assert.equal(b.state, 'half-open');
  slowOk.resolve('late success'); // from the closed generation
  slowFail.reject(new Error('late failure'));
  assert.equal(await p1, 'late success', 'the caller still gets its result');
  assert.equal(await p2, 'failed');
  assert.equal(b.state, 'half-open', 'neither late result moved the circuit');
  probe.resolve('probe');
  await p3;
  assert.equal(b.state, 'closed');
});

test('a probe that never settles is reclaimed after probeTimeout and counts as failed', async () => {
  const { b, clock, changes } = make({ halfOpenProbes: 1, probeTimeout: 5_000 });
  await fail(b, 4);
  clock.advance(1_000);
  const hung = b.tryExecute(() => new Promise<string>(() => undefined));
  assert.equal(b.state, 'half-open');
  clock.advance(4_999);
  assert.equal((await b.tryExecute(ok)).ok, false, 'the slot is still taken');
  assert.equal(b.state, 'half-open');
  clock.advance(1);
  assert.equal((await b.tryExecute(ok)).ok, false);
  assert.equal(b.state, 'open', 'the reclaimed probe failed the recovery');
  assert.equal(changes.at(-1)?.reason, 'probes-failed');
  clock.advance(2_000);
  assert.equal(await b.execute(ok), 'ok', 'a fresh probe may go');
  assert.equal(b.state, 'closed');
  void hung;
});

test('slow calls open the circuit by slow-call rate', async () => {
  const { b, clock, changes } = make({ slowCallDuration: 100, slowCallRateThreshold: 0.5, minimumCalls: 4 });
  for (let i = 0; i < 4; i++) {
    const g = deferred();
    const p = b.execute(() => g.promise);
    clock.advance(i < 2 ? 100 : 10);
    g.resolve('slow-or-not');
    await p;
  }
  assert.equal(b.state, 'open');
  assert.equal(changes[0]?.reason, 'slow-call-rate');
});

test('calls still in flight past slowCallDuration already count as slow', async () => {
  const { b, clock } = make({ slowCallDuration: 100, slowCallRateThreshold: 0.5, minimumCalls: 4 });
  const hung = [0, 1, 2, 3].map(() => b.tryExecute(() => new Promise<string>(() => undefined)));
  assert.equal(b.state, 'closed');
  clock.advance(100);
  // The next call notices the four hanging calls: 4 slow of 4 calls.
  assert.equal((await b.tryExecute(ok)).ok, false);
  assert.equal(b.state, 'open');
  void hung;
});

test('a slow call counted while in flight is not counted again when it settles', async () => {
  const { b, clock } = make({ slowCallDuration: 100, minimumCalls: 100, window: { type: 'count', size: 100 } });
  const g = deferred();
  const p = b.execute(() => g.promise);
  clock.advance(150);
  await b.execute(ok); // counts the overdue call as slow
  assert.equal(b.metrics().slow, 1);
  g.resolve('x');
  await p;
  assert.deepEqual([b.metrics().calls, b.metrics().slow], [2, 1]);
});

test('time window forgets outcomes older than its duration', async () => {
  const { b, clock } = make({ window: { type: 'time', duration: 1_000, buckets: 10 }, minimumCalls: 4 });
  await fail(b, 3);
  clock.advance(1_000);
  await fail(b, 1);
  assert.equal(b.state, 'closed', 'the first three failures aged out');
  assert.equal(b.metrics().calls, 1);
  await fail(b, 3);
  assert.equal(b.state, 'open');
});

test('returned values can count as failures (an HTTP 503 is not thrown)', async () => {
  const { b } = make({ isFailureResult: (r) => (r as { status: number }).status >= 500 });
  for (let i = 0; i < 4; i++) assert.deepEqual(await b.execute(async () => ({ status: 503 })), { status: 503 });
  assert.equal(b.state, 'open');
});

test('isFailure decides which errors count; aborts never count by default', async () => {
  const { b } = make({ isFailure: (e) => (e as Error).message !== 'not-found' });
  for (let i = 0; i < 10; i++) await b.execute(async () => Promise.reject(new Error('not-found'))).catch(() => undefined);
  assert.equal(b.state, 'closed');
  const { b: b2 } = make();
  for (let i = 0; i < 10; i++) await b2.execute(async () => Promise.reject(new AbortedError())).catch(() => undefined);
  for (let i = 0; i < 10; i++) await b2.execute(async () => Promise.reject(new DOMException('x', 'AbortError'))).catch(() => undefined);
  assert.equal(b2.state, 'closed');
  assert.equal(b2.metrics().failures, 0);
});

test('fallback: a fixed value or a function of the cause, on refusal and optionally on failure', async () => {
  const { b } = make({ fallbackValue: 'cached' });
  await fail(b, 4);
  assert.equal(await b.execute(ok), 'cached');
  assert.deepEqual(await b.tryExecute(ok), { ok: true, value: 'cached' });

  const causes: unknown[] = [];
  const { b: b2 } = make({ fallback: (cause) => {
    causes.push(cause);
    return 'fb';
  }, fallbackOnFailure: true });
  assert.equal(await b2.execute(boom), 'fb', 'failure replaced by the fallback');
  assert.equal(await b2.execute(async () => { throw new Error('e2'); }), 'fb');
  assert.equal((causes[0] as Error).message, 'boom');
  await b2.execute(boom);
  await b2.execute(boom);
  assert.equal(b2.state, 'open', 'failures still count even when the fallback hides them');
  assert.equal(await b2.execute(ok), 'fb');
  assert.ok(causes.at(-1) instanceof BrokenCircuitError);

  const { b: b3 } = make({ fallback: async () => 'async-fb' });
  await fail(b3, 4);
  assert.equal(await b3.execute(ok), 'async-fb');
  await assert.rejects(make({ fallbackValue: 'x' }).b.execute(boom), /boom/, 'without fallbackOnFailure a failure is thrown');
});

test('a synchronous throw or a plain value from the operation is handled', async () => {
  const { b } = make();
  await assert.rejects(b.execute(() => {
    throw new Error('sync');
  }), /sync/);
  assert.equal(await b.execute(() => 42), 42);
  assert.deepEqual(await b.tryExecute(() => {
    throw new Error('sync2');
  }).then((r) => r.ok), false);
  assert.equal(b.metrics().failures, 2);
  assert.equal(b.inFlight, 0);
});

test('isolate forces open until every handle is disposed; disable passes everything and never trips', async () => {
  const { b, changes } = make();
  const h1 = b.isolate();
  const h2 = b.isolate();
  assert.equal(b.state, 'isolated');
  await assert.rejects(b.execute(ok), IsolatedCircuitError);
  h1.dispose();
  h1.dispose();
  assert.equal(b.state, 'isolated');
  h2.dispose();
  assert.equal(b.state, 'closed');
  b.disable();
  await fail(b, 10);
  assert.equal(b.state, 'disabled');
  assert.equal(b.metrics().failures, 10, 'outcomes are still counted');
  b.enable();
  assert.equal(b.state, 'closed');
  await fail(b, 1);
  assert.equal(b.state, 'open', 'once enabled it judges from what it counted');
  b.reset();
  assert.equal(b.state, 'closed');
  assert.deepEqual(
    changes.map((c) => c.reason),
    ['isolate', 'reset', 'disable', 'reset', 'failure-rate', 'reset'],
  );
});

test('toJSON exports a state a new breaker restores', async () => {
  const { b, clock } = make();
  await fail(b, 4);
  clock.advance(400);
  const snap = JSON.parse(JSON.stringify(b.toJSON())) as ReturnType<typeof b.toJSON>;
  assert.equal(snap.state, 'open');
  assert.equal(snap.remainingOpenMs, 600);
  const clock2 = new ManualClock(50_000);
  const b2 = new CircuitBreaker({ clock: clock2, window: { type: 'count', size: 10 }, minimumCalls: 4, openDuration: 1_000, initialState: snap });
  assert.equal(b2.state, 'open');
  clock2.advance(599);
  assert.equal((await b2.tryExecute(ok)).ok, false);
  clock2.advance(1);
  assert.equal(await b2.execute(ok), 'ok');

  const { b: c } = make({ window: { type: 'time', duration: 10_000, buckets: 10 } });
  await fail(c, 2);
  await succeed(c, 1);
  const c2 = new CircuitBreaker({ window: { type: 'time', duration: 10_000, buckets: 10 }, initialState: c.toJSON() });
  assert.deepEqual([c2.metrics().calls, c2.metrics().failures], [3, 2]);
});

test('events: disposables, and the same events on diagnostics channels', async () => {
  const { b } = make({ name: 'prices' });
  const seen: string[] = [];
  const subs = [
    b.onSuccess(() => seen.push('success')),
    b.onFailure(() => seen.push('failure')),
    b.onReject(() => seen.push('reject')),
  ];
  const published: Array<{ ch: string; name: unknown }> = [];
  const names = ['spofless:breaker:state', 'spofless:breaker:success', 'spofless:breaker:failure', 'spofless:breaker:reject'];
  const handlers = names.map((ch) => {
    const h = (msg: unknown): void => {
      published.push({ ch, name: (msg as { name: unknown }).name });
    };
    diagnostics_channel.subscribe(ch, h);
    return h;
  });
  try {
    await b.execute(ok);
    await fail(b, 3); // 3 of 4 failed: opens
    await b.tryExecute(ok);
    assert.deepEqual(seen, ['success', 'failure', 'failure', 'failure', 'reject']);
    assert.deepEqual(
      published.map((p) => p.ch.split(':')[2]),
      ['success', 'failure', 'failure', 'failure', 'state', 'reject'],
    );
    assert.ok(published.every((p) => p.name === 'prices'));
    for (const s of subs) s.dispose();
    await b.tryExecute(ok);
    assert.equal(seen.length, 5, 'disposed listeners hear nothing');
  } finally {
    names.forEach((ch, i) => diagnostics_channel.unsubscribe(ch, handlers[i]!));
  }
});

test('an aborted signal refuses the call before it starts', async () => {
  const { b } = make();
  const ac = new AbortController();
  ac.abort(new Error('gone'));
  let called = false;
  await assert.rejects(b.execute(async () => {
    called = true;
  }, ac.signal), AbortedError);
  const r = await b.tryExecute(ok, ac.signal);
  assert.ok(!r.ok && r.error instanceof AbortedError);
  assert.equal(called, false);
  const live = new AbortController();
  assert.equal(await b.execute(({ signal }) => (signal === live.signal ? 'same' : 'other'), live.signal), 'same');
});

test('every option is validated, naming the option, the value and what is allowed', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ failureRateThreshold: -0.1 }, /"failureRateThreshold" must be a number > 0 and <= 1; got -0.1/],
    [{ failureRateThreshold: 1.5 }, /"failureRateThreshold" .* got 1.5/],
    [{ slowCallRateThreshold: 2 }, /"slowCallRateThreshold"/],
    [{ minimumCalls: 0 }, /"minimumCalls" must be an integer >= 1; got 0/],
    [{ window: { type: 'count', size: 0 } }, /"window.size" must be an integer >= 1/],
    [{ window: { type: 'time', duration: 0 } }, /"window.duration" must be a number > 0; got 0/],
    [{ window: { type: 'sliding' } }, /"window.type" must be one of "count", "time"/],
    [{ fallback: 'cached' }, /"fallback" must be a function; got "cached"/],
    [{ openDuration: -1 }, /"openDuration"/],
    [{ openDuration: { initial: 100, max: 50 } }, /"openDuration.max" must be a number >= 100/],
    [{ halfOpenProbes: 1.5 }, /"halfOpenProbes" must be an integer/],
    [{ slowCallDuration: Number.NaN }, /"slowCallDuration"/],
    [{ isFailure: 3 }, /"isFailure" must be a function/],
    [{ fallbackOnFailure: 'yes' }, /"fallbackOnFailure" must be a boolean/],
    [{ failureRate: 0.5 }, /option "failureRate" must be one of the known options/],
    [{ clock: {} }, /"clock" must be an object with a now\(\) method/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => new CircuitBreaker(options), (e: unknown) => e instanceof InvalidOptionError && message.test(e.message), JSON.stringify(options));
  }
});

// ---- properties --------------------------------------------------------------------------------

type Step = { kind: 'call' } | { kind: 'settle'; index: number; fail: boolean } | { kind: 'tick'; ms: number };
const stepArb = fc.oneof(
  fc.constant<Step>({ kind: 'call' }),
  fc.record({ kind: fc.constant('settle' as const), index: fc.nat(), fail: fc.boolean() }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 600 }) }),
);

test('property: never more than N probes of one half-open period run at once', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(stepArb, { maxLength: 150 }), async (n, steps) => {
      const clock = new ManualClock(0);
      const b = new CircuitBreaker({ clock, window: { type: 'count', size: 10 }, minimumCalls: 1, halfOpenProbes: n, openDuration: 100, probeTimeout: 1e9 });
      let period = 0;
      b.onStateChange((e) => {
        if (e.to === 'half-open') period++;
      });
      const running = new Map<number, number>();
      let worst = 0;
      const pending: Array<ReturnType<typeof deferred<string>>> = [];
      await b.execute(boom).catch(() => undefined);
      for (const s of steps) {
        if (s.kind === 'call') {
          void b.tryExecute(() => {
            const d = deferred();
            pending.push(d);
            if (b.state === 'half-open') {
              const mine = period;
              running.set(mine, (running.get(mine) ?? 0) + 1);
              worst = Math.max(worst, running.get(mine)!);
              void d.promise.catch(() => undefined).finally(() => running.set(mine, running.get(mine)! - 1));
            }
            return d.promise;
          });
        } else if (s.kind === 'settle' && pending.length > 0) {
          const d = pending.splice(s.index % pending.length, 1)[0]!;
          if (s.fail) d.reject(new Error('x'));
          else d.resolve('v');
          await new Promise((r) => setImmediate(r));
        } else if (s.kind === 'tick') clock.advance(s.ms);
        if (worst > n) return false;
      }
      return true;
    }),
    { numRuns: 200 },
  );
});

test('property: the circuit never opens below minimumCalls', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 2, max: 30 }), fc.array(fc.boolean(), { maxLength: 60 }), async (minimumCalls, outcomes) => {
      const b = new CircuitBreaker({ clock: new ManualClock(0), window: { type: 'count', size: 100 }, minimumCalls, failureRateThreshold: 0.01 });
      let n = 0;
      for (const failed of outcomes) {
        await b.tryExecute(failed ? boom : ok);
        n++;
        if (n < minimumCalls && b.state !== 'closed') return false;
        if (n >= minimumCalls && outcomes.slice(0, n).some(Boolean) && b.state !== 'open') return false;
        if (b.state === 'open') return true;
      }
      return true;
    }),
    { numRuns: 200 },
  );
});

test('property: a result from an earlier generation never changes state', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { maxLength: 100 }), async (steps) => {
      const clock = new ManualClock(0);
      const b = new CircuitBreaker({ clock, window: { type: 'count', size: 20 }, minimumCalls: 2, halfOpenProbes: 2, openDuration: 300, probeTimeout: 1e9 });
      // Calls tagged with the number of state changes seen when they started: that is their generation.
      let gen = 0;
      b.onStateChange(() => gen++);
      const pending: Array<{ d: ReturnType<typeof deferred<string>>; gen: number }> = [];
      for (const s of steps) {
        if (s.kind === 'call') {
          const entry = { d: deferred(), gen: -1 };
          void b.tryExecute(() => {
            // Tagged when it runs: admission may itself move the circuit (open -> half-open).
            entry.gen = gen;
            return entry.d.promise;
          });
          // A refused call never ran; only admitted ones can settle later.
          if (entry.gen !== -1) pending.push(entry);
        } else if (s.kind === 'settle' && pending.length > 0) {
          const e = pending.splice(s.index % pending.length, 1)[0]!;
          const stateBefore = b.state;
          const genBefore = gen;
          if (s.fail) e.d.reject(new Error('x'));
          else e.d.resolve('v');
          await e.d.promise.catch(() => undefined);
          await Promise.resolve();
          await Promise.resolve();
          if (e.gen !== genBefore && (b.state !== stateBefore || gen !== genBefore)) return false;
        } else if (s.kind === 'tick') clock.advance(s.ms);
      }
      return true;
    }),
    { numRuns: 200 },
  );
});

test('breakers made from one options object follow later changes to it', async () => {
  const options: { window: { type: 'count'; size: number }; minimumCalls: number; clock: ManualClock } = { window: { type: 'count', size: 10 }, minimumCalls: 2, clock: new ManualClock() };
  const a = new CircuitBreaker(options);
  options.minimumCalls = 5; // changed between two constructions: the second breaker must see it
  const b = new CircuitBreaker(options);
  options.window.size = 0; // nested change: now invalid
  assert.throws(() => new CircuitBreaker(options), /"window.size" must be an integer >= 1 and <= 1000000; got 0/);
  for (const x of [a, b]) for (let i = 0; i < 2; i++) await x.tryExecute(boom);
  assert.equal(a.state, 'open');
  assert.equal(b.state, 'closed', 'b waits for 5 calls');
});

test('with the default coarse clock, a call that waits on a timer is timed and a quick one is not slow', async () => {
  const b = new CircuitBreaker({ window: { type: 'time', duration: 10_000 }, minimumCalls: 1_000, slowCallDuration: 200 });
  const sleep = (ms: number): Promise<string> => new Promise((r) => setTimeout(() => r('slept'), ms));
  await Promise.all(Array.from({ length: 5 }, () => b.execute(async () => 'quick')));
  assert.equal(b.metrics().slow, 0);
  assert.equal(await b.execute(() => sleep(300)), 'slept');
  assert.equal(b.metrics().slow, 1, 'a 300 ms call is slow against 200 ms');
  await Promise.all(Array.from({ length: 5 }, () => b.execute(() => sleep(1))));
  assert.equal(b.metrics().slow, 1, '1 ms calls are not');
  // Calls hanging past the threshold are counted by the next call that starts.
  const hung = [1, 2, 3].map(() => b.tryExecute(() => new Promise<string>(() => undefined)));
  await sleep(300);
  await b.execute(async () => 'next');
  assert.equal(b.metrics().slow, 4);
  void hung;
});
