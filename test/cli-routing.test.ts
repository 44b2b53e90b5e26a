// `spofless route ...` and `spofless deploy ...` against a real control plane (real HTTP, real SQLite),
// through the CLI's entry function `run`, as `spofless` calls it.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { run } from '../src/cli/run.js';
import { call, startServer } from './server-helpers.js';

async function spofless(url: string | undefined, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: url === undefined ? {} : { SPOFLESS_URL: url },
  });
  return { code, stdout, stderr };
}

test('route and deploy usage errors exit 2 with one line; nothing is sent', async () => {
  const cases: [string[], string][] = [
    [['route'], 'route needs a subcommand: ls, get, set, rm'],
    [['deploy', 'go'], "unknown deploy subcommand 'go'"],
    [['route', 'get'], 'route get needs <name>'],
    [['route', 'get', 'a', 'b'], "route get: unexpected argument 'b'"],
    [['route', 'get', 'Bad Name'], "<name> must be 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit; got 'Bad Name'"],
    [['route', 'set', 'web'], "route set needs exactly one of --file F or --json '{...}'"],
    [['route', 'ls', '--force'], "option '--force' does not apply to 'route ls'"],
    [['route', 'rm', 'web', '--if-revision', 'x'], "--if-revision must be a revision (0: only create); got 'x'"],
    [['deploy', 'switch', 'web'], 'deploy switch needs <route> <color>'],
    [['deploy', 'canary', 'web', 'v2', '150'], "<weight> must be a whole percentage from 0 to 100; got '150'"],
    [['deploy', 'canary', 'web', 'v2', '-5'], "unknown option '-5'"],
    [['deploy', 'canary', 'web', 'v2', '10', '--sticky-header', 'a', '--sticky-cookie', 'b'], 'give at most one of --sticky-header and --sticky-cookie'],
    [['deploy', 'promote', 'web', '--bogus'], "unknown option '--bogus'"],
    [['route', 'get', 'set', '--json', '--force'], "option '--force' does not apply to 'route get'"],
    [['--url', 'http://127.0.0.1:9', 'route', 'set', 'web', '--json'], "option '--json' needs a value"],
  ];
  for (const [args, message] of cases) {
    // An unreachable URL: a usage error must come before any network call.
    const r = await spofless('http://127.0.0.1:9', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, `spofless: ${message} (see 'spofless --help')\n`);
    assert.equal(r.stdout, '');
  }
  const help = await spofless(undefined, '--help');
  assert.match(help.stdout, /deploy canary <route> <version> <weight>/);
});

test('route set checks the route locally and names the field; exit 1, nothing written', async (t) => {
  const { url, store } = await startServer(t);
  const bad = await spofless(url, 'route', 'set', 'web', '--json', '{"service":"web","match":{"pathPrefix":"/"},"retry":{"attempts":7,"on":[]}}');
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'spofless: route.retry.attempts must be an integer from 1 to 5; got 7\n');
  const notJson = await spofless(url, 'route', 'set', 'web', '--json', '{nope');
  assert.equal(notJson.code, 1);
  assert.match(notJson.stderr, /^spofless: the route is not valid JSON: /);
  const missing = await spofless(url, 'route', 'set', 'web', '--file', '/nonexistent/route.json');
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'spofless: cannot read /nonexistent/route.json: ENOENT\n');
  const otherName = await spofless(url, 'route', 'set', 'web', '--json', '{"name":"api","service":"web","match":{"pathPrefix":"/"}}');
  assert.equal(otherName.code, 1);
  assert.match(otherName.stderr, /the route's "name" is "api", not "web"/);
  assert.equal((await store.range('/spofless/routes/')).kvs.length, 0);
});

test('route set/ls/get/rm and deploy switch/rollback/canary/promote/status, end to end', async (t) => {
  const { url, dir } = await startServer(t);
  const file = join(dir, 'web.json');
  writeFileSync(file, JSON.stringify({ service: 'web', match: { host: 'shop.example', pathPrefix: '/' }, traffic: { active: 'blue' } }));
  const set = await spofless(url, 'route', 'set', 'web', '--file', file, '--if-revision', '0');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /^route web created at revision \d+\n$/);
  const again = await spofless(url, 'route', 'set', 'web', '--file', file, '--if-revision', '0');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^spofless: route "web" is at revision \d+, not 0 as expected/);

  const ls = await spofless(url, 'route', 'ls');
  assert.match(ls.stdout, /^NAME\s+HOST\s+PATH\s+SERVICE\s+TRAFFIC\s+REV\nweb\s+shop\.example\s+\/\s+web\s+blue\s+\d+\n$/);
  const get = await spofless(url, 'route', 'get', 'web');
  assert.deepEqual(JSON.parse(get.stdout), { name: 'web', service: 'web', match: { host: 'shop.example', pathPrefix: '/' }, traffic: { active: 'blue' } });

  for (const [id, color] of [['b1', 'blue'], ['g1', 'green'], ['c1', 'v3']]) {
    const r = await call(url, 'PUT', `/v1/catalog/services/web/instances/${id}`, { address: '127.0.0.1', port: 9000, color, ttl: 60 });
    assert.ok(r.status < 300);
  }
  const refused = await spofless(url, 'deploy', 'switch', 'web', 'purple');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^spofless: route "web": no passing instance of "purple" in service "web" \(0 registered\)/);

  const sw = await spofless(url, 'deploy', 'switch', 'web', 'green');
  assert.equal(sw.code, 0, sw.stderr);
  assert.match(sw.stdout, /^route web: now green \(previous blue\) \(revision \d+\)\n$/);
  const rb = await spofless(url, 'deploy', 'rollback', 'web');
  assert.match(rb.stdout, /^route web: now blue \(previous green\)/);

  const canary = await spofless(url, 'deploy', 'canary', 'web', 'v3', '10%', '--sticky-cookie', 'sid');
  assert.equal(canary.code, 0, canary.stderr);
  assert.match(canary.stdout, /now blue \+ canary v3 10% \(previous green\)/);
  const status = await spofless(url, 'deploy', 'status', 'web');
  assert.equal(status.code, 0);
  assert.match(status.stdout, /^route web → service web: blue \+ canary v3 10% \(previous green\) \(revision \d+\)\n/);
  assert.match(status.stdout, /blue\s+active\s+90%\s+1\s+1\n/);
  assert.match(status.stdout, /v3\s+canary\s+10%\s+1\s+1\n/);
  assert.match(status.stdout, /green\s+previous\s+0%\s+1\s+1\n/);
  const statusJson = await spofless(url, 'deploy', 'status', 'web', '--json');
  assert.equal((JSON.parse(statusJson.stdout) as { versions: unknown[] }).versions.length, 3);

  const promote = await spofless(url, 'deploy', 'promote', 'web');
  assert.match(promote.stdout, /now v3 \(previous blue\)/);
  const noCanary = await spofless(url, 'deploy', 'promote', 'web');
  assert.equal(noCanary.code, 1);
  assert.match(noCanary.stderr, /no canary to promote/);

  const rm = await spofless(url, 'route', 'rm', 'web');
  assert.equal(rm.code, 0);
  assert.match(rm.stdout, /^route web deleted at revision \d+\n$/);
  const gone = await spofless(url, 'route', 'get', 'web');
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^spofless: route "web" not found at revision \d+\n$/);
  assert.equal((await spofless(url, 'route', 'ls')).stdout, 'no routes\n');
});

test('an unreachable control plane is one line, exit 1', async () => {
  // A port that was just free: nothing listens there.
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const r = await spofless(`http://127.0.0.1:${port}`, 'deploy', 'switch', 'web', 'green');
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `spofless: cannot reach the control plane at http://127.0.0.1:${port}: connection refused\n`);
});
