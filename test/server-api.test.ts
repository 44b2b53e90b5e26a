// The control plane's JSON API over real HTTP on 127.0.0.1, a real SQLite file underneath.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startControlPlane } from '../src/server/index.js';
import { MAX_VALUE_BYTES, text } from '../src/store/index.js';
import { call, startServer, until, type Answer } from './server-helpers.js';

/** A 4xx with a JSON error body naming the code, and a message that says something. */
function assertRefused(a: Answer, status: number, code: string, message?: RegExp): void {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.match(a.contentType ?? '', /^application\/json/);
  assert.equal(a.body.error?.code, code, JSON.stringify(a.body));
  assert.ok((a.body.error?.message.length ?? 0) > 10, 'the message says what was wrong');
  if (message) assert.match(a.body.error?.message ?? '', message);
}

test('kv: put, get (now and at a revision), range with limit/fromKey/keysOnly, delete, delete prefix', async (t) => {
  const { url } = await startServer(t);
  const p1 = await call(url, 'PUT', '/v1/kv', { key: '/a/1', value: 'one' });
  assert.deepEqual(p1.body, { revision: 1 });
  const p2 = await call(url, 'PUT', '/v1/kv', { key: '/a/1', value: 'uno', prevKv: true });
  assert.equal(p2.body.revision, 2);
  assert.deepEqual(p2.body.prevKv, { key: '/a/1', value: 'one', createRevision: 1, modRevision: 1, version: 1 });
  await call(url, 'PUT', '/v1/kv', { key: '/a/2', value: 'two' });
  await call(url, 'PUT', '/v1/kv', { key: '/b/1', value: 'bee' });

  const g = await call(url, 'GET', '/v1/kv?key=/a/1');
  assert.deepEqual(g.body, { kv: { key: '/a/1', value: 'uno', createRevision: 1, modRevision: 2, version: 2 }, revision: 4 });
  const old = await call(url, 'GET', '/v1/kv?key=/a/1&revision=1');
  assert.equal((old.body.kv as { value: string }).value, 'one');
  assertRefused(await call(url, 'GET', '/v1/kv?key=/a/3'), 404, 'SPOF_ERR_KEY_NOT_FOUND', /"\/a\/3" not found/);
  assertRefused(await call(url, 'GET', '/v1/kv?key=/a/1&revision=99'), 400, 'SPOF_ERR_STORE_FUTURE_REVISION');

  const all = await call(url, 'GET', '/v1/kv?prefix=/a/');
  assert.deepEqual((all.body.kvs as { key: string }[]).map((k) => k.key), ['/a/1', '/a/2']);
  assert.equal(all.body.more, false);
  const page = await call(url, 'GET', '/v1/kv?prefix=/&limit=2&keysOnly=true');
  assert.deepEqual(page.body.kvs, [
    { key: '/a/1', value: '', createRevision: 1, modRevision: 2, version: 2 },
    { key: '/a/2', value: '', createRevision: 3, modRevision: 3, version: 1 },
  ]);
  assert.equal(page.body.more, true);
  const next = await call(url, 'GET', `/v1/kv?prefix=/&fromKey=${encodeURIComponent('/a/2\u0000')}&revision=${String(page.body.revision)}`);
  assert.deepEqual((next.body.kvs as { key: string }[]).map((k) => k.key), ['/b/1']);

  const d = await call(url, 'DELETE', '/v1/kv?key=/b/1');
  assert.deepEqual(d.body, { revision: 5, deleted: 1 });
  const dp = await call(url, 'DELETE', '/v1/kv?prefix=/a/&prevKv=true');
  assert.equal(dp.body.deleted, 2);
  assert.deepEqual((dp.body.prevKvs as { key: string }[]).map((k) => k.key), ['/a/1', '/a/2']);
  assert.deepEqual((await call(url, 'GET', '/v1/kv?prefix=')).body.kvs, []);
});

test('kv: base64 keys and values carry binary bytes both ways', async (t) => {
  const { url, store } = await startServer(t);
  const key = Buffer.from([0x2f, 0x00, 0xff, 0x01]);
  const value = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]);
  const r = await call(url, 'PUT', '/v1/kv', { key: key.toString('base64'), value: value.toString('base64'), encoding: 'base64' });
  assert.equal(r.status, 200);
  const kv = await store.get(key);
  assert.deepEqual(Buffer.from(kv!.value), value);
  const g = await call(url, 'GET', `/v1/kv?key=${encodeURIComponent(key.toString('base64'))}&encoding=base64`);
  assert.equal((g.body.kv as { value: string }).value, value.toString('base64'));
  assertRefused(await call(url, 'PUT', '/v1/kv', { key: 'not base64!', value: '', encoding: 'base64' }), 400, 'SPOF_ERR_INVALID_ARGUMENT', /body.key must be base64/);
});

test('txn: compare on a missing key (version 0) succeeds; a value compare on it fails; responses per op', async (t) => {
  const { url, store } = await startServer(t);
  const create = await call(url, 'POST', '/v1/txn', {
    compare: [{ key: '/lock', target: 'version', cmp: '=', value: 0 }],
    success: [{ type: 'put', key: '/lock', value: 'me' }, { type: 'range', key: '/lock' }],
    failure: [{ type: 'range', key: '/lock' }],
  });
  assert.equal(create.status, 200);
  assert.equal(create.body.succeeded, true);
  assert.equal(create.body.revision, 1);
  assert.deepEqual(create.body.responses, [
    { type: 'put' },
    { type: 'range', kvs: [{ key: '/lock', value: 'me', createRevision: 1, modRevision: 1, version: 1 }], more: false },
  ]);
  const again = await call(url, 'POST', '/v1/txn', {
    compare: [{ key: '/lock', target: 'version', cmp: '=', value: 0 }],
    success: [{ type: 'put', key: '/lock', value: 'you' }],
    failure: [{ type: 'range', key: '/lock' }],
  });
  assert.equal(again.body.succeeded, false);
  assert.equal(again.body.revision, 1, 'nothing written: the current revision');
  const missingValue = await call(url, 'POST', '/v1/txn', {
    compare: [{ key: '/nothing', target: 'value', cmp: '!=', value: 'x' }],
    success: [{ type: 'put', key: '/nothing', value: 'y' }],
  });
  assert.equal(missingValue.body.succeeded, false, "a value compare on a missing key is false (etcd's rule)");
  const del = await call(url, 'POST', '/v1/txn', {
    compare: [{ key: '/lock', target: 'lease', cmp: '=', value: null }, { key: '/lock', target: 'modRevision', cmp: '=', value: 1 }],
    success: [{ type: 'delete', key: '/lock', prevKv: true }],
  });
  assert.equal(del.body.succeeded, true);
  assert.deepEqual(del.body.responses, [{ type: 'delete', deleted: 1, prevKvs: [{ key: '/lock', value: 'me', createRevision: 1, modRevision: 1, version: 1 }] }]);
  assert.equal(store.revision, 2);
});

test('leases: grant, keepalive, ttl with keys, revoke deletes the keys; unknown → 404, invalid → 400', async (t) => {
  const { url, store } = await startServer(t);
  const g = await call(url, 'POST', '/v1/leases', { ttl: 30 });
  assert.equal(g.status, 200);
  const id = g.body.id as string;
  assert.match(id, /^[1-9][0-9]*$/);
  assert.equal(g.body.ttl, 30);
  await call(url, 'PUT', '/v1/kv', { key: '/l/a', value: '1', lease: id });
  const k = await call(url, 'POST', `/v1/leases/${id}/keepalive`);
  assert.deepEqual(k.body, { id, ttl: 30 });
  const info = await call(url, 'GET', `/v1/leases/${id}?keys=true`);
  assert.deepEqual(info.body, { id, ttl: 30, grantedTtl: 30, keys: ['/l/a'] });
  const r = await call(url, 'DELETE', `/v1/leases/${id}`);
  assert.equal(r.body.deleted, 1);
  assert.equal(await store.get('/l/a'), undefined);
  for (const [method, path] of [
    ['POST', `/v1/leases/${id}/keepalive`],
    ['GET', `/v1/leases/${id}`],
    ['DELETE', `/v1/leases/${id}`],
    ['POST', '/v1/leases/12345/keepalive'],
  ] as const) {
    assertRefused(await call(url, method, path), 404, 'SPOF_ERR_STORE_LEASE_NOT_FOUND', /not found/);
  }
  assertRefused(await call(url, 'POST', '/v1/leases/abc/keepalive'), 400, 'SPOF_ERR_INVALID_ARGUMENT', /lease id must be/);
  assertRefused(await call(url, 'POST', '/v1/leases', { ttl: 0 }), 400, 'SPOF_ERR_INVALID_ARGUMENT', /TTL/);
  assertRefused(await call(url, 'POST', '/v1/leases', { ttl: '5' }), 400, 'SPOF_ERR_INVALID_ARGUMENT', /body.ttl must be an integer; got "5"/);
});

test('catalog: register (ttl or lease), get, list services and instances with filters, drain, status, deregister', async (t) => {
  const { url, store } = await startServer(t);
  const base = '/v1/catalog/services/api/instances';
  const r1 = await call(url, 'PUT', `${base}/a1`, { address: '127.0.0.1', port: 8001, zone: 'z1', tags: ['v1'], metadata: { build: '7' }, version: '1.0', color: 'blue', ttl: 30 });
  assert.equal(r1.status, 200, JSON.stringify(r1.body));
  const i1 = r1.body.instance as Record<string, unknown>;
  assert.equal(i1.status, 'passing');
  assert.equal(i1.lease, r1.body.lease);
  assert.equal(typeof i1.registeredAt, 'number');
  const kv = await store.get('/spofless/catalog/instances/api/a1');
  assert.deepEqual(JSON.parse(text(kv!.value)), i1, 'the value at the documented key is the Instance JSON');
  assert.equal(kv!.lease, r1.body.lease);

  const lease = (await call(url, 'POST', '/v1/leases', { ttl: 30 })).body.id as string;
  const r2 = await call(url, 'PUT', `${base}/a2`, { address: '127.0.0.1', port: 8002, zone: 'z2', lease, check: { type: 'tcp', interval: 1000 } });
  assert.equal((r2.body.instance as { status: string }).status, 'critical');
  assert.equal(r2.body.lease, lease);
  await call(url, 'PUT', '/v1/catalog/services/db/instances/d1', { address: 'db.internal', port: 5432 });

  assert.deepEqual((await call(url, 'GET', '/v1/catalog/services')).body.services, [
    { name: 'api', instances: 2, passing: 1 },
    { name: 'db', instances: 1, passing: 1 },
  ]);
  const ids = async (q: string) => ((await call(url, 'GET', `${base}${q}`)).body.instances as { id: string }[]).map((i) => i.id);
  assert.deepEqual(await ids(''), ['a1', 'a2']);
  assert.deepEqual(await ids('?status=passing'), ['a1']);
  assert.deepEqual(await ids('?status=critical,warning'), ['a2']);
  assert.deepEqual(await ids('?zone=z2'), ['a2']);
  assert.deepEqual(await ids('?zone=z2&status=passing'), []);
  assertRefused(await call(url, 'GET', `${base}?status=ok`), 400, 'SPOF_ERR_INVALID_ARGUMENT', /status filter\[0\] must be one of/);

  assert.equal(((await call(url, 'GET', `${base}/a1`)).body.instance as { port: number }).port, 8001);
  const drained = await call(url, 'POST', `${base}/a1/drain`);
  assert.equal((drained.body.instance as { status: string }).status, 'draining');
  assert.equal((await store.get('/spofless/catalog/instances/api/a1'))!.lease, r1.body.lease, 'drain keeps the lease');
  const maint = await call(url, 'PUT', `${base}/a1/status`, { status: 'maintenance', reason: 'kernel upgrade' });
  assert.equal((maint.body.instance as { statusReason: string }).statusReason, 'kernel upgrade');

  const del = await call(url, 'DELETE', `${base}/a1`);
  assert.equal(typeof del.body.revision, 'number');
  for (const [method, path] of [
    ['DELETE', `${base}/a1`],
    ['GET', `${base}/a1`],
    ['POST', `${base}/a1/drain`],
  ] as const) {
    assertRefused(await call(url, method, path), 404, 'SPOF_ERR_CATALOG_INSTANCE_NOT_FOUND');
  }
});

test('health checks run by the control plane move an instance to passing (real timers)', async (t) => {
  const app = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => app.close(() => r())));
  const { url } = await startServer(t, { healthChecks: true });
  const port = (app.address() as AddressInfo).port;
  await call(url, 'PUT', '/v1/catalog/services/web/instances/w1', {
    address: '127.0.0.1',
    port,
    ttl: 30,
    check: { type: 'http', path: '/health', interval: 100, timeout: 100, rise: 2, fall: 1 },
  });
  let status = '';
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    status = ((await call(url, 'GET', '/v1/catalog/services/web/instances/w1')).body.instance as { status: string }).status;
    if (status === 'passing') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 'passing');
});

test('bad input: each gets a 4xx with a JSON error, and nothing is half-written', async (t) => {
  const { url, store } = await startServer(t);
  await call(url, 'PUT', '/v1/kv', { key: '/keep', value: 'v' });
  const before = store.revision;
  const big = 'x'.repeat(MAX_VALUE_BYTES + 1);
  const cases: [string, string, unknown, number, string, RegExp, Record<string, string>?][] = [
    ['PUT', '/v1/kv', '{"key": "/a", "value": ', 400, 'SPOF_ERR_HTTP_BAD_JSON', /not valid JSON/],
    ['PUT', '/v1/kv', '[1, 2', 400, 'SPOF_ERR_HTTP_BAD_JSON', /not valid JSON/],
    ['PUT', '/v1/kv', { key: '/a', value: 'v', ttl: 5 }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /unknown field "ttl": expected only key, value, lease, prevKv, encoding/],
    ['PUT', '/v1/kv', { key: '/a' }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /missing the required field "value"/],
    ['PUT', '/v1/kv', { key: 7, value: 'v' }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /body.key must be a string; got 7/],
    ['PUT', '/v1/kv', [], 400, 'SPOF_ERR_INVALID_ARGUMENT', /body must be an object/],
    ['PUT', '/v1/kv', { key: '', value: 'v' }, 400, 'SPOF_ERR_STORE_INVALID_KEY', /invalid key/],
    ['PUT', '/v1/kv', { key: 'k'.repeat(5000), value: 'v' }, 400, 'SPOF_ERR_STORE_INVALID_KEY', /at most 4096 bytes/],
    ['PUT', '/v1/kv', { key: '/a', value: big }, 413, 'SPOF_ERR_STORE_VALUE_TOO_LARGE', /expected at most 1572864 bytes/],
    ['PUT', '/v1/kv', { key: '/a', value: 'x'.repeat(4 * 1024 * 1024) }, 413, 'SPOF_ERR_HTTP_BODY_TOO_LARGE', /larger than/],
    ['PUT', '/v1/kv', { key: '/a', value: 'v', lease: '999999' }, 404, 'SPOF_ERR_STORE_LEASE_NOT_FOUND', /lease 999999 not found/],
    ['PUT', '/v1/kv', { key: '/a', value: 'v', lease: 'abc' }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /lease id/],
    ['PUT', '/v1/kv', '{"key":"/a","value":"v"}', 415, 'SPOF_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE', /application\/json/, { 'content-type': 'text/plain' }],
    ['GET', '/v1/kv?key=/a&prefix=/', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /exactly one of query.key/],
    ['GET', '/v1/kv', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /exactly one of query.key/],
    ['GET', '/v1/kv?key=', undefined, 400, 'SPOF_ERR_STORE_INVALID_KEY', /empty key/],
    ['GET', '/v1/kv?prefix=/&limit=0', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /query.limit must be >= 1; got 0/],
    ['GET', '/v1/kv?prefix=/&revison=3', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /unknown field "revison"/],
    ['GET', '/v1/kv?key=/a&limit=3', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /query.limit applies to query.prefix only/],
    ['DELETE', '/v1/kv?prefix=', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /must not be empty on DELETE/],
    ['POST', '/v1/txn', { success: [{ type: 'put', key: '/t1', value: 'ok' }, { type: 'put', key: '/t2', value: big }] }, 413, 'SPOF_ERR_STORE_VALUE_TOO_LARGE', /\/t2/],
    ['POST', '/v1/txn', { success: [{ type: 'put', key: '/t1', value: 'ok' }, { type: 'upsert', key: '/t2', value: 'v' }] }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /success\[1\].type must be one of "put", "delete", "range"; got "upsert"/],
    ['POST', '/v1/txn', { success: [{ type: 'put', key: '/t1', value: 'ok' }, { type: 'put', key: '/t1', value: 'twice' }] }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /twice/],
    ['POST', '/v1/txn', { compare: [{ key: '/t', target: 'version', cmp: '=', value: 'one' }], success: [{ type: 'put', key: '/t1', value: 'ok' }] }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /compare\[0\].value must be an integer >= 0 when target is "version"/],
    ['POST', '/v1/txn', { compare: [{ key: '/t', target: 'version', cmp: '=' }] }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /missing the required field "value"/],
    ['POST', '/v1/txn', { compare: [], succes: [] }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /unknown field "succes"/],
    ['POST', '/v1/leases/123/keepalive', { extra: 1 }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /takes no body/],
    ['PUT', '/v1/catalog/services/api/instances/i1', { address: '127.0.0.1', port: 80, weight: 3 }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /body has an unknown field "weight"/],
    ['PUT', '/v1/catalog/services/api/instances/i1', { address: '127.0.0.1', port: 70000 }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /body.port must be an integer from 1 to 65535; got 70000/],
    ['PUT', '/v1/catalog/services/api/instances/i1', { address: '127.0.0.1', port: 80, lease: '4242' }, 404, 'SPOF_ERR_STORE_LEASE_NOT_FOUND', /4242/],
    ['PUT', '/v1/catalog/services/api/instances/i1', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /body must be an object; got undefined/],
    ['PUT', '/v1/catalog/services/a%2Fb/instances/i1', { address: '127.0.0.1', port: 80 }, 400, 'SPOF_ERR_INVALID_ARGUMENT', /service name must be/],
    ['GET', '/v1/watch?prefix=/&revision=-1', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /query.revision must be >= 1/],
    ['GET', '/v1/watch?prefix=/', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /last-event-id must be a revision/, { 'last-event-id': 'abc' }],
    ['GET', '/v1/nothing-here', undefined, 404, 'SPOF_ERR_HTTP_NOT_FOUND', /no route GET \/v1\/nothing-here/],
    ['GET', '/v1/leases/%ff', undefined, 400, 'SPOF_ERR_INVALID_ARGUMENT', /not a valid url component: percent-encode/],
  ];
  for (const [method, path, body, status, code, re, headers] of cases) {
    const a = await call(url, method, path, body, headers);
    await t.test(`${method} ${path} ${typeof body === 'string' ? body.slice(0, 30) : JSON.stringify(body)?.slice(0, 60)}`, () => assertRefused(a, status, code, re));
  }
  assert.equal(store.revision, before, 'no bad request wrote anything');
  assert.deepEqual((await store.range('/')).kvs.map((kv) => text(kv.key)), ['/keep']);
  assert.deepEqual((await call(url, 'GET', '/v1/catalog/services')).body.services, []);
});

test('origin and host checks refuse cross-site requests; /healthz, /readyz', async (t) => {
  const { url, store, cp } = await startServer(t);
  assertRefused(await call(url, 'PUT', '/v1/kv', { key: '/x', value: 'v' }, { origin: 'http://evil.example' }), 403, 'SPOF_ERR_HTTP_FORBIDDEN', /cross-origin/);
  // fetch will not send another Host: a raw request does (DNS rebinding looks like this).
  const rebound = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${url}/healthz`, { headers: { host: 'evil.example:7400' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(rebound.status, 403);
  assert.equal((JSON.parse(rebound.body) as { error: { code: string } }).error.code, 'SPOF_ERR_HTTP_FORBIDDEN');
  const same = await call(url, 'GET', '/healthz', undefined, { origin: url });
  assert.deepEqual(same.body, { ok: true });
  assert.equal((await fetch(`${url}/healthz`, { method: 'HEAD' })).status, 200);
  assert.equal((await fetch(`${url}/v1/watch?prefix=/`, { method: 'HEAD' })).status, 404);
  assert.equal((await call(url.replace('127.0.0.1', 'localhost'), 'GET', '/healthz')).status, 200);
  assert.equal(await store.get('/x'), undefined);
  const ready = await call(url, 'GET', '/readyz');
  assert.equal(ready.status, 200);
  assert.equal(ready.body.ok, true);
  await store.close();
  const notReady = await call(url, 'GET', '/readyz');
  assert.equal(notReady.status, 503);
  assertRefused(await call(url, 'GET', '/v1/kv?prefix=/'), 503, 'SPOF_ERR_STORE_CLOSED');
  await cp.close();
});

test('one JSON log line per request: successful kv gets and puts at debug, the rest at info', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
  const { url } = await startServer(t, { logger: { level: 'debug', stream } });
  lines.length = 0;
  await call(url, 'PUT', '/v1/kv', { key: '/a', value: 'v' });
  await call(url, 'GET', '/v1/kv?key=/zz');
  await call(url, 'GET', '/v1/catalog/services');
  await until(() => lines.filter((l) => l.msg === 'request').length >= 3, 'log lines');
  const reqs = lines.filter((l) => l.msg === 'request');
  assert.equal(reqs.length, 3);
  assert.deepEqual(
    reqs.map((l) => [l.level, l.method, l.url, l.statusCode]),
    [
      [20, 'PUT', '/v1/kv', 200],
      [30, 'GET', '/v1/kv?key=/zz', 404],
      [30, 'GET', '/v1/catalog/services', 200],
    ],
  );
  assert.equal(typeof reqs[0]!.durationMs, 'number');
});

test('at level info the hot path writes no request line; errors still do', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
  const { url } = await startServer(t, { logger: { level: 'info', stream } });
  lines.length = 0;
  await call(url, 'PUT', '/v1/kv', { key: '/a', value: 'v' });
  await call(url, 'GET', '/v1/kv?key=/a');
  await call(url, 'GET', '/v1/kv?key=/zz');
  await until(() => lines.some((l) => l.msg === 'request'), 'log line');
  assert.deepEqual(
    lines.filter((l) => l.msg === 'request').map((l) => [l.level, l.method, l.url, l.statusCode]),
    [[30, 'GET', '/v1/kv?key=/zz', 404]],
  );
});

test('startControlPlane: options checked, data dir created, close() idempotent and frees the port', async (t) => {
  await assert.rejects(startControlPlane({ port: -1 }), /option "port" must be an integer from 0 to 65535; got -1/);
  await assert.rejects(startControlPlane({ host: '' }), /option "host"/);
  const root = mkdtempSync(join(tmpdir(), 'spofless-cp-'));
  const dir = join(root, 'nested', 'data');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const cp = await startControlPlane({ port: 0, dataDir: dir, logger: false });
  t.after(() => cp.close());
  assert.match(cp.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(existsSync(join(dir, 'store.db')));
  await assert.rejects(startControlPlane({ port: cp.port, dataDir: `${dir}-2`, logger: false }), /cannot listen on 127.0.0.1:\d+ \(EADDRINUSE\)/);
  await call(cp.url, 'PUT', '/v1/kv', { key: '/persist', value: 'yes' });
  await Promise.all([cp.close(), cp.close()]);
  await assert.rejects(fetch(`${cp.url}/healthz`));
  // The store was closed: a new control plane opens the same file and finds the data.
  const again = await startControlPlane({ port: 0, dataDir: dir, logger: false });
  t.after(() => again.close());
  assert.equal(((await call(again.url, 'GET', '/v1/kv?key=/persist')).body.kv as { value: string }).value, 'yes');
});
