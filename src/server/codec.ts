/**
 * Keys and values between JSON and the store. By default they are UTF-8 text in JSON; with
 * `"encoding": "base64"` (body) or `?encoding=base64` (query) every key and value field, in and out,
 * is base64, so binary keys and values survive the trip.
 */
import { InvalidArgumentError, describe } from '../errors/index.js';
import type { KeyValue, TxnOpResult, WatchEvent } from '../store/index.js';

export type Encoding = 'utf8' | 'base64';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A key, prefix or value from a request, as the store takes it. */
export function decode(input: string, encoding: Encoding, field: string): string | Uint8Array {
  if (encoding === 'utf8') return input;
  if (!BASE64.test(input)) throw new InvalidArgumentError(`${field} must be base64 (encoding is "base64"); got ${describe(input)}`);
  return Buffer.from(input, 'base64');
}

/** Bytes from the store as a JSON string. */
export function encode(bytes: Uint8Array, encoding: Encoding): string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return encoding === 'base64' ? b.toString('base64') : b.toString('utf8');
}

/** A KeyValue in JSON: `{ key, value, createRevision, modRevision, version, lease? }`. */
export interface KeyValueJson {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease?: string;
}

export function kvJson(kv: KeyValue, encoding: Encoding): KeyValueJson {
  const out = {
    key: encode(kv.key, encoding),
    value: encode(kv.value, encoding),
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
  };
  return kv.lease === undefined ? out : { ...out, lease: kv.lease };
}

export function eventJson(e: WatchEvent, encoding: Encoding): { type: string; kv: KeyValueJson; prevKv?: KeyValueJson } {
  const out = { type: e.type, kv: kvJson(e.kv, encoding) };
  return e.prevKv === undefined ? out : { ...out, prevKv: kvJson(e.prevKv, encoding) };
}

export function txnResponseJson(r: TxnOpResult, encoding: Encoding): Record<string, unknown> {
  switch (r.type) {
    case 'put':
      return r.prevKv === undefined ? { type: 'put' } : { type: 'put', prevKv: kvJson(r.prevKv, encoding) };
    case 'delete':
      return r.prevKvs === undefined
        ? { type: 'delete', deleted: r.deleted }
        : { type: 'delete', deleted: r.deleted, prevKvs: r.prevKvs.map((kv) => kvJson(kv, encoding)) };
    case 'range':
      return { type: 'range', kvs: r.kvs.map((kv) => kvJson(kv, encoding)), more: r.more };
  }
}
