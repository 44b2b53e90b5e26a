/**
 * One `Store.watch` on etcd: its own gRPC Watch stream, resumed on another member when the one it is
 * on fails, from the revision after the last event it delivered.
 *
 * Why we track the revision ourselves: the `etcd3` client resumes a broken watch from the response
 * header's revision, which during a catch-up can be ahead of the events already sent, so events are
 * skipped. Here `#through` is the revision of the last event buffered (all matching events up to it
 * are in hand); a resumed stream starts at `#through + 1`, and anything at or below `#through` that
 * arrives again is dropped, so nothing is skipped or repeated. Progress responses (which in etcd 3.4
 * may run ahead of unsent events) never move `#through`: they only prove the stream is alive.
 *
 * State machine (`#state.value`):
 * | from       | on                                               | to                                        |
 * |------------|--------------------------------------------------|-------------------------------------------|
 * | connecting | `created` response                               | live                                      |
 * | connecting | stream fails, or no `created` within the attempt timeout | waiting (member reported failed)   |
 * | live       | stream fails, cancelled with "no leader", silent past two probes | waiting (member reported failed) |
 * | waiting    | its timer (at once when another member is current) | connecting, from `#through + 1`         |
 * | any        | cancelled with `compact_revision`                | ended with `CompactedError`               |
 * | any        | `close()`, `return()` (a `break`)                | ended, no error                           |
 * | any        | signal aborted                                   | ended with `AbortedError`                 |
 * | any        | store closed                                     | ended with `StoreClosedError`             |
 *
 * A slow consumer is never cut off: past `maxBufferedEvents` unread events the stream is paused, so
 * gRPC's flow control holds etcd back (etcd keeps the watcher as a "victim" and resends from history),
 * and it resumes once the consumer has taken the buffer.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { AbortedError, CompactedError, StoreUnavailableError } from '../../errors/index.js';
import type { KeyValue, Watch, WatchEvent, WatchResponse } from '../types.js';
import { detailsOf, isTransportError, type Connection, type Member, type PbKeyValue, type PbWatchRequest, type PbWatchResponse } from './client.js';

export interface EtcdWatchOptions {
  readonly conn: Connection;
  /** Namespaced key (or prefix) and range end (`undefined`: one key). */
  readonly key: Buffer;
  readonly rangeEnd: Buffer | undefined;
  /** `undefined`: from now on (as this client knows "now"). */
  readonly startRevision: number | undefined;
  readonly prevKv: boolean;
  readonly signal: AbortSignal | undefined;
  readonly maxBufferedEvents: number;
  /** How long a silent stream waits before a progress probe, and then for an answer. */
  readonly probeMs: number;
  readonly toKv: (kv: PbKeyValue) => KeyValue;
  /** Called once when the watch ends, to unregister it. */
  readonly detach: (watch: EtcdWatch) => void;
}

type Call = ClientDuplexStream<PbWatchRequest, PbWatchResponse>;

type State =
  | { readonly value: 'connecting'; readonly call: Call; readonly member: Member; readonly since: number }
  | { readonly value: 'live'; readonly call: Call; readonly member: Member; lastMessage: number; probeSent: number | undefined }
  | { readonly value: 'waiting'; readonly timer: NodeJS.Timeout | undefined }
  | { readonly value: 'ended'; readonly error: Error | undefined };

interface Waiter {
  resolve(r: IteratorResult<WatchResponse>): void;
  reject(err: unknown): void;
}

const DONE: IteratorResult<WatchResponse> = { done: true, value: undefined };
const MAX_BACKOFF_MS = 2_000;

export class EtcdWatch implements Watch, AsyncIterator<WatchResponse> {
  readonly #o: EtcdWatchOptions;
  #state: State;
  /** Last revision buffered or delivered; `undefined` until known (no start revision, not yet created). */
  #through: number | undefined;
  /** The start was "now", not asked for: a compacted "now" is retried from the real now. */
  #implicitStart: boolean;
  #buffer: WatchEvent[] = [];
  #waiters: Waiter[] = [];
  #errorReported = false;
  #paused = false;
  #failures = 0;
  readonly #onAbort: (() => void) | undefined;

  constructor(options: EtcdWatchOptions) {
    this.#o = options;
    const seen = options.conn.seenRevision;
    this.#implicitStart = options.startRevision === undefined;
    this.#through = options.startRevision !== undefined ? options.startRevision - 1 : seen > 0 ? seen : undefined;
    this.#state = { value: 'waiting', timer: undefined };
    const signal = options.signal;
    if (signal?.aborted === true) {
      this.#onAbort = undefined;
      this.#finish(new AbortedError('the watch was aborted'));
      return;
    }
    this.#onAbort = signal === undefined ? undefined : () => this.#finish(new AbortedError('the watch was aborted'));
    if (this.#onAbort !== undefined) signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#connect();
  }

  get closed(): boolean {
    return this.#state.value === 'ended';
  }

  /** The member this watch's stream is on, when it has one. */
  get member(): string | undefined {
    const s = this.#state;
    return s.value === 'connecting' || s.value === 'live' ? s.member.address : undefined;
  }

  /** Ends the watch from the store's side. */
  end(error: Error | undefined): void {
    this.#finish(error);
  }

  close(): void {
    this.#finish(undefined);
  }

  /**
   * Called by the store's sweep timer: probes a silent live stream, and gives up on one that stays
   * silent (a half-open connection: the member is gone but no RST came) or never got created.
   */
  sweep(now: number): void {
    const s = this.#state;
    const probe = this.#o.probeMs;
    if (s.value === 'connecting') {
      if (now - s.since > this.#o.conn.options.attemptTimeoutMs) this.#lost(s.call, s.member, `no answer to the watch request within ${this.#o.conn.options.attemptTimeoutMs} ms`);
      return;
    }
    if (s.value !== 'live' || this.#paused) return;
    if (s.probeSent === undefined) {
      if (now - s.lastMessage >= probe) {
        s.probeSent = now;
        s.call.write({ progress_request: {} });
      }
    } else if (now - s.probeSent >= probe) {
      this.#lost(s.call, s.member, `no answer to a progress request within ${probe} ms`);
    }
  }

  next(): Promise<IteratorResult<WatchResponse>> {
    if (this.#buffer.length > 0) return Promise.resolve(this.#take());
    const state = this.#state;
    if (state.value === 'ended') {
      if (state.error !== undefined && !this.#errorReported) {
        this.#errorReported = true;
        return Promise.reject(state.error);
      }
      return Promise.resolve(DONE);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<WatchResponse>> {
    this.close();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    return this;
  }

  // ---- the stream ----------------------------------------------------------------------------

  #connect(): void {
    if (this.#state.value === 'ended') return;
    const conn = this.#o.conn;
    if (conn.closed) return;
    const member = conn.current;
    const call: Call = conn.stream(member, 'watch', 'Watch');
    this.#state = { value: 'connecting', call, member, since: Date.now() };
    call.on('data', (res: PbWatchResponse) => this.#onData(call, member, res));
    call.on('error', (err: unknown) => this.#lost(call, member, detailsOf(err), err));
    call.on('end', () => this.#lost(call, member, 'the member ended the watch stream'));
    const start = this.#through === undefined ? 0 : this.#through + 1;
    call.write({
      create_request: {
        key: this.#o.key,
        ...(this.#o.rangeEnd !== undefined ? { range_end: this.#o.rangeEnd } : {}),
        start_revision: start,
        prev_kv: this.#o.prevKv,
      },
    });
  }

  #current(call: Call): boolean {
    const s = this.#state;
    return (s.value === 'connecting' || s.value === 'live') && s.call === call;
  }

  #onData(call: Call, member: Member, res: PbWatchResponse): void {
    if (!this.#current(call)) return;
    const conn = this.#o.conn;
    const headerRev = conn.saw(res.header);
    let s = this.#state as Extract<State, { value: 'connecting' | 'live' }>;
    if (res.created && s.value === 'connecting') {
      this.#failures = 0;
      // Started from "now" (revision 0): the events to come are those after this header's revision.
      if (this.#through === undefined) this.#through = headerRev;
      s = this.#state = { value: 'live', call, member, lastMessage: Date.now(), probeSent: undefined };
    }
    if (s.value === 'live') {
      s.lastMessage = Date.now();
      s.probeSent = undefined;
    }
    if (res.canceled) {
      const compacted = Number(res.compact_revision);
      if (compacted > 0) {
        if (this.#implicitStart) {
          // "From now" met a compacted "now" (this client's last known revision is old): start again from the real now.
          this.#through = undefined;
          this.#drop(call);
          this.#connect();
          return;
        }
        this.#finish(new CompactedError((this.#through ?? 0) + 1, compacted));
        return;
      }
      this.#lost(call, member, res.cancel_reason === '' ? 'the member cancelled the watch' : res.cancel_reason);
      return;
    }
    if (res.events.length === 0) return;
    const through = this.#through ?? 0;
    let last = through;
    for (const e of res.events) {
      const kv = this.#o.toKv(e.kv);
      if (kv.modRevision <= through) continue; // already delivered before a resume
      const event: WatchEvent =
        this.#o.prevKv && e.prev_kv !== null && e.prev_kv !== undefined
          ? { type: e.type === 'Put' ? 'put' : 'delete', kv, prevKv: this.#o.toKv(e.prev_kv) }
          : { type: e.type === 'Put' ? 'put' : 'delete', kv };
      this.#buffer.push(event);
      last = kv.modRevision;
    }
    if (last === through) return;
    this.#through = last;
    // Something was delivered: from now on a compacted resume point is a real gap.
    this.#implicitStart = false;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve(this.#take());
      return;
    }
    if (this.#buffer.length > this.#o.maxBufferedEvents && !this.#paused) {
      this.#paused = true;
      call.pause();
    }
  }

  /** The stream failed: report the member, then connect again (at once if another member is current). */
  #lost(call: Call, member: Member, reason: string, err?: unknown): void {
    if (!this.#current(call)) return;
    if (err !== undefined && !isTransportError(err)) {
      // etcd refused the watch itself (e.g. permission denied): retrying would not help.
      this.#drop(call);
      this.#finish(new StoreUnavailableError(`etcd refused the watch: ${reason}`, false, { cause: err, retryable: false }));
      return;
    }
    this.#drop(call);
    const conn = this.#o.conn;
    conn.failed(member);
    const delay = conn.current !== member ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(this.#failures, 5));
    this.#failures++;
    const timer = setTimeout(() => this.#connect(), delay);
    timer.unref();
    this.#state = { value: 'waiting', timer };
  }

  #drop(call: Call): void {
    call.removeAllListeners('data');
    call.removeAllListeners('end');
    call.removeAllListeners('error');
    // After cancel() the call still emits 'error' (CANCELLED): an unhandled one would crash.
    call.on('error', () => undefined);
    call.cancel();
    if (this.#paused) this.#paused = false;
  }

  #take(): IteratorResult<WatchResponse> {
    const events = this.#buffer;
    this.#buffer = [];
    if (this.#paused) {
      this.#paused = false;
      const s = this.#state;
      if (s.value === 'live' || s.value === 'connecting') {
        s.call.resume();
        if (s.value === 'live') s.lastMessage = Date.now();
      }
    }
    return { done: false, value: { events, revision: events[events.length - 1]!.kv.modRevision } };
  }

  #finish(error: Error | undefined): void {
    const s = this.#state;
    if (s.value === 'ended') return;
    if (s.value === 'waiting') clearTimeout(s.timer);
    else this.#drop(s.call);
    this.#state = { value: 'ended', error };
    this.#buffer = [];
    if (this.#onAbort !== undefined) this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#o.detach(this);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (error !== undefined && !this.#errorReported) {
        this.#errorReported = true;
        w.reject(error);
      } else {
        w.resolve(DONE);
      }
    }
  }
}
