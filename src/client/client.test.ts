import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FakeControlPlane } from '../../test/helpers/fake-control-plane.js';
import { ClientClosedError, ControlPlaneError, ControlPlaneUnreachableError, ErrorCode, InvalidOptionError, TimeoutError, isSpoflessError } from '../errors/index.js';
import { ControlPlaneClient } from './client.js';

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('options are checked where they enter, naming the bad value', () => {
  assert.throws(() => new ControlPlaneClient({ url: 'ftp://x' }), InvalidOptionError);
  assert.throws(() => new ControlPlaneClient({ url: [] }), /non-empty list/);
  assert.throws(() => new ControlPlaneClient({ timeout: -1 }), /timeout/);
  assert.throws(() => new ControlPlaneClient({ urls: 'x' } as never), /"urls"/);
  assert.deepEqual(new ControlPlaneClient({ url: 'http://a:1/, http://b:2' }).urls, ['http://a:1', 'http://b:2']);
});

test('KV calls, and the server error body becomes a typed error carrying the server code', async (t) => {
  const cp = await new FakeControlPlane().start();
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => cp.stop());
  const { revision } = await client.put('/a/1', 'one');
  assert.equal(revision, 1);
  assert.equal((await client.get('/a/1'))?.value, 'one');
  assert.equal(await client.get('/missing'), undefined);
  assert.equal((await client.range('/a/')).kvs.length, 1);
  const err = await client.keepAlive('999').catch((e: unknown) => e);
  assert.ok(err instanceof ControlPlaneError);
  assert.equal(err.status, 404);
  assert.equal(err.code, ErrorCode.StoreLeaseNotFound);
  assert.match(err.message, /lease 999 not found/);
  assert.ok(isSpoflessError(err, ErrorCode.StoreLeaseNotFound));
  client.close();
  await assert.rejects(client.get('/a/1'), ClientClosedError);
});

test('an unreachable control plane gives one clear error; a second URL takes over', async (t) => {
  const dead = await deadPort();
  const lone = new ControlPlaneClient({ url: `http://127.0.0.1:${dead}` });
  const err = await lone.get('/x').catch((e: unknown) => e);
  assert.ok(err instanceof ControlPlaneUnreachableError);
  assert.equal(err.message, `cannot reach the control plane at http://127.0.0.1:${dead}: connection refused`);
  assert.equal(err.retryable, true);

  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const both = new ControlPlaneClient({ url: [`http://127.0.0.1:${dead}`, cp.url] });
  assert.equal((await both.put('/k', 'v')).revision, 1, 'a refused write is safe to send to the next URL');
  assert.equal(both.url, cp.url, 'sticks to the URL that answered');
  assert.equal((await both.get('/k'))?.value, 'v');
});

test('a control plane that does not answer in time: TimeoutError for the caller, abort is honoured', async (t) => {
  const silent = createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const client = new ControlPlaneClient({ url, timeout: 100 });
  const err = await client.get('/x').catch((e: unknown) => e);
  assert.ok(err instanceof ControlPlaneUnreachableError, String(err));
  assert.match(err.message, /no answer within 100 ms/);
  const ac = new AbortController();
  const p = new ControlPlaneClient({ url, timeout: 5_000 }).get('/x', { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e: unknown) => isSpoflessError(e, ErrorCode.Aborted));
  assert.ok(!(err instanceof TimeoutError));
});
