/**
 * Graceful close of an HTTP server: stop accepting, let the requests in flight finish, close each
 * keep-alive connection as soon as it is idle, and force the rest closed after a grace period.
 *
 * Works for `node:http` and `node:https` servers and for frameworks built on them: fastify exposes its
 * server as `app.server`, express's `app.listen()` returns one.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import { InvalidOptionError, describe } from '../errors/index.js';

/** A node http(s) server, or an object that holds one in `.server` (fastify). */
export type ServerLike = HttpServer | { readonly server: HttpServer };

/** The node server inside `value`. */
export function serverOf(value: unknown, owner = 'installShutdown'): HttpServer {
  const candidate = isServer(value) ? value : typeof value === 'object' && value !== null ? (value as { server?: unknown }).server : undefined;
  if (!isServer(candidate)) {
    throw new InvalidOptionError(owner, 'server', value, 'a node http.Server, or an object with one in .server (fastify); express: the value app.listen() returns');
  }
  return candidate;
}

function isServer(value: unknown): value is HttpServer {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as HttpServer).close === 'function' &&
    typeof (value as HttpServer).closeIdleConnections === 'function' &&
    typeof (value as HttpServer).on === 'function'
  );
}

interface Tracker {
  inFlight: number;
  closing: boolean;
}

const trackers = new WeakMap<HttpServer, Tracker>();

/**
 * Counts the requests in flight on `server` (from now on) and, once it is closing, asks every
 * response to close its connection. Idempotent per server.
 */
export function trackRequests(server: HttpServer): { readonly inFlight: number; readonly closing: boolean } {
  let t = trackers.get(server);
  if (t !== undefined) return t;
  const tracker: Tracker = { inFlight: 0, closing: false };
  t = tracker;
  trackers.set(server, tracker);
  // Prepended so it runs before the application's handler writes any header.
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    tracker.inFlight++;
    if (tracker.closing && !res.headersSent) res.setHeader('connection', 'close');
    res.once('close', () => {
      tracker.inFlight--;
      // A keep-alive connection that just went idle has no reason to stay open now.
      if (tracker.closing) setImmediate(() => server.closeIdleConnections());
    });
  });
  return tracker;
}

/**
 * Options of {@link closeGracefully}.
 *
 * @example
 * ```ts
 * const options: CloseOptions = { grace: 5_000 };
 * ```
 */
export interface CloseOptions {
  /** How long requests in flight may take to finish before their connections are cut, ms. Default 10 000. */
  readonly grace?: number;
}

/** What a graceful close found. */
export interface CloseResult {
  /** Requests in flight when the close began (counted from `trackRequests`). */
  readonly inFlightAtStart: number;
  /** True when the grace period ran out and connections were cut. */
  readonly forced: boolean;
  /** How long the close took, ms. */
  readonly elapsed: number;
}

/**
 * Stops `server` accepting connections, waits for its requests in flight, closes keep-alive
 * connections as they go idle, and cuts whatever is left after `grace` ms.
 *
 * @example
 * ```ts
 * const { forced } = await closeGracefully(server, { grace: 5_000 });
 * ```
 */
export async function closeGracefully(target: ServerLike, options: CloseOptions = {}): Promise<CloseResult> {
  const server = serverOf(target, 'closeGracefully');
  const grace = options.grace ?? 10_000;
  if (typeof grace !== 'number' || !(grace >= 0)) throw new InvalidOptionError('closeGracefully', 'grace', grace, 'a number of ms >= 0');
  const tracker = trackRequests(server) as Tracker;
  tracker.closing = true;
  const started = Date.now();
  const inFlightAtStart = tracker.inFlight;
  let forced = false;
  await new Promise<void>((resolve) => {
    if (!server.listening) {
      server.closeAllConnections();
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      forced = true;
      server.closeAllConnections();
    }, grace);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
  return { inFlightAtStart, forced, elapsed: Date.now() - started };
}

/** Checks a list of signal names. */
export function checkSignals(owner: string, value: unknown): NodeJS.Signals[] {
  if (!Array.isArray(value) || value.some((s) => typeof s !== 'string' || !/^SIG[A-Z0-9]+$/.test(s))) {
    throw new InvalidOptionError(owner, 'signals', value, `a list of signal names such as ['SIGTERM', 'SIGINT']; got ${describe(value)}`);
  }
  return value as NodeJS.Signals[];
}
