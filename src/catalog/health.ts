/**
 * Active health checks, run by the control plane for every instance that declares one.
 *
 * One `HealthChecker` watches the catalog prefix, so it picks up a new, changed or removed instance at
 * once, and keeps one target per checked instance with at most one timer at a time (the wait before the
 * next check, or the running check's timeout), unref'd. A check's result moves counters; a status change
 * is a compare-and-swap on the instance key's `modRevision` that keeps its lease, so a re-registration
 * that lands between the read and the write wins and the next result is judged against it.
 *
 * Per-target state (`#state.value`):
 * | from      | on                                      | to        |
 * |-----------|-----------------------------------------|-----------|
 * | waiting   | its timer fires                         | probing   |
 * | probing   | the probe answers, or its timeout fires | writing (a status change is due) or waiting |
 * | writing   | the compare-and-swap settles            | waiting   |
 * | any       | instance deleted, check removed, stop() | stopped   |
 * | any       | address, port, check, lease or creation changed | waiting (counters reset, result in flight dropped) |
 *
 * Rise and fall (HAProxy's rule): `rise` consecutive passes move a `critical` instance to `passing`;
 * `fall` consecutive failures move a `passing` or `warning` one to `critical`. `draining` and
 * `maintenance` instances are checked but never moved: an operator's state outranks a probe.
 *
 * The first check of a target runs after a random share of its interval, so that a checker starting
 * with thousands of instances does not probe them all at once. Then checks start every `interval`
 * (never two at once: a check that outlasts the interval is followed at once by the next).
 *
 * `start()` and `stop()` may be called again and again: control-plane replicas run the checker only
 * on their elected leader (src/server/replica.ts), starting and stopping it as leadership moves, and
 * pass the leader's `fence` so that a deposed leader's late status write is refused by the store.
 *
 * @example
 * ```ts
 * const checker = new HealthChecker({ store });
 * await checker.start();
 * checker.onStatusChange((e) => console.log(e.service, e.id, e.from, '->', e.to, e.reason));
 * // ...
 * await checker.stop();
 * ```
 */
import { CompactedError, InvalidOptionError, StoreClosedError, isSpoflessError, ErrorCode } from '../errors/index.js';
import { text, type Compare, type KeyValue, type Store, type Watch } from '../store/index.js';
import { Catalog, withStatus } from './catalog.js';
import { CATALOG_INSTANCES_PREFIX, parseInstance, parseInstanceKey } from './keys.js';
import { defaultProbe, type Probe } from './probe.js';
import { realTimers, type Clock, type Timers } from './timers.js';
import type { HealthCheck, Instance, InstanceStatus } from './types.js';

/** A minimal structured logger (pino's shape). */
export interface CatalogLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Returned by every `on...` subscription. */
export interface Disposable {
  dispose(): void;
}

/** One check's outcome. */
export interface CheckResultEvent {
  readonly service: string;
  readonly id: string;
  readonly ok: boolean;
  readonly detail: string;
  /** How long the probe took (ms, by the checker's clock). */
  readonly durationMs: number;
  /** Consecutive passes (or failures, when `ok` is false) so far, this one included. */
  readonly streak: number;
}

/** A status the checker wrote. */
export interface StatusChangeEvent {
  readonly service: string;
  readonly id: string;
  readonly from: InstanceStatus;
  readonly to: InstanceStatus;
  readonly reason: string;
  readonly revision: number;
}

export interface HealthCheckerOptions {
  readonly store: Store;
  /** Monotonic clock (ms). Default `performance.now()`. */
  readonly clock?: Clock;
  /** Timers. Default: Node's, unref'd. */
  readonly timers?: Timers;
  /** Random numbers in [0, 1) for the first check's delay. Default `Math.random`. */
  readonly random?: () => number;
  /** Runs one check. Default: real HTTP and TCP probes. */
  readonly probe?: Probe;
  readonly logger?: CatalogLogger;
  /** Wait before re-listing after the watch failed for a reason other than compaction (ms). Default 1,000. */
  readonly retryDelay?: number;
  /**
   * Compares added to every status write, and checked just before it: on a control-plane replica, the
   * elected leader's fence (`Leadership.fence()`), so that a deposed leader's late write is refused by
   * the store. Throwing (`NotLeaderError`) skips the write.
   */
  readonly fence?: () => readonly Compare[];
}

type TargetState =
  | { readonly value: 'waiting'; readonly timer: unknown }
  | { readonly value: 'probing'; readonly timer: unknown; readonly abort: AbortController }
  | { readonly value: 'writing' }
  | { readonly value: 'stopped' };

interface Target {
  readonly key: string;
  readonly service: string;
  readonly id: string;
  /** The key's state as last seen (from the watch or our own write). */
  kv: { modRevision: number; createRevision: number; lease: string | undefined };
  instance: Instance;
  check: HealthCheck;
  /** Address, port, check, lease and creation: a change of any resets the counters. */
  identity: string;
  /** Bumped on every reset, so a result from before it is dropped. */
  generation: number;
  passes: number;
  fails: number;
  state: TargetState;
}

function identityOf(kv: { createRevision: number; lease: string | undefined }, i: Instance): string {
  return JSON.stringify([kv.createRevision, kv.lease ?? null, i.address, i.port, i.check ?? null]);
}

class Listeners<T> {
  #list: ((value: T) => void)[] = [];
  add(listener: (value: T) => void): Disposable {
    this.#list = [...this.#list, listener];
    return { dispose: () => void (this.#list = this.#list.filter((l) => l !== listener)) };
  }
  emit(value: T): void {
    for (const l of this.#list) {
      try {
        l(value);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}

type RunState =
  | { readonly value: 'stopped' }
  | { readonly value: 'running'; readonly loop: Promise<void>; watch: Watch | undefined; readonly halt: AbortController };

export class HealthChecker {
  readonly #store: Store;
  readonly #catalog: Catalog;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #random: () => number;
  readonly #probe: Probe;
  readonly #logger: CatalogLogger | undefined;
  readonly #retryDelay: number;
  readonly #fence: (() => readonly Compare[]) | undefined;
  readonly #targets = new Map<string, Target>();
  readonly #results = new Listeners<CheckResultEvent>();
  readonly #changes = new Listeners<StatusChangeEvent>();
  #run: RunState = { value: 'stopped' };
  #busy = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(options: HealthCheckerOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('HealthChecker', 'options', options, 'an object');
    const { store } = options;
    if (typeof store !== 'object' || store === null || typeof store.watch !== 'function') {
      throw new InvalidOptionError('HealthChecker', 'store', store, 'a Store');
    }
    for (const name of ['clock', 'timers', 'probe', 'random', 'logger'] as const) {
      const v = options[name];
      if (v !== undefined && typeof v !== 'object' && typeof v !== 'function') {
        throw new InvalidOptionError('HealthChecker', name, v, name === 'probe' || name === 'random' ? 'a function' : 'an object');
      }
    }
    const retryDelay = options.retryDelay ?? 1000;
    if (!Number.isFinite(retryDelay) || retryDelay < 0) throw new InvalidOptionError('HealthChecker', 'retryDelay', retryDelay, 'a number of ms >= 0');
    this.#store = store;
    this.#catalog = new Catalog(store);
    this.#clock = options.clock ?? { now: () => performance.now() };
    this.#timers = options.timers ?? realTimers;
    this.#random = options.random ?? Math.random;
    this.#probe = options.probe ?? defaultProbe;
    this.#logger = options.logger;
    this.#retryDelay = retryDelay;
    if (options.fence !== undefined && typeof options.fence !== 'function') throw new InvalidOptionError('HealthChecker', 'fence', options.fence, 'a function');
    this.#fence = options.fence;
  }

  /** True between `start()` and `stop()`. */
  get running(): boolean {
    return this.#run.value === 'running';
  }

  /** How many instances are being checked. */
  get size(): number {
    return this.#targets.size;
  }

  /** Called after every check. */
  onResult(listener: (event: CheckResultEvent) => void): Disposable {
    return this.#results.add(listener);
  }

  /** Called after every status the checker wrote. */
  onStatusChange(listener: (event: StatusChangeEvent) => void): Disposable {
    return this.#changes.add(listener);
  }

  /**
   * Starts checking: lists the catalog, arms a timer per checked instance, then follows the catalog with
   * a watch. Resolves once the first listing is loaded. Calling it while running does nothing.
   */
  start(): Promise<void> {
    if (this.#run.value === 'running') return Promise.resolve();
    const halt = new AbortController();
    let ready!: () => void;
    let failed!: (err: unknown) => void;
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    const state: Extract<RunState, { value: 'running' }> = { value: 'running', loop: Promise.resolve(), watch: undefined, halt };
    this.#run = state;
    (state as { loop: Promise<void> }).loop = this.#follow(state, ready, failed);
    return started;
  }

  /**
   * Stops checking: closes the watch, clears every timer, aborts the checks in flight, and resolves once
   * the status writes already sent have settled. Nothing runs afterwards until `start()`.
   */
  async stop(): Promise<void> {
    const run = this.#run;
    if (run.value !== 'running') return;
    this.#run = { value: 'stopped' };
    run.halt.abort();
    run.watch?.close();
    for (const t of this.#targets.values()) this.#halt(t);
    this.#targets.clear();
    await run.loop;
    await this.whenIdle();
  }

  /** Resolves when no check and no status write is in flight (for tests, after moving a manual clock). */
  whenIdle(): Promise<void> {
    if (this.#busy === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  // ------------------------------------------------------------------ following the catalog

  async #follow(run: Extract<RunState, { value: 'running' }>, ready: () => void, failed: (err: unknown) => void): Promise<void> {
    let first = true;
    try {
      await this.#followLoop(run, () => {
        first = false;
        ready();
      });
    } catch (err) {
      if (first) {
        // The first listing failed: start() rejects and the checker is stopped again.
        if (this.#run === run) this.#run = { value: 'stopped' };
        first = false;
        failed(err);
      }
    } finally {
      // stop() before the first listing came back: start() still resolves.
      if (first) ready();
    }
  }

  async #followLoop(run: Extract<RunState, { value: 'running' }>, listed: () => void): Promise<void> {
    let startRevision: number | undefined;
    let first = true;
    while (this.#run === run) {
      try {
        if (startRevision === undefined) {
          const list = await this.#store.range(CATALOG_INSTANCES_PREFIX);
          if (this.#run !== run) return;
          this.#reconcile(list.kvs);
          startRevision = list.revision + 1;
          if (first) {
            first = false;
            listed();
          }
        }
        const watch = this.#store.watch(CATALOG_INSTANCES_PREFIX, { prefix: true, startRevision, signal: run.halt.signal });
        run.watch = watch;
        for await (const resp of watch) {
          if (this.#run !== run) return;
          for (const e of resp.events) {
            if (e.type === 'put') this.#upsert(e.kv);
            else this.#remove(text(e.kv.key));
          }
          startRevision = resp.revision + 1;
        }
        return; // closed by stop()
      } catch (err) {
        if (this.#run !== run) return;
        if (first) throw err;
        if (err instanceof CompactedError) {
          // History we needed is gone: list again and reconcile (never a silent gap).
          this.#logger?.warn({ compactRevision: err.compactRevision }, 'health checker: catalog watch compacted; re-listing');
          startRevision = undefined;
          continue;
        }
        if (err instanceof StoreClosedError || isSpoflessError(err, ErrorCode.Aborted)) {
          this.#stopQuietly(run);
          return;
        }
        this.#logger?.error({ err }, 'health checker: catalog watch failed; re-listing');
        startRevision = undefined;
        await new Promise<void>((resolve) => {
          const signal = run.halt.signal;
          const onAbort = (): void => {
            this.#timers.clearTimeout(t);
            resolve();
          };
          const t = this.#timers.setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          }, this.#retryDelay);
          signal.addEventListener('abort', onAbort, { once: true });
        });
      }
    }
  }

  #stopQuietly(run: RunState): void {
    if (this.#run !== run) return;
    this.#run = { value: 'stopped' };
    for (const t of this.#targets.values()) this.#halt(t);
    this.#targets.clear();
  }

  /** Makes the targets match a fresh listing. */
  #reconcile(kvs: readonly KeyValue[]): void {
    const seen = new Set<string>();
    for (const kv of kvs) {
      seen.add(text(kv.key));
      this.#upsert(kv);
    }
    for (const key of [...this.#targets.keys()]) if (!seen.has(key)) this.#remove(key);
  }

  #upsert(kv: KeyValue): void {
    const key = text(kv.key);
    const where = parseInstanceKey(key);
    const instance = where === undefined ? undefined : parseInstance(text(kv.value));
    const existing = this.#targets.get(key);
    if (where === undefined || instance === undefined || instance.check === undefined) {
      if (existing !== undefined) this.#remove(key);
      return;
    }
    const seen = { modRevision: kv.modRevision, createRevision: kv.createRevision, lease: kv.lease };
    const identity = identityOf(seen, instance);
    if (existing !== undefined) {
      // Our own write comes back through the watch after we recorded it: nothing new.
      if (kv.modRevision <= existing.kv.modRevision) return;
      existing.kv = seen;
      existing.instance = instance;
      if (existing.identity === identity) return;
      existing.identity = identity;
      existing.check = instance.check;
      this.#reset(existing);
      return;
    }
    const target: Target = {
      key,
      service: where.service,
      id: where.id,
      kv: seen,
      instance,
      check: instance.check,
      identity,
      generation: 0,
      passes: 0,
      fails: 0,
      state: { value: 'stopped' },
    };
    this.#targets.set(key, target);
    this.#schedule(target, Math.floor(this.#random() * target.check.interval));
  }

  #remove(key: string): void {
    const t = this.#targets.get(key);
    if (t === undefined) return;
    this.#targets.delete(key);
    this.#halt(t);
  }

  #reset(t: Target): void {
    this.#halt(t);
    t.generation++;
    t.passes = 0;
    t.fails = 0;
    this.#schedule(t, Math.floor(this.#random() * t.check.interval));
  }

  /** Clears the target's timer and aborts its probe; a write in flight finishes but changes nothing here. */
  #halt(t: Target): void {
    const s = t.state;
    if (s.value === 'waiting') this.#timers.clearTimeout(s.timer);
    if (s.value === 'probing') {
      this.#timers.clearTimeout(s.timer);
      s.abort.abort();
    }
    t.state = { value: 'stopped' };
  }

  // ------------------------------------------------------------------ checking

  #schedule(t: Target, delay: number): void {
    const timer = this.#timers.setTimeout(() => this.#check(t), Math.max(0, delay));
    t.state = { value: 'waiting', timer };
  }

  #check(t: Target): void {
    if (t.state.value !== 'waiting' || this.#targets.get(t.key) !== t) return;
    const abort = new AbortController();
    const check = t.check;
    const generation = t.generation;
    const startedAt = this.#clock.now();
    const timer = this.#timers.setTimeout(() => abort.abort(), check.timeout);
    t.state = { value: 'probing', timer, abort };
    this.#busy++;
    let probing: Promise<{ ok: boolean; detail: string }>;
    try {
      probing = this.#probe(t.instance.address, t.instance.port, check, abort.signal);
    } catch (err) {
      probing = Promise.resolve({ ok: false, detail: err instanceof Error ? err.message : String(err) });
    }
    probing
      .catch((err: unknown) => ({ ok: false, detail: err instanceof Error ? err.message : String(err) }))
      .then(async (r) => {
        const timedOut = abort.signal.aborted;
        if (t.state.value !== 'probing' || t.state.abort !== abort || t.generation !== generation) return; // halted or reset
        this.#timers.clearTimeout(timer);
        const detail = timedOut ? `timed out after ${check.timeout} ms` : r.detail;
        const ok = r.ok && !timedOut;
        if (ok) {
          t.passes++;
          t.fails = 0;
        } else {
          t.fails++;
          t.passes = 0;
        }
        const finishedAt = this.#clock.now();
        this.#results.emit({ service: t.service, id: t.id, ok, detail, durationMs: finishedAt - startedAt, streak: ok ? t.passes : t.fails });
        const to = this.#judge(t, ok);
        if (to !== undefined) {
          t.state = { value: 'writing' };
          await this.#write(t, to, detail);
          if (t.state.value !== 'writing' || t.generation !== generation) return; // halted or reset meanwhile
        }
        this.#schedule(t, check.interval - (this.#clock.now() - startedAt));
      })
      .catch((err: unknown) => this.#logger?.error({ err, service: t.service, id: t.id }, 'health checker: check failed unexpectedly'))
      .finally(() => this.#settle());
  }

  /** The status a result calls for, or `undefined` to leave the instance as it is. */
  #judge(t: Target, ok: boolean): InstanceStatus | undefined {
    const status = t.instance.status;
    if (ok && status === 'critical' && t.passes >= t.check.rise) return 'passing';
    if (!ok && (status === 'passing' || status === 'warning') && t.fails >= t.check.fall) return 'critical';
    return undefined;
  }

  async #write(t: Target, to: InstanceStatus, reason: string): Promise<void> {
    const from = t.instance.status;
    const next = withStatus(t.instance, to, reason);
    try {
      const revision = await this.#catalog.compareAndSwap(t.key, t.kv, next, {}, this.#fence?.() ?? []);
      if (revision === undefined) {
        // Someone else wrote first: the watch brings their version; the next result is judged on it.
        this.#logger?.info({ service: t.service, id: t.id }, 'health checker: instance changed during a status update; will judge again');
        return;
      }
      if (this.#targets.get(t.key) === t && revision > t.kv.modRevision) {
        t.kv = { ...t.kv, modRevision: revision };
        t.instance = next;
      }
      this.#logger?.info({ service: t.service, id: t.id, from, to, reason, revision }, 'health checker: status changed');
      this.#changes.emit({ service: t.service, id: t.id, from, to, reason, revision });
    } catch (err) {
      if (err instanceof StoreClosedError) return;
      if (isSpoflessError(err, ErrorCode.ElectionNotLeader)) {
        this.#logger?.warn({ service: t.service, id: t.id, to }, 'health checker: not the leader any more; status not written');
        return;
      }
      this.#logger?.warn({ err, service: t.service, id: t.id }, 'health checker: status update failed; will retry after the next check');
    }
  }

  #settle(): void {
    if (--this.#busy > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
