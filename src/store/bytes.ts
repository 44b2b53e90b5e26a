/** Conversions between the bytes the store holds and the text most callers use. */
import type { Bytes, BytesInput } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Bytes for a key or value given as text (UTF-8) or bytes (returned as is, not copied).
 *
 * @example
 * ```ts
 * bytes('/svc/a'); // Uint8Array [47, 115, ...]
 * ```
 */
export function bytes(input: BytesInput): Bytes {
  return typeof input === 'string' ? encoder.encode(input) : input;
}

/**
 * The UTF-8 text of a key or value.
 *
 * @example
 * ```ts
 * const kv = await store.get('/svc/a');
 * if (kv) console.log(text(kv.value));
 * ```
 */
export function text(value: Bytes): string {
  return decoder.decode(value);
}

/**
 * The smallest key greater than every key that starts with `prefix`, or `undefined` when there is none
 * (an empty prefix, or one made only of `0xff` bytes): etcd's `range_end` for a prefix.
 *
 * @example
 * ```ts
 * prefixEnd(bytes('/a/')); // bytes('/a0')
 * ```
 */
export function prefixEnd(prefix: Bytes): Bytes | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const b = prefix[i]!;
    if (b < 0xff) {
      // A copy: Buffer#slice would share memory with the caller's prefix.
      const end = new Uint8Array(i + 1);
      end.set(prefix.subarray(0, i + 1));
      end[i] = b + 1;
      return end;
    }
  }
  return undefined;
}

/** Bytewise comparison, as the store orders keys: negative, 0 or positive. */
export function compareBytes(a: Bytes, b: Bytes): number {
  return Buffer.compare(a, b);
}
