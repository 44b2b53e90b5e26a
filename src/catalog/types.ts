/**
 * The catalog's data model: services and their instances, as stored (one JSON value per instance) and
 * as the HTTP API returns them. Durations are in milliseconds, instants in ms since the Unix epoch.
 */
import type { LeaseId } from '../store/index.js';

/**
 * An instance's status. Only `passing` and `warning` instances take new traffic.
 *
 * | status        | set by                                        | traffic |
 * |---------------|-----------------------------------------------|---------|
 * | `passing`     | registration, or `rise` passed checks         | yes     |
 * | `warning`     | registration or an operator                   | yes     |
 * | `critical`    | registration with a check, or `fall` failed   | no      |
 * | `draining`    | drain: finishing what it has                   | no      |
 * | `maintenance` | an operator                                   | no      |
 *
 * Health checks move an instance only between `passing`/`warning` and `critical`; they never touch a
 * `draining` or `maintenance` instance.
 */
export const InstanceStatus = {
  Passing: 'passing',
  Warning: 'warning',
  Critical: 'critical',
  Draining: 'draining',
  Maintenance: 'maintenance',
} as const;
export type InstanceStatus = (typeof InstanceStatus)[keyof typeof InstanceStatus];

/** Every status, in the order above. */
export const INSTANCE_STATUSES: readonly InstanceStatus[] = Object.values(InstanceStatus);

/**
 * An active health check, as stored (defaults filled in).
 *
 * @example
 * ```ts
 * const check: HealthCheck = { type: 'http', path: '/healthz', interval: 5_000, timeout: 1_000, rise: 2, fall: 3 };
 * ```
 */
export interface HealthCheck {
  /** `http`: a GET to `http://address:port{path}`; `tcp`: a connection to `address:port`. */
  readonly type: 'http' | 'tcp';
  /** HTTP only: the path (and query) to GET. Default `/`. */
  readonly path?: string;
  /** HTTP only: the status that passes. Default: any 2xx. */
  readonly expectStatus?: number;
  /** HTTP only: text the response body (its first 64 KiB) must contain. Default: the body is not read. */
  readonly bodyMatch?: string;
  /** Time between the starts of two checks (ms). */
  readonly interval: number;
  /** A check that has not answered within this is a failure (ms). */
  readonly timeout: number;
  /** Consecutive passes that move a `critical` instance to `passing`. */
  readonly rise: number;
  /** Consecutive failures that move a `passing` or `warning` instance to `critical`. */
  readonly fall: number;
  /** The status a new registration with this check starts in when the body gives none. Default `critical`. */
  readonly initialStatus?: 'passing' | 'warning' | 'critical';
}

/** A health check as a registration may give it: everything but `type` has a default. */
export interface HealthCheckInput {
  readonly type: 'http' | 'tcp';
  readonly path?: string;
  readonly expectStatus?: number;
  readonly bodyMatch?: string;
  readonly interval?: number;
  readonly timeout?: number;
  readonly rise?: number;
  readonly fall?: number;
  readonly initialStatus?: 'passing' | 'warning' | 'critical';
}

/**
 * A registered instance: the value stored at `/spofless/catalog/instances/{service}/{id}`.
 *
 * @example
 * ```ts
 * const i: Instance = { service: 'api', id: 'api-1', address: '127.0.0.1', port: 8080, tags: [], metadata: {},
 *   status: 'passing', lease: '7587869381', registeredAt: 1764100000000 };
 * ```
 */
export interface Instance {
  readonly service: string;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly zone?: string;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly version?: string;
  readonly color?: string;
  readonly status: InstanceStatus;
  /** Why the status is what it is, when a health check set it (e.g. `HTTP 503 (expected 2xx)`). */
  readonly statusReason?: string;
  readonly check?: HealthCheck;
  /** The lease the instance's key is attached to: it disappears when the lease ends. */
  readonly lease: LeaseId;
  /** When this owner (this lease) first registered it. */
  readonly registeredAt: number;
}

/**
 * What a registration gives. With `ttl` the catalog grants a lease of that many seconds; with `lease`
 * it uses the caller's; with neither it grants one of {@link DEFAULT_REGISTRATION_TTL} seconds. The
 * caller keeps the lease alive (`POST /v1/leases/{id}/keepalive`).
 *
 * @example
 * ```ts
 * const input: RegisterInput = { address: '127.0.0.1', port: 8080, zone: 'a', ttl: 10,
 *   check: { type: 'http', path: '/healthz', interval: 2_000 } };
 * ```
 */
export interface RegisterInput {
  readonly address: string;
  readonly port: number;
  readonly zone?: string;
  readonly tags?: readonly string[];
  readonly metadata?: Readonly<Record<string, string>>;
  readonly version?: string;
  readonly color?: string;
  readonly status?: InstanceStatus;
  readonly check?: HealthCheckInput;
  readonly lease?: LeaseId;
  readonly ttl?: number;
}

/** The TTL (seconds) of the lease granted for a registration that names neither `lease` nor `ttl`. */
export const DEFAULT_REGISTRATION_TTL = 10;

export interface RegisterResult {
  readonly instance: Instance;
  readonly lease: LeaseId;
  /** The revision of the write. */
  readonly revision: number;
}

export interface InstanceResult {
  readonly instance: Instance;
  readonly revision: number;
}

/** One service in a listing: how many instances it has and how many are `passing`. */
export interface ServiceSummary {
  readonly name: string;
  readonly instances: number;
  readonly passing: number;
}

export interface ListInstancesFilter {
  /** Only instances in one of these statuses. */
  readonly status?: InstanceStatus | readonly InstanceStatus[];
  /** Only instances in this zone. */
  readonly zone?: string;
}
