/**
 * The fastify application: JSON parsing, validation, origin and host checks, one log line per request,
 * errors as JSON, `/healthz`, `/readyz` and the `/v1` routes.
 *
 * Request log levels. Every request gets one line, at `info`, except a successful key-value get or put
 * or a per-request keepalive: those are the hot path (thousands a second, a line each cost ~8% of the
 * server's time in the coordinator benchmark), so they log at `debug`, unless slower than
 * `SLOW_REQUEST_MS` (then `warn`). Errors (4xx, 5xx) on any route stay at `info` or above.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import type { Catalog } from '../catalog/index.js';
import { ErrorCode, HttpRequestError } from '../errors/index.js';
import type { Store } from '../store/index.js';
import { toHttpError } from './errors.js';
import { KeepAliveStreams } from './keepalive-stream.js';
import { closingError, registerRoutes } from './routes.js';
import { registerFlagRoutes } from './flags-routes.js';
import { registerRoutingRoutes } from './routing-routes.js';
import { validatorCompiler } from './validation.js';
import type { WatchHub } from './watch-hub.js';

/**
 * The request body limit: one value of 1.5 MiB (the store's limit) sent as base64 is 2 MiB, plus the
 * rest of the JSON around it.
 */
export const DEFAULT_BODY_LIMIT = 3 * 1024 * 1024;

/** A hot-path request slower than this is logged at `warn`. */
export const SLOW_REQUEST_MS = 500;

/** Routes (method and route pattern) whose successful requests are logged at `debug`. */
const HOT_ROUTES: ReadonlySet<string> = new Set(['GET /v1/kv', 'PUT /v1/kv', 'POST /v1/leases/:id/keepalive']);

export interface AppOptions {
  readonly store: Store;
  readonly catalog: Catalog;
  readonly hub: WatchHub;
  readonly logger: FastifyBaseLogger | NonNullable<FastifyServerOptions['logger']>;
  readonly bodyLimit: number;
  /** Host names the server answers to (the `Host` header); `undefined`: any. */
  readonly allowedHosts: ReadonlySet<string> | undefined;
  /** True once `close()` began: `/readyz` says 503. */
  readonly closing: () => boolean;
}

function isLoggerInstance(l: AppOptions['logger']): l is FastifyBaseLogger {
  return typeof l === 'object' && typeof (l as { child?: unknown }).child === 'function';
}

/** The host name of a `Host` header (`127.0.0.1:7400` → `127.0.0.1`, `[::1]:7400` → `::1`). */
export function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']') > 0 ? host.indexOf(']') : undefined).toLowerCase();
  const colon = host.lastIndexOf(':');
  return (colon > 0 ? host.slice(0, colon) : host).toLowerCase();
}

export function buildApp(options: AppOptions): FastifyInstance {
  const { store, bodyLimit } = options;
  const logger = options.logger;
  const app = Fastify({
    ...(isLoggerInstance(logger) ? { loggerInstance: logger } : { logger }),
    // One line per request, written in onResponse below, instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // Our own 503 (below) answers in the API's error format.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true },
    // Errors the router raises before any hook (a URL that is not valid percent-encoded UTF-8), in
    // the API's error format.
    frameworkErrors: (error, _req, reply) => {
      // The generic reply type of this hook cannot take a status; it is an ordinary reply.
      void (reply as unknown as FastifyReply).code(400).send({
        error: {
          code: ErrorCode.InvalidArgument,
          message: `${error.message}: percent-encode path segments as UTF-8`,
        },
      });
    },
    // No automatic HEAD for every GET: a HEAD of /v1/watch would open a stream with no body.
    exposeHeadRoutes: false,
  }) as unknown as FastifyInstance;

  app.setValidatorCompiler(validatorCompiler);

  // JSON only. A browser can send text/plain or a form cross-origin without a preflight; refusing every
  // other content type (415) keeps a web page from writing to a control plane on localhost.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim().length === 0) {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new HttpRequestError(ErrorCode.HttpBadJson, 400, `request body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });

  app.addHook('onRequest', (req, _reply, done) => {
    if (options.closing()) {
      done(closingError());
      return;
    }
    const host = req.headers.host;
    if (options.allowedHosts !== undefined && (host === undefined || !options.allowedHosts.has(hostName(host)))) {
      // DNS rebinding: a page on evil.example resolving to 127.0.0.1 reaches us with its own Host.
      done(
        new HttpRequestError(
          ErrorCode.HttpForbidden,
          403,
          `host ${JSON.stringify(host ?? '')} is not served here: this control plane listens on loopback and answers to ${[...options.allowedHosts].join(', ')}`,
        ),
      );
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) {
      done(new HttpRequestError(ErrorCode.HttpForbidden, 403, `cross-origin requests are refused: origin ${JSON.stringify(origin)} is not this server`));
      return;
    }
    done();
  });

  app.addHook('onResponse', (req, reply, done) => {
    const log = req.log;
    const ms = reply.elapsedTime;
    const hot = reply.statusCode < 400 && HOT_ROUTES.has(`${req.method} ${req.routeOptions.url ?? ''}`);
    // At level info, pino's debug() is a no-op: a fast hot request writes nothing.
    const level = !hot ? 'info' : ms >= SLOW_REQUEST_MS ? 'warn' : 'debug';
    log[level]({ method: req.method, url: req.url, statusCode: reply.statusCode, durationMs: Math.round(ms * 10) / 10 }, 'request');
    done();
  });

  app.setErrorHandler(async (err, req, reply) => {
    const answer = toHttpError(err, bodyLimit);
    if (answer.internal) req.log.error({ err }, 'request failed');
    return reply.code(answer.status).send(answer.body);
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({
      error: { code: ErrorCode.HttpNotFound, message: `no route ${req.method} ${req.url.split('?')[0]}: see docs/api.md for the endpoints` },
    });
  });

  app.route({ method: ['GET', 'HEAD'], url: '/healthz', handler: () => Promise.resolve({ ok: true }) });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/readyz',
    handler: async (_req, reply) => {
      if (options.closing()) return reply.code(503).send({ ok: false, reason: 'closing' });
      try {
        const { revision } = await store.range('', { limit: 1, keysOnly: true });
        return { ok: true, revision };
      } catch (err) {
        return reply.code(503).send({ ok: false, reason: err instanceof Error ? err.message : String(err) });
      }
    },
  });

  const keepAlives = new KeepAliveStreams({ store });
  keepAlives.acceptUpgrades(app);
  // A stream's connection is never idle, so the server would wait for it: end every stream first.
  app.addHook('preClose', (done) => {
    keepAlives.close();
    done();
  });
  registerRoutes(app, { store, catalog: options.catalog, hub: options.hub, keepAlives });
  registerFlagRoutes(app, { store });
  registerRoutingRoutes(app, { store });
  return app;
}
