/**
 * The HTTP transport to the control plane: several base URLs (any replica will do), JSON in and out,
 * errors turned into typed `SpoflessError`s, a deadline and the caller's `AbortSignal` on every call.
 *
 * Unary calls to an `http:` URL go through the hand-written keep-alive client of
 * `src/http/h1-client.ts`; streams (watches, lease keep-alive streams) and `https:` URLs go through
 * Node's global `fetch` (undici inside, whose global agent keeps connections alive). Why by hand:
 * measured at one client doing puts against the control plane on this project's 2-core test machine,
 * `fetch` cost ~850–940 µs of client CPU per call and a call took ~1.6 ms; undici's `Pool.request`
 * ~210–260 µs and ~0.93 ms; a bare socket ~80–130 µs and ~0.72 ms. The control plane's own put
 * benchmark (bench/coordinator.bench.ts) measures spofless through this transport, as it measures etcd
 * through its client.
 *
 * Fail-over: the transport sticks to the URL that last answered. When a call cannot reach it (refused,
 * reset, timed out before any response), the transport moves to the next URL and tries again, once per
 * URL. A call that may have reached the server (reset after the request was sent) is tried again on the
 * next URL only when it is safe to repeat (GET, or `idempotent: true`); otherwise it fails with
 * `ControlPlaneUnreachableError` and the caller decides.
 */
import { H1Pool, type H1Handler } from '../http/h1-client.js';
import {
  AbortedError,
  ClientClosedError,
  ControlPlaneError,
  ControlPlaneUnreachableError,
  InvalidOptionError,
  TimeoutError,
  describe,
} from '../errors/index.js';

/** Low-level error codes that mean "no usable connection": the request got no response. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Of those, the ones that prove the request was never sent: any request may be tried elsewhere. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  UND_ERR_SOCKET: 'connection closed by the other side',
  UND_ERR_CLOSED: 'connection closed',
};

/**
 * The low-level code of a connection failure (`ECONNREFUSED`, `ECONNRESET`, `UND_ERR_SOCKET`...) found
 * in `error` or its causes, or `undefined` when `error` is something else (an abort, an HTTP error).
 *
 * @example
 * ```ts
 * try { await fetch(url); } catch (err) { if (connectionFailureCode(err) === 'ECONNREFUSED') tryAnother(); }
 * ```
 */
export function connectionFailureCode(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECTION_CODES.has(code)) return code;
    // Happy eyeballs (localhost → ::1 and 127.0.0.1) reports an AggregateError of one error per address.
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors)) {
      for (const inner of errors) {
        const c = connectionFailureCode(inner);
        if (c !== undefined) return c;
      }
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when the failure proves the request never left this process (safe to send anywhere else). */
export function isNotSentFailure(code: string | undefined): boolean {
  return code !== undefined && NOT_SENT_CODES.has(code);
}

/** A short human text for a connection failure code. */
export function connectionFailureReason(code: string | undefined, error: unknown): string {
  if (code !== undefined) return REASONS[code] ?? code;
  const msg = error instanceof Error ? error.message : String(error);
  return msg;
}

function isAbortError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && ((error as { name?: unknown }).name === 'AbortError' || (error as { name?: unknown }).name === 'TimeoutError');
}

/** Checks and normalizes control-plane base URLs: http(s), no trailing slash. */
export function normalizeUrls(owner: string, value: unknown): string[] {
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidOptionError(owner, 'url', value, 'a control-plane URL or a non-empty list of them');
  }
  return list.map((u: unknown) => {
    if (typeof u !== 'string') throw new InvalidOptionError(owner, 'url', u, 'a URL string');
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new InvalidOptionError(owner, 'url', u, 'an absolute http:// or https:// URL');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new InvalidOptionError(owner, 'url', u, 'an http:// or https:// URL');
    }
    return parsed.origin + parsed.pathname.replace(/\/+$/, '');
  });
}

export interface CallOptions {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
  /** Safe to send again to another URL even if it may have reached one. Default: true for GET. */
  readonly idempotent?: boolean;
  /** Extra request headers. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Deadline of each attempt (each URL), ms, instead of the client's: a call that must finish within a
   * deadline of its own gives each URL a share of it, so that a silent one leaves time for the next.
   */
  readonly timeout?: number;
}

export interface TransportOptions {
  readonly urls: readonly string[];
  /** Deadline of one call (and of a stream's response headers), ms. */
  readonly timeout: number;
  readonly headers: Readonly<Record<string, string>>;
}

/** Internal: shared by the client, its watches, discoveries and registrations. */
export class Transport {
  readonly urls: readonly string[];
  readonly #timeout: number;
  readonly #headers: Readonly<Record<string, string>>;
  #current = 0;
  #closed = false;
  /** Per base URL: its keep-alive pool, or `null` for an https URL (fetch). */
  readonly #origins = new Map<string, Origin | null>();

  constructor(options: TransportOptions) {
    this.urls = options.urls;
    this.#timeout = options.timeout;
    this.#headers = options.headers;
  }

  /** The URL calls go to now. */
  get url(): string {
    return this.urls[this.#current]!;
  }

  /** Headers sent with every call. */
  get headers(): Readonly<Record<string, string>> {
    return this.#headers;
  }

  /** Deadline of one call, ms. */
  get timeout(): number {
    return this.#timeout;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** No new calls; calls in flight finish, then the keep-alive connections close. */
  close(): void {
    this.#closed = true;
    for (const o of this.#origins.values()) void o?.pool.close();
  }

  /** Moves on from `url` if it is still the current one (another call may have moved already). */
  failed(url: string): void {
    if (this.urls[this.#current] === url) this.#current = (this.#current + 1) % this.urls.length;
  }

  /** One JSON call. Resolves the parsed body of a 2xx answer; rejects with a typed error otherwise. */
  async json<T>(method: string, path: string, options: CallOptions = {}): Promise<T> {
    const { status, text } = await this.#send(method, path, options, options.timeout ?? this.#timeout, unary);
    return parseJson(status, text, method, path) as T;
  }

  /**
   * Opens a stream: resolves the `Response` (any status) once its headers arrive; the deadline covers
   * only the headers. The caller's `signal` aborts the stream afterwards too: pass one per stream.
   */
  stream(method: string, path: string, options: CallOptions, timeout: number): Promise<Response> {
    return this.#send(method, path, options, timeout, streamed, true);
  }

  /** The keep-alive pool for `base`, or `undefined` when its calls go through `fetch` (https). */
  #pool(base: string): Origin | undefined {
    let o = this.#origins.get(base);
    if (o === undefined) {
      const u = new URL(base);
      o =
        u.protocol === 'http:'
          ? {
              pool: new H1Pool({
                host: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
                port: u.port === '' ? 80 : Number(u.port),
                // undici's global agent has no cap; this one bounds a runaway caller.
                connections: 256,
                // The server's `Keep-Alive: timeout=N` shortens this (h1-client.ts).
                idleTimeoutMs: 60_000,
                connectTimeoutMs: this.#timeout,
              }),
              prefix: u.pathname === '/' ? '' : u.pathname,
              host: u.host,
            }
          : null;
      this.#origins.set(base, o);
    }
    return o ?? undefined;
  }

  /** Sends one request with fail-over across URLs; `consume` reads the answer within the deadline. */
  async #send<T>(method: string, path: string, options: CallOptions, timeout: number, consume: Consume<T>, streaming = false): Promise<T> {
    const { signal } = options;
    if (this.#closed) throw new ClientClosedError();
    if (signal?.aborted === true) throw new AbortedError('the call was aborted before it started', { cause: signal.reason });
    const idempotent = options.idempotent ?? (method === 'GET' || method === 'HEAD');
    const qs = queryString(options.query);
    const headers: Record<string, string> = options.headers === undefined ? { ...this.#headers } : { ...this.#headers, ...options.headers };
    const init: RequestInit = { method, headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      init.body = body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    // A target the hand-written client would have to escape (fetch does): sent through fetch.
    const plain = !streaming && SAFE_TARGET.test(path + qs);
    let lastCode: string | undefined;
    let lastError: unknown;
    for (let tries = 0; tries < this.urls.length; tries++) {
      const base = this.url;
      const origin = plain ? this.#pool(base) : undefined;
      // fetch is cancelled through an AbortSignal; the hand-written client through `cancel` (an
      // AbortController and its listeners per call: client CPU per put 185–219 µs with, 145–164 without).
      const ac = origin === undefined ? new AbortController() : undefined;
      const cancel: Cancel = { reason: undefined, hook: undefined };
      const stop = (reason: unknown): void => {
        if (ac !== undefined) ac.abort(reason);
        else cancelExchange(cancel, reason);
      };
      const onAbort = (): void => stop(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const deadline = { hit: false };
      const timer = setTimeout(() => {
        deadline.hit = true;
        stop(new TimeoutError(`${method} ${path}: no answer from ${base} within ${timeout} ms`));
      }, timeout);
      timer.unref();
      let keepListener = false;
      try {
        if (origin !== undefined) return (await exchange(origin, method, origin.prefix + path + qs, headers, body, timeout, cancel)) as T;
        const res = await fetch(base + path + qs, { ...init, signal: ac!.signal });
        if (streaming) {
          clearTimeout(timer);
          // The stream's reader owns cancellation from here on: the caller's signal aborts the fetch.
          keepListener = true;
        }
        return await consume(res);
      } catch (error) {
        if (aborted(signal)) throw new AbortedError(`${method} ${path}: aborted by the caller`, { cause: signal?.reason });
        if (deadline.hit) {
          // No answer in time: that URL is not answering; another may.
          this.failed(base);
          lastError = error;
          lastCode = 'ETIMEDOUT';
          if (!idempotent) throw new ControlPlaneUnreachableError([base], `no answer within ${timeout} ms`, { cause: error });
          continue;
        }
        const code = connectionFailureCode(error);
        if (isAbortError(error)) throw error;
        if (code === undefined) {
          // fetch's own refusals (a port the Fetch standard blocks, a bad URL): not worth another URL.
          const cause = (error as { cause?: unknown }).cause;
          const why = cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error);
          throw new ControlPlaneUnreachableError([base], why, { cause: error, retryable: false });
        }
        this.failed(base);
        lastCode = code;
        lastError = error;
        if (!idempotent && !isNotSentFailure(code)) {
          throw new ControlPlaneUnreachableError([base], connectionFailureReason(code, error), { cause: error });
        }
      } finally {
        clearTimeout(timer);
        if (!keepListener) signal?.removeEventListener('abort', onAbort);
      }
    }
    const reason = lastCode === 'ETIMEDOUT' && lastError !== undefined && connectionFailureCode(lastError) === undefined ? `no answer within ${timeout} ms` : connectionFailureReason(lastCode, lastError);
    throw new ControlPlaneUnreachableError(this.urls, reason, { cause: lastError });
  }
}

type Consume<T> = (res: Response) => Promise<T>;
const unary: Consume<{ status: number; text: string }> = async (res) => ({ status: res.status, text: await res.text() });
const streamed: Consume<Response> = (res) => Promise.resolve(res);

interface Origin {
  readonly pool: H1Pool;
  /** The base URL's path ('' for none), before every call's path. */
  readonly prefix: string;
  /** The `host` header: the base URL's host[:port]. */
  readonly host: string;
}

/** A request target the hand-written client sends as it is: visible ASCII, nothing to escape. */
const SAFE_TARGET = /^\/[\x21-\x7e]*$/;

/** How a caller cancels an exchange: `hook` once the exchange runs, `reason` if it comes first. */
interface Cancel {
  reason: Error | undefined;
  hook: ((err: Error) => void) | undefined;
}

function cancelExchange(cancel: Cancel, reason: unknown): void {
  if (cancel.reason !== undefined) return;
  const err = reason instanceof Error ? reason : new AbortedError('the call was aborted', { cause: reason });
  cancel.reason = err;
  cancel.hook?.(err);
}

/**
 * One unary exchange on `origin`'s pool: resolves the status and the body as text (UTF-8), as
 * `fetch` + `res.text()` does. Failures carry the codes `connectionFailureCode` knows (node's socket
 * errors, `UND_ERR_SOCKET`, `UND_ERR_CONNECT_TIMEOUT`); `cancel` ends it with its reason, also while
 * it still waits in the pool's queue for a connection.
 */
function exchange(
  origin: Origin,
  method: string,
  target: string,
  headers: Readonly<Record<string, string>>,
  body: string | undefined,
  timeout: number,
  cancel: Cancel,
): Promise<{ status: number; text: string }> {
  const flat: string[] = ['host', origin.host];
  for (const name in headers) flat.push(name, headers[name]!);
  return new Promise((resolve, reject) => {
    let status = 0;
    const chunks: Buffer[] = [];
    // Until the pool starts the exchange, a cancel rejects at once; the pool then drops it.
    cancel.hook = reject;
    const handler: H1Handler = {
      onConnect(abort) {
        if (cancel.reason !== undefined) abort(cancel.reason);
        else cancel.hook = abort;
      },
      onHeaders(s) {
        status = s;
        return true;
      },
      onData(chunk) {
        chunks.push(chunk);
        return true;
      },
      onComplete() {
        cancel.hook = undefined;
        resolve({ status, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') });
      },
      onError(err) {
        cancel.hook = undefined;
        reject(err);
      },
    };
    // The transport's own timer is the deadline; these only back it up.
    origin.pool.dispatch({ method, path: target, headers: flat, headersTimeout: timeout + 1000, bodyTimeout: timeout + 1000, ...(body === undefined ? {} : { body: Buffer.from(body, 'utf8') }) }, handler);
  });
}

/** A function, so that TypeScript does not narrow `signal.aborted` across an await. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function queryString(query: CallOptions['query']): string {
  if (query === undefined) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  const s = params.toString();
  return s === '' ? '' : `?${s}`;
}

/** Parses a JSON answer; a non-2xx answer becomes a `ControlPlaneError` with the server's code. */
export function parseJson(status: number, text: string, method: string, path: string): unknown {
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (status >= 200 && status < 300) {
    if (body === undefined && text !== '') {
      throw new ControlPlaneError(status, undefined, `${method} ${path}: the control plane answered ${status} with a body that is not JSON: ${describe(text)}`);
    }
    return body;
  }
  throw errorFromBody(status, body, `${method} ${path}`, text);
}

/** The typed error for an error answer `{ "error": { "code", "message", ...details } }`. */
export function errorFromBody(status: number, body: unknown, what: string, text = ''): ControlPlaneError {
  const err = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  if (typeof err === 'object' && err !== null) {
    const { code, message, ...details } = err as { code?: unknown; message?: unknown; [k: string]: unknown };
    return new ControlPlaneError(
      status,
      typeof code === 'string' ? code : undefined,
      typeof message === 'string' && message !== '' ? message : `${what}: HTTP ${status}`,
      details,
    );
  }
  const snippet = text.trim() === '' ? '' : `: ${describe(text.trim())}`;
  return new ControlPlaneError(status, undefined, `${what}: the control plane answered HTTP ${status}${snippet}`);
}
