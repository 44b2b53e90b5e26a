/**
 * The client side of the lease keep-alive stream (`POST /v1/leases/keepalive`, see docs/api.md): one
 * long-lived request per `ControlPlaneClient`, opened on the first renewal and shared by all of its
 * registrations; a renewal is one NDJSON line `{"id":"<lease>"}` up and one `{"id","ttl"}` (or
 * `{"id","error"}`) down, answered in order. etcd's `LeaseKeepAlive` stream, over HTTP/1.1, on
 * `node:http`. It asks for the upgraded form first (`upgrade: spofless-keepalive/1`, answered 101: the
 * same lines, raw on the connection, the cheapest form for the control plane to serve); a control plane
 * or proxy that ignores the upgrade answers 200 instead, and the stream is then opened again at once as
 * a chunked request body read full duplex (the answers are read while the request body stays open).
 *
 * While the stream is down (it broke, or could not be opened) renewals go through the per-request
 * endpoint `POST /v1/leases/{id}/keepalive`, and the stream is opened again on the first renewal after
 * a backoff (full jitter, 250 ms doubling up to 10 s; it starts over once an answer arrives). A server
 * that answers 404, 405, 415 or 501 has no stream endpoint (an older control plane): per-request
 * renewals for 10 minutes, then one more try. A renewal waits at most 1 s for the stream's head, then
 * goes per request while the stream goes on opening. A renewal whose line was sent when the stream broke is sent again per
 * request (a keepalive is safe to repeat). An answer later than the caller's deadline means the stream
 * is stuck: it is cut, and the next renewals go per request.
 *
 * States (`#state.value`):
 * | from              | on                                                     | to          |
 * |-------------------|--------------------------------------------------------|-------------|
 * | idle              | a renewal                                              | connecting  |
 * | connecting        | 101 (upgraded), or 200 to a chunked-body request       | open        |
 * | connecting        | 200 to an upgrade request (not understood): chunked next | connecting |
 * | connecting        | 404, 405, 415 or 501                                   | unsupported |
 * | connecting        | another status, a connection failure, no head in time  | down        |
 * | open              | the response ends or fails, a bad answer, a late answer | down       |
 * | down, unsupported | a renewal once `retryAt` has passed                    | connecting  |
 * | any               | `close()`                                              | closed      |
 *
 * The socket is unref'd: an open stream does not keep the process alive.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { request as httpsRequest } from 'node:https';
import { ClientClosedError, ControlPlaneError, ErrorCode, TimeoutError } from '../errors/index.js';
import { fullJitterBackoff, type Backoff, type RandomSource } from '../resilience/index.js';
import type { Transport } from './http.js';
import type { LeaseGrant } from './types.js';

const PATH = '/v1/leases/keepalive';
const NDJSON = 'application/x-ndjson';
/** The upgraded stream's protocol token (the server's `KEEPALIVE_UPGRADE`). */
const UPGRADE = 'spofless-keepalive/1';
/** How long a renewal waits for the stream's head before it goes per request. */
const HEAD_WAIT_MS = 1_000;
/** The answers of a control plane without the stream endpoint (404, 405; 415 from one that takes JSON only; 501). */
const UNSUPPORTED = new Set([404, 405, 415, 501]);
/** How long a server without the stream endpoint is renewed per request before the stream is tried again. */
const UNSUPPORTED_RETRY_MS = 10 * 60_000;

/** The status an error answer would have had as its own HTTP request, so callers see the same errors. */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  [ErrorCode.StoreLeaseNotFound]: 404,
  [ErrorCode.InvalidArgument]: 400,
};

/** What the keep-alive stream of a client has been doing, for logs and tests. */
export interface KeepAliveStreamStats {
  readonly state: 'idle' | 'connecting' | 'open' | 'down' | 'unsupported' | 'closed';
  /** Renewals answered over the stream. */
  readonly overStream: number;
  /** Renewals sent per request (the stream was down, unsupported or broke under them). */
  readonly perRequest: number;
  /** Streams opened (a 200 head received). */
  readonly opened: number;
}

export interface KeepAliveStreamOptions {
  /** Waits between attempts to open the stream again. Default full jitter, base 250 ms, cap 10 s. */
  readonly backoff?: Backoff;
  readonly random?: RandomSource;
}

interface Waiter {
  readonly lease: string;
  readonly resolve: (g: LeaseGrant) => void;
  readonly reject: (err: Error) => void;
}

interface Conn {
  readonly req: ClientRequest;
  /** Where lines go: the upgraded socket, or the request body. */
  out: { write(line: string): unknown };
  /** The upgraded socket, once there is one. */
  socket?: Duplex;
  /** Lines sent and not yet answered, oldest first: answers come in the same order. */
  readonly waiters: Waiter[];
  /** The control plane it goes to: a stuck stream moves the client on to the next. */
  readonly base: string;
  buf: string;
}

type State =
  | { readonly value: 'idle' }
  | { readonly value: 'connecting'; readonly conn: Conn; readonly ready: Promise<void> }
  | { readonly value: 'open'; readonly conn: Conn }
  | { readonly value: 'down'; readonly retryAt: number }
  | { readonly value: 'unsupported'; readonly retryAt: number }
  | { readonly value: 'closed' };

/** Rejects the renewals of a stream that broke: they are sent again per request. */
class StreamBroken extends Error {}

/**
 * Internal: owned by `ControlPlaneClient`; `Registration`s renew through `keepAlive()`.
 *
 * @example
 * ```ts
 * const stream = new KeepAliveStream(transport);
 * const { ttl } = await stream.keepAlive(lease, AbortSignal.timeout(3_000));
 * stream.close();
 * ```
 */
export class KeepAliveStream {
  readonly #transport: Transport;
  readonly #backoff: Backoff;
  #state: State = { value: 'idle' };
  #failures = 0;
  #lastDelay = 0;
  #overStream = 0;
  #perRequest = 0;
  #opened = 0;
  /** Control planes (base URLs) that answered an upgrade request as a plain one: chunked bodies there. */
  readonly #noUpgrade = new Set<string>();

  constructor(transport: Transport, options: KeepAliveStreamOptions = {}) {
    this.#transport = transport;
    this.#backoff = options.backoff ?? fullJitterBackoff({ base: 250, cap: 10_000, ...(options.random ? { random: options.random } : {}) });
  }

  get stats(): KeepAliveStreamStats {
    return { state: this.#state.value, overStream: this.#overStream, perRequest: this.#perRequest, opened: this.#opened };
  }

  /**
   * Renews `lease`: over the stream when it is (or can be) open, else per request. Rejects as the
   * per-request call would: a `ControlPlaneError` with status 404 and `SPOF_ERR_STORE_LEASE_NOT_FOUND`
   * for a lease that is gone.
   */
  async keepAlive(lease: string, signal?: AbortSignal, attemptTimeout?: number): Promise<LeaseGrant> {
    // With `attemptTimeout`, the stream gets that long: a stream (or its head) that does not answer by
    // then is stuck (a stopped control plane), and the rest of the caller's time goes to a per-request
    // renewal, on the next control plane.
    const attempt = attemptTimeout === undefined ? undefined : AbortSignal.timeout(Math.max(1, Math.ceil(attemptTimeout)));
    const streamSignal = attempt === undefined ? signal : signal === undefined ? attempt : AbortSignal.any([signal, attempt]);
    const conn = await this.#ready(streamSignal);
    if (conn !== undefined) {
      try {
        const g = await this.#send(conn, lease, streamSignal);
        this.#overStream++;
        return g;
      } catch (err) {
        if (!(err instanceof StreamBroken)) throw err;
      }
    } else if (attempt?.aborted === true && signal?.aborted !== true) {
      const s = this.#state;
      if (s.value === 'connecting') {
        // No head within the attempt: that control plane is not answering; the next calls go elsewhere.
        this.#transport.failed(s.conn.base);
        this.#drop(s.conn, new TimeoutError(`${PATH}: no answer from ${s.conn.base} within ${attemptTimeout} ms`));
      }
    }
    this.#perRequest++;
    const timeout = attemptTimeout === undefined ? undefined : Math.min(attemptTimeout, this.#transport.timeout);
    return this.#transport.json<LeaseGrant>('POST', `/v1/leases/${encodeURIComponent(lease)}/keepalive`, {
      signal,
      idempotent: true,
      ...(timeout !== undefined ? { timeout } : {}),
    });
  }

  /** Ends the stream; renewals waiting on it reject with `ClientClosedError`. Idempotent. */
  close(): void {
    const s = this.#state;
    this.#state = { value: 'closed' };
    if (s.value === 'open' || s.value === 'connecting') this.#drop(s.conn, new ClientClosedError());
  }

  // ---- opening -----------------------------------------------------------------------------------

  /** The open stream, or `undefined` to renew per request. */
  async #ready(signal: AbortSignal | undefined): Promise<Conn | undefined> {
    const s = this.#state;
    switch (s.value) {
      case 'open':
        return s.conn;
      case 'closed':
        throw new ClientClosedError();
      case 'down':
      case 'unsupported':
        if (Date.now() < s.retryAt) return undefined;
        this.#connect();
        return this.#ready(signal);
      case 'idle':
        this.#connect();
        return this.#ready(signal);
      case 'connecting': {
        // A renewal waits for the head a short while only (a proxy that holds request bodies would
        // hold it forever): then it goes per request, and the stream keeps opening for the next ones.
        let onAbort: (() => void) | undefined;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          s.ready,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, Math.min(HEAD_WAIT_MS, this.#transport.timeout));
            timer.unref();
            signal?.addEventListener('abort', (onAbort = () => resolve()), { once: true });
          }),
        ]);
        clearTimeout(timer);
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
        const now = this.#state;
        return now.value === 'open' ? now.conn : undefined;
      }
    }
  }

  #connect(): void {
    const base = this.#transport.url;
    const url = base + PATH;
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const upgrade = !this.#noUpgrade.has(base);
    const req = request(url, {
      method: 'POST',
      headers: { ...this.#transport.headers, 'content-type': NDJSON, accept: NDJSON, ...(upgrade ? { connection: 'upgrade', upgrade: UPGRADE } : {}) },
      // A connection of its own: it carries this one request for as long as it lasts.
      agent: false,
    });
    const conn: Conn = { req, out: req, waiters: [], buf: '', base };
    let settle!: () => void;
    const ready = new Promise<void>((resolve) => (settle = resolve));
    this.#state = { value: 'connecting', conn, ready };
    const timeout = this.#transport.timeout;
    const headTimer = setTimeout(() => {
      this.#transport.failed(base);
      this.#drop(conn, new TimeoutError(`${PATH}: no answer from ${url} within ${timeout} ms`));
    }, timeout);
    headTimer.unref();
    req.on('socket', (socket) => socket.unref());
    req.on('error', (err) => {
      clearTimeout(headTimer);
      this.#drop(conn, err);
      settle();
    });
    req.on('close', () => {
      clearTimeout(headTimer);
      // Node closes an upgraded request at once: the upgraded socket's own events take over.
      if (conn.socket === undefined) this.#drop(conn, new Error('the keep-alive stream closed'));
      settle();
    });
    req.on('response', (res) => {
      clearTimeout(headTimer);
      if (upgrade && res.statusCode === 200) {
        // The upgrade was not understood (an older control plane, or a proxy that drops it): the
        // server took this for a chunked stream with an empty body. Open that form at once instead.
        res.resume();
        this.#noUpgrade.add(base);
        if (this.#state.value === 'connecting' && this.#state.conn === conn) {
          conn.req.destroy();
          this.#connect();
          const next = this.#state;
          if (next.value === 'connecting') void next.ready.then(settle);
          else settle();
        } else settle();
        return;
      }
      this.#onResponse(conn, res);
      settle();
    });
    req.on('upgrade', (res, socket, head) => {
      clearTimeout(headTimer);
      this.#onUpgrade(conn, res, socket, head);
      settle();
    });
    // Send the head now: the server answers with its own head before any line. An upgrade request has
    // no body: its lines follow the 101 on the connection itself.
    if (upgrade) req.end();
    else req.flushHeaders();
  }

  #onUpgrade(conn: Conn, res: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#state.value !== 'connecting' || this.#state.conn !== conn || res.headers.upgrade?.toLowerCase() !== UPGRADE) {
      socket.destroy();
      if (this.#state.value === 'connecting' && this.#state.conn === conn) this.#drop(conn, new Error(`${PATH}: upgraded to ${String(res.headers.upgrade)}, not ${UPGRADE}`));
      return;
    }
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    (socket as { unref?: () => void }).unref?.();
    conn.socket = socket;
    conn.out = socket;
    this.#opened++;
    this.#state = { value: 'open', conn };
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.#onData(conn, text));
    socket.on('end', () => this.#drop(conn, new Error('the control plane ended the keep-alive stream')));
    socket.on('close', () => this.#drop(conn, new Error('the keep-alive stream closed')));
    socket.on('error', (err) => this.#drop(conn, err));
    if (head.length > 0) this.#onData(conn, head.toString('utf8'));
  }

  #onResponse(conn: Conn, res: IncomingMessage): void {
    if (this.#state.value !== 'connecting' || this.#state.conn !== conn) {
      res.resume();
      return;
    }
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      res.resume();
      const unsupported = UNSUPPORTED.has(status);
      this.#drop(conn, new Error(`${PATH} answered HTTP ${status}`), unsupported);
      return;
    }
    this.#opened++;
    this.#state = { value: 'open', conn };
    res.setEncoding('utf8');
    res.on('data', (text: string) => this.#onData(conn, text));
    res.on('end', () => this.#drop(conn, new Error('the control plane ended the keep-alive stream')));
    res.on('error', (err) => this.#drop(conn, err));
  }

  // ---- renewing ----------------------------------------------------------------------------------

  #send(conn: Conn, lease: string, signal: AbortSignal | undefined): Promise<LeaseGrant> {
    return new Promise<LeaseGrant>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      const done = (): void => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
      };
      conn.waiters.push({
        lease,
        resolve: (g) => {
          done();
          resolve(g);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
      if (signal !== undefined) {
        // No answer by the caller's deadline: the stream is stuck; cut it (this renewal falls back per
        // request, and fails there at once as its deadline has passed).
        onAbort = () => {
          // A silent control plane (stopped, or a half-open connection): the next calls go elsewhere.
          this.#transport.failed(conn.base);
          this.#drop(conn, new TimeoutError(`${PATH}: no answer for lease ${lease} by the caller's deadline`));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      conn.out.write(`{"id":${JSON.stringify(lease)}}\n`);
    });
  }

  #onData(conn: Conn, text: string): void {
    conn.buf += text;
    let nl: number;
    while ((nl = conn.buf.indexOf('\n')) >= 0) {
      const line = conn.buf.slice(0, nl);
      conn.buf = conn.buf.slice(nl + 1);
      if (line.trim() === '') continue;
      const waiter = conn.waiters.shift();
      let answer: { id?: unknown; ttl?: unknown; error?: { code?: unknown; message?: unknown; [k: string]: unknown } };
      try {
        answer = JSON.parse(line) as typeof answer;
      } catch {
        answer = {};
      }
      if (waiter === undefined || (answer.id !== undefined && answer.id !== waiter.lease) || (answer.error === undefined && typeof answer.ttl !== 'number')) {
        // Out of step with the server: no answer can be trusted to be whose it says.
        if (waiter !== undefined) conn.waiters.unshift(waiter);
        this.#drop(conn, new Error(`${PATH}: unexpected answer ${line.slice(0, 200)}`));
        return;
      }
      if (answer.error !== undefined) {
        const { code, message, ...details } = answer.error;
        const c = typeof code === 'string' ? code : undefined;
        waiter.reject(
          new ControlPlaneError(STATUS_BY_CODE[c ?? ''] ?? 503, c, typeof message === 'string' ? message : `${PATH}: lease ${waiter.lease}: error ${String(c)}`, details),
        );
      } else {
        this.#failures = 0;
        waiter.resolve({ id: waiter.lease, ttl: answer.ttl as number });
      }
    }
  }

  /** Ends `conn` (if it is still the current one): down (or unsupported) until a backoff passes. */
  #drop(conn: Conn, cause: unknown, unsupported = false): void {
    const s = this.#state;
    const current = (s.value === 'open' || s.value === 'connecting') && s.conn === conn;
    if (current) {
      if (unsupported) {
        this.#state = { value: 'unsupported', retryAt: Date.now() + UNSUPPORTED_RETRY_MS };
      } else {
        this.#lastDelay = this.#backoff.delay(this.#failures++, this.#lastDelay);
        this.#state = { value: 'down', retryAt: Date.now() + this.#lastDelay };
      }
    }
    conn.req.destroy();
    conn.socket?.destroy();
    const broken = cause instanceof ClientClosedError ? cause : new StreamBroken('the keep-alive stream broke', { cause });
    for (const w of conn.waiters.splice(0)) w.reject(broken);
  }
}
