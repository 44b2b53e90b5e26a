/**
 * Sliding windows of call outcomes for the circuit breaker. Both keep running totals so that reading a
 * rate is O(1), and neither owns a timer: the time window rotates lazily when it is written or read.
 */

/** Totals a window reports. */
export interface WindowCounts {
  readonly calls: number;
  readonly failures: number;
  readonly slow: number;
}

/** A window's exported contents, for `CircuitBreaker#toJSON` and restoring. */
export type WindowSnapshot =
  | { readonly type: 'count'; readonly outcomes: readonly number[] }
  | { readonly type: 'time'; readonly buckets: ReadonlyArray<readonly [ageMs: number, calls: number, failures: number, slow: number]> };

export interface OutcomeWindow extends WindowCounts {
  /** Adds `n` outcomes seen at `now`. */
  record(now: number, failed: boolean, slow: boolean, n?: number): void;
  /** Drops outcomes that have aged out as of `now` (a no-op for count windows). */
  advance(now: number): void;
  reset(): void;
  toJSON(now: number): WindowSnapshot;
  restore(snapshot: WindowSnapshot, now: number): void;
}

const FAILED = 1;
const SLOW = 2;

/** The last `size` outcomes. One byte per outcome. */
export class CountWindow implements OutcomeWindow {
  readonly #ring: Uint8Array;
  #pos = 0;
  calls = 0;
  failures = 0;
  slow = 0;

  constructor(size: number) {
    this.#ring = new Uint8Array(size);
  }

  record(_now: number, failed: boolean, slow: boolean, n = 1): void {
    const ring = this.#ring;
    const flags = (failed ? FAILED : 0) | (slow ? SLOW : 0);
    for (let i = 0; i < n; i++) {
      if (this.calls === ring.length) {
        const old = ring[this.#pos]!;
        this.failures -= old & FAILED;
        this.slow -= (old & SLOW) >> 1;
      } else {
        this.calls++;
      }
      ring[this.#pos] = flags;
      this.failures += flags & FAILED;
      this.slow += (flags & SLOW) >> 1;
      this.#pos = this.#pos + 1 === ring.length ? 0 : this.#pos + 1;
    }
  }

  advance(): void {}

  reset(): void {
    this.#ring.fill(0);
    this.#pos = 0;
    this.calls = this.failures = this.slow = 0;
  }

  toJSON(): WindowSnapshot {
    // Oldest first, so restoring replays them in order.
    const out: number[] = [];
    const ring = this.#ring;
    const start = this.calls === ring.length ? this.#pos : 0;
    for (let i = 0; i < this.calls; i++) out.push(ring[(start + i) % ring.length]!);
    return { type: 'count', outcomes: out };
  }

  restore(snapshot: WindowSnapshot): void {
    this.reset();
    if (snapshot.type !== 'count') return;
    for (const o of snapshot.outcomes) this.record(0, (o & FAILED) !== 0, (o & SLOW) !== 0);
  }
}

/**
 * Outcomes of the last `duration` ms, in `buckets` buckets: the window slides one bucket at a time, so
 * an outcome is forgotten between `duration - duration/buckets` and `duration` ms after it was seen.
 */
export class TimeWindow implements OutcomeWindow {
  // [calls, failures, slow] per bucket in one array of small integers: a typed array would cost a
  // separate backing store (~240 bytes more per breaker for 10 buckets).
  readonly #counts: number[];
  readonly #width: number;
  readonly #n: number;
  #cur = 0;
  #curStart: number;
  calls = 0;
  failures = 0;
  slow = 0;

  constructor(duration: number, buckets: number, now: number) {
    this.#n = buckets;
    this.#width = duration / buckets;
    // Array.from makes packed small-integer elements; new Array(n).fill(0) would stay holey (slower).
    this.#counts = Array.from({ length: buckets * 3 }, () => 0);
    this.#curStart = now;
  }

  advance(now: number): void {
    const elapsed = now - this.#curStart;
    if (elapsed < this.#width) return;
    const steps = Math.floor(elapsed / this.#width);
    if (steps >= this.#n) {
      this.#counts.fill(0);
      this.calls = this.failures = this.slow = 0;
      this.#cur = 0;
    } else {
      const c = this.#counts;
      for (let s = 0; s < steps; s++) {
        this.#cur = this.#cur + 1 === this.#n ? 0 : this.#cur + 1;
        const j = this.#cur * 3;
        this.calls -= c[j]!;
        this.failures -= c[j + 1]!;
        this.slow -= c[j + 2]!;
        c[j] = c[j + 1] = c[j + 2] = 0;
      }
    }
    this.#curStart += steps * this.#width;
  }

  record(now: number, failed: boolean, slow: boolean, n = 1): void {
    if (now - this.#curStart >= this.#width) this.advance(now);
    const c = this.#counts;
    const j = this.#cur * 3;
    c[j]! += n;
    this.calls += n;
    if (failed) {
      c[j + 1]! += n;
      this.failures += n;
    }
    if (slow) {
      c[j + 2]! += n;
      this.slow += n;
    }
  }

  reset(): void {
    this.#counts.fill(0);
    this.calls = this.failures = this.slow = 0;
  }

  toJSON(now: number): WindowSnapshot {
    this.advance(now);
    const buckets: Array<[number, number, number, number]> = [];
    const c = this.#counts;
    for (let age = 0; age < this.#n; age++) {
      const b = (this.#cur - age + this.#n) % this.#n;
      const j = b * 3;
      if (c[j] === 0) continue;
      buckets.push([age * this.#width + (now - this.#curStart), c[j]!, c[j + 1]!, c[j + 2]!]);
    }
    return { type: 'time', buckets };
  }

  restore(snapshot: WindowSnapshot, now: number): void {
    this.reset();
    this.#cur = 0;
    this.#curStart = now;
    if (snapshot.type !== 'time') return;
    const c = this.#counts;
    for (const [age, calls, failures, slow] of snapshot.buckets) {
      const back = Math.floor(age / this.#width);
      if (!(back >= 0 && back < this.#n)) continue;
      const j = ((this.#n - back) % this.#n) * 3;
      c[j]! += calls;
      c[j + 1]! += failures;
      c[j + 2]! += slow;
      this.calls += calls;
      this.failures += failures;
      this.slow += slow;
    }
  }
}
