import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FakeControlPlane } from '../../test/helpers/fake-control-plane.js';
import { InvalidOptionError } from '../errors/index.js';
import { ControlPlaneClient } from './client.js';
import type { RegistrationEvent } from './registration.js';

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const me = { service: 'api', id: 'api-1', address: '127.0.0.1', port: 8080, zone: 'a', version: '1.2.3' };
const key = '/spofless/catalog/instances/api/api-1';

test('registers under a lease it grants, renews at TTL/3 with jitter, and re-registers when the lease is lost', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const reg = await client.register(me, { ttl: 1, random: () => 0 });
  const events: RegistrationEvent[] = [];
  reg.onEvent((e) => events.push(e));
  assert.equal(reg.lease, '100');
  assert.equal(cp.kvs.get(key)?.lease, '100');
  assert.equal((JSON.parse(cp.kvs.get(key)!.value) as { zone: string }).zone, 'a');
  const t0 = Date.now();
  await until(() => events.some((e) => e.type === 'renewed'));
  const first = Date.now() - t0;
  assert.ok(first >= 250 && first < 600, `first renewal after ${first} ms (TTL/3 = 333)`);
  // The lease vanishes (it expired while this process was cut off): the next renewal re-registers.
  cp.expireLease('100');
  assert.equal(cp.kvs.has(key), false);
  await until(() => events.some((e) => e.type === 'reregistered'));
  assert.deepEqual(
    events.filter((e) => e.type !== 'renewed').map((e) => e.type),
    ['lost', 'reregistered'],
  );
  assert.equal(reg.lease, '101');
  assert.equal(cp.kvs.get(key)?.lease, '101');
  assert.equal(reg.state, 'active');
});

test('a TTL whose third is not a whole number of ms renews too (a fractional timer deadline once crashed the renewal)', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const reg = await client.register(me, { ttl: 2, random: () => 0 });
  const events: RegistrationEvent[] = [];
  reg.onEvent((e) => events.push(e));
  await until(() => events.some((e) => e.type === 'renewed'));
  assert.deepEqual(events.map((e) => e.type), ['renewed']);
});

test('renewal failures while the control plane is down are retried sooner; it re-registers when back', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url, timeout: 200 });
  t.after(() => client.close());
  const reg = await client.register(me, { ttl: 1 });
  const events: RegistrationEvent[] = [];
  reg.onEvent((e) => events.push(e));
  await cp.stop();
  await until(() => events.filter((e) => e.type === 'renew-failed').length >= 2);
  cp.expireLease(reg.lease);
  await cp.start();
  await until(() => events.some((e) => e.type === 'reregistered'));
  assert.ok(cp.kvs.has(key));
});

test('options are checked: port, ttl, names', async () => {
  const client = new ControlPlaneClient({ url: 'http://127.0.0.1:9' });
  await assert.rejects(client.register({ ...me, port: 0 }), InvalidOptionError);
  await assert.rejects(client.register(me, { ttl: 0.5 }), /whole number of seconds/);
  await assert.rejects(client.register({ ...me, id: '' }), /"id"/);
});

test('shutdown: drains, waits drainDelay while still serving, deregisters, then closes the server after in-flight requests', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const server = createServer((req, res) => setTimeout(() => res.end('ok'), req.url === '/slow' ? 300 : 0));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  const reg = await client.register({ ...me, port }, { ttl: 5 });
  const lines: string[] = [];
  const handle = reg.installShutdown({ server, drainDelay: 200, grace: 2_000, exit: false, signals: ['SIGUSR2'], log: (l) => lines.push(l) });
  t.after(() => handle.dispose());
  const slow = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.text());
  await new Promise((r) => setTimeout(r, 20));
  const t0 = Date.now();
  const done = handle.shutdown();
  await until(() => cp.kvs.has(key) && (JSON.parse(cp.kvs.get(key)!.value) as { status: string }).status === 'draining');
  // Still serving during the drain delay.
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'ok');
  assert.equal(await slow, 'ok');
  const result = await done;
  assert.ok(Date.now() - t0 >= 200);
  assert.equal(result.forced, false);
  assert.equal(cp.kvs.has(key), false, 'deregistered');
  assert.equal(cp.leases.has(reg.lease), false, 'lease revoked');
  assert.equal(server.listening, false);
  assert.equal(reg.state, 'closed');
  assert.deepEqual(lines.map((l) => l.split(' ')[0]), ['draining', 'deregistered', 'server']);
});

test('shutdown on a signal, with the control plane down: the server still closes (the lease will expire)', async (t) => {
  const cp = await new FakeControlPlane().start();
  const server = createServer((_q, s) => s.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new ControlPlaneClient({ url: cp.url, timeout: 200 });
  t.after(() => client.close());
  const reg = await client.register({ ...me, port: (server.address() as AddressInfo).port }, { ttl: 5 });
  await cp.stop();
  let closed = false;
  const handle = reg.installShutdown({
    server,
    drainDelay: 0,
    exit: false,
    signals: ['SIGUSR2'],
    onShutdown: () => {
      closed = true;
    },
  });
  t.after(() => handle.dispose());
  process.kill(process.pid, 'SIGUSR2');
  await until(() => closed);
  assert.equal(server.listening, false);
});
