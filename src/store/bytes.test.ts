import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytes, compareBytes, prefixEnd, text } from './bytes.js';

test('prefixEnd is the smallest key after every key with the prefix, without touching the prefix', () => {
  const prefix = Buffer.from('/a/');
  assert.deepEqual(Buffer.from(prefixEnd(prefix)!), Buffer.from('/a0'));
  assert.deepEqual(prefix, Buffer.from('/a/'), 'the prefix is not modified');
  assert.deepEqual(Buffer.from(prefixEnd(Buffer.from([0x61, 0xff, 0xff]))!), Buffer.from([0x62]));
  assert.equal(prefixEnd(Buffer.from([0xff, 0xff])), undefined);
  assert.equal(prefixEnd(Buffer.alloc(0)), undefined);
});

test('text round-trips through bytes; keys compare bytewise', () => {
  assert.equal(text(bytes('çødé ✓')), 'çødé ✓');
  assert.ok(compareBytes(bytes('/a/'), bytes('/a0')) < 0);
  assert.ok(compareBytes(bytes('B'), bytes('a')) < 0);
  assert.ok(compareBytes(Buffer.from([0x7f]), Buffer.from([0x80])) < 0);
  const raw = new Uint8Array([1, 2]);
  assert.equal(bytes(raw), raw);
});
