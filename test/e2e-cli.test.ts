/**
 * The `spofless` command against a live control plane (itself started with `spofless up`): each
 * command's table and `--json` output, and its failures: exit code, one line on stderr, no stack.
 * Most commands run in-process through `run()` (the same code the binary runs); the exit codes, the
 * environment variable, `watch` until Ctrl-C and `up` until SIGTERM run the real executable.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ControlPlaneClient } from '../src/client/index.js';
import { run } from '../src/cli/run.js';
import { cli, cliChild, controlPlane, tempDir, until } from './helpers/procs.js';

/** Runs the CLI in-process; returns exit code and output. */
async function spofless(url: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run([...args, '--url', url], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: {},
  });
  return { code, stdout, stderr };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const oneLine = (s: string): boolean => s.trim().split('\n').length === 1 && !/\n\s+at /.test(s);

test('every command against a live control plane, as tables and as --json', { timeout: 60_000 }, async (t) => {
  const cp = await controlPlane(t, { dataDir: tempDir(t, 'e2e-cli') });
  const url = cp.url;
  const client = new ControlPlaneClient({ url });
  t.after(() => client.close());
  await client.register({ service: 'web', id: 'web-1', address: '127.0.0.1', port: 8001, zone: 'a', version: '2.0.0', tags: ['blue'] }, { ttl: 30 });
  await client.register({ service: 'web', id: 'web-2', address: '127.0.0.1', port: 8002, zone: 'b', version: '2.0.0' }, { ttl: 30 });
  await client.register({ service: 'db', id: 'db-1', address: '127.0.0.1', port: 5432 }, { ttl: 30 });
  await client.drainInstance('web', 'web-2');

  // services
  let r = await spofless(url, 'services');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^SERVICE\s+INSTANCES\s+PASSING\n/);
  assert.match(r.stdout, /\nweb\s+2\s+1\n/);
  assert.match(r.stdout, /\ndb\s+1\s+1\n/);
  r = await spofless(url, 'services', '--json');
  const services = (JSON.parse(r.stdout) as { services: Array<{ name: string; instances: number }> }).services;
  assert.deepEqual(services.map((s) => [s.name, s.instances]).sort(), [['db', 1], ['web', 2]]);

  // instances, with filters
  r = await spofless(url, 'instances', 'web');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^ID\s+ADDRESS\s+ZONE\s+VERSION\s+STATUS\s+AGE\s+TAGS$/);
  assert.match(r.stdout, /web-1\s+127\.0\.0\.1:8001\s+a\s+2\.0\.0\s+passing\s+.+\s+blue/);
  assert.match(r.stdout, /web-2\s+127\.0\.0\.1:8002\s+b\s+2\.0\.0\s+draining/);
  // Columns line up: every row's ADDRESS starts where the header's does.
  const col = lines[0]!.indexOf('ADDRESS');
  for (const l of lines.slice(1)) assert.equal(l.indexOf('127.0.0.1'), col);
  r = await spofless(url, 'instances', 'web', '--status', 'passing', '--json');
  assert.deepEqual((JSON.parse(r.stdout) as { instances: Array<{ id: string }> }).instances.map((i) => i.id), ['web-1']);
  r = await spofless(url, 'instances', 'web', '--status', 'passing,draining', '--json');
  assert.deepEqual((JSON.parse(r.stdout) as { instances: Array<{ id: string }> }).instances.map((i) => i.id).sort(), ['web-1', 'web-2']);
  r = await spofless(url, 'instances', 'web', '--zone', 'b', '--json');
  assert.deepEqual((JSON.parse(r.stdout) as { instances: Array<{ id: string }> }).instances.map((i) => i.id), ['web-2']);
  r = await spofless(url, 'instances', 'nothing');
  assert.equal(r.stdout, 'no instances of nothing\n');

  // kv put / get / ls / del
  r = await spofless(url, 'kv', 'put', '/cli/a', 'hello world');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^OK revision \d+\n$/);
  r = await spofless(url, 'kv', 'put', '/cli/b', 'two', '--json');
  const putRev = (JSON.parse(r.stdout) as { revision: number }).revision;
  assert.ok(putRev > 0);
  r = await spofless(url, 'kv', 'get', '/cli/a');
  assert.equal(r.stdout, 'hello world\n');
  r = await spofless(url, 'kv', 'get', '/cli/b', '--json');
  assert.deepEqual((({ key, value, modRevision }) => ({ key, value, modRevision }))(JSON.parse(r.stdout) as { key: string; value: string; modRevision: number }), { key: '/cli/b', value: 'two', modRevision: putRev });
  r = await spofless(url, 'kv', 'ls', '/cli/');
  assert.match(r.stdout, /^KEY\s+REV\s+VER\s+LEASE\s+VALUE\n\/cli\/a\s+\d+\s+1\s+-\s+hello world\n\/cli\/b\s+\d+\s+1\s+-\s+two\n$/);
  r = await spofless(url, 'kv', 'ls', '/cli/', '--json', '--limit', '1');
  const page = JSON.parse(r.stdout) as { kvs: Array<{ key: string }>; more: boolean };
  assert.deepEqual([page.kvs.map((k) => k.key), page.more], [['/cli/a'], true]);
  r = await spofless(url, 'kv', 'del', '/cli/a');
  assert.match(r.stdout, /^deleted 1 key \(revision \d+\)\n$/);
  r = await spofless(url, 'kv', 'del', '/cli/', '--prefix', '--json');
  assert.equal((JSON.parse(r.stdout) as { deleted: number }).deleted, 1);

  // failures: one line, exit ≠ 0
  r = await spofless(url, 'kv', 'get', '/cli/a');
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'spofless: key "/cli/a" not found\n');
  r = await spofless(url, 'kv', 'put', '', 'x');
  assert.equal(r.code, 1);
  assert.ok(oneLine(r.stderr) && r.stderr.startsWith('spofless: '), r.stderr);
  r = await spofless(url, 'instances', 'web', '--status', 'sleepy');
  assert.equal(r.code, 2);
  assert.ok(oneLine(r.stderr), r.stderr);
});

test('the executable: exit codes, one-line errors, SPOFLESS_URL, watch until SIGINT, up until SIGTERM', { timeout: 60_000 }, async (t) => {
  const dead = await freePort();
  const [unreachable, unknownCmd, unknownFlag, help] = await Promise.all([
    cli(['services', '--url', `http://127.0.0.1:${dead}`]),
    cli(['frobnicate']),
    cli(['kv', 'get', 'x', '--frob']),
    cli(['--help']),
  ]);
  assert.equal(unreachable.code, 1);
  assert.equal(unreachable.stderr, `spofless: cannot reach the control plane at http://127.0.0.1:${dead}: connection refused`);
  assert.equal(unknownCmd.code, 2);
  assert.equal(unknownCmd.stderr, "spofless: unknown command 'frobnicate' (see 'spofless --help')");
  assert.equal(unknownFlag.code, 2);
  assert.equal(unknownFlag.stderr, "spofless: unknown option '--frob' (see 'spofless --help')");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: spofless <command>/);

  const cp = await controlPlane(t, { dataDir: tempDir(t, 'e2e-cli-bin') });
  // SPOFLESS_URL stands in for --url.
  const put = await cli(['kv', 'put', '/w/x', '1'], { SPOFLESS_URL: cp.url });
  assert.equal(put.code, 0, put.stderr);

  // watch prints each change (as JSON lines here) until Ctrl-C, then exits 0.
  const watcher = cliChild(t, ['watch', '/w/', '--json', '--revision', '1'], { SPOFLESS_URL: cp.url });
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  await watcher.line(/"key":"\/w\/x"/);
  await client.put('/w/y', '2');
  await client.delete('/w/x');
  await until(() => watcher.stdout.length >= 3, 5_000, 'three watch lines');
  const events = watcher.stdout.map((l) => JSON.parse(l) as { type: string; revision: number; kv: { key: string } });
  assert.deepEqual(events.map((e) => [e.type, e.kv.key]), [['put', '/w/x'], ['put', '/w/y'], ['delete', '/w/x']]);
  assert.ok(events[0]!.revision < events[1]!.revision && events[1]!.revision < events[2]!.revision);
  watcher.kill('SIGINT');
  assert.equal((await watcher.exited).code, 0);

  // up stops cleanly on SIGTERM.
  cp.child.kill('SIGTERM');
  const exit = await cp.child.exited;
  assert.equal(exit.code, 0, cp.child.stderr.join('\n'));
  assert.ok(cp.child.stderr.some((l) => l.includes('control plane stopped')));
});
