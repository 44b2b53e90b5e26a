/**
 * Timeouts and deadlines.
 *
 * A `TimeoutPolicy` gives each call a time budget. It is *cooperative* and *aggressive* at once: the
 * operation receives a signal that aborts when time runs out (so it can stop its work), and the policy
 * rejects with `TimeoutError` at the deadline without waiting for the operation to notice. An operation
 * that ignores its signal keeps running in the background; its eventual result or error is dropped.
 *
 * Deadlines compose. Every signal a `TimeoutPolicy` (or {@link Deadline}) creates is recorded with its
 * absolute deadline, and a timeout whose caller's signal already carries one uses whichever ends first:
 * its own duration or what remains of the caller's deadline. So a timeout outside a retry is the
 * overall deadline, a timeout inside it bounds each attempt, and the last attempt is cut short when the
 * overall deadline is near:
 *
 * ```ts
 * wrap(new TimeoutPolicy({ duration: 2_000 }), retry, new TimeoutPolicy({ duration: 500 }))
 * ```
 *
 * The record is kept per signal, so it survives a policy passing the signal on unchanged (retry,
 * bulkhead, breaker) but not a signal made by other means (e.g. `AbortSignal.any`).
 *
 * Timers are cleared as soon as a call settles, so none outlives its call. While the call is pending
 * the timer is referenced (as cockatiel does): it is what ends a call whose operation waits on nothing
 * that keeps the event loop alive (an in-process promise, a lock), and an `unref()`ed one would let the
 * process exit in the middle of that call (exit code 13, "unsettled top-level await"). Pass
 * `unref: true` for a timer that must not keep the process alive.
 *
 * @example
 * ```ts
 * import { TimeoutPolicy } from 'spofless/resilience';
 * const timeout = new TimeoutPolicy({ duration: 500 });
 * const body = await timeout.execute(({ signal }) => fetch(url, { signal }).then((r) => r.text()));
 * ```
 */
import { AbortedError, ErrorCode, InvalidOptionError, TimeoutError, isSpoflessError, type SpoflessError } from '../errors/index.js';
import { preciseClock, type Clock } from './clock.js';
import { Emitter, type Disposable } from './events.js';
import { NEVER_ABORTED, type Operation, type Policy } from './policy.js';

/**
 * The longest delay `setTimeout` honours (2^31 - 1 ms); Node fires longer ones after 1 ms instead.
 *
 * @example
 * ```ts
 * new TimeoutPolicy({ duration: MAX_TIMER_DELAY }); // about 24.8 days: the longest allowed
 * ```
 */
export const MAX_TIMER_DELAY = 2_147_483_647;

interface DeadlineRecord {
  readonly at: number;
  // The clock the deadline was set on: a deadline is only comparable with readings of its own clock.
  readonly clock: Clock;
}

// Weak: a record lives exactly as long as its signal, and nothing has to remove it.
const deadlines = new WeakMap<AbortSignal, DeadlineRecord>();

/**
 * The absolute deadline carried by `signal` (in the milliseconds of the clock that set it), or
 * `undefined` when it carries none. Set for the signals made by `TimeoutPolicy` and {@link Deadline}.
 *
 * @example
 * ```ts
 * await timeout.execute(({ signal }) => {
 *   console.log(deadlineOf(signal)); // e.g. 1234.5 (performance.now() + duration)
 * });
 * ```
 */
export function deadlineOf(signal: AbortSignal | undefined): number | undefined {
  return signal === undefined ? undefined : deadlines.get(signal)?.at;
}

/**
 * Milliseconds left before the deadline carried by `signal`: `Infinity` when it carries none, never
 * below 0. Measured on the clock that set the deadline.
 *
 * @example
 * ```ts
 * await timeout.execute(async ({ signal }) => {
 *   // Tell the server how long we are prepared to wait.
 *   return fetch(url, { signal, headers: { 'x-timeout-ms': String(Math.floor(remainingTime(signal))) } });
 * });
 * ```
 */
export function remainingTime(signal: AbortSignal | undefined): number {
  const record = signal === undefined ? undefined : deadlines.get(signal);
  return record === undefined ? Infinity : Math.max(0, record.at - record.clock.now());
}

/**
 * The error a policy rejects with when `signal` aborted. A signal that aborted because its deadline
 * passed (its reason is a `TimeoutError`) gives that `TimeoutError`: time ran out, nobody cancelled.
 * Any other abort gives an `AbortedError` whose `cause` is the signal's reason.
 *
 * @example
 * ```ts
 * if (signal.aborted) throw errorForAbort(signal);
 * ```
 */
export function errorForAbort(signal: AbortSignal): SpoflessError {
  const reason: unknown = signal.reason;
  if (isSpoflessError(reason, ErrorCode.Timeout)) return reason;
  return new AbortedError('the operation was aborted by its caller', { cause: reason });
}

/**
 * Options of {@link Deadline}.
 *
 * @example
 * ```ts
 * const options: DeadlineOptions = { signal: req.signal, clock: preciseClock, unref: false };
 * ```
 */
export interface DeadlineOptions {
  /** A parent signal: the deadline's signal aborts when it does, and never outlives its deadline. */
  readonly signal?: AbortSignal;
  /** The clock the deadline is measured on. Default `preciseClock`. */
  readonly clock?: Clock;
  /** `unref()` the timer, so that a pending deadline does not keep the process alive. Default false. */
  readonly unref?: boolean;
}

/**
 * A deadline for code outside a policy, e.g. the time budget of an incoming request, to be passed to
 * every call it makes. Its `signal` aborts with a `TimeoutError` when time is up, or with the parent's
 * reason when the parent signal aborts; policies given this signal honour the deadline (an inner
 * `TimeoutPolicy` shortens itself, a retry does not wait past it). Call `dispose()` when done: it clears
 * the timer (which otherwise keeps the process alive until the deadline, unless `unref` is set) and
 * unlinks the parent signal, without aborting.
 *
 * @example
 * ```ts
 * const deadline = new Deadline(Number(req.headers['x-timeout-ms'] ?? 5_000), { signal: req.signal });
 * try {
 *   const user = await retry.execute(({ signal }) => users.get(id, { signal }), deadline.signal);
 *   const feed = await timeout.execute(({ signal }) => feeds.get(user, { signal }), deadline.signal);
 * } finally {
 *   deadline.dispose();
 * }
 * ```
 */
export class Deadline implements Disposable {
  /** Aborts when the deadline passes or the parent signal aborts. */
  readonly signal: AbortSignal;
  /** The absolute deadline on `clock`. */
  readonly at: number;
  /** The time budget actually granted: `min(ms, what remained of the parent's deadline)`. */
  readonly budget: number;
  readonly #clock: Clock;
  readonly #controller = new AbortController();
  readonly #parent: AbortSignal | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number, options: DeadlineOptions = {}) {
    checkDuration('Deadline', 'ms', ms);
    const { signal: parent, clock = preciseClock, unref = false } = options;
    this.#clock = clock;
    this.signal = this.#controller.signal;
    this.budget = Math.min(ms, remainingTime(parent));
    this.at = clock.now() + this.budget;
    deadlines.set(this.signal, { at: this.at, clock });
    if (parent?.aborted) {
      this.#controller.abort(parent.reason);
      return;
    }
    if (this.budget <= 0) {
      this.#controller.abort(this.#timeoutError(ms));
      return;
    }
    if (parent !== undefined && parent !== NEVER_ABORTED) {
      this.#parent = parent;
      parent.addEventListener('abort', this.#onParentAbort, { once: true });
    }
    this.#timer = setTimeout(this.#expire, this.budget, ms);
    if (unref) this.#timer.unref();
  }

  /** Milliseconds left, never below 0. */
  remaining(): number {
    return Math.max(0, this.at - this.#clock.now());
  }

  /** Clears the timer and unlinks the parent signal. Idempotent; does not abort `signal`. */
  dispose(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#parent?.removeEventListener('abort', this.#onParentAbort);
  }

  #expire = (ms: number): void => {
    this.#timer = undefined;
    this.#parent?.removeEventListener('abort', this.#onParentAbort);
    this.#controller.abort(this.#timeoutError(ms));
  };

  #onParentAbort = (): void => {
    this.dispose();
    this.#controller.abort(this.#parent?.reason);
  };

  #timeoutError(ms: number): TimeoutError {
    return this.budget < ms
      ? new TimeoutError(`deadline exceeded: the caller's deadline left ${round(this.budget)} ms of this ${ms} ms timeout`)
      : new TimeoutError(`timed out after ${ms} ms`);
  }
}

/**
 * Options of {@link TimeoutPolicy}.
 *
 * @example
 * ```ts
 * const options: TimeoutOptions = { duration: 250 };
 * ```
 */
export interface TimeoutOptions {
  /** The time budget of each call, in ms: > 0 and at most 2^31 - 1. */
  readonly duration: number;
  /** The clock deadlines are recorded on. Default `preciseClock`; the timer itself is always real. */
  readonly clock?: Clock;
  /**
   * `unref()` each call's timer: a pending call then does not keep the process alive, and one whose
   * operation waits on nothing else is abandoned if the process exits. Default false (module comment).
   */
  readonly unref?: boolean;
}

/**
 * Emitted when a call runs out of time.
 *
 * @example
 * ```ts
 * timeout.onTimeout((event: TimeoutEvent) => log.warn(`gave up after ${event.duration} ms`));
 * ```
 */
export interface TimeoutEvent {
  /** The budget the call had, in ms: the policy's duration or less when the caller's deadline was nearer. */
  readonly duration: number;
}

/**
 * Rejects with `TimeoutError` when a call takes longer than `duration` (or than what remains of the
 * caller's deadline, if sooner), aborting the operation's signal at the same moment. Does not wait for
 * an operation that ignores its signal (see the module comment). When the caller's signal aborts, the
 * call rejects with `AbortedError` (its `cause` is the signal's reason), or with the caller's
 * `TimeoutError` if that signal aborted because its own deadline passed.
 *
 * @example
 * ```ts
 * const timeout = new TimeoutPolicy({ duration: 1_000 });
 * timeout.onTimeout(({ duration }) => metrics.increment('timeouts', { duration }));
 * const row = await timeout.execute(({ signal }) => db.query(sql, { signal }), req.signal);
 * ```
 */
export class TimeoutPolicy implements Policy {
  readonly duration: number;
  readonly #clock: Clock;
  readonly #unref: boolean;
  readonly #onTimeout = new Emitter<TimeoutEvent>();
  /** Subscribes to timeouts; returns a disposable. */
  readonly onTimeout: (listener: (event: TimeoutEvent) => void) => Disposable = this.#onTimeout.subscribe;

  constructor(options: TimeoutOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('TimeoutPolicy', 'options', options, 'an object with a duration');
    }
    checkDuration('TimeoutPolicy', 'duration', options.duration);
    this.duration = options.duration;
    this.#clock = options.clock ?? preciseClock;
    this.#unref = options.unref === true;
  }

  execute<T>(fn: Operation<T>, signal: AbortSignal = NEVER_ABORTED): Promise<T> {
    if (signal.aborted) return Promise.reject(errorForAbort(signal));
    const deadline = new Deadline(this.duration, { signal, clock: this.#clock, unref: this.#unref });
    const inner = deadline.signal;
    if (inner.aborted) {
      // The caller's deadline had already passed: the operation would have no time at all.
      this.#onTimeout.emit({ duration: 0 });
      return Promise.reject(inner.reason as TimeoutError);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        deadline.dispose();
        if (signal.aborted) {
          reject(errorForAbort(signal));
        } else {
          this.#onTimeout.emit({ duration: deadline.budget });
          reject(inner.reason as TimeoutError);
        }
      };
      const settle = (): void => {
        deadline.dispose();
        inner.removeEventListener('abort', onAbort);
      };
      inner.addEventListener('abort', onAbort, { once: true });
      // The executor turns a synchronous throw from fn into a rejection.
      const attempt = new Promise<T>((run) => run(fn({ signal: inner })));
      // Cleanup is registered first so it runs before the caller resumes. After a timeout both still
      // run, but the promise is already settled and they change nothing.
      attempt.then(settle, settle);
      attempt.then(resolve, reject);
    });
  }
}

function checkDuration(owner: string, option: string, value: unknown): void {
  if (typeof value !== 'number' || !(value > 0) || !(value <= MAX_TIMER_DELAY)) {
    throw new InvalidOptionError(owner, option, value, `a number of milliseconds in (0, ${MAX_TIMER_DELAY}]`);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
