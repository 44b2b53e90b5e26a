/**
 * Retries: run an operation again when it fails, waiting between attempts.
 *
 * What is retried. Never, whatever `retryOn` says: a refused call of an open or isolated circuit
 * (retrying into an open circuit only adds load to a dependency the breaker is protecting), an
 * `AbortedError`, and anything after the caller's own signal aborted. Otherwise an error is retried
 * when `retryOn(error)` says so; by default every error is, except a spofless error whose `retryable`
 * flag is false (an invalid option, a retry budget that ran out...). A returned value is retried when
 * `retryOnResult(value)` says so (default: never).
 *
 * How long it waits. The `backoff` strategy's delay, unless the failure carries a hint (an HTTP 429 or
 * 503 `Retry-After`): then the hint. Either is capped by `maxDelay`. When the caller's signal carries a
 * deadline (see `TimeoutPolicy`) and the wait would not end before it, the policy gives up at once
 * rather than sleep into a certain timeout. An abort during the wait rejects at once and clears the
 * timer.
 *
 * When it stops. After `maxAttempts` attempts, or at a deadline as above, the last outcome is given
 * back as it was: the last error is thrown, the last value returned. When a `RetryBudget` refuses a
 * retry, the call rejects with `RetryBudgetExhaustedError` (its `cause` is the last error or value):
 * a refused budget is an overload signal and the caller should see it as such. That error is not
 * retryable, so retry policies further out do not multiply the load the budget just refused.
 *
 * The backoff timer is referenced while it runs (as cockatiel's is): it is the caller's awaited work,
 * not a background timer, and an `unref()`ed sleep lets a script whose only pending work is a retry
 * exit in the middle of it (exit code 13, "unsettled top-level await"). It is bounded by `maxDelay` and
 * cleared on abort; `unref: true` unreferences it.
 *
 * @example
 * ```ts
 * import { RetryPolicy, decorrelatedJitterBackoff, parseRetryAfter } from 'spofless/resilience';
 * const retry = new RetryPolicy({
 *   maxAttempts: 4,
 *   backoff: decorrelatedJitterBackoff({ base: 100, cap: 2_000 }),
 *   retryOnResult: (res) => (res as Response).status === 503,
 *   retryAfter: (res) => parseRetryAfter((res as Response).headers?.get('retry-after')),
 * });
 * const res = await retry.execute(({ signal, attempt }) => fetch(url, { signal, headers: { 'x-attempt': `${attempt}` } }));
 * ```
 */
import { ErrorCode, InvalidOptionError, RetryBudgetExhaustedError, isSpoflessError } from '../errors/index.js';
import { fullJitterBackoff, type Backoff } from './backoff.js';
import type { RetryBudget } from './budget.js';
import { Emitter, type Disposable } from './events.js';
import { NEVER_ABORTED, type Operation, type Policy, type PolicyContext, type Result } from './policy.js';
import { MAX_TIMER_DELAY, errorForAbort, remainingTime } from './timeout.js';

/**
 * What a retry policy hands its operation: the caller's signal and which attempt this is.
 *
 * @example
 * ```ts
 * await retry.execute(({ signal, attempt }: RetryContext) => fetch(url, { signal, headers: { 'x-retry': `${attempt}` } }));
 * ```
 */
export interface RetryContext extends PolicyContext {
  /** 0 for the first attempt, 1 for the first retry, and so on. */
  readonly attempt: number;
}

/**
 * Options of {@link RetryPolicy}.
 *
 * @example
 * ```ts
 * const options: RetryOptions = { maxAttempts: 5, backoff: fullJitterBackoff({ base: 50 }), maxDelay: 5_000 };
 * ```
 */
export interface RetryOptions {
  /** Attempts in all, the first included: an integer >= 1, or `Infinity`. Default 3. */
  readonly maxAttempts?: number;
  /** The wait before each retry. Default `fullJitterBackoff({ base: 100, cap: 10_000 })`. */
  readonly backoff?: Backoff;
  /** The longest wait before a retry, `Retry-After` hints included, in ms. Default 30 000. */
  readonly maxDelay?: number;
  /** Whether an error is worth another attempt. Default: unless it is a non-retryable spofless error. */
  readonly retryOn?: (error: unknown) => boolean;
  /** Whether a returned value is a failure worth another attempt (e.g. an HTTP 503). Default: never. */
  readonly retryOnResult?: (value: unknown) => boolean;
  /** The wait a failure asks for, in ms, or `undefined` for none. Default {@link retryAfterOf}. */
  readonly retryAfter?: (failure: unknown) => number | undefined;
  /** A budget shared with other policies, which may refuse a retry. Default: none. */
  readonly budget?: RetryBudget;
  /** `unref()` the backoff timer, so that a sleeping retry does not keep the process alive. Default false. */
  readonly unref?: boolean;
}

/**
 * Emitted before each retry.
 *
 * @example
 * ```ts
 * retry.onRetry(({ attempt, delay, outcome }: RetryEvent) => {
 *   log.warn({ attempt, delay, error: outcome.ok ? undefined : outcome.error }, 'retrying');
 * });
 * ```
 */
export interface RetryEvent {
  /** The attempt that failed (0-based). */
  readonly attempt: number;
  /** How long the policy waits before the next attempt, in ms. */
  readonly delay: number;
  /** How the attempt failed: an error, or a value `retryOnResult` rejected. */
  readonly outcome: Result<unknown>;
}

/**
 * Why a retry policy stopped retrying a failing call: attempts used up, no time left before the
 * deadline, or the retry budget refused.
 *
 * @example
 * ```ts
 * retry.onGiveUp(({ reason }) => metrics.increment('retry.gave_up', { reason: reason satisfies GiveUpReason }));
 * ```
 */
export type GiveUpReason = 'attempts' | 'deadline' | 'budget';

/**
 * Emitted when a call fails for good although its failure was retryable.
 *
 * @example
 * ```ts
 * retry.onGiveUp(({ reason, attempts }: GiveUpEvent) => log.error(`gave up after ${attempts} attempts (${reason})`));
 * ```
 */
export interface GiveUpEvent {
  readonly reason: GiveUpReason;
  /** Attempts made. */
  readonly attempts: number;
  /** The last attempt's outcome. */
  readonly outcome: Result<unknown>;
}

/**
 * True for the errors no retry policy retries, whatever its `retryOn`: a circuit that refused the call
 * (open or isolated) and an aborted call. Recognises these errors from any copy of spofless.
 *
 * @example
 * ```ts
 * const retry = new RetryPolicy({ retryOn: (err) => !(err instanceof HttpError && err.status < 500) });
 * isNeverRetried(new BrokenCircuitError()); // true: retryOn is not even asked
 * ```
 */
export function isNeverRetried(error: unknown): boolean {
  return (
    isSpoflessError(error, ErrorCode.BrokenCircuit) ||
    isSpoflessError(error, ErrorCode.IsolatedCircuit) ||
    isSpoflessError(error, ErrorCode.Aborted)
  );
}

/**
 * The default `retryAfter`: a failure's own `retryAfterMs` property when it is a finite number >= 0.
 * Errors (or result objects) can carry the hint their source gave, e.g. from a `Retry-After` header.
 *
 * @example
 * ```ts
 * class HttpError extends Error { constructor(readonly status: number, readonly retryAfterMs?: number) { super(`HTTP ${status}`); } }
 * retryAfterOf(new HttpError(503, 2_000)); // 2000
 * ```
 */
export function retryAfterOf(failure: unknown): number | undefined {
  if (typeof failure !== 'object' || failure === null) return undefined;
  const ms = (failure as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof ms === 'number' && ms >= 0 && Number.isFinite(ms) ? ms : undefined;
}

// RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds; §5.6.7 lists the three date formats a
// recipient must accept. Date.parse alone is too lenient (it reads "1.5" as a date in 2001).
const DELAY_SECONDS = /^\d+$/;
const IMF_FIXDATE = /^[a-z]{3}, \d{2} [a-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/i;
const RFC_850 = /^[a-z]+, \d{2}-[a-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/i;
const ASCTIME = /^[a-z]{3} [a-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/i;

/**
 * Reads an HTTP `Retry-After` header value as a wait in ms: delay-seconds (`"120"`) or an HTTP-date
 * (`"Wed, 21 Oct 2015 07:28:00 GMT"`, measured from `now`, 0 if already past). `undefined` for a
 * missing or malformed value.
 *
 * @example
 * ```ts
 * parseRetryAfter('3'); // 3000
 * parseRetryAfter(res.headers.get('retry-after')); // undefined when the header is absent
 * ```
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (DELAY_SECONDS.test(text)) return Number(text) * 1_000;
  let date: string;
  if (IMF_FIXDATE.test(text) || RFC_850.test(text)) date = text;
  // asctime has no zone; HTTP dates are always GMT.
  else if (ASCTIME.test(text)) date = `${text} GMT`;
  else return undefined;
  const at = Date.parse(date);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Runs an operation up to `maxAttempts` times; see the module comment for what is retried, how long it
 * waits and how it stops. The operation's context carries the 0-based `attempt`. An attempt in progress
 * is not raced against the caller's signal: the operation is expected to honour it (put a
 * `TimeoutPolicy` inside the retry to stop waiting on one that does not).
 *
 * @example
 * ```ts
 * const retry = new RetryPolicy({ maxAttempts: 3, backoff: exponentialBackoff({ initial: 50, cap: 1_000 }) });
 * retry.onRetry(({ attempt, delay }) => log.warn({ attempt, delay }, 'retrying'));
 * retry.onGiveUp(({ reason, attempts }) => log.error({ reason, attempts }, 'giving up'));
 * const user = await retry.execute(({ signal }) => users.get(id, { signal }), req.signal);
 * ```
 */
export class RetryPolicy implements Policy<RetryContext> {
  readonly maxAttempts: number;
  readonly maxDelay: number;
  readonly #backoff: Backoff;
  readonly #retryOn: (error: unknown) => boolean;
  readonly #retryOnResult: ((value: unknown) => boolean) | undefined;
  readonly #retryAfter: (failure: unknown) => number | undefined;
  readonly #budget: RetryBudget | undefined;
  readonly #unref: boolean;
  readonly #onRetry = new Emitter<RetryEvent>();
  readonly #onGiveUp = new Emitter<GiveUpEvent>();
  /** Subscribes to retries (emitted before the wait); returns a disposable. */
  readonly onRetry: (listener: (event: RetryEvent) => void) => Disposable = this.#onRetry.subscribe;
  /** Subscribes to give-ups (attempts, deadline or budget exhausted); returns a disposable. */
  readonly onGiveUp: (listener: (event: GiveUpEvent) => void) => Disposable = this.#onGiveUp.subscribe;

  constructor(options: RetryOptions = {}) {
    const {
      maxAttempts = 3,
      backoff = fullJitterBackoff({ base: 100, cap: 10_000 }),
      maxDelay = 30_000,
      retryOn = isRetryable,
      retryOnResult,
      retryAfter = retryAfterOf,
      budget,
      unref = false,
    } = options;
    if (maxAttempts !== Infinity && !(Number.isInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new InvalidOptionError('RetryPolicy', 'maxAttempts', maxAttempts, 'an integer >= 1 or Infinity');
    }
    if (typeof maxDelay !== 'number' || !(maxDelay >= 0 && maxDelay <= MAX_TIMER_DELAY)) {
      throw new InvalidOptionError('RetryPolicy', 'maxDelay', maxDelay, `a number of milliseconds in [0, ${MAX_TIMER_DELAY}]`);
    }
    if (typeof backoff?.delay !== 'function') {
      throw new InvalidOptionError('RetryPolicy', 'backoff', backoff, 'an object with a delay(retry, previous) method');
    }
    checkFunction('retryOn', retryOn);
    checkFunction('retryAfter', retryAfter);
    if (retryOnResult !== undefined) checkFunction('retryOnResult', retryOnResult);
    if (budget !== undefined && (typeof budget.tryAcquire !== 'function' || typeof budget.recordCall !== 'function')) {
      throw new InvalidOptionError('RetryPolicy', 'budget', budget, 'a RetryBudget');
    }
    this.maxAttempts = maxAttempts;
    this.maxDelay = maxDelay;
    this.#backoff = backoff;
    this.#retryOn = retryOn;
    this.#retryOnResult = retryOnResult;
    this.#retryAfter = retryAfter;
    this.#budget = budget;
    this.#unref = unref === true;
  }

  async execute<T>(fn: Operation<T, RetryContext>, signal: AbortSignal = NEVER_ABORTED): Promise<T> {
    if (signal.aborted) throw errorForAbort(signal);
    this.#budget?.recordCall();
    let previousDelay = 0;
    for (let attempt = 0; ; attempt++) {
      let outcome: Result<T>;
      try {
        outcome = { ok: true, value: await fn({ signal, attempt }) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      if (outcome.ok && (this.#retryOnResult === undefined || !this.#retryOnResult(outcome.value))) return outcome.value;
      if (signal.aborted) throw errorForAbort(signal);
      if (!outcome.ok && (isNeverRetried(outcome.error) || !this.#retryOn(outcome.error))) throw outcome.error;
      if (attempt + 1 >= this.maxAttempts) return this.#giveUp('attempts', attempt + 1, outcome);

      const failure = outcome.ok ? outcome.value : outcome.error;
      const hint = this.#retryAfter(failure);
      let delay: number;
      if (hint === undefined) {
        delay = this.#backoff.delay(attempt, previousDelay);
        previousDelay = delay;
      } else {
        delay = hint;
      }
      // A NaN or negative delay from a custom strategy means "no wait", not a broken timer.
      delay = delay > 0 ? Math.min(delay, this.maxDelay) : 0;
      if (delay >= remainingTime(signal)) return this.#giveUp('deadline', attempt + 1, outcome);
      // Asked last, so that no token is spent on a retry the checks above would have refused.
      if (this.#budget !== undefined && !this.#budget.tryAcquire()) {
        this.#onGiveUp.emit({ reason: 'budget', attempts: attempt + 1, outcome });
        throw new RetryBudgetExhaustedError(failure);
      }
      this.#onRetry.emit({ attempt, delay, outcome });
      if (delay > 0) await sleep(delay, signal, this.#unref);
      // An onRetry listener may have aborted the signal: sleep() would notice, so look when not sleeping.
      else if (signal.aborted) throw errorForAbort(signal);
    }
  }

  #giveUp<T>(reason: GiveUpReason, attempts: number, outcome: Result<T>): T {
    this.#onGiveUp.emit({ reason, attempts, outcome });
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }
}

/** The default `retryOn`: everything but a spofless error marked not retryable. */
function isRetryable(error: unknown): boolean {
  return !isSpoflessError(error) || error.retryable;
}

function checkFunction(option: string, value: unknown): void {
  if (typeof value !== 'function') throw new InvalidOptionError('RetryPolicy', option, value, 'a function');
}

/** Waits `ms`; rejects at once (and clears the timer) when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal, unref: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(errorForAbort(signal));
      return;
    }
    if (signal === NEVER_ABORTED) {
      const timer = setTimeout(resolve, ms);
      if (unref) timer.unref();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(errorForAbort(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (unref) timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
