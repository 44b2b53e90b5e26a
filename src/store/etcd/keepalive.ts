/**
 * Lease renewals (`Store.keepAlive`) over etcd's LeaseKeepAlive streams: a renewal is one message on
 * a long-lived stream instead of one request, as etcd's own client does, and a lease's answers come
 * back in the order asked (etcd serves one stream's requests one at a time), so waiters are kept in a
 * FIFO per lease id.
 *
 * Half-open connections: a member that stops answering without closing the connection (a frozen
 * process, a dropped network path) would leave renewals waiting while the lease runs out. The store's
 * sweep calls `sweep()`; a stream whose oldest unanswered renewal is older than the attempt timeout
 * is declared dead, its member reported failed, and its renewals re-sent on a new stream to the next
 * member, within each renewal's overall budget. When the budget runs out the renewal rejects with a
 * retryable `StoreUnavailableError`; when etcd answers TTL 0 (the lease expired meanwhile) the caller
 * gets `LeaseNotFoundError`, and the lease's owner re-grants and re-puts (as the SDK's registration
 * does on a 404).
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { AbortedError, StoreClosedError, StoreUnavailableError } from '../../errors/index.js';
import { detailsOf, type Connection, type Member, type PbLeaseKeepAliveResponse } from './client.js';

/** Streams per member: etcd serves each stream's renewals one after another. */
const STREAMS = 2;

type Call = ClientDuplexStream<{ ID: string }, PbLeaseKeepAliveResponse>;

interface Renewal {
  readonly id: string;
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** When it was last sent (on the stream it waits on). */
  sentAt: number;
  stream: Stream | undefined;
  lastError: string;
  resolve(ttl: number): void;
  reject(err: Error): void;
}

interface Stream {
  readonly member: Member;
  readonly call: Call;
  /** Renewals sent on this stream and not yet answered, by lease id, oldest first. */
  readonly waiting: Map<string, Renewal[]>;
  pending: number;
  dead: boolean;
}

export class KeepAlives {
  readonly #conn: Connection;
  #streams: Stream[] = [];
  #closed = false;

  constructor(conn: Connection) {
    this.#conn = conn;
  }

  /** Renews `id`; resolves with the TTL etcd answered (0 or less: the lease is gone). */
  renew(id: string, signal: AbortSignal | undefined): Promise<number> {
    if (this.#closed) return Promise.reject(new StoreClosedError());
    if (signal?.aborted === true) return Promise.reject(new AbortedError());
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        this.#unlink(r);
        reject(new AbortedError());
      };
      const r: Renewal = {
        id,
        deadline: Date.now() + this.#conn.options.requestTimeoutMs,
        signal,
        sentAt: 0,
        stream: undefined,
        lastError: '',
        resolve: (ttl) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ttl);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#send(r);
    });
  }

  /** Declares streams with a renewal unanswered past the attempt timeout dead; fails renewals out of budget. */
  sweep(now: number): void {
    const limit = this.#conn.options.attemptTimeoutMs;
    for (const s of this.#streams) {
      if (s.dead) continue;
      let oldest = Infinity;
      for (const list of s.waiting.values()) if (list.length > 0 && list[0]!.sentAt < oldest) oldest = list[0]!.sentAt;
      if (now - oldest > limit) this.#kill(s, `no answer to a lease renewal within ${limit} ms`);
    }
  }

  close(): void {
    this.#closed = true;
    for (const s of [...this.#streams]) this.#kill(s, 'the store was closed', new StoreClosedError());
  }

  #send(r: Renewal): void {
    if (this.#closed) return r.reject(new StoreClosedError());
    if (Date.now() >= r.deadline) {
      return r.reject(
        new StoreUnavailableError(`no etcd member renewed lease ${r.id} within ${this.#conn.options.requestTimeoutMs} ms${r.lastError === '' ? '' : `: ${r.lastError}`}`),
      );
    }
    const s = this.#stream();
    let list = s.waiting.get(r.id);
    if (list === undefined) s.waiting.set(r.id, (list = []));
    list.push(r);
    s.pending++;
    r.stream = s;
    r.sentAt = Date.now();
    s.call.write({ ID: r.id });
  }

  /** The least busy live stream on the current member, opening one if there are fewer than STREAMS. */
  #stream(): Stream {
    const member = this.#conn.current;
    let best: Stream | undefined;
    let count = 0;
    for (const s of this.#streams) {
      if (s.dead || s.member !== member) continue;
      count++;
      if (best === undefined || s.pending < best.pending) best = s;
    }
    if (best !== undefined && (best.pending === 0 || count >= STREAMS)) return best;
    const call: Call = this.#conn.stream(member, 'lease', 'LeaseKeepAlive');
    const s: Stream = { member, call, waiting: new Map(), pending: 0, dead: false };
    call.on('data', (res: PbLeaseKeepAliveResponse) => {
      this.#conn.saw(res.header);
      const list = s.waiting.get(res.ID);
      const r = list?.shift();
      if (list !== undefined && list.length === 0) s.waiting.delete(res.ID);
      if (r === undefined) return;
      s.pending--;
      r.stream = undefined;
      r.resolve(Number(res.TTL));
    });
    call.on('error', (err: unknown) => this.#kill(s, detailsOf(err)));
    call.on('end', () => this.#kill(s, 'the member ended the keep-alive stream'));
    this.#streams.push(s);
    return s;
  }

  /** Ends a stream; its renewals go again on another stream (or fail with `error`). */
  #kill(s: Stream, reason: string, error?: Error): void {
    if (s.dead) return;
    s.dead = true;
    this.#streams = this.#streams.filter((x) => x !== s);
    s.call.removeAllListeners();
    s.call.on('error', () => undefined);
    s.call.cancel();
    if (error === undefined) this.#conn.failed(s.member);
    const orphans = [...s.waiting.values()].flat();
    s.waiting.clear();
    s.pending = 0;
    for (const r of orphans) {
      r.stream = undefined;
      r.lastError = `${s.member.address}: ${reason}`;
      if (error !== undefined) r.reject(error);
      else this.#send(r);
    }
  }

  #unlink(r: Renewal): void {
    const s = r.stream;
    if (s === undefined) return;
    const list = s.waiting.get(r.id);
    const i = list?.indexOf(r) ?? -1;
    // The answer to this send will still come: leave a placeholder so the FIFO stays aligned.
    if (list !== undefined && i >= 0) list[i] = { ...r, resolve: () => undefined, reject: () => undefined };
    r.stream = undefined;
  }
}
