/**
 * The route model: the contract between the control plane (which stores and validates routes and
 * deploy state) and every gateway (which watches and applies them). One JSON value per route, stored
 * at `routeKey(name)`; a gateway watches `ROUTES_PREFIX` and applies each change atomically.
 *
 * Traffic shifting lives on the route (`traffic`), so a blue-green switch or a canary weight change is
 * one store write: every gateway sees the same revision, which is what makes a switch atomic across
 * gateways. Instances carry their version and color in the catalog (`Instance.version`, `.color`).
 */

/** Which requests a route takes. The most specific match wins: exact host over none, longest prefix, then most headers. */
export interface RouteMatch {
  /** `Host` header without the port, lower case; absent: any host. */
  readonly host?: string;
  /** Path prefix, starting with `/`; `/` takes every path. Matched on segment boundaries (`/api` takes `/api` and `/api/x`, not `/apix`). */
  readonly pathPrefix: string;
  /** Request headers that must be present with exactly these values (names lower case). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** How a request picks an instance among the eligible ones. */
export type BalancerKind = 'least-request' | 'round-robin' | 'consistent-hash';

/** Where a stickiness or canary key comes from. */
export type HashKey = { readonly header: string } | { readonly cookie: string };

/** A status to retry on, or a failure before any response. */
export type RetryOn = 'connect-failure' | 'reset' | 'timeout' | number;

export interface RetryPolicy {
  /** Total tries including the first, 1 (no retry) to 5. */
  readonly attempts: number;
  readonly on: readonly RetryOn[];
  /** Retries allowed as a share of requests, in percent (a retry budget). Default 20. */
  readonly budgetPercent?: number;
}

export interface RouteTimeouts {
  /** One try, to response headers. */
  readonly perTryMs?: number;
  /** The whole request including retries. */
  readonly totalMs?: number;
}

export interface RouteBreaker {
  /** Failure rate in percent that opens the route's breaker. Default 50. */
  readonly failureRate?: number;
  /** Calls in the window before the rate counts. Default 20. */
  readonly minimumCalls?: number;
  /** How long the breaker stays open before probing. Default 5000. */
  readonly openMs?: number;
}

/** The predefined answer when the route's pool is broken (breaker open, or no instance at all). */
export interface FallbackResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

/**
 * Which versions get traffic.
 * - Blue-green: `active` is the live version (matched against `Instance.color ?? Instance.version`);
 *   `previous` is the one before the last switch, kept registered and warm: rollback swaps them.
 * - Canary: `canary.weight` percent (0–100) of users go to `canary.version`, chosen by a hash of
 *   `canary.stickyOn` so a user keeps their version; the rest go to `active`.
 * - A request carrying the header `forceHeader` (default `x-spofless-version`) goes to that version.
 * Absent: every instance of the service is eligible.
 */
export interface TrafficPolicy {
  readonly active?: string;
  readonly previous?: string;
  readonly canary?: { readonly version: string; readonly weight: number; readonly stickyOn?: HashKey };
  readonly forceHeader?: string;
}

/**
 * A route as stored and served by `GET /v1/routes/{name}`.
 *
 * @example
 * ```ts
 * const r: Route = { name: 'api', match: { pathPrefix: '/api' }, service: 'api',
 *   retry: { attempts: 3, on: ['connect-failure', 'reset', 503] }, timeouts: { perTryMs: 2000, totalMs: 5000 },
 *   fallback: { status: 503, headers: { 'content-type': 'application/json' }, body: '{"error":"try later"}' },
 *   traffic: { active: 'blue' } };
 * ```
 */
export interface Route {
  /** `[a-z0-9][a-z0-9._-]{0,62}`. */
  readonly name: string;
  readonly match: RouteMatch;
  /** The catalog service whose instances serve it. */
  readonly service: string;
  /** Default `least-request` (power of two choices). */
  readonly balancer?: BalancerKind;
  /** Required with `consistent-hash`. */
  readonly hashOn?: HashKey;
  readonly retry?: RetryPolicy;
  readonly timeouts?: RouteTimeouts;
  readonly breaker?: RouteBreaker;
  readonly fallback?: FallbackResponse;
  readonly traffic?: TrafficPolicy;
  /** Remove `match.pathPrefix` before forwarding. Default false. */
  readonly stripPrefix?: boolean;
}
