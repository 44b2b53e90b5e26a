/**
 * The lease keep-alive stream, `POST /v1/leases/keepalive`: etcd's `LeaseKeepAlive` over HTTP/1.1.
 *
 * One long-lived request per client. Its body is NDJSON that stays open, one `{"id":"<lease>"}` per
 * renewal; the response (200, `application/x-ndjson`, chunked) carries one line per request line, in
 * the same order: `{"id","ttl"}`, or `{"id"?,"error":{"code","message",...}}`. A renewal costs one line
 * each way, parsed straight off the socket: no routing, hooks, schema or reply object per message.
 * That is what makes 10,000 instances renewing every TTL/3 cheap: a whole HTTP request (fastify's, or
 * even node:http's alone) costs several times more server CPU than one line.
 *
 * Bounds: a line longer than `maxLineBytes` is answered with an error and skipped to its newline (the
 * unfinished part is never buffered past the bound); at most `maxPending` lines are read and not yet
 * answered, and reading stops while the response socket does not drain (backpressure: a client that
 * does not read its answers stops being read). Blank lines are ignored (no answer).
 *
 * Stream states (`#state`):
 * | from              | on                                                      | to       |
 * |-------------------|---------------------------------------------------------|----------|
 * | reading           | `maxPending` lines unanswered, or the socket is full    | paused   |
 * | paused            | answers written down to half the bound and socket drained | reading |
 * | reading, paused   | the client ends its body, or `close()`                  | ending   |
 * | ending            | every line read has been answered                       | ended (response ends) |
 * | any               | the connection closes or fails                          | ended    |
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, InvalidOptionError, describe } from '../errors/index.js';
import type { Store } from '../store/index.js';
import { toHttpError } from './errors.js';

/** The endpoint's path. */
export const KEEPALIVE_STREAM_PATH = '/v1/leases/keepalive';
/** The request and response content type. */
export const NDJSON = 'application/x-ndjson';

const NEWLINE = 0x0a;

/**
 * @example
 * ```ts
 * const streams = new KeepAliveStreams({ store, maxLineBytes: 1024, maxPending: 1024 });
 * ```
 */
export interface KeepAliveStreamsOptions {
  readonly store: Store;
  /** Longest request line, in bytes, newline excluded. Default 1,024. */
  readonly maxLineBytes?: number;
  /** Lines read and not yet answered, per stream, before reading pauses. Default 1,024. */
  readonly maxPending?: number;
}

/** How a stream ended, for the request log. */
export interface KeepAliveStreamEnd {
  readonly reason: 'client-ended' | 'client-closed' | 'server-closed';
  /** Request lines answered. */
  readonly lines: number;
  /** Of those, leases renewed. */
  readonly renewed: number;
}

export interface KeepAliveStreamStats {
  /** Open streams. */
  readonly streams: number;
  /** Leases renewed through streams since start. */
  readonly renewed: number;
}

/** Internal error lines: a bad line is the client's mistake (`SPOF_ERR_INVALID_ARGUMENT`). */
function invalidLine(message: string, id?: unknown): string {
  const body = { ...(typeof id === 'string' ? { id } : {}), error: { code: ErrorCode.InvalidArgument, message } };
  return `${JSON.stringify(body)}\n`;
}

/**
 * Every open keep-alive stream of one server, so that closing the server ends them.
 *
 * @example
 * ```ts
 * const streams = new KeepAliveStreams({ store });
 * app.post('/v1/leases/keepalive', (req, reply) => {
 *   reply.hijack();
 *   streams.serve(req.raw, reply.raw, (end) => req.log.info({ keepalive: end }, 'keepalive stream ended'));
 * });
 * app.addHook('preClose', (done) => { streams.close(); done(); });
 * ```
 */
export class KeepAliveStreams {
  readonly #store: Store;
  readonly #maxLineBytes: number;
  readonly #maxPending: number;
  readonly #open = new Set<KeepAliveStream>();
  #renewed = 0;
  #closed = false;

  constructor(options: KeepAliveStreamsOptions) {
    const owner = 'KeepAliveStreams';
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(owner, 'options', options, 'an object with a store');
    const { maxLineBytes = 1024, maxPending = 1024 } = options;
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 64) throw new InvalidOptionError(owner, 'maxLineBytes', maxLineBytes, 'an integer >= 64');
    if (!Number.isSafeInteger(maxPending) || maxPending < 1) throw new InvalidOptionError(owner, 'maxPending', maxPending, 'an integer >= 1');
    this.#store = options.store;
    this.#maxLineBytes = maxLineBytes;
    this.#maxPending = maxPending;
  }

  get stats(): KeepAliveStreamStats {
    return { streams: this.#open.size, renewed: this.#renewed };
  }

  /**
   * Serves one stream on a request whose body is NDJSON: writes the 200 head at once (so the client
   * knows the stream is open before its first line), then answers line by line until either side ends.
   * After `close()`, answers 503 and ends.
   */
  serve(req: IncomingMessage, res: ServerResponse, onEnd: (end: KeepAliveStreamEnd) => void): void {
    if (this.#closed) {
      res.writeHead(503, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ error: { code: ErrorCode.HttpUnavailable, message: 'the control plane is shutting down: try another replica or retry shortly' } }));
      return;
    }
    const stream = new KeepAliveStream(req, res, {
      store: this.#store,
      maxLineBytes: this.#maxLineBytes,
      maxPending: this.#maxPending,
      renewed: () => this.#renewed++,
      ended: (end) => {
        this.#open.delete(stream);
        onEnd(end);
      },
    });
    this.#open.add(stream);
  }

  /** Ends every stream: lines already read are answered, then each response ends. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#open]) s.close();
  }
}

interface StreamDeps {
  readonly store: Store;
  readonly maxLineBytes: number;
  readonly maxPending: number;
  readonly renewed: () => void;
  readonly ended: (end: KeepAliveStreamEnd) => void;
}

class KeepAliveStream {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #deps: StreamDeps;
  #state: 'reading' | 'paused' | 'ending' | 'ended' = 'reading';
  #endReason: KeepAliveStreamEnd['reason'] = 'client-ended';
  /** The start of an unfinished line, carried to the next chunk. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** Inside a line already refused as too long: skip to its newline. */
  #skipping = false;
  #lineNo = 0;
  /** Answers not yet written, in request order; `undefined` while its renewal is in flight. */
  readonly #slots: (string | undefined)[] = [];
  /** Answers ready to be written in this tick, joined: one socket write per tick, not per line. */
  #out = '';
  #flushQueued = false;
  #socketFull = false;
  #answered = 0;
  #renewedHere = 0;

  constructor(req: IncomingMessage, res: ServerResponse, deps: StreamDeps) {
    this.#req = req;
    this.#res = res;
    this.#deps = deps;
    // The connection carries this one stream: it is never reused for another request. So the body can
    // be close-delimited instead of chunked: each answer is then one plain socket write, with no chunk
    // framing to build and send per write (this path runs ~3,000 times a second for 10,000 instances).
    res.useChunkedEncodingByDefault = false;
    res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', connection: 'close' });
    res.flushHeaders();
    // Renewals are tiny and latency-bound: no Nagle delay on the answers.
    req.socket.setNoDelay(true);
    req.on('data', (chunk: Buffer) => this.#onData(chunk));
    req.on('end', () => this.#onRequestEnd());
    req.on('error', () => this.#onGone());
    res.on('drain', () => {
      this.#socketFull = false;
      this.#maybeResume();
    });
    res.on('close', () => this.#onGone());
    res.on('error', () => this.#onGone());
  }

  close(): void {
    if (this.#state === 'ended' || this.#state === 'ending') return;
    this.#endReason = 'server-closed';
    this.#state = 'ending';
    this.#req.pause();
    this.#req.removeAllListeners('data');
    this.#maybeFinish();
  }

  // ---- reading -----------------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (this.#state === 'ending' || this.#state === 'ended') return;
    const max = this.#deps.maxLineBytes;
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) {
        // An unfinished line: keep it, up to the bound.
        const rest = chunk.length - start;
        if (this.#skipping) break;
        if (this.#partialBytes + rest > max) {
          this.#partial = [];
          this.#partialBytes = 0;
          this.#tooLong();
          this.#skipping = true;
        } else {
          this.#partial.push(chunk.subarray(start));
          this.#partialBytes += rest;
        }
        break;
      }
      this.#lineEnd(chunk, start, nl);
      start = nl + 1;
    }
    this.#maybePause();
  }

  #maybePause(): void {
    if (this.#state === 'reading' && (this.#socketFull || this.#slots.length >= this.#deps.maxPending)) {
      this.#state = 'paused';
      this.#req.pause();
    }
  }

  #lineEnd(chunk: Buffer, start: number, end: number): void {
    if (this.#skipping) {
      // The end of a line already answered as too long.
      this.#skipping = false;
      return;
    }
    const bytes = this.#partialBytes + (end - start);
    if (bytes > this.#deps.maxLineBytes) {
      this.#partial = [];
      this.#partialBytes = 0;
      this.#tooLong();
      return;
    }
    this.#lineNo++;
    let text: string;
    if (this.#partialBytes === 0) {
      text = chunk.toString('utf8', start, end);
    } else {
      this.#partial.push(chunk.subarray(start, end));
      text = Buffer.concat(this.#partial, bytes).toString('utf8');
      this.#partial = [];
      this.#partialBytes = 0;
    }
    // A blank line (or a lone CR of a CRLF) is no request: a client may send one as a ping.
    if (text.length <= 1 && (text === '' || text === '\r')) return;
    this.#line(text);
  }

  #tooLong(): void {
    this.#lineNo++;
    this.#answer(
      invalidLine(`line ${this.#lineNo} is longer than ${this.#deps.maxLineBytes} bytes: each line is one {"id":"<lease>"} object; the line was skipped`),
    );
  }

  #line(text: string): void {
    const n = this.#lineNo;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this.#answer(invalidLine(`line ${n} is not valid JSON (${(err as Error).message}): expected {"id":"<lease>"}`));
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.#answer(invalidLine(`line ${n} must be a JSON object {"id":"<lease>"}; got ${describe(msg)}`));
      return;
    }
    const id = (msg as { id?: unknown }).id;
    if (typeof id !== 'string') {
      this.#answer(invalidLine(`line ${n}: "id" must be a lease id string; got ${describe(id)}`));
      return;
    }
    for (const k in msg) {
      if (k !== 'id') {
        this.#answer(invalidLine(`line ${n}: unknown field ${JSON.stringify(k)}: a line is {"id":"<lease>"} only`, id));
        return;
      }
    }
    // The store may answer out of order (a remote engine): each answer has a slot in request order.
    const slot = this.#slots.length;
    this.#slots.push(undefined);
    const base = this.#answered;
    this.#deps.store.keepAlive(id).then(
      (g) => {
        this.#renewedHere++;
        this.#deps.renewed();
        this.#fill(base + slot, `{"id":${JSON.stringify(g.id)},"ttl":${g.ttl}}\n`);
      },
      (err: unknown) => {
        const answer = toHttpError(err, 0);
        this.#fill(base + slot, `${JSON.stringify({ id, error: answer.body.error })}\n`);
      },
    );
  }

  // ---- answering ---------------------------------------------------------------------------------

  /** An answer known at once (a bad line): it still waits behind earlier renewals in flight. */
  #answer(line: string): void {
    this.#slots.push(line);
    this.#fill(-1, undefined);
  }

  /** Fills the slot of absolute index `at` (or none with -1), then moves every leading answer out. */
  #fill(at: number, line: string | undefined): void {
    if (this.#state === 'ended') return;
    if (at >= 0) this.#slots[at - this.#answered] = line;
    while (this.#slots.length > 0 && this.#slots[0] !== undefined) {
      this.#out += this.#slots.shift()!;
      this.#answered++;
    }
    if (this.#out !== '' && !this.#flushQueued) {
      this.#flushQueued = true;
      // After the other answers of this chunk (already queued as microtasks): one write for them all.
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#state === 'ended') return;
    if (this.#out !== '') {
      const ok = this.#res.write(this.#out);
      this.#out = '';
      if (!ok) this.#socketFull = true;
    }
    if (this.#state === 'ending') this.#maybeFinish();
    else if (this.#socketFull) this.#maybePause();
    else this.#maybeResume();
  }

  #maybeResume(): void {
    if (this.#state !== 'paused' || this.#socketFull || this.#slots.length > this.#deps.maxPending / 2) return;
    this.#state = 'reading';
    this.#req.resume();
  }

  // ---- ending ------------------------------------------------------------------------------------

  #onRequestEnd(): void {
    if (this.#state === 'ended' || this.#state === 'ending') return;
    if (this.#partialBytes > 0) {
      // A last line without its newline is still a line.
      const rest = Buffer.concat(this.#partial, this.#partialBytes);
      this.#partial = [];
      this.#partialBytes = 0;
      this.#lineEnd(rest, 0, rest.length);
    }
    this.#state = 'ending';
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#state !== 'ending' || this.#slots.length > 0 || this.#flushQueued) return;
    this.#state = 'ended';
    // `connection: close`: node ends the socket once the response is flushed, and discards any body
    // the client still sends.
    this.#res.end();
    this.#deps.ended({ reason: this.#endReason, lines: this.#answered, renewed: this.#renewedHere });
  }

  #onGone(): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    this.#slots.length = 0;
    this.#req.destroy();
    this.#deps.ended({ reason: 'client-closed', lines: this.#answered, renewed: this.#renewedHere });
  }
}
