/**
 * Clocks. Every time-dependent policy takes a `Clock` so that tests can drive time by hand.
 *
 * The default clock is coarse on purpose. Reading `performance.now()` costs about 50 ns here, and a
 * breaker that reads it twice per call spends most of its budget on the clock. The coarse clock reads
 * the real monotonic clock at most once per event-loop turn (a `setImmediate` marks the turn's end) and
 * at least once every {@link COARSE_REFRESH_READS} reads, so a long chain of microtasks that never yields
 * still sees time move. A call that starts and settles within one turn without yielding is measured as
 * taking (close to) no time; any call that waits on I/O or a timer yields, and is measured to within the
 * length of the turn it settles in.
 */
import { performance } from 'node:perf_hooks';

/** A monotonic clock in milliseconds. */
export interface Clock {
  now(): number;
}

/** The precise monotonic clock: `performance.now()`. */
export const preciseClock: Clock = { now: () => performance.now() };

/** How many reads the coarse clock serves from its cache at most before reading the real clock. */
export const COARSE_REFRESH_READS = 64;

let cached = 0;
let fresh = false;
let readsLeft = 0;
/**
 * Changes whenever the coarse clock's value may have: at each real read and at the end of each turn.
 * While it is unchanged, `coarseClock.now()` returns the same value, so a caller that remembers
 * (epoch, time) can skip the call: the breaker's hot path does.
 */
export let coarseEpoch = 0;
const expire = (): void => {
  fresh = false;
  // The turn is over: time remembered during it is no longer current, even before the next read.
  coarseEpoch++;
};

/** The shared coarse monotonic clock (milliseconds); see the module comment for its precision. */
export const coarseClock: Clock = {
  now(): number {
    if (fresh && --readsLeft > 0) return cached;
    cached = performance.now();
    coarseEpoch++;
    readsLeft = COARSE_REFRESH_READS;
    if (!fresh) {
      fresh = true;
      // unref: the turn marker must never keep a process alive on its own.
      setImmediate(expire).unref();
    }
    return cached;
  },
};

/**
 * A clock moved by hand, for tests (and for users' own tests of code that uses spofless).
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * const breaker = new CircuitBreaker({ clock, openDuration: 1_000 });
 * clock.advance(1_000);
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  constructor(start = 0) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ms must be >= 0; got ${ms}`);
    this.#now += ms;
  }
  set(ms: number): void {
    this.#now = ms;
  }
}
