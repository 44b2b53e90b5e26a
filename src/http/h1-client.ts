/**
 * A hand-written HTTP/1.1 client for plain `http:` and requests whose body, if any, is in memory. Two
 * users: the gateway's proxy for its common case (a request without a body; streamed request bodies,
 * WebSocket upgrades and `https:` upstreams still go through undici's `Pool`), and the SDK's
 * `Transport` for its unary JSON calls to the control plane (`src/client/http.ts`).
 *
 * Why by hand (measured, see the commit message for the figures): with undici's `Pool.dispatch` the
 * gateway spent ~1 000–1 100 ms of CPU per 10 000 proxied requests against HAProxy's ~330, and undici's
 * per-request machinery (its `Request` object, header re-validation, the wasm llhttp parser called
 * through several JS↔wasm hops, its `Writable`-based writer) was about a fifth of it. This client writes
 * the request head with one `socket.write`, parses the answer head with one `indexOf` and one string
 * split, and streams the body (content-length, chunked, or until close) straight to the handler.
 *
 * Semantics kept from undici (the proxy's retry logic depends on them):
 * - the error codes: `UND_ERR_CONNECT_TIMEOUT`, `UND_ERR_HEADERS_TIMEOUT`, `UND_ERR_BODY_TIMEOUT`,
 *   socket errors as node reports them (`ECONNREFUSED`, `ECONNRESET` …), `UND_ERR_SOCKET` when the
 *   upstream closes before the answer is complete, `SPOF_ERR_GATEWAY_BAD_RESPONSE` for malformed input;
 * - `abort(err)` cancels the exchange (the socket is destroyed) and reports `err` through `onError`,
 *   once, unless the answer was already complete;
 * - keep-alive: an idle socket is closed after `idleTimeoutMs`, or earlier when the upstream's
 *   `Keep-Alive: timeout=N` says so (minus a second), so no reused socket is one the upstream just
 *   closed; `Connection: close`, HTTP/1.0 and read-until-close answers are not reused; an idle socket
 *   that the upstream closes leaves the pool at once, and an idle socket does not keep the process
 *   alive (`unref`);
 * - at most `connections` sockets per upstream; requests over that wait in a FIFO queue.
 *
 * Connection state (`H1Conn.#state`):
 *
 * | from       | event                         | to         |
 * |------------|-------------------------------|------------|
 * | connecting | connected                     | busy       |
 * | busy       | answer complete, reusable     | idle       |
 * | idle       | taken for a request           | busy       |
 * | any        | error, abort, close, not reusable | closed |
 */
import { connect, type Socket } from 'node:net';

/** What the proxy implements to receive one exchange (the shape of undici's handler, strings for headers). */
export interface H1Handler {
  onConnect(abort: (err?: Error) => void): void;
  /** `false`: stop (the handler has aborted or lost interest). */
  onHeaders(status: number, headers: string[], resume: () => void, statusText: string): boolean;
  /** `false`: the consumer is full; the socket pauses until `resume` is called. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

/** One exchange's request. */
export interface H1Request {
  readonly method: string;
  readonly path: string;
  /** Flat `[name, value, …]`, already checked by the caller (the proxy filters them; the SDK validates its own). */
  readonly headers: readonly string[];
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  /** The whole request body, sent with the head in one write; its `content-length` is added here. */
  readonly body?: Buffer;
}

export interface H1PoolOptions {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** An upstream failure with an undici-compatible `code` (the proxy classifies failures by code). */
export class H1Error extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

const MAX_HEAD = 64 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');

// Framing of the answer body.
const F_NONE = 0;
const F_LENGTH = 1;
const F_CHUNKED = 2;
const F_CLOSE = 3;

// Chunked parser states.
const C_SIZE = 0;
const C_DATA = 1;
const C_DATA_CRLF = 2;
const C_TRAILERS = 3;

type ConnState = 'connecting' | 'busy' | 'idle' | 'closed';

const kConn = Symbol('spofless.h1conn');

/**
 * One read buffer for every upstream socket (net's documented `onread`): a read is handled
 * synchronously before the next one, so nothing is overwritten under a reader. It spares each read
 * the socket's `Readable` path (push, the 'data' emit, the `maybeReadMore` tick): measured ~35 ms
 * of ~520 of the gateway's CPU per 10k requests. What outlives the read is copied: a partial head, and
 * every body chunk passed on (the proxy's writes may queue it).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function onSocketRead(this: Socket & { [kConn]?: H1Conn }, n: number, buf: Buffer): boolean {
  this[kConn]!.data(buf.subarray(0, n));
  return true;
}
function onSocketEnd(this: Socket & { [kConn]?: H1Conn }): void {
  this[kConn]!.ended();
}
function onSocketError(this: Socket & { [kConn]?: H1Conn }, err: Error): void {
  this[kConn]!.fail(err);
}
function onSocketClose(this: Socket & { [kConn]?: H1Conn }): void {
  this[kConn]!.fail(new H1Error('the upstream closed the connection', 'UND_ERR_SOCKET'));
}
function onSocketConnect(this: Socket & { [kConn]?: H1Conn }): void {
  this[kConn]!.connected();
}
function onTimer(conn: H1Conn): void {
  conn.timedOut();
}

/** One keep-alive connection to the upstream; carries one exchange at a time. */
class H1Conn {
  readonly #pool: H1Pool;
  readonly #socket: Socket & { [kConn]?: H1Conn };
  #state: ConnState = 'connecting';
  #handler: H1Handler | undefined;
  #req: H1Request | undefined;
  #head: Buffer | undefined;
  #gotHead = false;
  #framing = F_NONE;
  #remaining = 0;
  #chunkState = C_SIZE;
  #line = '';
  #reusable = true;
  #keepAliveMs = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now() time). */
  #timerAt = 0;
  /** When the armed phase times out; 0: nothing armed. */
  #deadline = 0;
  #timerCode = '';
  #paused = false;
  readonly abort: (err?: Error) => void;
  readonly resume: () => void;

  constructor(pool: H1Pool, o: H1PoolOptions) {
    this.#pool = pool;
    const s: Socket & { [kConn]?: H1Conn } = connect({ host: o.host, port: o.port, noDelay: true, onread: { buffer: READ_BUFFER, callback: onSocketRead } });
    s[kConn] = this;
    this.#socket = s;
    s.on('connect', onSocketConnect);
    s.on('end', onSocketEnd);
    s.on('error', onSocketError);
    s.on('close', onSocketClose);
    this.#arm(o.connectTimeoutMs, 'UND_ERR_CONNECT_TIMEOUT');
    // Bound once per connection, not per request.
    this.abort = (err?: Error): void => this.#abortExchange(err);
    this.resume = (): void => {
      if (this.#paused && this.#state === 'busy') {
        this.#paused = false;
        this.#socket.resume();
      }
    };
  }

  get idle(): boolean {
    return this.#state === 'idle';
  }

  /** Starts an exchange on this connection (connecting or idle). */
  start(req: H1Request, handler: H1Handler): void {
    this.#req = req;
    this.#handler = handler;
    this.#gotHead = false;
    this.#head = undefined;
    this.#framing = F_NONE;
    this.#reusable = true;
    this.#paused = false;
    handler.onConnect(this.abort);
    if (this.#handler !== handler) return; // aborted in onConnect
    if (this.#state === 'idle') {
      this.#state = 'busy';
      this.#socket.ref();
      this.#send();
    }
  }

  connected(): void {
    if (this.#state !== 'connecting') return;
    this.#state = 'busy';
    this.#clearTimer();
    if (this.#handler === undefined) {
      // Its exchange was aborted while connecting: keep the connection for the next one.
      this.#release();
      return;
    }
    this.#send();
  }

  #send(): void {
    const req = this.#req!;
    const h = req.headers;
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    let hasHost = false;
    let hasLength = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name.length === 4 && name.toLowerCase() === 'host') hasHost = true;
      else if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      head += `${name}: ${h[i + 1]!}\r\n`;
    }
    if (!hasHost) head += `host: ${this.#pool.hostHeader}\r\n`;
    const body = req.body;
    if (body !== undefined) {
      head += `content-length: ${body.length}\r\n\r\n`;
      this.#arm(req.headersTimeout, 'UND_ERR_HEADERS_TIMEOUT');
      // One write (one syscall) for head and body: a small JSON body in a segment of its own would
      // cost a second send and, with delayed ACKs on the other side, a round trip.
      const headLength = Buffer.byteLength(head, 'latin1');
      const out = Buffer.allocUnsafe(headLength + body.length);
      out.write(head, 0, headLength, 'latin1');
      body.copy(out, headLength);
      this.#socket.write(out);
      return;
    }
    // As undici does: a bodiless POST/PUT/PATCH says so (some servers answer 411 otherwise).
    if (!hasLength && (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH')) head += 'content-length: 0\r\n';
    this.#arm(req.headersTimeout, 'UND_ERR_HEADERS_TIMEOUT');
    this.#socket.write(`${head}\r\n`, 'latin1');
  }

  data(chunk: Buffer): void {
    if (this.#state !== 'busy' || this.#handler === undefined) {
      // Bytes while idle (or after an abort): the upstream is out of step; never reuse this socket.
      this.#close();
      return;
    }
    if (!this.#gotHead) {
      this.#readHead(chunk);
      return;
    }
    this.#body(chunk);
  }

  #readHead(chunk: Buffer): void {
    const buf = this.#head === undefined ? chunk : Buffer.concat([this.#head, chunk]);
    const end = buf.indexOf(CRLF2);
    if (end < 0) {
      if (buf.length > MAX_HEAD) {
        this.#fail(new H1Error('the upstream answer head is larger than 64 KiB', 'SPOF_ERR_GATEWAY_BAD_RESPONSE'));
        return;
      }
      this.#head = buf === chunk ? Buffer.from(chunk) : buf; // `chunk` is the shared read buffer
      return;
    }
    this.#head = undefined;
    const lines = buf.toString('latin1', 0, end).split('\r\n');
    const sl = lines[0]!;
    // `HTTP/1.x SSS[ reason]`
    if (sl.length < 12 || !sl.startsWith('HTTP/1.') || sl.charCodeAt(8) !== 32 || (sl.length > 12 && sl.charCodeAt(12) !== 32)) {
      this.#bad(`a malformed status line ${JSON.stringify(sl.slice(0, 64))}`);
      return;
    }
    const status = Number(sl.slice(9, 12));
    if (!Number.isInteger(status) || status < 100 || status > 999) {
      this.#bad(`a malformed status ${JSON.stringify(sl.slice(9, 12))}`);
      return;
    }
    const http10 = sl.charCodeAt(7) === 48; /* 0 */
    const statusText = sl.length > 13 ? sl.slice(13) : '';
    const headers: string[] = [];
    let length = -1;
    let chunked = false;
    let otherCoding = false;
    let close = http10;
    let keepAliveMs = 0;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      // No colon, an empty name, white space before the colon or a folded line: refused (RFC 9112 §5).
      if (colon <= 0 || line.charCodeAt(colon - 1) === 32 || line.charCodeAt(colon - 1) === 9 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
        this.#bad(`a malformed header line ${JSON.stringify(line.slice(0, 64))}`);
        return;
      }
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      const len = name.length;
      if (len === 14 || len === 17 || len === 10) {
        const lower = name.toLowerCase();
        if (lower === 'content-length') {
          const n = /^\d{1,15}$/.test(value) ? Number(value) : -1;
          if (n < 0 || (length >= 0 && n !== length)) {
            this.#bad(`a bad content-length ${JSON.stringify(value.slice(0, 32))}`);
            return;
          }
          length = n;
        } else if (lower === 'transfer-encoding') {
          const codings = value.toLowerCase();
          if (codings === 'chunked' || codings.endsWith(',chunked') || codings.endsWith(' chunked')) chunked = true;
          else otherCoding = true;
        } else if (lower === 'connection') {
          const v = value.toLowerCase();
          if (v.includes('close')) close = true;
          else if (http10 && v.includes('keep-alive')) close = false;
        } else if (lower === 'keep-alive') {
          const m = /timeout=(\d+)/i.exec(value);
          if (m !== null) keepAliveMs = Number(m[1]) * 1000;
        }
      }
      headers.push(name, value);
    }
    const rest = end + 4 < buf.length ? buf.subarray(end + 4) : undefined;
    if (status < 200) {
      // Informational (100, 103): not passed on; the real answer follows.
      if (status === 101) {
        this.#bad('an unrequested protocol switch (101)');
        return;
      }
      if (rest !== undefined) this.#readHead(rest);
      return;
    }
    this.#gotHead = true;
    this.#keepAliveMs = keepAliveMs;
    if (close) this.#reusable = false;
    if ((chunked || otherCoding) && length >= 0) {
      // Both framings (RFC 9112 §6.3): the classic request-smuggling shape; refused, as llhttp does.
      this.#bad('both transfer-encoding and content-length');
      return;
    }
    const method = this.#req!.method;
    if (method === 'HEAD' || status === 204 || status === 304) this.#framing = F_NONE;
    else if (chunked && !otherCoding) {
      this.#framing = F_CHUNKED;
      this.#chunkState = C_SIZE;
      this.#line = '';
    } else if (chunked || otherCoding) {
      this.#framing = F_CLOSE;
      this.#reusable = false;
    } else if (length >= 0) {
      this.#framing = length === 0 ? F_NONE : F_LENGTH;
      this.#remaining = length;
    } else {
      this.#framing = F_CLOSE;
      this.#reusable = false;
    }
    const req = this.#req!;
    if (this.#framing === F_NONE) this.#clearTimer();
    else this.#arm(req.bodyTimeout, 'UND_ERR_BODY_TIMEOUT');
    const handler = this.#handler!;
    if (!handler.onHeaders(status, headers, this.resume, statusText)) {
      if (this.#handler === handler) this.#abortExchange(new H1Error('the handler refused the answer', 'UND_ERR_ABORTED'));
      return;
    }
    if (this.#handler !== handler) return;
    if (this.#framing === F_NONE) {
      if (rest !== undefined) this.#reusable = false;
      this.#complete();
      return;
    }
    if (rest !== undefined) this.#body(rest);
  }

  #body(chunk: Buffer): void {
    const handler = this.#handler!;
    switch (this.#framing) {
      case F_LENGTH: {
        if (chunk.length > this.#remaining) {
          // More than the answer: the upstream is out of step (or pipelining junk); not reused.
          this.#reusable = false;
          chunk = chunk.subarray(0, this.#remaining);
        }
        this.#remaining -= chunk.length;
        this.#deliver(handler, chunk);
        if (this.#handler !== handler) return;
        if (this.#remaining === 0) this.#complete();
        return;
      }
      case F_CHUNKED:
        this.#chunked(handler, chunk);
        return;
      case F_CLOSE:
        this.#deliver(handler, chunk);
        return;
      default:
        this.#close();
    }
  }

  #deliver(handler: H1Handler, chunk: Buffer): void {
    if (chunk.length === 0) return;
    // Body activity: the body timeout counts from the last byte.
    if (this.#deadline !== 0) this.#deadline = performance.now() + this.#req!.bodyTimeout;
    // A copy: `chunk` is a view of the shared read buffer (see READ_BUFFER).
    if (!handler.onData(Buffer.from(chunk)) && this.#handler === handler) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /** A streaming chunked decoder (RFC 9112 §7.1): sizes, data, CRLF, trailers (read and dropped). */
  #chunked(handler: H1Handler, buf: Buffer): void {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      if (this.#handler !== handler) return;
      switch (this.#chunkState) {
        case C_SIZE:
        case C_DATA_CRLF:
        case C_TRAILERS: {
          const lf = buf.indexOf(10, i);
          const part = buf.toString('latin1', i, lf < 0 ? n : lf);
          if (this.#line.length + part.length > 4096) {
            this.#bad('a chunk size or trailer line over 4 KiB');
            return;
          }
          this.#line += part;
          if (lf < 0) return;
          i = lf + 1;
          const line = this.#line.endsWith('\r') ? this.#line.slice(0, -1) : undefined;
          this.#line = '';
          if (line === undefined) {
            this.#bad('a chunk line not ended by CRLF');
            return;
          }
          if (this.#chunkState === C_DATA_CRLF) {
            if (line !== '') {
              this.#bad('chunk data longer than its size');
              return;
            }
            this.#chunkState = C_SIZE;
          } else if (this.#chunkState === C_TRAILERS) {
            if (line === '') {
              if (i < n) this.#reusable = false;
              this.#complete();
              return;
            }
          } else {
            const semi = line.indexOf(';');
            const hex = (semi < 0 ? line : line.slice(0, semi)).trimEnd();
            if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) {
              this.#bad(`a malformed chunk size ${JSON.stringify(hex.slice(0, 16))}`);
              return;
            }
            const size = Number.parseInt(hex, 16);
            if (size === 0) this.#chunkState = C_TRAILERS;
            else {
              this.#remaining = size;
              this.#chunkState = C_DATA;
            }
          }
          break;
        }
        default: {
          const take = Math.min(this.#remaining, n - i);
          const piece = buf.subarray(i, i + take);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#chunkState = C_DATA_CRLF;
          this.#deliver(handler, piece);
        }
      }
    }
  }

  ended(): void {
    // The upstream finished sending: that ends a read-until-close answer; anything else is cut short.
    if (this.#state === 'busy' && this.#handler !== undefined && this.#gotHead && this.#framing === F_CLOSE) {
      this.#reusable = false;
      this.#complete();
      return;
    }
    this.#fail(new H1Error('the upstream closed the connection', 'UND_ERR_SOCKET'));
  }

  #complete(): void {
    const handler = this.#handler!;
    this.#handler = undefined;
    this.#req = undefined;
    this.#clearTimer();
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
    handler.onComplete();
    if (this.#reusable) this.#release();
    else this.#close();
  }

  #release(): void {
    if (this.#state === 'closed') return;
    this.#state = 'idle';
    // An idle keep-alive socket does not keep the process alive (as undici's): an SDK user that
    // never closes its client still exits.
    this.#socket.unref();
    const pool = this.#pool;
    let idleMs = pool.idleTimeoutMs;
    if (this.#keepAliveMs > 0) idleMs = Math.min(idleMs, Math.max(this.#keepAliveMs - 1000, 500));
    this.#arm(idleMs, '');
    pool.released(this);
  }

  #bad(what: string): void {
    this.#fail(new H1Error(`the upstream sent ${what}`, 'SPOF_ERR_GATEWAY_BAD_RESPONSE'));
  }

  #fail(err: Error): void {
    this.fail(err);
  }

  /** The connection broke (or a protocol error): the exchange on it, if any, fails with `err`. */
  fail(err: Error): void {
    const handler = this.#handler;
    this.#handler = undefined;
    this.#req = undefined;
    this.#close();
    handler?.onError(err);
  }

  #abortExchange(err?: Error): void {
    const handler = this.#handler;
    if (handler === undefined) return;
    this.#handler = undefined;
    this.#req = undefined;
    // Connecting: nothing was sent, the connection may serve the next request once it is up.
    if (this.#state !== 'connecting') this.#close();
    handler.onError(err ?? new H1Error('the request was aborted', 'UND_ERR_ABORTED'));
  }

  timedOut(): void {
    this.#timer = undefined;
    const deadline = this.#deadline;
    if (deadline === 0 || this.#state === 'closed') return;
    const now = performance.now();
    if (now < deadline) {
      // Armed again since this timer was set (a later deadline): wait out the rest.
      this.#schedule(deadline - now, deadline);
      return;
    }
    this.#deadline = 0;
    const code = this.#timerCode;
    if (code === '') {
      this.#close(); // idle timeout
      return;
    }
    const what = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'connect' : code === 'UND_ERR_HEADERS_TIMEOUT' ? 'headers' : 'body';
    this.fail(new H1Error(`upstream ${what} timeout`, code));
  }

  /**
   * Sets the one deadline of the connection (connect, headers, body or idle). A timer that already
   * fires by then is left as it is and, when it fires early, waits out the rest: arming is then a
   * field write, where a `setTimeout`/`clearTimeout` pair per phase (three per exchange) measured
   * ~2% of the gateway's CPU.
   */
  #arm(ms: number, code: string): void {
    this.#timerCode = code;
    const deadline = performance.now() + ms;
    this.#deadline = deadline;
    if (this.#timer !== undefined) {
      if (this.#timerAt <= deadline) return;
      clearTimeout(this.#timer);
    }
    this.#schedule(ms, deadline);
  }

  #schedule(ms: number, at: number): void {
    this.#timer = setTimeout(onTimer, Math.max(1, Math.ceil(ms)), this);
    this.#timer.unref();
    this.#timerAt = at;
  }

  /** Nothing armed; a timer still pending finds that when it fires. */
  #clearTimer(): void {
    this.#deadline = 0;
  }

  #close(): void {
    if (this.#state === 'closed') return;
    const wasIdle = this.#state === 'idle';
    this.#state = 'closed';
    this.#deadline = 0;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#socket.destroy();
    this.#pool.closed(this, wasIdle);
  }

  /** Closes the connection: an exchange on it fails. */
  destroy(err: Error): void {
    if (this.#handler !== undefined) this.fail(err);
    else this.#close();
  }
}

function hasHeader(headers: readonly string[], lowerName: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.length === lowerName.length && headers[i]!.toLowerCase() === lowerName) return true;
  return false;
}

interface Waiting {
  readonly req: H1Request;
  readonly handler: H1Handler;
}

/**
 * Keep-alive connections to one `http:` upstream.
 *
 * @example
 * const pool = new H1Pool({ host: '127.0.0.1', port: 8080, connections: 256, idleTimeoutMs: 4_000, connectTimeoutMs: 2_000 });
 * pool.dispatch({ method: 'GET', path: '/', headers: ['host', 'example'], headersTimeout: 60_000, bodyTimeout: 60_000 }, handler);
 * await pool.close();
 */
export class H1Pool {
  readonly #o: H1PoolOptions;
  readonly hostHeader: string;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** Idle connections, most recently used last (reused first: its socket is the warmest). */
  readonly #idle: H1Conn[] = [];
  readonly #all = new Set<H1Conn>();
  #queue: Waiting[] = [];
  #closing = false;
  #onDrained: (() => void) | undefined;

  constructor(o: H1PoolOptions) {
    this.#o = o;
    this.hostHeader = o.host.includes(':') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`;
    this.idleTimeoutMs = o.idleTimeoutMs;
    this.connectTimeoutMs = o.connectTimeoutMs;
  }

  /** Sends `req` on an idle connection, a new one, or queues it while `connections` are busy. */
  dispatch(req: H1Request, handler: H1Handler): void {
    if (this.#closing) {
      handler.onError(new H1Error('the upstream pool is closed', 'UND_ERR_CLOSED'));
      return;
    }
    if (req.body !== undefined && hasHeader(req.headers, 'content-length')) {
      handler.onError(new H1Error('a request with a body gets its content-length from the client; remove it from the headers', 'UND_ERR_INVALID_ARG'));
      return;
    }
    const conn = this.#idle.pop();
    if (conn !== undefined) {
      conn.start(req, handler);
      return;
    }
    if (this.#all.size < this.#o.connections) {
      const c = new H1Conn(this, this.#o);
      this.#all.add(c);
      c.start(req, handler);
      return;
    }
    this.#queue.push({ req, handler });
  }

  /** A connection is free for the next request. */
  released(conn: H1Conn): void {
    const next = this.#queue.shift();
    if (next !== undefined) {
      conn.start(next.req, next.handler);
      return;
    }
    if (this.#closing) {
      conn.destroy(new H1Error('the upstream pool is closed', 'UND_ERR_CLOSED'));
      return;
    }
    this.#idle.push(conn);
  }

  /** A connection is gone. */
  closed(conn: H1Conn, wasIdle: boolean): void {
    this.#all.delete(conn);
    if (wasIdle) {
      const i = this.#idle.indexOf(conn);
      if (i >= 0) this.#idle.splice(i, 1);
    }
    // A queued request takes the freed slot (also while closing: it was accepted before).
    const next = this.#queue.shift();
    if (next !== undefined) {
      const c = new H1Conn(this, this.#o);
      this.#all.add(c);
      c.start(next.req, next.handler);
    }
    if (this.#closing && this.#all.size === 0 && this.#queue.length === 0) this.#onDrained?.();
  }

  /** Stops taking requests; those in flight (and queued) finish, then every connection closes. */
  close(): Promise<void> {
    this.#closing = true;
    for (const c of this.#idle.splice(0)) c.destroy(new H1Error('the upstream pool is closed', 'UND_ERR_CLOSED'));
    if (this.#all.size === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#onDrained = resolve;
      // Queued requests still go out on the connections that free up.
      for (const c of [...this.#all]) if (c.idle) c.destroy(new H1Error('the upstream pool is closed', 'UND_ERR_CLOSED'));
    });
  }

  /** Closes every connection now; exchanges in flight and queued fail. */
  destroy(): Promise<void> {
    this.#closing = true;
    const err = new H1Error('the upstream pool was destroyed', 'UND_ERR_DESTROYED');
    const queued = this.#queue;
    this.#queue = [];
    for (const w of queued) w.handler.onError(err);
    for (const c of [...this.#all]) c.destroy(err);
    return Promise.resolve();
  }
}
