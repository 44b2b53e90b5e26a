import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WatchIndex } from './watch-index.js';

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));

function matches(index: WatchIndex<string>, key: Buffer): string[] {
  const out: string[] = [];
  index.match(key, (w) => out.push(w));
  return out.sort();
}

test('a key wakes its exact watchers and the watchers of each of its prefixes, no others', () => {
  const index = new WatchIndex<string>();
  index.add(b('/svc/a'), false, 'exact a');
  index.add(b('/svc/'), true, 'prefix svc');
  index.add(b('/svc/a'), true, 'prefix a');
  index.add(b(''), true, 'everything');
  index.add(b('/svc/b'), false, 'exact b');
  index.add(b('/other/'), true, 'prefix other');
  assert.equal(index.size, 6);
  assert.deepEqual(matches(index, b('/svc/a')), ['everything', 'exact a', 'prefix a', 'prefix svc']);
  assert.deepEqual(matches(index, b('/svc/ab')), ['everything', 'prefix a', 'prefix svc']);
  assert.deepEqual(matches(index, b('/svc')), ['everything']);
  assert.deepEqual(matches(index, b('/other/x')), ['everything', 'prefix other']);
});

test('binary keys, including 0x00 and 0xff bytes, are matched bytewise', () => {
  const index = new WatchIndex<string>();
  index.add(b([0x00, 0xff]), true, 'p');
  index.add(b([0x00, 0xff, 0x80]), false, 'e');
  assert.deepEqual(matches(index, b([0x00, 0xff, 0x80])), ['e', 'p']);
  assert.deepEqual(matches(index, b([0x00, 0xfe])), []);
});

test('remove forgets a watcher and prunes empty trie branches; removing twice is harmless', () => {
  const index = new WatchIndex<string>();
  index.add(b('/a/b/c/'), true, 'deep');
  index.add(b('/a/'), true, 'shallow');
  index.add(b('/a/x'), false, 'exact');
  index.remove(b('/a/b/c/'), true, 'deep');
  index.remove(b('/a/b/c/'), true, 'deep');
  index.remove(b('/a/x'), false, 'exact');
  index.remove(b('/a/x'), false, 'exact');
  index.remove(b('/nope/'), true, 'shallow');
  assert.equal(index.size, 1);
  assert.deepEqual(matches(index, b('/a/b/c/d')), ['shallow']);
  index.remove(b('/a/'), true, 'shallow');
  assert.equal(index.size, 0);
  assert.deepEqual(matches(index, b('/a/b/c/d')), []);
});

test('adding the same watcher twice counts once', () => {
  const index = new WatchIndex<string>();
  index.add(b('/k'), false, 'w');
  index.add(b('/k'), false, 'w');
  assert.equal(index.size, 1);
  assert.deepEqual(matches(index, b('/k')), ['w']);
});
