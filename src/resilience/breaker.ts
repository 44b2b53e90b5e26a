/**
 * The circuit breaker: fails fast while a dependency is broken, returns a predefined fallback instead,
 * and lets calls through again once the dependency recovers.
 *
 * States and transitions (each one has a test in breaker.test.ts):
 *
 * | from        | to          | when                                                                   |
 * |-------------|-------------|------------------------------------------------------------------------|
 * | closed      | open        | window holds >= minimumCalls and failure rate or slow-call rate >= its threshold |
 * | open        | half-open   | a call arrives after the open duration has passed                     |
 * | half-open   | closed      | the probes' outcome can no longer reach either threshold               |
 * | half-open   | open        | the probes' failure or slow rate reaches its threshold (open longer)   |
 * | any         | isolated    | `isolate()`; back to closed when every isolation handle is disposed     |
 * | any         | disabled    | `disable()`: calls pass, outcomes are counted, state never changes     |
 * | any         | closed      | `reset()` / `enable()`                                                 |
 *
 * Every transition starts a new *generation*. A call remembers the generation it started in, and a
 * result from an earlier generation (a call that started before the circuit opened, or a probe of an
 * earlier half-open period) changes nothing.
 *
 * Speed: the success path costs one `.then` on the caller's promise and a few field updates. Calls that
 * start in the same clock tick share one *cohort* object holding their start time and generation, so
 * a call allocates nothing of its own; the clock is the coarse one (see clock.ts), read lazily.
 */
import { AbortedError, BrokenCircuitError, IsolatedCircuitError, InvalidOptionError, isSpoflessError, ErrorCode } from '../errors/index.js';
import { coarseClock, coarseEpoch, type Clock } from './clock.js';
import { channels } from './diagnostics.js';
import { Emitter, type Disposable } from './events.js';
import { DEFAULT_CONTEXT, type Operation, type PolicyContext, type Result } from './policy.js';
import { checkFunction, checkKnownKeys, checkNumber, checkObject, checkOneOf } from './validate.js';
import { CountWindow, TimeWindow, type OutcomeWindow, type WindowSnapshot } from './window.js';

/** The states a breaker can be in. */
export const BreakerStateName = {
  Closed: 'closed',
  Open: 'open',
  HalfOpen: 'half-open',
  Isolated: 'isolated',
  Disabled: 'disabled',
} as const;
export type BreakerStateName = (typeof BreakerStateName)[keyof typeof BreakerStateName];

/** How the breaker remembers recent outcomes. */
export type WindowOptions =
  | { readonly type: 'count'; readonly size: number }
  | { readonly type: 'time'; readonly duration: number; readonly buckets?: number };

/** How long the circuit stays open: fixed, or growing after each failed recovery up to a cap. */
export type OpenDuration = number | { readonly initial: number; readonly max: number; readonly multiplier?: number };

export interface CircuitBreakerOptions<F = never> {
  /** A name for events and diagnostics channels. */
  readonly name?: string;
  /** Default `{ type: 'time', duration: 10_000, buckets: 10 }`. */
  readonly window?: WindowOptions;
  /** Calls the window must hold before any rate can open the circuit. Default 20. */
  readonly minimumCalls?: number;
  /** Open when failures / calls >= this. In (0, 1]; default 0.5. */
  readonly failureRateThreshold?: number;
  /** A call taking at least this many ms is slow; calls still running this long already count. Off if unset. */
  readonly slowCallDuration?: number;
  /** Open when slow calls / calls >= this. In (0, 1]; default 1. Needs `slowCallDuration`. */
  readonly slowCallRateThreshold?: number;
  /** Default 10_000 ms fixed. */
  readonly openDuration?: OpenDuration;
  /** Probe calls let through in half-open. Default 3. */
  readonly halfOpenProbes?: number;
  /** A probe still unsettled after this many ms is reclaimed and counted as failed. Default: slowCallDuration, else 10_000. */
  readonly probeTimeout?: number;
  /** Which thrown errors count as failures. Default: all but aborts (the caller gave up; the dependency did not fail). */
  readonly isFailure?: (error: unknown) => boolean;
  /** Which returned values count as failures (e.g. `(res) => res.status >= 500`). Default: none. */
  readonly isFailureResult?: (value: unknown) => boolean;
  /** A function of the cause returning the value to use instead of a rejection. */
  readonly fallback?: (cause: unknown) => F | PromiseLike<F>;
  /** A fixed value to use instead of a rejection (the "predefined value"). */
  readonly fallbackValue?: F;
  /** Use the fallback when a call fails too, not only when the circuit refuses it. Default false. */
  readonly fallbackOnFailure?: boolean;
  /** Default: the shared coarse monotonic clock. Tests pass a `ManualClock`. */
  readonly clock?: Clock;
  /** Start from a state exported by `toJSON()`. */
  readonly initialState?: BreakerSnapshot;
}

/** What `toJSON()` exports and `initialState` restores. Times are relative, so a snapshot survives a restart. */
export interface BreakerSnapshot {
  readonly state: BreakerStateName;
  /** For open: ms left before a call may probe. */
  readonly remainingOpenMs?: number;
  /** Consecutive failed recoveries (drives the open-duration backoff). */
  readonly attempt: number;
  readonly window: WindowSnapshot;
}

export interface StateChangeEvent {
  readonly from: BreakerStateName;
  readonly to: BreakerStateName;
  readonly reason: 'failure-rate' | 'slow-call-rate' | 'open-elapsed' | 'probes-passed' | 'probes-failed' | 'isolate' | 'disable' | 'reset' | 'restore';
}
export interface SuccessEvent {
  readonly slow: boolean;
}
export interface FailureEvent {
  /** The thrown error, or undefined when a returned value was judged a failure. */
  readonly error: unknown;
  /** The returned value judged a failure, when there was one. */
  readonly value: unknown;
  readonly slow: boolean;
}
export interface RejectEvent {
  readonly state: BreakerStateName;
  readonly error: BrokenCircuitError | IsolatedCircuitError;
}

/** Breaker counters: the window's and the lifetime totals. */
export interface BreakerMetrics {
  readonly state: BreakerStateName;
  readonly calls: number;
  readonly failures: number;
  readonly slow: number;
  readonly failureRate: number;
  readonly slowCallRate: number;
  readonly inFlight: number;
  readonly rejected: number;
}

type State =
  | { readonly value: 'closed' }
  | {
      readonly value: 'open';
      readonly openedAt: number;
      readonly openFor: number;
      readonly attempt: number;
      error: BrokenCircuitError | undefined;
      /** Made once per open period and shared by every refusal: no allocation, no rejection tracking. */
      result: Promise<Result<never>> | undefined;
      rejection: Promise<never> | undefined;
    }
  | { readonly value: 'half-open'; readonly attempt: number; started: number; done: number; failures: number; slow: number; readonly probes: Cohort[] }
  | { readonly value: 'isolated'; holds: number; error: IsolatedCircuitError | undefined }
  | { readonly value: 'disabled' };

type ResultHandler = (outcome: unknown) => Result<unknown> | Promise<Result<unknown>>;

/** Calls that started close together in one generation: they share their bookkeeping. */
interface Cohort {
  readonly start: number;
  readonly gen: number;
  inflight: number;
  /** Set once the cohort's in-flight calls were counted as slow (or reclaimed): later results are ignored. */
  counted: boolean;
  /** The next younger cohort waiting for the overdue check (slow-call detection only). */
  next: Cohort | undefined;
  /** The coarse clock's epoch when `seen` was read: while it holds, `seen` is still the time. */
  epoch: number;
  seen: number;
  readonly ok: (value: unknown) => unknown;
  readonly err: (error: unknown) => unknown;
  /** The no-throw handlers, made when `tryExecute` first needs them: most breakers use one style. */
  okResult: ResultHandler | undefined;
  errResult: ResultHandler | undefined;
}

/** Options after validation; shared by every breaker of a `BreakerGroup`. */
export interface NormalizedBreakerOptions<F> {
  readonly name: string;
  readonly window: { readonly type: 'count'; readonly size: number } | { readonly type: 'time'; readonly duration: number; readonly buckets: number };
  readonly minimumCalls: number;
  readonly failureRateThreshold: number;
  readonly slowCallDuration: number;
  readonly slowCallRateThreshold: number;
  readonly openInitial: number;
  readonly openMax: number;
  readonly openMultiplier: number;
  readonly halfOpenProbes: number;
  readonly probeTimeout: number;
  readonly isFailure: (error: unknown) => boolean;
  readonly isFailureResult: ((value: unknown) => boolean) | undefined;
  readonly fallback: ((cause: unknown) => F | PromiseLike<F>) | undefined;
  readonly fallbackOnFailure: boolean;
  readonly clock: Clock;
}

const OWNER = 'CircuitBreaker';
const KNOWN = [
  'name', 'window', 'minimumCalls', 'failureRateThreshold', 'slowCallDuration', 'slowCallRateThreshold', 'openDuration',
  'halfOpenProbes', 'probeTimeout', 'isFailure', 'isFailureResult', 'fallback', 'fallbackValue', 'fallbackOnFailure', 'clock',
  'initialState',
] as const;

/** Aborts are the caller giving up, not the dependency failing. */
function isAbort(error: unknown): boolean {
  return (
    isSpoflessError(error, ErrorCode.Aborted) ||
    (typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError')
  );
}
const countsAll = (error: unknown): boolean => !isAbort(error);
const ignore = (): void => undefined;

function abortedBy(signal: AbortSignal): AbortedError {
  return new AbortedError('the call was aborted before it started', { cause: signal.reason });
}

/** Validates breaker options once; the result can be shared by many breakers. */
export function normalizeBreakerOptions<F>(options: CircuitBreakerOptions<F> = {}): NormalizedBreakerOptions<F> {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(OWNER, 'options', options, 'an object');
  checkKnownKeys(OWNER, options, KNOWN);
  const w = checkObject<WindowOptions>(OWNER, 'window', options.window) ?? { type: 'time', duration: 10_000 };
  const wtype = checkOneOf(OWNER, 'window.type', w.type, ['count', 'time'], 'time');
  const window =
    wtype === 'count'
      ? { type: 'count' as const, size: checkNumber(OWNER, 'window.size', (w as { size?: unknown }).size, { min: 1, max: 1_000_000, integer: true }, 100) }
      : {
          type: 'time' as const,
          duration: checkNumber(OWNER, 'window.duration', (w as { duration?: unknown }).duration, { above: 0 }, 10_000),
          buckets: checkNumber(OWNER, 'window.buckets', (w as { buckets?: unknown }).buckets, { min: 1, max: 1_000, integer: true }, 10),
        };
  const od: unknown = options.openDuration;
  let openInitial: number;
  let openMax: number;
  let openMultiplier = 1;
  if (typeof od === 'object' && od !== null) {
    const o = od as { initial?: unknown; max?: unknown; multiplier?: unknown };
    openInitial = checkNumber(OWNER, 'openDuration.initial', o.initial, { min: 0 }, 10_000);
    openMax = checkNumber(OWNER, 'openDuration.max', o.max, { min: openInitial }, Math.max(openInitial, 60_000));
    openMultiplier = checkNumber(OWNER, 'openDuration.multiplier', o.multiplier, { min: 1 }, 2);
  } else {
    openInitial = openMax = checkNumber(OWNER, 'openDuration', od, { min: 0 }, 10_000);
  }
  const slowCallDuration = checkNumber(OWNER, 'slowCallDuration', options.slowCallDuration, { above: 0 }, Infinity);
  if (options.fallback !== undefined && options.fallbackValue !== undefined) {
    throw new InvalidOptionError(OWNER, 'fallback', 'fallback and fallbackValue', 'at most one of fallback and fallbackValue');
  }
  const fallbackFn = checkFunction<(cause: unknown) => F | PromiseLike<F>>(OWNER, 'fallback', options.fallback);
  const fallbackValue = options.fallbackValue;
  const fallbackOnFailure = options.fallbackOnFailure ?? false;
  if (typeof fallbackOnFailure !== 'boolean') throw new InvalidOptionError(OWNER, 'fallbackOnFailure', fallbackOnFailure, 'a boolean');
  const clock = options.clock ?? coarseClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
    throw new InvalidOptionError(OWNER, 'clock', clock, 'an object with a now() method');
  }
  const name = options.name ?? 'breaker';
  if (typeof name !== 'string') throw new InvalidOptionError(OWNER, 'name', name, 'a string');
  return {
    name,
    window,
    minimumCalls: checkNumber(OWNER, 'minimumCalls', options.minimumCalls, { min: 1, integer: true }, 20),
    failureRateThreshold: checkNumber(OWNER, 'failureRateThreshold', options.failureRateThreshold, { above: 0, max: 1 }, 0.5),
    slowCallDuration,
    slowCallRateThreshold: checkNumber(OWNER, 'slowCallRateThreshold', options.slowCallRateThreshold, { above: 0, max: 1 }, 1),
    openInitial,
    openMax,
    openMultiplier,
    halfOpenProbes: checkNumber(OWNER, 'halfOpenProbes', options.halfOpenProbes, { min: 1, max: 10_000, integer: true }, 3),
    probeTimeout: checkNumber(OWNER, 'probeTimeout', options.probeTimeout, { above: 0 }, Number.isFinite(slowCallDuration) ? slowCallDuration : 10_000),
    isFailure: checkFunction<(e: unknown) => boolean>(OWNER, 'isFailure', options.isFailure) ?? countsAll,
    isFailureResult: checkFunction<(v: unknown) => boolean>(OWNER, 'isFailureResult', options.isFailureResult),
    fallback: fallbackFn ?? (fallbackValue !== undefined ? () => fallbackValue : undefined),
    fallbackOnFailure,
    clock,
  };
}

/**
 * A cohort takes the calls starting within slowCallDuration / COHORT_SLICES of its first one, so a call's
 * duration may be over-estimated by that much (1.6%), and at most COHORT_SLICES + 1 cohorts of a
 * generation are ever waiting to be checked for overdue calls, however busy the breaker is.
 */
const COHORT_SLICES = 64;

const CLOSED: State = Object.freeze({ value: 'closed' });
const DISABLED: State = Object.freeze({ value: 'disabled' });

/**
 * A circuit breaker.
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from 'spofless/resilience';
 *
 * const prices = new CircuitBreaker({
 *   failureRateThreshold: 0.5,
 *   slowCallDuration: 500,            // calls over 500 ms are slow...
 *   slowCallRateThreshold: 0.8,       // ...and 80% slow calls open the circuit too
 *   openDuration: { initial: 1_000, max: 30_000 },
 *   isFailureResult: (res) => (res as Response).status >= 500,
 *   fallbackValue: { price: null, stale: true },
 * });
 * const price = await prices.execute(({ signal }) => fetch(url, { signal }).then((r) => r.json()));
 * ```
 */
export class CircuitBreaker<F = never> {
  /** Type-only: what the fallback resolves with (`never` without one), so `wrap` can type results. Always undefined. */
  declare readonly fallbackType?: F;
  readonly #o: NormalizedBreakerOptions<F>;
  readonly #window: OutcomeWindow;
  #state: State = CLOSED;
  #gen = 0;
  #cohort: Cohort | undefined;
  /** Cohorts of the current closed/disabled generation not yet checked for overdue calls, oldest first. */
  #oldest: Cohort | undefined;
  #youngest: Cohort | undefined;
  #inflight = 0;
  #rejected = 0;
  /** Slow-call detection is on: calls need start times. */
  readonly #timed: boolean;
  /** Settling a call needs the clock (slow-call detection, or a time window to rotate). */
  readonly #needsTime: boolean;
  /** Calls starting within this many ms of a cohort's first call join it: slowCallDuration / 64. */
  readonly #quantum: number;
  /** The clock is the shared coarse one, so its epoch tells when a remembered time is still current. */
  readonly #coarse: boolean;
  #onState: Emitter<StateChangeEvent> | undefined;
  #onSuccess: Emitter<SuccessEvent> | undefined;
  #onFailure: Emitter<FailureEvent> | undefined;
  #onReject: Emitter<RejectEvent> | undefined;

  constructor(options: CircuitBreakerOptions<F> | NormalizedBreakerOptions<F> = {}) {
    this.#o = isNormalized(options) ? options : validatedOptions(options);
    const w = this.#o.window;
    const now = this.#o.clock.now();
    this.#window = w.type === 'count' ? new CountWindow(w.size) : new TimeWindow(w.duration, w.buckets, now);
    this.#timed = Number.isFinite(this.#o.slowCallDuration);
    this.#needsTime = this.#timed || w.type === 'time';
    this.#quantum = this.#timed ? this.#o.slowCallDuration / COHORT_SLICES : Infinity;
    this.#coarse = this.#o.clock === coarseClock;
    const initial = isNormalized(options) ? undefined : options.initialState;
    if (initial !== undefined) this.#restore(initial, now);
  }

  /** The current state. Time-driven moves (open to half-open) happen when the next call arrives. */
  get state(): BreakerStateName {
    return this.#state.value;
  }

  /** The breaker's name, from its options. */
  get name(): string {
    return this.#o.name;
  }

  /** Calls started through this breaker that have not settled yet. */
  get inFlight(): number {
    return this.#inflight;
  }

  /**
   * Runs `fn` through the breaker. When the circuit refuses the call, resolves with the fallback if one
   * is configured, else rejects with `BrokenCircuitError` (or `IsolatedCircuitError`); that error object
   * is shared by every refusal of one open period, so refusing costs no stack capture.
   */
  execute<T>(fn: Operation<T>, signal?: AbortSignal): Promise<T | F> {
    const st = this.#state;
    if (signal?.aborted === true) return Promise.reject(abortedBy(signal));
    if (st.value === 'closed' || st.value === 'disabled') {
      const c = this.#admit();
      if (c !== undefined) return this.#call(fn, signal, c).then(c.ok, c.err) as Promise<T | F>;
    }
    return this.#slowPath(fn, signal, false) as Promise<T | F>;
  }

  /**
   * Like `execute`, but never rejects: resolves `{ ok: true, value }` or `{ ok: false, error }`. A refusal
   * by an open circuit resolves a promise made once per open period, so it costs no exception and no
   * allocation.
   */
  tryExecute<T>(fn: Operation<T>, signal?: AbortSignal): Promise<Result<T | F>> {
    const st = this.#state;
    if (signal?.aborted === true) return Promise.resolve({ ok: false, error: abortedBy(signal) });
    if (st.value === 'closed' || st.value === 'disabled') {
      const c = this.#admit();
      if (c !== undefined) return this.#tryCall(fn, signal, c) as Promise<Result<T | F>>;
    } else if (st.value === 'open' && st.result !== undefined && this.#o.clock.now() - st.openedAt < st.openFor && this.#quietRejects()) {
      // The common refusal, kept lean: the shared resolved result, no error, no allocation.
      this.#rejected++;
      return st.result;
    }
    return this.#slowPath(fn, signal, true) as Promise<Result<T | F>>;
  }

  /** Forces the circuit open until every returned handle is disposed. */
  isolate(): Disposable {
    const st = this.#state;
    if (st.value === 'isolated') st.holds++;
    else this.#transition({ value: 'isolated', holds: 1, error: undefined }, 'isolate');
    let released = false;
    return {
      dispose: () => {
        if (released) return;
        released = true;
        const cur = this.#state;
        if (cur.value === 'isolated' && --cur.holds === 0) {
          this.#window.reset();
          this.#transition(CLOSED, 'reset');
        }
      },
    };
  }

  /** Stops the breaker from acting: every call passes, outcomes are still counted. */
  disable(): void {
    if (this.#state.value !== 'disabled') this.#transition(DISABLED, 'disable');
  }

  /** Undoes `disable()`: the circuit closes and judges from the outcomes counted so far. */
  enable(): void {
    if (this.#state.value === 'disabled') this.#transition(CLOSED, 'reset');
  }

  /** Closes the circuit and forgets every outcome (isolation handles stop mattering). */
  reset(): void {
    this.#window.reset();
    this.#transition(CLOSED, 'reset');
  }

  /** The window's counters and rates as of now. */
  metrics(): BreakerMetrics {
    const w = this.#window;
    w.advance(this.#o.clock.now());
    return {
      state: this.#state.value,
      calls: w.calls,
      failures: w.failures,
      slow: w.slow,
      failureRate: w.calls === 0 ? 0 : w.failures / w.calls,
      slowCallRate: w.calls === 0 ? 0 : w.slow / w.calls,
      inFlight: this.#inflight,
      rejected: this.#rejected,
    };
  }

  /** Exports the state so a new breaker (say, after a restart) can start from it. */
  toJSON(): BreakerSnapshot {
    const now = this.#o.clock.now();
    const st = this.#state;
    const attempt = st.value === 'open' || st.value === 'half-open' ? st.attempt : 0;
    return {
      state: st.value,
      attempt,
      window: this.#window.toJSON(now),
      ...(st.value === 'open' ? { remainingOpenMs: Math.max(0, st.openedAt + st.openFor - now) } : {}),
    };
  }

  onStateChange(listener: (event: StateChangeEvent) => void): Disposable {
    return (this.#onState ??= new Emitter()).subscribe(listener);
  }
  onSuccess(listener: (event: SuccessEvent) => void): Disposable {
    return (this.#onSuccess ??= new Emitter()).subscribe(listener);
  }
  onFailure(listener: (event: FailureEvent) => void): Disposable {
    return (this.#onFailure ??= new Emitter()).subscribe(listener);
  }
  onReject(listener: (event: RejectEvent) => void): Disposable {
    return (this.#onReject ??= new Emitter()).subscribe(listener);
  }

  // ---- internals -------------------------------------------------------------------------------

  /** True when a refusal has no listener, no channel subscriber and no fallback to serve. */
  #quietRejects(): boolean {
    return this.#onReject === undefined && !channels.breakerReject.hasSubscribers && this.#o.fallback === undefined;
  }

  #tryCall(fn: Operation<unknown>, signal: AbortSignal | undefined, c: Cohort): Promise<Result<unknown>> {
    if (c.okResult === undefined) this.#addResultHandlers(c);
    return this.#call(fn, signal, c).then(c.okResult, c.errResult);
  }

  /** Starts `fn` and always returns a promise, turning a synchronous throw into a rejection. */
  #call<T>(fn: Operation<T>, signal: AbortSignal | undefined, c: Cohort): Promise<T> {
    c.inflight++;
    this.#inflight++;
    let p: PromiseLike<T> | T;
    try {
      p = fn(signal === undefined ? DEFAULT_CONTEXT : ({ signal } satisfies PolicyContext));
    } catch (error) {
      // Whatever the operation threw is passed on untouched, Error or not.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return Promise.reject(error);
    }
    // A native promise is used as is; a foreign thenable or a plain value is adopted into one.
    return p instanceof Promise ? (p as Promise<T>) : Promise.resolve(p);
  }

  /** The cohort a call starting now joins (closed or disabled state); undefined if the circuit just opened. */
  #admit(): Cohort | undefined {
    const c = this.#cohort;
    if (this.#timed) {
      // Same epoch: `seen` is still the time, and no clock call is needed to know the cohort is young.
      if (c !== undefined && this.#coarse && c.epoch === coarseEpoch && c.seen - c.start < this.#quantum && c.gen === this.#gen) return c;
      const now = this.#now(c);
      if (c !== undefined && now - c.start < this.#quantum && c.gen === this.#gen) return c;
      // A new cohort: the moment to notice calls that have been running too long.
      this.#countOverdue(now);
      if (this.#state.value !== 'closed' && this.#state.value !== 'disabled') return undefined;
      const fresh = this.#newCohort(now);
      fresh.epoch = coarseEpoch;
      fresh.seen = now;
      if (this.#youngest === undefined) this.#oldest = fresh;
      else this.#youngest.next = fresh;
      this.#youngest = fresh;
      return fresh;
    }
    // Without slow-call detection a cohort needs no start time: one per generation will do.
    if (c !== undefined && c.gen === this.#gen) return c;
    return this.#newCohort(0);
  }

  #newCohort(start: number): Cohort {
    const o = this.#o;
    const c: Cohort = {
      start,
      gen: this.#gen,
      inflight: 0,
      counted: false,
      next: undefined,
      epoch: -1,
      seen: start,
      // Without a result predicate every value is a success: the common case gets the shortest handler.
      ok:
        o.isFailureResult === undefined
          ? (value) => {
              this.#succeeded(c);
              return value;
            }
          : (value) => {
              const failed = o.isFailureResult!(value) === true;
              this.#settle(c, failed, undefined, value);
              if (failed && o.fallbackOnFailure && o.fallback !== undefined) return o.fallback(value);
              return value;
            },
      err: (error) => {
        this.#settle(c, o.isFailure(error), error, undefined);
        if (o.fallbackOnFailure && o.fallback !== undefined && !isAbort(error)) return o.fallback(error);
        throw error;
      },
      okResult: undefined,
      errResult: undefined,
    };
    this.#cohort = c;
    return c;
  }

  #addResultHandlers(c: Cohort): void {
    const o = this.#o;
    c.okResult = (value) => {
      const failed = o.isFailureResult?.(value) === true;
      this.#settle(c, failed, undefined, value);
      if (failed && o.fallbackOnFailure && o.fallback !== undefined) return this.#fallbackResult(value);
      return { ok: true, value };
    };
    c.errResult = (error) => {
      this.#settle(c, o.isFailure(error), error, undefined);
      if (o.fallbackOnFailure && o.fallback !== undefined && !isAbort(error)) return this.#fallbackResult(error);
      return { ok: false, error };
    };
  }

  async #fallbackResult(cause: unknown): Promise<Result<unknown>> {
    try {
      return { ok: true, value: await this.#o.fallback!(cause) };
    } catch (error) {
      return { ok: false, error };
    }
  }

  /** `#settle` for a success without a result predicate: the hot path, with nothing it does not need. */
  #succeeded(c: Cohort): void {
    c.inflight--;
    this.#inflight--;
    if (c.gen !== this.#gen || c.counted) return;
    const st = this.#state;
    if (st.value !== 'closed' || this.#onSuccess !== undefined || channels.breakerSuccess.hasSubscribers) {
      this.#settleRest(c, false, undefined, undefined);
      return;
    }
    const now = this.#needsTime ? (this.#coarse && c.epoch === coarseEpoch ? c.seen : this.#now(c)) : 0;
    this.#window.record(now, false, now - c.start >= this.#o.slowCallDuration);
    this.#judge();
  }

  /** Records one settled call. `failed` already applies the user's predicates. */
  #settle(c: Cohort, failed: boolean, error: unknown, value: unknown): void {
    c.inflight--;
    this.#inflight--;
    if (c.gen !== this.#gen || c.counted) return;
    this.#settleRest(c, failed, error, value);
  }

  #settleRest(c: Cohort, failed: boolean, error: unknown, value: unknown): void {
    const o = this.#o;
    const st = this.#state;
    const now = this.#needsTime ? (this.#coarse && c.epoch === coarseEpoch ? c.seen : this.#now(c)) : 0;
    // slowCallDuration is Infinity when detection is off, so this is false then.
    const slow = now - c.start >= o.slowCallDuration;
    if (failed) this.#emitFailure(error, value, slow);
    else if (this.#onSuccess !== undefined || channels.breakerSuccess.hasSubscribers) this.#emitSuccess(slow);
    if (st.value === 'half-open') {
      this.#probeDone(st, failed, slow);
      return;
    }
    const w = this.#window;
    w.record(now, failed, slow);
    if (st.value === 'closed') this.#judge();
  }

  /** Reads the clock, and remembers the reading on `c` with the coarse clock's epoch. */
  #now(c: Cohort | undefined): number {
    const now = this.#o.clock.now();
    if (c !== undefined) {
      c.epoch = coarseEpoch;
      c.seen = now;
    }
    return now;
  }

  /** Opens the circuit if the window's rates say so. */
  #judge(): void {
    const w = this.#window;
    const o = this.#o;
    if (w.calls < o.minimumCalls) return;
    if (w.failures >= o.failureRateThreshold * w.calls) this.#open(0, 'failure-rate');
    else if (w.slow > 0 && w.slow >= o.slowCallRateThreshold * w.calls) this.#open(0, 'slow-call-rate');
  }

  /** Counts calls running past slowCallDuration as slow, once, without waiting for them to settle. */
  #countOverdue(now: number): void {
    const limit = now - this.#o.slowCallDuration;
    let counted = 0;
    // Cohorts are in start order: stop at the first one not yet overdue. Overdue ones leave the list,
    // counted if they still have calls in flight, so the scan costs what it drops.
    let c = this.#oldest;
    while (c !== undefined && c.start <= limit) {
      if (c.inflight > 0 && !c.counted) {
        c.counted = true;
        counted += c.inflight;
      }
      const next = c.next;
      c.next = undefined;
      c = next;
    }
    this.#oldest = c;
    if (c === undefined) this.#youngest = undefined;
    if (counted > 0 && this.#state.value !== 'half-open') {
      this.#window.record(now, false, true, counted);
      if (this.#state.value === 'closed') this.#judge();
    }
  }

  #open(attempt: number, reason: StateChangeEvent['reason']): void {
    const o = this.#o;
    // Read here, not passed in: the settle path skips the clock when nothing else needs it.
    const now = o.clock.now();
    const openFor = Math.min(o.openMax, o.openInitial * o.openMultiplier ** attempt);
    this.#transition({ value: 'open', openedAt: now, openFor, attempt, error: undefined, result: undefined, rejection: undefined }, reason);
  }

  #transition(next: State, reason: StateChangeEvent['reason']): void {
    const from = this.#state.value;
    this.#state = next;
    this.#gen++;
    this.#cohort = undefined;
    this.#oldest = this.#youngest = undefined;
    if (next.value === 'closed' && from !== 'disabled') this.#window.reset();
    if (this.#onState !== undefined || channels.breakerState.hasSubscribers) {
      const event: StateChangeEvent = { from, to: next.value, reason };
      this.#onState?.emit(event);
      if (channels.breakerState.hasSubscribers) channels.breakerState.publish({ name: this.#o.name, breaker: this, ...event });
    }
  }

  /** Everything but the closed/disabled fast path: open, half-open, isolated. */
  #slowPath(fn: Operation<unknown>, signal: AbortSignal | undefined, asResult: boolean): Promise<unknown> {
    const st = this.#state;
    const now = this.#o.clock.now();
    if (st.value === 'open' && now - st.openedAt >= st.openFor) {
      this.#transition({ value: 'half-open', attempt: st.attempt, started: 0, done: 0, failures: 0, slow: 0, probes: [] }, 'open-elapsed');
    }
    const cur = this.#state;
    if (cur.value === 'half-open') {
      if (cur.started >= this.#o.halfOpenProbes) this.#reclaimProbes(cur, now);
      const after = this.#state;
      if (after.value === 'half-open' && after.started < this.#o.halfOpenProbes) {
        after.started++;
        let c = this.#cohort;
        if (c === undefined || c.gen !== this.#gen || c.start !== now) {
          c = this.#newCohort(now);
          after.probes.push(c);
        }
        return asResult ? this.#tryCall(fn, signal, c) : this.#call(fn, signal, c).then(c.ok, c.err);
      }
      if (after.value === 'closed' || after.value === 'disabled') {
        return asResult ? this.tryExecute(fn, signal) : this.execute(fn, signal);
      }
    }
    return this.#reject(asResult);
  }

  /** Reclaims probes that have run past probeTimeout: each counts as a failed probe. */
  #reclaimProbes(st: Extract<State, { value: 'half-open' }>, now: number): void {
    for (const c of st.probes) {
      if (c.counted || c.inflight === 0 || now - c.start < this.#o.probeTimeout) continue;
      c.counted = true;
      for (let i = c.inflight; i > 0 && this.#state === st; i--) this.#probeDone(st, true, true);
    }
  }

  #probeDone(st: Extract<State, { value: 'half-open' }>, failed: boolean, slow: boolean): void {
    const o = this.#o;
    st.done++;
    if (failed) st.failures++;
    if (slow) st.slow++;
    const n = o.halfOpenProbes;
    const failBar = o.failureRateThreshold * n;
    const slowBar = Number.isFinite(o.slowCallDuration) ? o.slowCallRateThreshold * n : Infinity;
    const left = n - st.done;
    if (st.failures >= failBar || st.slow >= slowBar) this.#open(st.attempt + 1, 'probes-failed');
    else if (st.failures + left < failBar && st.slow + left < slowBar) this.#transition(CLOSED, 'probes-passed');
  }

  #reject(asResult: boolean): Promise<unknown> {
    const st = this.#state;
    this.#rejected++;
    let error: BrokenCircuitError | IsolatedCircuitError;
    if (st.value === 'open') error = st.error ??= new BrokenCircuitError(`circuit "${this.#o.name}" is open: the call was not made`);
    else if (st.value === 'isolated') error = st.error ??= new IsolatedCircuitError(`circuit "${this.#o.name}" is isolated: the call was not made`);
    else error = new BrokenCircuitError(`circuit "${this.#o.name}" is half-open and all ${this.#o.halfOpenProbes} probes are out: the call was not made`);
    if (this.#onReject !== undefined || channels.breakerReject.hasSubscribers) {
      const event: RejectEvent = { state: st.value, error };
      this.#onReject?.emit(event);
      if (channels.breakerReject.hasSubscribers) channels.breakerReject.publish({ name: this.#o.name, breaker: this, ...event });
    }
    const fb = this.#o.fallback;
    if (fb !== undefined) return asResult ? this.#fallbackResult(error) : new Promise((resolve) => resolve(fb(error)));
    if (!asResult) {
      if (st.value !== 'open') return Promise.reject(error);
      if (st.rejection === undefined) {
        // Handled once here so that sharing it never reports an unhandled rejection; each caller's own
        // await still throws.
        st.rejection = Promise.reject(error);
        st.rejection.catch(ignore);
      }
      return st.rejection;
    }
    if (st.value === 'open') return (st.result ??= Promise.resolve({ ok: false, error }));
    return Promise.resolve({ ok: false, error });
  }

  #emitSuccess(slow: boolean): void {
    const event: SuccessEvent = { slow };
    this.#onSuccess?.emit(event);
    if (channels.breakerSuccess.hasSubscribers) channels.breakerSuccess.publish({ name: this.#o.name, breaker: this, ...event });
  }

  #emitFailure(error: unknown, value: unknown, slow: boolean): void {
    if (this.#onFailure === undefined && !channels.breakerFailure.hasSubscribers) return;
    const event: FailureEvent = { error, value, slow };
    this.#onFailure?.emit(event);
    if (channels.breakerFailure.hasSubscribers) channels.breakerFailure.publish({ name: this.#o.name, breaker: this, ...event });
  }

  #restore(s: BreakerSnapshot, now: number): void {
    if (typeof s !== 'object' || s === null || typeof s.state !== 'string') {
      throw new InvalidOptionError(OWNER, 'initialState', s, 'a snapshot from CircuitBreaker#toJSON()');
    }
    const attempt = checkNumber(OWNER, 'initialState.attempt', s.attempt, { min: 0, integer: true }, 0);
    if (s.window !== undefined) this.#window.restore(s.window, now);
    switch (s.state) {
      case 'closed':
        return;
      case 'disabled':
        this.#state = DISABLED;
        return;
      case 'isolated':
        // An isolation belongs to whoever holds its handle, which a snapshot cannot carry: restore as open.
        this.#state = { value: 'open', openedAt: now, openFor: this.#o.openInitial, attempt, error: undefined, result: undefined, rejection: undefined };
        return;
      case 'open':
      case 'half-open': {
        // Half-open restores as open for whatever is left (its probes did not survive the restart).
        const remaining = checkNumber(OWNER, 'initialState.remainingOpenMs', s.remainingOpenMs, { min: 0 }, 0);
        const openFor = Math.min(this.#o.openMax, this.#o.openInitial * this.#o.openMultiplier ** attempt);
        this.#state = { value: 'open', openedAt: now - Math.max(0, openFor - remaining), openFor, attempt, error: undefined, result: undefined, rejection: undefined };
        return;
      }
      default:
        throw new InvalidOptionError(OWNER, 'initialState.state', s.state, 'one of "closed", "open", "half-open", "isolated", "disabled"');
    }
  }
}

function isNormalized<F>(o: CircuitBreakerOptions<F> | NormalizedBreakerOptions<F>): o is NormalizedBreakerOptions<F> {
  return NORMALIZED.has(o);
}
const NORMALIZED = new WeakSet<object>();

/**
 * Breakers made from one options object share their validated options (about 280 bytes each
 * otherwise): services often make many breakers from one constant. The cache remembers every value
 * the options held, nested ones included, and is used only while they are all unchanged.
 */
const VALIDATED = new WeakMap<object, { readonly values: readonly unknown[]; readonly normalized: NormalizedBreakerOptions<unknown> }>();

function optionValues(o: CircuitBreakerOptions<unknown>): unknown[] {
  const w = o.window as Record<string, unknown> | undefined;
  const od = o.openDuration as Record<string, unknown> | number | undefined;
  const values: unknown[] = [w, od];
  for (const k of KNOWN) if (k !== 'initialState') values.push(o[k]);
  if (typeof w === 'object' && w !== null) values.push(w.type, w.size, w.duration, w.buckets);
  if (typeof od === 'object' && od !== null) values.push(od.initial, od.max, od.multiplier);
  return values;
}

function validatedOptions<F>(options: CircuitBreakerOptions<F>): NormalizedBreakerOptions<F> {
  if (typeof options !== 'object' || options === null) return normalizeBreakerOptions(options);
  const values = optionValues(options);
  const hit = VALIDATED.get(options);
  if (hit !== undefined && hit.values.length === values.length && hit.values.every((v, i) => Object.is(v, values[i]))) {
    return hit.normalized as NormalizedBreakerOptions<F>;
  }
  const normalized = normalizeBreakerOptions(options);
  VALIDATED.set(options, { values, normalized });
  return normalized;
}

/** Validates options once and marks them, so `new CircuitBreaker(shared)` skips validation. */
export function sharedBreakerOptions<F>(options: CircuitBreakerOptions<F> = {}): NormalizedBreakerOptions<F> {
  const n = Object.freeze(normalizeBreakerOptions(options));
  NORMALIZED.add(n);
  return n;
}
