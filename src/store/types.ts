/**
 * The `Store` contract: etcd's data model, implemented by the embedded SQLite engine and (next) by etcd.
 *
 * - A key space of byte-string keys and values. Keys order bytewise (as `memcmp`).
 * - Every change is stamped with a global `revision` that only ever grows. One write call (put, delete,
 *   transaction, lease revoke or expiry) that changes anything takes exactly one new revision; all the
 *   events it produces share that revision. A call that changes nothing takes none.
 * - Every live key carries `createRevision` (revision of the put that created it), `modRevision`
 *   (revision of its last put) and `version` (number of puts since its creation, from 1).
 * - Leases: a key put with a lease is deleted when the lease is revoked or expires; those deletions
 *   are ordinary delete events at one new revision.
 * - History is kept from `compactRevision` on. Reads at an older revision, and watches starting before
 *   it, fail with `CompactedError` (`SPOF_ERR_STORE_COMPACTED`) naming the oldest revision still held.
 *
 * Nothing here is specific to one engine: no SQL, no gRPC. Errors are `SpoflessError`s with stable codes
 * (see `spofless/errors`): `InvalidKeyError`, `ValueTooLargeError`, `LeaseNotFoundError`,
 * `CompactedError`, `FutureRevisionError`, `StoreClosedError`, `InvalidArgumentError`, `AbortedError`.
 *
 * @example
 * ```ts
 * const { revision } = await store.put('/svc/api/1', '10.0.0.1:80', { lease });
 * const list = await store.range('/svc/api/');
 * const watch = store.watch('/svc/api/', { prefix: true, startRevision: list.revision + 1 });
 * for await (const { events } of watch) for (const e of events) console.log(e.type, text(e.kv.key));
 * ```
 */

/** Bytes as the store returns them. */
export type Bytes = Uint8Array;

/** A key or value as callers may give it: bytes, or text (encoded as UTF-8). */
export type BytesInput = Uint8Array | string;

/**
 * A lease id: the decimal text of a positive 64-bit integer (etcd's lease ids do not fit a JS number).
 * `'0'` is never a lease.
 */
export type LeaseId = string;

/** A key's stored state. */
export interface KeyValue {
  readonly key: Bytes;
  /** Empty for a key read with `keysOnly` and for the `kv` of a delete event. */
  readonly value: Bytes;
  /** Revision of the put that created this key (0 in a delete event's `kv`). */
  readonly createRevision: number;
  /** Revision of the last change to this key (for a delete event's `kv`: the deletion's revision). */
  readonly modRevision: number;
  /** Puts since creation, from 1 (0 in a delete event's `kv`). */
  readonly version: number;
  /** The lease this key is attached to; absent when none. */
  readonly lease?: LeaseId;
}

/** Options every call accepts. */
export interface CallOptions {
  /**
   * Cancels the call. A write aborted before it was committed is not applied and rejects with
   * `AbortedError`; once committed it can no longer be aborted, and its result stands.
   */
  readonly signal?: AbortSignal;
}

export interface GetOptions extends CallOptions {
  /** Read the key as it was at this revision (≥ the compact revision, ≤ the current one). */
  readonly revision?: number;
}

export interface RangeOptions extends CallOptions {
  /** At most this many keys (a positive integer); `more` says whether there were others. */
  readonly limit?: number;
  /** A consistent read as of this revision; default: the current one. */
  readonly revision?: number;
  /**
   * Start at this key (inclusive) instead of at the prefix. For paging: pass the last key returned
   * plus a `0x00` byte, with `revision` set to the first page's `revision`.
   */
  readonly fromKey?: BytesInput;
  /** Return keys and metadata without values. */
  readonly keysOnly?: boolean;
}

export interface RangeResult {
  /** Keys in bytewise order. */
  readonly kvs: readonly KeyValue[];
  /** True when `limit` cut the result short. */
  readonly more: boolean;
  /** The revision this read reflects: the store's current revision, or the one asked for. */
  readonly revision: number;
}

export interface PutOptions extends CallOptions {
  /** Attach the key to this lease (it is deleted when the lease ends). Without it the key has none. */
  readonly lease?: LeaseId;
  /** Return the key's state before this put. */
  readonly prevKv?: boolean;
}

export interface PutResult {
  /** The revision of this put. */
  readonly revision: number;
  /** The previous state, when `prevKv` was asked for and the key existed. */
  readonly prevKv?: KeyValue;
}

export interface DeleteOptions extends CallOptions {
  /** Return the deleted keys' states. */
  readonly prevKv?: boolean;
}

export interface DeleteResult {
  /** The revision of this delete, or the current revision when nothing was deleted. */
  readonly revision: number;
  /** How many keys were deleted. */
  readonly deleted: number;
  /** The deleted keys' states (when `prevKv` was asked for), in key order. */
  readonly prevKvs?: readonly KeyValue[];
}

/** Comparison operators for transaction guards. Bytes compare bytewise; numbers numerically. */
export type CompareOp = '=' | '!=' | '<' | '>';

/**
 * A transaction guard on one key. For a missing key, `version`, `createRevision` and `modRevision` are
 * 0 and `lease` is `null`, so `{ target: 'version', cmp: '=', value: 0 }` means "does not exist".
 * A `value` guard on a missing key is false whatever the operator (etcd's rule).
 */
export type Compare =
  | { readonly key: BytesInput; readonly target: 'value'; readonly cmp: CompareOp; readonly value: BytesInput }
  | {
      readonly key: BytesInput;
      readonly target: 'version' | 'createRevision' | 'modRevision';
      readonly cmp: CompareOp;
      readonly value: number;
    }
  | {
      readonly key: BytesInput;
      readonly target: 'lease';
      readonly cmp: CompareOp;
      /** `null`: no lease. Lease ids compare as integers. */
      readonly value: LeaseId | null;
    };

/**
 * One operation inside a transaction. Operations run in order and see each other's effects. Within one
 * branch no key may be written twice (two puts of one key, or a put of a key that a delete also covers):
 * that is an `InvalidArgumentError`, as in etcd.
 */
export type TxnOp =
  | {
      readonly type: 'put';
      readonly key: BytesInput;
      readonly value: BytesInput;
      readonly lease?: LeaseId;
      readonly prevKv?: boolean;
    }
  | { readonly type: 'delete'; readonly key: BytesInput; readonly prefix?: boolean; readonly prevKv?: boolean }
  | {
      readonly type: 'range';
      readonly key: BytesInput;
      readonly prefix?: boolean;
      readonly limit?: number;
      readonly keysOnly?: boolean;
    };

/** The result of one `TxnOp`, in the same position. */
export type TxnOpResult =
  | { readonly type: 'put'; readonly prevKv?: KeyValue }
  | { readonly type: 'delete'; readonly deleted: number; readonly prevKvs?: readonly KeyValue[] }
  | { readonly type: 'range'; readonly kvs: readonly KeyValue[]; readonly more: boolean };

export interface TxnRequest {
  /** All must hold for `success` to run; otherwise `failure` runs. Empty: `success` runs. */
  readonly compare?: readonly Compare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResult {
  /** Whether every compare held (and so `success` ran). */
  readonly succeeded: boolean;
  /** The transaction's revision if it wrote anything; otherwise the current revision. */
  readonly revision: number;
  /** One result per operation of the branch that ran. */
  readonly responses: readonly TxnOpResult[];
}

export interface LeaseGrant {
  readonly id: LeaseId;
  /** The TTL granted, in seconds: at least the one asked for (an engine may raise it to its minimum). */
  readonly ttl: number;
}

export interface LeaseInfo {
  readonly id: LeaseId;
  /** Seconds left before expiry (rounded up; 0 or more). */
  readonly ttl: number;
  /** The TTL the lease was granted with, in seconds. */
  readonly grantedTtl: number;
  /** The keys attached, in key order, when asked for. */
  readonly keys?: readonly Bytes[];
}

export interface LeaseTimeToLiveOptions extends CallOptions {
  /** Also list the keys attached to the lease. */
  readonly keys?: boolean;
}

export interface RevokeResult {
  /** The revision of the deletions, or the current revision when the lease had no keys. */
  readonly revision: number;
  /** How many keys were deleted. */
  readonly deleted: number;
}

/** One change seen by a watch. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /**
   * The key's new state. For a delete: `key`, an empty `value`, `modRevision` = the deletion's revision,
   * `createRevision` and `version` 0, no lease.
   */
  readonly kv: KeyValue;
  /** The key's state before this event, when the watch asked for `prevKv` and the key existed. */
  readonly prevKv?: KeyValue;
}

/**
 * A batch of events. A batch always holds *whole* revisions (all events of a revision that match the
 * watch), so a consumer that has processed a batch may resume from `revision + 1` without loss.
 */
export interface WatchResponse {
  /**
   * Events in revision order (and, within a revision, in the order the write made them). Empty only in
   * a progress response (asked for with `progressNotify`).
   */
  readonly events: readonly WatchEvent[];
  /**
   * The revision of the last event in `events`; in a progress response, a revision up to which every
   * matching event has been delivered.
   */
  readonly revision: number;
}

export interface WatchOptions {
  /** Watch every key that starts with `key` (an empty `key` then watches the whole key space). */
  readonly prefix?: boolean;
  /**
   * Deliver every matching event with revision ≥ this. Default: only events after the watch is set up
   * (use `startRevision: range.revision + 1` to continue exactly from a list). If this revision has been
   * compacted, the watch ends with `CompactedError`.
   */
  readonly startRevision?: number;
  /** Include each event's previous state. */
  readonly prevKv?: boolean;
  /**
   * Also yield progress responses (`events: []`, `revision: R`: every matching event up to R has been
   * delivered) each time a replay from history reaches the store's head (after the replay's events, also
   * when the replay found nothing). A consumer that resumed from an old revision learns from it that it
   * is current, even when nothing it watches changed meanwhile. Only for engines whose `watchProgress`
   * is true; others throw `InvalidOptionError`.
   */
  readonly progressNotify?: boolean;
  /** Aborting ends the watch: iteration throws `AbortedError`. */
  readonly signal?: AbortSignal;
}

/**
 * A live stream of `WatchResponse`s, consumed with `for await`. One consumer per watch.
 *
 * How it ends:
 * | cause                                | iteration                          |
 * |--------------------------------------|------------------------------------|
 * | `close()` or `break` out of the loop | finishes normally                  |
 * | `signal` aborted                     | throws `AbortedError`              |
 * | start revision compacted             | throws `CompactedError` (re-list)  |
 * | store closed                         | throws `StoreClosedError`          |
 *
 * Events are never skipped or repeated: a consumer slower than the writers is not cut off (an engine
 * may drop its in-memory buffer and replay from history), unless history it still needs is compacted.
 */
export interface Watch extends AsyncIterable<WatchResponse> {
  /** Stops the watch at once (responses not yet taken are dropped) and frees its resources. */
  close(): void;
  /** True once the watch has ended for any reason. */
  readonly closed: boolean;
}

/**
 * The revisioned key-value store. All methods validate their input before doing anything, so a call
 * that throws a validation error has written nothing.
 */
export interface Store {
  /** One key, or `undefined` when absent. */
  get(key: BytesInput, options?: GetOptions): Promise<KeyValue | undefined>;
  /** Keys starting with `prefix` (`''`: all keys), in bytewise order. */
  range(prefix: BytesInput, options?: RangeOptions): Promise<RangeResult>;
  /** Creates or replaces a key. Resolves once the write is durable. */
  put(key: BytesInput, value: BytesInput, options?: PutOptions): Promise<PutResult>;
  /** Deletes one key. */
  delete(key: BytesInput, options?: DeleteOptions): Promise<DeleteResult>;
  /** Deletes every key starting with `prefix` (`''`: all keys), at one revision. */
  deletePrefix(prefix: BytesInput, options?: DeleteOptions): Promise<DeleteResult>;
  /** Compare-then-act, atomically, at one revision. */
  txn(request: TxnRequest, options?: CallOptions): Promise<TxnResult>;

  /** Grants a lease of `ttl` whole seconds (1 … 9,000,000,000). */
  grantLease(ttl: number, options?: CallOptions): Promise<LeaseGrant>;
  /** Resets the lease's countdown to its granted TTL. `LeaseNotFoundError` when it is gone. */
  keepAlive(lease: LeaseId, options?: CallOptions): Promise<LeaseGrant>;
  /** Ends the lease now, deleting its keys. `LeaseNotFoundError` when it is gone. */
  revokeLease(lease: LeaseId, options?: CallOptions): Promise<RevokeResult>;
  /** The lease's remaining time, or `undefined` when it is gone. */
  leaseTimeToLive(lease: LeaseId, options?: LeaseTimeToLiveOptions): Promise<LeaseInfo | undefined>;

  /**
   * Watches a key, or a prefix with `{ prefix: true }`. Synchronous: the watch exists on return, and an
   * invalid key or option throws at once (`InvalidKeyError`, `InvalidArgumentError`).
   */
  watch(key: BytesInput, options?: WatchOptions): Watch;

  /**
   * True when `watch()` honours `progressNotify` exactly. The SQLite engine does; the etcd engine does
   * not (etcd 3.4 may answer a progress request ahead of events it has not sent yet, etcd-io/etcd#15220).
   */
  readonly watchProgress: boolean;

  /**
   * Discards history before `revision` (which must be ≤ the current revision). Afterwards reads at
   * `revision` or later still work; older ones throw `CompactedError`. Compacting to a revision at or
   * below the current compact revision does nothing.
   */
  compact(revision: number, options?: CallOptions): Promise<void>;

  /**
   * Lets queued writes finish, ends every watch with `StoreClosedError`, and releases the engine.
   * Later calls reject with `StoreClosedError`. Idempotent.
   */
  close(): Promise<void>;
}
