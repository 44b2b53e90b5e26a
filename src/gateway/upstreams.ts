/**
 * The gateway's upstreams: one {@link Upstream} per catalog instance (its keep-alive pool, in-flight
 * count, breaker, active-check and outlier state), grouped per service in a {@link ServicePool} that
 * picks the instance for each try.
 *
 * An instance takes a new request when all of these hold:
 * - its catalog status is `passing` or `warning` (a `draining` instance gets nothing new, from the
 *   watch event on, while what it already has finishes);
 * - its version or color is the one the request wants (traffic shifting, decided by the caller);
 * - it has not been tried for this request already (a retry always goes elsewhere);
 * - it is healthy: its active check is passing and it is not ejected as an outlier, unless the pool is
 *   in panic (fewer than `panicThreshold`% of the status-routable instances are healthy), where health
 *   is ignored as Envoy does: better to spread over all than to crush the few left;
 * - it is in the gateway's zone, while that zone has at least `minHealthyInZone` such instances
 *   (else every zone: spill-over).
 *
 * Outlier ejection (passive health), as Envoy's: `consecutiveFailures` 5xx answers or connection
 * failures in a row eject an instance for `baseEjectionMs × (times ejected)`, capped at
 * `maxEjectionMs`, never more than `maxEjectionPercent` of the pool at once (but always one). The
 * ejection ends by time: the next pick after it sees the instance again.
 *
 * Picking allocates nothing: two passes over the (small) instance array, counting then choosing.
 * Written by hand because it is the hot path; `src/client/balancer.ts` works on pre-filtered arrays,
 * which here would mean an array per request.
 */
import { Pool } from 'undici';
import { H1Pool } from '../http/h1-client.js';
import type { Instance } from '../catalog/types.js';
import { CircuitBreaker, type NormalizedBreakerOptions } from '../resilience/index.js';

/** Statuses that take new requests. */
const ROUTABLE_STATUS = new Set(['passing', 'warning']);

/** Tunables of health and balancing, shared by every pool of a gateway. */
export interface PoolSettings {
  readonly zone: string | undefined;
  readonly minHealthyInZone: number;
  readonly panicThreshold: number;
  readonly slowStartMs: number;
  readonly outlier: OutlierSettings;
  readonly connections: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly breaker: NormalizedBreakerOptions<never>;
}

export interface OutlierSettings {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
}

/** One instance as the gateway sees it. Mutable on purpose: the hot path updates it in place. */
export class Upstream {
  readonly key: string;
  readonly origin: string;
  readonly pool: Pool;
  /** The hand-written HTTP/1.1 pool for bodiless requests to a plain-HTTP instance (undefined for https). */
  readonly h1: H1Pool | undefined;
  readonly breaker: CircuitBreaker;
  instance: Instance;
  /** Status passing/warning. */
  routable: boolean;
  inFlight = 0;
  readonly addedAt: number;
  // Active health.
  activeHealthy = true;
  checkPasses = 0;
  checkFailures = 0;
  lastCheck = '';
  // Outlier detection.
  consecutiveFailures = 0;
  ejectedUntil = 0;
  ejections = 0;
  // Metrics.
  requests = 0;
  failures = 0;
  readonly statusClasses = new Float64Array(6);

  constructor(instance: Instance, settings: PoolSettings, now: number) {
    this.instance = instance;
    this.key = `${instance.service}/${instance.id}`;
    this.origin = originOf(instance);
    this.routable = ROUTABLE_STATUS.has(instance.status);
    this.addedAt = now;
    this.pool = new Pool(this.origin, {
      connections: settings.connections,
      pipelining: 1,
      // Below the upstream's keep-alive (node's default is 5 s; undici also honours a `Keep-Alive:
      // timeout=` hint minus a margin), so a reused socket is never one the upstream just closed.
      keepAliveTimeout: settings.idleTimeoutMs,
      keepAliveMaxTimeout: settings.idleTimeoutMs,
      connect: { timeout: settings.connectTimeoutMs },
    });
    // Bodiless requests to a plain-HTTP instance take the hand-written client (h1.ts: measured faster).
    this.h1 =
      instance.metadata?.scheme === 'https'
        ? undefined
        : new H1Pool({ host: instance.address.replace(/^\[|\]$/g, ''), port: instance.port, connections: settings.connections, idleTimeoutMs: settings.idleTimeoutMs, connectTimeoutMs: settings.connectTimeoutMs });
    this.breaker = new CircuitBreaker(settings.breaker);
  }

  /** Stops taking requests; those in flight finish, then the connections close. */
  close(): Promise<unknown> {
    return Promise.all([this.pool.close(), this.h1?.close()]);
  }

  /** Closes every connection now. */
  destroy(): Promise<unknown> {
    return Promise.all([this.pool.destroy(), this.h1?.destroy()]);
  }

  /** Whether the catalog entry changed where it is reached (then the upstream is replaced). */
  sameAddress(inst: Instance): boolean {
    return originOf(inst) === this.origin;
  }

  update(inst: Instance): void {
    this.instance = inst;
    this.routable = ROUTABLE_STATUS.has(inst.status);
  }

  ejected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  /** The share of normal traffic during slow start: 0.1 → 1 over `slowStartMs`. */
  weight(now: number, slowStartMs: number): number {
    if (slowStartMs <= 0) return 1;
    const age = now - this.addedAt;
    return age >= slowStartMs ? 1 : Math.max(0.1, age / slowStartMs);
  }

  matches(want: string | undefined): boolean {
    return want === undefined || this.instance.version === want || this.instance.color === want;
  }
}

/** `http://address:port` of an instance (`https` when its metadata says `scheme: https`). */
export function originOf(inst: Instance): string {
  const host = inst.address.includes(':') && !inst.address.startsWith('[') ? `[${inst.address}]` : inst.address;
  const scheme = inst.metadata?.scheme === 'https' ? 'https' : 'http';
  return `${scheme}://${host}:${inst.port}`;
}

/** A consistent-hash ring: 100 points per instance, sorted. */
interface Ring {
  readonly points: Uint32Array;
  readonly owners: readonly Upstream[];
}

const RING_POINTS = 100;

/** The instances of one service and how a try picks among them. */
export class ServicePool {
  readonly service: string;
  readonly #settings: PoolSettings;
  /** Every known instance of the service, whatever its status. Replaced (never mutated) on change. */
  upstreams: readonly Upstream[] = [];
  #rr = 0;
  #ring: Ring | undefined;

  constructor(service: string, settings: PoolSettings) {
    this.service = service;
    this.#settings = settings;
  }

  /** Replaces the member list (after a catalog change). */
  set(list: readonly Upstream[]): void {
    this.upstreams = list;
    this.#ring = undefined;
  }

  /**
   * The upstream for one try, or `undefined` when none may take it.
   *
   * @param kind the route's balancer
   * @param want the version/color the request goes to (undefined: any)
   * @param hash the request's hash key (consistent hash), or -1
   * @param tried upstreams this request already tried or found refusing (never picked again)
   */
  pick(kind: number, want: string | undefined, hash: number, tried: readonly Upstream[] | undefined, now: number): Upstream | undefined {
    const list = this.upstreams;
    const n = list.length;
    const s = this.#settings;
    const zone = s.zone;
    let total = 0;
    let healthy = 0;
    let localHealthy = 0;
    let localAll = 0;
    for (let i = 0; i < n; i++) {
      const u = list[i]!;
      if (!u.routable || !u.matches(want) || (tried !== undefined && tried.includes(u))) continue;
      total++;
      const local = zone !== undefined && u.instance.zone === zone;
      if (local) localAll++;
      if (u.activeHealthy && u.ejectedUntil <= now) {
        healthy++;
        if (local) localHealthy++;
      }
    }
    if (total === 0) return undefined;
    // Panic: too few healthy: spread over every status-routable instance rather than overload the rest.
    const panic = healthy === 0 || (healthy * 100) / total < s.panicThreshold;
    const useLocal = zone !== undefined && (panic ? localAll : localHealthy) >= s.minHealthyInZone;
    const count = useLocal ? (panic ? localAll : localHealthy) : panic ? total : healthy;
    if (count === 0) return undefined;
    const flags = (panic ? 1 : 0) | (useLocal ? 2 : 0);
    if (kind === BALANCER_HASH && hash >= 0) {
      const u = this.#ringPick(hash, want, tried, now, flags);
      if (u !== undefined) return u;
    }
    if (count === 1) return this.#nth(0, want, tried, now, flags);
    if (kind === BALANCER_ROUND_ROBIN) {
      const start = this.#rr++ % count;
      for (let k = 0; k < count; k++) {
        const u = this.#nth((start + k) % count, want, tried, now, flags)!;
        // Slow start: a new instance is passed over in proportion to how new it is.
        if (k === count - 1 || s.slowStartMs <= 0 || Math.random() < u.weight(now, s.slowStartMs)) return u;
      }
      return undefined;
    }
    // Power of two choices, least request, weighted by slow start.
    const a = Math.floor(Math.random() * count);
    let b = Math.floor(Math.random() * (count - 1));
    if (b >= a) b++;
    const ua = this.#nth(a, want, tried, now, flags)!;
    const ub = this.#nth(b, want, tried, now, flags)!;
    if (s.slowStartMs <= 0) return ub.inFlight < ua.inFlight ? ub : ua;
    return (ub.inFlight + 1) / ub.weight(now, s.slowStartMs) < (ua.inFlight + 1) / ua.weight(now, s.slowStartMs) ? ub : ua;
  }

  /** The k-th candidate (0-based) under the same filter the counting pass used. */
  #nth(k: number, want: string | undefined, tried: readonly Upstream[] | undefined, now: number, flags: number): Upstream | undefined {
    const list = this.upstreams;
    for (let i = 0; i < list.length; i++) {
      const u = list[i]!;
      if (this.#candidate(u, want, tried, now, flags) && k-- === 0) return u;
    }
    return undefined;
  }

  #candidate(u: Upstream, want: string | undefined, tried: readonly Upstream[] | undefined, now: number, flags: number): boolean {
    if (!u.routable || !u.matches(want) || (tried !== undefined && tried.includes(u))) return false;
    if ((flags & 1) === 0 && !(u.activeHealthy && u.ejectedUntil <= now)) return false;
    if ((flags & 2) !== 0 && u.instance.zone !== this.#settings.zone) return false;
    return true;
  }

  #ringPick(hash: number, want: string | undefined, tried: readonly Upstream[] | undefined, now: number, flags: number): Upstream | undefined {
    const ring = (this.#ring ??= buildRing(this.upstreams));
    const pts = ring.points;
    if (pts.length === 0) return undefined;
    // First point at or after the hash (binary search), then clockwise past ineligible owners.
    let lo = 0;
    let hi = pts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    for (let k = 0; k < pts.length; k++) {
      const u = ring.owners[(lo + k) % pts.length]!;
      if (this.#candidate(u, want, tried, now, flags)) return u;
    }
    return undefined;
  }

  /** Ejects `u` if the cap allows; returns whether it did. */
  eject(u: Upstream, now: number): boolean {
    const o = this.#settings.outlier;
    let ejected = 0;
    for (const x of this.upstreams) if (x.ejectedUntil > now) ejected++;
    const cap = Math.max(1, Math.floor((this.upstreams.length * o.maxEjectionPercent) / 100));
    if (ejected >= cap) return false;
    u.ejections++;
    u.ejectedUntil = now + Math.min(o.maxEjectionMs, o.baseEjectionMs * u.ejections);
    u.consecutiveFailures = 0;
    return true;
  }
}

export const BALANCER_LEAST_REQUEST = 0;
export const BALANCER_ROUND_ROBIN = 1;
export const BALANCER_HASH = 2;

function buildRing(upstreams: readonly Upstream[]): Ring {
  const entries: Array<{ h: number; u: Upstream }> = [];
  for (const u of upstreams) for (let i = 0; i < RING_POINTS; i++) entries.push({ h: hash32(`${u.key}#${i}`), u });
  entries.sort((x, y) => x.h - y.h);
  return { points: Uint32Array.from(entries, (e) => e.h), owners: entries.map((e) => e.u) };
}

/** FNV-1a with a murmur3 finaliser: well spread 32-bit hashes of short keys. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
