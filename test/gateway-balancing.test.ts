/**
 * The gateway's pools and route table without sockets, with an explicit clock (`now`): the balancers,
 * zone spill-over, panic, outlier ejection (growing, capped), slow start, draining, consistent-hash
 * stickiness, and route matching (host, longest prefix on segment boundaries, headers).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Instance } from '../src/catalog/types.js';
import { sharedBreakerOptions } from '../src/resilience/index.js';
import { RouteTable, compileRoute, hostOf, isFailedOutcome, readKey } from '../src/gateway/table.js';
import { BALANCER_HASH, BALANCER_LEAST_REQUEST, BALANCER_ROUND_ROBIN, ServicePool, Upstream, hash32, type PoolSettings } from '../src/gateway/upstreams.js';
import type { Route } from '../src/routing/types.js';

const NOW = 1_000_000;

function settings(over: Partial<PoolSettings> = {}): PoolSettings {
  return {
    zone: undefined,
    minHealthyInZone: 1,
    panicThreshold: 50,
    slowStartMs: 0,
    outlier: { consecutiveFailures: 5, baseEjectionMs: 10_000, maxEjectionMs: 25_000, maxEjectionPercent: 50 },
    connections: 1,
    idleTimeoutMs: 1_000,
    connectTimeoutMs: 1_000,
    breaker: sharedBreakerOptions({ isFailureResult: isFailedOutcome }),
    ...over,
  };
}

function inst(id: string, over: Partial<Instance> = {}): Instance {
  return { service: 's', id, address: '127.0.0.1', port: 1000 + Number(id.replace(/\D/g, '') || 0), tags: [], metadata: {}, status: 'passing', lease: '1', registeredAt: 0, ...over };
}

function pool(s: PoolSettings, list: Instance[], addedAt = NOW - 60_000): { pool: ServicePool; ups: Upstream[] } {
  const p = new ServicePool('s', s);
  const ups = list.map((i) => new Upstream(i, s, addedAt));
  p.set(ups);
  return { pool: p, ups };
}

function counts(p: ServicePool, kind: number, n: number, now = NOW, want?: string): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const u = p.pick(kind, want, -1, undefined, now);
    const k = u?.instance.id ?? 'none';
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

test('round-robin takes each in turn; least-request prefers the less loaded of two', () => {
  const { pool: p, ups } = pool(settings(), [inst('a1'), inst('a2'), inst('a3')]);
  const rr = counts(p, BALANCER_ROUND_ROBIN, 300);
  assert.deepEqual([...rr.values()], [100, 100, 100]);
  ups[0]!.inFlight = 50;
  const lr = counts(p, BALANCER_LEAST_REQUEST, 3_000);
  // a1 wins only when both draws are... never: with two distinct draws a1 always loses to the other.
  assert.equal(lr.get('a1') ?? 0, 0);
  assert.ok((lr.get('a2') ?? 0) > 1_200 && (lr.get('a3') ?? 0) > 1_200);
});

test('draining, critical and maintenance instances get nothing; versions filter', () => {
  const { pool: p } = pool(settings(), [inst('a1', { status: 'draining' }), inst('a2', { status: 'critical', version: '2' }), inst('a3', { version: '2' }), inst('a4', { status: 'warning', color: 'blue' })]);
  assert.deepEqual([...counts(p, BALANCER_LEAST_REQUEST, 200).keys()].sort(), ['a3', 'a4']);
  assert.deepEqual([...counts(p, BALANCER_LEAST_REQUEST, 50, NOW, '2').keys()], ['a3']);
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 50, NOW, 'blue').keys()], ['a4']);
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 5, NOW, 'green').keys()], ['none']);
});

test('zone-aware: the local zone while it has enough healthy instances, else spill over', () => {
  const { pool: p, ups } = pool(settings({ zone: 'a', minHealthyInZone: 2, panicThreshold: 0 }), [inst('a1', { zone: 'a' }), inst('a2', { zone: 'a' }), inst('b3', { zone: 'b' })]);
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 100).keys()].sort(), ['a1', 'a2']);
  ups[0]!.activeHealthy = false;
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 100).keys()].sort(), ['a2', 'b3'], 'one healthy left in zone a: spill over');
});

test('outlier ejection: time grows with each ejection up to the cap; at most maxEjectionPercent at once (but one)', () => {
  const s = settings();
  const { pool: p, ups } = pool(s, [inst('a1'), inst('a2'), inst('a3')]);
  const [a1, a2] = ups as [Upstream, Upstream];
  assert.equal(p.eject(a1, NOW), true);
  assert.equal(a1.ejectedUntil, NOW + 10_000);
  assert.equal(p.eject(a2, NOW), false, '50% of 3 rounds down to 1: a second ejection waits');
  assert.ok(!counts(p, BALANCER_ROUND_ROBIN, 60).has('a1'));
  // Back after the ejection time; the second ejection lasts twice as long, the third hits the cap.
  assert.ok(counts(p, BALANCER_ROUND_ROBIN, 60, NOW + 10_000).has('a1'));
  p.eject(a1, NOW + 10_000);
  assert.equal(a1.ejectedUntil, NOW + 30_000);
  p.eject(a1, NOW + 30_000);
  assert.equal(a1.ejectedUntil, NOW + 55_000, 'capped at maxEjectionMs (25 s)');
  assert.equal(a1.ejections, 3);
});

test('panic: when too few are healthy, every status-routable instance takes traffic', () => {
  const { pool: p, ups } = pool(settings({ panicThreshold: 50 }), [inst('a1'), inst('a2'), inst('a3'), inst('a4', { status: 'draining' })]);
  ups[0]!.activeHealthy = false;
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 90).keys()].sort(), ['a2', 'a3'], '2 of 3 healthy: no panic');
  ups[1]!.activeHealthy = false;
  assert.deepEqual([...counts(p, BALANCER_ROUND_ROBIN, 90).keys()].sort(), ['a1', 'a2', 'a3'], '1 of 3 healthy: panic, but never the draining one');
});

test('slow start: a new instance gets a small share that grows over the window', () => {
  const s = settings({ slowStartMs: 10_000 });
  const p = new ServicePool('s', s);
  const old = [new Upstream(inst('a1'), s, NOW - 60_000), new Upstream(inst('a2'), s, NOW - 60_000)];
  const fresh = new Upstream(inst('a3'), s, NOW);
  p.set([...old, fresh]);
  const share = (now: number): number => (counts(p, BALANCER_LEAST_REQUEST, 6_000, now).get('a3') ?? 0) / 6_000;
  const early = share(NOW + 500);
  const later = share(NOW + 20_000);
  assert.ok(early < 0.15, `share right after joining ${early}`);
  assert.ok(later > 0.25, `share after the window ${later}`);
});

test('consistent hash: a key sticks to one instance; removing another instance does not move it', () => {
  const s = settings();
  const { pool: p, ups } = pool(s, [inst('a1'), inst('a2'), inst('a3'), inst('a4')]);
  const owner = new Map<string, string>();
  for (let i = 0; i < 500; i++) {
    const h = hash32(`user-${i}`);
    const first = p.pick(BALANCER_HASH, undefined, h, undefined, NOW)!.instance.id;
    assert.equal(p.pick(BALANCER_HASH, undefined, h, undefined, NOW)!.instance.id, first);
    owner.set(`user-${i}`, first);
  }
  const spread = new Set(owner.values());
  assert.equal(spread.size, 4);
  // a4 leaves: only its keys move.
  p.set(ups.slice(0, 3));
  let moved = 0;
  for (const [key, was] of owner) {
    const now = p.pick(BALANCER_HASH, undefined, hash32(key), undefined, NOW)!.instance.id;
    if (was !== 'a4') assert.equal(now, was, key);
    else moved++;
  }
  assert.ok(moved > 50);
  // A key whose instance was already tried goes to the next on the ring.
  const k = hash32('user-1');
  const first = p.pick(BALANCER_HASH, undefined, k, undefined, NOW)!;
  assert.notEqual(p.pick(BALANCER_HASH, undefined, k, [first], NOW), first);
});

test('route table: host over any host, longest prefix on segment boundaries, then most headers', () => {
  const mk = (r: Partial<Route> & { name: string; match: Route['match'] }): [string, ReturnType<typeof compileRoute>] => [r.name, compileRoute({ service: 's', ...r }, undefined)];
  const table = new RouteTable(
    new Map([
      mk({ name: 'root', match: { pathPrefix: '/' } }),
      mk({ name: 'api', match: { pathPrefix: '/api' } }),
      mk({ name: 'api-v2', match: { pathPrefix: '/api/v2/' } }),
      mk({ name: 'api-beta', match: { pathPrefix: '/api', headers: { 'x-beta': '1' } } }),
      mk({ name: 'host', match: { host: 'b.example', pathPrefix: '/' } }),
    ]),
  );
  const m = (host: string, path: string, headers: Record<string, string> = {}): string | undefined => table.match(host, path, { headers })?.name;
  assert.equal(m('a.example', '/x'), 'root');
  assert.equal(m('a.example', '/api'), 'api');
  assert.equal(m('a.example', '/api/users?x=1'), 'api');
  assert.equal(m('a.example', '/api?x=1'), 'api');
  assert.equal(m('a.example', '/apix'), 'root');
  assert.equal(m('a.example', '/api/v2/x'), 'api-v2');
  assert.equal(m('a.example', '/api/v2'), 'api-v2');
  assert.equal(m('a.example', '/api/x', { 'x-beta': '1' }), 'api-beta');
  assert.equal(m('b.example', '/api/x'), 'host');
  assert.equal(hostOf('B.Example:8080'), 'b.example');
  assert.equal(hostOf('[::1]:8080'), '[::1]');
  assert.equal(readKey({ header: undefined, cookie: 'sid' }, { cookie: 'a=1; sid=abc; z=2' }), 'abc');
  assert.equal(readKey({ header: 'x-user', cookie: undefined }, { 'x-user': 'u1' }), 'u1');
  assert.equal(readKey({ header: undefined, cookie: 'sid' }, { cookie: 'sidx=1' }), undefined);
  const empty = new RouteTable(new Map());
  assert.equal(empty.match('a', '/', { headers: {} }), undefined);
});
