/**
 * The gateway's listener: a plain TCP server that serves the common request itself (a complete,
 * well-formed HTTP/1.1 `GET` or `HEAD` head without a body, upgrade or `Expect`) and hands every other
 * connection to a `node:http` server, which then owns it for good.
 *
 * Why by hand (measured on the gateway benchmark, wrk -c50 through the gateway to a node upstream):
 * node's HTTP server costs ~270 ms of CPU per 10 000 keep-alive requests for a bare "hello" answer,
 * against ~150 for the same answer from a `net` server; the difference is its per-request objects and
 * streams (`IncomingMessage`, `ServerResponse`, the socket timer switched off and on around each
 * request, the `finish`/`close` ticks), not llhttp. The gateway spent the same on it per proxied
 * request: with this listener its CPU per 10k proxied requests went from ~620 ms to ~505 (same-machine
 * A/B, median of 5), ~18% (commit 9128418).
 *
 * What stays with node, by handing the connection over at a request boundary (the bytes read so far
 * pushed back with `unshift`, then `emit('connection')`, which node documents for injecting sockets):
 * request bodies (content-length, chunked), `Expect: 100-continue`, upgrades (WebSocket), HTTP/1.0,
 * other methods, absolute-form targets, a head that did not arrive in one piece (node's headers timeout
 * and size limits apply), and anything this parser would refuse: node answers it as it always did
 * (400, 431 …). So nothing changes for a client; only the common case is cheaper.
 *
 * What the fast path does as node does:
 * - keep-alive: `Connection: keep-alive` and `Keep-Alive: timeout=N` on every answer unless the request
 *   or the answer says `close`; an idle connection is closed after `keepAliveTimeoutMs`;
 * - pipelining: requests read while one is in flight wait (reading pauses past 64 KiB) and are answered
 *   in order;
 * - the answer: a `Date` header when the headers have none; `Transfer-Encoding: chunked` when they carry
 *   no `Content-Length` (and no body at all for `HEAD`, 204 and 304); header names and values checked
 *   as node checks them, with the same error codes thrown by `writeHead`;
 * - a client's FIN closes the connection and cancels a request in flight; after a last answer
 *   (`close`) the socket is destroyed once written.
 *
 * One difference: a connection that never sends a byte is closed after `keepAliveTimeoutMs`; node's
 * server keeps such a connection until the client goes.
 *
 * Connection state (`FastConn`):
 *
 * | from    | event                                    | to                      |
 * |---------|------------------------------------------|-------------------------|
 * | idle    | a complete eligible head                 | busy                    |
 * | idle    | any other bytes                          | node (handed over)      |
 * | busy    | answer ended, keep-alive                 | idle (next queued head) |
 * | busy    | answer ended with close, or client FIN   | closed                  |
 * | any     | socket closed or timed out while idle    | closed                  |
 */
import { STATUS_CODES, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';

/** The request of the fast path: what the proxy reads of node's `IncomingMessage`. */
export class FastRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  /** No `Connection: close`. */
  readonly keepAlive: boolean;
  #headers: IncomingHttpHeaders | undefined;

  constructor(method: string, url: string, rawHeaders: string[], socket: Socket, keepAlive: boolean) {
    this.method = method;
    this.url = url;
    this.rawHeaders = rawHeaders;
    this.socket = socket;
    this.keepAlive = keepAlive;
  }

  /** Built on first use, as node builds `req.headers`. */
  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= headersObject(this.rawHeaders));
  }
}

/** Headers node keeps only the first of (`_http_incoming.js` `matchKnownFields`). */
const FIRST_WINS = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

/** `req.headers` from the raw list, with node's rules for duplicates. */
export function headersObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const had = out[name];
    if (had === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'set-cookie') (had as string[]).push(value);
    else if (FIRST_WINS.has(name)) continue;
    else out[name] = `${had as string}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

/** A node-style error with a `code` (what `writeHead` throws for a bad status or header). */
class HeaderError extends TypeError {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Bytes node accepts in a header value (and a reason phrase): HTAB, visible ASCII, space, obs-text. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/**
 * A head the fast path takes, checked in one scan: `GET` or `HEAD`, an origin-form target of visible
 * ASCII (node refuses DEL and bytes past 0x7F there), `HTTP/1.1`, then header lines with a token name
 * and a value of bytes node accepts (no white space before the colon, no folded lines).
 */
const FAST_HEAD = /^(?:GET|HEAD) \/[!-~]* HTTP\/1\.1(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)+$/;
const CONN_CLOSE = /(?:^|\W)close(?:$|\W)/i;

/** Larger heads go to node (its limit is 16 KiB; it answers 431 past it). */
const MAX_FAST_HEAD = 8 * 1024;
/** Past this many header lines, node (which drops lines past 2 000, and answers 431 past its size limit). */
const MAX_FAST_HEADERS = 100;
/** Bytes read ahead while a request is in flight before reading pauses. */
const MAX_PENDING = 64 * 1024;
/** Answer bytes gathered into one write before they are sent. */
const MAX_GATHER = 16 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const CRLF = Buffer.from('\r\n');

let dateCache = '';
let dateUntil = 0;
function utcDate(): string {
  const now = Date.now();
  if (now >= dateUntil) {
    dateCache = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateCache;
}

type Listener = (this: FastResponse) => void;

/**
 * The answer of the fast path: the subset of node's `ServerResponse` the proxy uses (`writeHead` with
 * a flat header array, `write`, `end`, `destroy`, `headersSent`, `destroyed`, the `close` and `drain`
 * events). The head and the first body bytes of an answer go out in one write.
 */
export class FastResponse {
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  readonly #conn: FastConn;
  readonly #hasBodyForMethod: boolean;
  readonly #keepAlive: boolean;
  #hasBody = true;
  #chunked = false;
  #close = false;
  #head: string | undefined;
  #parts: Buffer[] = [];
  #size = 0;
  #flushQueued = false;
  #onClose: Listener | undefined;
  #onDrain: Listener | undefined;

  constructor(conn: FastConn, method: string, keepAlive: boolean) {
    this.#conn = conn;
    this.#hasBodyForMethod = method !== 'HEAD';
    this.#keepAlive = keepAlive;
  }

  on(event: 'close', listener: Listener): this {
    if (event === 'close') this.#onClose = listener;
    return this;
  }

  once(event: 'drain', listener: Listener): this {
    if (event === 'drain') this.#onDrain = listener;
    return this;
  }

  writeHead(status: number, statusText: string | readonly string[], headers?: readonly string[]): this {
    if (this.headersSent) throw new HeaderError('Cannot write headers after they are sent to the client', 'ERR_HTTP_HEADERS_SENT');
    let reason: string;
    let list: readonly string[];
    if (typeof statusText === 'string') {
      reason = statusText;
      list = headers ?? [];
    } else {
      reason = STATUS_CODES[status] ?? 'unknown';
      list = statusText;
    }
    if (!Number.isInteger(status) || status < 100 || status > 999) throw new HeaderError(`Invalid status code: ${status}`, 'ERR_HTTP_INVALID_STATUS_CODE');
    if (BAD_VALUE.test(reason)) throw new HeaderError('Invalid character in statusMessage', 'ERR_INVALID_CHAR');
    let head = `HTTP/1.1 ${status} ${reason}\r\n`;
    let hasLength = false;
    let hasDate = false;
    let hasConnection = false;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      const value = list[i + 1];
      if (!TOKEN.test(name)) throw new HeaderError(`Header name must be a valid HTTP token ["${name}"]`, 'ERR_INVALID_HTTP_TOKEN');
      if (value === undefined) throw new HeaderError(`Invalid value "undefined" for header "${name}"`, 'ERR_HTTP_INVALID_HEADER_VALUE');
      if (BAD_VALUE.test(value)) throw new HeaderError(`Invalid character in header content ["${name}"]`, 'ERR_INVALID_CHAR');
      const len = name.length;
      if (len === 14 || len === 4 || len === 10) {
        const lower = name.toLowerCase();
        if (lower === 'content-length') hasLength = true;
        else if (lower === 'date') hasDate = true;
        else if (lower === 'connection') {
          hasConnection = true;
          if (CONN_CLOSE.test(value)) this.#close = true;
        }
      }
      head += `${name}: ${value}\r\n`;
    }
    if (!hasDate) head += `Date: ${utcDate()}\r\n`;
    if (!hasConnection) {
      if (this.#keepAlive) head += `Connection: keep-alive\r\nKeep-Alive: timeout=${this.#conn.server.keepAliveSeconds}\r\n`;
      else {
        head += 'Connection: close\r\n';
        this.#close = true;
      }
    } else if (!this.#keepAlive) this.#close = true;
    this.#hasBody = this.#hasBodyForMethod && status !== 204 && status !== 304 && status >= 200;
    if (this.#hasBody && !hasLength) {
      head += 'Transfer-Encoding: chunked\r\n';
      this.#chunked = true;
    }
    this.#head = `${head}\r\n`;
    this.headersSent = true;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (!this.headersSent) this.writeHead(200, []);
    if (!this.#hasBody || chunk.length === 0) return true;
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#chunked) {
      this.#add(Buffer.from(`${b.length.toString(16)}\r\n`, 'latin1'));
      this.#add(b);
      this.#add(CRLF);
    } else this.#add(b);
    if (this.#size >= MAX_GATHER) return this.#flush();
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      process.nextTick(flushTick, this);
    }
    return !this.#conn.socket.writableNeedDrain;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded) return this;
    if (chunk !== undefined) this.write(chunk);
    else if (!this.headersSent) this.writeHead(200, []);
    if (this.destroyed) return this;
    this.writableEnded = true;
    if (this.#chunked) this.#add(LAST_CHUNK);
    this.#flush();
    this.#conn.answered(this, this.#close);
    return this;
  }

  destroy(_err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#conn.socket.destroy();
    return this;
  }

  /** Sends what is gathered: head and body in one buffer when small (one syscall). */
  flushQueued(): void {
    this.#flushQueued = false;
    if (!this.destroyed) this.#flush();
  }

  #add(b: Buffer): void {
    this.#parts.push(b);
    this.#size += b.length;
  }

  #flush(): boolean {
    const head = this.#head;
    const parts = this.#parts;
    const socket = this.#conn.socket;
    if (head === undefined && parts.length === 0) return !socket.writableNeedDrain;
    this.#head = undefined;
    let ok: boolean;
    if (parts.length === 0) ok = socket.write(head!, 'latin1');
    else {
      const headLen = head === undefined ? 0 : head.length;
      const total = headLen + this.#size;
      if (head === undefined && parts.length === 1) ok = socket.write(parts[0]!);
      else if (total <= 64 * 1024) {
        const buf = Buffer.allocUnsafe(total);
        if (head !== undefined) buf.write(head, 0, 'latin1');
        let at = headLen;
        for (const p of parts) at += p.copy(buf, at);
        ok = socket.write(buf);
      } else {
        socket.cork();
        if (head !== undefined) socket.write(head, 'latin1');
        for (const p of parts) socket.write(p);
        socket.uncork();
        ok = !socket.writableNeedDrain;
      }
      this.#parts = [];
      this.#size = 0;
    }
    return ok;
  }

  /** The socket took what was queued. */
  drained(): void {
    const fn = this.#onDrain;
    this.#onDrain = undefined;
    fn?.call(this);
  }

  /** The connection closed before the answer ended. */
  closed(): void {
    this.destroyed = true;
    const fn = this.#onClose;
    this.#onClose = undefined;
    fn?.call(this);
  }
}

function flushTick(res: FastResponse): void {
  res.flushQueued();
}

const kConn = Symbol('spofless.fastconn');
type FastSocket = Socket & { [kConn]?: FastConn | undefined };

function onData(this: FastSocket, chunk: Buffer): void {
  this[kConn]!.data(chunk);
}
function onEnd(this: FastSocket): void {
  this[kConn]!.ended();
}
function onClose(this: FastSocket): void {
  this[kConn]!.closed();
}
function onError(): void {
  // The socket closes after an error; `close` does the bookkeeping.
}
function onTimeout(this: FastSocket): void {
  this[kConn]!.timedOut();
}
function destroyAfterFinish(this: Socket): void {
  this.destroy();
}
function onDrain(this: FastSocket): void {
  this[kConn]!.drained();
}

/** The socket events the fast path listens to: attached in one place, removed in one on hand-over. */
const SOCKET_LISTENERS: ReadonlyArray<readonly [string, (this: FastSocket, ...args: never[]) => void]> = [
  ['data', onData],
  ['end', onEnd],
  ['close', onClose],
  ['error', onError],
  ['drain', onDrain],
  ['timeout', onTimeout],
];

/** One client connection while the fast path owns it. */
class FastConn {
  readonly server: FastServer;
  readonly socket: FastSocket;
  #buf: Buffer | undefined;
  #res: FastResponse | undefined;
  #parsing = false;
  #paused = false;

  constructor(server: FastServer, socket: Socket) {
    this.server = server;
    this.socket = socket;
    const s = socket as FastSocket;
    s[kConn] = this;
    for (const [event, fn] of SOCKET_LISTENERS) s.on(event, fn as (...args: unknown[]) => void);
    // Left on for the connection's life: net refreshes it on every read and write, and an expiry
    // closes the connection only when no request is in flight (node's keep-alive timeout).
    s.setTimeout(server.keepAliveTimeoutMs);
  }

  get idle(): boolean {
    return this.#res === undefined;
  }

  data(chunk: Buffer): void {
    this.#buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    if (this.#res !== undefined) {
      if (this.#buf.length > MAX_PENDING && !this.#paused) {
        this.#paused = true;
        this.socket.pause();
      }
      return;
    }
    this.#parse();
  }

  /** Serves the complete heads in the buffer, one at a time; hands the connection to node at the first one it does not take. */
  #parse(): void {
    if (this.#parsing) return;
    this.#parsing = true;
    try {
      while (this.#res === undefined && this.#buf !== undefined && !this.socket.destroyed) {
        const buf = this.#buf;
        const end = buf.length <= MAX_FAST_HEAD + 4 ? buf.indexOf(CRLF2) : buf.subarray(0, MAX_FAST_HEAD + 4).indexOf(CRLF2);
        const req = end < 0 ? undefined : this.#request(buf.toString('latin1', 0, end));
        if (req === undefined) {
          this.#handOver();
          return;
        }
        this.#buf = end + 4 < buf.length ? buf.subarray(end + 4) : undefined;
        const res = new FastResponse(this, req.method, req.keepAlive);
        this.#res = res;
        this.server.onRequest(req, res);
      }
    } finally {
      this.#parsing = false;
    }
  }

  /** The request of a complete head, or `undefined` when node should have it. */
  #request(head: string): FastRequest | undefined {
    // One scan checks the whole head (cheaper than a test per line); anything else is node's.
    if (!FAST_HEAD.test(head)) return undefined;
    const lineEnd = head.indexOf('\r\n');
    const method = head.charCodeAt(0) === 71 /* G */ ? 'GET' : 'HEAD';
    const target = head.slice(method.length + 1, lineEnd - 9);
    const raw: string[] = [];
    let keepAlive = true;
    let hosts = 0;
    let at = lineEnd + 2;
    const n = head.length;
    while (at < n) {
      let next = head.indexOf('\r\n', at);
      if (next < 0) next = n;
      const colon = head.indexOf(':', at);
      const name = head.slice(at, colon);
      // The value without the optional white space around it (SP, HTAB: node trims only those).
      let v0 = colon + 1;
      let v1 = next;
      while (v0 < v1 && isOws(head.charCodeAt(v0))) v0++;
      while (v1 > v0 && isOws(head.charCodeAt(v1 - 1))) v1--;
      const value = head.slice(v0, v1);
      const len = name.length;
      if (len === 4 || len === 6 || len === 7 || len === 10 || len === 14 || len === 17) {
        const lower = name.toLowerCase();
        if (lower === 'host') hosts++;
        else if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'upgrade' || lower === 'expect') return undefined;
        else if (lower === 'connection') {
          for (const t of value.split(',')) {
            const token = t.trim().toLowerCase();
            if (token === 'close') keepAlive = false;
            else if (token === 'upgrade') return undefined;
          }
        }
      }
      raw.push(name, value);
      if (raw.length > MAX_FAST_HEADERS * 2) return undefined;
      at = next + 2;
    }
    if (hosts !== 1) return undefined;
    return new FastRequest(method, target, raw, this.socket, keepAlive);
  }

  /** From here on node's HTTP server owns the connection; the bytes read so far go back to the socket first. */
  #handOver(): void {
    const s = this.socket;
    const buf = this.#buf;
    this.#buf = undefined;
    this.server.conns.delete(this);
    for (const [event, fn] of SOCKET_LISTENERS) s.removeListener(event, fn as (...args: unknown[]) => void);
    s.setTimeout(0);
    s[kConn] = undefined;
    this.server.http.emit('connection', s);
    if (buf !== undefined) s.unshift(buf);
  }

  /** The answer in flight has ended. */
  answered(res: FastResponse, close: boolean): void {
    if (this.#res !== res) return;
    this.#res = undefined;
    if (close || this.server.closing) {
      // As node does after the last answer: the socket is destroyed once written (a client that
      // keeps its side open does not keep it half-open).
      const s = this.socket;
      this.#buf = undefined;
      if (s.writableFinished) s.destroy();
      else {
        s.once('finish', destroyAfterFinish);
        s.end();
      }
      return;
    }
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
    if (this.#buf !== undefined) this.#parse();
  }

  drained(): void {
    this.#res?.drained();
  }

  ended(): void {
    // As node's server does (`httpAllowHalfOpen` off): a client's FIN aborts what it asked and closes;
    // the socket's `close` then cancels a request in flight.
    this.#buf = undefined;
    this.socket.end();
  }

  timedOut(): void {
    if (this.#res === undefined) this.socket.destroy();
  }

  closed(): void {
    this.server.conns.delete(this);
    const res = this.#res;
    this.#res = undefined;
    if (res !== undefined && !res.writableEnded) res.closed();
  }
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

export interface FastServerOptions {
  /** Takes every connection (and the rest of its bytes) that the fast path does not. */
  readonly http: HttpServer;
  readonly keepAliveTimeoutMs: number;
  readonly onRequest: (req: FastRequest, res: FastResponse) => void;
}

/**
 * The listener: fast path in front, `http` behind.
 *
 * @example
 * const http = createServer(handler);
 * const server = new FastServer({ http, keepAliveTimeoutMs: 65_000, onRequest: handler });
 * server.listen(8080, '127.0.0.1', () => console.log(server.address()));
 */
export class FastServer {
  readonly http: HttpServer;
  readonly keepAliveTimeoutMs: number;
  readonly keepAliveSeconds: number;
  readonly onRequest: (req: FastRequest, res: FastResponse) => void;
  readonly conns = new Set<FastConn>();
  readonly #net: NetServer;
  /** After `close()`: answers end with `connection: close`. */
  closing = false;

  constructor(o: FastServerOptions) {
    this.http = o.http;
    this.keepAliveTimeoutMs = o.keepAliveTimeoutMs;
    this.keepAliveSeconds = Math.floor(o.keepAliveTimeoutMs / 1000);
    this.onRequest = o.onRequest;
    // As node's HTTP server opens its sockets (a handed-over socket must look like one of its own).
    this.#net = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      this.conns.add(new FastConn(this, socket));
    });
  }

  listen(port: number, host: string, cb: () => void): this {
    this.#net.once('listening', () => {
      // node's HTTP server starts its connection tracking (headers timeout, idle connections) when it
      // listens; it never does itself here, so it is told.
      this.http.emit('listening');
      cb();
    });
    this.#net.listen(port, host);
    return this;
  }

  once(event: 'error', fn: (err: Error) => void): this {
    this.#net.once(event, fn);
    return this;
  }

  off(event: 'error', fn: (err: Error) => void): this {
    this.#net.off(event, fn);
    return this;
  }

  address(): AddressInfo | string | null {
    return this.#net.address();
  }

  /** Stops accepting connections; those open stay (see `closeIdleConnections`). */
  close(): void {
    this.closing = true;
    this.#net.close();
    this.http.close();
  }

  /** Closes the connections with no request in flight. */
  closeIdleConnections(): void {
    for (const c of this.conns) if (c.idle) c.socket.destroy();
    this.http.closeIdleConnections();
  }

  closeAllConnections(): void {
    for (const c of this.conns) c.socket.destroy();
    this.http.closeAllConnections();
  }
}
