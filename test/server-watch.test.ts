// Watches as Server-Sent Events over real sockets: fan-out, resume, compaction, slow subscribers,
// lease expiry and close.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { call, eventRevisions, sse, startServer, until, type SseClient } from './server-helpers.js';

test('fan-out: many subscribers of one prefix share one store watch; a write elsewhere wakes none of them', async (t) => {
  const { url, store, cp } = await startServer(t);
  const n = 300;
  const subs: SseClient[] = [];
  t.after(() => subs.forEach((s) => s.close()));
  for (let i = 0; i < n; i += 50) {
    subs.push(...(await Promise.all(Array.from({ length: 50 }, () => sse(url, '/v1/watch?prefix=/svc/')))));
  }
  assert.equal(subs[0]!.status, 200);
  assert.match(String(subs[0]!.headers['content-type']), /^text\/event-stream/);
  await Promise.all(subs.map((s) => s.waitFor((m) => m.event === 'ready', 'ready')));
  assert.deepEqual(subs[0]!.messages[0]?.json, { revision: 0 });
  assert.equal(store.stats.watches, 1, 'one store watch for 300 subscribers');
  assert.deepEqual(cp.watchStats, { sharedWatches: 1, catchUpWatches: 0, subscribers: n, slowCutOffs: 0 });

  const other = await sse(url, '/v1/watch?prefix=/other/');
  t.after(() => other.close());
  await other.waitFor((m) => m.event === 'ready', 'ready');
  assert.equal(store.stats.watches, 2);

  const { body } = await call(url, 'PUT', '/v1/kv', { key: '/svc/a', value: '1' });
  await Promise.all(subs.map((s) => s.waitFor((m) => m.event === 'events', 'the event')));
  for (const s of subs) {
    const m = s.messages.find((x) => x.event === 'events')!;
    assert.equal(m.id, String(body.revision));
    assert.deepEqual(m.json, { revision: body.revision, events: [{ type: 'put', kv: { key: '/svc/a', value: '1', createRevision: 1, modRevision: 1, version: 1 } }] });
  }
  await call(url, 'PUT', '/v1/kv', { key: '/other/x', value: '2' });
  await other.waitFor((m) => m.event === 'events', 'the /other/ event');
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(subs.every((s) => s.messages.filter((m) => m.event === 'events').length === 1), 'no /svc/ subscriber saw the /other/ write');

  for (const s of subs) s.close();
  other.close();
  await until(() => cp.watchStats.subscribers === 0 && store.stats.watches === 0, 'every watch released');
  assert.equal(cp.watchStats.sharedWatches, 0);
});

test('prevKv, exact key and base64 watches; a second subscriber from an older revision catches up then shares', async (t) => {
  const { url, store, cp } = await startServer(t);
  await call(url, 'PUT', '/v1/kv', { key: '/k', value: 'a' });
  const withPrev = await sse(url, '/v1/watch?key=/k&prevKv=true');
  const b64 = await sse(url, `/v1/watch?prefix=${encodeURIComponent(Buffer.from('/k').toString('base64'))}&encoding=base64`);
  t.after(() => [withPrev, b64].forEach((s) => s.close()));
  await withPrev.waitFor((m) => m.event === 'ready', 'ready');
  await b64.waitFor((m) => m.event === 'ready', 'ready');
  await call(url, 'PUT', '/v1/kv', { key: '/k', value: 'b' });
  await call(url, 'PUT', '/v1/kv', { key: '/kk', value: 'c' });
  const e = await withPrev.waitFor((m) => m.event === 'events', 'event');
  assert.deepEqual((e.json.events as { prevKv: { value: string } }[])[0]?.prevKv.value, 'a');
  await b64.waitFor((_m, all) => eventRevisions(all).length === 2, 'two events');
  const kvs = b64.messages.filter((m) => m.event === 'events').flatMap((m) => (m.json.events as { kv: { key: string; value: string } }[]).map((x) => x.kv));
  assert.deepEqual(kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64').toString()]), [['/k', 'b'], ['/kk', 'c']]);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(eventRevisions(withPrev.messages), [2], 'the exact-key watch did not see /kk');

  // 20 subscribers from revision 1: each catches up on its own watch, then joins the shared one.
  const late = await Promise.all(Array.from({ length: 20 }, () => sse(url, '/v1/watch?key=/k&prevKv=true&revision=1')));
  t.after(() => late.forEach((s) => s.close()));
  await Promise.all(late.map((s) => s.waitFor((_m, all) => eventRevisions(all).length === 2, 'catch-up')));
  for (const s of late) {
    assert.deepEqual(s.messages[0], { event: 'ready', id: undefined, data: '{"revision":3}', json: { revision: 3 } });
    assert.deepEqual(eventRevisions(s.messages), [1, 2]);
  }
  await until(() => cp.watchStats.catchUpWatches === 0, 'all joined the shared watch');
  assert.equal(cp.watchStats.sharedWatches, 2);
  assert.equal(store.stats.watches, 2, 'back to one store watch per (key, prevKv) watched');
  await call(url, 'PUT', '/v1/kv', { key: '/k', value: 'd' });
  await Promise.all(late.map((s) => s.waitFor((_m, all) => eventRevisions(all).length === 3, 'live event')));
  for (const s of late) assert.deepEqual(eventRevisions(s.messages), [1, 2, 4]);
});

test('resume with ?revision= and Last-Event-ID under continuous writes: no gap, no duplicate', async (t) => {
  const { url, store, cp } = await startServer(t);
  const total = 300;
  let written = 0;
  const writer = (async () => {
    for (let i = 0; i < total; i++) {
      await store.put(`/r/${i % 7}`, String(i));
      written++;
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
    }
  })();
  t.after(() => writer);
  await until(() => written >= 30, 'some writes');
  // A first connection from the start, cut after ~100 events, resumed with Last-Event-ID.
  const first = await sse(url, '/v1/watch?prefix=/r/&revision=1');
  await first.waitFor((_m, all) => eventRevisions(all).length >= 100, '100 events', 10_000);
  first.close();
  const got = eventRevisions(first.messages);
  const lastId = [...first.messages].reverse().find((m) => m.event === 'events')!.id!;
  assert.equal(Number(lastId), got.at(-1));
  const second = await sse(url, '/v1/watch?prefix=/r/&revision=1', { 'last-event-id': lastId });
  t.after(() => second.close());
  // Meanwhile a subscriber joins from the middle.
  const middle = await sse(url, '/v1/watch?prefix=/r/&revision=150');
  t.after(() => middle.close());
  await writer;
  await second.waitFor((_m, all) => eventRevisions(all).at(-1) === total, 'the last write', 10_000);
  await middle.waitFor((_m, all) => eventRevisions(all).at(-1) === total, 'the last write', 10_000);
  const all = [...got, ...eventRevisions(second.messages)];
  assert.deepEqual(all, Array.from({ length: total }, (_, i) => i + 1), 'every revision once, in order');
  assert.deepEqual(eventRevisions(middle.messages), Array.from({ length: total - 149 }, (_, i) => i + 150));
  // Ids name the last revision of each batch.
  for (const m of second.messages.filter((x) => x.event === 'events')) assert.equal(Number(m.id), (m.json as { revision: number }).revision);
  await until(() => cp.watchStats.catchUpWatches === 0, 'catch-ups joined');
  assert.equal(store.stats.watches, 1);
});

test('a compacted start revision: `ready`, then a `compacted` event naming the oldest revision, then the end', async (t) => {
  const { url, store } = await startServer(t);
  for (let i = 0; i < 10; i++) await store.put(`/c/${i}`, 'v');
  await store.compact(6);
  for (const headers of [{}, { 'last-event-id': '1' }]) {
    const s = await sse(url, '/v1/watch?prefix=/c/&revision=2', headers);
    const m = await s.waitFor((x) => x.event === 'compacted', 'compacted');
    assert.equal(s.messages[0]?.event, 'ready');
    assert.equal(m.json.code, 'SPOF_ERR_STORE_COMPACTED');
    assert.equal(m.json.compactRevision, 6);
    await s.waitEnd();
  }
  const ok = await sse(url, '/v1/watch?prefix=/c/&revision=6');
  t.after(() => ok.close());
  await ok.waitFor((_m, all) => eventRevisions(all).length === 5, 'events 6..10');
  assert.deepEqual(eventRevisions(ok.messages), [6, 7, 8, 9, 10]);
});

test('a subscriber that stops reading is cut off with SPOF_ERR_WATCH_SLOW and resumes where it left', async (t) => {
  const { url, store, cp } = await startServer(t, { watch: { maxBufferedBytes: 64 * 1024 } });
  const reader = await sse(url, '/v1/watch?prefix=/big/');
  t.after(() => reader.close());
  await reader.waitFor((m) => m.event === 'ready', 'ready');
  // A raw socket that sends its request and then never reads.
  const { port } = new URL(url);
  const raw = connect(Number(port), '127.0.0.1');
  t.after(() => raw.destroy());
  await new Promise<void>((r) => raw.once('connect', r));
  raw.write(`GET /v1/watch?prefix=/big/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
  await until(() => cp.watchStats.subscribers === 2, 'the raw subscriber');
  raw.pause();
  const value = 'x'.repeat(100 * 1024);
  let n = 0;
  while (cp.watchStats.slowCutOffs === 0 && n < 300) {
    await store.put('/big/v', value);
    n++;
    if (n % 5 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(cp.watchStats.slowCutOffs, 1, `cut off after ${n} writes of 100 KiB`);
  assert.equal(cp.watchStats.subscribers, 1, 'the reading subscriber is untouched');
  for (let i = 0; i < 5; i++) await store.put('/big/v', value);
  n += 5;
  await reader.waitFor((_m, all) => eventRevisions(all).length === n, 'every event for the reader', 10_000);

  // Read what the stuck client was sent: events, then the resumable error, then the end.
  const chunks: Buffer[] = [];
  raw.on('data', (c: Buffer) => chunks.push(c));
  raw.resume();
  await new Promise<void>((r) => raw.once('end', r));
  const textSent = Buffer.concat(chunks).toString('utf8');
  const slow = /event: error\ndata: (\{[^\n]*\})/.exec(textSent);
  assert.ok(slow, 'an error event was sent');
  const data = JSON.parse(slow[1]!) as { code: string; resumeFrom: number; message: string };
  assert.equal(data.code, 'SPOF_ERR_WATCH_SLOW');
  const ids = [...textSent.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => i + 1), 'continuous up to the cut');
  assert.equal(data.resumeFrom, ids.length + 1);
  // Resume with Last-Event-ID: the rest, exactly.
  const resumed = await sse(url, '/v1/watch?prefix=/big/', { 'last-event-id': String(data.resumeFrom - 1) });
  t.after(() => resumed.close());
  await resumed.waitFor((_m, all) => eventRevisions(all).at(-1) === n, 'the rest', 10_000);
  assert.deepEqual(eventRevisions(resumed.messages), Array.from({ length: n - ids.length }, (_, i) => i + data.resumeFrom));
});

test('an instance whose lease is not kept alive leaves within TTL + 1 s, and every watcher sees it', async (t) => {
  const { url } = await startServer(t);
  const watchers = await Promise.all([1, 2, 3].map(() => sse(url, '/v1/watch?prefix=/spofless/catalog/instances/api/')));
  t.after(() => watchers.forEach((w) => w.close()));
  await Promise.all(watchers.map((w) => w.waitFor((m) => m.event === 'ready', 'ready')));
  const r = await call(url, 'PUT', '/v1/catalog/services/api/instances/i1', { address: '127.0.0.1', port: 9, ttl: 1 });
  const registeredAt = Date.now();
  const isDelete = (m: { event: string; json: Record<string, unknown> }): boolean =>
    m.event === 'events' && (m.json.events as { type: string }[]).some((e) => e.type === 'delete');
  await Promise.all(watchers.map((w) => w.waitFor(isDelete, 'the delete', 3000)));
  const elapsed = Date.now() - registeredAt;
  assert.ok(elapsed <= 2000, `gone after ${elapsed} ms (TTL 1 s)`);
  const del = watchers[0]!.messages.find(isDelete)!;
  assert.equal((del.json.events as { kv: { key: string } }[])[0]?.kv.key, '/spofless/catalog/instances/api/i1');
  assert.deepEqual((await call(url, 'GET', '/v1/catalog/services/api/instances')).body.instances, []);
  assert.equal((await call(url, 'GET', `/v1/leases/${String(r.body.lease)}`)).status, 404);
});

test('pings keep idle streams open; close() ends every stream and frees the store watches', async (t) => {
  const { url, store, cp } = await startServer(t, { watch: { pingIntervalMs: 30 } });
  const subs = await Promise.all([sse(url, '/v1/watch?prefix=/a/'), sse(url, '/v1/watch?key=/b'), sse(url, '/v1/watch?prefix=')]);
  t.after(() => subs.forEach((s) => s.close()));
  await until(() => subs.every((s) => s.comments.includes('ping')), 'a ping on each stream', 2000);
  assert.equal(store.stats.watches, 3);
  await cp.close();
  await Promise.all(subs.map((s) => s.waitEnd()));
  assert.equal(cp.watchStats.subscribers, 0);
  await assert.rejects(fetch(`${url}/healthz`));
});
