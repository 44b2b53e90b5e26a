// The /v1/routes API and the deploy steps, over real HTTP on a real SQLite store; the concurrent-edit
// case also at the library level with a store whose transaction is held back until another writer won.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, isSpoflessError } from '../src/errors/index.js';
import { getRoute, putRoute, routeKey, switchColor } from '../src/routing/index.js';
import type { Store, TxnRequest } from '../src/store/index.js';
import { call, startServer } from './server-helpers.js';

const route = { service: 'web', match: { pathPrefix: '/' }, traffic: { active: 'blue' } };

async function register(url: string, id: string, color: string, status = 'passing'): Promise<void> {
  const r = await call(url, 'PUT', `/v1/catalog/services/web/instances/${id}`, { address: '127.0.0.1', port: 9000, color, status, ttl: 60 });
  assert.equal(r.status < 300, true, JSON.stringify(r.body));
}

test('routes: create, read with ETag, list, replace under If-Match, delete', async (t) => {
  const { url } = await startServer(t);
  const created = await call(url, 'PUT', '/v1/routes/web', route);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body.route, { name: 'web', ...route });
  const rev = created.body.revision as number;

  const res = await fetch(`${url}/v1/routes/web`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('etag'), `"${rev}"`);
  assert.deepEqual(await res.json(), { route: { name: 'web', ...route }, revision: rev });

  const list = await call(url, 'GET', '/v1/routes');
  assert.deepEqual((list.body.routes as unknown[]).length, 1);

  const replaced = await call(url, 'PUT', '/v1/routes/web', { ...route, stripPrefix: true }, { 'if-match': `"${rev}"` });
  assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
  assert.ok((replaced.body.revision as number) > rev);

  const stale = await call(url, 'PUT', '/v1/routes/web', route, { 'if-match': `"${rev}"` });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.error?.code, ErrorCode.RouteConflict);
  assert.equal(stale.body.error?.currentRevision, replaced.body.revision);

  const again = await call(url, 'PUT', '/v1/routes/web', route, { 'if-none-match': '*' });
  assert.equal(again.status, 412, 'If-None-Match: * refuses to replace an existing route');

  const staleDelete = await call(url, 'DELETE', '/v1/routes/web', undefined, { 'if-match': `"${rev}"` });
  assert.equal(staleDelete.status, 412);
  const del = await call(url, 'DELETE', '/v1/routes/web');
  assert.equal(del.status, 200);
  assert.equal((await call(url, 'GET', '/v1/routes/web')).status, 404);
  const delAgain = await call(url, 'DELETE', '/v1/routes/web');
  assert.equal(delAgain.status, 404);
  assert.equal(delAgain.body.error?.code, ErrorCode.RouteNotFound);
});

test('routes: malformed input is a 400 naming the field, and nothing is written', async (t) => {
  const { url, store } = await startServer(t);
  const cases: [string, unknown, Record<string, string>, RegExp][] = [
    ['/v1/routes/web', { ...route, retry: { attempts: 9, on: [] } }, {}, /body\.retry\.attempts must be an integer from 1 to 5; got 9/],
    ['/v1/routes/web', { ...route, match: { pathPrefix: 'x' } }, {}, /body\.match\.pathPrefix must be a string starting with "\/"/],
    ['/v1/routes/web', { ...route, balancer: 'consistent-hash' }, {}, /body\.hashOn is required/],
    ['/v1/routes/web', { ...route, name: 'other' }, {}, /body\.name must be the route name in the path/],
    ['/v1/routes/Web', route, {}, /path\.name must be a route name/],
    ['/v1/routes/web', [1], {}, /body must be an object/],
    ['/v1/routes/web', '{"service":', {}, /not valid JSON/],
    ['/v1/routes/web', route, { 'if-match': 'yesterday' }, /header\.if-match must be a route revision/],
    ['/v1/routes/web', { ...route, fallback: { status: 503, headers: { 'transfer-encoding': 'chunked' } } }, {}, /body\.fallback\.headers must not set "transfer-encoding"/],
  ];
  for (const [path, body, headers, pattern] of cases) {
    const r = await call(url, 'PUT', path, body, headers);
    assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error?.message ?? '', pattern);
  }
  const noBody = await call(url, 'PUT', '/v1/routes/web');
  assert.equal(noBody.status, 400);
  assert.equal((await store.range('/spofless/routes/')).kvs.length, 0, 'nothing was written');
  // A key written by hand under the prefix that is not a route is skipped, not served.
  await store.put(routeKey('junk'), 'not a route');
  assert.deepEqual((await call(url, 'GET', '/v1/routes')).body.routes, []);
  assert.equal((await call(url, 'GET', '/v1/routes/junk')).status, 404);
});

test('deploy: switch refuses a color with no passing instance, switches, rolls back; status counts instances', async (t) => {
  const { url } = await startServer(t);
  assert.equal((await call(url, 'PUT', '/v1/routes/web', route)).status, 201);
  await register(url, 'b1', 'blue');
  await register(url, 'g1', 'green', 'critical');

  const refused = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'green' });
  assert.equal(refused.status, 409);
  assert.equal(refused.body.error?.code, ErrorCode.DeployRefused);
  assert.match(refused.body.error?.message ?? '', /no passing instance of "green" in service "web" \(1 registered\)/);
  const nobody = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'purple' });
  assert.match(nobody.body.error?.message ?? '', /\(0 registered\)/);

  await register(url, 'g1', 'green', 'passing');
  const sw = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'green' });
  assert.equal(sw.status, 200, JSON.stringify(sw.body));
  assert.deepEqual(sw.body.route, { name: 'web', ...route, traffic: { active: 'green', previous: 'blue' } });
  assert.deepEqual(sw.body.before, { active: 'blue' });
  assert.equal(sw.body.changed, true);

  const same = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'green' });
  assert.equal(same.body.changed, false);
  assert.equal(same.body.revision, sw.body.revision, 'a no-op writes nothing');

  const status = await call(url, 'GET', '/v1/routes/web/deploy');
  assert.deepEqual(status.body.versions, [
    { version: 'green', role: 'active', weight: 100, passing: 1, registered: 1 },
    { version: 'blue', role: 'previous', weight: 0, passing: 1, registered: 1 },
  ]);

  const rb = await call(url, 'POST', '/v1/routes/web/deploy/rollback');
  assert.equal(rb.status, 200, JSON.stringify(rb.body));
  assert.deepEqual((rb.body.route as { traffic: unknown }).traffic, { active: 'blue', previous: 'green' });

  // Stale If-Match on a deploy step: 412, nothing written.
  const stale = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'green' }, { 'if-match': `"${sw.body.revision as number}"` });
  assert.equal(stale.status, 412);
  // Forced to a color with nothing passing.
  const forced = await call(url, 'POST', '/v1/routes/web/deploy/switch', { to: 'purple', force: true });
  assert.equal(forced.status, 200);
  assert.equal((forced.body.route as { traffic: { active: string } }).traffic.active, 'purple');
});

test('deploy: canary, promote, rollback of a canary; bad bodies are 400, unknown routes 404', async (t) => {
  const { url } = await startServer(t);
  assert.equal((await call(url, 'PUT', '/v1/routes/web', { ...route, traffic: { active: 'v1' } })).status, 201);
  await register(url, 'a', 'v1');
  await register(url, 'b', 'v2');

  const bad: [unknown, RegExp][] = [
    [{ version: 'v2', weight: 101 }, /body\.weight must be an integer from 0 to 100; got 101/],
    [{ version: 'v2' }, /body is missing the required field "weight"/],
    [{ version: 'v2', weight: 10, stickyOn: { header: 'a b' } }, /stickyOn\.header must be a header name/],
    [{ version: 'v2', weight: 10, extra: 1 }, /body has an unknown field "extra"/],
    [{ version: 'v2', weight: 10, force: 'yes' }, /body\.force must be true or false/],
    [{ version: 'v1', weight: 10 }, /already the active version/],
  ];
  for (const [body, pattern] of bad) {
    const r = await call(url, 'POST', '/v1/routes/web/deploy/canary', body);
    assert.ok(r.status === 400 || r.status === 409, `${JSON.stringify(body)} → ${r.status}`);
    assert.match(r.body.error?.message ?? '', pattern);
  }
  assert.equal((await call(url, 'POST', '/v1/routes/web/deploy/promote')).status, 409, 'no canary to promote');
  assert.equal((await call(url, 'POST', '/v1/routes/nope/deploy/promote')).status, 404);

  const c = await call(url, 'POST', '/v1/routes/web/deploy/canary', { version: 'v2', weight: 10, stickyOn: { header: 'X-User' } });
  assert.equal(c.status, 200, JSON.stringify(c.body));
  assert.deepEqual((c.body.route as { traffic: unknown }).traffic, { active: 'v1', canary: { version: 'v2', weight: 10, stickyOn: { header: 'x-user' } } });
  // A weight change keeps the stickiness key.
  const c2 = await call(url, 'POST', '/v1/routes/web/deploy/canary', { version: 'v2', weight: 50 });
  assert.deepEqual((c2.body.route as { traffic: unknown }).traffic, { active: 'v1', canary: { version: 'v2', weight: 50, stickyOn: { header: 'x-user' } } });

  const rb = await call(url, 'POST', '/v1/routes/web/deploy/rollback');
  assert.deepEqual((rb.body.route as { traffic: unknown }).traffic, { active: 'v1' }, 'rollback abandons the canary');

  await call(url, 'POST', '/v1/routes/web/deploy/canary', { version: 'v2', weight: 10 });
  const p = await call(url, 'POST', '/v1/routes/web/deploy/promote');
  assert.equal(p.status, 200);
  assert.deepEqual((p.body.route as { traffic: unknown }).traffic, { active: 'v2', previous: 'v1' });
  const back = await call(url, 'POST', '/v1/routes/web/deploy/rollback');
  assert.deepEqual((back.body.route as { traffic: unknown }).traffic, { active: 'v1', previous: 'v2' });
});

test('deploy: a concurrent edit between the read and the write is a RouteConflict and the other edit stands', async (t) => {
  const { store } = await startServer(t);
  await putRoute(store, { name: 'web', ...route, traffic: { active: 'blue' } });
  // Hold the deploy step's transaction until another writer has changed the route.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atTxn = new Promise<void>((r) => (reached = r));
  const slow = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'txn') {
        return async (req: TxnRequest) => {
          reached();
          await held;
          return target.txn(req);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Store;
  const sw = switchColor(slow, 'web', 'green', { force: true });
  await atTxn;
  const other = await putRoute(store, { name: 'web', ...route, traffic: { active: 'red' } });
  release();
  await assert.rejects(sw, (e: unknown) => isSpoflessError(e, ErrorCode.RouteConflict) && /is at revision \d+, not \d+ as expected/.test(e.message));
  const now = await getRoute(store, 'web');
  assert.equal(now.revision, other.revision);
  assert.equal(now.route.traffic?.active, 'red');
});
