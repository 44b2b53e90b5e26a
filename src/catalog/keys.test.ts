import assert from 'node:assert/strict';
import { test } from 'node:test';
import { instanceKey, instancesPrefix, parseInstance, parseInstanceKey } from './keys.js';

test('instance keys round-trip; other keys are not instance keys', () => {
  assert.equal(instanceKey('api', 'i-1'), '/spofless/catalog/instances/api/i-1');
  assert.equal(instancesPrefix('api'), '/spofless/catalog/instances/api/');
  assert.deepEqual(parseInstanceKey(instanceKey('api', 'i-1')), { service: 'api', id: 'i-1' });
  for (const k of ['/spofless/catalog/instances/api', '/spofless/catalog/instances/api/', '/spofless/catalog/instances//x', '/spofless/catalog/instances/a/b/c', '/other/a/b']) {
    assert.equal(parseInstanceKey(k), undefined, k);
  }
});

test('parseInstance takes an Instance and skips anything else', () => {
  const ok = { service: 's', id: 'i', address: 'h', port: 1, tags: [], metadata: {}, status: 'passing', lease: '1', registeredAt: 0 };
  assert.deepEqual(parseInstance(JSON.stringify(ok)), ok);
  for (const bad of ['not json', 'null', '[]', JSON.stringify({ ...ok, status: 'fine' }), JSON.stringify({ ...ok, port: '1' })]) {
    assert.equal(parseInstance(bad), undefined, bad);
  }
});
