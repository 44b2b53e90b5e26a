import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqliteStore } from '../store/index.js';
import { flagKey } from './keys.js';
import { StoreFlagSet } from './live.js';
import { FlagService } from './service.js';

const FLAG = { key: 'f', type: 'boolean', enabled: true, variants: { on: true, off: false }, defaultVariant: 'off' };

test('StoreFlagSet follows the store: writes become visible (waitFor), deletes go, other environments and late events are ignored', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-flags-live-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db'), compaction: false });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const service = new FlagService(store);
  await service.putFlag('prod', FLAG, { actor: 't' });
  const live = await StoreFlagSet.open(store, 'prod');
  t.after(() => live.close());
  assert.equal(live.set.evaluate('f', true).value, false);

  const { revision } = await service.setEnabled('prod', 'f', false, { actor: 't' });
  assert.equal(await live.waitFor(revision), true);
  assert.equal(live.set.evaluate('f', true).reason, 'DISABLED');

  await service.putFlag('staging', { ...FLAG, key: 'g' }, { actor: 't' });
  const del = await service.deleteFlag('prod', 'f', { actor: 't' });
  assert.equal(await live.waitFor(del.revision), true);
  assert.equal(live.set.evaluate('f', true).errorCode, 'FLAG_NOT_FOUND');
  assert.equal(live.set.evaluate('g', true).errorCode, 'FLAG_NOT_FOUND');

  // An event older than what was applied for the key is dropped (a direct apply, then its late event).
  live.apply(flagKey('prod', 'f'), JSON.stringify(FLAG), del.revision - 1);
  assert.equal(live.set.evaluate('f', true).errorCode, 'FLAG_NOT_FOUND');
  // A wait for a revision that never comes ends at its timeout with false.
  // (Its timer is unref'd, as every library timer here: keep the test's loop alive meanwhile.)
  const keep = setTimeout(() => undefined, 1_000);
  assert.equal(await live.waitFor(del.revision + 1_000, 50), false);
  clearTimeout(keep);
});
