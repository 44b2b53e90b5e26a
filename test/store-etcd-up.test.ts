/**
 * `spofless up --store etcd://...` as a user runs it: the real CLI as a child process on a real etcd
 * (one member), serving the HTTP API from etcd; data written through one control plane is there for
 * the next one; a control plane given two endpoints, one of them dead, still starts and serves; bad
 * store URLs are refused with exit 2 and one line.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import { cli, cliChild } from './helpers/procs.js';
import { startEtcd, type EtcdCluster } from './support/etcd.js';

let etcd: EtcdCluster | undefined;
before(async () => {
  etcd = await startEtcd({ members: 1 });
});
after(async () => {
  await etcd?.stop();
});

async function http(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const pool = new Pool(url);
  try {
    const res = await pool.request({ method, path, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  } finally {
    await pool.close();
  }
}

test('spofless up --store etcd://: the API serves from etcd, and a second control plane sees the same data', { timeout: 60_000 }, async (t) => {
  const hostPort = etcd!.endpoints[0]!.replace('http://', '');
  const store = `etcd://${hostPort}/e2e-${process.pid}`;
  const first = cliChild(t, ['up', '--port', '0', '--store', store, '--json']);
  const m = await first.line(/^\{.*"url".*\}$/, 30_000);
  const up = JSON.parse(m[0]) as { url: string; store: string };
  assert.equal(up.store, store);
  const put = await http(up.url, 'PUT', '/v1/kv', { key: '/e2e/a', value: 'from etcd' });
  assert.equal(put.status, 200, JSON.stringify(put.json));
  first.kill('SIGTERM');
  assert.equal((await first.exited).code, 0);

  // A dead endpoint first in the list: the control plane fails over to the live one.
  const second = cliChild(t, ['up', '--port', '0', '--store', `etcd://127.0.0.1:1,${hostPort}/e2e-${process.pid}`]);
  const url = (await second.line(/^spofless listening on (http:\/\/\S+)$/, 30_000))[1]!;
  const got = await http(url, 'GET', `/v1/kv?key=${encodeURIComponent('/e2e/a')}`);
  assert.equal(got.status, 200, JSON.stringify(got.json));
  assert.equal((got.json as { kv?: { value?: string } }).kv?.value, 'from etcd');
});

test('spofless up refuses a bad --store with exit 2 and one line', { timeout: 60_000 }, async () => {
  for (const [store, pattern] of [
    ['etcd://', /names no etcd endpoint/],
    ['etcd://127.0.0.1', /port is required/],
    ['etcd://127.0.0.1:2379,127.0.0.1:99999', /endpoint 2.*port must be an integer from 1 to 65535/],
    ['etcd://bad host:2379', /not a host name/],
    ['redis://127.0.0.1:6379', /unknown scheme/],
  ] as const) {
    const r = await cli(['up', '--port', '0', '--store', store]);
    assert.equal(r.code, 2, `${store}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const both = await cli(['up', '--port', '0', '--store', 'etcd://127.0.0.1:2379', '--data', '/tmp/x']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /not both/);
});

test('spofless up --store etcd:// with no etcd there: exit 1, one line naming the endpoint', { timeout: 60_000 }, async () => {
  const r = await cli(['up', '--port', '0', '--store', 'etcd://127.0.0.1:1']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot reach etcd.*127\.0\.0\.1:1/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

