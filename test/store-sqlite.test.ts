import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreContract } from '../src/store/contract.js';
import { SqliteStore } from '../src/store/sqlite.js';

runStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-store-'));
  const path = join(dir, 'store.db');
  let store = await SqliteStore.open({ path });
  return {
    store,
    restart: async () => {
      await store.close();
      store = await SqliteStore.open({ path });
      return store;
    },
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
