/**
 * The route table: every valid route compiled for the hot path, and the match of a request to one.
 *
 * The most specific route wins: a route naming the request's host over one for any host, then the
 * longest path prefix (matched on segment boundaries), then the most header conditions. The table is
 * immutable: a change builds a new table and swaps one reference, so a request in flight keeps the
 * route it started with and the next request sees the new one. Nothing is dropped on a change.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { RetryBudget } from '../resilience/index.js';
import type { Route } from '../routing/types.js';
import { DEFAULT_FORCE_HEADER } from '../routing/validate.js';
import { BALANCER_HASH, BALANCER_LEAST_REQUEST, BALANCER_ROUND_ROBIN } from './upstreams.js';
import { RouteStats } from './metrics.js';
import { CircuitBreaker } from '../resilience/index.js';

/** Retry conditions as bit flags. */
export const RETRY_CONNECT = 1;
export const RETRY_RESET = 2;
export const RETRY_TIMEOUT = 4;

/** A key read from a header or a cookie. */
export interface KeySource {
  readonly header: string | undefined;
  readonly cookie: string | undefined;
}

/** A route ready for the hot path. */
export interface CompiledRoute {
  readonly route: Route;
  readonly name: string;
  readonly service: string;
  readonly host: string | undefined;
  readonly prefix: string;
  /** `prefix` without a trailing `/` (for the segment-boundary test). */
  readonly prefixBare: string;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly balancer: number;
  readonly hashOn: KeySource | undefined;
  readonly attempts: number;
  readonly retryOn: number;
  readonly retryStatuses: ReadonlySet<number>;
  readonly budget: RetryBudget | undefined;
  readonly perTryMs: number;
  readonly totalMs: number;
  readonly stripPrefix: boolean;
  readonly fallback: { readonly status: number; readonly headers: string[]; readonly body: Buffer } | undefined;
  readonly breaker: CircuitBreaker;
  // Traffic.
  readonly active: string | undefined;
  readonly canary: { readonly version: string; readonly per10k: number; readonly stickyOn: KeySource | undefined } | undefined;
  readonly forceHeader: string;
  readonly stats: RouteStats;
}

/**
 * Compiles a validated route. `previous` is the same route's last compiled form: its breaker, budget
 * and counters carry over an edit, so changing a timeout does not reset the circuit or the metrics.
 */
export function compileRoute(route: Route, previous: CompiledRoute | undefined): CompiledRoute {
  const prefix = route.match.pathPrefix;
  const retry = route.retry;
  let retryOn = 0;
  const statuses = new Set<number>();
  for (const on of retry?.on ?? []) {
    if (on === 'connect-failure') retryOn |= RETRY_CONNECT;
    else if (on === 'reset') retryOn |= RETRY_RESET;
    else if (on === 'timeout') retryOn |= RETRY_TIMEOUT;
    else statuses.add(on);
  }
  const b = route.breaker;
  const sameBreaker = previous !== undefined && JSON.stringify(previous.route.breaker) === JSON.stringify(b);
  const breaker =
    sameBreaker
      ? previous.breaker
      : new CircuitBreaker({
          name: `route:${route.name}`,
          window: { type: 'time', duration: 10_000, buckets: 10 },
          minimumCalls: b?.minimumCalls ?? 20,
          failureRateThreshold: (b?.failureRate ?? 50) / 100,
          openDuration: b?.openMs ?? 5_000,
          isFailureResult: isFailedOutcome,
        });
  const budgetPercent = retry?.budgetPercent ?? 20;
  const budget =
    retry !== undefined && retry.attempts > 1
      ? previous?.budget !== undefined && previous.budget.ratio === budgetPercent / 100
        ? previous.budget
        : new RetryBudget({ ratio: budgetPercent / 100, minRetriesPerSecond: 10 })
      : undefined;
  const fb = route.fallback;
  const t = route.traffic;
  return {
    route,
    name: route.name,
    service: route.service,
    host: route.match.host?.toLowerCase(),
    prefix,
    prefixBare: prefix.endsWith('/') ? prefix.slice(0, -1) : prefix,
    headers: Object.entries(route.match.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
    balancer: route.balancer === 'round-robin' ? BALANCER_ROUND_ROBIN : route.balancer === 'consistent-hash' ? BALANCER_HASH : BALANCER_LEAST_REQUEST,
    hashOn: keySource(route.hashOn),
    attempts: Math.max(1, retry?.attempts ?? 1),
    retryOn,
    retryStatuses: statuses,
    budget,
    perTryMs: route.timeouts?.perTryMs ?? 0,
    totalMs: route.timeouts?.totalMs ?? 0,
    stripPrefix: route.stripPrefix === true,
    fallback:
      fb === undefined
        ? undefined
        : {
            status: fb.status,
            headers: Object.entries(fb.headers ?? {}).flat(),
            body: Buffer.from(fb.body ?? ''),
          },
    breaker,
    active: t?.active,
    canary:
      t?.canary !== undefined && t.canary.weight > 0
        ? { version: t.canary.version, per10k: Math.round(t.canary.weight * 100), stickyOn: keySource(t.canary.stickyOn) }
        : undefined,
    forceHeader: (t?.forceHeader ?? DEFAULT_FORCE_HEADER).toLowerCase(),
    stats: previous?.stats ?? new RouteStats(route.name),
  };
}

/** The outcome value an attempt or request resolves for a breaker: `FAILED` counts as a failure. */
export const FAILED = 1;
export const SUCCEEDED = 0;
export function isFailedOutcome(v: unknown): boolean {
  return v === FAILED;
}

function keySource(k: Route['hashOn']): KeySource | undefined {
  if (k === undefined) return undefined;
  return 'header' in k ? { header: k.header.toLowerCase(), cookie: undefined } : { header: undefined, cookie: k.cookie };
}

/** Reads a key from a request: the header's value or the cookie's. */
export function readKey(src: KeySource, headers: IncomingHttpHeaders): string | undefined {
  if (src.header !== undefined) {
    const v = headers[src.header];
    return Array.isArray(v) ? v[0] : v;
  }
  const cookie = headers.cookie;
  if (cookie === undefined) return undefined;
  const name = src.cookie!;
  let i = 0;
  while (i < cookie.length) {
    while (cookie.charCodeAt(i) === 32) i++;
    const eq = cookie.indexOf('=', i);
    if (eq < 0) return undefined;
    let end = cookie.indexOf(';', eq);
    if (end < 0) end = cookie.length;
    if (eq - i === name.length && cookie.startsWith(name, i)) return cookie.slice(eq + 1, end).trim();
    i = end + 1;
  }
  return undefined;
}

/** An immutable set of compiled routes, indexed by host. */
export class RouteTable {
  readonly routes: ReadonlyMap<string, CompiledRoute>;
  /** Per host: its routes then the any-host ones, most specific first. */
  readonly #byHost = new Map<string, readonly CompiledRoute[]>();
  readonly #anyHost: readonly CompiledRoute[];

  constructor(routes: ReadonlyMap<string, CompiledRoute>) {
    this.routes = routes;
    const all = [...routes.values()];
    const order = (a: CompiledRoute, b: CompiledRoute): number =>
      b.prefix.length - a.prefix.length || b.headers.length - a.headers.length || (a.name < b.name ? -1 : 1);
    this.#anyHost = all.filter((r) => r.host === undefined).sort(order);
    const hosts = new Set(all.flatMap((r) => (r.host === undefined ? [] : [r.host])));
    for (const h of hosts) this.#byHost.set(h, [...all.filter((r) => r.host === h).sort(order), ...this.#anyHost]);
  }

  /**
   * The route for a request, or `undefined`. `host` is lower case without the port. `headers` is asked
   * for only when a candidate route has header conditions (node builds that object on first access).
   */
  match(host: string, path: string, req: { readonly headers: IncomingHttpHeaders }): CompiledRoute | undefined {
    const list = this.#byHost.get(host) ?? this.#anyHost;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (!prefixMatches(r, path)) continue;
      let ok = true;
      const headers = r.headers.length > 0 ? req.headers : undefined;
      for (let j = 0; j < r.headers.length; j++) {
        const [name, value] = r.headers[j]!;
        if (headers![name] !== value) {
          ok = false;
          break;
        }
      }
      if (ok) return r;
    }
    return undefined;
  }
}

function prefixMatches(r: CompiledRoute, path: string): boolean {
  const bare = r.prefixBare;
  if (bare.length === 0) return true;
  if (!path.startsWith(bare)) return false;
  if (path.length === bare.length) return true;
  const c = path.charCodeAt(bare.length);
  return c === 47 /* / */ || c === 63 /* ? */;
}

/** The host of a request, lower case, without the port. */
export function hostOf(raw: string | undefined): string {
  if (raw === undefined) return '';
  let end = raw.length;
  if (raw.charCodeAt(0) === 91 /* [ */) {
    const close = raw.indexOf(']');
    end = close < 0 ? raw.length : close + 1;
  } else {
    const colon = raw.indexOf(':');
    if (colon >= 0) end = colon;
  }
  const h = raw.slice(0, end);
  return h.toLowerCase();
}
