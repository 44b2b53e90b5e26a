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
 * Upgraded streams (what the SDK opens): the same request with `connection: upgrade` and
 * `upgrade: spofless-keepalive/1` and no body is answered `101 Switching Protocols`, and from then on the
 * connection carries the same NDJSON lines both ways, raw: no chunked framing, no HTTP parser, no
 * request or response stream object between the socket and this code. A renewal then costs one socket
 * read, one line scan and one socket write, which is what keeps 10,000 instances renewing every TTL/3
 * under a quarter of a core (the chunked stream costs about a third more: llhttp's chunk decoding and
 * its call into JS per chunk, the IncomingMessage and ServerResponse stream layers, a cork/uncork tick
 * per answer). The upgrade request goes through fastify's router like any other (hooks, 415, 503), so
 * it cannot bypass what guards the API; see `acceptUpgrades`. The chunked form stays for curl and for
 * proxies that do not pass upgrades.
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
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { ErrorCode, InvalidOptionError, describe } from '../errors/index.js';
import type { Store } from '../store/index.js';
import { toHttpError } from './errors.js';

/** The endpoint's path. */
export const KEEPALIVE_STREAM_PATH = '/v1/leases/keepalive';
/** The request and response content type. */
export const NDJSON = 'application/x-ndjson';

/** The protocol token of the upgraded (raw) stream, in the request's `upgrade` header and the 101. */
export const KEEPALIVE_UPGRADE = 'spofless-keepalive/1';

const NEWLINE = 0x0a;
/** `{"id":"` and `"}`: the one line shape the SDK sends, scanned without JSON.parse. */
const FAST_PREFIX = Buffer.from('{"id":"');
const FAST_SUFFIX_QUOTE = 0x22;
const FAST_SUFFIX_BRACE = 0x7d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** Set on an upgrade request routed through fastify: the raw socket and the bytes read past the head. */
const kUpgrade = Symbol('spofless.keepalive.upgrade');
interface UpgradeInfo {
  readonly socket: Duplex;
  readonly head: Buffer;
}
type UpgradeRequest = IncomingMessage & { [kUpgrade]?: UpgradeInfo };

function isKeepAliveUpgrade(req: IncomingMessage): boolean {
  const path = req.url?.split('?', 1)[0];
  if (req.method !== 'POST' || (path !== KEEPALIVE_STREAM_PATH && path !== `${KEEPALIVE_STREAM_PATH}/`)) return false;
  const up = req.headers.upgrade;
  return typeof up === 'string' && up.split(',').some((t) => t.trim().toLowerCase() === KEEPALIVE_UPGRADE);
}

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
  /** Sockets now carrying an upgraded stream (their router response is not theirs to end). */
  readonly #upgraded = new WeakSet<Duplex>();
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
    const up = (req as UpgradeRequest)[kUpgrade];
    // The router's response object (see `acceptUpgrades`) lets go of the socket: the stream owns it now.
    if (up !== undefined) res.detachSocket(up.socket as Socket);
    const io: StreamIo =
      up === undefined
        ? { input: req, output: res, socket: req.socket, open: () => openChunked(res), end: () => res.end(), destroy: () => req.destroy() }
        : {
            input: up.socket,
            output: up.socket,
            socket: up.socket,
            head: up.head,
            open: () => up.socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${KEEPALIVE_UPGRADE}\r\ncontent-type: ${NDJSON}\r\n\r\n`),
            end: () => up.socket.end(),
            destroy: () => up.socket.destroy(),
          };
    const stream = new KeepAliveStream(io, {
      store: this.#store,
      maxLineBytes: this.#maxLineBytes,
      maxPending: this.#maxPending,
      renewed: () => this.#renewed++,
      ended: (end) => {
        this.#open.delete(stream);
        onEnd(end);
      },
    });
    if (up !== undefined) this.#upgraded.add(up.socket);
    this.#open.add(stream);
  }

  /**
   * Routes upgrade requests for the keep-alive stream (`upgrade: spofless-keepalive/1`) through the
   * app's router, as ordinary requests (hooks, validation, errors), handing the route's `serve()` the
   * raw socket. Call once, before the app listens. An upgrade for anything else is answered 400 when no
   * other `upgrade` listener is there to take it.
   */
  acceptUpgrades(app: FastifyInstance): void {
    const server = app.server;
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!isKeepAliveUpgrade(req)) {
        if (server.listenerCount('upgrade') === 1) {
          const body = JSON.stringify({ error: { code: ErrorCode.InvalidArgument, message: `no upgrade to ${describe(req.headers.upgrade)} at ${describe(req.url)}: only POST ${KEEPALIVE_STREAM_PATH} upgrades, to ${KEEPALIVE_UPGRADE}` } });
          socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        }
        return;
      }
      socket.on('error', () => socket.destroy());
      (req as UpgradeRequest)[kUpgrade] = { socket, head };
      // A response object on the socket, for whatever the router answers instead of the stream (a 415,
      // a 503, a hook's 401): it is the connection's only response, so the connection ends with it.
      const res = new ServerResponse(req);
      res.shouldKeepAlive = false;
      res.assignSocket(socket as Socket);
      res.on('finish', () => {
        if (!this.#upgraded.has(socket)) socket.end();
      });
      app.routing(req, res);
    });
  }

  /** Ends every stream: lines already read are answered, then each response ends. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#open]) s.close();
  }
}

/** Writes the 200 head of a chunked-request stream; its body is close-delimited (see below). */
function openChunked(res: ServerResponse): void {
  // The connection carries this one stream: it is never reused for another request. So the body can
  // be close-delimited instead of chunked: each answer is then one plain socket write, with no chunk
  // framing to build and send per write.
  res.useChunkedEncodingByDefault = false;
  res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', connection: 'close' });
  res.flushHeaders();
}

/** Where a stream reads its lines and writes its answers: the request and response, or the raw socket. */
interface StreamIo {
  readonly input: Readable;
  readonly output: Writable;
  readonly socket: Duplex;
  /** Bytes of the stream already read with the upgrade request's head. */
  readonly head?: Buffer;
  /** Sends the head (200 or 101). */
  readonly open: () => void;
  /** Ends the answers (and, `connection: close`, the connection once flushed). */
  readonly end: () => void;
  readonly destroy: () => void;
}

interface StreamDeps {
  readonly store: Store;
  readonly maxLineBytes: number;
  readonly maxPending: number;
  readonly renewed: () => void;
  readonly ended: (end: KeepAliveStreamEnd) => void;
}

class KeepAliveStream {
  readonly #io: StreamIo;
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
  /** Renewals in flight: the last one to settle writes every answer then ready, in one write. */
  #inFlight = 0;
  /** Answers ready to be written, joined: one socket write per read, not per line. */
  #out = '';
  #socketFull = false;
  #answered = 0;
  #renewedHere = 0;
  /** The last answer and what it was for: a stream renews the same lease(s) again and again. */
  #lastId = '';
  #lastTtl = -1;
  #lastAnswer = '';
  readonly #onData = (chunk: Buffer): void => this.#read(chunk);

  constructor(io: StreamIo, deps: StreamDeps) {
    this.#io = io;
    this.#deps = deps;
    io.open();
    // Renewals are tiny and latency-bound: no Nagle delay on the answers.
    (io.socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const { input, output } = io;
    input.on('data', this.#onData);
    input.on('end', () => this.#onRequestEnd());
    input.on('error', () => this.#onGone());
    output.on('drain', () => {
      this.#socketFull = false;
      this.#maybeResume();
    });
    output.on('close', () => this.#onGone());
    output.on('error', () => this.#onGone());
    if (io.head !== undefined && io.head.length > 0) this.#read(io.head);
  }

  close(): void {
    if (this.#state === 'ended' || this.#state === 'ending') return;
    this.#endReason = 'server-closed';
    this.#state = 'ending';
    this.#io.input.pause();
    this.#io.input.removeListener('data', this.#onData);
    this.#maybeFinish();
  }

  // ---- reading -----------------------------------------------------------------------------------

  #read(chunk: Buffer): void {
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
    // Answers known at once (bad lines) go out now unless renewals are still in flight ahead of them.
    if (this.#inFlight === 0) this.#flush();
    this.#maybePause();
  }

  #maybePause(): void {
    if (this.#state === 'reading' && (this.#socketFull || this.#slots.length >= this.#deps.maxPending)) {
      this.#state = 'paused';
      this.#io.input.pause();
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
    if (this.#partialBytes === 0) {
      // The SDK's line, `{"id":"<digits>"}`, read straight off the bytes: no string, no JSON.parse.
      const id = fastLeaseId(chunk, start, end);
      if (id !== undefined) return this.#renew(id);
    } else {
      this.#partial.push(chunk.subarray(start, end));
      chunk = Buffer.concat(this.#partial, bytes);
      start = 0;
      end = bytes;
      this.#partial = [];
      this.#partialBytes = 0;
    }
    const text = chunk.toString('utf8', start, end);
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
    this.#renew(id);
  }

  #renew(id: string): void {
    // The store may answer out of order (a remote engine): each answer has a slot in request order.
    const at = this.#answered + this.#slots.length;
    this.#slots.push(undefined);
    this.#inFlight++;
    this.#deps.store.keepAlive(id).then(
      (g) => {
        this.#renewedHere++;
        this.#deps.renewed();
        let answer = this.#lastAnswer;
        if (g.id !== this.#lastId || g.ttl !== this.#lastTtl) {
          answer = `{"id":${JSON.stringify(g.id)},"ttl":${g.ttl}}\n`;
          this.#lastId = g.id;
          this.#lastTtl = g.ttl;
          this.#lastAnswer = answer;
        }
        this.#settled(at, answer);
      },
      (err: unknown) => {
        const answer = toHttpError(err, 0);
        this.#settled(at, `${JSON.stringify({ id, error: answer.body.error })}\n`);
      },
    );
  }

  // ---- answering ---------------------------------------------------------------------------------

  /** An answer known at once (a bad line): it still waits behind earlier renewals in flight. */
  #answer(line: string): void {
    this.#slots.push(line);
  }

  /** A renewal's answer for the slot of absolute index `at`. */
  #settled(at: number, line: string): void {
    this.#inFlight--;
    if (this.#state === 'ended') return;
    this.#slots[at - this.#answered] = line;
    // The renewals of one read settle in the same microtask checkpoint: the last one writes them all.
    if (this.#inFlight === 0) this.#flush();
  }

  /** Moves every leading answer out and writes them in one socket write. */
  #flush(): void {
    if (this.#state === 'ended') return;
    const slots = this.#slots;
    let n = 0;
    while (n < slots.length && slots[n] !== undefined) this.#out += slots[n++]!;
    if (n > 0) {
      if (n === slots.length) slots.length = 0;
      else slots.splice(0, n);
      this.#answered += n;
    }
    if (this.#out !== '') {
      const ok = this.#io.output.write(this.#out);
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
    this.#io.input.resume();
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
    if (this.#inFlight === 0) this.#flush();
  }

  #maybeFinish(): void {
    if (this.#state !== 'ending' || this.#slots.length > 0 || this.#inFlight > 0) return;
    this.#state = 'ended';
    // Node ends the socket once the answers are flushed (`connection: close`, or the raw socket's end),
    // and discards any body the client still sends.
    this.#io.end();
    this.#deps.ended({ reason: this.#endReason, lines: this.#answered, renewed: this.#renewedHere });
  }

  #onGone(): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    this.#slots.length = 0;
    this.#io.destroy();
    this.#deps.ended({ reason: 'client-closed', lines: this.#answered, renewed: this.#renewedHere });
  }
}

/**
 * The lease id of a line that is exactly `{"id":"<decimal digits>"}`, or `undefined` for any other
 * line (which then takes the full JSON path: same result, just slower).
 */
function fastLeaseId(chunk: Buffer, start: number, end: number): string | undefined {
  const p = FAST_PREFIX.length;
  let e = end;
  if (e > start && chunk[e - 1] === 0x0d) e--; // CRLF
  if (e - start < p + 3 || chunk[e - 1] !== FAST_SUFFIX_BRACE || chunk[e - 2] !== FAST_SUFFIX_QUOTE) return undefined;
  for (let i = 0; i < p; i++) if (chunk[start + i] !== FAST_PREFIX[i]) return undefined;
  const a = start + p;
  const b = e - 2;
  for (let i = a; i < b; i++) {
    const c = chunk[i]!;
    if (c < DIGIT_0 || c > DIGIT_9) return undefined;
  }
  return chunk.toString('latin1', a, b);
}
