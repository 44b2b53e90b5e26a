/**
 * Backoff strategies: how long a retry policy waits before each retry. Each strategy is a small
 * immutable object with one method, so one instance can be shared by any number of policies and calls;
 * the only per-call state (the previous delay, which decorrelated jitter needs) is passed in by the
 * caller.
 *
 * The jittered strategies follow the formulas of the AWS Architecture Blog post "Exponential Backoff
 * And Jitter" (Marc Brooker, 2015): jitter spreads the retries of many clients that failed together, so
 * they do not come back together.
 *
 * @example
 * ```ts
 * import { RetryPolicy, fullJitterBackoff } from 'spofless/resilience';
 * const retry = new RetryPolicy({ backoff: fullJitterBackoff({ base: 50, cap: 2_000 }) });
 * ```
 */
import { InvalidOptionError } from '../errors/index.js';

/**
 * A source of random numbers in [0, 1), like `Math.random`; inject a fixed one in tests.
 *
 * @example
 * ```ts
 * const half: RandomSource = () => 0.5;
 * fullJitterBackoff({ base: 100, random: half }).delay(0, 0); // 50
 * ```
 */
export type RandomSource = () => number;

/**
 * A backoff strategy.
 *
 * @example
 * ```ts
 * // A custom strategy: 100 ms, then 1 s for every later retry.
 * const steps: Backoff = { delay: (retry) => (retry === 0 ? 100 : 1_000) };
 * ```
 */
export interface Backoff {
  /**
   * The wait in milliseconds before a retry.
   *
   * @param retry 0 for the first retry (after attempt 0 failed), 1 for the second, and so on.
   * @param previous the delay this strategy returned for the previous retry of the same call; 0 before
   *   the first retry.
   */
  delay(retry: number, previous: number): number;
}

/**
 * The same wait before every retry.
 *
 * @example
 * ```ts
 * const retry = new RetryPolicy({ maxAttempts: 5, backoff: constantBackoff(200) });
 * ```
 */
export function constantBackoff(delay: number): Backoff {
  checkDelay('constantBackoff', 'delay', delay);
  return Object.freeze({ delay: () => delay });
}

/**
 * Options of {@link exponentialBackoff}.
 *
 * @example
 * ```ts
 * const options: ExponentialBackoffOptions = { initial: 50, factor: 3, cap: 5_000 };
 * ```
 */
export interface ExponentialBackoffOptions {
  /** The first wait, in ms. Default 100. */
  readonly initial?: number;
  /** Each wait is the previous one times this. Default 2. */
  readonly factor?: number;
  /** The longest wait, in ms. Default 10 000. */
  readonly cap?: number;
}

/**
 * `min(cap, initial × factor^retry)`: waits that grow geometrically up to a cap, without jitter. Prefer a
 * jittered strategy when many clients may fail at once.
 *
 * @example
 * ```ts
 * exponentialBackoff({ initial: 100, factor: 2, cap: 1_000 }); // 100, 200, 400, 800, 1000, 1000...
 * ```
 */
export function exponentialBackoff(options: ExponentialBackoffOptions = {}): Backoff {
  const { initial = 100, factor = 2, cap = 10_000 } = options;
  checkDelay('exponentialBackoff', 'initial', initial);
  checkDelay('exponentialBackoff', 'cap', cap);
  if (typeof factor !== 'number' || !(factor >= 1) || !Number.isFinite(factor)) {
    throw new InvalidOptionError('exponentialBackoff', 'factor', factor, 'a finite number >= 1');
  }
  return Object.freeze({ delay: (retry: number) => exponential(initial, factor, cap, retry) });
}

/**
 * Options of the jittered strategies.
 *
 * @example
 * ```ts
 * const options: JitterBackoffOptions = { base: 100, cap: 2_000, random: seededRandom(42) };
 * ```
 */
export interface JitterBackoffOptions {
  /** The base wait, in ms. Default 100. */
  readonly base?: number;
  /** The longest wait, in ms. Default 10 000. */
  readonly cap?: number;
  /** Random numbers in [0, 1). Default `Math.random`. */
  readonly random?: RandomSource;
}

/**
 * "Full jitter": `random_between(0, min(cap, base × 2^retry))`. The AWS post found it does the least
 * total work of the strategies it compared; it is the retry policy's default.
 *
 * @example
 * ```ts
 * const backoff = fullJitterBackoff({ base: 100, cap: 5_000 });
 * backoff.delay(3, 0); // somewhere in [0, 800)
 * ```
 */
export function fullJitterBackoff(options: JitterBackoffOptions = {}): Backoff {
  const { base, cap, random } = jitterOptions('fullJitterBackoff', options);
  return Object.freeze({ delay: (retry: number) => random() * exponential(base, 2, cap, retry) });
}

/**
 * "Decorrelated jitter": `min(cap, random_between(base, previous × 3))`, starting from `previous = base`.
 * Each wait depends on the last one rather than on the retry count, which spreads clients further apart
 * while still growing.
 *
 * @example
 * ```ts
 * const backoff = decorrelatedJitterBackoff({ base: 100, cap: 5_000 });
 * let previous = 0;
 * for (let retry = 0; retry < 3; retry++) previous = backoff.delay(retry, previous);
 * ```
 */
export function decorrelatedJitterBackoff(options: JitterBackoffOptions = {}): Backoff {
  const { base, cap, random } = jitterOptions('decorrelatedJitterBackoff', options);
  return Object.freeze({
    delay: (_retry: number, previous: number) => {
      const upper = Math.max(base, previous) * 3;
      return Math.min(cap, base + random() * (upper - base));
    },
  });
}

function exponential(initial: number, factor: number, cap: number, retry: number): number {
  // factor ** retry overflows to Infinity for large retry counts: min() turns that into the cap, but
  // 0 × Infinity is NaN, so a zero start has to stay zero explicitly.
  if (initial === 0) return 0;
  return Math.min(cap, initial * factor ** retry);
}

function jitterOptions(owner: string, options: JitterBackoffOptions): Required<JitterBackoffOptions> {
  const { base = 100, cap = 10_000, random = Math.random } = options;
  checkDelay(owner, 'base', base);
  checkDelay(owner, 'cap', cap);
  if (cap < base) throw new InvalidOptionError(owner, 'cap', cap, `a number >= base (${base})`);
  if (typeof random !== 'function') throw new InvalidOptionError(owner, 'random', random, 'a function returning [0, 1)');
  return { base, cap, random };
}

function checkDelay(owner: string, option: string, value: unknown): void {
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
    throw new InvalidOptionError(owner, option, value, 'a finite number of milliseconds >= 0');
  }
}
