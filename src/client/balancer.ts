/**
 * Client-side balancers: which instance of a service the next call goes to. Each runs in the caller's
 * process on the in-memory list a `Discovery` keeps, with no network hop and no timer.
 *
 * A balancer sees only instances that may take new traffic (the discovery has already dropped
 * draining, critical and maintenance ones) and may be told to skip some (those a call already tried).
 *
 * - `roundRobin()`: each in turn.
 * - `leastRequest()`: "power of two choices": two at random, the one with fewer calls in flight
 *   (Mitzenmacher's result: almost as good as asking every instance, at the cost of two).
 * - `zoneAware({ zone, minHealthy, inner })`: the caller's zone while it has at least `minHealthy`
 *   instances left to try, else every zone (spill over), then `inner` chooses.
 */
import { InvalidOptionError } from '../errors/index.js';
import type { RandomSource } from '../resilience/index.js';
import type { Instance } from './types.js';

/** An instance as a balancer sees it: its catalog entry and the calls in flight to it from this process. */
export interface Endpoint {
  /** The instance id (unique within its service). */
  readonly id: string;
  readonly instance: Instance;
  /** `http://address:port`. */
  readonly origin: string;
  /** Calls this process has in flight to this instance (until their response headers). */
  inFlight: number;
}

/**
 * A balancing strategy. `pick` must not keep `endpoints`: the array is replaced when the list changes.
 *
 * @example
 * ```ts
 * const first: Balancer = { name: 'first', pick: (eps, skip) => eps.find((e) => !skip?.has(e.id)) };
 * ```
 */
export interface Balancer {
  readonly name: string;
  pick(endpoints: readonly Endpoint[], skip?: ReadonlySet<string>): Endpoint | undefined;
}

/**
 * Each instance in turn.
 *
 * @example
 * ```ts
 * const api = await client.discover('api', { balancer: roundRobin() });
 * ```
 */
export function roundRobin(): Balancer {
  let next = 0;
  return {
    name: 'round-robin',
    pick(endpoints, skip) {
      const n = endpoints.length;
      for (let i = 0; i < n; i++) {
        const ep = endpoints[(next + i) % n]!;
        if (skip === undefined || !skip.has(ep.id)) {
          next = (next + i + 1) % n;
          return ep;
        }
      }
      return undefined;
    },
  };
}

/**
 * Options of {@link leastRequest}.
 *
 * @example
 * ```ts
 * const options: LeastRequestOptions = { choices: 2 };
 * ```
 */
export interface LeastRequestOptions {
  /** How many instances are drawn at random before the least loaded is taken. Default 2. */
  readonly choices?: number;
  /** Random numbers in [0, 1). Default `Math.random`. */
  readonly random?: RandomSource;
}

/**
 * Power of two choices, least request: draws `choices` distinct instances at random and takes the one
 * with the fewest calls in flight (the first drawn on a tie).
 *
 * @example
 * ```ts
 * const api = await client.discover('api', { balancer: leastRequest() });
 * ```
 */
export function leastRequest(options: LeastRequestOptions = {}): Balancer {
  const choices = options.choices ?? 2;
  if (!Number.isInteger(choices) || choices < 1) throw new InvalidOptionError('leastRequest', 'choices', choices, 'an integer >= 1');
  const random = options.random ?? Math.random;
  if (typeof random !== 'function') throw new InvalidOptionError('leastRequest', 'random', random, 'a function returning [0, 1)');
  return {
    name: 'least-request',
    pick(all, skip) {
      const endpoints = skip === undefined || skip.size === 0 ? all : all.filter((e) => !skip.has(e.id));
      const n = endpoints.length;
      if (n === 0) return undefined;
      if (n === 1) return endpoints[0];
      const k = Math.min(choices, n);
      let best: Endpoint | undefined;
      if (k === 2) {
        // The common case without an allocation: two distinct indexes.
        const a = Math.floor(random() * n);
        let b = Math.floor(random() * (n - 1));
        if (b >= a) b++;
        const ea = endpoints[a]!;
        const eb = endpoints[b]!;
        return eb.inFlight < ea.inFlight ? eb : ea;
      }
      const drawn = new Set<number>();
      while (drawn.size < k) drawn.add(Math.floor(random() * n));
      for (const i of drawn) {
        const e = endpoints[i]!;
        if (best === undefined || e.inFlight < best.inFlight) best = e;
      }
      return best;
    },
  };
}

/**
 * Options of {@link zoneAware}.
 *
 * @example
 * ```ts
 * const options: ZoneAwareOptions = { zone: 'eu-west-1a', minHealthy: 2, inner: leastRequest() };
 * ```
 */
export interface ZoneAwareOptions {
  /** The caller's zone. */
  readonly zone: string;
  /** Stay in the zone while it has at least this many instances left to try. Default 1. */
  readonly minHealthy?: number;
  /** Chooses among the instances kept. Default `leastRequest()`. */
  readonly inner?: Balancer;
}

/**
 * Prefers instances in the caller's zone (no cross-zone latency or transfer cost), and spills over to
 * every zone when the caller's has fewer than `minHealthy` instances that may take the call.
 *
 * @example
 * ```ts
 * const api = await client.discover('api', { balancer: zoneAware({ zone: process.env.ZONE!, minHealthy: 2 }) });
 * ```
 */
export function zoneAware(options: ZoneAwareOptions): Balancer {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('zoneAware', 'options', options, 'an object with a zone');
  const { zone } = options;
  if (typeof zone !== 'string' || zone === '') throw new InvalidOptionError('zoneAware', 'zone', zone, 'a non-empty string');
  const minHealthy = options.minHealthy ?? 1;
  if (!Number.isInteger(minHealthy) || minHealthy < 1) throw new InvalidOptionError('zoneAware', 'minHealthy', minHealthy, 'an integer >= 1');
  const inner = options.inner ?? leastRequest();
  // The local subset is rebuilt only when the list array changes (the discovery replaces it on change).
  let seen: readonly Endpoint[] | undefined;
  let local: readonly Endpoint[] = [];
  return {
    name: `zone-aware(${inner.name})`,
    pick(endpoints, skip) {
      if (endpoints !== seen) {
        seen = endpoints;
        local = endpoints.filter((e) => e.instance.zone === zone);
      }
      let left = local.length;
      if (skip !== undefined && skip.size > 0) for (const e of local) if (skip.has(e.id)) left--;
      return inner.pick(left >= minHealthy ? local : endpoints, skip);
    },
  };
}
