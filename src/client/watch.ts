/**
 * A resumable watch over the control plane's Server-Sent Events stream (`GET /v1/watch`).
 *
 * It is an async iterable of {@link WatchMessage}s, pulled by its consumer: while the consumer is busy
 * the watch reads nothing more, TCP pushes back, and a server whose buffer for this subscriber fills
 * cuts it off with a resumable error, which the watch then resumes from. Nothing buffers without bound.
 *
 * States and transitions:
 *
 * | from        | to          | when                                                                        |
 * |-------------|-------------|-----------------------------------------------------------------------------|
 * | connecting  | live        | the server's `ready` arrives (yields `connected`)                          |
 * | connecting  | waiting     | no URL answers, a 5xx, or the stream ends first (yields `disconnected`)    |
 * | live        | waiting     | the stream ends or breaks, no byte for `heartbeatTimeout`, `WATCH_SLOW`    |
 * | waiting     | connecting  | the backoff delay has passed (full jitter, grows while attempts fail)      |
 * | any         | ended       | `compacted` (yielded, then the iterator ends), a 4xx, `close()`, abort     |
 *
 * Resuming: the watch tracks the next revision it wants. It asks for it with `Last-Event-ID: next-1`
 * (the server's "resume after"), or `?revision=next` on the first connection. Every event whose
 * revision is below the next wanted one is dropped, so a reconnect never delivers an event twice; the
 * server's replay from that revision means none is skipped.
 */
import { AbortedError, ClientClosedError, CompactedError, ControlPlaneError, isSpoflessError } from '../errors/index.js';
import { fullJitterBackoff, type Backoff, type RandomSource } from '../resilience/index.js';
import { errorFromBody, type Transport } from './http.js';
import { SseParser, type SseMessage } from './sse.js';
import type { WatchEvent } from './types.js';

/** What a watch yields. */
export type WatchMessage =
  /** A stream is open; the server was at `revision` when it opened. */
  | { readonly type: 'connected'; readonly revision: number; readonly url: string }
  /** Events of one revision (or of consecutive ones), in revision order. */
  | { readonly type: 'events'; readonly revision: number; readonly events: readonly WatchEvent[] }
  /**
   * The server says every matching event up to `revision` has been delivered: after a resume, the watch
   * is current even if no event comes (sent once the server's replay has caught up, or at once when
   * there was nothing to replay).
   */
  | { readonly type: 'progress'; readonly revision: number }
  /** The stream broke; the watch reconnects in `retryIn` ms. */
  | { readonly type: 'disconnected'; readonly error: unknown; readonly retryIn: number }
  /** The revision the watch wanted has been compacted: re-list, then watch again. The iterator ends. */
  | { readonly type: 'compacted'; readonly compactRevision: number; readonly requestedRevision: number };

/**
 * Options of a watch.
 *
 * @example
 * ```ts
 * const options: WatchOptions = { prefix: true, startRevision: list.revision + 1, heartbeatTimeout: 45_000 };
 * ```
 */
export interface WatchOptions {
  /** Watch every key starting with the given key (default true). */
  readonly prefix?: boolean;
  /** The first revision to deliver. Default: only changes after the stream opens. */
  readonly startRevision?: number;
  /** Ask for each event's previous value. */
  readonly prevKv?: boolean;
  /** Ends the watch (same as `close()`). */
  readonly signal?: AbortSignal;
  /** Waits between reconnection attempts. Default full jitter, base 250 ms, cap 10 s. */
  readonly backoff?: Backoff;
  /** A stream with no byte (event or `: ping`) for this long is deemed dead. Default 45 000 ms (3 pings). */
  readonly heartbeatTimeout?: number;
  /** Random numbers for the default backoff (tests). */
  readonly random?: RandomSource;
}

/** A connection must last this long for the backoff to start over (a server that accepts then drops must not be hammered). */
const STABLE_MS = 1_000;

/**
 * @example
 * ```ts
 * const watch = client.watch('/config/', { startRevision: list.revision + 1 });
 * for await (const msg of watch) {
 *   if (msg.type === 'events') for (const e of msg.events) console.log(msg.revision, e.type, e.kv.key);
 * }
 * ```
 */
export class Watch implements AsyncIterable<WatchMessage> {
  readonly key: string;
  readonly #transport: Transport;
  readonly #prefix: boolean;
  readonly #prevKv: boolean;
  readonly #backoff: Backoff;
  readonly #heartbeat: number;
  readonly #life = new AbortController();
  #next: number | undefined;
  #connected = false;
  #started = false;
  #lastContact = 0;

  /** Internal: made by `ControlPlaneClient.watch()`. */
  constructor(transport: Transport, key: string, options: WatchOptions = {}) {
    this.#transport = transport;
    this.key = key;
    this.#prefix = options.prefix ?? true;
    this.#prevKv = options.prevKv ?? false;
    this.#backoff = options.backoff ?? fullJitterBackoff({ base: 250, cap: 10_000, ...(options.random ? { random: options.random } : {}) });
    this.#heartbeat = options.heartbeatTimeout ?? 45_000;
    this.#next = options.startRevision;
    const signal = options.signal;
    if (signal !== undefined) {
      if (signal.aborted) this.#life.abort(signal.reason);
      else signal.addEventListener('abort', () => this.close(), { once: true });
    }
  }

  /** The next revision the watch wants (last delivered + 1), once known. */
  get nextRevision(): number | undefined {
    return this.#next;
  }

  /** True while a stream is open and the server has said `ready`. */
  get connected(): boolean {
    return this.#connected;
  }

  /** `Date.now()` of the last byte received from the control plane; 0 if none yet. */
  get lastContact(): number {
    return this.#lastContact;
  }

  /** Ends the watch: the open stream is closed, a pending wait ends, the iterator finishes. */
  close(): void {
    this.#life.abort(new ClientClosedError('the watch was closed'));
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchMessage> {
    if (this.#started) throw new ClientClosedError('a watch can be iterated once: make a new one to watch again');
    this.#started = true;
    return this.#run();
  }

  async *#run(): AsyncGenerator<WatchMessage, void, undefined> {
    let attempt = 0;
    let previousDelay = 0;
    const life = this.#life.signal;
    try {
      while (!life.aborted && !this.#transport.closed) {
        const conn = new AbortController();
        const onLife = (): void => conn.abort(life.reason);
        life.addEventListener('abort', onLife, { once: true });
        let openedAt = 0;
        let failure: unknown;
        try {
          const res = await this.#open(conn.signal);
          if (res.status === 410) {
            const err = errorFromBody(410, await res.json().catch(() => undefined), `GET /v1/watch ${this.key}`);
            yield this.#compacted(err);
            return;
          }
          if (res.status >= 400 && res.status < 500) {
            // A bad prefix or key: the same request would fail again. End with the server's error.
            throw errorFromBody(res.status, await res.json().catch(() => undefined), `GET /v1/watch ${this.key}`);
          }
          if (res.status !== 200 || res.body === null) {
            await res.body?.cancel().catch(() => undefined);
            failure = errorFromBody(res.status, undefined, `GET /v1/watch ${this.key}`);
          } else {
            for await (const msg of this.#read(res.body, conn)) {
              if (msg.type === 'connected') openedAt = Date.now();
              if (msg.type === 'compacted') {
                yield msg;
                return;
              }
              if (msg.type === 'slow') {
                failure = msg.error;
                break;
              }
              yield msg;
            }
            failure ??= new Error('the control plane ended the watch stream');
          }
        } catch (error) {
          if (life.aborted) return;
          if (error instanceof ControlPlaneError && error.status < 500 && error.status !== 410) throw error;
          failure = error;
        } finally {
          life.removeEventListener('abort', onLife);
          conn.abort();
          this.#connected = false;
        }
        if (life.aborted) return;
        if (openedAt !== 0 && Date.now() - openedAt >= STABLE_MS) {
          attempt = 0;
          previousDelay = 0;
        }
        const delay = this.#backoff.delay(attempt++, previousDelay);
        previousDelay = delay;
        yield { type: 'disconnected', error: failure, retryIn: Math.round(delay) };
        await sleep(delay, life);
      }
    } finally {
      this.#connected = false;
      this.#life.abort(new ClientClosedError('the watch ended'));
    }
  }

  #compacted(err: ControlPlaneError): WatchMessage {
    const compactRevision = Number(err.details.compactRevision ?? 0);
    return { type: 'compacted', compactRevision, requestedRevision: this.#next ?? 0 };
  }

  async #open(signal: AbortSignal): Promise<Response> {
    const query: Record<string, string | boolean | number | undefined> = this.#prefix ? { prefix: this.key } : { key: this.key };
    if (this.#prevKv) query.prevKv = true;
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    const next = this.#next;
    if (next !== undefined) {
      if (next > 1) headers['last-event-id'] = String(next - 1);
      else query.revision = next;
    }
    return this.#transport.stream('GET', '/v1/watch', { query, headers, signal }, this.#transport.timeout);
  }

  /** Reads one stream; yields parsed messages. Returns when the stream ends. */
  async *#read(
    body: ReadableStream<Uint8Array>,
    conn: AbortController,
  ): AsyncGenerator<WatchMessage | { type: 'slow'; error: unknown }, void, undefined> {
    const pending: SseMessage[] = [];
    const parser = new SseParser({ onMessage: (m) => pending.push(m) });
    const url = this.#transport.url;
    const timer = setTimeout(() => {
      // A silent server (stopped, or cut off by a half-open connection): reconnect to the next URL.
      this.#transport.failed(url);
      conn.abort(new Error(`no byte from the control plane for ${this.#heartbeat} ms`));
    }, this.#heartbeat);
    timer.unref();
    const reader = body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.#lastContact = Date.now();
        timer.refresh();
        parser.push(value);
        while (pending.length > 0) {
          const out = this.#handle(pending.shift()!, url);
          if (out !== undefined) {
            yield out;
            if (out.type === 'compacted' || out.type === 'slow') return;
          }
        }
      }
    } finally {
      clearTimeout(timer);
      reader.cancel().catch(() => undefined);
      reader.releaseLock();
    }
  }

  #handle(m: SseMessage, url: string): WatchMessage | { type: 'slow'; error: unknown } | undefined {
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(m.data) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    switch (m.event) {
      case 'ready': {
        const revision = Number(data.revision);
        this.#next ??= revision + 1;
        this.#connected = true;
        return { type: 'connected', revision, url };
      }
      case 'events': {
        const revision = Number(data.revision);
        const all = Array.isArray(data.events) ? (data.events as WatchEvent[]) : [];
        const next = this.#next ?? 0;
        // Drop what was already delivered (a resume that replays from an earlier revision).
        const events = all.filter((e) => (e.kv?.modRevision ?? revision) >= next);
        const top = all.reduce((max, e) => Math.max(max, e.kv?.modRevision ?? 0), revision);
        if (top >= next) this.#next = top + 1;
        if (events.length === 0) return undefined;
        return { type: 'events', revision, events };
      }
      case 'progress': {
        const revision = Number(data.revision);
        if (!Number.isSafeInteger(revision) || revision < 0) return undefined;
        // Nothing up to it is missing: a later resume may start after it.
        if (revision + 1 > (this.#next ?? 0)) this.#next = revision + 1;
        return { type: 'progress', revision };
      }
      case 'compacted':
        return { type: 'compacted', compactRevision: Number(data.compactRevision ?? 0), requestedRevision: this.#next ?? 0 };
      case 'error':
        return { type: 'slow', error: new ControlPlaneError(200, typeof data.code === 'string' ? data.code : undefined, typeof data.message === 'string' ? data.message : 'the control plane ended the watch stream', data) };
      default:
        return undefined;
    }
  }
}

/** Turns the compacted message into the error a consumer would throw. */
export function compactedError(msg: { compactRevision: number; requestedRevision: number }): CompactedError {
  return new CompactedError(msg.requestedRevision, msg.compactRevision);
}

/** Waits `ms`, or less if `signal` aborts; never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** True for errors that mean the caller ended the call. */
export function isClosedOrAborted(error: unknown): boolean {
  return error instanceof AbortedError || isSpoflessError(error, ClientClosedError.code);
}
