// Watch catch-up over real sockets: a large replay is cut into capped `events` frames, each with its own
// id, so a client that breaks off between two of them resumes exactly; and a resumed watcher is told
// with a `progress` frame when it is current, also when there was nothing to replay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlaneClient, type WatchMessage } from '../src/client/index.js';
import { framesOf } from '../src/server/watch-hub.js';
import { call, eventRevisions, sse, startServer } from './server-helpers.js';

const MiB = 1024 * 1024;

test('a replay larger than the frame cap goes out as several frames, cut between revisions, each with its own id; resuming after any of them is exact', async (t) => {
  const { url } = await startServer(t);
  // 24 revisions of ~100 KiB each (~2.4 MiB), then a one-revision transaction of 3 keys.
  const big = 'x'.repeat(100 * 1024);
  for (let i = 0; i < 24; i++) assert.equal((await call(url, 'PUT', '/v1/kv', { key: `/big/${String(i).padStart(2, '0')}`, value: `${i}:${big}` })).status, 200);
  const txn = await call(url, 'POST', '/v1/txn', { success: ['a', 'b', 'c'].map((k) => ({ type: 'put', key: `/big/t${k}`, value: 'v' })) });
  assert.equal(txn.status, 200);

  const s = await sse(url, '/v1/watch?prefix=/big/&revision=1');
  t.after(() => s.close());
  await s.waitFor((_m, all) => eventRevisions(all).length === 27, 'all 27 events', 10_000);
  const frames = s.messages.filter((m) => m.event === 'events');
  assert.ok(frames.length >= 3, `a ~2.4 MiB replay in ${frames.length} frame(s)`);
  let prevId = 0;
  for (const f of frames) {
    assert.ok(Buffer.byteLength(f.data) <= MiB, `frame ${f.id} has ${Buffer.byteLength(f.data)} bytes of data`);
    const body = f.json as { revision: number; events: { kv: { modRevision: number } }[] };
    assert.equal(Number(f.id), body.revision, 'each frame has its own id: its last revision');
    assert.equal(body.events.at(-1)!.kv.modRevision, body.revision);
    assert.ok(body.revision > prevId);
    prevId = body.revision;
  }
  // No gap, no duplicate; the transaction's three events stay in one frame.
  assert.deepEqual(eventRevisions(s.messages), [...Array.from({ length: 24 }, (_, i) => i + 1), 25, 25, 25]);
  const last = frames.at(-1)!.json as { events: unknown[] };
  assert.ok(last.events.length >= 3);

  // Resume after the second frame, as a client that broke off there would.
  const cut = frames[1]!.id!;
  const r = await sse(url, '/v1/watch?prefix=/big/', { 'last-event-id': cut });
  t.after(() => r.close());
  await r.waitFor((m) => m.event === 'progress', 'progress after the replay', 10_000);
  const resumed = eventRevisions(r.messages);
  assert.deepEqual(resumed, eventRevisions(s.messages).filter((rev) => rev > Number(cut)));
});

test('framesOf: one frame under the cap; over it, cut only between revisions; a single revision over the cap stays whole', () => {
  const ev = (rev: number, size: number): { type: 'put'; kv: { key: Uint8Array; value: Uint8Array; createRevision: number; modRevision: number; version: number } } => ({
    type: 'put',
    kv: { key: Buffer.from(`/k${rev}`), value: Buffer.from('é'.repeat(size)), createRevision: rev, modRevision: rev, version: 1 },
  });
  const parse = (text: string): { id: number; data: string }[] =>
    text
      .split('\n\n')
      .filter((f) => f !== '')
      .map((f) => ({ id: Number(/^id: (\d+)$/m.exec(f)![1]), data: /^data: (.*)$/m.exec(f)![1]! }));
  const small = parse(framesOf(3, [ev(1, 10), ev(2, 10), ev(3, 10)], 'utf8', 4096));
  assert.equal(small.length, 1);
  assert.equal(small[0]!.id, 3);
  // 'é' is 2 bytes of UTF-8: an event of 900 is ~1.9 KB, so revision 2 (two of them) fills a 4 KiB frame alone.
  const events = [ev(1, 900), ev(2, 900), ev(2, 900), ev(3, 900), ev(4, 3000)];
  const split = parse(framesOf(4, events, 'utf8', 4096));
  assert.deepEqual(
    split.map((f) => f.id),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    split.map((f) => (JSON.parse(f.data) as { events: unknown[] }).events.length),
    [1, 2, 1, 1],
    'revision 2 (two events) is never cut in half',
  );
  for (const f of split.slice(0, 3)) assert.ok(Buffer.byteLength(f.data) <= 4096);
  assert.ok(Buffer.byteLength(split[3]!.data) > 4096, 'one revision over the cap is one frame');
  for (const f of split) assert.equal((JSON.parse(f.data) as { revision: number }).revision, f.id);
});

test('a watcher resuming at the store head gets progress right after ready; one that replays gets it once caught up', async (t) => {
  const { url } = await startServer(t);
  await call(url, 'PUT', '/v1/kv', { key: '/other/x', value: '1' });
  const a = await call(url, 'PUT', '/v1/kv', { key: '/p/a', value: '1' });
  const head = a.body.revision as number;

  // Resumes after the head: nothing newer in the store.
  const cur = await sse(url, '/v1/watch?prefix=/p/', { 'last-event-id': String(head) });
  t.after(() => cur.close());
  const p = await cur.waitFor((m) => m.event === 'progress', 'progress');
  assert.deepEqual(
    cur.messages.map((m) => m.event),
    ['ready', 'progress'],
  );
  assert.deepEqual(p.json, { revision: head });
  assert.equal(p.id, undefined, 'progress is not an event: no id');

  // Resumes from before /p/a: replays it, reaches the shared watch, and is told it is current.
  const old = await sse(url, '/v1/watch?prefix=/p/', { 'last-event-id': String((a.body.revision as number) - 1) });
  t.after(() => old.close());
  await old.waitFor((m) => m.event === 'progress', 'progress after the replay');
  assert.deepEqual(
    old.messages.map((m) => m.event),
    ['ready', 'events', 'progress'],
  );
  assert.deepEqual(eventRevisions(old.messages), [a.body.revision]);
  assert.deepEqual(old.messages[2]!.json, { revision: head });

  // A watch from now (no start revision) gets no progress: ready says where it starts.
  const now = await sse(url, '/v1/watch?prefix=/p/');
  t.after(() => now.close());
  await now.waitFor((m) => m.event === 'ready', 'ready');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(
    now.messages.map((m) => m.event),
    ['ready'],
  );
});

test('the SDK watch yields progress when resumed at the head, and its next revision stays exact', async (t) => {
  const { url } = await startServer(t);
  await call(url, 'PUT', '/v1/kv', { key: '/q/a', value: '1' });
  const head = (await call(url, 'PUT', '/v1/kv', { key: '/zz', value: '1' })).body.revision as number;
  const client = new ControlPlaneClient({ url });
  t.after(() => client.close());
  const watch = client.watch('/q/', { startRevision: head + 1 });
  const seen: WatchMessage[] = [];
  for await (const m of watch) {
    seen.push(m);
    if (m.type === 'progress') break;
  }
  assert.deepEqual(
    seen.map((m) => m.type),
    ['connected', 'progress'],
  );
  assert.deepEqual(seen[1], { type: 'progress', revision: head });
  assert.equal(watch.nextRevision, head + 1);
});

test('a watcher resuming while only other keys moved is told at once that it is current, and then gets live events', async (t) => {
  const { url } = await startServer(t);
  const mine = await call(url, 'PUT', '/v1/kv', { key: '/r/a', value: '1' });
  let head = mine.body.revision as number;
  for (let i = 0; i < 5; i++) head = (await call(url, 'PUT', '/v1/kv', { key: `/elsewhere/${i}`, value: `${i}` })).body.revision as number;

  // Resumes right after /r/a: the store moved on 5 revisions, none under /r/.
  const s = await sse(url, '/v1/watch?prefix=/r/', { 'last-event-id': String(mine.body.revision) });
  t.after(() => s.close());
  const p = await s.waitFor((m) => m.event === 'progress', 'progress although nothing under /r/ changed', 2_000);
  assert.deepEqual(p.json, { revision: head });
  assert.deepEqual(
    s.messages.map((m) => m.event),
    ['ready', 'progress'],
  );
  const b = await call(url, 'PUT', '/v1/kv', { key: '/r/b', value: '2' });
  await s.waitFor((m) => m.event === 'events', 'the live event');
  assert.deepEqual(eventRevisions(s.messages), [b.body.revision]);
});
