/**
 * The etcd engine of the `Store` contract, and store URLs (`etcd://host:port,...`, `sqlite:<dir>`).
 * See ./etcd/store.ts for how the contract maps onto etcd, ./etcd/watch.ts for watch resumption and
 * ./etcd/keepalive.ts for lease renewal and half-open connections.
 *
 * @example
 * ```ts
 * import { openEtcdStore, parseStoreUrl } from 'spofless/store';
 * const url = parseStoreUrl('etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/spofless');
 * if (url.engine === 'etcd') {
 *   const store = await openEtcdStore({ endpoints: url.endpoints, namespace: url.namespace });
 *   await store.close();
 * }
 * ```
 */
export { EtcdStore, openEtcdStore } from './etcd/store.js';
export type { EtcdStoreOptions, EtcdStoreStats } from './etcd/store.js';
export { parseEndpoint, parseStoreUrl } from './etcd/url.js';
export type { StoreUrl } from './etcd/url.js';
