/**
 * Watch fan-out: one store watch per watched (key or prefix, prevKv) pair, shared by every SSE
 * subscriber of it. A write wakes only the store watches whose key or prefix it touches (the store's
 * watch index sees to that), and each of those serializes an event batch once per encoding and writes
 * the same frame to each of its subscribers. 1,000 subscribers of one prefix cost one store watch.
 *
 * A shared watch starts "from now" and delivers every matching event after `through` (the last revision
 * it fanned out). A subscriber that asks to start at an older revision first gets its own catch-up store
 * watch, paced by its socket (it waits for `drain`, so it is never cut off), and joins the shared watch
 * as soon as it has sent everything up to the shared watch's `through`. From then on the shared watch
 * delivers only later revisions, and a subscriber drops any revision it already sent, so the hand-over
 * has no gap and no duplicate.
 *
 * Frames are capped at `maxFrameBytes` (1 MiB): a batch larger than that (a long catch-up, a burst of
 * writes) goes out as several `events` frames, cut between revisions, each with the `id` of the last
 * revision it holds, so a client that breaks off between two of them resumes exactly after the last one
 * it got. A single revision larger than the cap (a transaction writing many big values) is one frame:
 * it cannot be cut without giving an `id` to half a revision.
 *
 * A subscriber that resumes (asks for a start revision) is told when it is current: a `progress` frame
 * `{"revision": R}` (every matching event up to R has been sent) right after `ready` when the store has
 * nothing at or after its start revision, or when its catch-up has reached the shared watch. Without
 * it, a resumed watcher whose prefix saw no writes while it was away could not tell "nothing happened"
 * from "the replay has not come yet". On a store with `watchProgress` (SQLite) the catch-up watch asks
 * for progress responses, so a replay that finds nothing matching (only other keys moved) ends at once;
 * on etcd such a replay ends with the next matching event.
 *
 * A live subscriber whose unread bytes pass `maxBufferedBytes` when the next frame is due is cut off
 * with `event: error` / `SPOF_ERR_WATCH_SLOW` and the revision to resume from, instead of being buffered
 * without bound. Nothing else slows down for it: the shared watch never waits for a socket.
 *
 * Subscriber states (`#state.value`):
 * | from        | on                                                   | to           |
 * |-------------|------------------------------------------------------|--------------|
 * | (new)       | starts from now, or after the shared watch's through | live         |
 * | (new)       | starts at or before the shared watch's through       | catching-up  |
 * | catching-up | has sent up to the shared watch's through            | live         |
 * | catching-up | its start revision was compacted                     | ended (`compacted` sent) |
 * | live        | unread bytes over the bound when a frame is due      | ended (`SPOF_ERR_WATCH_SLOW` sent) |
 * | any         | client disconnects, hub closes, shared watch fails   | ended        |
 */
import { CompactedError, ErrorCode, HttpRequestError, InvalidOptionError, StoreClosedError, describe } from '../errors/index.js';
import type { Store, Watch, WatchEvent, WatchResponse } from '../store/index.js';
import { eventJson, type Encoding } from './codec.js';
import { PING_FRAME, SseStream, compactedFrame, eventsFrame, progressFrame, readyFrame, slowFrame } from './sse.js';
import type { ServerResponse } from 'node:http';

export interface WatchHubOptions {
  readonly store: Store;
  /** Unread bytes a live subscriber may have when the next frame is due before it is cut off. Default 4 MiB. */
  readonly maxBufferedBytes?: number;
  /** How often an idle stream gets a `: ping` comment (ms). Default 15,000. */
  readonly pingIntervalMs?: number;
  /** Largest `events` frame (bytes of its data) before a batch is cut between revisions. Default 1 MiB. */
  readonly maxFrameBytes?: number;
}

/** What a subscriber asks for. */
export interface WatchRequest {
  readonly key: string | Uint8Array;
  readonly prefix: boolean;
  readonly prevKv: boolean;
  readonly encoding: Encoding;
  /** The first revision wanted; `undefined`: only events after the subscription. */
  readonly startRevision: number | undefined;
}

/** How a subscription ended, for the request log. */
export interface WatchEnd {
  readonly reason: 'client-closed' | 'slow' | 'compacted' | 'hub-closed' | 'store-closed' | 'error';
  /** Event frames sent. */
  readonly frames: number;
  /** The last revision sent (or the revision before the start when none was). */
  readonly sent: number;
}

export interface WatchHubStats {
  /** Store watches shared by live subscribers (one per watched key/prefix and prevKv). */
  readonly sharedWatches: number;
  /** Store watches of subscribers still catching up from an older revision. */
  readonly catchUpWatches: number;
  /** Open SSE streams. */
  readonly subscribers: number;
  /** Subscribers cut off for reading too slowly, since the hub started. */
  readonly slowCutOffs: number;
}

function sharedId(key: Uint8Array, prefix: boolean, prevKv: boolean): string {
  return `${prefix ? 'p' : 'k'}${prevKv ? '1' : '0'}:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')}`;
}

function toBytes(key: string | Uint8Array): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** One response's frames, serialized at most once per encoding, shared by every subscriber. */
class Frames {
  readonly #resp: WatchResponse;
  readonly #max: number;
  #utf8: string | undefined;
  #base64: string | undefined;
  constructor(resp: WatchResponse, maxFrameBytes: number) {
    this.#resp = resp;
    this.#max = maxFrameBytes;
  }
  get(encoding: Encoding): string {
    if (encoding === 'utf8') return (this.#utf8 ??= framesOf(this.#resp.revision, this.#resp.events, 'utf8', this.#max));
    return (this.#base64 ??= framesOf(this.#resp.revision, this.#resp.events, 'base64', this.#max));
  }
}

/**
 * The `events` frame(s) of a batch of whole revisions: one frame, or, when its data would pass
 * `maxBytes`, several, cut between revisions, each with its own last revision as `revision` and `id`.
 */
export function framesOf(revision: number, events: readonly WatchEvent[], encoding: Encoding, maxBytes: number): string {
  const parts = events.map((e) => JSON.stringify(eventJson(e, encoding)));
  let chars = 0;
  for (const p of parts) chars += p.length + 1;
  const joined = parts.join(',');
  // Fast path: clearly under the cap (a UTF-16 unit is at most 3 bytes of UTF-8).
  if ((chars + 40) * 3 <= maxBytes || Buffer.byteLength(joined) + 40 <= maxBytes) {
    return eventsFrame(revision, `{"revision":${revision},"events":[${joined}]}`);
  }
  let out = '';
  let frame: string[] = [];
  let frameBytes = 0;
  let frameRev = 0;
  const flush = (): void => {
    if (frame.length === 0) return;
    out += eventsFrame(frameRev, `{"revision":${frameRev},"events":[${frame.join(',')}]}`);
    frame = [];
    frameBytes = 0;
  };
  for (let i = 0; i < events.length; ) {
    // One whole revision: the events sharing its modRevision (a delete's kv carries its revision too).
    const rev = events[i]!.kv.modRevision;
    let j = i;
    let bytes = 0;
    while (j < events.length && events[j]!.kv.modRevision === rev) bytes += Buffer.byteLength(parts[j++]!) + 1;
    if (frame.length > 0 && frameBytes + bytes + 40 > maxBytes) flush();
    for (let k = i; k < j; k++) frame.push(parts[k]!);
    frameBytes += bytes;
    frameRev = rev;
    i = j;
  }
  flush();
  return out;
}

class SharedWatch {
  readonly id: string;
  /** The last revision fanned out (or the one before the start). */
  through: number;
  /** Subscribers receiving from this watch. */
  readonly live = new Set<Subscriber>();
  /** Every subscriber that will receive from it: live ones and those catching up to it. */
  readonly members = new Set<Subscriber>();
  readonly watch: Watch;
  readonly #hub: WatchHub;

  constructor(hub: WatchHub, id: string, watch: Watch, startRevision: number) {
    this.#hub = hub;
    this.id = id;
    this.watch = watch;
    this.through = startRevision - 1;
  }

  async run(): Promise<void> {
    let failure: unknown;
    try {
      for await (const resp of this.watch) {
        this.through = resp.revision;
        const frames = new Frames(resp, this.#hub.maxFrameBytes);
        for (const sub of this.live) sub.deliver(resp, frames);
      }
    } catch (err) {
      failure = err;
    } finally {
      this.#hub.dropShared(this);
      for (const sub of [...this.members]) sub.failed(failure);
    }
  }

  leave(sub: Subscriber): void {
    this.live.delete(sub);
    this.members.delete(sub);
    if (this.members.size === 0) {
      this.#hub.dropShared(this);
      this.watch.close();
    }
  }
}

type SubscriberState =
  | { readonly value: 'catching-up'; readonly watch: Watch }
  | { readonly value: 'live' }
  | { readonly value: 'ended' };

class Subscriber {
  readonly #hub: WatchHub;
  readonly #store: Store;
  readonly #req: WatchRequest;
  readonly #stream: SseStream;
  readonly #shared: SharedWatch;
  readonly #onEnd: (end: WatchEnd) => void;
  #state: SubscriberState = { value: 'live' };
  /** Every matching event up to this revision has been written to the stream. */
  sent: number;
  #frames = 0;

  constructor(hub: WatchHub, store: Store, req: WatchRequest, stream: SseStream, shared: SharedWatch, sent: number, onEnd: (end: WatchEnd) => void) {
    this.#hub = hub;
    this.#store = store;
    this.#req = req;
    this.#stream = stream;
    this.#shared = shared;
    this.sent = sent;
    this.#onEnd = onEnd;
    shared.members.add(this);
    stream.onClose(() => this.#end('client-closed'));
  }

  get stream(): SseStream {
    return this.#stream;
  }

  get catchingUp(): boolean {
    return this.#state.value === 'catching-up';
  }

  joinLive(): void {
    if (this.#state.value === 'ended') return;
    this.#state = { value: 'live' };
    this.#shared.live.add(this);
  }

  /** Replays from `start` on its own store watch, paced by the socket, then joins the shared watch. */
  async catchUp(start: number): Promise<void> {
    // With progress from the store, a replay that finds nothing for this prefix (other keys moved the
    // store meanwhile) still ends at once: the progress response says it reached the head.
    const progressNotify = this.#store.watchProgress;
    const watch = this.#store.watch(this.#req.key, { prefix: this.#req.prefix, prevKv: this.#req.prevKv, startRevision: start, progressNotify });
    this.#state = { value: 'catching-up', watch };
    try {
      for await (const resp of watch) {
        if (this.#state.value !== 'catching-up') return;
        if (resp.events.length === 0) this.sent = Math.max(this.sent, resp.revision);
        else this.#write(resp.revision, resp.events, undefined);
        if (this.sent >= this.#shared.through) {
          this.joinLive();
          // Caught up: tell the client, so it knows it is current even if nothing more comes.
          this.#stream.write(progressFrame(this.sent));
          return;
        }
        if (this.#stream.buffered > 0 && !(await this.#stream.drained())) return;
      }
    } catch (err) {
      this.failed(err);
    } finally {
      watch.close();
    }
  }

  /** A batch from the shared watch. */
  deliver(resp: WatchResponse, frames: Frames): void {
    if (resp.revision <= this.sent) return;
    const limit = this.#hub.maxBufferedBytes;
    const buffered = this.#stream.buffered;
    if (buffered > limit) {
      this.#hub.countSlow();
      this.#end('slow', slowFrame(this.sent + 1, buffered, limit));
      return;
    }
    this.#write(resp.revision, resp.events, frames);
  }

  #write(revision: number, events: readonly WatchEvent[], frames: Frames | undefined): void {
    let frame: string;
    const max = this.#hub.maxFrameBytes;
    if (events[0]!.kv.modRevision <= this.sent) {
      // Straddles the hand-over from catch-up to shared: only what was not sent yet.
      frame = framesOf(revision, events.filter((e) => e.kv.modRevision > this.sent), this.#req.encoding, max);
    } else {
      frame = frames === undefined ? framesOf(revision, events, this.#req.encoding, max) : frames.get(this.#req.encoding);
    }
    this.#stream.write(frame);
    this.sent = revision;
    this.#frames++;
  }

  ping(): void {
    if (this.#state.value === 'ended' || this.#stream.buffered > 0) return;
    this.#stream.write(PING_FRAME);
  }

  /** Its watch (shared or own) ended with `err` (or quietly). */
  failed(err: unknown): void {
    if (err instanceof CompactedError) {
      this.#end('compacted', compactedFrame(err.compactRevision, err.requestedRevision));
    } else if (err === undefined || err instanceof StoreClosedError) {
      this.#end(err === undefined ? 'hub-closed' : 'store-closed');
    } else {
      const message = err instanceof Error ? err.message : describe(err);
      const code = (err as { code?: unknown }).code;
      this.#end('error', `event: error\ndata: ${JSON.stringify({ code: typeof code === 'string' ? code : ErrorCode.HttpInternal, message, resumeFrom: this.sent + 1 })}\n\n`);
    }
  }

  close(): void {
    this.#end('hub-closed');
  }

  #end(reason: WatchEnd['reason'], last?: string): void {
    const state = this.#state;
    if (state.value === 'ended') return;
    this.#state = { value: 'ended' };
    if (state.value === 'catching-up') state.watch.close();
    this.#shared.leave(this);
    this.#hub.forget(this);
    this.#stream.end(last);
    this.#onEnd({ reason, frames: this.#frames, sent: this.sent });
  }
}

/**
 * @example
 * ```ts
 * const hub = new WatchHub({ store });
 * // in a route handler, after validating the query:
 * await hub.subscribe({ key: '/svc/', prefix: true, prevKv: false, encoding: 'utf8', startRevision: undefined }, reply.raw, (end) => log(end));
 * ```
 */
export class WatchHub {
  readonly #store: Store;
  readonly maxBufferedBytes: number;
  readonly maxFrameBytes: number;
  readonly #shared = new Map<string, SharedWatch>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #ping: NodeJS.Timeout;
  #closed = false;
  #slowCutOffs = 0;

  constructor(options: WatchHubOptions) {
    const max = options.maxBufferedBytes ?? 4 * 1024 * 1024;
    if (!Number.isSafeInteger(max) || max < 0) throw new InvalidOptionError('WatchHub', 'maxBufferedBytes', max, 'an integer >= 0');
    const ping = options.pingIntervalMs ?? 15_000;
    if (!Number.isFinite(ping) || ping < 10) throw new InvalidOptionError('WatchHub', 'pingIntervalMs', ping, 'a number of ms >= 10');
    const frameMax = options.maxFrameBytes ?? 1024 * 1024;
    if (!Number.isSafeInteger(frameMax) || frameMax < 1024) throw new InvalidOptionError('WatchHub', 'maxFrameBytes', frameMax, 'an integer >= 1024');
    this.#store = options.store;
    this.maxBufferedBytes = max;
    this.maxFrameBytes = frameMax;
    // One timer for every stream, unref'd: pings never keep the process alive.
    this.#ping = setInterval(() => {
      for (const s of this.#subscribers) s.ping();
    }, ping);
    this.#ping.unref();
  }

  get stats(): WatchHubStats {
    let catchUp = 0;
    for (const s of this.#subscribers) if (s.catchingUp) catchUp++;
    return { sharedWatches: this.#shared.size, catchUpWatches: catchUp, subscribers: this.#subscribers.size, slowCutOffs: this.#slowCutOffs };
  }

  /**
   * Opens an SSE stream on `res` and subscribes it. Rejects (and writes nothing) when the hub is closed
   * or the store cannot be read; after it resolves the stream is open and `onEnd` is called once when
   * it ends.
   */
  async subscribe(req: WatchRequest, res: ServerResponse, onEnd: (end: WatchEnd) => void): Promise<void> {
    this.#throwIfClosed();
    const key = toBytes(req.key);
    // The current revision (and a cheap check that the store is serving) before the stream opens.
    const { revision: current } = await this.#store.range(key, { limit: 1, keysOnly: true });
    this.#throwIfClosed();
    const id = sharedId(key, req.prefix, req.prevKv);
    let shared = this.#shared.get(id);
    if (shared === undefined) {
      const watch = this.#store.watch(key, { prefix: req.prefix, prevKv: req.prevKv, startRevision: current + 1 });
      shared = new SharedWatch(this, id, watch, current + 1);
      this.#shared.set(id, shared);
      void shared.run();
    }
    const live = req.startRevision === undefined || req.startRevision - 1 >= shared.through;
    const sent = req.startRevision === undefined ? Math.max(current, shared.through) : req.startRevision - 1;
    const stream = new SseStream(res);
    let sub: Subscriber;
    try {
      stream.open();
      stream.write(readyFrame(req.startRevision === undefined ? sent : current));
      // A resume with nothing at or after its start in the store: current already; say so.
      if (req.startRevision !== undefined && req.startRevision > current) stream.write(progressFrame(current));
      sub = new Subscriber(this, this.#store, { ...req, key }, stream, shared, sent, onEnd);
    } catch (err) {
      // A shared watch made for this subscriber alone must not outlive it.
      if (shared.members.size === 0) {
        this.dropShared(shared);
        shared.watch.close();
      }
      throw err;
    }
    this.#subscribers.add(sub);
    if (live) sub.joinLive();
    else void sub.catchUp(req.startRevision);
  }

  /** Ends every stream and store watch. New subscriptions are refused. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#ping);
    for (const s of [...this.#subscribers]) s.close();
    for (const w of [...this.#shared.values()]) w.watch.close();
    this.#shared.clear();
  }

  /** @internal */
  dropShared(w: SharedWatch): void {
    if (this.#shared.get(w.id) === w) this.#shared.delete(w.id);
  }

  /** @internal */
  forget(sub: Subscriber): void {
    this.#subscribers.delete(sub);
  }

  /** @internal */
  countSlow(): void {
    this.#slowCutOffs++;
  }

  #throwIfClosed(): void {
    if (this.#closed) throw new HttpRequestError(ErrorCode.HttpUnavailable, 503, 'the control plane is shutting down: try another replica or retry shortly');
  }
}
