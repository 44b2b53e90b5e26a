import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FakeControlPlane } from '../../test/helpers/fake-control-plane.js';
import { constantBackoff } from '../resilience/index.js';
import { ControlPlaneClient } from './client.js';
import type { WatchMessage } from './watch.js';

const fast = constantBackoff(20);

/** Collects a watch's messages into `out` in the background until it ends. */
function drain(iter: AsyncIterable<WatchMessage>, out: WatchMessage[]): Promise<void> {
  return (async () => {
    for await (const m of iter) out.push(m);
  })();
}

async function until(cond: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const revisionsOf = (msgs: WatchMessage[]): number[] => msgs.flatMap((m) => (m.type === 'events' ? m.events.map((e) => e.kv.modRevision) : []));

test('delivers events in order; resumes after the stream drops with no gap and no duplicate', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url });
  cp.put('/w/0', 'before');
  const watch = client.watch('/w/', { startRevision: 1, backoff: fast });
  t.after(() => watch.close());
  const msgs: WatchMessage[] = [];
  const done = drain(watch, msgs);
  await until(() => cp.watcherCount === 1);
  for (let i = 1; i <= 30; i++) {
    cp.put(`/w/${i}`, 'x');
    cp.put('/other', 'ignored');
    if (i % 10 === 0) {
      cp.dropWatchers();
      // Written while the watch is away: the resume must replay them.
      cp.put(`/w/${i}b`, 'x');
      await until(() => cp.watcherCount === 1);
    }
    await new Promise((r) => setImmediate(r));
  }
  await until(() => revisionsOf(msgs).length === 34);
  const revs = revisionsOf(msgs);
  const expected = [...cp.history].filter((h) => h.events.some((e) => e.kv.key.startsWith('/w/'))).map((h) => h.revision);
  assert.deepEqual(revs, expected);
  assert.equal(new Set(revs).size, revs.length);
  assert.equal(msgs.filter((m) => m.type === 'connected').length, 4, 'reconnected after each of the 3 drops');
  assert.equal(msgs.filter((m) => m.type === 'disconnected').length, 3);
  watch.close();
  await done;
});

test('rides out a control-plane outage and resumes from its revision when it comes back', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  const client = new ControlPlaneClient({ url: cp.url });
  const watch = client.watch('/w/', { backoff: constantBackoff(50) });
  t.after(() => watch.close());
  const msgs: WatchMessage[] = [];
  const done = drain(watch, msgs);
  await until(() => watch.connected);
  cp.put('/w/a', '1');
  await until(() => revisionsOf(msgs).length === 1);
  await cp.stop();
  await until(() => !watch.connected);
  // Written while no stream was open (the store goes on; this is the server restarting).
  cp.put('/w/b', '2');
  cp.put('/w/c', '3');
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(msgs.filter((m) => m.type === 'disconnected').length >= 2, 'kept retrying');
  await cp.start();
  cp.put('/w/d', '4');
  await until(() => revisionsOf(msgs).length === 4);
  assert.deepEqual(revisionsOf(msgs), [1, 2, 3, 4]);
  watch.close();
  await done;
});

test('a compacted start revision yields `compacted` and ends the watch', async (t) => {
  const cp = await new FakeControlPlane().start();
  t.after(() => cp.stop());
  for (let i = 0; i < 5; i++) cp.put(`/w/${i}`, 'x');
  cp.compact(4);
  const msgs: WatchMessage[] = [];
  await drain(new ControlPlaneClient({ url: cp.url }).watch('/w/', { startRevision: 2, backoff: fast }), msgs);
  assert.deepEqual(msgs, [{ type: 'compacted', compactRevision: 4, requestedRevision: 2 }]);
});

test('a stream that goes silent past heartbeatTimeout is dropped and reopened', async (t) => {
  let opened = 0;
  const silent = createServer((_req, res) => {
    opened++;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: ready\ndata: {"revision":7}\n\n');
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const watch = new ControlPlaneClient({ url }).watch('/w/', { heartbeatTimeout: 100, backoff: fast });
  t.after(() => watch.close());
  const msgs: WatchMessage[] = [];
  const done = drain(watch, msgs);
  await until(() => opened >= 3);
  watch.close();
  await done;
  const d = msgs.find((m) => m.type === 'disconnected');
  assert.ok(d !== undefined && /no byte from the control plane for 100 ms/.test(String((d.error as Error).message ?? d.error)), JSON.stringify(d));
});

test('reconnection waits grow with failures and carry full jitter', async (t) => {
  const cp = await new FakeControlPlane().start();
  await cp.stop();
  t.after(() => cp.stop());
  const watch = new ControlPlaneClient({ url: cp.url }).watch('/w/', { random: () => 0.5 });
  const waits: number[] = [];
  for await (const m of watch) {
    if (m.type === 'disconnected') waits.push(m.retryIn);
    if (waits.length === 4) break;
  }
  // base 250, doubling, times the random draw 0.5.
  assert.deepEqual(waits, [125, 250, 500, 1000]);
});
