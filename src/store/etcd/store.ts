/**
 * The etcd engine of the `Store` contract: etcd v3's gRPC API spoken directly with `@grpc/grpc-js`
 * (the `etcd3` package is tested only up to etcd 3.3 and resumes watches from a header revision that
 * can skip events; see ./watch.ts). Its model is the contract's model, so most calls map one to one:
 *
 * | Store                  | etcd                                                    |
 * |------------------------|---------------------------------------------------------|
 * | get, range             | KV.Range (linearizable)                                 |
 * | put, delete(Prefix)    | KV.Put, KV.DeleteRange                                  |
 * | txn                    | KV.Txn                                                  |
 * | compact                | KV.Compact                                              |
 * | grantLease, revokeLease, leaseTimeToLive | Lease.LeaseGrant, LeaseRevoke, LeaseTimeToLive |
 * | keepAlive              | a message on a Lease.LeaseKeepAlive stream (./keepalive.ts) |
 * | watch                  | a Watch stream per watch, resumed by revision (./watch.ts) |
 *
 * Namespace: with `namespace: '/prod/'` every key is stored under `/prod/` and the prefix is removed
 * from every key returned, so several installations share one cluster without seeing each other.
 * Revisions, compaction and lease ids are the cluster's, shared by all of them.
 *
 * Cancellation: a read aborted in flight is cancelled. A write is refused if its signal is aborted
 * before it is sent; once sent it is not cancelled (etcd may already have applied it, and the
 * contract says an aborted write is not applied), and its result stands.
 */
import { InvalidArgumentError, InvalidOptionError, CompactedError, FutureRevisionError, LeaseNotFoundError, StoreClosedError, StoreUnavailableError, isSpoflessError } from '../../errors/index.js';
import { compareBytes, prefixEnd } from '../bytes.js';
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
  WatchOptions,
} from '../types.js';
import { checkKey, checkLeaseId, checkLimit, checkPrefix, checkRevision, checkTtl, checkTxn, checkValue, type CheckedOp } from '../validate.js';
import {
  Connection,
  detailsOf,
  isTransportError,
  type PbCompare,
  type PbDeleteRangeResponse,
  type PbKeyValue,
  type PbLeaseGrantResponse,
  type PbLeaseRevokeResponse,
  type PbLeaseTimeToLiveResponse,
  type PbPutResponse,
  type PbRangeResponse,
  type PbRequestOp,
  type PbTxnResponse,
  type PbWatchRequest,
  type PbWatchResponse,
  type UnaryOptions,
} from './client.js';
import { KeepAlives } from './keepalive.js';
import { parseEndpoint } from './url.js';
import { EtcdWatch } from './watch.js';

/**
 * @example
 * ```ts
 * const options: EtcdStoreOptions = { endpoints: ['10.0.0.1:2379', '10.0.0.2:2379', '10.0.0.3:2379'], namespace: '/spofless/' };
 * ```
 */
export interface EtcdStoreOptions {
  /** Members to talk to, `host:port` (or `http://host:port`). Several: fail-over between them. */
  readonly endpoints: readonly string[];
  /**
   * Prefix for every key (e.g. `/spofless/prod/`), so several installations can share one etcd. Default
   * `''`: the whole key space.
   */
  readonly namespace?: string;
  /** How long `openEtcdStore` waits for a member with a leader to answer. Default 5,000 ms. */
  readonly dialTimeoutMs?: number;
  /**
   * Budget of one call, fail-over included; one member gets at most half of it (so a member that
   * stopped answering leaves time to try another). Default 10,000 ms.
   */
  readonly requestTimeoutMs?: number;
  /**
   * A watch stream silent this long is sent a progress request; unanswered for as long again, it is
   * taken as dead (a half-open connection) and resumed on another member. Default 2,000 ms.
   */
  readonly probeIntervalMs?: number;
  /** Unread events a watch buffers before it pauses its stream (etcd then holds back). Default 10,000. */
  readonly maxWatchBuffer?: number;
  readonly signal?: AbortSignal;
}

/** What `EtcdStore.stats` reports. */
export interface EtcdStoreStats {
  /** The member calls and new streams go to now. */
  readonly endpoint: string;
  /** Times the engine moved to another member. */
  readonly failovers: number;
  /** Watches open. */
  readonly watches: number;
  /** The highest revision seen in any answer. */
  readonly revision: number;
}

const OWNER = 'openEtcdStore';
const PROBE_KEY_SUFFIX = Buffer.from('\u0000spofless-compaction-probe');

function checkOptions(o: EtcdStoreOptions): { endpoints: string[]; namespace: Buffer; dial: number; request: number; probe: number; buffer: number } {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError(OWNER, 'options', o, 'an object');
  if (!Array.isArray(o.endpoints) || o.endpoints.length === 0) throw new InvalidOptionError(OWNER, 'endpoints', o.endpoints, 'a non-empty array of "host:port"');
  const endpoints = o.endpoints.map((e) => {
    try {
      return parseEndpoint(e);
    } catch (err) {
      throw new InvalidOptionError(OWNER, 'endpoints', e, `"host:port" (${(err as Error).message})`);
    }
  });
  if (new Set(endpoints).size !== endpoints.length) throw new InvalidOptionError(OWNER, 'endpoints', o.endpoints, 'distinct endpoints');
  if (o.namespace !== undefined && typeof o.namespace !== 'string') throw new InvalidOptionError(OWNER, 'namespace', o.namespace, 'a string key prefix');
  const ms = (name: 'dialTimeoutMs' | 'requestTimeoutMs' | 'probeIntervalMs', fallback: number, min: number): number => {
    const v = o[name];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new InvalidOptionError(OWNER, name, v, `a number of ms >= ${min}`);
    return v;
  };
  const buffer = o.maxWatchBuffer ?? 10_000;
  if (!Number.isSafeInteger(buffer) || buffer < 1) throw new InvalidOptionError(OWNER, 'maxWatchBuffer', o.maxWatchBuffer, 'a positive integer');
  return {
    endpoints,
    namespace: Buffer.from(o.namespace ?? '', 'utf8'),
    dial: ms('dialTimeoutMs', 5_000, 1),
    request: ms('requestTimeoutMs', 10_000, 100),
    probe: ms('probeIntervalMs', 2_000, 50),
    buffer,
  };
}

/**
 * Connects to etcd and returns a `Store` on it, once a member with a leader has answered (so a wrong
 * address fails here, not at the first call).
 *
 * @example
 * ```ts
 * import { openEtcdStore, text } from 'spofless/store';
 * const store = await openEtcdStore({ endpoints: ['127.0.0.1:2379'], namespace: '/spofless/' });
 * await store.put('/config/mode', 'blue');
 * console.log(text((await store.get('/config/mode'))!.value));
 * await store.close();
 * ```
 */
export async function openEtcdStore(options: EtcdStoreOptions): Promise<EtcdStore> {
  const o = checkOptions(options);
  options.signal?.throwIfAborted();
  const store = new EtcdStore(o);
  try {
    await store.connected(o.dial, options.signal);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/**
 * A `Store` on an etcd cluster. Open it with `openEtcdStore`.
 *
 * @example
 * ```ts
 * const store = await openEtcdStore({ endpoints: ['127.0.0.1:2379'] });
 * const watch = store.watch('/svc/', { prefix: true });
 * for await (const { events } of watch) console.log(events.length);
 * ```
 */
export class EtcdStore implements Store {
  readonly #conn: Connection;
  readonly #ns: Buffer;
  readonly #keepAlives: KeepAlives;
  readonly #watches = new Set<EtcdWatch>();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #probeMs: number;
  readonly #maxWatchBuffer: number;
  readonly #sweep: NodeJS.Timeout;
  #closing: Promise<void> | undefined;

  /** @internal Use `openEtcdStore`. */
  constructor(o: ReturnType<typeof checkOptions>) {
    this.#conn = new Connection({ endpoints: o.endpoints, requestTimeoutMs: o.request, attemptTimeoutMs: Math.max(50, Math.floor(o.request / 2)) });
    this.#ns = o.namespace;
    this.#keepAlives = new KeepAlives(this.#conn);
    this.#probeMs = o.probe;
    this.#maxWatchBuffer = o.buffer;
    // One timer for the whole store (not one per watch): probes silent streams, times out renewals.
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const w of this.#watches) w.sweep(now);
      this.#keepAlives.sweep(now);
    }, Math.max(25, Math.min(500, Math.floor(o.probe / 4))));
    this.#sweep.unref();
  }

  /** @internal */
  connected(dialTimeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return this.#conn.check(dialTimeoutMs, signal);
  }

  /** The member this store talks to now, fail-overs so far, watches open, the last revision seen. */
  get stats(): EtcdStoreStats {
    return { endpoint: this.#conn.current.address, failovers: this.#conn.failovers, watches: this.#watches.size, revision: this.#conn.seenRevision };
  }

  /** The member calls and new streams go to now (`host:port`). */
  get endpoint(): string {
    return this.#conn.current.address;
  }

  // ---------------------------------------------------------------- keys

  #key(k: Buffer): Buffer {
    return this.#ns.length === 0 ? k : Buffer.concat([this.#ns, k]);
  }

  /** The range end of everything under namespaced `full` (etcd's "\0": to the end of the key space). */
  #end(full: Buffer): Buffer {
    if (full.length === 0) return Buffer.from([0]);
    const end = prefixEnd(full);
    return end === undefined ? Buffer.from([0]) : Buffer.from(end);
  }

  #kv = (pb: PbKeyValue): KeyValue => {
    const kv = {
      key: this.#ns.length === 0 ? pb.key : pb.key.subarray(this.#ns.length),
      value: pb.value,
      createRevision: Number(pb.create_revision),
      modRevision: Number(pb.mod_revision),
      version: Number(pb.version),
    };
    return pb.lease === '0' || pb.lease === '' ? kv : { ...kv, lease: pb.lease };
  };

  // ---------------------------------------------------------------- reads

  async get(key: BytesInput, options: GetOptions = {}): Promise<KeyValue | undefined> {
    this.#open();
    const k = this.#key(checkKey(key));
    const revision = options.revision === undefined ? 0 : checkRevision(options.revision);
    const res = await this.#call<PbRangeResponse>('kv', 'Range', { key: k, revision }, this.#read(options), { revision });
    const kv = res.kvs[0];
    return kv === undefined ? undefined : this.#kv(kv);
  }

  async range(prefix: BytesInput, options: RangeOptions = {}): Promise<RangeResult> {
    this.#open();
    const p = this.#key(checkPrefix(prefix));
    const limit = options.limit === undefined ? 0 : checkLimit(options.limit);
    const revision = options.revision === undefined ? 0 : checkRevision(options.revision);
    let start = p.length === 0 ? Buffer.from([0]) : p;
    if (options.fromKey !== undefined) {
      const from = this.#key(checkPrefix(options.fromKey));
      if (Buffer.compare(from, start) > 0) start = from;
    }
    const req = { key: start, range_end: this.#end(p), limit, revision, keys_only: options.keysOnly === true };
    const res = await this.#call<PbRangeResponse>('kv', 'Range', req, this.#read(options), { revision });
    return { kvs: res.kvs.map(this.#kv), more: res.more, revision: revision === 0 ? Number(res.header.revision) : revision };
  }

  // ---------------------------------------------------------------- writes

  async put(key: BytesInput, value: BytesInput, options: PutOptions = {}): Promise<PutResult> {
    this.#open();
    const k = checkKey(key);
    const v = checkValue(k, value);
    const lease = options.lease === undefined ? undefined : checkLeaseId(options.lease);
    const req = { key: this.#key(k), value: v, lease: lease ?? '0', prev_kv: options.prevKv === true };
    const res = await this.#call<PbPutResponse>('kv', 'Put', req, this.#write(options, 'always'), { lease });
    const revision = Number(res.header.revision);
    return options.prevKv === true && res.prev_kv !== null && res.prev_kv !== undefined ? { revision, prevKv: this.#kv(res.prev_kv) } : { revision };
  }

  async delete(key: BytesInput, options: DeleteOptions = {}): Promise<DeleteResult> {
    this.#open();
    return this.#delete({ key: this.#key(checkKey(key)) }, options);
  }

  async deletePrefix(prefix: BytesInput, options: DeleteOptions = {}): Promise<DeleteResult> {
    this.#open();
    const p = this.#key(checkPrefix(prefix));
    return this.#delete({ key: p.length === 0 ? Buffer.from([0]) : p, range_end: this.#end(p) }, options);
  }

  async #delete(range: { key: Buffer; range_end?: Buffer }, options: DeleteOptions): Promise<DeleteResult> {
    const prevKv = options.prevKv === true;
    const res = await this.#call<PbDeleteRangeResponse>('kv', 'DeleteRange', { ...range, prev_kv: prevKv }, this.#write(options, 'always'), {});
    const out = { revision: Number(res.header.revision), deleted: Number(res.deleted) };
    return prevKv ? { ...out, prevKvs: res.prev_kvs.map(this.#kv) } : out;
  }

  async txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResult> {
    this.#open();
    const t = checkTxn(request);
    const compare: PbCompare[] = t.compare.map((c) => {
      const result = ({ '=': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const)[c.cmp];
      const key = this.#key(c.key);
      switch (c.target) {
        case 'value':
          return { result, target: 'Value', key, value: c.value };
        case 'version':
          return { result, target: 'Version', key, version: c.value };
        case 'createRevision':
          return { result, target: 'Create', key, create_revision: c.value };
        case 'modRevision':
          return { result, target: 'Mod', key, mod_revision: c.value };
        case 'lease':
          return { result, target: 'Lease', key, lease: c.value.toString() };
      }
    });
    const op = (o: CheckedOp): PbRequestOp => {
      switch (o.type) {
        case 'put':
          return { request_put: { key: this.#key(o.key), value: o.value, lease: o.lease ?? '0', prev_kv: o.prevKv } };
        case 'delete': {
          const k = this.#key(o.key);
          if (!o.prefix) return { request_delete_range: { key: k, prev_kv: o.prevKv } };
          return { request_delete_range: { key: k.length === 0 ? Buffer.from([0]) : k, range_end: this.#end(k), prev_kv: o.prevKv } };
        }
        case 'range': {
          const k = this.#key(o.key);
          const base = { limit: o.limit ?? 0, keys_only: o.keysOnly };
          if (!o.prefix) return { request_range: { key: k, ...base } };
          return { request_range: { key: k.length === 0 ? Buffer.from([0]) : k, range_end: this.#end(k), ...base } };
        }
      }
    };
    const leases = [...new Set([...t.success, ...t.failure].flatMap((o) => (o.type === 'put' && o.lease !== undefined ? [o.lease] : [])))];
    const req = { compare, success: t.success.map(op), failure: t.failure.map(op) };
    const res = await this.#call<PbTxnResponse>('kv', 'Txn', req, this.#write(options, 'unsent'), { leases });
    const branch = res.succeeded ? t.success : t.failure;
    const responses: TxnOpResult[] = branch.map((o, i): TxnOpResult => {
      const r = res.responses[i];
      switch (o.type) {
        case 'put': {
          const prev = r?.response_put?.prev_kv;
          return o.prevKv && prev !== null && prev !== undefined ? { type: 'put', prevKv: this.#kv(prev) } : { type: 'put' };
        }
        case 'delete': {
          const d = r?.response_delete_range;
          const deleted = Number(d?.deleted ?? 0);
          return o.prevKv ? { type: 'delete', deleted, prevKvs: (d?.prev_kvs ?? []).map(this.#kv) } : { type: 'delete', deleted };
        }
        case 'range': {
          const g = r?.response_range;
          return { type: 'range', kvs: (g?.kvs ?? []).map(this.#kv), more: g?.more ?? false };
        }
      }
    });
    return { succeeded: res.succeeded, revision: Number(res.header.revision), responses };
  }

  async compact(revision: number, options: CallOptions = {}): Promise<void> {
    this.#open();
    const rev = checkRevision(revision);
    try {
      await this.#call('kv', 'Compact', { revision: rev, physical: false }, this.#write(options, 'always'), { revision: rev });
    } catch (err) {
      // At or below the compact revision: nothing to do (the contract's rule; etcd calls it an error).
      if (isSpoflessError(err) && err instanceof CompactedError) return;
      throw err;
    }
  }

  // ---------------------------------------------------------------- leases

  async grantLease(ttl: number, options: CallOptions = {}): Promise<LeaseGrant> {
    this.#open();
    const t = checkTtl(ttl);
    // Not retried once maybe sent: a lease granted twice would linger for its whole TTL.
    const res = await this.#call<PbLeaseGrantResponse>('lease', 'LeaseGrant', { TTL: t, ID: 0 }, this.#write(options, 'unsent'), {});
    if (res.error !== '') throw new StoreUnavailableError(`etcd refused to grant a lease of ${t} s: ${res.error}`, false, { retryable: false });
    return { id: res.ID, ttl: Number(res.TTL) };
  }

  async keepAlive(lease: LeaseId, options: CallOptions = {}): Promise<LeaseGrant> {
    this.#open();
    const id = checkLeaseId(lease);
    const p = this.#keepAlives.renew(id, options.signal);
    this.#track(p);
    const ttl = await p;
    if (ttl <= 0) throw new LeaseNotFoundError(id);
    return { id, ttl };
  }

  async revokeLease(lease: LeaseId, options: CallOptions = {}): Promise<RevokeResult> {
    this.#open();
    const id = checkLeaseId(lease);
    // etcd does not say how many keys a revoke deleted: count them just before.
    const info = await this.#call<PbLeaseTimeToLiveResponse>('lease', 'LeaseTimeToLive', { ID: id, keys: true }, this.#read(options), { lease: id });
    if (Number(info.TTL) < 0) throw new LeaseNotFoundError(id);
    const failovers = this.#conn.failovers;
    try {
      const res = await this.#call<PbLeaseRevokeResponse>('lease', 'LeaseRevoke', { ID: id }, this.#write(options, 'always'), { lease: id });
      return { revision: Number(res.header.revision), deleted: info.keys.length };
    } catch (err) {
      // Not found after a fail-over: the first attempt (whose answer was lost) revoked it.
      if (err instanceof LeaseNotFoundError && this.#conn.failovers !== failovers) {
        return { revision: this.#conn.seenRevision, deleted: info.keys.length };
      }
      throw err;
    }
  }

  async leaseTimeToLive(lease: LeaseId, options: LeaseTimeToLiveOptions = {}): Promise<LeaseInfo | undefined> {
    this.#open();
    const id = checkLeaseId(lease);
    const wantKeys = options.keys === true;
    const res = await this.#call<PbLeaseTimeToLiveResponse>('lease', 'LeaseTimeToLive', { ID: id, keys: wantKeys }, this.#read(options), { lease: id });
    const ttl = Number(res.TTL);
    if (ttl < 0) return undefined;
    const info: LeaseInfo = { id, ttl: Math.max(0, ttl), grantedTtl: Number(res.grantedTTL) };
    if (!wantKeys) return info;
    const ns = this.#ns;
    const keys = res.keys
      .filter((k) => ns.length === 0 || (k.length >= ns.length && k.subarray(0, ns.length).equals(ns)))
      .map((k) => k.subarray(ns.length))
      .sort(compareBytes);
    return { ...info, keys };
  }

  // ---------------------------------------------------------------- watches

  /**
   * etcd 3.4 may answer a progress request with a revision ahead of events a catching-up watcher has not
   * been sent yet (etcd-io/etcd#15220, fixed in 3.4.26 and 3.5.8), so no progress is promised here.
   */
  readonly watchProgress = false;

  watch(key: BytesInput, options: WatchOptions = {}): Watch {
    if (options.progressNotify === true) {
      throw new InvalidOptionError('EtcdStore.watch', 'progressNotify', true, 'false or absent: this engine cannot promise exact progress (see Store.watchProgress)');
    }
    const prefix = options.prefix === true;
    const k = this.#key(prefix ? checkPrefix(key) : checkKey(key));
    const start = options.startRevision === undefined ? undefined : checkRevision(options.startRevision, 'startRevision');
    if (this.#closing !== undefined) {
      const w = this.#newWatch(k, prefix, start, options);
      w.end(new StoreClosedError());
      return w;
    }
    const w = this.#newWatch(k, prefix, start, options);
    if (!w.closed) this.#watches.add(w);
    return w;
  }

  #newWatch(k: Buffer, prefix: boolean, start: number | undefined, options: WatchOptions): EtcdWatch {
    return new EtcdWatch({
      conn: this.#conn,
      key: prefix && k.length === 0 ? Buffer.from([0]) : k,
      rangeEnd: prefix ? this.#end(k) : undefined,
      startRevision: start,
      prevKv: options.prevKv === true,
      signal: options.signal,
      maxBufferedEvents: this.#maxWatchBuffer,
      probeMs: this.#probeMs,
      toKv: this.#kv,
      detach: (w) => this.#watches.delete(w),
    });
  }

  // ---------------------------------------------------------------- close

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Let calls in flight finish: their callers are waiting for an answer.
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    clearInterval(this.#sweep);
    for (const w of [...this.#watches]) w.end(new StoreClosedError('the store was closed: the watch ended'));
    this.#keepAlives.close();
    this.#conn.close();
  }

  // ---------------------------------------------------------------- internals

  #open(): void {
    if (this.#closing !== undefined) throw new StoreClosedError();
  }

  #read(options: CallOptions): UnaryOptions {
    return { signal: options.signal, retry: 'always', cancelInFlight: true, write: false };
  }

  #write(options: CallOptions, retry: UnaryOptions['retry']): UnaryOptions {
    return { signal: options.signal, retry, cancelInFlight: false, write: true };
  }

  #track<T>(p: Promise<T>): void {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.#inflight.add(settled);
    void settled.then(() => this.#inflight.delete(settled));
  }

  /** A unary call, tracked for `close()`, with etcd's answers mapped to the contract's errors. */
  async #call<T>(service: 'kv' | 'lease' | 'maintenance', method: string, request: unknown, options: UnaryOptions, ctx: ErrorContext): Promise<T> {
    const p = this.#conn.unary<T>(service, method, request, options);
    this.#track(p);
    try {
      return await p;
    } catch (err) {
      throw await this.#mapError(err, ctx, options);
    }
  }

  async #mapError(err: unknown, ctx: ErrorContext, options: UnaryOptions): Promise<Error> {
    if (isSpoflessError(err)) return err;
    const d = detailsOf(err);
    if (d.includes('requested lease not found')) {
      return new LeaseNotFoundError(ctx.lease ?? (await this.#missingLease(ctx.leases ?? [], options.signal)) ?? 'unknown');
    }
    if (d.includes('required revision has been compacted')) {
      const requested = ctx.revision ?? 0;
      return new CompactedError(requested, await this.#compactRevision(requested));
    }
    if (d.includes('required revision is a future revision')) {
      return new FutureRevisionError(ctx.revision ?? 0, await this.#currentRevision());
    }
    if (d.includes('duplicate key given in txn request')) return new InvalidArgumentError('txn writes a key twice: expected each key written once', { cause: err });
    if (d.includes('too many operations in txn request')) return new InvalidArgumentError(`txn has more operations than etcd's --max-txn-ops allows: ${d}`, { cause: err });
    if (d.includes('request is too large')) return new InvalidArgumentError(`the request is larger than etcd's --max-request-bytes allows: ${d}`, { cause: err });
    if (isTransportError(err)) return new StoreUnavailableError(`etcd could not serve the call: ${d}`, options.write, { cause: err });
    return new StoreUnavailableError(`etcd refused the call: ${d}`, false, { cause: err, retryable: false });
  }

  /** Which of a txn's leases is gone (etcd does not name it). */
  async #missingLease(leases: readonly string[], signal: AbortSignal | undefined): Promise<string | undefined> {
    if (leases.length <= 1) return leases[0];
    for (const id of leases) {
      const r = await this.#conn
        .unary<PbLeaseTimeToLiveResponse>('lease', 'LeaseTimeToLive', { ID: id, keys: false }, { signal, retry: 'always', cancelInFlight: true, write: false })
        .catch(() => undefined);
      if (r !== undefined && Number(r.TTL) < 0) return id;
    }
    return leases[0];
  }

  /** The store's current revision (for a future-revision error). */
  async #currentRevision(): Promise<number> {
    try {
      const res = await this.#conn.unary<PbRangeResponse>('kv', 'Range', { key: this.#key(PROBE_KEY_SUFFIX), limit: 1, keys_only: true }, { retry: 'always', cancelInFlight: true, write: false });
      return Number(res.header.revision);
    } catch {
      return this.#conn.seenRevision;
    }
  }

  /**
   * The compact revision, which etcd's read error does not carry: a watch from the compacted revision
   * is cancelled with it. The probe watches a key nothing writes and lives at most 2 s.
   */
  #compactRevision(requested: number): Promise<number> {
    return new Promise((resolve) => {
      const member = this.#conn.current;
      const call = this.#conn.stream<PbWatchRequest, PbWatchResponse>(member, 'watch', 'Watch');
      const finish = (rev: number): void => {
        clearTimeout(timer);
        call.removeAllListeners();
        call.on('error', () => undefined);
        call.cancel();
        resolve(rev);
      };
      // Without an answer, the next revision after the one asked for is the best lower bound we know.
      const timer = setTimeout(() => finish(requested + 1), 2_000);
      timer.unref();
      call.on('data', (res: PbWatchResponse) => {
        const c = Number(res.compact_revision);
        if (c > 0) finish(c);
        else if (res.canceled) finish(requested + 1);
      });
      call.on('error', () => finish(requested + 1));
      call.write({ create_request: { key: this.#key(PROBE_KEY_SUFFIX), start_revision: Math.max(1, requested) } });
    });
  }
}

interface ErrorContext {
  readonly revision?: number | undefined;
  readonly lease?: string | undefined;
  readonly leases?: readonly string[];
}

