/**
 * The wire to etcd: one gRPC channel per member (`@grpc/grpc-js`, etcd's protobuf API loaded from
 * ./proto.ts), a *current* member that every call and stream uses, and fail-over between members.
 *
 * Why one current member rather than a balancer spreading calls: a watch resumed on another member
 * must see that member's history, which it does (all members hold the same log); but a read-your-write
 * sequence is simplest on one member, and etcd's own client (clientv3) also pins streams to one
 * connection. Whoever sees the current member fail (a call, a watch, a keep-alive stream) reports it
 * and everyone moves on to the next member that is not known to be down.
 *
 * Every call carries etcd's `hasleader` metadata, so a member cut off from its quorum refuses at once
 * (`etcdserver: no leader`, before anything is applied) instead of hanging, and its watch streams
 * are cancelled by etcd rather than going silent.
 *
 * Retries of one unary call, within its time budget (`requestTimeoutMs`):
 * | error                                                  | reads, keep-alive, grant | put, delete | txn           |
 * |--------------------------------------------------------|--------------------------|-------------|---------------|
 * | not sent (no connection, channel closed, no leader)    | next member              | next member | next member   |
 * | sent, then the connection failed or the attempt timed out | next member           | next member | `StoreUnavailableError` (outcome unknown) |
 * | an answer from etcd (not found, compacted, ...)        | mapped, not retried      | same        | same          |
 */
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { AbortedError, StoreClosedError, StoreUnavailableError } from '../../errors/index.js';
import { ETCD_PROTO } from './proto.js';

// ------------------------------------------------------------------------------------ messages
// As @grpc/proto-loader decodes them with the options below: snake_case field names as in the .proto,
// int64 as decimal strings (lease ids need all 64 bits), bytes as Buffers, enums as their names (as the
// etcd3 package's .proto files spell them: `Put`, `Equal`, `Mod`; only the numbers go on the wire).

export interface PbHeader {
  readonly revision: string;
  readonly member_id: string;
  readonly raft_term: string;
}
export interface PbKeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly create_revision: string;
  readonly mod_revision: string;
  readonly version: string;
  readonly lease: string;
}
export interface PbRangeRequest {
  key: Buffer;
  range_end?: Buffer;
  limit?: number;
  revision?: number;
  keys_only?: boolean;
}
export interface PbRangeResponse {
  readonly header: PbHeader;
  readonly kvs: readonly PbKeyValue[];
  readonly more: boolean;
}
export interface PbPutRequest {
  key: Buffer;
  value: Buffer;
  lease?: string;
  prev_kv?: boolean;
}
export interface PbPutResponse {
  readonly header: PbHeader;
  readonly prev_kv: PbKeyValue | null;
}
export interface PbDeleteRangeRequest {
  key: Buffer;
  range_end?: Buffer;
  prev_kv?: boolean;
}
export interface PbDeleteRangeResponse {
  readonly header: PbHeader;
  readonly deleted: string;
  readonly prev_kvs: readonly PbKeyValue[];
}
export type PbRequestOp =
  | { request_range: PbRangeRequest }
  | { request_put: PbPutRequest }
  | { request_delete_range: PbDeleteRangeRequest };
export interface PbResponseOp {
  readonly response: 'response_range' | 'response_put' | 'response_delete_range' | 'response_txn';
  readonly response_range?: PbRangeResponse;
  readonly response_put?: PbPutResponse;
  readonly response_delete_range?: PbDeleteRangeResponse;
}
export interface PbCompare {
  result: 'Equal' | 'Greater' | 'Less' | 'NotEqual';
  target: 'Version' | 'Create' | 'Mod' | 'Value' | 'Lease';
  key: Buffer;
  version?: number;
  create_revision?: number;
  mod_revision?: number;
  value?: Buffer;
  lease?: string;
}
export interface PbTxnRequest {
  compare: PbCompare[];
  success: PbRequestOp[];
  failure: PbRequestOp[];
}
export interface PbTxnResponse {
  readonly header: PbHeader;
  readonly succeeded: boolean;
  readonly responses: readonly PbResponseOp[];
}
export interface PbEvent {
  readonly type: 'Put' | 'Delete';
  readonly kv: PbKeyValue;
  readonly prev_kv: PbKeyValue | null;
}
export interface PbWatchResponse {
  readonly header: PbHeader;
  readonly watch_id: string;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly compact_revision: string;
  readonly cancel_reason: string;
  readonly events: readonly PbEvent[];
}
export interface PbWatchCreate {
  key: Buffer;
  range_end?: Buffer;
  start_revision?: number;
  prev_kv?: boolean;
}
export type PbWatchRequest = { create_request: PbWatchCreate } | { progress_request: Record<string, never> };
export interface PbLeaseGrantResponse {
  readonly header: PbHeader;
  readonly ID: string;
  readonly TTL: string;
  readonly error: string;
}
export interface PbLeaseKeepAliveResponse {
  readonly header: PbHeader;
  readonly ID: string;
  readonly TTL: string;
}
export interface PbLeaseTimeToLiveResponse {
  readonly header: PbHeader;
  readonly ID: string;
  readonly TTL: string;
  readonly grantedTTL: string;
  readonly keys: readonly Buffer[];
}
export interface PbLeaseRevokeResponse {
  readonly header: PbHeader;
}

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
type UnaryMethod = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>) => grpc.ClientUnaryCall;
type ServiceClient = grpc.Client & Record<string, UnaryMethod>;
type ServiceCtor = new (address: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => ServiceClient;

let services: { KV: ServiceCtor; Watch: ServiceCtor; Lease: ServiceCtor; Maintenance: ServiceCtor } | undefined;

/** etcd's services, loaded once per process. */
function loadServices(): NonNullable<typeof services> {
  if (services !== undefined) return services;
  const def = fromJSON(ETCD_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { etcdserverpb: Record<string, ServiceCtor> };
  const p = pkg.etcdserverpb;
  services = { KV: p.KV!, Watch: p.Watch!, Lease: p.Lease!, Maintenance: p.Maintenance! };
  return services;
}

/** One etcd member: its channel and a client per service, all on that channel. */
export interface Member {
  readonly address: string;
  readonly channel: grpc.Channel;
  readonly kv: ServiceClient;
  readonly watch: ServiceClient;
  readonly lease: ServiceClient;
  readonly maintenance: ServiceClient;
}

export interface ConnectionOptions {
  readonly endpoints: readonly string[];
  /** Budget of one call, fail-over included. */
  readonly requestTimeoutMs: number;
  /** At most this long on one member before trying the next. */
  readonly attemptTimeoutMs: number;
}

/** What a unary call may retry after it was (maybe) sent. */
export type RetryKind = 'always' | 'unsent';

export interface UnaryOptions {
  readonly signal?: AbortSignal | undefined;
  /** `always`: safe to repeat (reads, keep-alive, puts); `unsent`: only if surely not sent (txn). */
  readonly retry: RetryKind;
  /** Cancel the call when the signal aborts even after it was sent (reads). Writes are never cancelled once sent. */
  readonly cancelInFlight: boolean;
  /** The call changes the store: a failure after it may have been sent leaves its outcome unknown. */
  readonly write: boolean;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // etcd enforces at least 5 s between pings (and none without an open stream): stay above both.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 0,
  // A member that comes back is used again soon.
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  // Retries are ours: grpc's own would repeat a txn whose outcome is unknown.
  'grpc.enable_retries': 0,
};

/**
 * gRPC status codes that say the member (or the link to it) failed, not the request. CANCELLED is
 * among them because we cancel only on the caller's abort (handled before this check): any other
 * cancellation came from a member shutting down.
 */
const TRANSPORT_CODES = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.CANCELLED]);

/** etcd answers meaning "this member cannot serve now" (no quorum, leader moving, overloaded). */
const MEMBER_TROUBLE = /no leader|leader changed|request timed out|too many requests|not capable|server is stopping|raft/i;

/** The call never reached etcd, or etcd refused it before applying anything. */
function surelyNotApplied(err: grpc.ServiceError): boolean {
  return /No connection established|Channel closed before call started|etcdserver: no leader|too many requests/.test(err.details ?? err.message);
}

/** True for a failure of the member or the link rather than an answer about the request. */
export function isTransportError(err: unknown): err is grpc.ServiceError {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== 'number') return false;
  if (TRANSPORT_CODES.has(e.code) && !/^etcdserver: (requested lease not found|mvcc:)/.test(e.details ?? '')) return true;
  return MEMBER_TROUBLE.test(e.details ?? '') && e.code !== grpc.status.INVALID_ARGUMENT;
}

/** The error text etcd sent (`details`), for matching. */
export function detailsOf(err: unknown): string {
  const e = err as { details?: unknown; message?: unknown };
  return typeof e.details === 'string' ? e.details : String(e.message);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(new AbortedError());
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new AbortedError());
    };
    const t = setTimeout(done, ms);
    t.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The members and which one is current. `closed` once `close()` ran: calls then reject with
 * `StoreClosedError`.
 */
export class Connection {
  readonly #members: Member[];
  readonly #options: ConnectionOptions;
  #current: number;
  #closed = false;
  /** Highest revision seen in any response header: "now", as far as this client knows. */
  #seenRevision = 0;
  /** Fail-overs so far (for tests and stats). */
  #failovers = 0;
  readonly #listeners = new Set<() => void>();

  constructor(options: ConnectionOptions) {
    const s = loadServices();
    this.#options = options;
    this.#members = options.endpoints.map((address) => {
      const channel = new grpc.Channel(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      const opts: grpc.ClientOptions = { channelOverride: channel };
      const creds = grpc.credentials.createInsecure();
      return {
        address,
        channel,
        kv: new s.KV(address, creds, opts),
        watch: new s.Watch(address, creds, opts),
        lease: new s.Lease(address, creds, opts),
        maintenance: new s.Maintenance(address, creds, opts),
      };
    });
    // Several control planes given the same list should not all lean on the first member.
    this.#current = Math.floor(Math.random() * this.#members.length);
  }

  get closed(): boolean {
    return this.#closed;
  }

  get current(): Member {
    return this.#members[this.#current]!;
  }

  get members(): readonly Member[] {
    return this.#members;
  }

  get failovers(): number {
    return this.#failovers;
  }

  get seenRevision(): number {
    return this.#seenRevision;
  }

  get options(): ConnectionOptions {
    return this.#options;
  }

  /** Records a response header's revision. */
  saw(header: PbHeader | null | undefined): number {
    const rev = header === null || header === undefined ? 0 : Number(header.revision);
    if (rev > this.#seenRevision) this.#seenRevision = rev;
    return rev;
  }

  /** Called (synchronously) whenever the current member changes. */
  onFailover(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * `member` failed: if it is still the current one, move on to the next member that is not known to
   * be down (in order, wrapping; if all look down, simply the next).
   */
  failed(member: Member): void {
    if (this.#closed || this.#members.length < 2 || this.current !== member) return;
    const n = this.#members.length;
    let next = (this.#current + 1) % n;
    for (let i = 1; i < n; i++) {
      const cand = (this.#current + i) % n;
      const state = this.#members[cand]!.channel.getConnectivityState(false);
      if (state !== grpc.connectivityState.TRANSIENT_FAILURE && state !== grpc.connectivityState.SHUTDOWN) {
        next = cand;
        break;
      }
    }
    this.#current = next;
    this.#failovers++;
    for (const l of this.#listeners) l();
  }

  /** Opens a bidirectional stream (Watch.Watch, Lease.LeaseKeepAlive) on `member`. */
  stream<Req, Res>(member: Member, service: 'watch' | 'lease', method: 'Watch' | 'LeaseKeepAlive'): grpc.ClientDuplexStream<Req, Res> {
    const client = member[service] as unknown as Record<string, (md: grpc.Metadata) => grpc.ClientDuplexStream<Req, Res>>;
    return client[method]!.call(client, this.metadata());
  }

  /** Metadata for every call: refuse at once on a member without a leader. */
  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('hasleader', 'true');
    return md;
  }

  /**
   * One unary call with fail-over (see the table in the module comment). Rejects with the raw gRPC
   * error when etcd answered (the caller maps it), `StoreUnavailableError` when no member could be
   * reached in time, `AbortedError`, or `StoreClosedError`.
   */
  async unary<Res>(service: 'kv' | 'lease' | 'maintenance', method: string, request: unknown, options: UnaryOptions): Promise<Res> {
    const budget = this.#options.requestTimeoutMs;
    const deadline = Date.now() + budget;
    let lastError: unknown;
    let maybeSent = false;
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) throw new StoreClosedError();
      if (options.signal?.aborted === true) throw new AbortedError();
      const member = this.current;
      const attemptDeadline = Math.min(deadline, Date.now() + this.#options.attemptTimeoutMs);
      try {
        return await this.#once<Res>(member, service, method, request, attemptDeadline, options);
      } catch (err) {
        if (!isTransportError(err)) throw err;
        lastError = err;
        this.failed(member);
        const unsent = surelyNotApplied(err);
        if (!unsent) maybeSent = true;
        if (options.retry === 'unsent' && !unsent) {
          throw new StoreUnavailableError(
            `etcd member ${member.address} failed while a ${method} was in flight (${detailsOf(err)}): it may or may not have been applied`,
            true,
            { cause: err },
          );
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      // A different member is worth trying at once; the same one (single endpoint) after a pause.
      const pause = this.#members.length > 1 && attempt < this.#members.length ? 0 : Math.min(left, 50 * 2 ** Math.min(attempt, 5));
      if (pause > 0) await sleep(pause, options.signal);
      if (Date.now() >= deadline) break;
    }
    throw new StoreUnavailableError(
      `no etcd member answered ${method} within ${budget} ms (tried ${this.#members.map((m) => m.address).join(', ')}): ${detailsOf(lastError)}`,
      options.write && maybeSent,
      { cause: lastError },
    );
  }

  #once<Res>(member: Member, service: 'kv' | 'lease' | 'maintenance', method: string, request: unknown, deadline: number, options: UnaryOptions): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const client = member[service];
      const fn = client[method];
      if (fn === undefined) return reject(new Error(`etcd client has no method ${service}.${method}`));
      let onAbort: (() => void) | undefined;
      const call = fn.call(client, request, this.metadata(), { deadline }, (err, res) => {
        if (onAbort !== undefined) options.signal?.removeEventListener('abort', onAbort);
        if (err !== null) {
          if (err.code === grpc.status.CANCELLED && options.signal?.aborted === true) return reject(new AbortedError());
          return reject(err);
        }
        const header = (res as { header?: PbHeader } | undefined)?.header;
        this.saw(header);
        resolve(res as Res);
      });
      if (options.cancelInFlight && options.signal !== undefined) {
        onAbort = () => call.cancel();
        options.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /** Waits until some member answers a Status call (the store's open check). */
  async check(dialTimeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + dialTimeoutMs;
    const errors: string[] = [];
    for (let left = this.#members.length; left > 0; left--) {
      const member = this.current;
      try {
        // A linearizable read: it needs a member with a leader, which is what the store will need.
        const opts: UnaryOptions = { signal, retry: 'always', cancelInFlight: true, write: false };
        // A member that swallows packets must not use up the time the others need.
        const until = Date.now() + Math.max(1, Math.floor((deadline - Date.now()) / left));
        await this.#once(member, 'kv', 'Range', { key: Buffer.from([0]), limit: 1, keys_only: true }, until, opts);
        return;
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        errors.push(`${member.address}: ${detailsOf(err)}`);
        this.failed(member);
        if (this.#members.length === 1 || Date.now() >= deadline) break;
      }
    }
    throw new StoreUnavailableError(`cannot reach etcd within ${dialTimeoutMs} ms: ${errors.join('; ')}`);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const m of this.#members) {
      m.kv.close();
      m.watch.close();
      m.lease.close();
      m.maintenance.close();
      m.channel.close();
    }
  }
}
