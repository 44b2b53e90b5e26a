/**
 * Leader election on any `Store`, the way etcd's `concurrency.Election` does it, with a fencing token
 * and a local deadline so that a leader that lost its lease (or was paused) never acts as leader.
 *
 * How it works. Each candidate grants a lease of `ttl` seconds and puts a key `<prefix><lease id>`
 * with it; the candidate whose key has the lowest `createRevision` leads. The others each watch the one
 * key just before theirs (no thundering herd) and look again when it is deleted; the leader watches its
 * own key. Keys only ever disappear (a lease ends, a candidate resigns), never move ahead of older ones,
 * so "my key still exists with its createRevision" is the same as "I still lead": that is the fence.
 *
 * The fencing token is the leader key's `createRevision`: it grows with every new leadership. A fenced
 * transaction (`Leadership.txn`) adds compares on the leader key's `createRevision` and lease, so a
 * deposed leader's late write is refused by the store itself, whatever the deposed process believes.
 *
 * The local deadline. The lease is renewed every ttl/3. A renewal's answer proves the lease lives until
 * at least (the moment the renewal was *sent*) + ttl on the server, so the candidate keeps a deadline
 * of `sentAt + ttl - margin` on its own monotonic clock, and steps down when it passes: on a half-open
 * connection (renewals that never answer) the leader steps down before the server could have let the
 * lease expire and elected someone else. Every fenced action checks the deadline first, so a process
 * resumed after SIGSTOP, whose timers have not fired yet, still never acts as leader.
 *
 * States (`state.value`):
 * | from                     | on                                                             | to        |
 * |--------------------------|----------------------------------------------------------------|-----------|
 * | idle, resigned           | `campaign()`                                                   | candidate |
 * | candidate                | its key is the oldest under the prefix                         | leader    |
 * | candidate, leader        | renewal says the lease is gone, its key was deleted, or the local deadline passed | deposed |
 * | deposed                  | `retryDelay` passed (a new lease, a new key)                   | candidate |
 * | candidate, leader        | `resign()` (the lease is revoked: the next candidate leads at once) | resigned |
 * | any but closed           | `close()`, `signal` aborted                                    | closed    |
 *
 * A candidate that cannot reach the store stays a candidate and tries again every `retryDelay` ms.
 *
 * @example
 * ```ts
 * const election = new Election({ store, name: 'control-plane', id: 'cp-1', ttl: 10 });
 * election.onChange((e) => console.log(e.from, '->', e.to));
 * election.campaign();
 * const leadership = await election.whenLeader();
 * await leadership.txn({ success: [{ type: 'put', key: '/jobs/last-run', value: new Date().toISOString() }] });
 * await election.close();
 * ```
 */
import { hostname } from 'node:os';
import { realTimers, type Clock, type Timers } from '../catalog/timers.js';
import { AbortedError, InvalidOptionError, LeaseNotFoundError, NotLeaderError, StoreClosedError, isSpoflessError, ErrorCode } from '../errors/index.js';
import { text, type CallOptions, type Compare, type KeyValue, type LeaseId, type Store, type TxnRequest, type TxnResult } from '../store/index.js';

/** A monotonic clock in ms: the health checker's (the catalog's `ManualTimers` fits it and {@link ElectionTimers}). */
export type ElectionClock = Clock;

/** One-shot timers; handles are opaque. The health checker's, unref'd by default. */
export type ElectionTimers = Timers;

/** A minimal structured logger (pino's shape). */
export interface ElectionLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Returned by every `on...` subscription. */
export interface Disposable {
  dispose(): void;
}

/**
 * Options of {@link Election}.
 *
 * @example
 * ```ts
 * const options: ElectionOptions = { store, name: 'control-plane', id: 'cp-eu-1a', ttl: 10 };
 * ```
 */
export interface ElectionOptions {
  readonly store: Store;
  /** The election's name: its keys live under `/_spofless/election/<name>/`. Default `'default'`. */
  readonly name?: string;
  /** This candidate's identity, stored as its key's value (what `leader()` shows). Default `<hostname>:<pid>`. */
  readonly id?: string;
  /**
   * Lease TTL in whole seconds (≥ 1). A dead leader is replaced within about this long; a live one
   * steps down if it cannot renew for this long. Default 10.
   */
  readonly ttl?: number;
  /** Wait after a store failure or a deposition before campaigning again, ms. Default 500. */
  readonly retryDelay?: number;
  /** Monotonic clock (ms). Default `performance.now()`. */
  readonly clock?: ElectionClock;
  /** Timers. Default Node's, unref'd. */
  readonly timers?: ElectionTimers;
  readonly logger?: ElectionLogger;
  /** Aborting closes the election (as `close()`). */
  readonly signal?: AbortSignal;
}

/** The public state of an {@link Election}. */
export type ElectionState =
  | { readonly value: 'idle' }
  | { readonly value: 'candidate'; readonly lease: LeaseId | undefined; readonly token: number | undefined }
  | { readonly value: 'leader'; readonly leadership: Leadership }
  | { readonly value: 'deposed'; readonly reason: string }
  | { readonly value: 'resigned' }
  | { readonly value: 'closed' };

/** A state change, as given to `onChange` listeners. */
export interface ElectionChange {
  readonly from: ElectionState['value'];
  readonly to: ElectionState['value'];
  readonly state: ElectionState;
  /** Why, for `deposed` and `resigned`. */
  readonly reason?: string;
}

/** Who leads, as any observer sees it in the store. */
export interface LeaderInfo {
  /** The leader's `id`. */
  readonly id: string;
  /** Its fencing token (its key's createRevision). */
  readonly token: number;
  readonly key: string;
  readonly lease: LeaseId | undefined;
}

/**
 * One term of leadership. Valid from when it is handed out until the election leaves `leader`
 * (`signal` aborts then). Fenced actions check the local deadline first and make the store check the
 * leader key, so a late action of a deposed leader is refused twice over.
 *
 * @example
 * ```ts
 * const l = await election.whenLeader();
 * job.run({ signal: l.signal });                     // stops when leadership ends
 * await l.txn({ compare: [...], success: [...] });   // refused (NotLeaderError) once deposed
 * ```
 */
export interface Leadership {
  readonly election: string;
  readonly id: string;
  /** The fencing token: the leader key's createRevision. Grows with every new leadership. */
  readonly token: number;
  readonly key: string;
  readonly lease: LeaseId;
  /** Aborted when this leadership ends (deposed, resigned, closed). */
  readonly signal: AbortSignal;
  /** True while leading by the local deadline. Reading it past the deadline steps down. */
  readonly valid: boolean;
  /** Throws `NotLeaderError` unless `valid`. */
  assertLeading(): void;
  /**
   * The compares that make a transaction conditional on this leadership (the leader key still exists
   * with this createRevision and lease). Throws `NotLeaderError` unless `valid`.
   */
  fence(): Compare[];
  /**
   * A transaction that runs only while this leadership holds, checked locally and by the store.
   * Resolves as `store.txn` does when the fence held (`succeeded` then reflects the caller's compares);
   * rejects with `NotLeaderError` when it did not (nothing was written). A fenced transaction takes no
   * `failure` branch: a flat transaction cannot tell "not leader" from "your compares failed" before
   * running it, and a deposed leader must write nothing at all.
   */
  txn(request: Omit<TxnRequest, 'failure'>, options?: CallOptions): Promise<TxnResult>;
}

/** Where elections keep their keys. */
export const ELECTION_PREFIX = '/_spofless/election/';
const OWNER = 'Election';
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** One lease and key: from the grant until the key is gone or given up. */
interface Term {
  readonly ac: AbortController;
  readonly lease: LeaseId;
  readonly ttlMs: number;
  key: string;
  token: number;
  /** Local deadline: the lease is known to live on the server until at least then. */
  deadline: number;
  renewTimer: unknown;
  deadlineTimer: unknown;
  leadership: LeadershipImpl | undefined;
}

class TermEnded extends Error {}

/**
 * A leader election among the processes that share a `Store`.
 *
 * @example
 * ```ts
 * const election = new Election({ store, name: 'jobs', ttl: 5 });
 * election.campaign();
 * election.onChange(({ to, state }) => {
 *   if (state.value === 'leader') startJobs(state.leadership);
 *   else stopJobs();
 * });
 * ```
 */
export class Election {
  readonly name: string;
  readonly id: string;
  readonly ttl: number;
  readonly prefix: string;
  readonly #store: Store;
  readonly #retryDelay: number;
  readonly #clock: ElectionClock;
  readonly #timers: ElectionTimers;
  readonly #logger: ElectionLogger | undefined;
  #listeners: ((change: ElectionChange) => void)[] = [];
  #state: ElectionState = { value: 'idle' };
  #term: Term | undefined;
  /** Ends the campaign loop (resign, close). */
  #run: AbortController | undefined;
  #loop: Promise<void> = Promise.resolve();
  #leaderWaiters: { resolve: (l: Leadership) => void; reject: (e: Error) => void }[] = [];

  constructor(options: ElectionOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(OWNER, 'options', options, 'an object');
    const { store } = options;
    if (typeof store !== 'object' || store === null || typeof store.grantLease !== 'function') throw new InvalidOptionError(OWNER, 'store', store, 'a Store');
    const name = options.name ?? 'default';
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw new InvalidOptionError(OWNER, 'name', name, '1 to 64 characters of A-Z a-z 0-9 . _ -');
    const id = options.id ?? `${hostname()}:${process.pid}`;
    if (typeof id !== 'string' || id.length === 0 || id.length > 256) throw new InvalidOptionError(OWNER, 'id', id, 'a non-empty string of at most 256 characters');
    const ttl = options.ttl ?? 10;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 3600) throw new InvalidOptionError(OWNER, 'ttl', ttl, 'whole seconds from 1 to 3600');
    const retryDelay = options.retryDelay ?? 500;
    if (typeof retryDelay !== 'number' || !Number.isFinite(retryDelay) || retryDelay < 0) throw new InvalidOptionError(OWNER, 'retryDelay', retryDelay, 'a number of ms >= 0');
    for (const k of ['clock', 'timers', 'logger'] as const) {
      const v = options[k];
      if (v !== undefined && (typeof v !== 'object' || v === null)) throw new InvalidOptionError(OWNER, k, v, 'an object');
    }
    this.#store = store;
    this.name = name;
    this.id = id;
    this.ttl = ttl;
    this.prefix = `${ELECTION_PREFIX}${name}/`;
    this.#retryDelay = retryDelay;
    this.#clock = options.clock ?? { now: () => performance.now() };
    this.#timers = options.timers ?? realTimers;
    this.#logger = options.logger;
    const signal = options.signal;
    if (signal !== undefined) {
      if (signal.aborted) this.#state = { value: 'closed' };
      else signal.addEventListener('abort', () => void this.close(), { once: true });
    }
  }

  get state(): ElectionState {
    // Reading the state past the local deadline steps down first: a paused process never reports leading.
    this.#checkDeadline();
    return this.#state;
  }

  /** True while this candidate leads (by its local deadline). */
  get isLeader(): boolean {
    return this.state.value === 'leader';
  }

  /** The current leadership, while leading. */
  get leadership(): Leadership | undefined {
    const s = this.state;
    return s.value === 'leader' ? s.leadership : undefined;
  }

  /**
   * Called on every state change, and when a candidate's key is in place (`candidate` → `candidate`,
   * the state then carrying its lease and token).
   */
  onChange(listener: (change: ElectionChange) => void): Disposable {
    this.#listeners = [...this.#listeners, listener];
    return { dispose: () => void (this.#listeners = this.#listeners.filter((l) => l !== listener)) };
  }

  /**
   * Starts campaigning (from `idle` or `resigned`; otherwise does nothing). Returns at once: wait with
   * `whenLeader()` or follow `onChange`.
   */
  campaign(): void {
    const v = this.#state.value;
    if (v !== 'idle' && v !== 'resigned') return;
    const run = new AbortController();
    this.#run = run;
    this.#set({ value: 'candidate', lease: undefined, token: undefined });
    this.#loop = this.#campaignLoop(run.signal);
  }

  /** Resolves with the leadership once this candidate leads; rejects with `AbortedError` on `signal`, resign or close. */
  whenLeader(signal?: AbortSignal): Promise<Leadership> {
    const l = this.leadership;
    if (l !== undefined) return Promise.resolve(l);
    if (this.#state.value === 'closed') return Promise.reject(new AbortedError('the election is closed'));
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(new AbortedError('whenLeader was aborted', { cause: signal.reason }));
        return;
      }
      const w = {
        resolve: (l: Leadership): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve(l);
        },
        reject: (e: Error): void => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = (): void => {
        this.#leaderWaiters = this.#leaderWaiters.filter((x) => x !== w);
        reject(new AbortedError('whenLeader was aborted', { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#leaderWaiters.push(w);
    });
  }

  /**
   * Who leads now, as stored: the oldest key under the election's prefix. `undefined` when nobody
   * campaigns. Any process may ask, candidate or not.
   */
  async leader(options: CallOptions = {}): Promise<LeaderInfo | undefined> {
    const list = await this.#store.range(this.prefix, options);
    const first = oldest(list.kvs);
    if (first === undefined) return undefined;
    return { id: text(first.value), token: first.createRevision, key: text(first.key), lease: first.lease };
  }

  /**
   * Gives up leadership or candidacy: revokes the lease (deleting the key, so the next candidate leads
   * at once, not after the TTL). Resolves once the store confirmed, or could not be reached within
   * `ttl` (the lease then runs out by itself). `campaign()` may be called again afterwards.
   */
  async resign(options: CallOptions = {}): Promise<void> {
    const v = this.#state.value;
    if (v === 'idle' || v === 'resigned' || v === 'closed') return;
    await this.#stop({ value: 'resigned' }, 'resigned', options.signal);
  }

  /** Resigns (if campaigning) and ends the election for good. Idempotent. */
  async close(): Promise<void> {
    if (this.#state.value === 'closed') return;
    await this.#stop({ value: 'closed' }, 'closed', undefined);
  }

  // ------------------------------------------------------------------ internals

  async #stop(to: Extract<ElectionState, { value: 'resigned' | 'closed' }>, reason: string, signal: AbortSignal | undefined): Promise<void> {
    const run = this.#run;
    this.#run = undefined;
    run?.abort(new AbortedError(`the election was ${reason}`));
    const term = this.#term;
    this.#endTerm(term, reason);
    this.#set(to, reason);
    for (const w of this.#leaderWaiters.splice(0)) w.reject(new AbortedError(`the election was ${reason}`));
    await this.#loop.catch(() => undefined);
    if (term !== undefined) await this.#revoke(term.lease, signal);
  }

  async #revoke(lease: LeaseId, signal: AbortSignal | undefined): Promise<void> {
    const limit = new AbortController();
    const timer = this.#timers.setTimeout(() => limit.abort(), this.ttl * 1000);
    const onAbort = (): void => limit.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#store.revokeLease(lease, { signal: limit.signal });
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError) && !(err instanceof StoreClosedError)) {
        this.#logger?.warn({ err, election: this.name, lease }, 'election: could not revoke the lease; it runs out by itself');
      }
    } finally {
      this.#timers.clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  #set(state: ElectionState, reason?: string): void {
    const from = this.#state.value;
    this.#state = state;
    const change: ElectionChange = reason === undefined ? { from, to: state.value, state } : { from, to: state.value, state, reason };
    if (state.value === 'leader') for (const w of this.#leaderWaiters.splice(0)) w.resolve(state.leadership);
    for (const l of this.#listeners) {
      try {
        l(change);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }

  /** Steps down now if the local deadline has passed (timers may not have run yet: a paused process). */
  #checkDeadline(): void {
    const term = this.#term;
    if (term !== undefined && this.#clock.now() >= term.deadline) this.#depose(term, 'the lease may have expired: no renewal answered before the local deadline');
  }

  #depose(term: Term, reason: string): void {
    if (this.#term !== term) return;
    this.#logger?.warn({ election: this.name, id: this.id, token: term.token, reason }, 'election: stepped down');
    this.#endTerm(term, reason);
    this.#set({ value: 'deposed', reason }, reason);
  }

  #endTerm(term: Term | undefined, reason: string): void {
    if (term === undefined || this.#term !== term) return;
    this.#term = undefined;
    this.#timers.clearTimeout(term.renewTimer);
    this.#timers.clearTimeout(term.deadlineTimer);
    term.ac.abort(new TermEnded(reason));
  }

  async #campaignLoop(run: AbortSignal): Promise<void> {
    while (!run.aborted) {
      let term: Term | undefined;
      try {
        term = await this.#startTerm(run);
        await this.#follow(term);
      } catch (err) {
        if (run.aborted) return;
        if (term !== undefined && this.#term === term) {
          const reason = err instanceof LeaseNotFoundError ? 'the lease is gone' : err instanceof Error ? err.message : String(err);
          this.#depose(term, reason);
        } else if (term === undefined && !(err instanceof TermEnded)) {
          this.#logger?.warn({ err, election: this.name }, 'election: could not campaign; trying again');
        }
        if (err instanceof StoreClosedError) {
          void this.close();
          return;
        }
        if (term !== undefined) void this.#revoke(term.lease, undefined);
      }
      if (run.aborted) return;
      await this.#sleep(this.#retryDelay, run);
      if (run.aborted) return;
      if (this.#state.value === 'deposed') this.#set({ value: 'candidate', lease: undefined, token: undefined });
    }
  }

  /** Grants a lease and puts this candidate's key. */
  async #startTerm(run: AbortSignal): Promise<Term> {
    const sentAt = this.#clock.now();
    const grant = await this.#within(this.ttl * 1000, run, (signal) => this.#store.grantLease(this.ttl, { signal }));
    const ttlMs = grant.ttl * 1000;
    const ac = new AbortController();
    const term: Term = {
      ac,
      lease: grant.id,
      ttlMs,
      key: `${this.prefix}${grant.id}`,
      token: 0,
      deadline: sentAt + ttlMs - margin(ttlMs),
      renewTimer: undefined,
      deadlineTimer: undefined,
      leadership: undefined,
    };
    if (run.aborted) {
      void this.#revoke(grant.id, undefined);
      throw new TermEnded('stopped');
    }
    this.#term = term;
    this.#armDeadline(term);
    this.#scheduleRenewal(term, ttlMs / 3);
    const put = await this.#within(this.ttl * 1000, ac.signal, (signal) => this.#store.put(term.key, this.id, { lease: grant.id, signal }));
    term.token = put.revision;
    if (this.#term === term) this.#set({ value: 'candidate', lease: term.lease, token: term.token });
    return term;
  }

  #armDeadline(term: Term): void {
    this.#timers.clearTimeout(term.deadlineTimer);
    term.deadlineTimer = this.#timers.setTimeout(() => this.#checkDeadline(), Math.max(0, term.deadline - this.#clock.now()));
  }

  #scheduleRenewal(term: Term, delay: number): void {
    term.renewTimer = this.#timers.setTimeout(() => void this.#renew(term), delay);
  }

  async #renew(term: Term): Promise<void> {
    if (this.#term !== term) return;
    const sentAt = this.#clock.now();
    // A renewal that outlasts its slot is abandoned; the deadline timer covers a half-open connection.
    const slot = term.ttlMs / 3;
    const limit = new AbortController();
    const onEnd = (): void => limit.abort();
    term.ac.signal.addEventListener('abort', onEnd, { once: true });
    const timer = this.#timers.setTimeout(() => limit.abort(), slot);
    let next = slot;
    try {
      const g = await this.#store.keepAlive(term.lease, { signal: limit.signal });
      if (this.#term !== term) return;
      const deadline = sentAt + g.ttl * 1000 - margin(g.ttl * 1000);
      if (deadline > term.deadline) {
        term.deadline = deadline;
        this.#armDeadline(term);
      }
    } catch (err) {
      if (this.#term !== term) return;
      if (err instanceof LeaseNotFoundError) {
        this.#depose(term, 'the lease is gone (it expired on the server)');
        return;
      }
      if (err instanceof StoreClosedError) return;
      // Renew sooner while failing: the deadline still holds us to the truth.
      next = slot / 2;
      this.#logger?.warn({ err, election: this.name, lease: term.lease }, 'election: lease renewal failed');
    } finally {
      this.#timers.clearTimeout(timer);
      term.ac.signal.removeEventListener('abort', onEnd);
    }
    if (this.#term === term) this.#scheduleRenewal(term, next);
  }

  /** Follows the election while the term lasts: leads when its key is the oldest; returns never (throws when the term ends). */
  async #follow(term: Term): Promise<void> {
    const signal = term.ac.signal;
    for (;;) {
      if (this.#term !== term) throw new TermEnded('ended');
      let list;
      try {
        list = await this.#store.range(this.prefix, { signal });
      } catch (err) {
        if (this.#term !== term || err instanceof StoreClosedError) throw err;
        this.#logger?.warn({ err, election: this.name }, 'election: could not list the candidates; trying again');
        await this.#sleep(this.#retryDelay, signal);
        continue;
      }
      if (this.#term !== term) throw new TermEnded('ended');
      const mine = list.kvs.find((kv) => text(kv.key) === term.key);
      if (mine === undefined) throw new Error('this candidate\'s key was deleted');
      const before = list.kvs.filter((kv) => kv.createRevision < mine.createRevision);
      const pred = before.length === 0 ? undefined : before.reduce((a, b) => (b.createRevision > a.createRevision ? b : a));
      if (pred === undefined) this.#lead(term);
      // The leader watches its own key; a candidate the one just before its own.
      const watched = pred === undefined ? term.key : text(pred.key);
      try {
        await this.#waitDeleted(watched, list.revision + 1, signal);
      } catch (err) {
        if (this.#term !== term || err instanceof StoreClosedError) throw err;
        this.#logger?.warn({ err, election: this.name }, 'election: watch failed; looking again');
        await this.#sleep(this.#retryDelay, signal);
      }
      if (pred === undefined) {
        // Our own key went: we do not lead any more (someone deleted it, or the lease ran out).
        const still = await this.#store.get(term.key, { signal }).catch(() => mine);
        if (still === undefined || still.createRevision !== mine.createRevision) throw new Error('this leader\'s key was deleted');
      }
    }
  }

  #lead(term: Term): void {
    if (term.leadership !== undefined || this.#term !== term) return;
    this.#checkDeadline();
    if (this.#term !== term) return;
    const leadership = new LeadershipImpl(
      this,
      this.#store,
      term,
      () => {
        this.#checkDeadline();
        return this.#term === term && this.#state.value === 'leader';
      },
      () => this.#depose(term, 'the store refused a fenced write: the leader key is gone'),
    );
    term.leadership = leadership;
    this.#logger?.info({ election: this.name, id: this.id, token: term.token }, 'election: leading');
    this.#set({ value: 'leader', leadership });
  }

  async #waitDeleted(key: string, startRevision: number, signal: AbortSignal): Promise<void> {
    const watch = this.#store.watch(key, { startRevision, signal });
    try {
      for await (const resp of watch) {
        if (resp.events.some((e) => e.type === 'delete')) return;
      }
      throw new Error('the watch ended');
    } finally {
      watch.close();
    }
  }

  /** Runs `f` with a signal that aborts with `parent` or after `ms` (a half-open connection never answers). */
  async #within<T>(ms: number, parent: AbortSignal, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(parent.reason);
    parent.addEventListener('abort', onAbort, { once: true });
    const timer = this.#timers.setTimeout(() => ac.abort(new Error(`no answer from the store within ${ms} ms`)), ms);
    try {
      return await f(ac.signal);
    } finally {
      this.#timers.clearTimeout(timer);
      parent.removeEventListener('abort', onAbort);
    }
  }

  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#timers.clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = this.#timers.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Step down this much before the lease could end: covers clock-rate differences and timer lateness. */
function margin(ttlMs: number): number {
  return Math.min(1_000, ttlMs / 10);
}

function oldest(kvs: readonly KeyValue[]): KeyValue | undefined {
  let best: KeyValue | undefined;
  for (const kv of kvs) if (best === undefined || kv.createRevision < best.createRevision) best = kv;
  return best;
}

class LeadershipImpl implements Leadership {
  readonly election: string;
  readonly id: string;
  readonly token: number;
  readonly key: string;
  readonly lease: LeaseId;
  readonly #store: Store;
  readonly #term: Term;
  readonly #leading: () => boolean;
  readonly #refused: () => void;

  constructor(owner: Election, store: Store, term: Term, leading: () => boolean, refused: () => void) {
    this.#refused = refused;
    this.#store = store;
    this.#term = term;
    this.#leading = leading;
    this.election = owner.name;
    this.id = owner.id;
    this.token = term.token;
    this.key = term.key;
    this.lease = term.lease;
  }

  get signal(): AbortSignal {
    return this.#term.ac.signal;
  }

  get valid(): boolean {
    return this.#leading();
  }

  assertLeading(): void {
    if (!this.#leading()) {
      throw new NotLeaderError(this.election, `election ${JSON.stringify(this.election)}: ${this.id} does not lead any more (token ${this.token})`);
    }
  }

  fence(): Compare[] {
    this.assertLeading();
    return [
      { key: this.key, target: 'createRevision', cmp: '=', value: this.token },
      { key: this.key, target: 'lease', cmp: '=', value: this.lease },
    ];
  }

  async txn(request: Omit<TxnRequest, 'failure'>, options: CallOptions = {}): Promise<TxnResult> {
    if ((request as TxnRequest).failure !== undefined && (request as TxnRequest).failure!.length > 0) {
      throw new InvalidOptionError('Leadership.txn', 'failure', (request as TxnRequest).failure, 'no failure branch (a fenced transaction writes nothing when its compares fail)');
    }
    const fence = this.fence();
    const user = request.compare ?? [];
    // One round trip: the failure branch reads the leader key, to tell "not leader" from "your compares failed".
    const r = await this.#store.txn(
      { compare: [...fence, ...user], success: request.success ?? [], failure: [{ type: 'range', key: this.key }] },
      options,
    );
    if (r.succeeded) return r;
    const got = r.responses[0];
    const kv = got?.type === 'range' ? got.kvs[0] : undefined;
    if (kv === undefined || kv.createRevision !== this.token || kv.lease !== this.lease) {
      this.#refused();
      throw new NotLeaderError(this.election, `election ${JSON.stringify(this.election)}: the store refused a fenced write of ${this.id} (token ${this.token}): the leader key is gone`);
    }
    return { succeeded: false, revision: r.revision, responses: [] };
  }
}

/** True for the error a fenced action throws when this process does not lead. */
export function isNotLeader(err: unknown): err is NotLeaderError {
  return isSpoflessError(err, ErrorCode.ElectionNotLeader);
}
