import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, isSpoflessError } from '../../errors/index.js';
import { parseEndpoint, parseStoreUrl } from './url.js';

const invalid = (re: RegExp) => (err: unknown) => isSpoflessError(err, ErrorCode.InvalidArgument) && re.test(err.message);

test('parseStoreUrl: etcd endpoints and namespace, sqlite directories', () => {
  assert.deepEqual(parseStoreUrl('etcd://10.0.0.1:2379,[::1]:2380,etcd-2.local:2379/spofless/prod'), {
    engine: 'etcd',
    endpoints: ['10.0.0.1:2379', '[::1]:2380', 'etcd-2.local:2379'],
    namespace: '/spofless/prod/',
  });
  assert.deepEqual(parseStoreUrl('etcd://127.0.0.1:2379'), { engine: 'etcd', endpoints: ['127.0.0.1:2379'], namespace: '' });
  assert.deepEqual(parseStoreUrl('ETCD://127.0.0.1:2379/a%20b/'), { engine: 'etcd', endpoints: ['127.0.0.1:2379'], namespace: '/a b/' });
  assert.deepEqual(parseStoreUrl('sqlite:/var/lib/spofless'), { engine: 'sqlite', dataDir: '/var/lib/spofless' });
  assert.deepEqual(parseStoreUrl('sqlite:'), { engine: 'sqlite', dataDir: './.spofless' });
  assert.deepEqual(parseStoreUrl('./data'), { engine: 'sqlite', dataDir: './data' });
  assert.deepEqual(parseStoreUrl('C:\\data'), { engine: 'sqlite', dataDir: 'C:\\data' });
});

test('parseStoreUrl: every endpoint is checked, and the bad one named', () => {
  assert.throws(() => parseStoreUrl(''), invalid(/store URL/));
  assert.throws(() => parseStoreUrl('etcd://'), invalid(/names no etcd endpoint/));
  assert.throws(() => parseStoreUrl('etcd:127.0.0.1:2379'), invalid(/must start with "etcd:\/\/"/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:2379,127.0.0.1:2379'), invalid(/twice/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:2379,127.0.0.1'), invalid(/endpoint 2 .*port is required/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:2379,,127.0.0.2:2379'), invalid(/endpoint 2/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:0'), invalid(/port must be an integer from 1 to 65535/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:65536'), invalid(/port must be/));
  assert.throws(() => parseStoreUrl('etcd://[nope]:2379'), invalid(/not an IPv6 address/));
  assert.throws(() => parseStoreUrl('etcd://bad_host:2379'), invalid(/not a host name/));
  assert.throws(() => parseStoreUrl('etcd://127.0.0.1:2379/ns?x=1'), invalid(/query strings/));
  assert.throws(() => parseStoreUrl('redis://127.0.0.1:6379'), invalid(/unknown scheme "redis:"/));
});

test('parseEndpoint: host:port, [v6]:port, http:// in front; https refused', () => {
  assert.equal(parseEndpoint('http://127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(parseEndpoint(' localhost:2379 '), 'localhost:2379');
  assert.equal(parseEndpoint('[::1]:2379'), '[::1]:2379');
  assert.throws(() => parseEndpoint('https://127.0.0.1:2379'), invalid(/TLS/));
  assert.throws(() => parseEndpoint('::1:2379'), invalid(/not a host name/));
  assert.throws(() => parseEndpoint(2379), invalid(/host:port/));
});
