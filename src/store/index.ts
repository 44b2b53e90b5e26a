/**
 * The revisioned key-value store: the `Store` contract (etcd's model) and its engines.
 *
 * @example
 * ```ts
 * import { SqliteStore, text } from 'spofless/store';
 * const store = await SqliteStore.open({ path: './.spofless/store.db' });
 * await store.put('/config/mode', 'blue');
 * console.log(text((await store.get('/config/mode'))!.value));
 * await store.close();
 * ```
 */
export type {
  Bytes,
  BytesInput,
  CallOptions,
  Compare,
  CompareOp,
  DeleteOptions,
  DeleteResult,
  GetOptions,
  KeyValue,
  LeaseGrant,
  LeaseId,
  LeaseInfo,
  LeaseTimeToLiveOptions,
  PutOptions,
  PutResult,
  RangeOptions,
  RangeResult,
  RevokeResult,
  Store,
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
  WatchResponse,
} from './types.js';
export { bytes, compareBytes, prefixEnd, text } from './bytes.js';
export { SqliteStore } from './sqlite.js';
export { EtcdStore, openEtcdStore, parseEndpoint, parseStoreUrl } from './etcd.js';
export type { EtcdStoreOptions, EtcdStoreStats, StoreUrl } from './etcd.js';
export type { CompactionOptions, SqliteStoreOptions, SqliteStoreStats, StoreClock } from './sqlite.js';
export { MAX_KEY_BYTES, MAX_LEASE_TTL, MAX_TXN_OPS, MAX_VALUE_BYTES, MIN_LEASE_TTL } from './validate.js';
export {
  CompactedError,
  FutureRevisionError,
  InvalidKeyError,
  LeaseNotFoundError,
  StoreClosedError,
  StoreUnavailableError,
  ValueTooLargeError,
} from '../errors/index.js';
