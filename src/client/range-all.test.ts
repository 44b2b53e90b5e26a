import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RANGE_PAGE_SIZE, rangeAll, type RangePage } from './range-all.js';
import type { KeyValue, RangeResult } from './types.js';

const kv = (key: string, modRevision: number): KeyValue => ({ key, value: 'v', createRevision: modRevision, modRevision, version: 1 });

test('rangeAll: pages until `more` is false, each later page at the first page revision and after the last key', async () => {
  // 2,500 keys at revision 7; the store moves on to 9 while the list is paged (later pages must not see it).
  const keys = Array.from({ length: 2500 }, (_, i) => `/p/${String(i).padStart(5, '0')}`);
  const asked: { prefix: string; limit: number; revision?: number; fromKey?: string; signal?: AbortSignal }[] = [];
  const ac = new AbortController();
  const page: RangePage = async (prefix, p) => {
    asked.push({ prefix, ...p });
    const from = p.fromKey === undefined ? 0 : keys.findIndex((k) => k >= p.fromKey!);
    const slice = keys.slice(from, from + p.limit);
    const res: RangeResult = { kvs: slice.map((k) => kv(k, 3)), more: from + p.limit < keys.length, revision: p.revision ?? 7 };
    return res;
  };
  const { kvs, revision } = await rangeAll(page, '/p/', ac.signal);
  assert.equal(revision, 7);
  assert.deepEqual(
    kvs.map((k) => k.key),
    keys,
  );
  assert.equal(asked.length, 3);
  assert.deepEqual(
    asked.map((a) => [a.limit, a.revision, a.fromKey]),
    [
      [RANGE_PAGE_SIZE, undefined, undefined],
      [RANGE_PAGE_SIZE, 7, `${keys[999]}\u0000`],
      [RANGE_PAGE_SIZE, 7, `${keys[1999]}\u0000`],
    ],
  );
  for (const a of asked) assert.equal(a.signal, ac.signal, 'the caller signal reaches every page');
});

test('rangeAll: an empty prefix is one page; a failing page rejects the whole list', async () => {
  const empty = await rangeAll(async () => ({ kvs: [], more: false, revision: 4 }), '/none/');
  assert.deepEqual(empty, { kvs: [], revision: 4 });
  let n = 0;
  const failing: RangePage = async () => {
    if (++n === 2) throw new Error('connection reset');
    return { kvs: [kv('/a', 1)], more: true, revision: 5 };
  };
  await assert.rejects(rangeAll(failing, '/'), /connection reset/);
});
