/**
 * The SDK's lease keep-alive stream against a real control plane over loopback: registrations renew
 * over one stream per client, reopen it when it breaks, re-register when the lease is lost, and renew
 * per request against a control plane without the stream endpoint.
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { ControlPlaneClient, type RegistrationEvent } from '../src/client/index.js';
import { FakeControlPlane } from './helpers/fake-control-plane.js';
import { startServer } from './server-helpers.js';

async function until(cond: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The control plane's request log at debug (where successful keepalives are), to count per-request keepalives the server really saw. */
function requestLog(): { stream: Writable; urls: string[] } {
  const urls: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() === '') continue;
        const entry = JSON.parse(line) as { url?: string };
        if (entry.url !== undefined) urls.push(entry.url);
      }
      done();
    },
  });
  return { stream, urls };
}

const perRequestKeepalives = (urls: string[]): number => urls.filter((u) => /^\/v1\/leases\/\d+\/keepalive/.test(u)).length;

/** A TCP proxy in front of the control plane that can cut the connections carrying keep-alive streams. */
async function proxy(t: TestContext, target: number): Promise<{ url: string; cutStreams: () => number }> {
  const streams = new Set<Socket>();
  const all = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(target, '127.0.0.1');
    all.add(down);
    all.add(up);
    down.once('data', (first: Buffer) => {
      if (first.toString('latin1').startsWith('POST /v1/leases/keepalive ')) streams.add(down);
    });
    down.pipe(up);
    up.pipe(down);
    const end = (): void => {
      down.destroy();
      up.destroy();
      streams.delete(down);
      all.delete(down);
      all.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of all) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cutStreams: () => {
      const n = streams.size;
      for (const s of streams) s.destroy();
      return n;
    },
  };
}

const me = (id: string): { service: string; id: string; address: string; port: number } => ({ service: 'api', id, address: '127.0.0.1', port: 8080 });

test('registrations renew over one shared stream: no per-request keepalive reaches the server', async (t) => {
  const log = requestLog();
  const { url } = await startServer(t, { logger: { level: 'debug', stream: log.stream } });
  const client = new ControlPlaneClient({ url });
  t.after(() => client.close());
  assert.equal(client.keepAliveStats.state, 'idle', 'nothing opened before the first renewal');
  const regs = await Promise.all([client.register(me('a'), { ttl: 1, random: () => 0 }), client.register(me('b'), { ttl: 1, random: () => 0.5 })]);
  const renewed = regs.map(() => 0);
  regs.forEach((r, i) => r.onEvent((e) => e.type === 'renewed' && renewed[i]!++));
  await until(() => renewed.every((n) => n >= 4), 5_000, 'four renewals each');
  const stats = client.keepAliveStats;
  assert.equal(stats.state, 'open');
  assert.equal(stats.opened, 1, 'one stream for both registrations');
  assert.equal(stats.perRequest, 0);
  assert.ok(stats.overStream >= 8, `renewed over the stream ${stats.overStream} times`);
  assert.equal(perRequestKeepalives(log.urls), 0, `per-request keepalives seen by the server: ${log.urls.join(', ')}`);
  // And the leases really are alive.
  for (const r of regs) assert.ok((await client.leaseInfo(r.lease)).ttl >= 1);
});

test('a stream cut mid-way is reopened and renewals go on; none is missed meanwhile', async (t) => {
  const { cp, url: direct } = await startServer(t);
  const p = await proxy(t, cp.port);
  const client = new ControlPlaneClient({ url: p.url });
  t.after(() => client.close());
  const reg = await client.register(me('a'), { ttl: 1, random: () => 0 });
  const events: RegistrationEvent[] = [];
  reg.onEvent((e) => events.push(e));
  await until(() => client.keepAliveStats.overStream >= 2, 5_000, 'renewals over the first stream');
  assert.equal(p.cutStreams(), 1);
  await until(() => client.keepAliveStats.opened === 2 && client.keepAliveStats.overStream >= 5, 5_000, 'the stream to reopen and carry renewals');
  const bad = events.filter((e) => e.type !== 'renewed');
  assert.deepEqual(bad, [], 'no failed renewal, no lost lease');
  assert.equal(reg.state, 'active');
  // Still the same lease: it never lapsed.
  const direct1 = new ControlPlaneClient({ url: direct });
  t.after(() => direct1.close());
  assert.ok((await direct1.leaseInfo(reg.lease)).ttl >= 1);
  t.diagnostic(`renewals: ${client.keepAliveStats.overStream} over the stream, ${client.keepAliveStats.perRequest} per request while it was down`);
});

test('a lease lost on the server: the stream answers not-found and the registration registers again', async (t) => {
  const log = requestLog();
  const { url, store } = await startServer(t, { logger: { level: 'debug', stream: log.stream } });
  const client = new ControlPlaneClient({ url });
  t.after(() => client.close());
  const reg = await client.register(me('a'), { ttl: 1, random: () => 0 });
  const events: RegistrationEvent[] = [];
  reg.onEvent((e) => events.push(e));
  await until(() => events.some((e) => e.type === 'renewed'), 5_000, 'a first renewal');
  const first = reg.lease;
  await store.revokeLease(first);
  await until(() => events.some((e) => e.type === 'reregistered'), 5_000, 're-registration');
  assert.deepEqual(
    events.filter((e) => e.type !== 'renewed').map((e) => e.type),
    ['lost', 'reregistered'],
  );
  assert.notEqual(reg.lease, first);
  const instance = await client.instances('api');
  assert.equal(instance.instances[0]?.lease, reg.lease);
  // The new lease renews over the same stream.
  const before = client.keepAliveStats.overStream;
  await until(() => client.keepAliveStats.overStream >= before + 2, 5_000, 'renewals of the new lease');
  assert.equal(client.keepAliveStats.opened, 1);
  assert.equal(perRequestKeepalives(log.urls), 0);
});

test('a control plane without the stream endpoint (404): renewals go per request', async (t) => {
  const fake = await new FakeControlPlane().start();
  t.after(() => fake.stop());
  const client = new ControlPlaneClient({ url: fake.url });
  t.after(() => client.close());
  const reg = await client.register(me('a'), { ttl: 1, random: () => 0 });
  let renewed = 0;
  reg.onEvent((e) => e.type === 'renewed' && renewed++);
  await until(() => renewed >= 3, 5_000, 'three renewals');
  assert.equal(client.keepAliveStats.state, 'unsupported');
  assert.equal(client.keepAliveStats.overStream, 0);
  assert.equal(fake.requests.filter((r) => r === 'POST /v1/leases/keepalive').length, 1, 'the stream was tried once');
  assert.ok(fake.requests.filter((r) => /^POST \/v1\/leases\/\d+\/keepalive$/.test(r)).length >= 3);
});
