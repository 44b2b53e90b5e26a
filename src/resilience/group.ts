/**
 * Breakers per key (per host, per tenant, per shard) in a bounded map, so per-dependency breakers never
 * grow without limit. Options are validated once and shared by every breaker of the group.
 *
 * Eviction, with no timer: when a new key would exceed `maxKeys`, the oldest entries are examined
 * (second chance: one used within `idleTtl` goes to the back of the line once) and the first that is
 * idle (nothing in flight) is dropped, open circuits last, since forgetting an open circuit sends traffic
 * back to a broken dependency. Each new key also drops up to two entries idle for longer than `idleTtl`,
 * so a group whose keys come and go shrinks back by itself; `sweep()` does a full pass on demand.
 */
import { InvalidOptionError } from '../errors/index.js';
import { CircuitBreaker, sharedBreakerOptions, type CircuitBreakerOptions, type NormalizedBreakerOptions } from './breaker.js';
import { coarseClock, type Clock } from './clock.js';
import { Emitter, type Disposable } from './events.js';
import type { Operation, Result } from './policy.js';
import { checkKnownKeys, checkNumber } from './validate.js';

export interface BreakerGroupOptions<F = never> {
  /** Options every breaker of the group is made with (validated once, here). */
  readonly breaker?: CircuitBreakerOptions<F>;
  /** At most this many breakers are kept. Default 10_000. */
  readonly maxKeys?: number;
  /** A breaker unused for this many ms may be dropped. Default 300_000 (5 min). */
  readonly idleTtl?: number;
  /** Default: the breaker options' clock, else the coarse clock. */
  readonly clock?: Clock;
}

interface Entry<F> {
  readonly breaker: CircuitBreaker<F>;
  used: number;
}

const OWNER = 'BreakerGroup';

/**
 * @example
 * ```ts
 * import { BreakerGroup } from 'spofless/resilience';
 * const perHost = new BreakerGroup({ maxKeys: 1_000, breaker: { failureRateThreshold: 0.5 } });
 * const res = await perHost.execute(url.host, ({ signal }) => fetch(url, { signal }));
 * ```
 */
export class BreakerGroup<F = never> {
  readonly #map = new Map<string, Entry<F>>();
  readonly #options: NormalizedBreakerOptions<F>;
  readonly #maxKeys: number;
  readonly #idleTtl: number;
  readonly #clock: Clock;
  #onEvict: Emitter<{ key: string; breaker: CircuitBreaker<F> }> | undefined;

  constructor(options: BreakerGroupOptions<F> = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(OWNER, 'options', options, 'an object');
    checkKnownKeys(OWNER, options, ['breaker', 'maxKeys', 'idleTtl', 'clock']);
    this.#options = sharedBreakerOptions(options.breaker ?? {});
    this.#maxKeys = checkNumber(OWNER, 'maxKeys', options.maxKeys, { min: 1, integer: true }, 10_000);
    this.#idleTtl = checkNumber(OWNER, 'idleTtl', options.idleTtl, { min: 0 }, 300_000);
    this.#clock = options.clock ?? options.breaker?.clock ?? coarseClock;
  }

  /** How many breakers the group holds. */
  get size(): number {
    return this.#map.size;
  }

  /** The breaker for `key`, made on first use. */
  get(key: string): CircuitBreaker<F> {
    const now = this.#clock.now();
    const e = this.#map.get(key);
    if (e !== undefined) {
      e.used = now;
      return e.breaker;
    }
    if (typeof key !== 'string') throw new InvalidOptionError(OWNER, 'key', key, 'a string');
    this.#dropIdle(now, 2);
    if (this.#map.size >= this.#maxKeys) this.#evictOne(now);
    const breaker = new CircuitBreaker<F>(this.#options);
    this.#map.set(key, { breaker, used: now });
    return breaker;
  }

  /** The breaker for `key` if the group holds one; never creates. */
  peek(key: string): CircuitBreaker<F> | undefined {
    return this.#map.get(key)?.breaker;
  }

  /** `get(key).execute(fn, signal)`. */
  execute<T>(key: string, fn: Operation<T>, signal?: AbortSignal): Promise<T | F> {
    return this.get(key).execute(fn, signal);
  }

  /** `get(key).tryExecute(fn, signal)`. */
  tryExecute<T>(key: string, fn: Operation<T>, signal?: AbortSignal): Promise<Result<T | F>> {
    return this.get(key).tryExecute(fn, signal);
  }

  /** Forgets `key`'s breaker. */
  delete(key: string): boolean {
    return this.#map.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.#map.keys();
  }

  /** Drops every breaker idle for longer than `idleTtl` with nothing in flight; returns how many. */
  sweep(): number {
    return this.#dropIdle(this.#clock.now(), Infinity);
  }

  /** Called with each breaker the group drops. */
  onEvict(listener: (event: { key: string; breaker: CircuitBreaker<F> }) => void): Disposable {
    return (this.#onEvict ??= new Emitter()).subscribe(listener);
  }

  #drop(key: string, e: Entry<F>): void {
    this.#map.delete(key);
    this.#onEvict?.emit({ key, breaker: e.breaker });
  }

  /** Drops up to `max` idle entries among the oldest-inserted ones; stops at the first that is not idle. */
  #dropIdle(now: number, max: number): number {
    let n = 0;
    for (const [key, e] of this.#map) {
      if (n >= max || now - e.used < this.#idleTtl || e.breaker.inFlight > 0) break;
      this.#drop(key, e);
      n++;
    }
    return n;
  }

  /** Makes room for one entry. */
  #evictOne(now: number): void {
    // Bounded scan so one insertion never costs O(size).
    let budget = 64;
    let fallback: [string, Entry<F>] | undefined;
    const secondChance: Array<[string, Entry<F>]> = [];
    for (const [key, e] of this.#map) {
      if (budget-- === 0) break;
      const idle = e.breaker.inFlight === 0;
      const recent = now - e.used < this.#idleTtl;
      const closed = e.breaker.state === 'closed';
      if (idle && closed && !recent) {
        this.#drop(key, e);
        this.#requeue(secondChance);
        return;
      }
      if (idle && fallback === undefined && closed) fallback = [key, e];
      if (recent) secondChance.push([key, e]);
    }
    this.#requeue(secondChance);
    // Nothing idle and cold: take the oldest idle closed one, else simply the oldest (the bound wins).
    const victim = fallback ?? (this.#map.entries().next().value);
    if (victim !== undefined) this.#drop(victim[0], victim[1]);
  }

  #requeue(entries: Array<[string, Entry<F>]>): void {
    for (const [key, e] of entries) {
      if (this.#map.delete(key)) this.#map.set(key, e);
    }
  }
}
