/**
 * Time for the health checker: a clock and one-shot timers, injectable so that tests drive time by hand
 * (`ManualTimers`) while the checks themselves do real network I/O.
 */

/** A monotonic clock in milliseconds (the same shape as `spofless/resilience`'s `Clock`). */
export interface Clock {
  now(): number;
}

/** One-shot timers. Handles are opaque. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Node's timers, unref'd: a pending health check never keeps a process alive. */
export const realTimers: Timers = {
  setTimeout(callback, ms) {
    const t = setTimeout(callback, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

interface ManualTimer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A clock and timers moved by hand, for tests.
 *
 * @example
 * ```ts
 * const time = new ManualTimers();
 * const checker = new HealthChecker({ store, clock: time, timers: time });
 * time.advance(5_000); // runs every timer due within the next 5 s, in order
 * ```
 */
export class ManualTimers implements Clock, Timers {
  #now: number;
  #nextId = 1;
  #timers: ManualTimer[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** Timers not yet run or cleared. */
  get pending(): number {
    return this.#timers.length;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const timer = { id: this.#nextId++, at: this.#now + Math.max(0, ms), callback };
    this.#timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }

  /**
   * Moves time forward by `ms`, running every timer due by then in due order (the clock reads each
   * timer's due time while it runs). Timers set by those callbacks run too if they fall due in time.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualTimers.advance: ms must be >= 0; got ${ms}`);
    const end = this.#now + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.#timers) if (t.at <= end && (next === undefined || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      if (next === undefined) break;
      const due = next;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
    }
    this.#now = end;
  }
}
