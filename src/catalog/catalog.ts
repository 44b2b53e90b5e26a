/**
 * The service catalog on a `Store`: register (under a lease), deregister, drain, status changes and
 * listings. Every update of an existing instance is a compare-and-swap on the key's `modRevision` that
 * keeps the key's lease, so a concurrent re-registration, drain or health-check result is never
 * overwritten by a write based on an older read: the loser reads again and retries.
 *
 * Status on registration (the first matching rule wins):
 * 1. the registration's `status`;
 * 2. when the same owner (same lease) re-registers with the same address, port and check: the status
 *    the instance has now (a periodic re-registration by an SDK must not undo a drain or a check result);
 * 3. the check's `initialStatus`;
 * 4. `critical` when the instance has a check (it has not proven itself yet), else `passing`.
 *
 * @example
 * ```ts
 * const catalog = new Catalog(store);
 * const { lease } = await catalog.register('api', 'api-1', { address: '127.0.0.1', port: 8080, ttl: 10 });
 * setInterval(() => void store.keepAlive(lease), 3_000).unref();
 * const { instances } = await catalog.listInstances('api', { status: 'passing' });
 * ```
 */
import {
  CatalogConflictError,
  InstanceNotFoundError,
  InvalidArgumentError,
  InvalidOptionError,
  describe,
} from '../errors/index.js';
import { text, type CallOptions, type Compare, type LeaseId, type Store } from '../store/index.js';
import { CATALOG_INSTANCES_PREFIX, instanceKey, instancesPrefix, parseInstance, parseInstanceKey } from './keys.js';
import {
  DEFAULT_REGISTRATION_TTL,
  type HealthCheck,
  type Instance,
  type InstanceResult,
  type InstanceStatus,
  type ListInstancesFilter,
  type RegisterInput,
  type RegisterResult,
  type ServiceSummary,
} from './types.js';
import { checkName, checkRegistration, checkStatus } from './validate.js';

export interface CatalogOptions {
  /** Wall clock (ms since the epoch) for `registeredAt`. Default `Date.now`. */
  readonly wallClock?: { now(): number };
  /** Compare-and-swap attempts before an update gives up with `CatalogConflictError`. Default 8. */
  readonly maxAttempts?: number;
}

export interface RegisterOptions extends CallOptions {
  /** How messages name the registration (`body` for the HTTP API). Default `registration`. */
  readonly where?: string;
}

export interface SetStatusOptions extends CallOptions {
  /** Why (kept in `statusReason`); without it `statusReason` is cleared. */
  readonly reason?: string;
}

/** An instance key's state, as a compare-and-swap needs it. */
export interface InstanceVersion {
  readonly modRevision: number;
  readonly lease?: LeaseId | undefined;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Catalog {
  readonly store: Store;
  readonly #wallClock: { now(): number };
  readonly #maxAttempts: number;

  constructor(store: Store, options: CatalogOptions = {}) {
    if (typeof store !== 'object' || store === null || typeof store.txn !== 'function') {
      throw new InvalidOptionError('Catalog', 'store', store, 'a Store');
    }
    const max = options.maxAttempts ?? 8;
    if (!Number.isInteger(max) || max < 1) throw new InvalidOptionError('Catalog', 'maxAttempts', max, 'an integer >= 1');
    this.store = store;
    this.#wallClock = options.wallClock ?? Date;
    this.#maxAttempts = max;
  }

  /**
   * Registers (or re-registers) an instance under a lease. With `ttl` (or neither `ttl` nor `lease`)
   * a lease is granted here, and revoked again if the registration fails, so nothing is left behind.
   */
  async register(service: string, id: string, input: RegisterInput, options: RegisterOptions = {}): Promise<RegisterResult> {
    const svc = checkName(service, 'service');
    const iid = checkName(id, 'id');
    const reg = checkRegistration(input, options.where ?? 'registration');
    const key = instanceKey(svc, iid);
    const signal = options.signal;
    let lease = reg.lease;
    let granted = false;
    if (lease === undefined) {
      lease = (await this.store.grantLease(reg.ttl ?? DEFAULT_REGISTRATION_TTL, signal ? { signal } : {})).id;
      granted = true;
    }
    try {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
        const kv = await this.store.get(key, signal ? { signal } : {});
        const prev = kv === undefined ? undefined : parseInstance(text(kv.value));
        const sameOwner =
          prev !== undefined &&
          kv?.lease === lease &&
          prev.address === reg.address &&
          prev.port === reg.port &&
          sameJson(prev.check, reg.check);
        let status: InstanceStatus;
        let statusReason: string | undefined;
        if (reg.status !== undefined) status = reg.status;
        else if (sameOwner) {
          status = prev.status;
          statusReason = prev.statusReason;
        } else status = reg.check?.initialStatus ?? (reg.check === undefined ? 'passing' : 'critical');
        const instance = buildInstance(svc, iid, reg, {
          status,
          statusReason,
          lease,
          registeredAt: sameOwner ? prev.registeredAt : this.#wallClock.now(),
        });
        const r = await this.store.txn(
          {
            compare: [
              kv === undefined
                ? { key, target: 'version', cmp: '=', value: 0 }
                : { key, target: 'modRevision', cmp: '=', value: kv.modRevision },
            ],
            success: [{ type: 'put', key, value: JSON.stringify(instance), lease }],
          },
          signal ? { signal } : {},
        );
        if (r.succeeded) return { instance, lease, revision: r.revision };
      }
      throw new CatalogConflictError(svc, iid, this.#maxAttempts);
    } catch (err) {
      if (granted) await this.store.revokeLease(lease).catch(() => undefined);
      throw err;
    }
  }

  /** Removes an instance. `InstanceNotFoundError` when it is not registered. */
  async deregister(service: string, id: string, options: CallOptions = {}): Promise<{ revision: number }> {
    const svc = checkName(service, 'service');
    const iid = checkName(id, 'id');
    const r = await this.store.delete(instanceKey(svc, iid), options);
    if (r.deleted === 0) throw new InstanceNotFoundError(svc, iid);
    return { revision: r.revision };
  }

  /** One instance and the revision of the read. `InstanceNotFoundError` when it is not registered. */
  async get(service: string, id: string, options: CallOptions = {}): Promise<InstanceResult> {
    const svc = checkName(service, 'service');
    const iid = checkName(id, 'id');
    const key = instanceKey(svc, iid);
    // A range rather than a get: it also says at which revision the read was made.
    const r = await this.store.range(key, { limit: 1, ...options });
    const kv = r.kvs[0];
    const instance = kv !== undefined && text(kv.key) === key ? parseInstance(text(kv.value)) : undefined;
    if (instance === undefined) throw new InstanceNotFoundError(svc, iid);
    return { instance, revision: r.revision };
  }

  /** Marks an instance `draining`: it takes no new traffic while it finishes what it has. */
  drain(service: string, id: string, options: CallOptions = {}): Promise<InstanceResult> {
    return this.setStatus(service, id, 'draining', options);
  }

  /**
   * Sets an instance's status (compare-and-swap, keeping its lease). Setting the status it already has
   * (with the same reason) writes nothing and returns the current revision of the instance.
   */
  async setStatus(service: string, id: string, status: InstanceStatus, options: SetStatusOptions = {}): Promise<InstanceResult> {
    const svc = checkName(service, 'service');
    const iid = checkName(id, 'id');
    const st = checkStatus(status, 'status');
    if (options.reason !== undefined && (typeof options.reason !== 'string' || options.reason.length > 512)) {
      throw new InvalidArgumentError(`status reason must be a string of at most 512 characters; got ${describe(options.reason)}`);
    }
    const key = instanceKey(svc, iid);
    const call = options.signal ? { signal: options.signal } : {};
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      const kv = await this.store.get(key, call);
      const prev = kv === undefined ? undefined : parseInstance(text(kv.value));
      if (kv === undefined || prev === undefined) throw new InstanceNotFoundError(svc, iid);
      if (prev.status === st && prev.statusReason === options.reason) return { instance: prev, revision: kv.modRevision };
      const next = withStatus(prev, st, options.reason);
      const revision = await this.compareAndSwap(key, kv, next, call);
      if (revision !== undefined) return { instance: next, revision };
    }
    throw new CatalogConflictError(svc, iid, this.#maxAttempts);
  }

  /**
   * Writes `next` at `key` only if the key is still at `expected.modRevision`, keeping its lease.
   * Returns the write's revision, or `undefined` when the key changed (or went) meanwhile, or when one
   * of the extra `guard` compares failed (a leader's fence: see `spofless/election`).
   */
  async compareAndSwap(
    key: string,
    expected: InstanceVersion,
    next: Instance,
    options: CallOptions = {},
    guard: readonly Compare[] = [],
  ): Promise<number | undefined> {
    const r = await this.store.txn(
      {
        compare: [...guard, { key, target: 'modRevision', cmp: '=', value: expected.modRevision }],
        success: [
          expected.lease === undefined
            ? { type: 'put', key, value: JSON.stringify(next) }
            : { type: 'put', key, value: JSON.stringify(next), lease: expected.lease },
        ],
      },
      options,
    );
    return r.succeeded ? r.revision : undefined;
  }

  /** Every service that has at least one instance, by name, with its instance and `passing` counts. */
  async listServices(options: CallOptions = {}): Promise<{ services: ServiceSummary[]; revision: number }> {
    const r = await this.store.range(CATALOG_INSTANCES_PREFIX, options);
    const services: { name: string; instances: number; passing: number }[] = [];
    for (const kv of r.kvs) {
      const where = parseInstanceKey(text(kv.key));
      const instance = where === undefined ? undefined : parseInstance(text(kv.value));
      if (where === undefined || instance === undefined) continue;
      let last = services[services.length - 1];
      if (last?.name !== where.service) {
        last = { name: where.service, instances: 0, passing: 0 };
        services.push(last);
      }
      last.instances++;
      if (instance.status === 'passing') last.passing++;
    }
    return { services, revision: r.revision };
  }

  /** A service's instances (by id), optionally only those in some statuses and/or one zone. */
  async listInstances(
    service: string,
    filter: ListInstancesFilter = {},
    options: CallOptions = {},
  ): Promise<{ instances: Instance[]; revision: number }> {
    const svc = checkName(service, 'service');
    const statuses = filter.status === undefined ? undefined : new Set(toStatusList(filter.status));
    const zone = filter.zone;
    if (zone !== undefined && typeof zone !== 'string') {
      throw new InvalidArgumentError(`zone filter must be a string; got ${describe(zone)}`);
    }
    const r = await this.store.range(instancesPrefix(svc), options);
    const instances: Instance[] = [];
    for (const kv of r.kvs) {
      const instance = parseInstance(text(kv.value));
      if (instance === undefined || parseInstanceKey(text(kv.key)) === undefined) continue;
      if (statuses !== undefined && !statuses.has(instance.status)) continue;
      if (zone !== undefined && instance.zone !== zone) continue;
      instances.push(instance);
    }
    return { instances, revision: r.revision };
  }
}

function toStatusList(s: InstanceStatus | readonly InstanceStatus[]): InstanceStatus[] {
  const list: readonly unknown[] = Array.isArray(s) ? s : [s];
  return list.map((x, i) => checkStatus(x, Array.isArray(s) ? `status filter[${i}]` : 'status filter'));
}

/** `prev` with a new status (and reason, or none). */
export function withStatus(prev: Instance, status: InstanceStatus, reason: string | undefined): Instance {
  const { statusReason: _drop, ...rest } = prev;
  return reason === undefined ? { ...rest, status } : { ...rest, status, statusReason: reason };
}

function buildInstance(
  service: string,
  id: string,
  reg: ReturnType<typeof checkRegistration>,
  extra: { status: InstanceStatus; statusReason: string | undefined; lease: LeaseId; registeredAt: number },
): Instance {
  // Spelled out in the order the API documents, which is the order the JSON shows.
  const check: HealthCheck | undefined = reg.check;
  return {
    service,
    id,
    address: reg.address,
    port: reg.port,
    ...(reg.zone === undefined ? {} : { zone: reg.zone }),
    tags: reg.tags,
    metadata: reg.metadata,
    ...(reg.version === undefined ? {} : { version: reg.version }),
    ...(reg.color === undefined ? {} : { color: reg.color }),
    status: extra.status,
    ...(extra.statusReason === undefined ? {} : { statusReason: extra.statusReason }),
    ...(check === undefined ? {} : { check }),
    lease: extra.lease,
    registeredAt: extra.registeredAt,
  };
}
