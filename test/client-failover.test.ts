/**
 * SDK fail-over between control-plane replicas (two in-process control planes over one store). Replica
 * A sits behind a proxy that can be frozen (no answer at all: what a SIGSTOP'd process looks like to a
 * client) or closed (connection refused). The client lists A first, then B.
 *
 * - calls move to B when A refuses or does not answer within the call's deadline;
 * - a watch whose stream goes silent moves to B and resumes from the last revision it delivered:
 *   every write seen exactly once, in order;
 * - a registration's lease stays alive through B while A is frozen for several TTLs;
 * - a discovery keeps its list and follows changes made while A is frozen.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ControlPlaneClient, type WatchMessage } from '../src/client/index.js';
import { run } from '../src/cli/run.js';
import { ControlPlaneUnreachableError } from '../src/errors/index.js';
import { constantBackoff } from '../src/resilience/index.js';
import { startControlPlane, type ControlPlane } from '../src/server/index.js';
import { SqliteStore } from '../src/store/index.js';
import { FreezableProxy } from './helpers/freezable-proxy.js';

interface Setup {
  a: ControlPlane;
  b: ControlPlane;
  proxy: FreezableProxy;
  urls: string[];
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-failover-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db'), compaction: false });
  const opts = { port: 0, logger: false as const, store, election: { ttl: 2 }, healthChecks: false, watch: { pingIntervalMs: 200 } };
  const a = await startControlPlane(opts);
  const b = await startControlPlane(opts);
  const proxy = await FreezableProxy.start(a.url);
  t.after(async () => {
    proxy.thaw();
    await proxy.close().catch(() => undefined);
    await a.close();
    await b.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { a, b, proxy, urls: [proxy.url, b.url] };
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('calls move to the next control plane when one refuses or does not answer', async (t) => {
  const { proxy, urls, b } = await setup(t);
  const client = new ControlPlaneClient({ url: urls, timeout: 500 });
  t.after(() => client.close());
  await client.put('/f/1', 'a');
  assert.equal(client.url, proxy.url);

  proxy.freeze();
  const started = Date.now();
  assert.equal((await client.get('/f/1'))?.value, 'a', 'a read is safe to repeat: it moves on after the deadline');
  assert.ok(Date.now() - started < 1_500);
  assert.equal(client.url, b.url);
  // Sticks to B: the next call does not wait on A again.
  const t2 = Date.now();
  await client.put('/f/2', 'b');
  assert.ok(Date.now() - t2 < 400);

  // A write that may have reached a silent server is not sent twice: the caller decides.
  const other = new ControlPlaneClient({ url: urls, timeout: 300 });
  t.after(() => other.close());
  await assert.rejects(other.put('/f/3', 'x'), ControlPlaneUnreachableError);
  await other.put('/f/3', 'x'); // the retry goes to B
  assert.equal(other.url, b.url);

  // Refused: moves on at once, for any call.
  proxy.thaw();
  await proxy.close();
  await new Promise((r) => setTimeout(r, 100)); // the clients' pooled connections to A see the close
  const third = new ControlPlaneClient({ url: urls, timeout: 5_000 });
  t.after(() => third.close());
  const t3 = Date.now();
  await third.put('/f/4', 'y');
  assert.ok(Date.now() - t3 < 1_000);
  assert.equal(third.url, b.url);
});

test('a watch whose control plane goes silent resumes on another from the last revision it delivered', async (t) => {
  const { proxy, urls, b } = await setup(t);
  const writer = new ControlPlaneClient({ url: b.url });
  const client = new ControlPlaneClient({ url: urls, timeout: 1_000 });
  t.after(() => {
    writer.close();
    client.close();
  });
  const start = (await writer.range('/w/')).revision + 1;
  const seen: number[] = [];
  const urlsSeen: string[] = [];
  const watch = client.watch('/w/', { startRevision: start, heartbeatTimeout: 800, backoff: constantBackoff(50) });
  const following = (async () => {
    for await (const m of watch as AsyncIterable<WatchMessage>) {
      if (m.type === 'connected') urlsSeen.push(m.url);
      if (m.type === 'events') for (const e of m.events) seen.push(e.kv.modRevision);
    }
  })();
  const written: number[] = [];
  let stop = false;
  const writing = (async () => {
    for (let i = 0; !stop; i++) {
      written.push((await writer.put(`/w/${i}`, String(i))).revision);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await until(() => seen.length >= 20, 'the first events');
  proxy.freeze();
  const frozenAt = written.length;
  await until(() => urlsSeen.includes(b.url), 'the watch to move to B', 8_000);
  await until(() => written.length >= frozenAt + 50, '50 more writes');
  stop = true;
  await writing;
  await until(() => seen.length >= written.length, `the watch to catch up (${seen.length}/${written.length})`);
  watch.close();
  await following;
  assert.deepEqual(seen, written, 'every write exactly once, in order, across the move');
});

test('a registration stays alive through the other control plane while one is frozen for several TTLs', async (t) => {
  const { proxy, urls, b } = await setup(t);
  const client = new ControlPlaneClient({ url: urls, timeout: 2_000 });
  const observer = new ControlPlaneClient({ url: b.url });
  t.after(() => {
    client.close();
    observer.close();
  });
  const reg = await client.register({ service: 'svc', id: 'r1', address: '127.0.0.1', port: 9 }, { ttl: 2 });
  const events: string[] = [];
  let frozenAt = Date.now();
  reg.onEvent((e) => events.push(e.type === 'renew-failed' ? `renew-failed(${(e.error as Error).message})@${Date.now() - frozenAt}` : `${e.type}@${Date.now() - frozenAt}`));
  await new Promise((r) => setTimeout(r, 1_000)); // one renewal over the stream to A
  proxy.freeze();
  frozenAt = Date.now();
  const lease = reg.lease;
  await new Promise((r) => setTimeout(r, 5_000)); // 2.5 TTLs
  const { instances } = await observer.instances('svc');
  assert.equal(instances.length, 1, `still registered; events: ${events.join(',')}`);
  assert.equal(reg.lease, lease, `the same lease, never lost; events: ${events.join(',')}`);
  assert.ok(!events.includes('lost'), events.join(','));
});

test('a discovery keeps its list and follows changes made while its control plane is frozen', async (t) => {
  const { proxy, urls, b } = await setup(t);
  const writer = new ControlPlaneClient({ url: b.url });
  const client = new ControlPlaneClient({ url: urls, timeout: 1_000 });
  t.after(() => {
    writer.close();
    client.close();
  });
  await writer.registerInstance('svc', 'i1', { address: '127.0.0.1', port: 1001, ttl: 30 });
  const d = await client.discover('svc', { heartbeatTimeout: 800, backoff: constantBackoff(50) });
  assert.deepEqual(d.instances.map((i) => i.id), ['i1']);
  proxy.freeze();
  await writer.registerInstance('svc', 'i2', { address: '127.0.0.1', port: 1002, ttl: 30 });
  await until(() => d.instances.length === 2, 'the discovery to see i2 through B', 8_000);
  await writer.deregisterInstance('svc', 'i1');
  await until(() => d.instances.length === 1, 'the discovery to see i1 go');
  assert.deepEqual(d.instances.map((i) => i.id), ['i2']);
});

test('the CLI takes several URLs and uses the next when the first refuses', async (t) => {
  const { proxy, urls, b } = await setup(t);
  const writer = new ControlPlaneClient({ url: b.url });
  t.after(() => writer.close());
  await writer.put('/cli/k', 'v');
  await proxy.close();
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} };
  assert.equal(await run(['kv', 'get', '/cli/k', '--url', urls.join(',')], io), 0, err.join(''));
  assert.equal(out.join(''), 'v\n');
  assert.equal(await run(['kv', 'put', '/cli/k2', 'w', '--url', urls.join(',')], io), 0, err.join(''));
  assert.equal((await writer.get('/cli/k2'))?.value, 'w');
});

test('panic, fail static: when the list empties, calls go to the last instances that were routable', async (t) => {
  const { b } = await setup(t);
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const client = new ControlPlaneClient({ url: b.url });
  t.after(() => client.close());
  await client.registerInstance('panic', 'p1', { address: '127.0.0.1', port, ttl: 30 });
  const d = await client.discover('panic');
  assert.equal(await (await d.request('/')).text(), 'ok');
  // Its lease ends (as when every lease expired while the control planes were away): the list empties.
  await client.deregisterInstance('panic', 'p1');
  await until(() => d.instances.length === 0, 'the list to empty');
  assert.deepEqual(d.healthy, [], 'healthy says the truth');
  assert.equal(await (await d.request('/')).text(), 'ok', 'the call still goes to the last routable instance');
  // A new instance replaces the old list.
  const other = createServer((_req, res) => res.end('new'));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => other.close(() => r())));
  await client.registerInstance('panic', 'p2', { address: '127.0.0.1', port: (other.address() as { port: number }).port, ttl: 30 });
  await until(() => d.healthy.length === 1, 'p2 to be listed');
  assert.equal(await (await d.request('/')).text(), 'new');
});
