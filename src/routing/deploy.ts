/**
 * Deploy steps on a route: blue-green switch and rollback, canary weight and promotion. Each step is
 * one read of the route and one transaction guarded by the route key's `modRevision`: every gateway
 * sees the change as one revision (which is what makes a switch atomic across gateways), and a
 * concurrent edit of the same route makes the step fail with `RouteConflictError` rather than undo the
 * other edit. Nothing is retried behind the caller's back: two operators deploying the same route at
 * once should hear about it.
 *
 * The traffic state of a route (`route.traffic`) moves like this:
 *
 * | step                 | from                                   | to                                              |
 * |----------------------|----------------------------------------|-------------------------------------------------|
 * | `switchColor(to)`    | active A (any canary C)                | active `to`, previous A; canary dropped if C = `to` |
 * | `rollback`           | active A, previous P, no canary        | active P, previous A                            |
 * | `rollback`           | active A, canary C                     | active A, no canary (the canary is abandoned)   |
 * | `setCanary(v, w)`    | active A                               | active A, canary v at w %                       |
 * | `promote`            | active A, canary C                     | active C, previous A, no canary                 |
 *
 * A step that would send traffic to a version with no `passing` instance in the catalog is refused
 * (`DeployRefusedError`) unless `force` is given: switching to a color that is not up is the classic
 * blue-green outage. A step that changes nothing (switch to the active version) writes nothing.
 */
import { CATALOG_INSTANCES_PREFIX, parseInstance } from '../catalog/keys.js';
import { DeployRefusedError, InvalidArgumentError, RouteConflictError, describe } from '../errors/index.js';
import type { CallOptions, Store } from '../store/index.js';
import { routeKey } from './keys.js';
import { getRoute } from './store.js';
import type { HashKey, Route, TrafficPolicy } from './types.js';
import { serializeRoute, validateRoute } from './validate.js';

export interface DeployOptions extends CallOptions {
  /** Apply even if no instance of the target version is passing. */
  readonly force?: boolean;
  /** Apply only if the route is at this revision (`If-Match`); default: the revision this step read. */
  readonly ifRevision?: number;
}

export interface DeployResult {
  /** The route as it is now. */
  readonly route: Route;
  /** Its revision now: the revision of the write, or the unchanged one when nothing changed. */
  readonly revision: number;
  /** The route's traffic before the step. */
  readonly before: TrafficPolicy | undefined;
  /** False when the step changed nothing (and wrote nothing). */
  readonly changed: boolean;
}

/** What a deploy step does to a route's traffic: returns the new traffic, or throws to refuse. */
type Step = (route: Route) => { traffic: TrafficPolicy | undefined; target?: string };

const decoder = new TextDecoder();

/**
 * How many instances of `service` serve `version` (matched as gateways match: `color ?? version`) and
 * are `passing`, out of how many registered ones.
 */
export async function countVersionInstances(
  store: Store,
  service: string,
  version: string,
  options: CallOptions = {},
): Promise<{ passing: number; registered: number }> {
  const r = await store.range(`${CATALOG_INSTANCES_PREFIX}${service}/`, options);
  let passing = 0;
  let registered = 0;
  for (const kv of r.kvs) {
    const i = parseInstance(decoder.decode(kv.value));
    if (i === undefined || (i.color ?? i.version) !== version) continue;
    registered++;
    if (i.status === 'passing') passing++;
  }
  return { passing, registered };
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkVersionArg(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 64 || CONTROL.test(v)) {
    throw new InvalidArgumentError(`${what} must be a version or color label of 1 to 64 printable characters; got ${describe(v)}`);
  }
  return v;
}

async function apply(store: Store, name: string, step: Step, options: DeployOptions): Promise<DeployResult> {
  const call = options.signal ? { signal: options.signal } : {};
  const { route, revision } = await getRoute(store, name, call);
  if (options.ifRevision !== undefined && options.ifRevision !== revision) {
    throw new RouteConflictError(name, options.ifRevision, revision);
  }
  const { traffic, target } = step(route);
  const { traffic: _old, ...rest } = route;
  const next = validateRoute(traffic === undefined || Object.keys(traffic).length === 0 ? rest : { ...rest, traffic });
  if (serializeRoute(next) === serializeRoute(route)) return { route, revision, before: route.traffic, changed: false };
  if (target !== undefined && options.force !== true) {
    const { passing, registered } = await countVersionInstances(store, route.service, target, call);
    if (passing === 0) {
      throw new DeployRefusedError(
        name,
        `no passing instance of ${describe(target)} in service ${describe(route.service)} (${registered} registered): nothing was changed; start and register it first, or force`,
      );
    }
  }
  const key = routeKey(name);
  const t = await store.txn(
    {
      compare: [{ key, target: 'modRevision', cmp: '=', value: revision }],
      success: [{ type: 'put', key, value: serializeRoute(next) }],
    },
    call,
  );
  if (!t.succeeded) {
    const now = await store.get(key, call);
    throw new RouteConflictError(name, revision, now?.modRevision ?? 0);
  }
  return { route: next, revision: t.revision, before: route.traffic, changed: true };
}

/**
 * Blue-green switch: `to` becomes the active version, the old active one becomes `previous` (kept
 * registered and warm for a rollback).
 *
 * @throws DeployRefusedError when no instance of `to` is passing (unless `force`);
 *   RouteNotFoundError; RouteConflictError on a concurrent edit.
 * @example
 * ```ts
 * await switchColor(store, 'api', 'green'); // active green, previous blue
 * ```
 */
export async function switchColor(store: Store, route: string, to: string, options: DeployOptions = {}): Promise<DeployResult> {
  const color = checkVersionArg(to, 'the color to switch to');
  return apply(
    store,
    route,
    (r) => {
      const t = r.traffic ?? {};
      if (t.active === color) return { traffic: t };
      const { canary, ...keep } = t;
      const traffic: TrafficPolicy = {
        ...keep,
        active: color,
        ...(t.active !== undefined ? { previous: t.active } : {}),
        ...(canary !== undefined && canary.version !== color ? { canary } : {}),
      };
      // A route that had no active version had every instance eligible: there is nothing to go back to.
      if (t.active === undefined) delete (traffic as { previous?: string }).previous;
      return { traffic, target: color };
    },
    options,
  );
}

/**
 * Undoes the last deploy step: abandons a canary in progress, or else swaps `active` and `previous`.
 *
 * @throws DeployRefusedError when there is nothing to roll back to, or no instance of the previous
 *   version is passing (unless `force`).
 * @example
 * ```ts
 * await rollback(store, 'api'); // active blue, previous green
 * ```
 */
export async function rollback(store: Store, route: string, options: DeployOptions = {}): Promise<DeployResult> {
  return apply(
    store,
    route,
    (r) => {
      const t = r.traffic ?? {};
      if (t.canary !== undefined) {
        const { canary: _dropped, ...keep } = t;
        return { traffic: keep };
      }
      if (t.previous === undefined || t.active === undefined) {
        throw new DeployRefusedError(r.name, 'nothing to roll back to: the route has no previous version and no canary');
      }
      return { traffic: { ...t, active: t.previous, previous: t.active }, target: t.previous };
    },
    options,
  );
}

/**
 * Sends `weight` percent of users (0–100) to `version`, sticky on `stickyOn` (a header or cookie whose
 * hash picks the user's side); the rest stay on the active version. Weight 0 keeps the canary reachable
 * only through the force header.
 *
 * @throws InvalidArgumentError for a bad weight or version, or when the route has no active version;
 *   DeployRefusedError when no instance of `version` is passing and `weight` > 0 (unless `force`).
 * @example
 * ```ts
 * await setCanary(store, 'api', 'v2', 10, { header: 'x-user-id' });
 * ```
 */
export async function setCanary(
  store: Store,
  route: string,
  version: string,
  weight: number,
  stickyOn?: HashKey,
  options: DeployOptions = {},
): Promise<DeployResult> {
  const v = checkVersionArg(version, 'the canary version');
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 100) {
    throw new InvalidArgumentError(`the canary weight must be an integer from 0 to 100 (percent); got ${describe(weight)}`);
  }
  return apply(
    store,
    route,
    (r) => {
      const t = r.traffic ?? {};
      if (t.active === undefined) {
        throw new DeployRefusedError(r.name, `a canary takes its share from the active version, and the route has none: switch to the stable version first (spofless deploy switch ${r.name} <version>)`);
      }
      if (t.active === v) throw new DeployRefusedError(r.name, `${describe(v)} is already the active version: a canary must be another version`);
      const sticky = stickyOn ?? (t.canary?.version === v ? t.canary.stickyOn : undefined);
      const canary = { version: v, weight, ...(sticky !== undefined ? { stickyOn: sticky } : {}) };
      return { traffic: { ...t, canary }, ...(weight > 0 ? { target: v } : {}) };
    },
    options,
  );
}

/**
 * Makes the canary the active version: active = canary, previous = the old active, no canary.
 *
 * @throws DeployRefusedError when there is no canary, or no instance of it is passing (unless `force`).
 * @example
 * ```ts
 * await promote(store, 'api'); // active v2, previous v1
 * ```
 */
export async function promote(store: Store, route: string, options: DeployOptions = {}): Promise<DeployResult> {
  return apply(
    store,
    route,
    (r) => {
      const t = r.traffic ?? {};
      if (t.canary === undefined) throw new DeployRefusedError(r.name, 'no canary to promote: set one first (spofless deploy canary ...)');
      const { canary, ...keep } = t;
      return { traffic: { ...keep, active: canary.version, ...(t.active !== undefined ? { previous: t.active } : {}) }, target: canary.version };
    },
    options,
  );
}

/** One version of a route's service as `deploy status` shows it. */
export interface VersionStatus {
  readonly version: string;
  /** Its part in the route's traffic; `none` for a version registered but not routed to. */
  readonly role: 'active' | 'previous' | 'canary' | 'none';
  /** The share of users routed to it, in percent (the force header aside). */
  readonly weight: number;
  readonly passing: number;
  readonly registered: number;
}

export interface DeployStatus {
  readonly route: Route;
  readonly revision: number;
  /** The route's versions first (active, canary, previous), then every other registered one, by name. */
  readonly versions: readonly VersionStatus[];
}

/**
 * The route's traffic and, for each version of its service, how many instances are registered and passing.
 *
 * @example
 * ```ts
 * const { versions } = await deployStatus(store, 'api');
 * // [{ version: 'blue', role: 'active', weight: 90, passing: 3, registered: 3 }, { version: 'v2', role: 'canary', weight: 10, ... }]
 * ```
 */
export async function deployStatus(store: Store, name: string, options: CallOptions = {}): Promise<DeployStatus> {
  const call = options.signal ? { signal: options.signal } : {};
  const { route, revision } = await getRoute(store, name, call);
  const counts = new Map<string, { passing: number; registered: number }>();
  const r = await store.range(`${CATALOG_INSTANCES_PREFIX}${route.service}/`, call);
  for (const kv of r.kvs) {
    const i = parseInstance(decoder.decode(kv.value));
    const v = i === undefined ? undefined : (i.color ?? i.version);
    if (i === undefined || v === undefined) continue;
    const c = counts.get(v) ?? { passing: 0, registered: 0 };
    c.registered++;
    if (i.status === 'passing') c.passing++;
    counts.set(v, c);
  }
  const t = route.traffic ?? {};
  const canaryWeight = t.canary?.weight ?? 0;
  const roles: [string | undefined, VersionStatus['role'], number][] = [
    [t.active, 'active', 100 - canaryWeight],
    [t.canary?.version, 'canary', canaryWeight],
    [t.previous, 'previous', 0],
  ];
  const versions: VersionStatus[] = [];
  const seen = new Set<string>();
  for (const [v, role, weight] of roles) {
    if (v === undefined || seen.has(v)) continue;
    seen.add(v);
    versions.push({ version: v, role, weight, ...(counts.get(v) ?? { passing: 0, registered: 0 }) });
  }
  for (const v of [...counts.keys()].sort()) {
    if (!seen.has(v)) versions.push({ version: v, role: 'none', weight: t.active === undefined ? 100 : 0, ...counts.get(v)! });
  }
  return { route, revision, versions };
}
