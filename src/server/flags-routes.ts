/**
 * Flags over HTTP: the management API under `/v1/flags/{env}/...` and the OpenFeature Remote
 * Evaluation Protocol (OFREP, https://github.com/open-feature/protocol) under `/ofrep/v1/...`, so any
 * OFREP provider (`@openfeature/ofrep-provider`) evaluates against the control plane unchanged.
 *
 * Writes go through `FlagService` (compare-and-swap on the key's revision, an audit record in the same
 * transaction). `If-Match: "<revision>"` makes a write conditional (409 `SPOF_ERR_FLAG_CONFLICT` when
 * the flag moved on); `If-None-Match: *` creates only. The actor recorded is the `X-Spofless-Actor`
 * header (the CLI sends `--actor` or `$USER`).
 *
 * OFREP evaluations run on an in-memory `StoreFlagSet` per environment (chosen with the
 * `X-Spofless-Environment` header, default `default`), kept current by a store watch; a write answers
 * once its change is visible there, so an evaluation right after a write sees it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgumentError, describe } from '../errors/index.js';
import { FlagService, NAME_PATTERN, StoreFlagSet, murmur3, type Evaluation, type EvaluationContext, type VariantValue } from '../flags/index.js';
import type { Store } from '../store/index.js';
import { toHttpError } from './errors.js';

/** Header naming the environment of an OFREP request. */
export const ENVIRONMENT_HEADER = 'x-spofless-environment';
/** Header naming who makes a change. */
export const ACTOR_HEADER = 'x-spofless-actor';
/** The environment OFREP requests without the header evaluate in. */
export const DEFAULT_ENVIRONMENT = 'default';
/** Environments whose flags are held in memory for OFREP at once (least recently used dropped). */
const MAX_CACHED_ENVIRONMENTS = 256;

const name = { type: 'string', pattern: NAME_PATTERN.source } as const;
const envParams = { type: 'object', additionalProperties: false, properties: { env: name }, required: ['env'] } as const;
const keyParams = { type: 'object', additionalProperties: false, properties: { env: name, key: name }, required: ['env', 'key'] } as const;
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const anyObject = { type: 'object' } as const;

interface Params {
  env: string;
  key: string;
}

/** `If-Match: "12"` (or `12`, or `W/"12"`) → 12; `If-None-Match: *` → 0 (must not exist). */
function precondition(req: FastifyRequest): number | undefined {
  const none = req.headers['if-none-match'];
  if (none !== undefined) {
    if (none.trim() === '*') return 0;
    throw new InvalidArgumentError(`header If-None-Match supports only "*" (create only); got ${describe(none)}`);
  }
  const match = req.headers['if-match'];
  if (match === undefined) return undefined;
  const m = /^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(match);
  if (m === null || !Number.isSafeInteger(Number(m[1]))) throw new InvalidArgumentError(`header If-Match must be a revision such as "12" (from a GET's ETag); got ${describe(match)}`);
  return Number(m[1]);
}

function actor(req: FastifyRequest): string {
  const a = req.headers[ACTOR_HEADER];
  if (a === undefined || a === '') return 'anonymous';
  if (typeof a !== 'string' || a.length > 256) throw new InvalidArgumentError(`header ${ACTOR_HEADER} must be at most 256 characters`);
  return a;
}

function etag(reply: FastifyReply, revision: number): void {
  void reply.header('etag', `"${revision}"`);
}

/** OFREP's body for a failed evaluation of one flag. */
function ofrepFailure(key: string, e: Evaluation<unknown>): { status: number; body: Record<string, unknown> } {
  const status = e.errorCode === 'FLAG_NOT_FOUND' ? 404 : 400;
  return { status, body: { key, errorCode: e.errorCode ?? 'GENERAL', errorDetails: e.errorMessage ?? 'evaluation failed' } };
}

function ofrepSuccess(e: Evaluation<VariantValue | undefined>): Record<string, unknown> {
  return { key: e.key, value: e.value, reason: e.reason, variant: e.variant, ...(e.metadata ? { metadata: e.metadata } : {}) };
}

/**
 * Registers the flag API and the OFREP endpoints. Returns a `close()` that ends the environments'
 * store watches (also run by the app's `onClose`).
 *
 * @example
 * ```ts
 * registerFlagRoutes(app, { store });
 * ```
 */
export function registerFlagRoutes(app: FastifyInstance, { store }: { store: Store }): { close(): void } {
  const service = new FlagService(store);
  const caches = new Map<string, Promise<StoreFlagSet>>();

  const cacheFor = (env: string): Promise<StoreFlagSet> => {
    let c = caches.get(env);
    if (c !== undefined) {
      // Most recently used last.
      caches.delete(env);
      caches.set(env, c);
      return c;
    }
    c = StoreFlagSet.open(store, env);
    c.catch(() => caches.delete(env));
    caches.set(env, c);
    if (caches.size > MAX_CACHED_ENVIRONMENTS) {
      const oldest = caches.keys().next().value!;
      const evicted = caches.get(oldest)!;
      caches.delete(oldest);
      void evicted.then((s) => s.close(), () => undefined);
    }
    return c;
  };

  /** Lets a write answer once OFREP evaluations here see it. */
  const visible = async (env: string, revision: number): Promise<void> => {
    const c = caches.get(env);
    if (c === undefined) return;
    const set = await c.catch(() => undefined);
    await set?.waitFor(revision);
  };

  const close = (): void => {
    for (const c of caches.values()) void c.then((s) => s.close(), () => undefined);
    caches.clear();
  };
  app.addHook('onClose', (_app, done) => {
    close();
    done();
  });

  void app.register((scope, _options, done) => {
    const bodyLimit = app.initialConfig.bodyLimit ?? 3 * 1024 * 1024;
    scope.setErrorHandler(async (err, req, reply) => {
      const answer = toHttpError(err, bodyLimit);
      if (req.url.startsWith('/ofrep/')) {
        if (answer.status >= 500) {
          req.log.error({ err }, 'OFREP request failed');
          return reply.code(500).send({ errorDetails: 'internal error: see the control plane log' });
        }
        if (answer.status === 400 || answer.status === 415 || answer.status === 413) {
          const key = (req.params as Partial<Params> | undefined)?.key;
          const message = (answer.body.error as { message?: unknown }).message;
          const details = typeof message === 'string' ? message : 'bad request';
          return reply.code(400).send(key === undefined ? { errorCode: 'INVALID_CONTEXT', errorDetails: details } : { key, errorCode: 'INVALID_CONTEXT', errorDetails: details });
        }
        return reply.code(answer.status).send(answer.body);
      }
      if (answer.internal) req.log.error({ err }, 'request failed');
      return reply.code(answer.status).send(answer.body);
    });

    // ---- management API ----------------------------------------------------------------------------

    scope.get<{ Params: Params }>('/v1/flags/:env', { schema: { params: envParams, querystring: noQuery } }, async (req) => {
      const { flags, segments, revision } = await service.list(req.params.env);
      return { environment: req.params.env, flags, segments, revision };
    });

    scope.get<{ Params: Params }>('/v1/flags/:env/flags/:key', { schema: { params: keyParams, querystring: noQuery } }, async (req, reply) => {
      const f = await service.getFlag(req.params.env, req.params.key);
      etag(reply, f.revision);
      return f;
    });

    scope.put<{ Params: Params; Body: unknown }>('/v1/flags/:env/flags/:key', { schema: { params: keyParams, querystring: noQuery, body: anyObject } }, async (req, reply) => {
      const ifMatch = precondition(req);
      const r = await service.putFlag(req.params.env, req.body, { actor: actor(req), ...(ifMatch === undefined ? {} : { ifMatch }) }, req.params.key);
      await visible(req.params.env, r.revision);
      etag(reply, r.revision);
      return reply.code(r.created ? 201 : 200).send(r);
    });

    scope.delete<{ Params: Params }>('/v1/flags/:env/flags/:key', { schema: { params: keyParams, querystring: noQuery } }, async (req) => {
      const ifMatch = precondition(req);
      const r = await service.deleteFlag(req.params.env, req.params.key, { actor: actor(req), ...(ifMatch === undefined ? {} : { ifMatch }) });
      await visible(req.params.env, r.revision);
      return r;
    });

    for (const [path, enabled] of [['on', true], ['off', false]] as const) {
      scope.post<{ Params: Params }>(`/v1/flags/:env/flags/:key/${path}`, { schema: { params: keyParams, querystring: noQuery } }, async (req, reply) => {
        const b = req.body;
        if (b !== undefined && b !== null && !(typeof b === 'object' && Object.keys(b).length === 0)) throw new InvalidArgumentError(`POST .../${path} takes no body; got ${describe(b)}`);
        const ifMatch = precondition(req);
        const r = await service.setEnabled(req.params.env, req.params.key, enabled, { actor: actor(req), ...(ifMatch === undefined ? {} : { ifMatch }) });
        await visible(req.params.env, r.revision);
        etag(reply, r.revision);
        return r;
      });
    }

    scope.post<{ Params: Params; Body: { percent: number; variant?: string } }>(
      '/v1/flags/:env/flags/:key/rollout',
      {
        schema: {
          params: keyParams,
          querystring: noQuery,
          body: { type: 'object', additionalProperties: false, properties: { percent: { type: 'number' }, variant: { type: 'string' } }, required: ['percent'] },
        },
      },
      async (req, reply) => {
        const ifMatch = precondition(req);
        const r = await service.setRollout(req.params.env, req.params.key, req.body.percent, {
          actor: actor(req),
          ...(ifMatch === undefined ? {} : { ifMatch }),
          ...(req.body.variant === undefined ? {} : { variant: req.body.variant }),
        });
        await visible(req.params.env, r.revision);
        etag(reply, r.revision);
        return r;
      },
    );

    scope.get<{ Params: Params }>('/v1/flags/:env/segments/:key', { schema: { params: keyParams, querystring: noQuery } }, async (req, reply) => {
      const s = await service.getSegment(req.params.env, req.params.key);
      etag(reply, s.revision);
      return s;
    });

    scope.put<{ Params: Params; Body: unknown }>('/v1/flags/:env/segments/:key', { schema: { params: keyParams, querystring: noQuery, body: anyObject } }, async (req, reply) => {
      const ifMatch = precondition(req);
      const r = await service.putSegment(req.params.env, req.body, { actor: actor(req), ...(ifMatch === undefined ? {} : { ifMatch }) }, req.params.key);
      await visible(req.params.env, r.revision);
      etag(reply, r.revision);
      return reply.code(r.created ? 201 : 200).send(r);
    });

    scope.delete<{ Params: Params }>('/v1/flags/:env/segments/:key', { schema: { params: keyParams, querystring: noQuery } }, async (req) => {
      const ifMatch = precondition(req);
      const r = await service.deleteSegment(req.params.env, req.params.key, { actor: actor(req), ...(ifMatch === undefined ? {} : { ifMatch }) });
      await visible(req.params.env, r.revision);
      return r;
    });

    scope.get<{ Params: Params; Querystring: { key?: string; limit?: number } }>(
      '/v1/flags/:env/history',
      { schema: { params: envParams, querystring: { type: 'object', additionalProperties: false, properties: { key: name, limit: { type: 'integer', minimum: 1, maximum: 10_000 } } } } },
      async (req) => {
        const records = await service.history(req.params.env, {
          ...(req.query.key === undefined ? {} : { key: req.query.key }),
          ...(req.query.limit === undefined ? {} : { limit: req.query.limit }),
        });
        return { records };
      },
    );

    scope.get<{ Params: Params }>('/v1/flags/:env/export', { schema: { params: envParams, querystring: noQuery } }, async (req) => service.exportFlagd(req.params.env));

    scope.post<{ Params: Params; Body: unknown; Querystring: { prune?: boolean } }>(
      '/v1/flags/:env/import',
      { schema: { params: envParams, querystring: { type: 'object', additionalProperties: false, properties: { prune: { type: 'boolean' } } }, body: anyObject } },
      async (req) => {
        const r = await service.importFlagd(req.params.env, req.body, { actor: actor(req), ...(req.query.prune === true ? { prune: true } : {}) });
        await visible(req.params.env, r.revision);
        return r;
      },
    );

    // ---- OFREP ---------------------------------------------------------------------------------------

    const environmentOf = (req: FastifyRequest): string => {
      const h = req.headers[ENVIRONMENT_HEADER];
      if (h === undefined || h === '') return DEFAULT_ENVIRONMENT;
      if (typeof h !== 'string' || !NAME_PATTERN.test(h)) throw new InvalidArgumentError(`header ${ENVIRONMENT_HEADER} must be an environment name; got ${describe(h)}`);
      return h;
    };

    const contextOf = (body: unknown): EvaluationContext | string => {
      if (body === undefined || body === null) return {};
      if (typeof body !== 'object' || Array.isArray(body)) return `the request body must be a JSON object { "context": { ... } }; got ${describe(body)}`;
      const ctx = (body as { context?: unknown }).context;
      if (ctx === undefined || ctx === null) return {};
      if (typeof ctx !== 'object' || Array.isArray(ctx)) return `context must be a JSON object; got ${describe(ctx)}`;
      const tk = (ctx as { targetingKey?: unknown }).targetingKey;
      if (tk !== undefined && typeof tk !== 'string') return `context.targetingKey must be a string; got ${describe(tk)}`;
      return ctx as EvaluationContext;
    };

    scope.post<{ Params: { key: string } }>('/ofrep/v1/evaluate/flags/:key', async (req, reply) => {
      const key = req.params.key;
      const ctx = contextOf(req.body);
      if (typeof ctx === 'string') return reply.code(400).send({ key, errorCode: 'INVALID_CONTEXT', errorDetails: ctx });
      const env = environmentOf(req);
      if (!NAME_PATTERN.test(key)) return reply.code(404).send({ key, errorCode: 'FLAG_NOT_FOUND', errorDetails: `flag ${describe(key)} not found: not a valid flag name` });
      const set = await cacheFor(env);
      const e = set.set.resolve(key, ctx);
      if (e.errorCode !== undefined) {
        const f = ofrepFailure(key, e);
        if (e.errorCode === 'FLAG_NOT_FOUND') f.body.errorDetails = `flag ${describe(key)} not found in environment ${describe(env)}`;
        return reply.code(f.status).send(f.body);
      }
      return ofrepSuccess(e);
    });

    scope.post('/ofrep/v1/evaluate/flags', async (req, reply) => {
      const ctx = contextOf(req.body);
      if (typeof ctx === 'string') return reply.code(400).send({ errorCode: 'INVALID_CONTEXT', errorDetails: ctx });
      const env = environmentOf(req);
      const set = await cacheFor(env);
      // The answer depends on the flags (their revision) and the context: both go into the ETag.
      const tag = `"${env}-${set.revision}-${murmur3(JSON.stringify(ctx)).toString(36)}"`;
      void reply.header('etag', tag);
      const inm = req.headers['if-none-match'];
      if (inm !== undefined && inm.split(',').some((t) => t.trim() === tag || t.trim() === `W/${tag}`)) return reply.code(304).send();
      const flags = set.set.keys().map((key) => {
        const e = set.set.resolve(key, ctx);
        return e.errorCode === undefined ? ofrepSuccess(e) : ofrepFailure(key, e).body;
      });
      return { flags };
    });

    scope.get('/ofrep/v1/configuration', () => Promise.resolve({
      name: 'spofless',
      capabilities: {
        cacheInvalidation: { polling: { enabled: true, minPollingIntervalMs: 1_000 } },
        flagEvaluation: { supportedTypes: ['boolean', 'string', 'int', 'float', 'object'] },
      },
    }));
    done();
  });

  return { close };
}
