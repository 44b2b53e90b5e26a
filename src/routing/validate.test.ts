import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ErrorCode, isSpoflessError } from '../errors/index.js';
import type { Route } from './types.js';
import { parseRoute, serializeRoute, validateRoute } from './validate.js';

const base = { name: 'api', service: 'api', match: { pathPrefix: '/api' } };

function refused(input: unknown, pattern: RegExp): void {
  assert.throws(
    () => validateRoute(input),
    (err: unknown) => {
      assert.ok(isSpoflessError(err, ErrorCode.InvalidArgument), `expected InvalidArgument, got ${String(err)}`);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

test('a full route is accepted, normalised and frozen', () => {
  const r = validateRoute({
    name: 'shop.api-v2_x',
    service: 'shop-api',
    match: { host: 'API.Example.com.', pathPrefix: '/api', headers: { 'X-Tenant': 'acme' } },
    balancer: 'consistent-hash',
    hashOn: { header: 'X-User' },
    retry: { attempts: 3, on: ['connect-failure', 'reset', 'timeout', 503], budgetPercent: 20 },
    timeouts: { perTryMs: 1000, totalMs: 3000 },
    breaker: { failureRate: 50, minimumCalls: 20, openMs: 5000 },
    fallback: { status: 503, headers: { 'Content-Type': 'application/json' }, body: '{"error":"later"}' },
    traffic: { active: 'blue', previous: 'green', canary: { version: 'v2', weight: 10, stickyOn: { cookie: 'SID' } }, forceHeader: 'X-Version' },
    stripPrefix: true,
  });
  assert.deepEqual(r, {
    name: 'shop.api-v2_x',
    service: 'shop-api',
    match: { host: 'api.example.com', pathPrefix: '/api', headers: { 'x-tenant': 'acme' } },
    balancer: 'consistent-hash',
    hashOn: { header: 'x-user' },
    retry: { attempts: 3, on: ['connect-failure', 'reset', 'timeout', 503], budgetPercent: 20 },
    timeouts: { perTryMs: 1000, totalMs: 3000 },
    breaker: { failureRate: 50, minimumCalls: 20, openMs: 5000 },
    fallback: { status: 503, headers: { 'content-type': 'application/json' }, body: '{"error":"later"}' },
    traffic: { active: 'blue', previous: 'green', canary: { version: 'v2', weight: 10, stickyOn: { cookie: 'SID' } }, forceHeader: 'x-version' },
    stripPrefix: true,
  });
  assert.ok(Object.isFrozen(r) && Object.isFrozen(r.match) && Object.isFrozen(r.retry?.on));
  // Nothing is filled in: defaults are the gateway's business.
  assert.deepEqual(validateRoute(base), base);
  assert.deepEqual(validateRoute({ ...base, match: { pathPrefix: '/' } }).match, { pathPrefix: '/' });
});

const cases: readonly [string, unknown, RegExp][] = [
  ['not an object', 'api', /route must be an object; got "api"/],
  ['an array', [], /route must be an object/],
  ['unknown field', { ...base, retries: 3 }, /route has an unknown field "retries": expected only name, match/],
  ['missing name', { service: 'a', match: { pathPrefix: '/' } }, /missing the required field "name"/],
  ['missing match', { name: 'a', service: 'a' }, /missing the required field "match"/],
  ['upper-case name', { ...base, name: 'Api' }, /route\.name must be 1 to 63 of a-z 0-9 \. _ -.*got "Api"/],
  ['name with slash', { ...base, name: 'a/b' }, /route\.name .*got "a\/b"/],
  ['name too long', { ...base, name: 'a'.repeat(64) }, /route\.name/],
  ['name starting with dash', { ...base, name: '-a' }, /route\.name/],
  ['bad service', { ...base, service: 'a b' }, /route\.service must be a catalog service name.*got "a b"/],
  ['pathPrefix without slash', { ...base, match: { pathPrefix: 'api' } }, /route\.match\.pathPrefix must be a string starting with "\/"; got "api"/],
  ['pathPrefix not a string', { ...base, match: { pathPrefix: 7 } }, /route\.match\.pathPrefix must be a string starting with "\/"; got 7/],
  ['pathPrefix missing', { ...base, match: {} }, /route\.match is missing the required field "pathPrefix"/],
  ['pathPrefix with query', { ...base, match: { pathPrefix: '/a?b' } }, /pathPrefix must be a path without spaces, "\?" or "#"/],
  ['pathPrefix trailing slash', { ...base, match: { pathPrefix: '/api/' } }, /must not end with "\/"/],
  ['pathPrefix empty segment', { ...base, match: { pathPrefix: '/a//b' } }, /empty segment/],
  ['host with port', { ...base, match: { pathPrefix: '/', host: 'a.com:80' } }, /route\.match\.host must be a host name or IPv4 address without a port.*got "a\.com:80"/],
  ['host empty', { ...base, match: { pathPrefix: '/', host: '' } }, /route\.match\.host/],
  ['match unknown field', { ...base, match: { pathPrefix: '/', path: '/x' } }, /route\.match has an unknown field "path"/],
  ['header name not a token', { ...base, match: { pathPrefix: '/', headers: { 'x y': 'a' } } }, /route\.match\.headers name must be a header name.*got "x y"/],
  ['header value with CRLF', { ...base, match: { pathPrefix: '/', headers: { x: 'a\r\nb' } } }, /route\.match\.headers\["x"\] must not contain control characters/],
  ['header value not a string', { ...base, match: { pathPrefix: '/', headers: { x: 1 } } }, /route\.match\.headers\["x"\] must be a string; got 1/],
  ['duplicate header names', { ...base, match: { pathPrefix: '/', headers: { X: 'a', x: 'b' } } }, /names "x" twice/],
  ['unknown balancer', { ...base, balancer: 'random' }, /route\.balancer must be one of "least-request", "round-robin", "consistent-hash"; got "random"/],
  ['consistent-hash without hashOn', { ...base, balancer: 'consistent-hash' }, /route\.hashOn is required with balancer "consistent-hash"/],
  ['hashOn without consistent-hash', { ...base, hashOn: { header: 'x' } }, /route\.hashOn applies only to balancer "consistent-hash"; the balancer is "least-request"/],
  ['hashOn both', { ...base, balancer: 'consistent-hash', hashOn: { header: 'x', cookie: 'y' } }, /route\.hashOn must give exactly one of "header" or "cookie"/],
  ['hashOn neither', { ...base, balancer: 'consistent-hash', hashOn: {} }, /exactly one of "header" or "cookie"/],
  ['hashOn bad cookie', { ...base, balancer: 'consistent-hash', hashOn: { cookie: 'a;b' } }, /route\.hashOn\.cookie must be a cookie name/],
  ['attempts 0', { ...base, retry: { attempts: 0, on: [] } }, /route\.retry\.attempts must be an integer from 1 to 5; got 0/],
  ['attempts 6', { ...base, retry: { attempts: 6, on: [] } }, /route\.retry\.attempts must be an integer from 1 to 5; got 6/],
  ['attempts 2.5', { ...base, retry: { attempts: 2.5, on: [] } }, /got 2\.5/],
  ['attempts as text', { ...base, retry: { attempts: '3', on: [] } }, /got "3"/],
  ['retry without on', { ...base, retry: { attempts: 2 } }, /route\.retry is missing the required field "on"/],
  ['retry on a status of 99', { ...base, retry: { attempts: 2, on: [99] } }, /route\.retry\.on\[0\] must be an integer from 100 to 599; got 99/],
  ['retry on a status of 600', { ...base, retry: { attempts: 2, on: ['reset', 600] } }, /route\.retry\.on\[1\] must be an integer from 100 to 599; got 600/],
  ['retry on unknown condition', { ...base, retry: { attempts: 2, on: ['5xx'] } }, /route\.retry\.on\[0\] must be one of "connect-failure", "reset", "timeout" or a status code from 100 to 599; got "5xx"/],
  ['retry on duplicate', { ...base, retry: { attempts: 2, on: [503, 503] } }, /route\.retry\.on\[1\] repeats 503/],
  ['budget over 100', { ...base, retry: { attempts: 2, on: [], budgetPercent: 101 } }, /route\.retry\.budgetPercent must be a number from 0 to 100; got 101/],
  ['timeout zero', { ...base, timeouts: { perTryMs: 0 } }, /route\.timeouts\.perTryMs must be an integer from 1 to 3600000; got 0/],
  ['timeout negative', { ...base, timeouts: { totalMs: -5 } }, /route\.timeouts\.totalMs must be an integer from 1 to 3600000; got -5/],
  ['perTry over total', { ...base, timeouts: { perTryMs: 5000, totalMs: 1000 } }, /route\.timeouts\.perTryMs must be at most totalMs \(1000\).*got 5000/],
  ['breaker rate 0', { ...base, breaker: { failureRate: 0 } }, /route\.breaker\.failureRate must be a number from 1 to 100; got 0/],
  ['breaker unknown field', { ...base, breaker: { threshold: 3 } }, /route\.breaker has an unknown field "threshold"/],
  ['fallback status 99', { ...base, fallback: { status: 99 } }, /route\.fallback\.status must be an integer from 200 to 599; got 99/],
  ['fallback status 600', { ...base, fallback: { status: 600 } }, /route\.fallback\.status must be an integer from 200 to 599; got 600/],
  ['fallback without status', { ...base, fallback: { body: 'x' } }, /route\.fallback is missing the required field "status"/],
  ['fallback framing header', { ...base, fallback: { status: 503, headers: { 'Content-Length': '3' } } }, /route\.fallback\.headers must not set "content-length"/],
  ['fallback body with 204', { ...base, fallback: { status: 204, body: 'x' } }, /must be empty with status 204/],
  ['fallback body not text', { ...base, fallback: { status: 503, body: { a: 1 } } }, /route\.fallback\.body must be a string/],
  ['weight 101', { ...base, traffic: { active: 'v1', canary: { version: 'v2', weight: 101 } } }, /route\.traffic\.canary\.weight must be an integer from 0 to 100; got 101/],
  ['weight -1', { ...base, traffic: { active: 'v1', canary: { version: 'v2', weight: -1 } } }, /weight must be an integer from 0 to 100; got -1/],
  ['canary without active', { ...base, traffic: { canary: { version: 'v2', weight: 10 } } }, /route\.traffic\.canary needs route\.traffic\.active/],
  ['canary equal to active', { ...base, traffic: { active: 'v2', canary: { version: 'v2', weight: 10 } } }, /must differ from route\.traffic\.active/],
  ['canary missing weight', { ...base, traffic: { active: 'v1', canary: { version: 'v2' } } }, /route\.traffic\.canary is missing the required field "weight"/],
  ['empty version', { ...base, traffic: { active: '' } }, /route\.traffic\.active must be 1 to 64 characters long; got 0/],
  ['force header not a token', { ...base, traffic: { forceHeader: 'x:y' } }, /route\.traffic\.forceHeader must be a header name.*got "x:y"/],
  ['stripPrefix as text', { ...base, stripPrefix: 'yes' }, /route\.stripPrefix must be true or false; got "yes"/],
];

for (const [what, input, pattern] of cases) {
  test(`refused: ${what}`, () => refused(input, pattern));
}

test('the name of the value in messages is the caller\'s (body for the HTTP API)', () => {
  assert.throws(() => validateRoute({ ...base, retry: { attempts: 9, on: [] } }, 'body'), /^InvalidArgumentError: body\.retry\.attempts must be/);
});

test('parseRoute refuses bad JSON with InvalidArgument, and reads what serializeRoute wrote', () => {
  assert.throws(() => parseRoute('{nope'), (e: unknown) => isSpoflessError(e, ErrorCode.InvalidArgument) && /route is not valid JSON/.test(e.message));
  const r = validateRoute(base);
  assert.deepEqual(parseRoute(serializeRoute(r)), r);
});

// Arbitrary valid routes, built from the field generators below.
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/);
const ver = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/);
const hashKeyArb = fc.oneof(token.map((header) => ({ header })), token.map((cookie) => ({ cookie })));
const headersArb = fc.dictionary(token, fc.stringMatching(/^[ -~]{0,30}$/), { maxKeys: 4 });
const segment = fc.stringMatching(/^[a-zA-Z0-9._~-]{1,10}$/);
const routeArb = fc
  .record(
    {
      name: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,62}$/),
      service: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}$/),
      match: fc.record(
        {
          host: fc.domain(),
          pathPrefix: fc.array(segment, { maxLength: 4 }).map((s) => `/${s.join('/')}`),
          headers: headersArb,
        },
        { requiredKeys: ['pathPrefix'] },
      ),
      hashBalancer: fc.oneof(
        fc.constant({}),
        fc.constantFrom('least-request', 'round-robin').map((balancer) => ({ balancer })),
        hashKeyArb.map((hashOn) => ({ balancer: 'consistent-hash', hashOn })),
      ),
      retry: fc.record(
        {
          attempts: fc.integer({ min: 1, max: 5 }),
          on: fc.uniqueArray(fc.oneof(fc.constantFrom('connect-failure', 'reset', 'timeout'), fc.integer({ min: 100, max: 599 })), { maxLength: 6 }),
          budgetPercent: fc.double({ min: 0, max: 100, noNaN: true }),
        },
        { requiredKeys: ['attempts', 'on'] },
      ),
      timeouts: fc
        .tuple(fc.integer({ min: 1, max: 3_600_000 }), fc.integer({ min: 1, max: 3_600_000 }))
        .map(([a, b]) => ({ perTryMs: Math.min(a, b), totalMs: Math.max(a, b) })),
      breaker: fc.record(
        { failureRate: fc.integer({ min: 1, max: 100 }), minimumCalls: fc.integer({ min: 1, max: 1000 }), openMs: fc.integer({ min: 1, max: 60_000 }) },
        { requiredKeys: [] },
      ),
      fallback: fc.record({ status: fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304), headers: headersArb, body: fc.string({ maxLength: 100 }) }, { requiredKeys: ['status'] }),
      traffic: fc
        .record({ active: ver, previous: ver, canary: fc.record({ version: ver, weight: fc.integer({ min: 0, max: 100 }), stickyOn: hashKeyArb }, { requiredKeys: ['version', 'weight'] }), forceHeader: token }, { requiredKeys: ['active'] })
        .filter((t) => t.canary === undefined || t.canary.version !== t.active),
      stripPrefix: fc.boolean(),
    },
    { requiredKeys: ['name', 'service', 'match', 'hashBalancer'] },
  )
  .map(({ hashBalancer, ...rest }) => ({ ...rest, ...hashBalancer }))
  // Header maps that differ only by case would be refused (a duplicate): not what this property is about.
  .filter((r) => [r.match.headers, r.fallback?.headers].every((h) => h === undefined || new Set(Object.keys(h).map((k) => k.toLowerCase())).size === Object.keys(h).length));

test('property: validate ∘ parse ∘ serialize is the identity on validated routes, and validation is idempotent', () => {
  fc.assert(
    fc.property(routeArb, (input) => {
      const once: Route = validateRoute(input);
      assert.deepEqual(validateRoute(JSON.parse(serializeRoute(once))), once);
      assert.deepEqual(parseRoute(serializeRoute(once)), once);
      assert.equal(serializeRoute(validateRoute(once)), serializeRoute(once));
    }),
    { numRuns: 500 },
  );
});

test('property: any single field replaced by a value of the wrong type is refused with the field named', () => {
  const paths: readonly (readonly string[])[] = [['name'], ['service'], ['match', 'pathPrefix'], ['retry', 'attempts'], ['timeouts', 'perTryMs'], ['fallback', 'status'], ['traffic', 'canary', 'weight'], ['stripPrefix']];
  fc.assert(
    fc.property(routeArb, fc.constantFrom(...paths), fc.constantFrom<unknown>(null, {}, [], 'x y', -1), (input, path, bad) => {
      const copy = JSON.parse(JSON.stringify({ ...input, retry: { attempts: 1, on: [] }, timeouts: { perTryMs: 1 }, fallback: { status: 503 }, traffic: { active: 'a', canary: { version: 'b', weight: 1 } } })) as Record<string, unknown>;
      let at = copy;
      for (const p of path.slice(0, -1)) at = at[p] as Record<string, unknown>;
      at[path.at(-1)!] = bad;
      assert.throws(() => validateRoute(copy), (e: unknown) => isSpoflessError(e, ErrorCode.InvalidArgument) && e.message.includes(`route.${path.join('.')}`));
    }),
    { numRuns: 300 },
  );
});
