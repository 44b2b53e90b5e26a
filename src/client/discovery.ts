/**
 * Discovery: a live, in-memory list of one service's instances, and calls balanced over it.
 *
 * The list is a range read of the service's catalog keys, then a watch from the revision after it
 * (see watch.ts), so no change between the read and the watch is missed. After a disconnect the watch
 * resumes from its last revision; when that revision has been compacted, the discovery reads the list
 * again and watches from there.
 *
 * Fail static: when the control plane cannot be reached the list stays as it was last seen and calls
 * keep going to those instances; `connected` turns false and `staleness` counts the milliseconds since
 * the list was last known to be current. An instance that died meanwhile is handled by the caller's
 * side: a refused connection is tried on another instance, and its breaker opens.
 *
 * Panic, fail static: when no instance is routable any more (every lease expired while the control
 * planes were away and the watch now replays those deletions before the registrations come back, or
 * every instance failed its checks), calls go to the last non-empty routable list rather than nowhere,
 * as Envoy's panic mode does: a live instance answers, a dead one refuses and the call moves on.
 * `healthy` still says the truth.
 *
 * Cold start, fail static: with `cacheFile` (or `cacheDir`) the list is also kept on disk, written
 * (temporary file, then rename: never half a file) at most once a second after it changes. A discovery
 * started while the control plane cannot be reached serves that saved list instead of failing:
 * `source` is `'cache-file'`, `stale` is true and `lastSyncedAt` is when the list was last known
 * current. It lists again as soon as the control plane answers (not resuming from the saved revision:
 * the store may have been replaced since), then watches as usual.
 *
 * States:
 *
 * | from       | to         | when                                                         |
 * |------------|------------|--------------------------------------------------------------|
 * | listing    | watching   | the list was read (the first one before `discover` resolves) |
 * | (start)    | cached     | the first list failed to reach the control plane; the saved list serves |
 * | cached     | listing    | right away, retried with backoff until the control plane answers |
 * | watching   | live       | the watch stream is open (`connected` true)                  |
 * | live       | watching   | the stream broke (`connected` false, staleness grows)        |
 * | watching   | listing    | the watch's start revision was compacted                     |
 * | any        | closed     | `close()`                                                    |
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokenCircuitError, ClientClosedError, ControlPlaneError, ErrorCode, InvalidOptionError, NoInstanceAvailableError, isSpoflessError } from '../errors/index.js';
import { fullJitterBackoff, type Backoff } from '../resilience/index.js';
import { BreakerGroup, type CircuitBreaker, type CircuitBreakerOptions } from '../resilience/index.js';
import { leastRequest, zoneAware, type Balancer, type Endpoint } from './balancer.js';
import { DebouncedWrite, saveCacheFile } from './cache-file.js';
import { Listeners, type Disposable } from './listeners.js';
import { connectionFailureCode, type Transport } from './http.js';
import { rangeAll, type RangePage } from './range-all.js';
import { instancesPrefix, type Instance, type KeyValue, type RangeResult, type WatchEvent } from './types.js';
import { listUntilDone, watchAndRelist, type ListWatch } from './list-watch.js';
import { Watch } from './watch.js';

/** How long after a change the list is written to the cache file (changes meanwhile share the write). */
const SAVE_DELAY_MS = 1_000;
const CACHE_FORMAT = 'spofless-discovery/1';

/** Where the list being served came from. */
export type DiscoverySource = 'control-plane' | 'cache-file';

interface CacheSnapshot {
  readonly format: typeof CACHE_FORMAT;
  readonly service: string;
  readonly revision: number;
  /** `Date.now()` when the list was last known current. */
  readonly savedAt: number;
  readonly instances: readonly Instance[];
}

/** Statuses that take new traffic. */
const ROUTABLE = new Set(['passing', 'warning']);

/**
 * What changed in a list.
 *
 * @example
 * ```ts
 * discovery.onChange(({ added, removed }) => console.log(`+${added.length} -${removed.length}`));
 * ```
 */
export interface DiscoveryChange {
  readonly added: readonly Instance[];
  readonly removed: readonly Instance[];
  readonly updated: readonly Instance[];
  /** The list after the change. */
  readonly instances: readonly Instance[];
  /** The revision the list reflects. */
  readonly revision: number;
}

/**
 * Options of `ControlPlaneClient.discover()`.
 *
 * @example
 * ```ts
 * const options: DiscoverOptions = { zone: 'a', minHealthyInZone: 2, onChange: (c) => log(c.instances.length) };
 * ```
 */
export interface DiscoverOptions {
  /** The caller's zone: with it the default balancer prefers that zone (see `zoneAware`). */
  readonly zone?: string;
  /** With `zone`: spill over to other zones when this one has fewer instances than this. Default 1. */
  readonly minHealthyInZone?: number;
  /** Default `leastRequest()` (wrapped in `zoneAware` when `zone` is given). */
  readonly balancer?: Balancer;
  /** Called after every change of the list (not for the first list). */
  readonly onChange?: (change: DiscoveryChange) => void;
  /** Options of the breaker each instance gets. Default: opens at 50% failures over the last 10 calls (5 at least), 5xx answers count. */
  readonly breaker?: CircuitBreakerOptions;
  /** Instances a `request` tries after connection failures, the first included. Default 3. */
  readonly maxAttempts?: number;
  /** Ends the discovery (as `close()`); also aborts the first list. */
  readonly signal?: AbortSignal;
  /** Waits between re-list attempts, and between watch reconnections. Default full jitter, base 250 ms, cap 10 s. */
  readonly backoff?: Backoff;
  /** See `WatchOptions.heartbeatTimeout`. */
  readonly heartbeatTimeout?: number;
  /**
   * Keep the list in this file too, and serve it when the control plane cannot be reached at start
   * (fail static across restarts). Written atomically, at most once a second.
   */
  readonly cacheFile?: string;
  /** As `cacheFile`, with the file `discovery-<service>.json` in this directory. */
  readonly cacheDir?: string;
}

/** The per-instance breaker defaults: a few refused connections open it; it probes again after 1 s, then up to 30 s. */
const DEFAULT_BREAKER: CircuitBreakerOptions = {
  window: { type: 'count', size: 10 },
  minimumCalls: 5,
  failureRateThreshold: 0.5,
  openDuration: { initial: 1_000, max: 30_000 },
  isFailureResult: (res) => (res as Response).status >= 500,
};

/**
 * A live instance list of one service. Made by `ControlPlaneClient.discover()`.
 *
 * @example
 * ```ts
 * const api = await client.discover('api', { zone: 'eu-1a' });
 * const res = await api.request('/v1/orders', { method: 'POST', body: JSON.stringify(order) });
 * console.log(api.instances.length, api.connected, api.staleness);
 * ```
 */
export class Discovery {
  readonly service: string;
  readonly #transport: Transport;
  readonly #balancer: Balancer;
  readonly #breakers: BreakerGroup;
  readonly #maxAttempts: number;
  readonly #backoff: Backoff;
  readonly #heartbeat: number | undefined;
  readonly #life = new AbortController();
  readonly #changes = new Listeners<DiscoveryChange>();
  /** Every known instance by id. */
  #byId = new Map<string, Endpoint>();
  /** Routable endpoints, replaced (never mutated) on every change. */
  #routable: readonly Endpoint[] = [];
  /** The last non-empty `#routable`: where calls go while nothing is routable (see "Panic" above). */
  #lastRoutable: readonly Endpoint[] = [];
  #instances: readonly Instance[] = [];
  #revision = 0;
  #watch: Watch | undefined;
  #connected = false;
  /** Date.now() of the last moment the list was known current. */
  #lastContact = 0;
  #loop: Promise<void> | undefined;
  readonly #cacheFile: string | undefined;
  readonly #saver = new DebouncedWrite(SAVE_DELAY_MS, () => this.#save());
  #source: DiscoverySource = 'control-plane';

  /** Internal: use `ControlPlaneClient.discover()`. */
  constructor(transport: Transport, service: string, options: DiscoverOptions = {}) {
    this.#transport = transport;
    this.service = service;
    this.#balancer =
      options.balancer ??
      (options.zone !== undefined
        ? zoneAware({ zone: options.zone, ...(options.minHealthyInZone !== undefined ? { minHealthy: options.minHealthyInZone } : {}) })
        : leastRequest());
    this.#breakers = new BreakerGroup({ breaker: { name: `spofless:${service}`, ...DEFAULT_BREAKER, ...options.breaker } });
    this.#maxAttempts = options.maxAttempts ?? 3;
    this.#backoff = options.backoff ?? fullJitterBackoff({ base: 250, cap: 10_000 });
    this.#heartbeat = options.heartbeatTimeout;
    this.#cacheFile = cachePath(service, options);
    if (options.onChange !== undefined) this.#changes.subscribe(options.onChange);
    const signal = options.signal;
    if (signal !== undefined) {
      if (signal.aborted) this.#life.abort(signal.reason);
      else signal.addEventListener('abort', () => this.close(), { once: true });
    }
  }

  /** Internal: the first list, then the watch loop in the background. */
  async start(signal?: AbortSignal): Promise<this> {
    let list: { instances: Instance[]; revision: number };
    try {
      list = await this.#list(signal === undefined ? this.#life.signal : AbortSignal.any([signal, this.#life.signal]));
    } catch (err) {
      // Unreachable (not a refusal: a 4xx means the request itself is wrong): the saved list, if any.
      const refused = err instanceof ControlPlaneError && err.status >= 400 && err.status < 500;
      const saved = refused || signal?.aborted === true || this.#life.signal.aborted ? undefined : this.#readCache();
      if (saved === undefined) throw err;
      this.#replace(saved.instances, saved.revision, false);
      this.#source = 'cache-file';
      this.#connected = false;
      this.#lastContact = saved.savedAt;
      this.#loop = this.#run(true);
      return this;
    }
    this.#replace(list.instances, list.revision, false);
    this.#connected = true;
    this.#lastContact = Date.now();
    this.#scheduleSave();
    this.#loop = this.#run();
    return this;
  }

  /** Every known instance, whatever its status. */
  get instances(): readonly Instance[] {
    return this.#instances;
  }

  /** The instances that take new traffic (passing or warning). */
  get healthy(): readonly Instance[] {
    return this.#routable.map((e) => e.instance);
  }

  /** The store revision the list reflects. */
  get revision(): number {
    return this.#revision;
  }

  /** True while the watch stream is open: the list is current. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Milliseconds since the list was last known to be current: 0 while connected. */
  get staleness(): number {
    return this.#connected ? 0 : Math.max(0, Date.now() - this.#lastContact);
  }

  /** True while the list may be out of date: the watch is down, or the list came from the cache file. */
  get stale(): boolean {
    return !this.#connected;
  }

  /** `Date.now()` when the list was last known current (now, while connected); 0 if never. */
  get lastSyncedAt(): number {
    return this.#connected ? Date.now() : this.#lastContact;
  }

  /** Where the list came from: the control plane, or (until it answers) the cache file. */
  get source(): DiscoverySource {
    return this.#source;
  }

  /** The breaker of one instance (made on first use). */
  breaker(id: string): CircuitBreaker {
    return this.#breakers.get(id);
  }

  /** Called after each change of the list. */
  onChange(listener: (change: DiscoveryChange) => void): Disposable {
    return this.#changes.subscribe(listener);
  }

  /** The instance the balancer chooses for the next call, or `undefined` when none may take it. */
  pick(skip?: ReadonlySet<string>): Instance | undefined {
    return this.#balancer.pick(this.#routable, skip)?.instance;
  }

  /**
   * A `fetch` to one instance of the service: `path` is appended to the instance's origin. The
   * instance is chosen by the balancer and the call runs through that instance's breaker. When the
   * connection fails before any response (refused, reset, closed: an instance that just died or is
   * shutting down) or the instance's circuit is open, another instance is tried, up to `maxAttempts`
   * connection attempts. A request whose body is a stream cannot be sent twice and is not retried.
   *
   * Rejects with `NoInstanceAvailableError` (its `cause` is the last failure) when no instance could
   * take the call; with the caller's abort as `fetch` does; any HTTP status resolves.
   */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    if (this.#life.signal.aborted) throw new ClientClosedError(`discovery of ${this.service} is closed`);
    const replayable = init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof Uint8Array || init.body instanceof ArrayBuffer || init.body instanceof URLSearchParams || init.body instanceof Blob;
    const maxAttempts = replayable ? this.#maxAttempts : 1;
    const signal = init.signal ?? undefined;
    let tried: Set<string> | undefined;
    let attempts = 0;
    let lastError: unknown;
    const pool = this.#routable.length > 0 ? this.#routable : this.#lastRoutable;
    for (;;) {
      const ep = this.#balancer.pick(pool, tried);
      if (ep === undefined) break;
      (tried ??= new Set()).add(ep.id);
      ep.inFlight++;
      const result = await this.#breakers.tryExecute(ep.id, ({ signal: s }) => fetch(ep.origin + path, { ...init, signal: s }), signal);
      ep.inFlight--;
      if (result.ok) return result.value;
      const error = result.error;
      lastError = error;
      if (error instanceof BrokenCircuitError || isSpoflessError(error, ErrorCode.IsolatedCircuit)) continue;
      if (connectionFailureCode(error) === undefined || signal?.aborted === true) throw error;
      if (++attempts >= maxAttempts) break;
    }
    const reason =
      this.#routable.length === 0
        ? `${this.#byId.size === 0 ? 'the list is empty' : `none of its ${this.#byId.size} instance(s) is passing`}${
            lastError === undefined ? '' : `; the last routable instances failed too (${attempts} connection attempt(s))`
          }`
        : lastError === undefined
          ? 'no instance left to try'
          : `every instance tried failed (${attempts} connection attempt(s))`;
    throw new NoInstanceAvailableError(this.service, reason, { cause: lastError });
  }

  /** Stops watching. The list stays readable as it was; `request` rejects from now on. */
  close(): void {
    // A change not yet written: write it now, so the next start has it.
    this.#saver.flush();
    this.#life.abort(new ClientClosedError(`discovery of ${this.service} was closed`));
    this.#watch?.close();
    this.#connected = false;
  }

  /** Resolves when the background loop has ended (after `close()`). */
  async closed(): Promise<void> {
    await this.#loop;
  }

  // ---- internals -------------------------------------------------------------------------------

  async #list(signal: AbortSignal): Promise<{ instances: Instance[]; revision: number }> {
    const page: RangePage = (prefix, { signal: s, ...query }) => this.#transport.json<RangeResult>('GET', '/v1/kv', { query: { prefix, ...query }, signal: s });
    const { kvs, revision } = await rangeAll(page, instancesPrefix(this.service), signal);
    const instances: Instance[] = [];
    for (const kv of kvs) {
      const inst = parseInstance(kv);
      if (inst !== undefined) instances.push(inst);
    }
    return { instances, revision };
  }

  async #run(fromCache = false): Promise<void> {
    const lw: ListWatch<{ instances: Instance[]; revision: number }> = {
      life: this.#life.signal,
      backoff: this.#backoff,
      list: (signal) => this.#list(signal),
      onList: (list) => {
        this.#replace(list.instances, list.revision, true);
        this.#source = 'control-plane';
        this.#lastContact = Date.now();
        this.#scheduleSave();
      },
      heartbeatTimeout: this.#heartbeat,
      revision: () => this.#revision,
      openWatch: (options) => (this.#watch = new Watch(this.#transport, instancesPrefix(this.service), options)),
      onMessage: (msg, watch) => {
        switch (msg.type) {
          case 'connected':
            this.#connected = true;
            this.#lastContact = Date.now();
            break;
          case 'events':
            this.#lastContact = Date.now();
            this.#apply(msg.events, msg.revision);
            break;
          case 'disconnected':
            if (this.#connected) {
              this.#lastContact = Math.max(this.#lastContact, watch.lastContact);
              // The moment contact was lost is what a restart from the cache file should report.
              this.#scheduleSave();
            }
            this.#connected = false;
            break;
        }
      },
      onWatchEnd: () => {
        if (this.#connected) this.#lastContact = Date.now();
        this.#connected = false;
      },
    };
    // Started from the cache file: list first (its revision may belong to a store replaced since).
    if (fromCache && !(await listUntilDone(lw))) return;
    await watchAndRelist(lw);
  }

  // ---- the cache file --------------------------------------------------------------------------

  #scheduleSave(): void {
    if (this.#cacheFile === undefined || this.#source !== 'control-plane' || this.#life.signal.aborted) return;
    this.#saver.schedule();
  }

  #save(): void {
    const file = this.#cacheFile;
    if (file === undefined || this.#source !== 'control-plane') return;
    const snap: CacheSnapshot = { format: CACHE_FORMAT, service: this.service, revision: this.#revision, savedAt: this.lastSyncedAt, instances: this.#instances };
    saveCacheFile(file, snap);
  }

  #readCache(): CacheSnapshot | undefined {
    if (this.#cacheFile === undefined) return undefined;
    let raw: Partial<CacheSnapshot>;
    try {
      raw = JSON.parse(readFileSync(this.#cacheFile, 'utf8')) as Partial<CacheSnapshot>;
    } catch {
      return undefined;
    }
    if (typeof raw !== 'object' || raw === null || raw.format !== CACHE_FORMAT || raw.service !== this.service || !Array.isArray(raw.instances)) return undefined;
    const revision = Number(raw.revision);
    const savedAt = Number(raw.savedAt);
    if (!Number.isSafeInteger(revision) || revision < 0 || !Number.isFinite(savedAt)) return undefined;
    const instances: Instance[] = [];
    for (const x of raw.instances) {
      const inst = checkInstance(x);
      if (inst === undefined) return undefined;
      instances.push(inst);
    }
    return { format: CACHE_FORMAT, service: this.service, revision, savedAt, instances };
  }

  #apply(events: readonly WatchEvent[], revision: number): void {
    const added: Instance[] = [];
    const removed: Instance[] = [];
    const updated: Instance[] = [];
    const prefix = instancesPrefix(this.service);
    for (const e of events) {
      if (!e.kv.key.startsWith(prefix)) continue;
      const id = e.kv.key.slice(prefix.length);
      const had = this.#byId.get(id);
      if (e.type === 'delete') {
        if (had !== undefined) {
          this.#byId.delete(id);
          this.#breakers.delete(id);
          removed.push(had.instance);
        }
        continue;
      }
      const inst = parseInstance(e.kv);
      if (inst === undefined) continue;
      if (had === undefined) {
        this.#byId.set(id, endpoint(id, inst));
        added.push(inst);
      } else {
        // Keep the endpoint object: its in-flight count belongs to calls still running.
        (had as { instance: Instance }).instance = inst;
        (had as { origin: string }).origin = originOf(inst);
        updated.push(inst);
      }
    }
    this.#revision = Math.max(this.#revision, revision);
    if (added.length + removed.length + updated.length === 0) return;
    this.#rebuild();
    this.#scheduleSave();
    this.#changes.emit({ added, removed, updated, instances: this.#instances, revision: this.#revision });
  }

  #replace(list: readonly Instance[], revision: number, notify: boolean): void {
    const added: Instance[] = [];
    const updated: Instance[] = [];
    const next = new Map<string, Endpoint>();
    for (const inst of list) {
      const had = this.#byId.get(inst.id);
      if (had === undefined) {
        next.set(inst.id, endpoint(inst.id, inst));
        added.push(inst);
      } else {
        if (JSON.stringify(had.instance) !== JSON.stringify(inst)) updated.push(inst);
        (had as { instance: Instance }).instance = inst;
        (had as { origin: string }).origin = originOf(inst);
        next.set(inst.id, had);
      }
    }
    const removed: Instance[] = [];
    for (const [id, ep] of this.#byId) {
      if (!next.has(id)) {
        removed.push(ep.instance);
        this.#breakers.delete(id);
      }
    }
    this.#byId = next;
    this.#revision = revision;
    this.#rebuild();
    if (notify && added.length + removed.length + updated.length > 0) {
      this.#changes.emit({ added, removed, updated, instances: this.#instances, revision });
    }
  }

  #rebuild(): void {
    const all = [...this.#byId.values()];
    this.#instances = all.map((e) => e.instance);
    this.#routable = all.filter((e) => ROUTABLE.has(e.instance.status));
    if (this.#routable.length > 0) this.#lastRoutable = this.#routable;
  }
}

function endpoint(id: string, instance: Instance): Endpoint {
  return { id, instance, origin: originOf(instance), inFlight: 0 };
}

function originOf(inst: Instance): string {
  const host = inst.address.includes(':') && !inst.address.startsWith('[') ? `[${inst.address}]` : inst.address;
  const scheme = inst.metadata?.scheme === 'https' ? 'https' : 'http';
  return `${scheme}://${host}:${inst.port}`;
}

function parseInstance(kv: KeyValue): Instance | undefined {
  try {
    return checkInstance(JSON.parse(kv.value));
  } catch {
    return undefined;
  }
}

function checkInstance(x: unknown): Instance | undefined {
  const v = x as Instance;
  if (typeof v !== 'object' || v === null || typeof v.id !== 'string' || typeof v.address !== 'string' || typeof v.port !== 'number') return undefined;
  return { ...v, tags: v.tags ?? [], metadata: v.metadata ?? {}, status: v.status ?? 'passing' };
}

/** The cache file of `service` from the options, validated. */
function cachePath(service: string, options: DiscoverOptions): string | undefined {
  const { cacheFile, cacheDir } = options;
  if (cacheFile !== undefined && cacheDir !== undefined) {
    throw new InvalidOptionError('discover', 'cacheDir', cacheDir, 'not both cacheFile and cacheDir: cacheFile names the file, cacheDir a directory for it');
  }
  if (cacheFile !== undefined) {
    if (typeof cacheFile !== 'string' || cacheFile === '') throw new InvalidOptionError('discover', 'cacheFile', cacheFile, 'a file path');
    return cacheFile;
  }
  if (cacheDir !== undefined) {
    if (typeof cacheDir !== 'string' || cacheDir === '') throw new InvalidOptionError('discover', 'cacheDir', cacheDir, 'a directory path');
    return join(cacheDir, `discovery-${encodeURIComponent(service)}.json`);
  }
  return undefined;
}
