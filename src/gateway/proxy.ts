/**
 * The hot path: one {@link ProxyCall} per request, which is also the undici dispatch handler of each of
 * its tries (undici's callback handler interface: no promise per chunk, no closure per request).
 *
 * A call, step by step:
 * 1. the route's breaker admits it (else the route's fallback, or 503);
 * 2. the version it goes to is chosen (force header, sticky canary, blue-green active color);
 * 3. a try: the pool picks an instance not tried yet; its breaker admits it (else the next one);
 *    `Pool.dispatch` sends it with the request body streamed (backpressure both ways);
 * 4. on a connect failure, a reset or a per-try timeout before any response byte, or a configured
 *    status, another try goes to another instance when the request can be repeated (idempotent, or no
 *    request byte sent), the retry budget allows it, and the deadline has not passed;
 * 5. the answer is streamed back with hop-by-hop headers removed. A client that goes away aborts the
 *    upstream request.
 *
 * Connect failures are always retried (up to 3 tries, or the route's `attempts` if higher): nothing
 * was sent, so it is safe for every method, as HAProxy's `retries` + `option redispatch` do by default.
 *
 * Breakers are driven through `tryExecute` with one shared operation (`GATE`) that records, without a
 * closure, whether the breaker let the call through and hands back the resolver of the outcome; the
 * outcome is resolved when the try (or the request) ends.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ErrorCode } from '../errors/index.js';
import type { H1Handler } from '../http/h1-client.js';
import type { CircuitBreaker } from '../resilience/index.js';
import { FAILED, RETRY_CONNECT, RETRY_RESET, RETRY_TIMEOUT, SUCCEEDED, readKey, type CompiledRoute } from './table.js';
import { hash32, type ServicePool, type Upstream } from './upstreams.js';

/** What the hot path needs from the gateway. */
export interface ProxyHost {
  inFlight: number;
  closing: boolean;
  pool(service: string): ServicePool | undefined;
  onTryOutcome(u: Upstream, failed: boolean): void;
  onCallDone(): void;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
}

/**
 * What the proxy reads of a request: node's `IncomingMessage`, or the fast path's `FastRequest`
 * (h1server.ts, which never has a body).
 */
export interface ProxyRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly rawHeaders: string[];
  readonly headers: IncomingHttpHeaders;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/** What the proxy uses of a response: node's `ServerResponse`, or the fast path's `FastResponse`. */
export interface ProxyResponse {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  writeHead(status: number, statusText: string, headers: string[]): unknown;
  writeHead(status: number, headers: string[]): unknown;
  write(chunk: Buffer): boolean;
  end(chunk?: Buffer | string): unknown;
  destroy(err?: Error): unknown;
  on(event: 'close', listener: () => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

// ---- breakers without closures -----------------------------------------------------------------------

let gateCalled = false;
let gateResolve: ((v: number) => void) | undefined;
function gateExecutor(resolve: (v: number) => void): void {
  gateResolve = resolve;
}
function GATE(): Promise<number> {
  gateCalled = true;
  return new Promise<number>(gateExecutor);
}
/** Asks `breaker` to admit a call: the outcome's resolver, or `undefined` when it refuses. */
export function admit(breaker: CircuitBreaker): ((v: number) => void) | undefined {
  gateCalled = false;
  gateResolve = undefined;
  void breaker.tryExecute(GATE);
  return gateCalled ? gateResolve : undefined;
}

// ---- headers -------------------------------------------------------------------------------------------

/** Hop-by-hop headers (RFC 9110 §7.6.1), plus `expect` (the gateway answers `100-continue` itself). */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings']);
/** Lengths of the hop-by-hop names: most headers are skipped without lower-casing them. */
const HOP_LENGTHS = new Set([...HOP].map((h) => h.length));
const RESPONSE_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Names listed in a `Connection` header other than the usual tokens: also hop-by-hop for this message. */
function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Upgrade') return undefined;
  let extra: Set<string> | undefined;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade') (extra ??= new Set()).add(t);
  }
  return extra;
}

/**
 * What the one pass over the request's raw headers found besides the headers to send. Module-level
 * scratch (the hot path is synchronous): reading `req.headers` would make node build a header object
 * per request, which the gateway does not need.
 */
export const scan = { host: '', hasBody: false, forced: undefined as string | undefined };

/** Lengths of the request headers the pass looks at by name (besides the hop-by-hop ones). */
const SEEN_LENGTHS = new Set([...HOP_LENGTHS, 4 /* host */, 9 /* forwarded */, 14 /* content-length */, 15 /* x-forwarded-for */, 16 /* x-forwarded-host */, 17 /* x-forwarded-proto */]);

/**
 * The upstream request's headers as a flat array: the client's minus hop-by-hop ones, with
 * `X-Forwarded-For/-Proto/-Host` and `Forwarded` set. Also fills {@link scan}: the host, whether a
 * body follows, and the value of `forceHeader` (lower case).
 */
export function upstreamHeaders(req: ProxyRequest, forceHeader = ''): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let extra: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && name.toLowerCase() === 'connection') extra = connectionTokens(raw[i + 1]);
  }
  let xff: string | undefined;
  let fwd: string | undefined;
  let proto: string | undefined;
  let fhost: string | undefined;
  let host = '';
  let hasBody = false;
  let forced: string | undefined;
  const forceLen = forceHeader.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const len = name.length;
    if (SEEN_LENGTHS.has(len) || len === forceLen || extra !== undefined) {
      const lower = name.toLowerCase();
      if (lower === 'transfer-encoding') hasBody = true;
      // For a WebSocket handshake undici sets `connection` and `upgrade` itself (the `upgrade` option).
      if (HOP.has(lower)) continue;
      if (extra?.has(lower) === true) continue;
      const value = raw[i + 1]!;
      if (lower === 'host') host = value;
      else if (lower === 'content-length') hasBody ||= value !== '0';
      else if (lower === forceHeader) forced ??= value;
      else if (lower === 'x-forwarded-for') {
        xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      } else if (lower === 'x-forwarded-proto') {
        // Set by a proxy in front (a TLS terminator): kept, as nginx's `$http_x_forwarded_proto` setups do.
        proto ??= value;
        continue;
      } else if (lower === 'x-forwarded-host') {
        fhost ??= value;
        continue;
      } else if (lower === 'forwarded') {
        fwd = fwd === undefined ? value : `${fwd}, ${value}`;
        continue;
      }
    }
    out.push(name, raw[i + 1]!);
  }
  const ip = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', xff === undefined ? ip : `${xff}, ${ip}`);
  out.push('x-forwarded-proto', proto ?? 'http');
  if (fhost !== undefined || host !== '') out.push('x-forwarded-host', fhost ?? host);
  const forNode = ip.includes(':') ? `"[${ip}]"` : ip;
  const quoted = host.includes('"') || host.includes('\\') ? host.replace(/["\\]/g, '') : host;
  const own = host !== '' ? `for=${forNode};host="${quoted}";proto=http` : `for=${forNode};proto=http`;
  out.push('forwarded', fwd === undefined ? own : `${fwd}, ${own}`);
  scan.host = host;
  scan.hasBody = hasBody;
  scan.forced = forced;
  return out;
}

/** The client response's headers from the upstream's raw ones (undici's buffers or h1.ts's strings), hop-by-hop removed. */
function responseHeaders(raw: readonly (Buffer | string)[], closing: boolean): string[] {
  const out: string[] = [];
  let extra: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const b = raw[i]!;
    if (b.length === 10 && latin1(b).toLowerCase() === 'connection') {
      extra = connectionTokens(latin1(raw[i + 1]!));
      break;
    }
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]!);
    const len = name.length;
    if ((HOP_LENGTHS.has(len) || extra !== undefined) && (RESPONSE_HOP.has(name.toLowerCase()) || extra?.has(name.toLowerCase()) === true)) continue;
    out.push(name, latin1(raw[i + 1]!));
  }
  if (closing) out.push('connection', 'close');
  return out;
}

function latin1(v: Buffer | string): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Error codes of a connection that was never made: nothing was sent. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function failureKind(err: unknown): number {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECT_CODES.has(code)) return RETRY_CONNECT;
    if (TIMEOUT_CODES.has(code)) return RETRY_TIMEOUT;
  }
  const errors = (err as { errors?: unknown }).errors;
  if (Array.isArray(errors) && errors.length > 0 && errors.every((e) => failureKind(e) === RETRY_CONNECT)) return RETRY_CONNECT;
  return RETRY_RESET;
}

// ---- the request body, tapped per try ------------------------------------------------------------------

const kTap = Symbol('spofless.tap');
const kCall = Symbol('spofless.call');

type TappedRequest = IncomingMessage & { [kTap]?: BodyTap | undefined };

function onReqData(this: TappedRequest, chunk: Buffer): void {
  const tap = this[kTap];
  if (tap !== undefined && !tap.push(chunk)) this.pause();
}
function onReqEnd(this: TappedRequest): void {
  this[kTap]?.push(null);
}
function onReqError(this: TappedRequest, err: Error): void {
  this[kTap]?.destroy(err);
}

/**
 * A readable over the client's request body for one try. It pulls from the request only when undici
 * reads, so a try that failed before sending leaves the body unread and the next try can send it; the
 * request's `readableDidRead` says whether any byte went. Destroying it (undici does, on a failed try)
 * leaves the client's request untouched.
 */
class BodyTap extends Readable {
  readonly #req: TappedRequest;
  #attached = false;

  constructor(req: TappedRequest) {
    super({ highWaterMark: 64 * 1024 });
    this.#req = req;
  }

  override _read(): void {
    const req = this.#req;
    if (!this.#attached) {
      this.#attached = true;
      req[kTap] = this;
      if (req.readableEnded) {
        this.push(null);
        return;
      }
      req.on('data', onReqData);
      req.on('end', onReqEnd);
      req.on('error', onReqError);
    }
    req.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const req = this.#req;
    if (req[kTap] === this) {
      req[kTap] = undefined;
      req.off('data', onReqData);
      req.off('end', onReqEnd);
      req.off('error', onReqError);
      req.pause();
    }
    cb(err);
  }
}

// ---- the call ------------------------------------------------------------------------------------------

type CallResponse = ProxyResponse & { [kCall]?: ProxyCall | undefined };

function onResDrain(this: CallResponse): void {
  this[kCall]?.resumeUpstream();
}
function onResClose(this: CallResponse): void {
  this[kCall]?.clientClosed();
}
function onDeadline(call: ProxyCall): void {
  call.deadlinePassed();
}

const MAX_CONNECT_TRIES = 3;

class TotalTimeout extends Error {
  readonly code = 'SPOF_GATEWAY_DEADLINE';
}

/** One proxied request; also the handler (undici's or h1.ts's) of each of its tries. */
export class ProxyCall implements Dispatcher.DispatchHandler, H1Handler {
  readonly #host: ProxyHost;
  readonly #route: CompiledRoute;
  readonly #req: ProxyRequest;
  readonly #res: CallResponse;
  readonly #path: string;
  readonly #method: string;
  readonly #headers: string[];
  readonly #hasBody: boolean;
  readonly #forced: string | undefined;
  readonly #started: number;
  #want: string | undefined;
  #hash = -1;
  #tries = 0;
  #tried: Upstream[] | undefined;
  #upstream: Upstream | undefined;
  #tryOutcome: ((v: number) => void) | undefined;
  #routeOutcome: ((v: number) => void) | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #responded = false;
  #discarding = false;
  #done = false;
  #deadline = 0;
  #timer: NodeJS.Timeout | undefined;
  #timedOut = false;
  #lastError: unknown;
  #lastStatus = 0;

  constructor(host: ProxyHost, route: CompiledRoute, req: ProxyRequest, res: ProxyResponse, path: string) {
    this.#host = host;
    this.#route = route;
    this.#req = req;
    this.#res = res;
    this.#method = req.method ?? 'GET';
    this.#path = route.stripPrefix ? stripped(path, route.prefixBare) : path;
    this.#headers = upstreamHeaders(req, route.forceHeader);
    this.#hasBody = scan.hasBody;
    this.#forced = scan.forced;
    this.#started = performance.now();
  }

  start(): void {
    const route = this.#route;
    const host = this.#host;
    host.inFlight++;
    route.stats.requests++;
    route.budget?.recordCall();
    this.#res[kCall] = this;
    this.#res.on('close', onResClose);
    this.#routeOutcome = admit(route.breaker);
    if (this.#routeOutcome === undefined) {
      this.#fallbackOr(503, ErrorCode.BrokenCircuit, `route ${route.name}: its circuit is open`);
      return;
    }
    // Traffic shifting: which version this request goes to.
    this.#want = chooseVersion(route, this.#forced, this.#req);
    if (route.hashOn !== undefined) {
      const key = readKey(route.hashOn, this.#req.headers);
      if (key !== undefined) this.#hash = hash32(key);
    }
    if (route.totalMs > 0) {
      this.#deadline = this.#started + route.totalMs;
      this.#timer = setTimeout(onDeadline, route.totalMs, this);
    }
    this.#next();
  }

  /** Starts the next try, or answers when there is none to make. */
  #next(): void {
    const route = this.#route;
    const pool = this.#host.pool(route.service);
    const now = Date.now();
    for (;;) {
      let u = pool?.pick(route.balancer, this.#want, this.#hash, this.#tried, now);
      if (u === undefined && this.#want !== route.active && this.#want === route.canary?.version && this.#tries === 0) {
        // No canary instance can take it: the stable version does, rather than failing the user.
        this.#want = route.active;
        u = pool?.pick(route.balancer, this.#want, this.#hash, this.#tried, now);
      }
      if (u === undefined) {
        this.#noUpstream();
        return;
      }
      const outcome = admit(u.breaker);
      if (outcome === undefined) {
        (this.#tried ??= []).push(u);
        continue;
      }
      this.#send(u, outcome);
      return;
    }
  }

  #send(u: Upstream, outcome: (v: number) => void): void {
    this.#tries++;
    this.#upstream = u;
    this.#tryOutcome = outcome;
    this.#abort = undefined;
    this.#discarding = false;
    u.inFlight++;
    u.requests++;
    const route = this.#route;
    let headersTimeout = route.perTryMs > 0 ? route.perTryMs : this.#host.headersTimeoutMs;
    if (this.#deadline > 0) headersTimeout = Math.max(1, Math.min(headersTimeout, Math.ceil(this.#deadline - performance.now())));
    if (u.h1 !== undefined && !this.#hasBody) {
      // The common case on the hand-written client (h1.ts); the request's parts were validated by
      // node's parser on the way in, so nothing here can be refused up front.
      u.h1.dispatch({ path: this.#path, method: this.#method, headers: this.#headers, headersTimeout, bodyTimeout: this.#host.bodyTimeoutMs }, this);
      return;
    }
    try {
      u.pool.dispatch(
        {
          path: this.#path,
          method: this.#method,
          headers: this.#headers,
          // A request with a body is always node's (the fast path hands those to node's server).
          body: this.#hasBody ? new BodyTap(this.#req as IncomingMessage) : null,
          headersTimeout,
          bodyTimeout: this.#host.bodyTimeoutMs,
        },
        this,
      );
    } catch (err) {
      // undici refuses some requests up front (a header value it will not send): a bad request, no try made.
      u.inFlight--;
      this.#tryOutcome = undefined;
      outcome(SUCCEEDED);
      this.#reply(400, ErrorCode.InvalidArgument, `the request cannot be forwarded: ${describe(err)}`);
    }
  }

  // ---- undici handler --------------------------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort();
  }

  onHeaders(status: number, rawHeaders: Buffer[] | string[], resume: () => void, statusText: string): boolean {
    if (this.#done) return false;
    if (status < 200) return true;
    const u = this.#upstream!;
    this.#lastStatus = status;
    u.statusClasses[Math.min(5, Math.floor(status / 100))]!++;
    const failed = status >= 500;
    if (this.#route.retryStatuses.has(status) && this.#hasAlternative(u) && this.#canRetry(0)) {
      // Read and drop this answer (the connection stays usable), then try elsewhere.
      this.#endTry(true);
      this.#discarding = true;
      return true;
    }
    this.#endTry(failed);
    const res = this.#res;
    const headers = responseHeaders(rawHeaders, this.#host.closing);
    try {
      if (statusText !== '') res.writeHead(status, statusText, headers);
      else res.writeHead(status, headers);
    } catch (err) {
      // An upstream header node refuses (an invalid character): a bad gateway, not a crash.
      this.#lastError = err;
      this.#abort?.(err as Error);
      return false;
    }
    this.#responded = true;
    this.#resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#discarding || this.#done) return true;
    const ok = this.#res.write(chunk);
    if (!ok) this.#res.once('drain', onResDrain);
    return ok;
  }

  onComplete(): void {
    this.#abort = undefined;
    if (this.#done) return;
    if (this.#discarding) {
      this.#discarding = false;
      this.#retry();
      return;
    }
    this.#res.end();
    this.#finish(this.#lastStatus, this.#lastStatus >= 500);
  }

  onError(err: Error): void {
    this.#abort = undefined;
    if (this.#tryOutcome !== undefined) {
      const kind = this.#timedOut ? RETRY_TIMEOUT : failureKind(err);
      if (kind !== RETRY_TIMEOUT || !this.#timedOut) this.#upstream!.failures++;
      this.#endTry(true);
    }
    if (this.#done) return;
    this.#lastError = err;
    if (this.#responded) {
      // Part of the answer went out: the client must see a broken response, not a short one.
      this.#res.destroy(err);
      this.#finish(0, true);
      return;
    }
    if (this.#discarding) {
      this.#discarding = false;
      this.#retry();
      return;
    }
    if (this.#timedOut) {
      this.#reply(504, ErrorCode.GatewayUpstreamTimeout, `route ${this.#route.name}: no answer within ${this.#route.totalMs} ms`);
      return;
    }
    const kind = failureKind(err);
    if (this.#canRetry(kind)) {
      this.#retry();
      return;
    }
    if (kind === RETRY_TIMEOUT) {
      this.#reply(504, ErrorCode.GatewayUpstreamTimeout, `route ${this.#route.name}: instance ${this.#upstream!.instance.id} sent no answer in time`);
    } else {
      this.#reply(502, ErrorCode.GatewayUpstreamFailed, `route ${this.#route.name}: instance ${this.#upstream!.instance.id} failed: ${describe(err)}`);
    }
  }

  onUpgrade(): void {
    // Plain requests never ask for an upgrade (see websocket.ts).
  }

  // ---- internals -------------------------------------------------------------------------------------

  /** Ends the current try's bookkeeping: in-flight count, breaker and outlier outcome. */
  #endTry(failed: boolean): void {
    const u = this.#upstream;
    const outcome = this.#tryOutcome;
    if (u === undefined || outcome === undefined) return;
    this.#tryOutcome = undefined;
    u.inFlight--;
    outcome(failed ? FAILED : SUCCEEDED);
    this.#host.onTryOutcome(u, failed);
  }

  /** Whether another instance could take a retry: without one, the answer in hand is passed on as is. */
  #hasAlternative(u: Upstream): boolean {
    const tried = this.#tried === undefined ? [u] : [...this.#tried, u];
    return this.#host.pool(this.#route.service)?.pick(this.#route.balancer, this.#want, this.#hash, tried, Date.now()) !== undefined;
  }

  /** May the request be sent again after a failure of `kind` (0: a retryable status)? */
  #canRetry(kind: number): boolean {
    const route = this.#route;
    const isConnect = kind === RETRY_CONNECT;
    const max = isConnect ? Math.max(route.attempts, MAX_CONNECT_TRIES) : route.attempts;
    if (this.#tries >= max) return false;
    if (!isConnect && kind !== 0 && (route.retryOn & kind) === 0) return false;
    // The body can be sent again only if no byte of it was read.
    if (this.#hasBody && (this.#req as IncomingMessage).readableDidRead) return false;
    if (!isConnect && !IDEMPOTENT.has(this.#method)) return false;
    if (this.#deadline > 0 && performance.now() >= this.#deadline) return false;
    const budget = route.budget;
    if (budget !== undefined && !budget.tryAcquire()) {
      route.stats.retriesDenied++;
      return false;
    }
    return true;
  }

  #retry(): void {
    (this.#tried ??= []).push(this.#upstream!);
    this.#route.stats.retries++;
    this.#next();
  }

  #noUpstream(): void {
    const route = this.#route;
    if (this.#lastError !== undefined) {
      this.#reply(502, ErrorCode.GatewayUpstreamFailed, `route ${route.name}: every instance tried failed (${this.#tries} tries): ${describe(this.#lastError)}`);
      return;
    }
    if (this.#lastStatus !== 0) {
      // Every instance answered a retryable status and none is left: that status is the answer.
      this.#reply(this.#lastStatus, ErrorCode.GatewayUpstreamFailed, `route ${route.name}: every instance answered ${this.#lastStatus}`);
      return;
    }
    route.stats.noUpstream++;
    const which = this.#want === undefined ? '' : ` of version ${JSON.stringify(this.#want)}`;
    this.#fallbackOr(503, ErrorCode.NoInstanceAvailable, `route ${route.name}: no instance${which} of service ${JSON.stringify(route.service)} is available`);
  }

  /** The route's predefined fallback when it has one (pool broken or empty), else a JSON error. */
  #fallbackOr(status: number, code: string, message: string): void {
    const fb = this.#route.fallback;
    if (fb === undefined) {
      this.#reply(status, code, message);
      return;
    }
    this.#route.stats.fallbacks++;
    const res = this.#res;
    if (!res.headersSent && !res.destroyed) {
      const headers = this.#host.closing ? [...fb.headers, 'connection', 'close', 'content-length', String(fb.body.length)] : [...fb.headers, 'content-length', String(fb.body.length)];
      res.writeHead(fb.status, headers);
      res.end(fb.body);
    }
    this.#finish(fb.status, false);
  }

  #reply(status: number, code: string, message: string): void {
    const res = this.#res;
    if (!res.headersSent && !res.destroyed) writeError(res, status, code, message, this.#host.closing);
    this.#finish(status, true);
  }

  #finish(status: number, failed: boolean): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#route.stats.observe(status, (performance.now() - this.#started) / 1000);
    const ro = this.#routeOutcome;
    if (ro !== undefined) {
      this.#routeOutcome = undefined;
      ro(failed ? FAILED : SUCCEEDED);
    }
    this.#res[kCall] = undefined;
    const host = this.#host;
    host.inFlight--;
    host.onCallDone();
  }

  /** The client's response can take more: let undici read on. */
  resumeUpstream(): void {
    this.#resume?.();
  }

  /** The client's connection closed (before the answer was complete: the client gave up). */
  clientClosed(): void {
    if (this.#done) return;
    const abort = this.#abort;
    this.#finish(0, false);
    // A try in flight is cancelled: the upstream stops working for nobody. Its breaker does not count it.
    if (this.#tryOutcome !== undefined) {
      const u = this.#upstream!;
      const outcome = this.#tryOutcome;
      this.#tryOutcome = undefined;
      u.inFlight--;
      outcome(SUCCEEDED);
    }
    abort?.(new Error('the client closed the connection'));
  }

  deadlinePassed(): void {
    if (this.#done) return;
    this.#timedOut = true;
    this.#timer = undefined;
    if (this.#responded) {
      this.#res.destroy(new TotalTimeout('deadline'));
      this.#finish(0, true);
      return;
    }
    if (this.#abort !== undefined && this.#tryOutcome !== undefined) {
      this.#abort(new TotalTimeout(`route ${this.#route.name}: deadline of ${this.#route.totalMs} ms passed`));
      return;
    }
    this.#reply(504, ErrorCode.GatewayUpstreamTimeout, `route ${this.#route.name}: no answer within ${this.#route.totalMs} ms`);
  }
}

/**
 * The version (or color) a request goes to: the force header's, else the canary's for the share of
 * users whose sticky key hashes under its weight (a request without the key draws at random), else the
 * active one; `undefined`: any instance.
 */
export function chooseVersion(route: CompiledRoute, forced: string | undefined, req: { readonly headers: IncomingHttpHeaders }): string | undefined {
  if (forced !== undefined && forced !== '') return forced;
  const c = route.canary;
  if (c !== undefined) {
    const key = c.stickyOn !== undefined ? readKey(c.stickyOn, req.headers) : undefined;
    const h = key !== undefined ? hash32(key) : (Math.random() * 4294967296) >>> 0;
    if (h % 10_000 < c.per10k) return c.version;
  }
  return route.active;
}

function stripped(path: string, prefix: string): string {
  const rest = path.slice(prefix.length);
  return rest === '' || rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
}

function describe(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const code = (err as { code?: unknown }).code;
  const msg = (err as { message?: unknown }).message;
  return typeof code === 'string' && typeof msg === 'string' && !msg.includes(code) ? `${msg} (${code})` : String(msg);
}

/** A JSON error in the control plane's shape: `{ "error": { "code", "message" } }`. */
export function writeError(res: ProxyResponse, status: number, code: string, message: string, closing: boolean, extra?: Record<string, unknown>): void {
  const body = JSON.stringify({ error: { code, message, ...extra } });
  const headers = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'x-spofless-gateway', 'error'];
  if (closing) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
}
