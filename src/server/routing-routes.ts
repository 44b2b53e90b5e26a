/**
 * The `/v1/routes` endpoints: gateway routes and their deploy steps, on the control plane's store.
 *
 * | method and path                                  | does                                              |
 * |--------------------------------------------------|---------------------------------------------------|
 * | `GET /v1/routes`                                 | every route with its revision                     |
 * | `GET /v1/routes/{name}`                          | one route (`ETag: "<revision>"`)                  |
 * | `PUT /v1/routes/{name}`                          | create or replace (validated; `If-Match`, `If-None-Match: *`) |
 * | `DELETE /v1/routes/{name}`                       | delete (`If-Match`)                               |
 * | `POST /v1/routes/{name}/deploy/switch`           | `{ "to": color, "force"? }`: blue-green switch     |
 * | `POST /v1/routes/{name}/deploy/rollback`         | `{ "force"? }`: abandon the canary, or swap back  |
 * | `POST /v1/routes/{name}/deploy/canary`           | `{ "version", "weight", "stickyOn"?, "force"? }`   |
 * | `POST /v1/routes/{name}/deploy/promote`          | `{ "force"? }`: the canary becomes active         |
 * | `GET /v1/routes/{name}/deploy`                   | the route's traffic and each version's instances  |
 *
 * Status codes beyond the API's usual ones: 404 `SPOF_ERR_ROUTE_NOT_FOUND`; 409 `SPOF_ERR_ROUTE_CONFLICT`
 * for a concurrent edit (412 when the caller's `If-Match`/`If-None-Match` did not hold); 409
 * `SPOF_ERR_DEPLOY_REFUSED` when a step would route to a version with no passing instance, or has
 * nothing to act on.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidArgumentError, RouteConflictError, describe } from '../errors/index.js';
import {
  ROUTE_NAME_PATTERN,
  deleteRoute,
  deployStatus,
  getRoute,
  listRoutes,
  promote,
  putRoute,
  rollback,
  setCanary,
  switchColor,
  type DeployOptions,
  type DeployResult,
  type HashKey,
} from '../routing/index.js';
import type { Store } from '../store/index.js';
import { toHttpError } from './errors.js';

export interface RoutingRoutesOptions {
  readonly store: Store;
}

type NameParams = { Params: { name: string } };

function checkName(name: string): string {
  if (!ROUTE_NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError(`path.name must be a route name (1 to 63 of a-z 0-9 . _ -, starting with a letter or digit); got ${describe(name)}`);
  }
  return name;
}

/** `If-Match: "12"` (or `12`, or a weak `W/"12"`) → 12; absent → undefined. */
function ifMatch(req: FastifyRequest): number | undefined {
  const h = req.headers['if-match'];
  if (h === undefined) return undefined;
  const m = /^\s*(?:W\/)?"?([1-9][0-9]{0,15})"?\s*$/.exec(h);
  if (m === null) throw new InvalidArgumentError(`header.if-match must be a route revision as its ETag gives it, e.g. "12"; got ${describe(h)}`);
  return Number(m[1]);
}

/** The revision a write must find: `If-Match`, or 0 for `If-None-Match: *` (create only). */
function precondition(req: FastifyRequest): number | undefined {
  const match = ifMatch(req);
  const none = req.headers['if-none-match'];
  if (none === undefined) return match;
  if (none.trim() !== '*') throw new InvalidArgumentError(`header.if-none-match must be "*" (create only); got ${describe(none)}`);
  if (match !== undefined) throw new InvalidArgumentError('give at most one of If-Match and If-None-Match');
  return 0;
}

/**
 * A route conflict is 412 when the caller's own `If-Match`/`If-None-Match` did not hold; every other
 * error (a concurrent edit's 409 included) goes to the shared mapping in errors.ts.
 */
function send(reply: FastifyReply, err: unknown, preconditioned: boolean): FastifyReply {
  if (preconditioned && err instanceof RouteConflictError) return reply.code(412).send(toHttpError(err, 0).body);
  throw err;
}

function bodyObject(body: unknown, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> {
  // An empty body is `undefined` (see the JSON parser in app.ts): the same as `{}`.
  const b = body === undefined ? {} : body;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new InvalidArgumentError(`body must be an object; got ${describe(b)}`);
  const o = b as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new InvalidArgumentError(`body has an unknown field ${JSON.stringify(k)}: expected only ${allowed.join(', ')}`);
  }
  for (const k of required) if (o[k] === undefined) throw new InvalidArgumentError(`body is missing the required field ${JSON.stringify(k)}`);
  if (o.force !== undefined && typeof o.force !== 'boolean') throw new InvalidArgumentError(`body.force must be true or false; got ${describe(o.force)}`);
  return o;
}

function deployJson(r: DeployResult): object {
  return { route: r.route, revision: r.revision, before: r.before ?? null, changed: r.changed };
}

/**
 * Registers the `/v1/routes` endpoints on the control plane's fastify app.
 *
 * @example
 * ```ts
 * registerRoutingRoutes(app, { store });
 * ```
 */
export function registerRoutingRoutes(app: FastifyInstance, { store }: RoutingRoutesOptions): void {
  app.get('/v1/routes', async () => listRoutes(store));

  app.get<NameParams>('/v1/routes/:name', async (req, reply) => {
    const r = await getRoute(store, checkName(req.params.name));
    void reply.header('etag', `"${r.revision}"`);
    return r;
  });

  app.put<NameParams>('/v1/routes/:name', async (req, reply) => {
    const name = checkName(req.params.name);
    const ifRevision = precondition(req);
    const body = req.body;
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      const given = (body as { name?: unknown }).name;
      if (given !== undefined && given !== name) {
        throw new InvalidArgumentError(`body.name must be the route name in the path (${JSON.stringify(name)}) or left out; got ${describe(given)}`);
      }
    }
    const input = typeof body === 'object' && body !== null && !Array.isArray(body) ? { ...body, name } : body;
    try {
      const r = await putRoute(store, input, { ...(ifRevision !== undefined ? { ifRevision } : {}), where: 'body' });
      void reply.header('etag', `"${r.revision}"`);
      return reply.code(r.created ? 201 : 200).send({ route: r.route, revision: r.revision, created: r.created });
    } catch (err) {
      return send(reply, err, ifRevision !== undefined);
    }
  });

  app.delete<NameParams>('/v1/routes/:name', async (req, reply) => {
    const name = checkName(req.params.name);
    const ifRevision = ifMatch(req);
    try {
      const r = await deleteRoute(store, name, ifRevision !== undefined ? { ifRevision } : {});
      return { deleted: name, revision: r.revision };
    } catch (err) {
      return send(reply, err, ifRevision !== undefined);
    }
  });

  app.get<NameParams>('/v1/routes/:name/deploy', async (req) => deployStatus(store, checkName(req.params.name)));

  const deploy = (
    step: string,
    allowed: readonly string[],
    required: readonly string[],
    run: (name: string, body: Record<string, unknown>, options: DeployOptions) => Promise<DeployResult>,
  ): void => {
    app.post<NameParams>(`/v1/routes/:name/deploy/${step}`, async (req, reply) => {
      const name = checkName(req.params.name);
      const ifRevision = ifMatch(req);
      const body = bodyObject(req.body, [...allowed, 'force'], required);
      const options: DeployOptions = { ...(body.force === true ? { force: true } : {}), ...(ifRevision !== undefined ? { ifRevision } : {}) };
      try {
        return deployJson(await run(name, body, options));
      } catch (err) {
        return send(reply, err, ifRevision !== undefined);
      }
    });
  };

  deploy('switch', ['to'], ['to'], (name, b, o) => {
    if (typeof b.to !== 'string') throw new InvalidArgumentError(`body.to must be the color or version to switch to; got ${describe(b.to)}`);
    return switchColor(store, name, b.to, o);
  });
  deploy('rollback', [], [], (name, _b, o) => rollback(store, name, o));
  deploy('canary', ['version', 'weight', 'stickyOn'], ['version', 'weight'], (name, b, o) => {
    if (typeof b.version !== 'string') throw new InvalidArgumentError(`body.version must be the canary's version; got ${describe(b.version)}`);
    if (typeof b.weight !== 'number' || !Number.isInteger(b.weight) || b.weight < 0 || b.weight > 100) throw new InvalidArgumentError(`body.weight must be an integer from 0 to 100; got ${describe(b.weight)}`);
    return setCanary(store, name, b.version, b.weight, b.stickyOn as HashKey | undefined, o);
  });
  deploy('promote', [], [], (name, _b, o) => promote(store, name, o));
}
