/**
 * The `/v1` routes: key-value, transactions, leases, catalog and watch. Each validates its input at the
 * edge (a JSON schema, then the store's and the catalog's own checks), makes exactly one store write
 * (or, for a registration with `ttl`, a lease grant undone if the write fails), and answers JSON.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Catalog } from '../catalog/index.js';
import { ErrorCode, HttpRequestError, InvalidArgumentError, InvalidKeyError, KeyNotFoundError, LeaseNotFoundError, describe } from '../errors/index.js';
import type { Compare, Store, TxnOp } from '../store/index.js';
import { decode, encode, kvJson, txnResponseJson, type Encoding } from './codec.js';
import { KEEPALIVE_STREAM_PATH, NDJSON, type KeepAliveStreamEnd, type KeepAliveStreams } from './keepalive-stream.js';
import type { WatchEnd, WatchHub } from './watch-hub.js';

const str = { type: 'string' } as const;
const int1 = { type: 'integer', minimum: 1 } as const;
const bool = { type: 'boolean' } as const;
const encoding = { type: 'string', enum: ['utf8', 'base64'] } as const;

function object(properties: Record<string, object>, required: string[] = []): object {
  return { type: 'object', additionalProperties: false, properties, ...(required.length > 0 ? { required } : {}) };
}

const opSchema = {
  type: 'object',
  discriminator: { propertyName: 'type' },
  properties: { type: { type: 'string' } },
  required: ['type'],
  oneOf: [
    object({ type: { const: 'put' }, key: str, value: str, lease: str, prevKv: bool }, ['type', 'key', 'value']),
    object({ type: { const: 'delete' }, key: str, prefix: bool, prevKv: bool }, ['type', 'key']),
    object({ type: { const: 'range' }, key: str, prefix: bool, limit: int1, keysOnly: bool }, ['type', 'key']),
  ],
};

const compareSchema = object(
  {
    key: str,
    target: { type: 'string', enum: ['value', 'version', 'createRevision', 'modRevision', 'lease'] },
    cmp: { type: 'string', enum: ['=', '!=', '<', '>'] },
    value: { type: ['string', 'integer', 'null'] },
  },
  ['key', 'target', 'cmp', 'value'],
);

interface KvQuery {
  key?: string;
  prefix?: string;
  revision?: number;
  limit?: number;
  fromKey?: string;
  keysOnly?: boolean;
  prevKv?: boolean;
  encoding?: Encoding;
}

type JsonOp =
  | { type: 'put'; key: string; value: string; lease?: string; prevKv?: boolean }
  | { type: 'delete'; key: string; prefix?: boolean; prevKv?: boolean }
  | { type: 'range'; key: string; prefix?: boolean; limit?: number; keysOnly?: boolean };

interface TxnBody {
  compare?: { key: string; target: Compare['target']; cmp: Compare['cmp']; value: string | number | null }[];
  success?: JsonOp[];
  failure?: JsonOp[];
  encoding?: Encoding;
}

function exactlyOne(q: { key?: string | undefined; prefix?: string | undefined }): 'key' | 'prefix' {
  if ((q.key === undefined) === (q.prefix === undefined)) {
    throw new InvalidArgumentError('give exactly one of query.key (one key) or query.prefix (every key that starts with it)');
  }
  return q.key !== undefined ? 'key' : 'prefix';
}

function refuse(q: Record<string, unknown>, fields: string[], because: string): void {
  for (const f of fields) if (q[f] !== undefined) throw new InvalidArgumentError(`query.${f} ${because}`);
}

/** A POST that takes no body: none, or `{}`. */
function noBody(req: FastifyRequest): void {
  const b = req.body;
  if (b === undefined || b === null) return;
  if (typeof b === 'object' && !Array.isArray(b) && Object.keys(b).length === 0) return;
  throw new InvalidArgumentError(`${req.method} ${req.routeOptions.url ?? req.url} takes no body; got ${describe(b)}`);
}

function op(o: JsonOp, enc: Encoding, where: string): TxnOp {
  const key = decode(o.key, enc, `${where}.key`);
  switch (o.type) {
    case 'put':
      return {
        type: 'put',
        key,
        value: decode(o.value, enc, `${where}.value`),
        ...(o.lease === undefined ? {} : { lease: o.lease }),
        ...(o.prevKv === undefined ? {} : { prevKv: o.prevKv }),
      };
    case 'delete':
      return { type: 'delete', key, ...(o.prefix === undefined ? {} : { prefix: o.prefix }), ...(o.prevKv === undefined ? {} : { prevKv: o.prevKv }) };
    case 'range':
      return {
        type: 'range',
        key,
        ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
        ...(o.limit === undefined ? {} : { limit: o.limit }),
        ...(o.keysOnly === undefined ? {} : { keysOnly: o.keysOnly }),
      };
  }
}

function compare(c: NonNullable<TxnBody['compare']>[number], enc: Encoding, where: string): Compare {
  const key = decode(c.key, enc, `${where}.key`);
  switch (c.target) {
    case 'value':
      if (typeof c.value !== 'string') throw new InvalidArgumentError(`${where}.value must be a string when target is "value"; got ${describe(c.value)}`);
      return { key, target: 'value', cmp: c.cmp, value: decode(c.value, enc, `${where}.value`) };
    case 'lease':
      if (c.value !== null && typeof c.value !== 'string') {
        throw new InvalidArgumentError(`${where}.value must be a lease id string, or null for "no lease", when target is "lease"; got ${describe(c.value)}`);
      }
      return { key, target: 'lease', cmp: c.cmp, value: c.value };
    default:
      if (typeof c.value !== 'number' || c.value < 0) {
        throw new InvalidArgumentError(`${where}.value must be an integer >= 0 when target is "${c.target}"; got ${describe(c.value)}`);
      }
      return { key, target: c.target, cmp: c.cmp, value: c.value };
  }
}

export interface RouteDeps {
  readonly store: Store;
  readonly catalog: Catalog;
  readonly hub: WatchHub;
  readonly keepAlives: KeepAliveStreams;
}

export function registerRoutes(app: FastifyInstance, { store, catalog, hub, keepAlives }: RouteDeps): void {
  // ------------------------------------------------------------------ key-value

  app.get<{ Querystring: KvQuery }>(
    '/v1/kv',
    { schema: { querystring: object({ key: str, prefix: str, revision: int1, limit: int1, fromKey: str, keysOnly: bool, encoding }) } },
    async (req) => {
      const q = req.query;
      const enc = q.encoding ?? 'utf8';
      const revision = q.revision === undefined ? {} : { revision: q.revision };
      if (exactlyOne(q) === 'key') {
        refuse(q as Record<string, unknown>, ['limit', 'fromKey', 'keysOnly'], 'applies to query.prefix only');
        const key = decode(q.key!, enc, 'query.key');
        if ((typeof key === 'string' ? key.length : key.byteLength) === 0) throw new InvalidKeyError('', '1 to 4096 bytes, not an empty key');
        // A prefix range of one: the same read, and it says at which revision it was made.
        const r = await store.range(key, { limit: 1, ...revision });
        const kv = r.kvs[0];
        if (kv === undefined || Buffer.compare(kv.key, typeof key === 'string' ? Buffer.from(key) : key) !== 0) {
          throw new KeyNotFoundError(q.key!, r.revision);
        }
        return { kv: kvJson(kv, enc), revision: r.revision };
      }
      const r = await store.range(decode(q.prefix!, enc, 'query.prefix'), {
        ...revision,
        ...(q.limit === undefined ? {} : { limit: q.limit }),
        ...(q.fromKey === undefined ? {} : { fromKey: decode(q.fromKey, enc, 'query.fromKey') }),
        ...(q.keysOnly === undefined ? {} : { keysOnly: q.keysOnly }),
      });
      return { kvs: r.kvs.map((kv) => kvJson(kv, enc)), more: r.more, revision: r.revision };
    },
  );

  app.put<{ Body: { key: string; value: string; lease?: string; prevKv?: boolean; encoding?: Encoding } }>(
    '/v1/kv',
    { schema: { body: object({ key: str, value: str, lease: str, prevKv: bool, encoding }, ['key', 'value']) } },
    async (req) => {
      const b = req.body;
      const enc = b.encoding ?? 'utf8';
      const r = await store.put(decode(b.key, enc, 'body.key'), decode(b.value, enc, 'body.value'), {
        ...(b.lease === undefined ? {} : { lease: b.lease }),
        ...(b.prevKv === undefined ? {} : { prevKv: b.prevKv }),
      });
      return r.prevKv === undefined ? { revision: r.revision } : { revision: r.revision, prevKv: kvJson(r.prevKv, enc) };
    },
  );

  app.delete<{ Querystring: KvQuery }>(
    '/v1/kv',
    { schema: { querystring: object({ key: str, prefix: str, prevKv: bool, encoding }) } },
    async (req) => {
      const q = req.query;
      const enc = q.encoding ?? 'utf8';
      const options = q.prevKv === undefined ? {} : { prevKv: q.prevKv };
      const r =
        exactlyOne(q) === 'key'
          ? await store.delete(decode(q.key!, enc, 'query.key'), options)
          : await (() => {
              if (q.prefix === '') {
                throw new InvalidArgumentError('query.prefix must not be empty on DELETE: deleting every key is refused; name a narrower prefix');
              }
              return store.deletePrefix(decode(q.prefix!, enc, 'query.prefix'), options);
            })();
      const out = { revision: r.revision, deleted: r.deleted };
      return r.prevKvs === undefined ? out : { ...out, prevKvs: r.prevKvs.map((kv) => kvJson(kv, enc)) };
    },
  );

  app.post<{ Body: TxnBody }>(
    '/v1/txn',
    {
      schema: {
        body: object({
          compare: { type: 'array', items: compareSchema },
          success: { type: 'array', items: opSchema },
          failure: { type: 'array', items: opSchema },
          encoding,
        }),
      },
    },
    async (req) => {
      const b = req.body;
      const enc = b.encoding ?? 'utf8';
      const r = await store.txn({
        compare: (b.compare ?? []).map((c, i) => compare(c, enc, `body.compare[${i}]`)),
        success: (b.success ?? []).map((o, i) => op(o, enc, `body.success[${i}]`)),
        failure: (b.failure ?? []).map((o, i) => op(o, enc, `body.failure[${i}]`)),
      });
      return { succeeded: r.succeeded, revision: r.revision, responses: r.responses.map((x) => txnResponseJson(x, enc)) };
    },
  );

  // ------------------------------------------------------------------ leases

  app.post<{ Body: { ttl: number } }>('/v1/leases', { schema: { body: object({ ttl: { type: 'integer' } }, ['ttl']) } }, async (req) => {
    const g = await store.grantLease(req.body.ttl);
    return { id: g.id, ttl: g.ttl };
  });

  app.post<{ Params: { id: string } }>('/v1/leases/:id/keepalive', async (req) => {
    noBody(req);
    const g = await store.keepAlive(req.params.id);
    return { id: g.id, ttl: g.ttl };
  });

  // The keep-alive stream: its body is NDJSON that stays open, read line by line off the socket (see
  // keepalive-stream.ts). In a scope of its own, where NDJSON is the only body type, left unread for the
  // handler; the rest of the API keeps its JSON-only rule.
  void app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (req, _payload, parsed) => {
      const type = req.headers['content-type'] ?? '';
      if (isNdjson(type)) parsed(null, undefined);
      else parsed(unsupportedStreamType(type), undefined);
    });
    scope.post(KEEPALIVE_STREAM_PATH, (req, reply) => {
      const type = req.headers['content-type'];
      if (type === undefined || !isNdjson(type)) throw unsupportedStreamType(type ?? '');
      const startedAt = performance.now();
      const log = req.log;
      reply.hijack();
      keepAlives.serve(req.raw, reply.raw, (end: KeepAliveStreamEnd) => {
        log.info(
          { method: req.method, url: req.url, statusCode: 200, durationMs: Math.round(performance.now() - startedAt), keepalive: end },
          'keepalive stream ended',
        );
      });
    });
    done();
  });

  app.get<{ Params: { id: string }; Querystring: { keys?: boolean; encoding?: Encoding } }>(
    '/v1/leases/:id',
    { schema: { querystring: object({ keys: bool, encoding }) } },
    async (req) => {
      const enc = req.query.encoding ?? 'utf8';
      const info = await store.leaseTimeToLive(req.params.id, req.query.keys === true ? { keys: true } : {});
      if (info === undefined) throw new LeaseNotFoundError(req.params.id);
      const out = { id: info.id, ttl: info.ttl, grantedTtl: info.grantedTtl };
      return info.keys === undefined ? out : { ...out, keys: info.keys.map((k) => encode(k, enc)) };
    },
  );

  app.delete<{ Params: { id: string } }>('/v1/leases/:id', async (req) => {
    const r = await store.revokeLease(req.params.id);
    return { revision: r.revision, deleted: r.deleted };
  });

  // ------------------------------------------------------------------ catalog

  type InstanceParams = { Params: { service: string; id: string } };
  const instancePath = '/v1/catalog/services/:service/instances/:id';

  app.get('/v1/catalog/services', async () => catalog.listServices());

  app.get<{ Params: { service: string }; Querystring: { status?: string; zone?: string } }>(
    '/v1/catalog/services/:service/instances',
    { schema: { querystring: object({ status: str, zone: str }) } },
    async (req) => {
      const { status, zone } = req.query;
      const filter = {
        ...(status === undefined ? {} : { status: status.split(',').map((s) => s.trim()) as never }),
        ...(zone === undefined ? {} : { zone }),
      };
      return catalog.listInstances(req.params.service, filter);
    },
  );

  app.put<InstanceParams>(instancePath, async (req) => {
    const r = await catalog.register(req.params.service, req.params.id, req.body as never, { where: 'body' });
    return { instance: r.instance, lease: r.lease, revision: r.revision };
  });

  app.get<InstanceParams>(instancePath, async (req) => catalog.get(req.params.service, req.params.id));

  app.delete<InstanceParams>(instancePath, async (req) => catalog.deregister(req.params.service, req.params.id));

  app.post<InstanceParams>(`${instancePath}/drain`, async (req) => {
    noBody(req);
    return catalog.drain(req.params.service, req.params.id);
  });

  app.put<InstanceParams & { Body: { status: string; reason?: string } }>(
    `${instancePath}/status`,
    { schema: { body: object({ status: str, reason: { type: 'string', maxLength: 512 } }, ['status']) } },
    async (req) =>
      catalog.setStatus(req.params.service, req.params.id, req.body.status as never, req.body.reason === undefined ? {} : { reason: req.body.reason }),
  );

  // ------------------------------------------------------------------ watch

  app.get<{ Querystring: KvQuery; Headers: { 'last-event-id'?: string } }>(
    '/v1/watch',
    { schema: { querystring: object({ key: str, prefix: str, revision: int1, prevKv: bool, encoding }) } },
    async (req, reply: FastifyReply) => {
      const q = req.query;
      const enc = q.encoding ?? 'utf8';
      const mode = exactlyOne(q);
      const key = decode(mode === 'key' ? q.key! : q.prefix!, enc, `query.${mode}`);
      if (mode === 'key' && (typeof key === 'string' ? key.length : key.byteLength) === 0) {
        throw new InvalidKeyError('', '1 to 4096 bytes, not an empty key (use prefix= to watch every key)');
      }
      let startRevision = q.revision;
      const lastEventId = req.headers['last-event-id'];
      if (lastEventId !== undefined) {
        // EventSource sends the last id it saw: resume after it. It outranks ?revision=, which is the
        // first connection's start.
        if (!/^(0|[1-9][0-9]{0,15})$/.test(lastEventId) || !Number.isSafeInteger(Number(lastEventId))) {
          throw new InvalidArgumentError(`header last-event-id must be a revision (an integer >= 0); got ${describe(lastEventId)}`);
        }
        startRevision = Number(lastEventId) + 1;
      }
      const startedAt = performance.now();
      const log = req.log;
      await hub.subscribe({ key, prefix: mode === 'prefix', prevKv: q.prevKv === true, encoding: enc, startRevision }, reply.raw, (end: WatchEnd) => {
        log.info(
          { method: req.method, url: req.url, statusCode: 200, durationMs: Math.round(performance.now() - startedAt), watch: end },
          'watch ended',
        );
      });
      // The stream is ours now: fastify must not answer this request itself.
      reply.hijack();
    },
  );
}

function isNdjson(contentType: string): boolean {
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return type === NDJSON;
}

function unsupportedStreamType(contentType: string): HttpRequestError {
  return new HttpRequestError(
    ErrorCode.HttpUnsupportedMediaType,
    415,
    `POST ${KEEPALIVE_STREAM_PATH} takes a stream of lines: send "content-type: ${NDJSON}"; got ${describe(contentType)}`,
  );
}

/** A 503 for requests that arrive while the server is closing. */
export function closingError(): HttpRequestError {
  return new HttpRequestError(ErrorCode.HttpUnavailable, 503, 'the control plane is shutting down: try another replica or retry shortly');
}
