/**
 * A retry budget: a limit on retries shared by every retry policy that holds it, so that when a
 * dependency fails, retries add at most a fixed share to the load on it instead of multiplying it.
 *
 * It is a token bucket. Every call (a first attempt) deposits `ratio` tokens, time deposits
 * `minRetriesPerSecond` tokens a second (so a service with little traffic can still retry), and every
 * retry withdraws one whole token. The bucket holds at most `maxTokens`, so a long quiet or healthy
 * spell does not save up a storm of retries. Over any run, therefore:
 *
 *     retries <= initial tokens + ratio × calls + minRetriesPerSecond × elapsed seconds
 *
 * and a fresh budget holds `min(maxTokens, minRetriesPerSecond)` tokens, one second of the floor.
 * This is the scheme of Finagle's `RetryBudget`, with Envoy's default share of 20 %. The bucket is
 * refilled lazily when it is used: there is no background timer.
 *
 * Tokens are counted in millionths, in integers, so that five deposits of 0.2 make exactly one token
 * (`ratio` is taken to the nearest millionth).
 *
 * @example
 * ```ts
 * import { RetryBudget, RetryPolicy } from 'spofless/resilience';
 * const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 5 });
 * const users = new RetryPolicy({ budget });
 * const orders = new RetryPolicy({ budget, maxAttempts: 5 }); // both draw on the same budget
 * ```
 */
import { InvalidOptionError } from '../errors/index.js';
import { coarseClock, type Clock } from './clock.js';

/**
 * Options of {@link RetryBudget}.
 *
 * @example
 * ```ts
 * // Retries may add 10% to the load, and at least 2 a second whatever the traffic.
 * const options: RetryBudgetOptions = { ratio: 0.1, minRetriesPerSecond: 2, maxTokens: 50 };
 * ```
 */
export interface RetryBudgetOptions {
  /** The share of calls that may be retried, e.g. 0.2 for one retry per five calls. Default 0.2. */
  readonly ratio?: number;
  /** Retries allowed per second whatever the traffic. Default 10. */
  readonly minRetriesPerSecond?: number;
  /** The most tokens the bucket holds (>= 1). Default 100. */
  readonly maxTokens?: number;
  /** Default `coarseClock`. */
  readonly clock?: Clock;
}

// One token, in the integer units the bucket counts in.
const UNIT = 1_000_000;

/**
 * A token-bucket retry budget; see the module comment. Give one instance to several `RetryPolicy`s to
 * share it. `RetryPolicy` calls {@link RetryBudget.recordCall} once per call and
 * {@link RetryBudget.tryAcquire} before each retry; other retry loops may do the same.
 *
 * @example
 * ```ts
 * const budget = new RetryBudget();
 * budget.recordCall();
 * if (budget.tryAcquire()) {
 *   // retry
 * }
 * ```
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minRetriesPerSecond: number;
  readonly maxTokens: number;
  readonly #clock: Clock;
  readonly #perCall: number;
  readonly #perMs: number;
  readonly #max: number;
  #units: number;
  #refilledAt: number;

  constructor(options: RetryBudgetOptions = {}) {
    const { ratio = 0.2, minRetriesPerSecond = 10, maxTokens = 100, clock = coarseClock } = options;
    checkNumber('ratio', ratio, 0, 'a finite number >= 0');
    checkNumber('minRetriesPerSecond', minRetriesPerSecond, 0, 'a finite number >= 0');
    checkNumber('maxTokens', maxTokens, 1, 'a finite number >= 1');
    this.ratio = ratio;
    this.minRetriesPerSecond = minRetriesPerSecond;
    this.maxTokens = maxTokens;
    this.#clock = clock;
    this.#perCall = Math.round(ratio * UNIT);
    this.#perMs = (minRetriesPerSecond * UNIT) / 1_000;
    this.#max = Math.floor(maxTokens * UNIT);
    this.#units = Math.min(this.#max, Math.floor(minRetriesPerSecond * UNIT));
    this.#refilledAt = clock.now();
  }

  /** Whole retries the budget would allow now. */
  get available(): number {
    this.#refill();
    return Math.floor(this.#units / UNIT);
  }

  /** Counts one call (a first attempt, not a retry): deposits `ratio` tokens. */
  recordCall(): void {
    this.#refill();
    this.#units = Math.min(this.#max, this.#units + this.#perCall);
  }

  /** Takes one token for a retry; `false` (and nothing taken) when there is not a whole token. */
  tryAcquire(): boolean {
    this.#refill();
    if (this.#units < UNIT) return false;
    this.#units -= UNIT;
    return true;
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = now - this.#refilledAt;
    // A clock set backwards (possible with a manual clock) grants nothing and restarts the count.
    if (elapsed > 0 && this.#perMs > 0) {
      // Rounding down loses under a millionth of a token per refill; it never grants more than earned.
      this.#units = Math.min(this.#max, this.#units + Math.floor(elapsed * this.#perMs));
    }
    this.#refilledAt = now;
  }
}

function checkNumber(option: string, value: unknown, min: number, expected: string): void {
  if (typeof value !== 'number' || !(value >= min) || !Number.isFinite(value)) {
    throw new InvalidOptionError('RetryBudget', option, value, expected);
  }
}
