/**
 * The `Store` contract suite, unchanged, against the etcd engine on a real single-node etcd (started
 * here on loopback ports by test/support/etcd.ts; a missing etcd fails with the install command).
 * The suite runs twice: on the whole key space, and inside a namespace (every key under a prefix the
 * engine adds and strips), since installations sharing one cluster use that path.
 * `restart` closes the client and connects again: etcd itself keeps running, as it does in production.
 */
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { runStoreContract } from '../src/store/contract.js';
import { openEtcdStore, type EtcdStore } from '../src/store/etcd.js';
import type { Store } from '../src/store/types.js';
import { startEtcd, type EtcdCluster } from './support/etcd.js';

let etcd: EtcdCluster | undefined;
before(async () => {
  etcd = await startEtcd({ members: 1 });
});
after(async () => {
  await etcd?.stop();
});

function fixture(namespace: () => string) {
  return async () => {
    if (etcd === undefined) throw new Error('etcd did not start');
    const ns = namespace();
    const open = (): Promise<EtcdStore> => openEtcdStore({ endpoints: etcd!.endpoints, namespace: ns, dialTimeoutMs: 10_000 });
    let store: Store = await open();
    return {
      store,
      restart: async () => {
        await store.close();
        store = await open();
        return store;
      },
      cleanup: async () => {
        await store.close();
      },
    };
  };
}

runStoreContract('etcd', fixture(() => ''));
runStoreContract('etcd, namespaced', fixture(() => `/spofless-test-${randomBytes(4).toString('hex')}/`));
