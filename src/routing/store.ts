/**
 * Routes on a `Store`: one JSON value per route at `routeKey(name)`. Every write that has a revision to
 * honour (`ifRevision`, or the read a deploy step is based on) is one transaction guarded by the key's
 * `modRevision`, so two operators editing the same route never overwrite each other silently: the
 * second gets `RouteConflictError` (HTTP 409/412) and nothing is written.
 *
 * A route's *revision* is its key's `modRevision`: it grows with every write of that route and is what
 * `If-Match` / `ifRevision` compare against (0: the route does not exist).
 */
import { RouteConflictError, RouteNotFoundError } from '../errors/index.js';
import type { CallOptions, KeyValue, Store } from '../store/index.js';
import { ROUTES_PREFIX, routeKey, routeNameOf } from './keys.js';
import type { Route } from './types.js';
import { parseRoute, serializeRoute, validateRoute } from './validate.js';

/** A route with the revision it was read at. */
export interface StoredRoute {
  readonly route: Route;
  /** The revision of the route's last write (its key's `modRevision`). */
  readonly revision: number;
}

export interface RouteList {
  readonly routes: readonly StoredRoute[];
  /** The store revision the list reflects: watch from `revision + 1` to follow changes. */
  readonly revision: number;
}

export interface WriteRouteOptions extends CallOptions {
  /**
   * Write only if the route is at this revision now (0: only if it does not exist). Without it the
   * write is unconditional.
   */
  readonly ifRevision?: number;
  /** How messages name the route (`route`; `body` for the HTTP API). */
  readonly where?: string;
}

export interface WriteResult {
  /** The route as written (validated and normalised). */
  readonly route: Route;
  /** The revision of the write (the route's new revision). */
  readonly revision: number;
  /** True when the route did not exist before. */
  readonly created: boolean;
}

const decoder = new TextDecoder();

/** The stored route of a key-value, or `undefined` for a value that is not a valid route (written by hand through the KV API). */
export function storedRouteOf(kv: KeyValue): StoredRoute | undefined {
  const name = routeNameOf(decoder.decode(kv.key));
  if (name === undefined) return undefined;
  try {
    const route = parseRoute(decoder.decode(kv.value));
    // A value under another route's key is not that route: skip it rather than serve it twice.
    return route.name === name ? { route, revision: kv.modRevision } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every valid route, in name order. Values under the prefix that are not valid routes are skipped.
 *
 * @example
 * ```ts
 * const { routes, revision } = await listRoutes(store);
 * ```
 */
export async function listRoutes(store: Store, options: CallOptions = {}): Promise<RouteList> {
  const r = await store.range(ROUTES_PREFIX, options);
  const routes: StoredRoute[] = [];
  for (const kv of r.kvs) {
    const s = storedRouteOf(kv);
    if (s !== undefined) routes.push(s);
  }
  return { routes, revision: r.revision };
}

/**
 * One route.
 *
 * @throws RouteNotFoundError when there is none of that name (or its stored value is not a valid route).
 * @example
 * ```ts
 * const { route, revision } = await getRoute(store, 'api');
 * ```
 */
export async function getRoute(store: Store, name: string, options: CallOptions = {}): Promise<StoredRoute> {
  const kv = await store.get(routeKey(name), options);
  const s = kv === undefined ? undefined : storedRouteOf(kv);
  if (s === undefined) {
    const { revision } = await store.range(routeKey(name), { limit: 1, keysOnly: true, ...(options.signal ? { signal: options.signal } : {}) });
    throw new RouteNotFoundError(name, revision);
  }
  return s;
}

/** The key's current modRevision (0: absent), for a conflict message. */
async function currentRevision(store: Store, name: string, options: CallOptions): Promise<number> {
  const kv = await store.get(routeKey(name), options);
  return kv?.modRevision ?? 0;
}

/**
 * Creates or replaces a route (validated first). With `ifRevision`, one guarded transaction.
 *
 * @throws InvalidArgumentError for a malformed route; RouteConflictError when `ifRevision` does not hold.
 * @example
 * ```ts
 * const { revision } = await putRoute(store, { name: 'api', service: 'api', match: { pathPrefix: '/api' } }, { ifRevision: 0 });
 * ```
 */
export async function putRoute(store: Store, input: unknown, options: WriteRouteOptions = {}): Promise<WriteResult> {
  const route = validateRoute(input, options.where);
  const key = routeKey(route.name);
  const value = serializeRoute(route);
  const call = options.signal ? { signal: options.signal } : {};
  if (options.ifRevision === undefined) {
    const r = await store.put(key, value, { ...call, prevKv: true });
    return { route, revision: r.revision, created: r.prevKv === undefined };
  }
  const t = await store.txn(
    {
      compare: [{ key, target: 'modRevision', cmp: '=', value: options.ifRevision }],
      success: [{ type: 'put', key, value }],
    },
    call,
  );
  if (!t.succeeded) throw new RouteConflictError(route.name, options.ifRevision, await currentRevision(store, route.name, call));
  return { route, revision: t.revision, created: options.ifRevision === 0 };
}

/**
 * Deletes a route. With `ifRevision`, only if it is still at that revision.
 *
 * @throws RouteNotFoundError when there is none; RouteConflictError when `ifRevision` does not hold.
 * @example
 * ```ts
 * await deleteRoute(store, 'api');
 * ```
 */
export async function deleteRoute(store: Store, name: string, options: WriteRouteOptions = {}): Promise<{ revision: number }> {
  const key = routeKey(name);
  const call = options.signal ? { signal: options.signal } : {};
  if (options.ifRevision === undefined) {
    const r = await store.delete(key, call);
    if (r.deleted === 0) throw new RouteNotFoundError(name, r.revision);
    return { revision: r.revision };
  }
  const t = await store.txn(
    {
      compare: [{ key, target: 'modRevision', cmp: '=', value: options.ifRevision }],
      success: [{ type: 'delete', key }],
    },
    call,
  );
  if (!t.succeeded) throw new RouteConflictError(name, options.ifRevision, await currentRevision(store, name, call));
  const first = t.responses[0];
  if (first?.type === 'delete' && first.deleted === 0) throw new RouteNotFoundError(name, t.revision);
  return { revision: t.revision };
}
