/**
 * The control-plane client: key-value, leases, catalog and watches over the HTTP API, and the SDK's
 * entry points `register()` and `discover()`.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { ClientClosedError, ControlPlaneError, InvalidOptionError } from '../errors/index.js';
import { Discovery, type DiscoverOptions } from './discovery.js';
import { Transport, normalizeUrls } from './http.js';
import { KeepAliveStream, type KeepAliveStreamStats } from './keepalive-stream.js';
import { rangeAll } from './range-all.js';
import { Registration, type InstanceRegistration, type RegisterOptions } from './registration.js';
import type {
  DeleteResult,
  Instance,
  InstanceSpec,
  InstanceStatus,
  KeyValue,
  LeaseGrant,
  LeaseInfo,
  PutResult,
  RangeResult,
  ServiceSummary,
  TxnRequest,
  TxnResult,
} from './types.js';
import { Watch, type WatchOptions } from './watch.js';

/** The control plane's default address. */
export const DEFAULT_URL = 'http://127.0.0.1:7400';

/**
 * Options of {@link ControlPlaneClient}.
 *
 * @example
 * ```ts
 * const options: ControlPlaneClientOptions = { url: ['http://10.0.0.1:7400', 'http://10.0.0.2:7400'], timeout: 5_000 };
 * ```
 */
export interface ControlPlaneClientOptions {
  /**
   * One control-plane URL, several (an array, or a comma-separated string), tried in order: the client
   * moves to the next when one stops answering. Default: `$SPOFLESS_URL`, else `http://127.0.0.1:7400`.
   */
  readonly url?: string | readonly string[];
  /** Deadline of one call, ms. Default 10 000. */
  readonly timeout?: number;
  /** Headers sent with every call. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Options every call accepts. */
export interface CallOptions {
  readonly signal?: AbortSignal;
}

const OWNER = 'ControlPlaneClient';
const KNOWN = new Set(['url', 'timeout', 'headers']);

/** `headers` as given, checked as node checks a header (a value with a line break would split the request). */
function checkHeaders(headers: unknown): Record<string, string> | undefined {
  if (headers === undefined) return undefined;
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw new InvalidOptionError(OWNER, 'headers', headers, 'an object of header names to string values');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    try {
      if (typeof value !== 'string') throw new Error('not a string');
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new InvalidOptionError(OWNER, 'headers', { [name]: value }, 'header names that are HTTP tokens and string values without control characters');
    }
    out[name.toLowerCase()] = value;
  }
  return out;
}

/**
 * @example
 * ```ts
 * import { ControlPlaneClient } from 'spofless/client';
 * const cp = new ControlPlaneClient({ url: 'http://127.0.0.1:7400' });
 * await cp.put('/config/mode', 'blue');
 * const reg = await cp.register({ service: 'api', id: 'api-1', address: '127.0.0.1', port: 8080 }, { ttl: 10 });
 * const db = await cp.discover('db', { zone: 'a' });
 * const res = await db.request('/health');
 * ```
 */
export class ControlPlaneClient {
  readonly #t: Transport;
  readonly #owned = new Set<{ close(): void }>();
  /** One keep-alive stream for every registration of this client, opened on the first renewal. */
  readonly #keepAlives: KeepAliveStream;

  constructor(options: ControlPlaneClientOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(OWNER, 'options', options, 'an object');
    for (const k of Object.keys(options)) if (!KNOWN.has(k)) throw new InvalidOptionError(OWNER, k, (options as Record<string, unknown>)[k], `not an option (known: ${[...KNOWN].join(', ')})`);
    const urls = normalizeUrls(OWNER, options.url ?? process.env.SPOFLESS_URL ?? DEFAULT_URL);
    const timeout = options.timeout ?? 10_000;
    if (typeof timeout !== 'number' || !(timeout > 0) || !Number.isFinite(timeout)) throw new InvalidOptionError(OWNER, 'timeout', timeout, 'a number of ms > 0');
    this.#t = new Transport({ urls, timeout, headers: { accept: 'application/json', ...checkHeaders(options.headers) } });
    this.#keepAlives = new KeepAliveStream(this.#t);
  }

  /**
   * How registrations renew their leases: the state of the client's keep-alive stream and how many
   * renewals went over it or per request.
   *
   * @example
   * ```ts
   * const { state, overStream, perRequest } = cp.keepAliveStats;
   * ```
   */
  get keepAliveStats(): KeepAliveStreamStats {
    return this.#keepAlives.stats;
  }

  /** The control-plane URLs, in the order they are tried. */
  get urls(): readonly string[] {
    return this.#t.urls;
  }

  /** The URL calls go to now. */
  get url(): string {
    return this.#t.url;
  }

  // ---- key-value ---------------------------------------------------------------------------------

  /** One key, or `undefined` when it does not exist. */
  async get(key: string, options: CallOptions & { revision?: number } = {}): Promise<KeyValue | undefined> {
    try {
      const res = await this.#t.json<{ kv: KeyValue }>('GET', '/v1/kv', { query: { key, revision: options.revision }, signal: options.signal });
      return res.kv;
    } catch (err) {
      if (err instanceof ControlPlaneError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** Keys starting with `prefix` (every key for `''`), in key order. */
  range(
    prefix: string,
    options: CallOptions & { limit?: number; revision?: number; fromKey?: string; keysOnly?: boolean } = {},
  ): Promise<RangeResult> {
    const { signal, ...q } = options;
    return this.#t.json('GET', '/v1/kv', { query: { prefix, ...q }, signal });
  }

  /**
   * Every key starting with `prefix`, in key order, as one consistent list at one revision however many
   * pages it takes (pages of 1,000, all read at the first page's revision). Watch from `revision + 1` to
   * follow it.
   */
  rangeAll(prefix: string, options: CallOptions = {}): Promise<{ kvs: KeyValue[]; revision: number }> {
    return rangeAll((p, page) => this.range(p, page), prefix, options.signal);
  }

  put(key: string, value: string, options: CallOptions & { lease?: string; prevKv?: boolean } = {}): Promise<PutResult> {
    const { signal, ...rest } = options;
    return this.#t.json('PUT', '/v1/kv', { body: { key, value, ...rest }, signal });
  }

  /** Deletes one key, or with `prefix: true` every key starting with `key`. */
  delete(key: string, options: CallOptions & { prefix?: boolean; prevKv?: boolean } = {}): Promise<DeleteResult> {
    const query = options.prefix === true ? { prefix: key } : { key };
    return this.#t.json('DELETE', '/v1/kv', { query: { ...query, prevKv: options.prevKv }, signal: options.signal });
  }

  txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResult> {
    return this.#t.json('POST', '/v1/txn', { body: request, signal: options.signal });
  }

  // ---- leases ------------------------------------------------------------------------------------

  grantLease(ttl: number, options: CallOptions = {}): Promise<LeaseGrant> {
    return this.#t.json('POST', '/v1/leases', { body: { ttl }, signal: options.signal });
  }

  keepAlive(id: string, options: CallOptions = {}): Promise<LeaseGrant> {
    return this.#t.json('POST', `/v1/leases/${encodeURIComponent(id)}/keepalive`, { signal: options.signal, idempotent: true });
  }

  leaseInfo(id: string, options: CallOptions & { keys?: boolean } = {}): Promise<LeaseInfo> {
    return this.#t.json('GET', `/v1/leases/${encodeURIComponent(id)}`, { query: { keys: options.keys }, signal: options.signal });
  }

  revokeLease(id: string, options: CallOptions = {}): Promise<{ revision: number; deleted: number }> {
    return this.#t.json('DELETE', `/v1/leases/${encodeURIComponent(id)}`, { signal: options.signal, idempotent: true });
  }

  // ---- catalog -----------------------------------------------------------------------------------

  services(options: CallOptions = {}): Promise<{ services: ServiceSummary[]; revision: number }> {
    return this.#t.json('GET', '/v1/catalog/services', { signal: options.signal });
  }

  /** A service's instances, optionally only those with one of the given statuses, or in one zone. */
  instances(
    service: string,
    options: CallOptions & { status?: InstanceStatus | readonly InstanceStatus[]; zone?: string } = {},
  ): Promise<{ instances: Instance[]; revision: number }> {
    const { signal, status, zone } = options;
    const query = { status: Array.isArray(status) ? status.join(',') : (status as string | undefined), zone };
    return this.#t.json('GET', `/v1/catalog/services/${encodeURIComponent(service)}/instances`, { query, signal });
  }

  /** One registration call, without keep-alive (see `register()` for that). */
  registerInstance(
    service: string,
    id: string,
    spec: InstanceSpec & { lease?: string; ttl?: number },
    options: CallOptions = {},
  ): Promise<{ instance: Instance; lease: string; revision: number }> {
    return this.#t.json('PUT', `/v1/catalog/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(id)}`, {
      body: spec,
      signal: options.signal,
      idempotent: true,
    });
  }

  deregisterInstance(service: string, id: string, options: CallOptions = {}): Promise<{ revision: number }> {
    return this.#t.json('DELETE', `/v1/catalog/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(id)}`, {
      signal: options.signal,
      idempotent: true,
    });
  }

  drainInstance(service: string, id: string, options: CallOptions = {}): Promise<{ instance: Instance; revision: number }> {
    return this.#t.json('POST', `/v1/catalog/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(id)}/drain`, {
      signal: options.signal,
      idempotent: true,
    });
  }

  /** `GET /healthz`. */
  health(options: CallOptions = {}): Promise<{ ok: boolean }> {
    return this.#t.json('GET', '/healthz', { signal: options.signal });
  }

  // ---- watches and the SDK -----------------------------------------------------------------------

  /**
   * A resumable watch of `key` (a prefix by default): an async iterable of messages. It reconnects by
   * itself; end it with `close()` or `options.signal`.
   */
  watch(key: string, options: WatchOptions = {}): Watch {
    this.#open();
    const w = new Watch(this.#t, key, options);
    this.#own(w);
    return w;
  }

  /**
   * Registers an instance under a lease of `ttl` seconds and keeps the lease alive (see
   * `Registration`). Resolves once registered.
   */
  async register(instance: InstanceRegistration, options: RegisterOptions = {}): Promise<Registration> {
    this.#open();
    const reg = new Registration(this.#t, instance, options, (lease, signal, timeout) => this.#keepAlives.keepAlive(lease, signal, timeout));
    await reg.start(options.signal);
    this.#own(reg);
    return reg;
  }

  /**
   * A live instance list of `service` with balancing and a breaker per instance (see `Discovery`).
   * Resolves once the first list is in; rejects when the control plane cannot be reached then.
   */
  async discover(service: string, options: DiscoverOptions = {}): Promise<Discovery> {
    this.#open();
    if (typeof service !== 'string' || service === '' || service.includes('/')) {
      throw new InvalidOptionError('discover', 'service', service, 'a non-empty service name without "/"');
    }
    const d = new Discovery(this.#t, service, options);
    await d.start(options.signal);
    this.#own(d);
    return d;
  }

  /**
   * Ends every watch and discovery and stops every registration's renewals (without deregistering:
   * call `Registration.deregister()` for that). Later calls reject with `ClientClosedError`.
   */
  close(): void {
    for (const o of this.#owned) o.close();
    this.#owned.clear();
    this.#keepAlives.close();
    this.#t.close();
  }

  #open(): void {
    if (this.#t.closed) throw new ClientClosedError();
  }

  #own(o: { close(): void }): void {
    this.#owned.add(o);
  }
}
