import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { murmur3 } from './murmur3.js';

// flagd-core's hash (a dependency of @openfeature/flagd-core; untyped, hence require).
const MurmurHash3 = createRequire(import.meta.url)('imurmurhash') as new (s: string) => { result(): number };

// Published vectors of MurmurHash3_x86_32 (SMHasher / Wikipedia).
const VECTORS: ReadonlyArray<[string, number, number]> = [
  ['', 0, 0],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['test', 0, 0xba6bd213],
  ['Hello, world!', 0, 0xc0363e43],
  ['hello', 0, 0x248bfa47],
  ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['abc', 0, 0xb3dd93fa],
];

test('murmur3 matches the published MurmurHash3_x86_32 vectors', () => {
  for (const [input, seed, expected] of VECTORS) {
    assert.equal(murmur3(input, seed), expected, `murmur3(${JSON.stringify(input)}, ${seed})`);
  }
});

test('murmur3 hashes UTF-8 bytes (any string, surrogates included) and equals flagd-core\'s imurmurhash on ASCII', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (s) => {
      assert.equal(murmur3(s), reference(new TextEncoder().encode(s)));
    }),
    { numRuns: 2_000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 80 }), (s) => {
      assert.equal(murmur3(s), new MurmurHash3(s).result() >>> 0);
    }),
    { numRuns: 2_000 },
  );
});

/** A plain byte-array MurmurHash3_x86_32, the textbook form, as the oracle. */
function reference(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const blocks = bytes.length >> 2;
  for (let i = 0; i < blocks; i++) {
    let k = bytes[i * 4]! | (bytes[i * 4 + 1]! << 8) | (bytes[i * 4 + 2]! << 16) | (bytes[i * 4 + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const tail = blocks * 4;
  const rest = bytes.length & 3;
  if (rest >= 3) k ^= bytes[tail + 2]! << 16;
  if (rest >= 2) k ^= bytes[tail + 1]! << 8;
  if (rest >= 1) {
    k ^= bytes[tail]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
