/**
 * One error base class for all of spofless. Every error carries a stable `code` (`SPOF_ERR_*`), an
 * optional `cause`, and a `retryable` flag that retry policies filter on. `instanceof` checks and the
 * `isSpoflessError` guard work across two copies of the package (a brand from `Symbol.for`, as undici
 * does), so an error thrown by one copy is recognised by another.
 *
 * @example
 * ```ts
 * import { isSpoflessError, ErrorCode } from 'spofless/errors';
 * try { await breaker.execute(call); }
 * catch (err) { if (isSpoflessError(err, ErrorCode.BrokenCircuit)) return cached; throw err; }
 * ```
 */

/** The stable error codes. New modules add theirs here so that codes never collide. */
export const ErrorCode = {
  InvalidOption: 'SPOF_ERR_INVALID_OPTION',
  InvalidArgument: 'SPOF_ERR_INVALID_ARGUMENT',
  BrokenCircuit: 'SPOF_ERR_BROKEN_CIRCUIT',
  IsolatedCircuit: 'SPOF_ERR_ISOLATED_CIRCUIT',
  Timeout: 'SPOF_ERR_TIMEOUT',
  Aborted: 'SPOF_ERR_ABORTED',
  BulkheadRejected: 'SPOF_ERR_BULKHEAD_REJECTED',
  RetryBudgetExhausted: 'SPOF_ERR_RETRY_BUDGET_EXHAUSTED',
  StoreCompacted: 'SPOF_ERR_STORE_COMPACTED',
  StoreFutureRevision: 'SPOF_ERR_STORE_FUTURE_REVISION',
  StoreInvalidKey: 'SPOF_ERR_STORE_INVALID_KEY',
  StoreValueTooLarge: 'SPOF_ERR_STORE_VALUE_TOO_LARGE',
  StoreLeaseNotFound: 'SPOF_ERR_STORE_LEASE_NOT_FOUND',
  StoreClosed: 'SPOF_ERR_STORE_CLOSED',
  StoreUnavailable: 'SPOF_ERR_STORE_UNAVAILABLE',
  ControlPlaneUnreachable: 'SPOF_ERR_CONTROL_PLANE_UNREACHABLE',
  ControlPlaneResponse: 'SPOF_ERR_CONTROL_PLANE_RESPONSE',
  NoInstanceAvailable: 'SPOF_ERR_NO_INSTANCE_AVAILABLE',
  ClientClosed: 'SPOF_ERR_CLIENT_CLOSED',
  KeyNotFound: 'SPOF_ERR_KEY_NOT_FOUND',
  InstanceNotFound: 'SPOF_ERR_CATALOG_INSTANCE_NOT_FOUND',
  CatalogConflict: 'SPOF_ERR_CATALOG_CONFLICT',
  WatchSlow: 'SPOF_ERR_WATCH_SLOW',
  HttpBadJson: 'SPOF_ERR_HTTP_BAD_JSON',
  HttpBodyTooLarge: 'SPOF_ERR_HTTP_BODY_TOO_LARGE',
  HttpUnsupportedMediaType: 'SPOF_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
  HttpNotFound: 'SPOF_ERR_HTTP_NOT_FOUND',
  HttpForbidden: 'SPOF_ERR_HTTP_FORBIDDEN',
  HttpUnavailable: 'SPOF_ERR_HTTP_UNAVAILABLE',
  HttpInternal: 'SPOF_ERR_HTTP_INTERNAL',
  // flags (issue 6)
  FlagInvalid: 'SPOF_ERR_FLAG_INVALID',
  FlagNotFound: 'SPOF_ERR_FLAG_NOT_FOUND',
  FlagConflict: 'SPOF_ERR_FLAG_CONFLICT',
  FlagUnsupported: 'SPOF_ERR_FLAG_UNSUPPORTED',
  FlagSegmentInUse: 'SPOF_ERR_FLAG_SEGMENT_IN_USE',
  // Leader election (issue 4, src/election/).
  ElectionNotLeader: 'SPOF_ERR_ELECTION_NOT_LEADER',
  // The gateway (issue 5, src/gateway/): codes of the JSON error bodies it answers with.
  GatewayNoRoute: 'SPOF_ERR_GATEWAY_NO_ROUTE',
  GatewayUpstreamFailed: 'SPOF_ERR_GATEWAY_UPSTREAM_FAILED',
  GatewayUpstreamTimeout: 'SPOF_ERR_GATEWAY_UPSTREAM_TIMEOUT',
  GatewayUnavailable: 'SPOF_ERR_GATEWAY_UNAVAILABLE',
  // Routes and deploys on the control plane (issue 5, src/routing/).
  RouteNotFound: 'SPOF_ERR_ROUTE_NOT_FOUND',
  RouteConflict: 'SPOF_ERR_ROUTE_CONFLICT',
  DeployRefused: 'SPOF_ERR_DEPLOY_REFUSED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const BRAND: unique symbol = Symbol.for('spofless.error') as never;

export interface SpoflessErrorOptions {
  readonly cause?: unknown;
  readonly retryable?: boolean;
}

/** The base of every error spofless throws. Subclasses set a static `code`. */
export class SpoflessError extends Error {
  /** The code every instance of this class carries; `undefined` on the base class. */
  static readonly code: string | undefined = undefined;
  readonly code: string;
  readonly retryable: boolean;
  declare readonly [BRAND]: true;

  constructor(code: string, message: string, options: SpoflessErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** Works across package copies: checks the shared brand and, for subclasses, the code. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === SpoflessError) return hasBrand(value);
    // A subclass is recognised by its own code; one without a code of its own falls back to the
    // prototype chain (inheriting a parent's code would make every sibling match).
    const code = Object.hasOwn(this, 'code') ? (this as { code?: string | undefined }).code : undefined;
    if (code === undefined) return Function.prototype[Symbol.hasInstance].call(this, value);
    return hasBrand(value) && value.code === code;
  }

  toJSON(): { name: string; code: string; message: string; retryable: boolean } {
    return { name: this.name, code: this.code, message: this.message, retryable: this.retryable };
  }
}
Object.defineProperty(SpoflessError.prototype, BRAND, { value: true, enumerable: false });

function hasBrand(value: unknown): value is SpoflessError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/**
 * True when `value` is a spofless error (from any copy of the package), optionally with the given code.
 */
export function isSpoflessError(value: unknown, code?: string): value is SpoflessError {
  return hasBrand(value) && (code === undefined || value.code === code);
}

/** An option or argument given to a constructor or function was not acceptable. */
export class InvalidOptionError extends SpoflessError {
  static override readonly code = ErrorCode.InvalidOption;
  /** The option's name, e.g. `failureRateThreshold`. */
  readonly option: string;
  constructor(owner: string, option: string, value: unknown, expected: string) {
    super(ErrorCode.InvalidOption, `${owner}: option "${option}" must be ${expected}; got ${describe(value)}`);
    this.option = option;
  }
}

/** An argument at a call site (not a constructor option) was not acceptable. */
export class InvalidArgumentError extends SpoflessError {
  static override readonly code = ErrorCode.InvalidArgument;
  constructor(message: string, options: SpoflessErrorOptions = {}) {
    super(ErrorCode.InvalidArgument, message, options);
  }
}

/** A call was refused because its circuit is open (or half-open with all probes taken). */
export class BrokenCircuitError extends SpoflessError {
  static override readonly code = ErrorCode.BrokenCircuit;
  constructor(message = 'circuit is open: the call was not made', options: SpoflessErrorOptions = {}) {
    super(ErrorCode.BrokenCircuit, message, options);
  }
}

/** A call was refused because its circuit was isolated (forced open) by an operator. */
export class IsolatedCircuitError extends SpoflessError {
  static override readonly code = ErrorCode.IsolatedCircuit;
  constructor(message = 'circuit is isolated: the call was not made') {
    super(ErrorCode.IsolatedCircuit, message);
  }
}

/** A call did not finish within its time budget. Retryable: another attempt may be faster. */
export class TimeoutError extends SpoflessError {
  static override readonly code = ErrorCode.Timeout;
  constructor(message: string, options: SpoflessErrorOptions = {}) {
    super(ErrorCode.Timeout, message, { retryable: true, ...options });
  }
}

/** The caller aborted the call through its `AbortSignal`. Never retried. */
export class AbortedError extends SpoflessError {
  static override readonly code = ErrorCode.Aborted;
  constructor(message = 'the operation was aborted', options: SpoflessErrorOptions = {}) {
    super(ErrorCode.Aborted, message, options);
  }
}

/** A bulkhead had no free slot and no room in its queue. */
export class BulkheadRejectedError extends SpoflessError {
  static override readonly code = ErrorCode.BulkheadRejected;
  constructor(readonly maxConcurrent: number, readonly maxQueue: number) {
    super(
      ErrorCode.BulkheadRejected,
      `bulkhead is full: ${maxConcurrent} calls running and ${maxQueue} queued`,
      { retryable: true },
    );
  }
}

/** A retry was wanted but the retry budget had no token left. `cause` is the last attempt's error. */
export class RetryBudgetExhaustedError extends SpoflessError {
  static override readonly code = ErrorCode.RetryBudgetExhausted;
  constructor(cause: unknown) {
    super(ErrorCode.RetryBudgetExhausted, 'retry budget exhausted: the call failed and was not retried', { cause });
  }
}

/**
 * A read or watch asked for a revision that compaction has removed. The consumer re-lists (a range at
 * the current revision) and watches again from the revision after that list.
 */
export class CompactedError extends SpoflessError {
  static override readonly code = ErrorCode.StoreCompacted;
  constructor(
    /** The revision that was asked for. */
    readonly requestedRevision: number,
    /** The oldest revision still held: reads and watches from here on succeed. */
    readonly compactRevision: number,
  ) {
    super(
      ErrorCode.StoreCompacted,
      `revision ${requestedRevision} has been compacted: the oldest revision still held is ${compactRevision}; re-list and watch from there`,
    );
  }
}

/** A read asked for a revision the store has not reached yet. */
export class FutureRevisionError extends SpoflessError {
  static override readonly code = ErrorCode.StoreFutureRevision;
  constructor(
    readonly requestedRevision: number,
    readonly currentRevision: number,
  ) {
    super(
      ErrorCode.StoreFutureRevision,
      `revision ${requestedRevision} is in the future: the store is at revision ${currentRevision}`,
      { retryable: true },
    );
  }
}

/** A key was empty, too long or not bytes/text. Nothing was written. */
export class InvalidKeyError extends SpoflessError {
  static override readonly code = ErrorCode.StoreInvalidKey;
  constructor(key: unknown, expected: string) {
    super(ErrorCode.StoreInvalidKey, `invalid key ${describe(key)}: expected ${expected}`);
  }
}

/** A value was larger than the store accepts. Nothing was written. */
export class ValueTooLargeError extends SpoflessError {
  static override readonly code = ErrorCode.StoreValueTooLarge;
  constructor(
    readonly key: string,
    readonly size: number,
    readonly limit: number,
  ) {
    super(
      ErrorCode.StoreValueTooLarge,
      `value for key ${describe(key)} is ${size} bytes: expected at most ${limit} bytes`,
    );
  }
}

/** A lease id named by a call does not exist (never granted, revoked, or expired). */
export class LeaseNotFoundError extends SpoflessError {
  static override readonly code = ErrorCode.StoreLeaseNotFound;
  constructor(readonly lease: string) {
    super(ErrorCode.StoreLeaseNotFound, `lease ${lease} not found: it was never granted, or was revoked, or expired`);
  }
}

/**
 * A remote store engine (etcd) could not be reached, or lost its quorum, within the call's time budget.
 * Retryable. `outcomeUnknown` is true when a write may have been applied before the connection failed
 * (the engine retries unconditional puts and deletes itself; a transaction it does not retry, since a
 * second attempt could see its own first write and report the compare as failed).
 */
export class StoreUnavailableError extends SpoflessError {
  static override readonly code = ErrorCode.StoreUnavailable;
  constructor(
    message: string,
    readonly outcomeUnknown: boolean = false,
    options: SpoflessErrorOptions = {},
  ) {
    super(ErrorCode.StoreUnavailable, message, { retryable: true, ...options });
  }
}

/** The store was closed: the call was not made, or the watch ended. */
export class StoreClosedError extends SpoflessError {
  static override readonly code = ErrorCode.StoreClosed;
  constructor(message = 'the store is closed') {
    super(ErrorCode.StoreClosed, message);
  }
}

/**
 * No control-plane URL answered (connection refused, reset, timed out). Retryable: the control plane
 * may be restarting. `urls` lists what was tried; `cause` is the last low-level error.
 */
export class ControlPlaneUnreachableError extends SpoflessError {
  static override readonly code = ErrorCode.ControlPlaneUnreachable;
  constructor(
    readonly urls: readonly string[],
    reason: string,
    options: SpoflessErrorOptions = {},
  ) {
    super(
      ErrorCode.ControlPlaneUnreachable,
      `cannot reach the control plane at ${urls.join(', ')}: ${reason}`,
      { retryable: true, ...options },
    );
  }
}

/**
 * The control plane answered with an error. `code` is the server's own code (e.g.
 * `SPOF_ERR_STORE_LEASE_NOT_FOUND`), or `SPOF_ERR_CONTROL_PLANE_RESPONSE` when the body carried none;
 * `status` is the HTTP status and `details` the error object's other fields (e.g. `compactRevision`).
 * Match on `code`: `instanceof ControlPlaneError` only says that the server sent it.
 */
export class ControlPlaneError extends SpoflessError {
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(status: number, code: string | undefined, message: string, details: Readonly<Record<string, unknown>> = {}) {
    super(code ?? ErrorCode.ControlPlaneResponse, message, { retryable: status >= 500 || status === 429 });
    this.status = status;
    this.details = details;
  }

  /** Any spofless error carrying an HTTP `status` from the control plane. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value) && typeof (value as { status?: unknown }).status === 'number';
  }
}

/**
 * A client-side balancer had no instance to send a call to: the list is empty, or every instance is
 * draining, critical, open-circuited or already tried. Retryable: the list may change.
 */
export class NoInstanceAvailableError extends SpoflessError {
  static override readonly code = ErrorCode.NoInstanceAvailable;
  constructor(readonly service: string, reason: string, options: SpoflessErrorOptions = {}) {
    super(ErrorCode.NoInstanceAvailable, `no instance of service ${describe(service)} available: ${reason}`, { retryable: true, ...options });
  }
}

/** The client (or the discovery, watch or registration) was closed: the call was not made. */
export class ClientClosedError extends SpoflessError {
  static override readonly code = ErrorCode.ClientClosed;
  constructor(message = 'the control-plane client is closed') {
    super(ErrorCode.ClientClosed, message);
  }
}

/** A read of one key found nothing (the HTTP API's 404 on `GET /v1/kv?key=`). */
export class KeyNotFoundError extends SpoflessError {
  static override readonly code = ErrorCode.KeyNotFound;
  constructor(
    readonly key: string,
    /** The revision the read reflects. */
    readonly revision: number,
  ) {
    super(ErrorCode.KeyNotFound, `key ${describe(key)} not found at revision ${revision}`);
  }
}

/** A catalog call named an instance that is not registered (never, or deregistered, or its lease ended). */
export class InstanceNotFoundError extends SpoflessError {
  static override readonly code = ErrorCode.InstanceNotFound;
  constructor(
    readonly service: string,
    readonly id: string,
  ) {
    super(
      ErrorCode.InstanceNotFound,
      `instance ${describe(id)} of service ${describe(service)} not found: it was never registered, or was deregistered, or its lease ended`,
    );
  }
}

/**
 * A catalog compare-and-swap lost to concurrent writers of the same instance more times than it retries.
 * Retryable: nothing was written, and a later attempt may win.
 */
export class CatalogConflictError extends SpoflessError {
  static override readonly code = ErrorCode.CatalogConflict;
  constructor(
    readonly service: string,
    readonly id: string,
    attempts: number,
  ) {
    super(
      ErrorCode.CatalogConflict,
      `instance ${describe(id)} of service ${describe(service)} changed under ${attempts} attempts to update it: nothing was written; try again`,
      { retryable: true },
    );
  }
}

/**
 * A watch subscriber read its stream too slowly and was cut off rather than buffered without bound.
 * Retryable: reconnect and resume from `resumeFrom` (every event before it was sent).
 */
export class WatchSlowError extends SpoflessError {
  static override readonly code = ErrorCode.WatchSlow;
  constructor(
    readonly resumeFrom: number,
    bufferedBytes: number,
    limit: number,
  ) {
    super(
      ErrorCode.WatchSlow,
      `the watch subscriber had ${bufferedBytes} bytes unread (the limit is ${limit}): it was cut off; resume from revision ${resumeFrom}`,
      { retryable: true },
    );
  }
}

/**
 * A request the HTTP API refused at its edge (bad JSON, too large, wrong media type, unknown route,
 * forbidden origin, server closing). `httpStatus` is the status the server answers with; nothing was
 * written.
 */
export class HttpRequestError extends SpoflessError {
  constructor(
    code: ErrorCode,
    readonly httpStatus: number,
    message: string,
    options: SpoflessErrorOptions = {},
  ) {
    super(code, message, { retryable: httpStatus === 503, ...options });
  }

  /** Any spofless error carrying the `httpStatus` the server answers with (its codes vary). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value) && typeof (value as { httpStatus?: unknown }).httpStatus === 'number';
  }
}

// ---- leader election (src/election/) -------------------------------------------------------------

/**
 * A fenced action was refused because this process does not lead (any more): it never won, it
 * resigned, its lease ran out on its own clock, or the store refused the write because the leader key
 * it held is gone. Not retryable as such: wait to lead again.
 */
export class NotLeaderError extends SpoflessError {
  static override readonly code = ErrorCode.ElectionNotLeader;
  constructor(
    readonly election: string,
    message: string,
    options: SpoflessErrorOptions = {},
  ) {
    super(ErrorCode.ElectionNotLeader, message, options);
  }
}

// ---- flags (issue 6) ------------------------------------------------------------------------------

/** A flag, segment or flag import was refused by validation. `field` names the bad part (`rules[0].serve.variant`). */
export class FlagValidationError extends SpoflessError {
  static override readonly code = ErrorCode.FlagInvalid;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(ErrorCode.FlagInvalid, `${field}: ${message}`);
  }
}

/** No flag (or segment) of that key in that environment. */
export class FlagNotFoundError extends SpoflessError {
  static override readonly code = ErrorCode.FlagNotFound;
  constructor(
    readonly environment: string,
    readonly key: string,
    readonly kind: 'flag' | 'segment' = 'flag',
  ) {
    super(ErrorCode.FlagNotFound, `${kind} ${describe(key)} not found in environment ${describe(environment)}`);
  }
}

/**
 * A flag or segment changed since the revision the writer read (`If-Match`), or was created meanwhile
 * (`If-None-Match: *`). Nothing was written: read it again and re-apply the change.
 */
export class FlagConflictError extends SpoflessError {
  static override readonly code = ErrorCode.FlagConflict;
  constructor(
    readonly key: string,
    /** The revision the writer expected (0: expected it not to exist). */
    readonly expectedRevision: number,
    /** The revision it has now (0: it does not exist). */
    readonly currentRevision: number,
  ) {
    super(
      ErrorCode.FlagConflict,
      `${describe(key)} is at revision ${currentRevision}, not ${expectedRevision} as expected: it changed meanwhile; nothing was written, read it again`,
      { retryable: true },
    );
  }
}

/** A flagd definition used a construct the spofless flag model does not have (or an export met one flagd lacks). */
export class FlagUnsupportedError extends SpoflessError {
  static override readonly code = ErrorCode.FlagUnsupported;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(ErrorCode.FlagUnsupported, `${field}: ${message}`);
  }
}

/** A segment cannot be deleted while flags' rules refer to it. */
export class SegmentInUseError extends SpoflessError {
  static override readonly code = ErrorCode.FlagSegmentInUse;
  constructor(
    readonly segment: string,
    readonly flags: readonly string[],
  ) {
    super(ErrorCode.FlagSegmentInUse, `segment ${describe(segment)} is used by flag(s) ${flags.join(', ')}: remove it from their rules first`);
  }
}

// ---- routes and deploys (src/routing/) ------------------------------------------------------------

/** No route of that name is stored. */
export class RouteNotFoundError extends SpoflessError {
  static override readonly code = ErrorCode.RouteNotFound;
  constructor(
    readonly route: string,
    /** The revision the read reflects. */
    readonly revision: number,
  ) {
    super(ErrorCode.RouteNotFound, `route ${describe(route)} not found at revision ${revision}`);
  }
}

/**
 * A route changed between the read a write was based on and the write (a concurrent edit, or an
 * `If-Match` revision that is no longer current). Nothing was written: read the route again.
 */
export class RouteConflictError extends SpoflessError {
  static override readonly code = ErrorCode.RouteConflict;
  constructor(
    readonly route: string,
    /** The revision the writer expected (0: expected it not to exist). */
    readonly expectedRevision: number,
    /** The revision it has now (0: it does not exist). */
    readonly currentRevision: number,
  ) {
    super(
      ErrorCode.RouteConflict,
      `route ${describe(route)} is at revision ${currentRevision}, not ${expectedRevision} as expected: it changed meanwhile; nothing was written, read it again`,
      { retryable: true },
    );
  }
}

/**
 * A deploy step (switch, rollback, canary, promote) was refused because of the route's or the catalog's
 * state: no passing instance of the target version, nothing to roll back to, no canary to promote.
 * Nothing was written.
 */
export class DeployRefusedError extends SpoflessError {
  static override readonly code = ErrorCode.DeployRefused;
  constructor(
    readonly route: string,
    message: string,
  ) {
    super(ErrorCode.DeployRefused, `route ${describe(route)}: ${message}`);
  }
}

/** Renders a bad value for an error message: short, and never throws. */
export function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
