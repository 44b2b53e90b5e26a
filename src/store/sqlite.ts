/**
 * The embedded `Store` engine: one SQLite file (better-sqlite3), WAL journal, `synchronous=FULL`.
 *
 * Durability. In WAL mode with `synchronous=FULL`, SQLite syncs the WAL file at every commit before the
 * commit returns, and syncs the database file before a checkpoint overwrites it. A write's promise
 * resolves only after the commit holding it returned, so an acknowledged write survives a SIGKILL and
 * a power loss. `locking_mode=EXCLUSIVE` keeps a second process (or a second `SqliteStore`) off the file:
 * the in-memory revision counter and lease timers assume one writer.
 *
 * Group commit. better-sqlite3 is synchronous: a commit holds the event loop for one fsync. Writes are
 * queued, and a flush scheduled with `setImmediate` commits everything queued so far in one transaction:
 * all writes that arrive within one turn of the event loop (e.g. every HTTP request read in one poll
 * phase) share one fsync. Each write runs inside its own SAVEPOINT and takes its own revision, so one
 * write failing (a lease that no longer exists) rolls back only itself; the others commit. Each promise
 * settles after the commit.
 *
 * Checkpoints. A WAL checkpoint copies committed pages into the database file and fsyncs it; left to
 * SQLite's default (every 1,000 pages) it runs inside a commit every few batches, and the writes of that
 * batch wait for it. Here it runs when writes pause (`CHECKPOINT_IDLE_MS` with no commit, an unref'd
 * timer), after the writers' promises settled; under sustained load SQLite's own autocheckpoint still
 * bounds the WAL at `WAL_LIMIT_BYTES`, and `journal_size_limit` truncates the file back to that size
 * after a larger transaction. Either way the database file is fsynced before the WAL is reused, so a
 * checkpoint never weakens durability.
 *
 * Pages. A commit writes every page it dirties to the WAL, whole: for one small put that is a leaf of
 * `kv`, of `history` and of `history_key`. A new database gets 2 KiB pages (not SQLite's 4 KiB): half
 * the bytes per put, while a history row with a small value and its previous value (~350 bytes) still
 * fits in its leaf (with 1 KiB pages it would spill to an overflow page). An existing database keeps the
 * page size it was created with.
 *
 * Tables. `kv` holds the current state. `history` is the revision log: one row per event with the new
 * and the previous state, so a watch from an old revision replays from disk and then continues live, and
 * a read at an old revision rolls the current state back with the rows after it. `leases` holds each
 * lease's TTL; `meta` the revision, the compact revision and the next lease id. Compaction deletes
 * history rows older than the compact revision.
 *
 * Leases. Deadlines live in memory only (a keepalive writes nothing), in one min-heap with one unref'd
 * timer for the whole store. After a restart every lease still on disk gets a fresh TTL, as etcd grants
 * on a leader change, so clients have time to reconnect. An expired lease is revoked in the next commit
 * batch: its keys' deletions are events at one new revision.
 */
import Database from 'better-sqlite3';
import { performance } from 'node:perf_hooks';
import {
  AbortedError,
  CompactedError,
  ErrorCode,
  FutureRevisionError,
  InvalidOptionError,
  LeaseNotFoundError,
  SpoflessError,
  StoreClosedError,
} from '../errors/index.js';
import { prefixEnd } from './bytes.js';
import {
  checkKey,
  checkLeaseId,
  checkLimit,
  checkPrefix,
  checkRevision,
  checkTtl,
  checkTxn,
  checkValue,
  type CheckedCompare,
  type CheckedOp,
  type CheckedTxn,
} from './validate.js';
import { WatchIndex } from './watch-index.js';
import { WatchStream, type ReplayChunk } from './watch-stream.js';
import type {
  BytesInput,
  CallOptions,
  DeleteOptions,
  DeleteResult,
  GetOptions,
  KeyValue,
  LeaseGrant,
  LeaseId,
  LeaseInfo,
  LeaseTimeToLiveOptions,
  PutOptions,
  PutResult,
  RangeOptions,
  RangeResult,
  RevokeResult,
  Store,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from './types.js';

/** A clock in milliseconds. */
export interface StoreClock {
  now(): number;
}

/** How much history to keep. A revision is kept while either rule keeps it. */
export interface CompactionOptions {
  /** Keep at least the last N revisions (N ≥ 1). */
  readonly keepRevisions?: number;
  /** Keep at least the revisions made in the last T minutes (T > 0). */
  readonly keepMinutes?: number;
}

export interface SqliteStoreOptions {
  /** The database file; created with its tables when missing. */
  readonly path: string;
  /**
   * Automatic compaction; `false`: only explicit `compact()`. Default: keep the last 10,000 revisions.
   */
  readonly compaction?: CompactionOptions | false;
  /** Monotonic clock for lease deadlines (ms). Default: `performance.now()`. */
  readonly clock?: StoreClock;
  /** Wall clock for history timestamps (ms since the epoch), used by `keepMinutes`. Default: `Date.now()`. */
  readonly wallClock?: StoreClock;
  /**
   * Events a watch may hold for a consumer that has not taken them before it drops them and replays
   * them from disk when asked. Default 10,000.
   */
  readonly maxWatchBuffer?: number;
}

/** Counters, for tests and metrics. */
export interface SqliteStoreStats {
  /** SQLite transactions committed for writes (each one fsync). */
  readonly commits: number;
  /** Write calls committed (puts, deletes, txns, lease grants and revokes, compactions). */
  readonly writes: number;
  /** Watches open. */
  readonly watches: number;
  /** WAL checkpoints run by the store when writes paused (SQLite's own autocheckpoints not counted). */
  readonly idleCheckpoints: number;
}

const DEFAULT_KEEP_REVISIONS = 10_000;
const REPLAY_ROWS = 1024;
const EMPTY = Buffer.alloc(0);
const MAX_TIMER_MS = 2 ** 31 - 1;
const SCHEMA_VERSION = 1;
/** Page size of a new database file (see "Pages" above). */
const PAGE_SIZE = 2048;
/** The WAL is checkpointed inside a commit once it holds this much (the bound under sustained load). */
const WAL_LIMIT_BYTES = 32 * 1024 * 1024;
/** Writes paused this long: checkpoint the WAL off the commit path. */
const CHECKPOINT_IDLE_MS = 50;

type KvRow = {
  key: Buffer;
  value: Buffer | null;
  create_rev: number;
  mod_rev: number;
  version: number;
  lease: number;
};

type HistoryRow = {
  rev: number;
  type: number;
  key: Buffer;
  value: Buffer | null;
  create_rev: number;
  version: number;
  lease: number;
  prev_value: Buffer | null;
  prev_create_rev: number | null;
  prev_mod_rev: number | null;
  prev_version: number | null;
  prev_lease: number | null;
};

const PUT = 0;
const DELETE = 1;

/** A write waiting for the next group commit. */
type WriteOp =
  | { readonly kind: 'txn'; readonly txn: CheckedTxn }
  | { readonly kind: 'grant'; readonly ttl: number }
  | { readonly kind: 'revoke'; readonly lease: number; readonly expired: boolean }
  | { readonly kind: 'compact'; readonly revision: number };

/** What a committed write changes in memory, applied only once its commit succeeded. */
type Effect =
  | { readonly kind: 'none' }
  | { readonly kind: 'grant'; readonly lease: number; readonly ttl: number }
  | { readonly kind: 'revoke'; readonly lease: number }
  | { readonly kind: 'compact'; readonly revision: number };

interface Applied {
  readonly result: unknown;
  readonly events: readonly EventPair[];
  readonly effect: Effect;
}

interface Pending {
  readonly op: WriteOp;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** One event in the two shapes watchers want, built once and shared by every watcher. */
interface EventPair {
  readonly bare: WatchEvent;
  readonly full: WatchEvent;
}

interface Lease {
  readonly ttl: number;
  deadline: number;
  /** An expiry revoke is queued: the lease is as good as gone. */
  expiring: boolean;
}

interface WatchEntry {
  readonly key: Buffer;
  readonly prefix: boolean;
}

function kvOf(key: Buffer, value: Buffer | null, createRevision: number, modRevision: number, version: number, lease: number): KeyValue {
  const kv = { key, value: value ?? EMPTY, createRevision, modRevision, version };
  return lease === 0 ? kv : { ...kv, lease: String(lease) };
}

function kvFromRow(r: KvRow): KeyValue {
  return kvOf(r.key, r.value, r.create_rev, r.mod_rev, r.version, r.lease);
}

function prevFromHistory(r: HistoryRow): KeyValue | undefined {
  if (r.prev_mod_rev === null) return undefined;
  return kvOf(r.key, r.prev_value, r.prev_create_rev ?? 0, r.prev_mod_rev, r.prev_version ?? 0, r.prev_lease ?? 0);
}

function eventFromHistory(r: HistoryRow, withPrev: boolean): WatchEvent {
  const kv = r.type === PUT ? kvOf(r.key, r.value, r.create_rev, r.rev, r.version, r.lease) : kvOf(r.key, null, 0, r.rev, 0, 0);
  const type = r.type === PUT ? 'put' : 'delete';
  const prevKv = withPrev ? prevFromHistory(r) : undefined;
  return prevKv === undefined ? { type, kv } : { type, kv, prevKv };
}

function cmpNumbers(a: number | bigint, b: number | bigint, op: CheckedCompare['cmp']): boolean {
  switch (op) {
    case '=':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '>':
      return a > b;
  }
}

/** The leaseId as a stored integer, or 0 when it cannot name a lease this engine issued. */
function leaseNumber(id: LeaseId): number {
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : 0;
}

/** A binary min-heap of lease deadlines. */
class DeadlineHeap {
  readonly #items: { deadline: number; lease: number }[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): { deadline: number; lease: number } | undefined {
    return this.#items[0];
  }

  push(deadline: number, lease: number): void {
    const a = this.#items;
    a.push({ deadline, lease });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.deadline <= a[i]!.deadline) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }

  pop(): { deadline: number; lease: number } | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.deadline < a[m]!.deadline) m = l;
        if (r < a.length && a[r]!.deadline < a[m]!.deadline) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

function checkOptions(options: SqliteStoreOptions): void {
  const owner = 'SqliteStore';
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(owner, 'options', options, 'an object');
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new InvalidOptionError(owner, 'path', options.path, 'a non-empty file path');
  }
  const c = options.compaction;
  if (c !== undefined && c !== false) {
    if (typeof c !== 'object' || c === null) throw new InvalidOptionError(owner, 'compaction', c, 'an object or false');
    if (c.keepRevisions !== undefined && (!Number.isSafeInteger(c.keepRevisions) || c.keepRevisions < 1)) {
      throw new InvalidOptionError(owner, 'compaction.keepRevisions', c.keepRevisions, 'a positive integer');
    }
    if (c.keepMinutes !== undefined && (typeof c.keepMinutes !== 'number' || !(c.keepMinutes > 0) || !Number.isFinite(c.keepMinutes))) {
      throw new InvalidOptionError(owner, 'compaction.keepMinutes', c.keepMinutes, 'a positive number of minutes');
    }
    if (c.keepRevisions === undefined && c.keepMinutes === undefined) {
      throw new InvalidOptionError(owner, 'compaction', c, 'keepRevisions and/or keepMinutes (or false to disable)');
    }
  }
  if (options.maxWatchBuffer !== undefined && (!Number.isSafeInteger(options.maxWatchBuffer) || options.maxWatchBuffer < 1)) {
    throw new InvalidOptionError(owner, 'maxWatchBuffer', options.maxWatchBuffer, 'a positive integer');
  }
  for (const name of ['clock', 'wallClock'] as const) {
    const clock = options[name];
    if (clock !== undefined && typeof clock?.now !== 'function') {
      throw new InvalidOptionError(owner, name, clock, 'an object with a now() method');
    }
  }
}

// Page writes per commit are what a commit costs besides its fsync, so the tables are clustered on
// their natural keys (WITHOUT ROWID: no second b-tree to update) and the revision is not rewritten on
// every commit: it is the highest revision in `history` (the newest revision always has its rows; meta
// keeps a floor written at compaction).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY, value BLOB NOT NULL,
  create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS history (
  rev INTEGER NOT NULL, sub INTEGER NOT NULL, type INTEGER NOT NULL, key BLOB NOT NULL, value BLOB,
  create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL,
  prev_value BLOB, prev_create_rev INTEGER, prev_mod_rev INTEGER, prev_version INTEGER, prev_lease INTEGER,
  ts INTEGER NOT NULL,
  PRIMARY KEY (rev, sub)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_key ON history (key, rev);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
`;

const KV_COLS = 'key, value, create_rev, mod_rev, version, lease';
const KV_COLS_NOVALUE = 'key, NULL AS value, create_rev, mod_rev, version, lease';
const HISTORY_COLS =
  'rev, type, key, value, create_rev, version, lease, prev_value, prev_create_rev, prev_mod_rev, prev_version, prev_lease';

/**
 * The SQLite engine of the `Store` contract.
 *
 * @example
 * ```ts
 * const store = await SqliteStore.open({ path: './.spofless/store.db', compaction: { keepMinutes: 60 } });
 * const lease = await store.grantLease(10);
 * await store.put('/svc/api/1', '10.0.0.1:8080', { lease: lease.id });
 * await store.close();
 * ```
 */
export class SqliteStore implements Store {
  readonly #db: Database.Database;
  readonly #clock: StoreClock;
  readonly #wallClock: StoreClock;
  readonly #compaction: CompactionOptions | undefined;
  readonly #maxWatchBuffer: number;
  readonly #stmt: ReturnType<typeof prepareStatements>;
  readonly #rangeStmts = new Map<string, Database.Statement>();

  #revision: number;
  #compactRevision: number;
  #nextLease: number;
  readonly #leases = new Map<number, Lease>();
  readonly #deadlines = new DeadlineHeap();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;

  #queue: Pending[] = [];
  #flushScheduled = false;
  #flushed: Promise<void> | undefined;
  #resolveFlushed: (() => void) | undefined;
  #compactQueued = false;
  #lastTimeCompactCheck = -Infinity;

  readonly #watchers = new WatchIndex<WatchStream>();
  readonly #watchEntries = new Map<WatchStream, WatchEntry>();

  #commits = 0;
  #writes = 0;
  #idleCheckpoints = 0;
  #checkpointTimer: NodeJS.Timeout | undefined;
  /** `#commits` when the checkpoint timer was armed: a commit since then means writes did not pause. */
  #checkpointSeen = 0;
  #closing: Promise<void> | undefined;

  private constructor(options: SqliteStoreOptions) {
    checkOptions(options);
    this.#clock = options.clock ?? { now: () => performance.now() };
    this.#wallClock = options.wallClock ?? { now: () => Date.now() };
    this.#compaction = options.compaction === false ? undefined : (options.compaction ?? { keepRevisions: DEFAULT_KEEP_REVISIONS });
    this.#maxWatchBuffer = options.maxWatchBuffer ?? 10_000;

    let db: Database.Database;
    try {
      db = new Database(options.path, { timeout: 1000 });
    } catch (err) {
      throw new SpoflessError(
        ErrorCode.InvalidOption,
        `SqliteStore: option "path" must be a file SQLite can create or open in an existing, writable directory; got ${JSON.stringify(options.path)}`,
        { cause: err },
      );
    }
    try {
      // Before the first write creates the file; no effect on an existing database.
      db.pragma(`page_size = ${PAGE_SIZE}`);
      // EXCLUSIVE before the first WAL access: no shared-memory index, and no second writer.
      db.pragma('locking_mode = EXCLUSIVE');
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`SQLite refused WAL mode for ${options.path} (journal_mode is ${String(mode)})`);
      db.pragma('synchronous = FULL');
      // Read both back: a write is acknowledged as durable on the strength of these two settings.
      const sync = db.pragma('synchronous', { simple: true });
      if (sync !== 2) throw new Error(`SQLite refused synchronous=FULL for ${options.path} (synchronous is ${String(sync)})`);
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`wal_autocheckpoint = ${Math.ceil(WAL_LIMIT_BYTES / pageSize)}`);
      db.pragma(`journal_size_limit = ${WAL_LIMIT_BYTES}`);
      db.exec(SCHEMA);
      const version = db.pragma('user_version', { simple: true });
      if (version === 0) db.pragma(`user_version = ${SCHEMA_VERSION}`);
      else if (version !== SCHEMA_VERSION) throw new Error(`${options.path} has store schema ${String(version)}; expected ${SCHEMA_VERSION}`);
      this.#stmt = prepareStatements(db);
      // Take the write lock now so that a second process fails here, not at its first write.
      db.exec('BEGIN IMMEDIATE');
      this.#stmt.metaInit.run('revision', 0);
      this.#stmt.metaInit.run('compact_revision', 0);
      // Lease ids start at a random point so that a re-created store does not hand an old client's
      // lease id to someone else.
      this.#stmt.metaInit.run('next_lease', 1 + Math.floor(Math.random() * 2 ** 40));
      db.exec('COMMIT');
    } catch (err) {
      db.close();
      if ((err as { code?: unknown }).code === 'SQLITE_BUSY') {
        throw new SpoflessError(
          ErrorCode.InvalidOption,
          `SqliteStore: option "path" must name a database no other process or store has open; ${JSON.stringify(options.path)} is locked`,
          { cause: err },
        );
      }
      throw err;
    }
    this.#db = db;
    const newest = (this.#stmt.historyNewest.get() as { rev: number | null }).rev ?? 0;
    this.#revision = Math.max(this.#meta('revision'), newest);
    this.#compactRevision = this.#meta('compact_revision');
    this.#nextLease = this.#meta('next_lease');
    const now = this.#clock.now();
    for (const row of this.#stmt.leaseAll.all() as { id: number; ttl: number }[]) {
      // A fresh TTL after a restart (etcd does the same on a leader change).
      this.#leases.set(row.id, { ttl: row.ttl, deadline: now + row.ttl * 1000, expiring: false });
      this.#deadlines.push(now + row.ttl * 1000, row.id);
    }
    this.#armTimer();
  }

  /** Opens (creating if needed) the store in `options.path`. */
  static open(options: SqliteStoreOptions): Promise<SqliteStore> {
    try {
      return Promise.resolve(new SqliteStore(options));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The current revision (0 for a new store). */
  get revision(): number {
    return this.#revision;
  }

  /** The oldest revision still readable (0: nothing compacted yet). */
  get compactRevision(): number {
    return this.#compactRevision;
  }

  get stats(): SqliteStoreStats {
    return { commits: this.#commits, writes: this.#writes, watches: this.#watchers.size, idleCheckpoints: this.#idleCheckpoints };
  }

  // ---------------------------------------------------------------- reads

  get(key: BytesInput, options: GetOptions = {}): Promise<KeyValue | undefined> {
    return this.#read(options, () => {
      const k = checkKey(key);
      const rev = options.revision === undefined ? undefined : this.#checkReadRevision(options.revision);
      if (rev === undefined) {
        const row = this.#stmt.kvGet.get(k) as KvRow | undefined;
        return row === undefined ? undefined : kvFromRow(row);
      }
      return this.#rangeAt(k, Buffer.concat([k, Buffer.of(0)]), 1, false, rev).kvs[0];
    });
  }

  range(prefix: BytesInput, options: RangeOptions = {}): Promise<RangeResult> {
    return this.#read(options, () => {
      const p = checkPrefix(prefix);
      const limit = options.limit === undefined ? undefined : checkLimit(options.limit);
      const rev = options.revision === undefined ? undefined : this.#checkReadRevision(options.revision);
      let start: Buffer = p;
      if (options.fromKey !== undefined) {
        const from = checkPrefix(options.fromKey);
        if (Buffer.compare(from, start) > 0) start = from;
      }
      const end = prefixEnd(p);
      const r = this.#rangeAt(start, end === undefined ? undefined : Buffer.from(end), limit, options.keysOnly === true, rev);
      return { kvs: r.kvs, more: r.more, revision: rev ?? this.#revision };
    });
  }

  // ---------------------------------------------------------------- writes

  async put(key: BytesInput, value: BytesInput, options: PutOptions = {}): Promise<PutResult> {
    const k = checkKey(key);
    const op: CheckedOp = {
      type: 'put',
      key: k,
      value: checkValue(k, value),
      lease: options.lease === undefined ? undefined : checkLeaseId(options.lease),
      prevKv: options.prevKv === true,
    };
    const r = (await this.#submit({ kind: 'txn', txn: { compare: [], success: [op], failure: [] } }, options.signal)) as TxnResult;
    const res = r.responses[0] as Extract<TxnOpResult, { type: 'put' }>;
    return res.prevKv === undefined ? { revision: r.revision } : { revision: r.revision, prevKv: res.prevKv };
  }

  async delete(key: BytesInput, options: DeleteOptions = {}): Promise<DeleteResult> {
    return this.#deleteOp(checkKey(key), false, options);
  }

  async deletePrefix(prefix: BytesInput, options: DeleteOptions = {}): Promise<DeleteResult> {
    return this.#deleteOp(checkPrefix(prefix), true, options);
  }

  async txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResult> {
    const txn = checkTxn(request);
    return (await this.#submit({ kind: 'txn', txn }, options.signal)) as TxnResult;
  }

  async compact(revision: number, options: CallOptions = {}): Promise<void> {
    const rev = checkRevision(revision);
    await this.#submit({ kind: 'compact', revision: rev }, options.signal);
  }

  // ---------------------------------------------------------------- leases

  async grantLease(ttl: number, options: CallOptions = {}): Promise<LeaseGrant> {
    const t = checkTtl(ttl);
    return (await this.#submit({ kind: 'grant', ttl: t }, options.signal)) as LeaseGrant;
  }

  keepAlive(lease: LeaseId, options: CallOptions = {}): Promise<LeaseGrant> {
    return this.#read(options, () => {
      const id = checkLeaseId(lease);
      const l = this.#liveLease(leaseNumber(id));
      if (l === undefined) throw new LeaseNotFoundError(id);
      l.deadline = this.#clock.now() + l.ttl * 1000;
      // The heap keeps the older deadline; when it comes up, the lease is re-filed under the new one.
      return { id, ttl: l.ttl };
    });
  }

  async revokeLease(lease: LeaseId, options: CallOptions = {}): Promise<RevokeResult> {
    const id = checkLeaseId(lease);
    const n = leaseNumber(id);
    if (this.#liveLease(n) === undefined) {
      this.#throwIfClosed();
      throw new LeaseNotFoundError(id);
    }
    return (await this.#submit({ kind: 'revoke', lease: n, expired: false }, options.signal)) as RevokeResult;
  }

  leaseTimeToLive(lease: LeaseId, options: LeaseTimeToLiveOptions = {}): Promise<LeaseInfo | undefined> {
    return this.#read(options, () => {
      const id = checkLeaseId(lease);
      const n = leaseNumber(id);
      const l = this.#liveLease(n);
      if (l === undefined) return undefined;
      const ttl = Math.max(0, Math.ceil((l.deadline - this.#clock.now()) / 1000));
      const info: LeaseInfo = { id, ttl, grantedTtl: l.ttl };
      if (options.keys !== true) return info;
      const keys = (this.#stmt.leaseKeys.all(n) as { key: Buffer }[]).map((r) => r.key);
      return { ...info, keys };
    });
  }

  /**
   * Revokes every lease whose deadline has passed, now. The store's own timer does this; tests with an
   * injected clock call it after moving the clock.
   */
  async expireLeases(): Promise<void> {
    this.#throwIfClosed();
    this.#scheduleFlush();
    await this.#flushed;
  }

  // ---------------------------------------------------------------- watches

  /** Progress responses are exact here: a replay reads the revision log up to the head synchronously. */
  readonly watchProgress = true;

  watch(key: BytesInput, options: WatchOptions = {}): Watch {
    const prefix = options.prefix === true;
    const k = prefix ? checkPrefix(key) : checkKey(key);
    const start = options.startRevision === undefined ? this.#revision + 1 : checkRevision(options.startRevision, 'startRevision');
    const stream: WatchStream = new WatchStream({
      startRevision: start,
      replaying: start <= this.#revision,
      prevKv: options.prevKv === true,
      progressNotify: options.progressNotify === true,
      signal: options.signal,
      maxBufferedEvents: this.#maxWatchBuffer,
      replay: (s, from) => this.#replay(s, from),
      detach: (s) => {
        const entry = this.#watchEntries.get(s);
        if (entry === undefined) return;
        this.#watchEntries.delete(s);
        this.#watchers.remove(entry.key, entry.prefix, s);
      },
    });
    if (this.#closing !== undefined) {
      stream.end(new StoreClosedError());
    } else if (!stream.closed) {
      this.#watchEntries.set(stream, { key: k, prefix });
      this.#watchers.add(k, prefix, stream);
    }
    return stream;
  }

  // ---------------------------------------------------------------- close

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Let queued writes commit: their callers are waiting for an answer.
    while (this.#queue.length > 0 || this.#flushScheduled) await this.#flushed;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#checkpointTimer !== undefined) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = undefined;
    for (const w of [...this.#watchEntries.keys()]) w.end(new StoreClosedError('the store was closed: the watch ended'));
    this.#db.close();
  }

  // ---------------------------------------------------------------- internals: reads

  #read<T>(options: CallOptions, fn: () => T): Promise<T> {
    try {
      this.#throwIfClosed();
      if (options.signal?.aborted === true) throw new AbortedError();
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #throwIfClosed(): void {
    if (this.#closing !== undefined) throw new StoreClosedError();
  }

  #checkReadRevision(revision: number): number | undefined {
    const rev = checkRevision(revision);
    if (rev > this.#revision) throw new FutureRevisionError(rev, this.#revision);
    if (rev < this.#compactRevision) throw new CompactedError(rev, this.#compactRevision);
    return rev === this.#revision ? undefined : rev;
  }

  #rangeStmt(kind: 'now' | 'at', bounded: boolean, keysOnly: boolean): Database.Statement {
    const id = `${kind}${bounded ? 'b' : 'u'}${keysOnly ? 'k' : 'v'}`;
    let s = this.#rangeStmts.get(id);
    if (s !== undefined) return s;
    const cols = keysOnly ? KV_COLS_NOVALUE : KV_COLS;
    const bound = bounded ? 'AND key < @end' : '';
    if (kind === 'now') {
      s = this.#db.prepare(`SELECT ${cols} FROM kv WHERE key >= @start ${bound} ORDER BY key LIMIT @limit`);
    } else {
      // The state at @rev: keys untouched since @rev as they are now, plus, for keys changed after
      // @rev, the previous state carried by their first change after @rev (if they existed then).
      const hbound = bounded ? 'AND h.key < @end' : '';
      const prevValue = keysOnly ? 'NULL' : 'h.prev_value';
      s = this.#db.prepare(`
        SELECT ${cols} FROM kv
         WHERE key >= @start ${bound}
           AND NOT EXISTS (SELECT 1 FROM history x WHERE x.key = kv.key AND x.rev > @rev)
        UNION ALL
        SELECT h.key, ${prevValue}, h.prev_create_rev, h.prev_mod_rev, h.prev_version, h.prev_lease
          FROM history h
         WHERE h.key >= @start ${hbound} AND h.rev > @rev AND h.prev_mod_rev IS NOT NULL
           AND h.rev = (SELECT MIN(x.rev) FROM history x WHERE x.key = h.key AND x.rev > @rev)
        ORDER BY 1 LIMIT @limit`);
    }
    this.#rangeStmts.set(id, s);
    return s;
  }

  #rangeAt(start: Buffer, end: Buffer | undefined, limit: number | undefined, keysOnly: boolean, rev: number | undefined): { kvs: KeyValue[]; more: boolean } {
    const stmt = this.#rangeStmt(rev === undefined ? 'now' : 'at', end !== undefined, keysOnly);
    const params: Record<string, unknown> = { start, limit: limit === undefined ? -1 : limit + 1 };
    if (end !== undefined) params['end'] = end;
    if (rev !== undefined) params['rev'] = rev;
    const rows = stmt.all(params) as KvRow[];
    const more = limit !== undefined && rows.length > limit;
    if (more) rows.length = limit;
    return { kvs: rows.map(kvFromRow), more };
  }

  #replayStmt(keyFilter: string, limited: boolean): Database.Statement {
    const id = `${keyFilter}|${limited}`;
    let stmt = this.#rangeStmts.get(id);
    if (stmt === undefined) {
      stmt = this.#db.prepare(
        `SELECT ${HISTORY_COLS} FROM history WHERE rev >= @from AND rev <= @to ${keyFilter} ORDER BY rev, sub${limited ? ` LIMIT ${REPLAY_ROWS}` : ''}`,
      );
      this.#rangeStmts.set(id, stmt);
    }
    return stmt;
  }

  #replay(stream: WatchStream, from: number): ReplayChunk {
    if (this.#closing !== undefined) throw new StoreClosedError('the store was closed: the watch ended');
    if (from < this.#compactRevision) throw new CompactedError(from, this.#compactRevision);
    const entry = this.#watchEntries.get(stream);
    if (entry === undefined || from > this.#revision) return { events: [], through: this.#revision, caughtUp: true };
    const end = entry.prefix ? prefixEnd(entry.key) : undefined;
    const keyFilter = !entry.prefix ? 'AND key = @key' : end === undefined ? 'AND key >= @key' : 'AND key >= @key AND key < @end';
    const params: Record<string, unknown> = { from, to: this.#revision, key: entry.key };
    if (entry.prefix && end !== undefined) params['end'] = Buffer.from(end);
    let rows = this.#replayStmt(keyFilter, true).all(params) as HistoryRow[];
    let through = this.#revision;
    let caughtUp = true;
    if (rows.length === REPLAY_ROWS) {
      // Cut at a revision boundary: a response holds whole revisions only.
      const last = rows[rows.length - 1]!.rev;
      if (rows[0]!.rev === last) {
        rows = this.#replayStmt(keyFilter, false).all({ ...params, from: last, to: last }) as HistoryRow[];
        through = last;
      } else {
        rows = rows.filter((r) => r.rev < last);
        through = last - 1;
      }
      caughtUp = through === this.#revision;
    }
    return { events: rows.map((r) => eventFromHistory(r, stream.prevKv)), through, caughtUp };
  }

  // ---------------------------------------------------------------- internals: writes

  #meta(name: string): number {
    return (this.#stmt.metaGet.get(name) as { value: number }).value;
  }

  #liveLease(id: number): Lease | undefined {
    const l = this.#leases.get(id);
    if (l === undefined || l.expiring) return undefined;
    if (l.deadline <= this.#clock.now()) {
      // Expired but not yet revoked: it is gone for callers; have the revoke committed soon.
      this.#scheduleFlush();
      return undefined;
    }
    return l;
  }

  async #deleteOp(key: Buffer, prefix: boolean, options: DeleteOptions): Promise<DeleteResult> {
    const op: CheckedOp = { type: 'delete', key, prefix, prevKv: options.prevKv === true };
    const r = (await this.#submit({ kind: 'txn', txn: { compare: [], success: [op], failure: [] } }, options.signal)) as TxnResult;
    const res = r.responses[0] as Extract<TxnOpResult, { type: 'delete' }>;
    return res.prevKvs === undefined ? { revision: r.revision, deleted: res.deleted } : { revision: r.revision, deleted: res.deleted, prevKvs: res.prevKvs };
  }

  #submit(op: WriteOp, signal: AbortSignal | undefined): Promise<unknown> {
    if (this.#closing !== undefined) return Promise.reject(new StoreClosedError());
    if (signal?.aborted === true) return Promise.reject(new AbortedError('the write was aborted before it was queued'));
    return new Promise((resolve, reject) => {
      const p: Pending = { op, resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        p.onAbort = () => {
          const i = this.#queue.indexOf(p);
          if (i < 0) return;
          this.#queue.splice(i, 1);
          reject(new AbortedError('the write was aborted before it was committed; it was not applied'));
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#queue.push(p);
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#flushed ??= new Promise<void>((resolve) => {
      this.#resolveFlushed = resolve;
    });
    // One flush per event-loop turn: every write queued before it runs shares its commit.
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    const expiring = this.#collectExpired();
    const batch = expiring.length > 0 ? [...expiring, ...this.#queue] : this.#queue;
    this.#queue = [];
    for (const p of batch) {
      if (p.onAbort !== undefined) p.signal?.removeEventListener('abort', p.onAbort);
    }
    if (batch.length > 0) this.#commit(batch);
    const resolveFlushed = this.#resolveFlushed;
    this.#flushed = undefined;
    this.#resolveFlushed = undefined;
    this.#armTimer();
    this.#maybeAutoCompact();
    if (batch.length > 0) this.#armCheckpoint();
    resolveFlushed?.();
  }

  /**
   * One unref'd timer while the WAL holds commits not yet checkpointed: it fires every
   * `CHECKPOINT_IDLE_MS` and checkpoints once a whole interval passed without a commit.
   */
  #armCheckpoint(): void {
    if (this.#checkpointTimer !== undefined || this.#closing !== undefined) return;
    this.#checkpointSeen = this.#commits;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = undefined;
      if (this.#closing !== undefined) return;
      if (this.#commits !== this.#checkpointSeen || this.#queue.length > 0 || this.#flushScheduled) {
        this.#armCheckpoint();
        return;
      }
      try {
        // PASSIVE: this connection is the only one (EXCLUSIVE), so it copies every frame and the next
        // commit starts the WAL over from its beginning.
        this.#db.pragma('wal_checkpoint(PASSIVE)');
        this.#idleCheckpoints++;
      } catch {
        // Left to the autocheckpoint at WAL_LIMIT_BYTES; a failing disk fails the next commit anyway.
      }
    }, CHECKPOINT_IDLE_MS);
    this.#checkpointTimer.unref();
  }

  #commit(batch: Pending[]): void {
    const s = this.#stmt;
    const outcomes: ({ ok: true; applied: Applied } | { ok: false; error: unknown })[] = [];
    const startRevision = this.#revision;
    let rev = startRevision;
    const ts = Math.floor(this.#wallClock.now());
    try {
      s.begin.run();
      for (const p of batch) {
        s.savepoint.run();
        try {
          const applied = this.#apply(p.op, rev, ts);
          if (applied.events.length > 0) rev++;
          s.release.run();
          outcomes.push({ ok: true, applied });
        } catch (error) {
          s.rollbackTo.run();
          s.release.run();
          outcomes.push({ ok: false, error });
        }
      }
      s.commit.run();
    } catch (error) {
      if (this.#db.inTransaction) s.rollback.run();
      for (const p of batch) p.reject(error);
      for (const p of batch) {
        if (p.op.kind === 'revoke' && p.op.expired) this.#unexpire(p.op.lease);
      }
      return;
    }
    this.#commits++;
    this.#revision = rev;
    const events: EventPair[] = [];
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      if (!o.ok) {
        const op = batch[i]!.op;
        if (op.kind === 'revoke' && op.expired) this.#unexpire(op.lease);
        continue;
      }
      this.#writes++;
      const e = o.applied.effect;
      switch (e.kind) {
        case 'grant': {
          const deadline = this.#clock.now() + e.ttl * 1000;
          this.#leases.set(e.lease, { ttl: e.ttl, deadline, expiring: false });
          this.#deadlines.push(deadline, e.lease);
          break;
        }
        case 'revoke':
          this.#leases.delete(e.lease);
          break;
        case 'compact':
          this.#compactRevision = Math.max(this.#compactRevision, e.revision);
          break;
        case 'none':
          break;
      }
      for (const ev of o.applied.events) events.push(ev);
    }
    if (events.length > 0) this.#dispatch(events);
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      if (o.ok) batch[i]!.resolve(o.applied.result);
      else batch[i]!.reject(o.error);
    }
  }

  #unexpire(lease: number): void {
    const l = this.#leases.get(lease);
    if (l !== undefined) {
      l.expiring = false;
      this.#deadlines.push(l.deadline, lease);
    }
  }

  /** Runs one write inside the open transaction. `rev` is the revision before it. */
  #apply(op: WriteOp, rev: number, ts: number): Applied {
    const s = this.#stmt;
    switch (op.kind) {
      case 'txn':
        return this.#applyTxn(op.txn, rev, ts);
      case 'grant': {
        const id = this.#nextLease;
        s.leaseInsert.run(id, op.ttl);
        s.metaSet.run(id + 1, 'next_lease');
        this.#nextLease = id + 1;
        return { result: { id: String(id), ttl: op.ttl } satisfies LeaseGrant, events: [], effect: { kind: 'grant', lease: id, ttl: op.ttl } };
      }
      case 'revoke': {
        if (s.leaseGet.get(op.lease) === undefined) throw new LeaseNotFoundError(String(op.lease));
        const rows = s.kvByLease.all(op.lease) as KvRow[];
        const events: EventPair[] = [];
        let sub = 0;
        for (const row of rows) events.push(this.#deleteRow(row, rev + 1, sub++, ts));
        s.leaseDelete.run(op.lease);
        const result: RevokeResult = { revision: rows.length > 0 ? rev + 1 : rev, deleted: rows.length };
        return { result, events, effect: { kind: 'revoke', lease: op.lease } };
      }
      case 'compact': {
        if (op.revision > rev) throw new FutureRevisionError(op.revision, rev);
        if (op.revision <= this.#compactRevision) return { result: undefined, events: [], effect: { kind: 'none' } };
        s.historyCompact.run(op.revision);
        s.metaSet.run(op.revision, 'compact_revision');
        s.metaSet.run(rev, 'revision'); // the floor, should compaction ever leave no row of the newest revision
        return { result: undefined, events: [], effect: { kind: 'compact', revision: op.revision } };
      }
    }
  }

  #applyTxn(txn: CheckedTxn, rev: number, ts: number): Applied {
    const s = this.#stmt;
    const succeeded = txn.compare.every((c) => this.#holds(c));
    const ops = succeeded ? txn.success : txn.failure;
    const next = rev + 1;
    const events: EventPair[] = [];
    const responses: TxnOpResult[] = [];
    for (const op of ops) {
      switch (op.type) {
        case 'put': {
          let lease = 0;
          if (op.lease !== undefined) {
            lease = leaseNumber(op.lease);
            if (lease === 0 || s.leaseGet.get(lease) === undefined || this.#leases.get(lease)?.expiring === true) {
              throw new LeaseNotFoundError(op.lease);
            }
          }
          const prev = s.kvGet.get(op.key) as KvRow | undefined;
          const createRev = prev === undefined ? next : prev.create_rev;
          const version = prev === undefined ? 1 : prev.version + 1;
          // The row was just read: a plain INSERT or UPDATE, not an upsert that tries both.
          if (prev === undefined) s.kvInsert.run(op.key, op.value, createRev, next, version, lease);
          else s.kvUpdate.run(op.value, next, version, lease, op.key);
          s.historyInsert.run(
            next, events.length, PUT, op.key, op.value, createRev, version, lease,
            prev?.value ?? null, prev?.create_rev ?? null, prev?.mod_rev ?? null, prev?.version ?? null, prev?.lease ?? null,
            ts,
          );
          const kv = kvOf(op.key, op.value, createRev, next, version, lease);
          const bare: WatchEvent = { type: 'put', kv };
          const prevKv = prev === undefined ? undefined : kvFromRow(prev);
          events.push({ bare, full: prevKv === undefined ? bare : { type: 'put', kv, prevKv } });
          responses.push(op.prevKv && prevKv !== undefined ? { type: 'put', prevKv } : { type: 'put' });
          break;
        }
        case 'delete': {
          let rows: KvRow[];
          if (op.prefix) {
            const end = prefixEnd(op.key);
            rows = this.#rangeStmt('now', end !== undefined, false).all(
              end === undefined ? { start: op.key, limit: -1 } : { start: op.key, end: Buffer.from(end), limit: -1 },
            ) as KvRow[];
          } else {
            const row = s.kvGet.get(op.key) as KvRow | undefined;
            rows = row === undefined ? [] : [row];
          }
          for (const row of rows) events.push(this.#deleteRow(row, next, events.length, ts));
          responses.push(op.prevKv ? { type: 'delete', deleted: rows.length, prevKvs: rows.map(kvFromRow) } : { type: 'delete', deleted: rows.length });
          break;
        }
        case 'range': {
          const end = op.prefix ? prefixEnd(op.key) : Buffer.concat([op.key, Buffer.of(0)]);
          const r = this.#rangeAt(op.key, end === undefined ? undefined : Buffer.from(end), op.limit, op.keysOnly, undefined);
          responses.push({ type: 'range', kvs: r.kvs, more: r.more });
          break;
        }
      }
    }
    const result: TxnResult = { succeeded, revision: events.length > 0 ? next : rev, responses };
    return { result, events, effect: { kind: 'none' } };
  }

  #deleteRow(row: KvRow, rev: number, sub: number, ts: number): EventPair {
    const s = this.#stmt;
    s.kvDelete.run(row.key);
    s.historyInsert.run(rev, sub, DELETE, row.key, null, 0, 0, 0, row.value, row.create_rev, row.mod_rev, row.version, row.lease, ts);
    const kv = kvOf(row.key, null, 0, rev, 0, 0);
    const bare: WatchEvent = { type: 'delete', kv };
    return { bare, full: { type: 'delete', kv, prevKv: kvFromRow(row) } };
  }

  #holds(c: CheckedCompare): boolean {
    const row = this.#stmt.kvGet.get(c.key) as KvRow | undefined;
    switch (c.target) {
      case 'value': {
        if (row === undefined) return false; // etcd: a value compare on a missing key never holds
        return cmpNumbers(Buffer.compare(row.value ?? EMPTY, c.value), 0, c.cmp);
      }
      case 'version':
        return cmpNumbers(row?.version ?? 0, c.value, c.cmp);
      case 'createRevision':
        return cmpNumbers(row?.create_rev ?? 0, c.value, c.cmp);
      case 'modRevision':
        return cmpNumbers(row?.mod_rev ?? 0, c.value, c.cmp);
      case 'lease':
        return cmpNumbers(BigInt(row?.lease ?? 0), c.value, c.cmp);
    }
  }

  #dispatch(events: readonly EventPair[]): void {
    if (this.#watchers.size === 0) return;
    const perWatcher = new Map<WatchStream, WatchEvent[]>();
    for (const e of events) {
      this.#watchers.match(e.bare.kv.key, (w) => {
        if (!w.live) return;
        let list = perWatcher.get(w);
        if (list === undefined) {
          list = [];
          perWatcher.set(w, list);
        }
        list.push(w.prevKv ? e.full : e.bare);
      });
    }
    for (const [w, list] of perWatcher) w.offer(list);
  }

  // ---------------------------------------------------------------- internals: leases and compaction

  /** Pops every lease whose deadline has passed and returns a revoke for each (first in the batch). */
  #collectExpired(): Pending[] {
    const out: Pending[] = [];
    if (this.#deadlines.size === 0) return out;
    const now = this.#clock.now();
    for (let top = this.#deadlines.peek(); top !== undefined && top.deadline <= now; top = this.#deadlines.peek()) {
      this.#deadlines.pop();
      const l = this.#leases.get(top.lease);
      if (l === undefined || l.expiring) continue;
      if (l.deadline > now) {
        this.#deadlines.push(l.deadline, top.lease); // kept alive since: file under its new deadline
        continue;
      }
      l.expiring = true;
      out.push({ op: { kind: 'revoke', lease: top.lease, expired: true }, resolve: noop, reject: noop, signal: undefined, onAbort: undefined });
    }
    return out;
  }

  /** One timer for the whole store, set for the earliest deadline; it never keeps the process alive. */
  #armTimer(): void {
    if (this.#closing !== undefined && this.#queue.length === 0) return;
    const top = this.#deadlines.peek();
    if (top === undefined) return;
    if (this.#timer !== undefined && this.#timerAt <= top.deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = top.deadline;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(top.deadline - this.#clock.now())));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      if (this.#closing === undefined) this.#scheduleFlush();
    }, delay);
    this.#timer.unref();
  }

  #maybeAutoCompact(): void {
    const c = this.#compaction;
    if (c === undefined || this.#compactQueued || this.#closing !== undefined) return;
    // A revision is kept while either rule keeps it: compact to the lower of the two targets.
    let target = Infinity;
    if (c.keepRevisions !== undefined) {
      const candidate = this.#revision - c.keepRevisions + 1;
      // Compact in steps of a tenth of the window, not on every write.
      if (candidate - this.#compactRevision < Math.max(1, Math.ceil(c.keepRevisions / 10))) return;
      target = candidate;
    }
    if (c.keepMinutes !== undefined) {
      const windowMs = c.keepMinutes * 60_000;
      const now = this.#wallClock.now();
      // Look at most ten times per window, and at most once a second.
      if (now - this.#lastTimeCompactCheck < Math.max(1000, windowMs / 10)) return;
      this.#lastTimeCompactCheck = now;
      const row = this.#stmt.historyFirstSince.get(Math.floor(now - windowMs)) as { rev: number } | undefined;
      target = Math.min(target, row?.rev ?? this.#revision);
    }
    if (!Number.isFinite(target) || target <= this.#compactRevision || target > this.#revision) return;
    this.#compactQueued = true;
    this.#queue.push({
      op: { kind: 'compact', revision: target },
      resolve: () => {
        this.#compactQueued = false;
      },
      reject: () => {
        this.#compactQueued = false;
      },
      signal: undefined,
      onAbort: undefined,
    });
    this.#scheduleFlush();
  }
}

function noop(): void {}

function prepareStatements(db: Database.Database) {
  return {
    begin: db.prepare('BEGIN'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    savepoint: db.prepare('SAVEPOINT w'),
    release: db.prepare('RELEASE w'),
    rollbackTo: db.prepare('ROLLBACK TO w'),
    metaInit: db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)'),
    metaGet: db.prepare('SELECT value FROM meta WHERE name = ?'),
    metaSet: db.prepare('UPDATE meta SET value = ? WHERE name = ?'),
    kvGet: db.prepare(`SELECT ${KV_COLS} FROM kv WHERE key = ?`),
    kvInsert: db.prepare(`INSERT INTO kv (${KV_COLS}) VALUES (?, ?, ?, ?, ?, ?)`),
    kvUpdate: db.prepare('UPDATE kv SET value = ?, mod_rev = ?, version = ?, lease = ? WHERE key = ?'),
    kvDelete: db.prepare('DELETE FROM kv WHERE key = ?'),
    kvByLease: db.prepare(`SELECT ${KV_COLS} FROM kv WHERE lease = ? ORDER BY key`),
    leaseKeys: db.prepare('SELECT key FROM kv WHERE lease = ? ORDER BY key'),
    historyInsert: db.prepare(
      `INSERT INTO history (rev, sub, type, key, value, create_rev, version, lease,
         prev_value, prev_create_rev, prev_mod_rev, prev_version, prev_lease, ts)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    historyCompact: db.prepare('DELETE FROM history WHERE rev < ?'),
    historyNewest: db.prepare('SELECT MAX(rev) AS rev FROM history'),
    historyFirstSince: db.prepare('SELECT rev FROM history WHERE ts >= ? ORDER BY rev LIMIT 1'),
    leaseAll: db.prepare('SELECT id, ttl FROM leases'),
    leaseGet: db.prepare('SELECT ttl FROM leases WHERE id = ?'),
    leaseInsert: db.prepare('INSERT INTO leases (id, ttl) VALUES (?, ?)'),
    leaseDelete: db.prepare('DELETE FROM leases WHERE id = ?'),
  };
}

