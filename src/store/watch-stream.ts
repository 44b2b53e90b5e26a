/**
 * The consumer side of a watch: an async iterator over `WatchResponse`s fed by an engine, with bounded
 * memory. An engine that can replay history (the SQLite engine reads its revision log) gives a
 * `replay` function; the stream then never drops or repeats an event, however slow its consumer.
 *
 * State machine (`#state.value`):
 * | from    | on                                             | to                                   |
 * |---------|------------------------------------------------|--------------------------------------|
 * | replay  | `replay()` reports it reached the head          | live                                 |
 * | live    | buffer exceeds `maxBufferedEvents`             | replay, from the last revision taken |
 * | replay  | `replay()` throws (e.g. `CompactedError`)      | ended with that error                |
 * | any     | `close()`, `return()` (a `break`)              | ended, no error                      |
 * | any     | signal aborted                                 | ended with `AbortedError`            |
 * | any     | `end(err)` from the engine (store closed)      | ended with `err`                     |
 *
 * Revision bookkeeping: `#taken` is the last revision handed to the consumer (all matching events up to
 * it have been delivered); `#through` is the last revision already buffered or taken. Live events at or
 * below `#through` are ignored, which is what makes the replay → live hand-over free of duplicates.
 *
 * Progress (`progressNotify`): when a replay reaches the head, the consumer is handed `{ events: [],
 * revision: through }` after the replay's events (also when the last of them is the head itself), before
 * any live event. Nothing matching exists between the two, so it is exact.
 */
import { AbortedError } from '../errors/index.js';
import type { Watch, WatchEvent, WatchResponse } from './types.js';

/** What a replay read returns: events of whole revisions from `from` through `through`. */
export interface ReplayChunk {
  readonly events: readonly WatchEvent[];
  /** The last revision this read covered (events or not). */
  readonly through: number;
  /** True when `through` is the store's current revision: the stream may go live. */
  readonly caughtUp: boolean;
}

export interface WatchStreamOptions {
  /** First revision of interest. */
  readonly startRevision: number;
  /** Start by replaying history (the start revision is at or below the current one). */
  readonly replaying: boolean;
  readonly prevKv: boolean;
  /** Hand the consumer a progress response each time a replay reaches the head. */
  readonly progressNotify: boolean;
  readonly signal: AbortSignal | undefined;
  readonly maxBufferedEvents: number;
  /** Reads matching events from `from` on, synchronously, so no write can slip in between. */
  readonly replay: (stream: WatchStream, from: number) => ReplayChunk;
  /** Called once when the stream ends, to unregister it. */
  readonly detach: (stream: WatchStream) => void;
}

type State = { readonly value: 'live' } | { readonly value: 'replay' } | { readonly value: 'ended'; readonly error: Error | undefined };

interface Waiter {
  resolve(r: IteratorResult<WatchResponse>): void;
  reject(err: unknown): void;
}

const DONE: IteratorResult<WatchResponse> = { done: true, value: undefined };

export class WatchStream implements Watch, AsyncIterator<WatchResponse> {
  readonly prevKv: boolean;
  readonly #opts: WatchStreamOptions;
  #state: State;
  #taken: number;
  #through: number;
  #buffer: WatchEvent[] = [];
  /** A progress response due before the buffer's (live) events: the revision a replay caught up at. */
  #progress: number | undefined;
  #waiters: Waiter[] = [];
  #errorReported = false;
  readonly #onAbort: (() => void) | undefined;

  constructor(opts: WatchStreamOptions) {
    this.#opts = opts;
    this.prevKv = opts.prevKv;
    this.#taken = opts.startRevision - 1;
    this.#through = opts.startRevision - 1;
    this.#state = opts.replaying ? { value: 'replay' } : { value: 'live' };
    const signal = opts.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#onAbort = undefined;
        this.#finish(new AbortedError('the watch was aborted'));
      } else {
        this.#onAbort = () => this.#finish(new AbortedError('the watch was aborted'));
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    } else {
      this.#onAbort = undefined;
    }
  }

  /** True while live events should be offered (not replaying, not ended). */
  get live(): boolean {
    return this.#state.value === 'live';
  }

  get closed(): boolean {
    return this.#state.value === 'ended';
  }

  /** The engine hands over this stream's events of one commit (whole revisions, in order). */
  offer(events: readonly WatchEvent[]): void {
    if (this.#state.value !== 'live') return;
    let fresh = events;
    if (events.length > 0 && events[0]!.kv.modRevision <= this.#through) {
      fresh = events.filter((e) => e.kv.modRevision > this.#through);
    }
    if (fresh.length === 0) return;
    this.#through = fresh[fresh.length - 1]!.kv.modRevision;
    const waiter = this.#progress === undefined ? this.#waiters.shift() : undefined;
    if (waiter !== undefined) {
      this.#taken = this.#through;
      waiter.resolve({ done: false, value: { events: fresh, revision: this.#through } });
      return;
    }
    for (const e of fresh) this.#buffer.push(e);
    if (this.#buffer.length > this.#opts.maxBufferedEvents) {
      // A slow consumer: drop what it has not taken and read it back from history when it asks.
      this.#buffer = [];
      this.#progress = undefined;
      this.#through = this.#taken;
      this.#state = { value: 'replay' };
    }
  }

  /** Ends the stream from the engine's side (`undefined`: quietly). */
  end(error: Error | undefined): void {
    this.#finish(error);
  }

  close(): void {
    this.#finish(undefined);
  }

  next(): Promise<IteratorResult<WatchResponse>> {
    if (this.#progress !== undefined) return Promise.resolve(this.#takeProgress());
    if (this.#buffer.length > 0) return Promise.resolve(this.#take());
    const state = this.#state;
    if (state.value === 'ended') {
      if (state.error !== undefined && !this.#errorReported) {
        this.#errorReported = true;
        return Promise.reject(state.error);
      }
      return Promise.resolve(DONE);
    }
    if (state.value === 'replay') {
      let chunk: ReplayChunk;
      try {
        chunk = this.#opts.replay(this, this.#through + 1);
      } catch (err) {
        this.#finish(err instanceof Error ? err : new Error(String(err)));
        return this.next();
      }
      this.#through = chunk.through;
      if (chunk.caughtUp) this.#state = { value: 'live' };
      if (chunk.caughtUp && this.#opts.progressNotify) this.#progress = chunk.through;
      if (chunk.events.length > 0) {
        this.#buffer = chunk.events.slice();
        return Promise.resolve(this.#take());
      }
      if (this.#progress !== undefined) return Promise.resolve(this.#takeProgress());
      if (!chunk.caughtUp) return this.next();
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

  #take(): IteratorResult<WatchResponse> {
    const events = this.#buffer;
    this.#buffer = [];
    const revision = events[events.length - 1]!.kv.modRevision;
    this.#taken = revision;
    return { done: false, value: { events, revision } };
  }

  #takeProgress(): IteratorResult<WatchResponse> {
    const revision = this.#progress!;
    this.#progress = undefined;
    this.#taken = revision;
    return { done: false, value: { events: [], revision } };
  }

  #finish(error: Error | undefined): void {
    if (this.#state.value === 'ended') return;
    this.#state = { value: 'ended', error };
    this.#buffer = [];
    this.#progress = undefined;
    if (this.#onAbort !== undefined) this.#opts.signal?.removeEventListener('abort', this.#onAbort);
    this.#opts.detach(this);
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
