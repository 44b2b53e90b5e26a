/**
 * Errors as the HTTP API answers them: a status and `{ "error": { "code", "message", ...extra } }`.
 *
 * | error                                                  | status |
 * |--------------------------------------------------------|--------|
 * | validation (schema), `InvalidArgument`, `InvalidKey`, `FutureRevision`, bad JSON | 400 |
 * | `FlagValidation`, `FlagUnsupported` (with `field`)     | 400    |
 * | forbidden origin or host                              | 403    |
 * | `KeyNotFound`, `LeaseNotFound`, `InstanceNotFound`, `FlagNotFound`, `RouteNotFound`, no such endpoint | 404 |
 * | `CatalogConflict`, `FlagConflict`, `SegmentInUse`, `RouteConflict`, `DeployRefused` | 409 |
 * | `Compacted` (with `compactRevision`)                  | 410    |
 * | `ValueTooLarge`, body over the limit                  | 413    |
 * | wrong content type                                    | 415    |
 * | `StoreClosed`, `StoreUnavailable` (etcd unreachable), server closing | 503 |
 * | anything else (a bug)                                 | 500    |
 */
import type { ErrorObject } from 'ajv';
import {
  CompactedError,
  DeployRefusedError,
  ErrorCode,
  FlagConflictError,
  FlagNotFoundError,
  FlagUnsupportedError,
  FlagValidationError,
  FutureRevisionError,
  HttpRequestError,
  KeyNotFoundError,
  LeaseNotFoundError,
  RouteConflictError,
  RouteNotFoundError,
  SegmentInUseError,
  ValueTooLargeError,
  isSpoflessError,
} from '../errors/index.js';
import { validationField, validationMessage } from './validation.js';

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly [extra: string]: unknown };
}

export interface HttpErrorAnswer {
  readonly status: number;
  readonly body: ErrorBody;
}

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  [ErrorCode.InvalidArgument]: 400,
  [ErrorCode.InvalidOption]: 400,
  [ErrorCode.StoreInvalidKey]: 400,
  [ErrorCode.StoreFutureRevision]: 400,
  [ErrorCode.FlagInvalid]: 400,
  [ErrorCode.FlagUnsupported]: 400,
  [ErrorCode.KeyNotFound]: 404,
  [ErrorCode.StoreLeaseNotFound]: 404,
  [ErrorCode.InstanceNotFound]: 404,
  [ErrorCode.FlagNotFound]: 404,
  [ErrorCode.RouteNotFound]: 404,
  [ErrorCode.CatalogConflict]: 409,
  [ErrorCode.FlagConflict]: 409,
  [ErrorCode.FlagSegmentInUse]: 409,
  // 409 for a concurrent edit; routing-routes.ts answers 412 when the caller's own If-Match failed.
  [ErrorCode.RouteConflict]: 409,
  [ErrorCode.DeployRefused]: 409,
  [ErrorCode.StoreCompacted]: 410,
  [ErrorCode.StoreValueTooLarge]: 413,
  [ErrorCode.StoreClosed]: 503,
  [ErrorCode.StoreUnavailable]: 503,
  [ErrorCode.Aborted]: 503,
};

/** Fastify's own edge errors, as ours. */
const FASTIFY: Readonly<Record<string, { code: ErrorCode; status: number; message?: string }>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: ErrorCode.HttpBodyTooLarge, status: 413 },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: ErrorCode.HttpUnsupportedMediaType,
    status: 415,
    message: 'request bodies must be JSON: send "content-type: application/json"',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: ErrorCode.InvalidArgument, status: 400 },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: ErrorCode.InvalidArgument, status: 400 },
  FST_ERR_CTP_INVALID_TYPE: { code: ErrorCode.HttpUnsupportedMediaType, status: 415 },
};

function extras(err: unknown): Record<string, unknown> {
  if (err instanceof CompactedError) return { compactRevision: err.compactRevision, requestedRevision: err.requestedRevision };
  if (err instanceof FutureRevisionError) return { currentRevision: err.currentRevision, requestedRevision: err.requestedRevision };
  if (err instanceof KeyNotFoundError) return { key: err.key, revision: err.revision };
  if (err instanceof LeaseNotFoundError) return { lease: err.lease };
  if (err instanceof ValueTooLargeError) return { size: err.size, limit: err.limit };
  if (err instanceof FlagValidationError || err instanceof FlagUnsupportedError) return { field: err.field };
  if (err instanceof FlagNotFoundError) return { environment: err.environment, key: err.key };
  if (err instanceof FlagConflictError) return { expectedRevision: err.expectedRevision, currentRevision: err.currentRevision };
  if (err instanceof SegmentInUseError) return { flags: err.flags };
  if (err instanceof RouteNotFoundError) return { route: err.route, revision: err.revision };
  if (err instanceof RouteConflictError) return { route: err.route, expectedRevision: err.expectedRevision, currentRevision: err.currentRevision };
  if (err instanceof DeployRefusedError) return { route: err.route };
  return {};
}

/** The status and body for anything a handler threw. `internal` is true for a 500 (log it). */
export function toHttpError(err: unknown, bodyLimit: number): HttpErrorAnswer & { internal: boolean } {
  const e = err as { validation?: ErrorObject[]; validationContext?: string; code?: unknown; statusCode?: unknown; message?: unknown };
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    const context = e.validationContext ?? 'body';
    const first = e.validation[0]!;
    return {
      status: 400,
      internal: false,
      body: { error: { code: ErrorCode.InvalidArgument, message: validationMessage(context, first), field: validationField(context, first) } },
    };
  }
  if (err instanceof HttpRequestError) {
    return { status: err.httpStatus, internal: false, body: { error: { code: err.code, message: err.message } } };
  }
  if (isSpoflessError(err)) {
    const status = STATUS_BY_CODE[err.code];
    if (status !== undefined) {
      return { status, internal: false, body: { error: { code: err.code, message: err.message, ...extras(err) } } };
    }
  }
  if (typeof e.code === 'string' && e.code in FASTIFY) {
    const f = FASTIFY[e.code]!;
    const message =
      f.code === ErrorCode.HttpBodyTooLarge
        ? `request body is larger than ${bodyLimit} bytes: expected at most that (a value may be up to 1,572,864 bytes)`
        : (f.message ?? String(e.message));
    return { status: f.status, internal: false, body: { error: { code: f.code, message } } };
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, internal: false, body: { error: { code: ErrorCode.InvalidArgument, message: String(e.message) } } };
  }
  return {
    status: 500,
    internal: true,
    body: { error: { code: ErrorCode.HttpInternal, message: 'internal error: the request may or may not have been applied; see the server log' } },
  };
}
