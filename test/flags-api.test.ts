// The flag API over real HTTP on a control plane with a real SQLite store: CRUD, validation (4xx with
// the field), compare-and-swap under concurrent writers (409, nothing lost), the audit log, segments,
// flagd import/export, the OFREP endpoints' exact shapes, and the CLI against it.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { run } from '../src/cli/run.js';
import { call, startServer } from './server-helpers.js';

const FLAG = {
  key: 'new-checkout',
  type: 'boolean',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  rules: [{ conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }], serve: { variant: 'on' } }],
};

async function cli(url: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(['flags', ...args, '--url', url], { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: { USER: 'cli-user' } });
  return { code, stdout, stderr };
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

function ofrep(url: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/ofrep/v1/evaluate/flags${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8', 'x-spofless-environment': 'prod', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('flags API', () => {
  test('create, read (ETag), replace with If-Match, toggle, roll out, delete; every change in the audit log', async (t) => {
    const { url } = await startServer(t);
    const created = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG, { 'x-spofless-actor': 'alice' });
    assert.equal(created.status, 201);
    assert.equal(created.body.created, true);
    const rev1 = created.body.revision as number;

    const got = await fetch(`${url}/v1/flags/prod/flags/new-checkout`);
    assert.equal(got.headers.get('etag'), `"${rev1}"`);
    assert.deepEqual(((await got.json()) as { flag: unknown }).flag, FLAG);

    const replaced = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, description: 'the new checkout' }, { 'if-match': `"${rev1}"`, 'x-spofless-actor': 'bob' });
    assert.equal(replaced.status, 200);
    const rev2 = replaced.body.revision as number;
    assert.ok(rev2 > rev1);

    const stale = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG, { 'if-match': `"${rev1}"` });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error?.code, 'SPOF_ERR_FLAG_CONFLICT');
    assert.equal(stale.body.error?.currentRevision, rev2);

    const createOnly = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG, { 'if-none-match': '*' });
    assert.equal(createOnly.status, 409);

    const off = await call(url, 'POST', '/v1/flags/prod/flags/new-checkout/off', undefined, { 'x-spofless-actor': 'carol' });
    assert.equal(off.status, 200);
    assert.equal((off.body.flag as { enabled: boolean }).enabled, false);
    const rollout = await call(url, 'POST', '/v1/flags/prod/flags/new-checkout/rollout', { percent: 25 }, { 'x-spofless-actor': 'dave' });
    assert.deepEqual((rollout.body.flag as { rollout: unknown }).rollout, { splits: [{ variant: 'on', weight: 25 }, { variant: 'off', weight: 75 }] });
    const del = await call(url, 'DELETE', '/v1/flags/prod/flags/new-checkout', undefined, { 'x-spofless-actor': 'erin' });
    assert.equal(del.status, 200);
    assert.equal((await call(url, 'GET', '/v1/flags/prod/flags/new-checkout')).status, 404);

    const history = await call(url, 'GET', '/v1/flags/prod/history?key=new-checkout');
    const records = history.body.records as Array<{ actor: string; action: string; before: { enabled?: boolean } | null; after: { enabled?: boolean } | null; revision: number; at: string }>;
    assert.deepEqual(records.map((r) => [r.actor, r.action]), [['erin', 'delete'], ['dave', 'rollout'], ['carol', 'disable'], ['bob', 'update'], ['alice', 'create']]);
    assert.equal(records[2]!.before?.enabled, true);
    assert.equal(records[2]!.after?.enabled, false);
    assert.equal(records[4]!.before, null);
    assert.equal(records[0]!.after, null);
    assert.equal(records[4]!.revision, rev1);
    assert.ok(!Number.isNaN(Date.parse(records[0]!.at)));
  });

  test('validation: clear 400s naming the field, nothing written', async (t) => {
    const { url } = await startServer(t);
    const cases: Array<[unknown, string, RegExp]> = [
      [{ ...FLAG, rules: [{ conditions: [], serve: { variant: 'maybe' } }] }, 'rules[0].serve.variant', /variant "maybe"/],
      [{ ...FLAG, rules: [{ conditions: [{ segment: 'beta' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].segment', /segment "beta", which does not exist/],
      [{ ...FLAG, rollout: { splits: [{ variant: 'on', weight: 101 }] } }, 'rollout.splits[0].weight', /0 to 100/],
      [{ ...FLAG, rollout: { splits: [{ variant: 'on', weight: 40 }, { variant: 'off', weight: 40 }] } }, 'rollout.splits', /sum to 100; they sum to 80/],
      [{ ...FLAG, key: 'other' }, 'key', /the path names flag "new-checkout"/],
      [{ ...FLAG, rules: [{ conditions: [{ attribute: 'a', op: 'matches', value: '(x+x+)+y' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /nested quantifier/],
    ];
    for (const [body, field, message] of cases) {
      const r = await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, 'SPOF_ERR_FLAG_INVALID');
      assert.equal(r.body.error?.field, field);
      assert.match(r.body.error.message, message);
    }
    // Nothing was written above: the flag does not exist.
    assert.equal((await call(url, 'GET', '/v1/flags/prod/flags/new-checkout')).status, 404);
    await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
    const pct = await call(url, 'POST', '/v1/flags/prod/flags/new-checkout/rollout', { percent: 150 });
    assert.equal(pct.status, 400);
    assert.match(pct.body.error!.message, /percent: must be a percentage from 0 to 100/);
    assert.equal((await call(url, 'PUT', '/v1/flags/bad%20env/flags/x', FLAG)).status, 400);
    assert.equal((await call(url, 'GET', '/v1/flags/prod/history?limit=0')).status, 400);
    assert.equal((await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG, { 'if-match': 'yesterday' })).status, 400);
    const hist = await call(url, 'GET', '/v1/flags/prod/history');
    assert.equal((hist.body.records as unknown[]).length, 1);
  });

  test('concurrent edits cannot lose one another: 20 toggles without If-Match all land; racing If-Match writers get one 200 and 409s', async (t) => {
    const { url } = await startServer(t);
    await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
    const toggles = await Promise.all(Array.from({ length: 20 }, (_, i) => call(url, 'POST', `/v1/flags/prod/flags/new-checkout/${i % 2 === 0 ? 'off' : 'on'}`, undefined, { 'x-spofless-actor': `w${i}` })));
    assert.ok(toggles.every((r) => r.status === 200), JSON.stringify(toggles.map((r) => r.status)));
    const hist = await call(url, 'GET', '/v1/flags/prod/history?key=new-checkout&limit=100');
    const records = hist.body.records as Array<{ revision: number; before: { enabled: boolean }; after: { enabled: boolean } }>;
    assert.equal(records.length, 21);
    // Each record's "before" is exactly the previous record's "after": no change was lost or invented.
    const chronological = [...records].reverse();
    for (let i = 1; i < chronological.length; i++) assert.deepEqual(chronological[i]!.before, chronological[i - 1]!.after);

    const { revision } = (await call(url, 'GET', '/v1/flags/prod/flags/new-checkout')).body as { revision: number };
    const racers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, description: `writer ${i}` }, { 'if-match': `"${revision}"` })),
    );
    assert.deepEqual(racers.map((r) => r.status).sort(), [200, 409, 409, 409, 409, 409, 409, 409]);
  });

  test('segments: referenced by rules, refused for deletion while in use', async (t) => {
    const { url } = await startServer(t);
    assert.equal((await call(url, 'PUT', '/v1/flags/prod/segments/staff', { key: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }] })).status, 201);
    const flag = { ...FLAG, rules: [{ conditions: [{ segment: 'staff' }], serve: { variant: 'on' } }] };
    assert.equal((await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', flag)).status, 201);
    const inUse = await call(url, 'DELETE', '/v1/flags/prod/segments/staff');
    assert.equal(inUse.status, 409);
    assert.equal(inUse.body.error?.code, 'SPOF_ERR_FLAG_SEGMENT_IN_USE');
    assert.deepEqual(inUse.body.error?.flags, ['new-checkout']);
    const r = await ofrep(url, '/new-checkout', { context: { targetingKey: 'u', email: 'x@acme.com' } });
    assert.deepEqual(await r.json(), { key: 'new-checkout', value: true, reason: 'TARGETING_MATCH', variant: 'on' });
  });

  test('flagd import and export; unsupported constructs are a 400 naming them', async (t) => {
    const { url } = await startServer(t);
    const doc = JSON.parse(readFileSync(new URL('../bench/flags/five-rules.flagd.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    const imported = await call(url, 'POST', '/v1/flags/prod/import', doc, { 'x-spofless-actor': 'migrator' });
    assert.equal(imported.status, 200, JSON.stringify(imported.body));
    assert.deepEqual(imported.body.created, ['new-checkout']);
    const again = await call(url, 'POST', '/v1/flags/prod/import', doc);
    assert.deepEqual(again.body.unchanged, ['new-checkout']);
    const exported = await call(url, 'GET', '/v1/flags/prod/export');
    const flags = exported.body.flags as Record<string, { targeting: { if: unknown[] } }>;
    assert.equal(flags['new-checkout']!.targeting.if.length, 11);
    const refused = await call(url, 'POST', '/v1/flags/prod/import', { flags: { x: { state: 'ENABLED', variants: { a: 1, b: 2 }, defaultVariant: 'a', targeting: { if: [{ '%': [{ var: 'n' }, 2] }, 'a', 'b'] } } } });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error?.code, 'SPOF_ERR_FLAG_UNSUPPORTED');
    assert.match(refused.body.error.message, /flags\.x\.targeting\.if\[0\]: operator "%" is not supported/);
    await call(url, 'PUT', '/v1/flags/prod/flags/extra', { ...FLAG, key: 'extra' });
    const pruned = await call(url, 'POST', '/v1/flags/prod/import?prune=true', doc);
    assert.deepEqual(pruned.body.deleted, ['extra']);
  });
});

describe('OFREP endpoints', () => {
  test('single evaluation: success, not found, invalid context, parse error shapes and statuses', async (t) => {
    const { url, store } = await startServer(t);
    await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', { ...FLAG, metadata: { owner: 'payments' } });
    let r = await ofrep(url, '/new-checkout', { context: { targetingKey: 'u1', email: 'a@acme.com' } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(await r.json(), { key: 'new-checkout', value: true, reason: 'TARGETING_MATCH', variant: 'on', metadata: { owner: 'payments' } });
    r = await ofrep(url, '/new-checkout', {});
    assert.deepEqual(await r.json(), { key: 'new-checkout', value: false, reason: 'DEFAULT', variant: 'off', metadata: { owner: 'payments' } });
    r = await ofrep(url, '/missing', { context: {} });
    assert.equal(r.status, 404);
    assert.deepEqual(await r.json(), { key: 'missing', errorCode: 'FLAG_NOT_FOUND', errorDetails: 'flag "missing" not found in environment "prod"' });
    r = await ofrep(url, '/new-checkout', { context: 'me' });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errorCode: string }).errorCode, 'INVALID_CONTEXT');
    r = await ofrep(url, '/new-checkout', '{"context": ');
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errorCode: string }).errorCode, 'INVALID_CONTEXT');
    // A value that does not parse (written around the API): PARSE_ERROR, 400.
    await store.put('/spofless/flags/prod/flags/broken', '{"key": "broken", "type": "boolean"');
    await new Promise((res) => setTimeout(res, 100));
    r = await ofrep(url, '/broken', { context: {} });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errorCode: string }).errorCode, 'PARSE_ERROR');
    // Another environment does not see these flags; the default environment is "default".
    r = await ofrep(url, '/new-checkout', {}, { 'x-spofless-environment': 'staging' });
    assert.equal(r.status, 404);
  });

  test('bulk evaluation: every flag, ETag, 304 when nothing changed, a new ETag after a change', async (t) => {
    const { url } = await startServer(t);
    await call(url, 'PUT', '/v1/flags/prod/flags/new-checkout', FLAG);
    await call(url, 'PUT', '/v1/flags/prod/flags/limit', { key: 'limit', type: 'number', enabled: false, variants: { low: 1, high: 9 }, defaultVariant: 'high', offVariant: 'low' });
    const ctx = { context: { targetingKey: 'u1', email: 'a@acme.com' } };
    const r = await ofrep(url, '', ctx);
    assert.equal(r.status, 200);
    const etag = r.headers.get('etag');
    assert.ok(etag);
    assert.deepEqual(await r.json(), {
      flags: [
        { key: 'limit', value: 1, reason: 'DISABLED', variant: 'low' },
        { key: 'new-checkout', value: true, reason: 'TARGETING_MATCH', variant: 'on' },
      ],
    });
    const cached = await ofrep(url, '', ctx, { 'if-none-match': etag });
    assert.equal(cached.status, 304);
    const otherCtx = await ofrep(url, '', { context: { targetingKey: 'u2' } }, { 'if-none-match': etag });
    assert.equal(otherCtx.status, 200);
    await call(url, 'POST', '/v1/flags/prod/flags/new-checkout/off');
    const changed = await ofrep(url, '', ctx, { 'if-none-match': etag });
    assert.equal(changed.status, 200);
    assert.notEqual(changed.headers.get('etag'), etag);
    const conf = await (await fetch(`${url}/ofrep/v1/configuration`)).json();
    assert.equal((conf as { name: string }).name, 'spofless');
  });
});

describe('spofless flags (CLI)', () => {
  test('set, ls, get, on/off, rollout, history, export/import, and exit codes', async (t) => {
    const { url } = await startServer(t);
    const dir = mkdtempSync(join(tmpdir(), 'spofless-flags-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'flag.json');
    const { key: _key, ...noKey } = FLAG;
    writeFileSync(file, JSON.stringify(noKey));
    let r = await cli(url, 'set', 'new-checkout', file, '--env', 'prod');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created flag new-checkout in prod at revision \d+/);
    r = await cli(url, 'ls', '--env', 'prod');
    assert.match(r.stdout, /^FLAG\s+TYPE\s+STATE/);
    assert.match(r.stdout, /new-checkout\s+boolean\s+on\s+off\s+1\s+-/);
    r = await cli(url, 'rollout', 'new-checkout', '10', '--env', 'prod', '--actor', 'alice');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /on 10% \/ off 90%/);
    r = await cli(url, 'off', 'new-checkout', '--env', 'prod');
    assert.match(r.stdout, /serving off everywhere/);
    r = await cli(url, 'get', 'new-checkout', '--env', 'prod');
    assert.equal((JSON.parse(r.stdout) as { enabled: boolean }).enabled, false);
    r = await cli(url, 'history', 'new-checkout', '--env', 'prod');
    assert.match(r.stdout, /cli-user\s+disable/);
    assert.match(r.stdout, /alice\s+rollout\s+flag new-checkout\s+\d+\s+rollout - -> on 10% \/ off 90%/);
    const out = join(dir, 'export.json');
    r = await cli(url, 'export', '--env', 'prod', '--output', out);
    assert.equal(r.code, 0, r.stderr);
    r = await cli(url, 'import', out, '--env', 'staging', '--json');
    assert.deepEqual((JSON.parse(r.stdout) as { created: string[] }).created, ['new-checkout']);
    // failures: exit 1, one line
    r = await cli(url, 'rollout', 'missing', '10', '--env', 'prod');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^spofless: flag "missing" not found in environment "prod" \(SPOF_ERR_FLAG_NOT_FOUND\)\n$/);
    r = await cli(url, 'get', 'new-checkout', '--env', 'prod', '--revision', '1');
    assert.equal(r.code, 2);
    r = await cli(url, 'on', 'new-checkout', '--env', 'prod', '--revision', '1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SPOF_ERR_FLAG_CONFLICT/);
    const closed = await closedPort();
    r = await cli(`http://127.0.0.1:${closed}`, 'ls');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot reach the control plane at http://127\\.0\\.0\\.1:${closed}: ECONNREFUSED`));
    // usage: exit 2
    for (const args of [['rollout', 'x'], ['rollout', 'x', '150'], ['nope'], ['ls', '--env', 'a b'], ['ls', '--variant', 'x'], []]) {
      r = await cli(url, ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2);
    }
  });
});
