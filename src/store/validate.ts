/**
 * Input checks shared by every engine, so that the same bad input fails the same way (and with the
 * same code) on SQLite and on etcd, before anything is sent or written.
 *
 * Limits:
 * | what                   | limit                                   | why                                  |
 * |------------------------|-----------------------------------------|--------------------------------------|
 * | key                    | 1 … 4,096 bytes                         | keys are names: indexed and repeated in every event; etcd has no own key limit, so ours keeps both engines alike |
 * | prefix                 | 0 … 4,096 bytes (empty: every key)      | as keys                              |
 * | value                  | 0 … 1,572,864 bytes (1.5 MiB)           | etcd's default request limit         |
 * | operations per txn branch | 128                                  | etcd's default `--max-txn-ops`       |
 * | lease TTL              | 1 … 9,000,000,000 whole seconds         | etcd's `MaxLeaseTTL`                 |
 * | lease id               | decimal text of 1 … 2^63-1              | etcd's int64 lease ids               |
 * | revision, limit        | positive safe integers                  |                                      |
 */
import { InvalidArgumentError, InvalidKeyError, ValueTooLargeError, describe } from '../errors/index.js';
import type { BytesInput, Compare, CompareOp, LeaseId, TxnOp, TxnRequest } from './types.js';

export const MAX_KEY_BYTES = 4096;
export const MAX_VALUE_BYTES = 1_572_864;
export const MAX_TXN_OPS = 128;
export const MIN_LEASE_TTL = 1;
export const MAX_LEASE_TTL = 9_000_000_000;
const MAX_LEASE_ID = (1n << 63n) - 1n;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A short, readable rendering of a key for messages: text when printable, else hex. */
export function showKey(key: Uint8Array): string {
  const head = key.subarray(0, 64);
  const asText = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('utf8');
  // eslint-disable-next-line no-control-regex
  const printable = !/[\u0000-\u001f\u007f\ufffd]/.test(asText);
  const shown = printable ? JSON.stringify(asText) : `0x${Buffer.from(head).toString('hex')}`;
  return key.length > head.length ? `${shown}... (${key.length} bytes)` : shown;
}

function toBuffer(input: BytesInput, what: string): Buffer {
  if (typeof input === 'string') {
    if (LONE_SURROGATE.test(input)) {
      throw new InvalidArgumentError(`${what} ${describe(input)} is not well-formed text (a lone UTF-16 surrogate): expected valid Unicode or bytes`);
    }
    return Buffer.from(input, 'utf8');
  }
  if (input instanceof Uint8Array) return Buffer.from(input); // a copy: the caller may reuse its buffer
  throw new InvalidArgumentError(`${what} must be a string or a Uint8Array; got ${describe(input)}`);
}

/** A key for a write or exact read: 1 … MAX_KEY_BYTES bytes. */
export function checkKey(input: BytesInput): Buffer {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new InvalidKeyError(input, 'a non-empty string or Uint8Array');
  }
  const key = toBuffer(input, 'key');
  if (key.length === 0) throw new InvalidKeyError(input, `1 to ${MAX_KEY_BYTES} bytes, not an empty key`);
  if (key.length > MAX_KEY_BYTES) {
    throw new InvalidKeyError(showKey(key), `at most ${MAX_KEY_BYTES} bytes; got ${key.length}`);
  }
  return key;
}

/** A prefix for range, delete or watch: 0 … MAX_KEY_BYTES bytes (empty: every key). */
export function checkPrefix(input: BytesInput): Buffer {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new InvalidKeyError(input, 'a string or Uint8Array prefix');
  }
  const prefix = toBuffer(input, 'prefix');
  if (prefix.length > MAX_KEY_BYTES) {
    throw new InvalidKeyError(showKey(prefix), `a prefix of at most ${MAX_KEY_BYTES} bytes; got ${prefix.length}`);
  }
  return prefix;
}

/** A value: at most MAX_VALUE_BYTES bytes. */
export function checkValue(key: Buffer, input: BytesInput): Buffer {
  const value = toBuffer(input, `value for key ${showKey(key)}`);
  if (value.length > MAX_VALUE_BYTES) throw new ValueTooLargeError(showKey(key), value.length, MAX_VALUE_BYTES);
  return value;
}

/** A lease TTL in whole seconds. */
export function checkTtl(ttl: unknown): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < MIN_LEASE_TTL || ttl > MAX_LEASE_TTL) {
    throw new InvalidArgumentError(
      `lease TTL must be a whole number of seconds from ${MIN_LEASE_TTL} to ${MAX_LEASE_TTL}; got ${describe(ttl)}`,
    );
  }
  return ttl;
}

/** A lease id: decimal text of a positive int64. */
export function checkLeaseId(id: unknown): LeaseId {
  if (typeof id !== 'string' || !/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > MAX_LEASE_ID) {
    throw new InvalidArgumentError(`lease id must be the decimal text of an integer from 1 to 2^63-1; got ${describe(id)}`);
  }
  return id;
}

/** A revision to read at or watch from. */
export function checkRevision(revision: unknown, what = 'revision'): number {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) {
    throw new InvalidArgumentError(`${what} must be a positive integer; got ${describe(revision)}`);
  }
  return revision;
}

/** A range limit. */
export function checkLimit(limit: unknown): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(`limit must be a positive integer; got ${describe(limit)}`);
  }
  return limit;
}

const COMPARE_OPS: ReadonlySet<string> = new Set<CompareOp>(['=', '!=', '<', '>']);

/** A checked, normalised compare. */
export type CheckedCompare =
  | { readonly key: Buffer; readonly target: 'value'; readonly cmp: CompareOp; readonly value: Buffer }
  | {
      readonly key: Buffer;
      readonly target: 'version' | 'createRevision' | 'modRevision';
      readonly cmp: CompareOp;
      readonly value: number;
    }
  | { readonly key: Buffer; readonly target: 'lease'; readonly cmp: CompareOp; readonly value: bigint };

/** A checked, normalised transaction operation (keys and values as Buffers, prefixes resolved). */
export type CheckedOp =
  | { readonly type: 'put'; readonly key: Buffer; readonly value: Buffer; readonly lease: LeaseId | undefined; readonly prevKv: boolean }
  | { readonly type: 'delete'; readonly key: Buffer; readonly prefix: boolean; readonly prevKv: boolean }
  | { readonly type: 'range'; readonly key: Buffer; readonly prefix: boolean; readonly limit: number | undefined; readonly keysOnly: boolean };

export interface CheckedTxn {
  readonly compare: readonly CheckedCompare[];
  readonly success: readonly CheckedOp[];
  readonly failure: readonly CheckedOp[];
}

function checkCompare(c: Compare, i: number): CheckedCompare {
  if (typeof c !== 'object' || c === null) {
    throw new InvalidArgumentError(`compare[${i}] must be an object; got ${describe(c)}`);
  }
  const key = checkKey(c.key);
  if (!COMPARE_OPS.has(c.cmp)) {
    throw new InvalidArgumentError(`compare[${i}].cmp must be one of "=", "!=", "<", ">"; got ${describe(c.cmp)}`);
  }
  switch (c.target) {
    case 'value':
      return { key, target: 'value', cmp: c.cmp, value: checkValue(key, c.value) };
    case 'version':
    case 'createRevision':
    case 'modRevision':
      if (typeof c.value !== 'number' || !Number.isSafeInteger(c.value) || c.value < 0) {
        throw new InvalidArgumentError(
          `compare[${i}] on ${c.target} needs a non-negative integer value; got ${describe(c.value)}`,
        );
      }
      return { key, target: c.target, cmp: c.cmp, value: c.value };
    case 'lease':
      return { key, target: 'lease', cmp: c.cmp, value: c.value === null ? 0n : BigInt(checkLeaseId(c.value)) };
    default:
      throw new InvalidArgumentError(
        `compare[${i}].target must be "value", "version", "createRevision", "modRevision" or "lease"; got ${describe((c as { target: unknown }).target)}`,
      );
  }
}

function checkOp(op: TxnOp, where: string): CheckedOp {
  if (typeof op !== 'object' || op === null) throw new InvalidArgumentError(`${where} must be an object; got ${describe(op)}`);
  switch (op.type) {
    case 'put': {
      const key = checkKey(op.key);
      return {
        type: 'put',
        key,
        value: checkValue(key, op.value),
        lease: op.lease === undefined ? undefined : checkLeaseId(op.lease),
        prevKv: op.prevKv === true,
      };
    }
    case 'delete': {
      const prefix = op.prefix === true;
      return { type: 'delete', key: prefix ? checkPrefix(op.key) : checkKey(op.key), prefix, prevKv: op.prevKv === true };
    }
    case 'range': {
      const prefix = op.prefix === true;
      return {
        type: 'range',
        key: prefix ? checkPrefix(op.key) : checkKey(op.key),
        prefix,
        limit: op.limit === undefined ? undefined : checkLimit(op.limit),
        keysOnly: op.keysOnly === true,
      };
    }
    default:
      throw new InvalidArgumentError(`${where}.type must be "put", "delete" or "range"; got ${describe((op as { type: unknown }).type)}`);
  }
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.subarray(0, prefix.length).equals(prefix);
}

function checkBranch(ops: readonly TxnOp[] | undefined, name: string): CheckedOp[] {
  if (ops === undefined) return [];
  if (!Array.isArray(ops)) throw new InvalidArgumentError(`txn ${name} must be an array of operations; got ${describe(ops)}`);
  if (ops.length > MAX_TXN_OPS) {
    throw new InvalidArgumentError(`txn ${name} has ${ops.length} operations: expected at most ${MAX_TXN_OPS}`);
  }
  const checked = ops.map((op: TxnOp, i) => checkOp(op, `txn ${name}[${i}]`));
  // etcd refuses a branch that writes one key twice: its result would depend on operation order in a
  // way a reader of the event stream could not see (both events carry the same revision).
  const puts = new Set<string>();
  for (const op of checked) {
    if (op.type !== 'put') continue;
    const k = op.key.toString('latin1');
    if (puts.has(k)) throw new InvalidArgumentError(`txn ${name} puts key ${showKey(op.key)} twice: expected each key written once`);
    puts.add(k);
  }
  for (const del of checked) {
    if (del.type !== 'delete') continue;
    for (const put of checked) {
      if (put.type === 'put' && (del.prefix ? startsWith(put.key, del.key) : put.key.equals(del.key))) {
        throw new InvalidArgumentError(
          `txn ${name} both puts and deletes key ${showKey(put.key)}: expected each key written once`,
        );
      }
    }
  }
  return checked;
}

/** Checks a whole transaction request. */
export function checkTxn(request: TxnRequest): CheckedTxn {
  if (typeof request !== 'object' || request === null) {
    throw new InvalidArgumentError(`txn request must be an object; got ${describe(request)}`);
  }
  const compare = request.compare ?? [];
  if (!Array.isArray(compare)) throw new InvalidArgumentError(`txn compare must be an array; got ${describe(compare)}`);
  if (compare.length > MAX_TXN_OPS) {
    throw new InvalidArgumentError(`txn has ${compare.length} compares: expected at most ${MAX_TXN_OPS}`);
  }
  return {
    compare: compare.map((c: Compare, i) => checkCompare(c, i)),
    success: checkBranch(request.success, 'success'),
    failure: checkBranch(request.failure, 'failure'),
  };
}
