import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidOptionError } from '../errors/index.js';
import { leastRequest, roundRobin, zoneAware, type Endpoint } from './balancer.js';
import type { Instance } from './types.js';

function ep(id: string, zone?: string, inFlight = 0): Endpoint {
  const instance: Instance = { service: 's', id, address: '127.0.0.1', port: 1, tags: [], metadata: {}, status: 'passing', lease: '1', registeredAt: 0, ...(zone ? { zone } : {}) };
  return { id, instance, origin: 'http://127.0.0.1:1', inFlight };
}

/** A deterministic random source cycling through `values`. */
function cycle(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

test('round-robin: each in turn, wrapping, skipping what a call already tried', () => {
  const eps = [ep('a'), ep('b'), ep('c')];
  const rr = roundRobin();
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => rr.pick(eps)?.id), ['a', 'b', 'c', 'a', 'b', 'c']);
  assert.equal(rr.pick(eps, new Set(['a']))?.id, 'b');
  assert.equal(rr.pick(eps, new Set(['c', 'a']))?.id, 'b');
  assert.equal(rr.pick(eps, new Set(['a', 'b', 'c'])), undefined);
  assert.equal(rr.pick([]), undefined);
  // The list shrinking under the counter.
  assert.ok(['a', 'b'].includes(rr.pick(eps.slice(0, 2))!.id));
});

test('least-request (two choices): the less loaded of two distinct draws; first drawn on a tie', () => {
  const eps = [ep('a', undefined, 5), ep('b', undefined, 1), ep('c', undefined, 1)];
  // Draw a (index 0) then b (index 0 of the remaining → shifted to 1).
  assert.equal(leastRequest({ random: cycle(0, 0) }).pick(eps)?.id, 'b');
  // Draw c (0.9 → 2) then a (0 → 0).
  assert.equal(leastRequest({ random: cycle(0.9, 0) }).pick(eps)?.id, 'c');
  // b and c tie at 1: the first drawn wins.
  assert.equal(leastRequest({ random: cycle(0.5, 0.9) }).pick(eps)?.id, 'b');
  assert.equal(leastRequest().pick([ep('only')])?.id, 'only');
  assert.equal(leastRequest().pick(eps, new Set(['a', 'b']))?.id, 'c');
  assert.equal(leastRequest().pick(eps, new Set(['a', 'b', 'c'])), undefined);
  assert.throws(() => leastRequest({ choices: 0 }), InvalidOptionError);
});

test('least-request: the most loaded instance is never chosen, and load spreads over the rest', () => {
  const eps = [ep('hot', undefined, 100), ep('b'), ep('c'), ep('d')];
  const lr = leastRequest();
  const counts = new Map<string, number>();
  for (let i = 0; i < 3000; i++) {
    const e = lr.pick(eps)!;
    counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
  }
  assert.equal(counts.get('hot') ?? 0, 0);
  for (const id of ['b', 'c', 'd']) assert.ok((counts.get(id) ?? 0) > 700, `${id}: ${counts.get(id)}`);
  // Three choices: the least loaded of the three drawn (x, y, z), not of all four.
  const three = leastRequest({ choices: 3, random: cycle(0, 0.3, 0.6, 0.9) });
  assert.equal(three.pick([ep('x', undefined, 3), ep('y', undefined, 2), ep('z', undefined, 1), ep('w', undefined, 0)])?.id, 'z');
});

test('zone-aware: stays in the caller zone, spills over when it has fewer than minHealthy left', () => {
  const eps = [ep('a1', 'a'), ep('a2', 'a'), ep('b1', 'b'), ep('c1', 'c')];
  const za = zoneAware({ zone: 'a', minHealthy: 2, inner: roundRobin() });
  for (let i = 0; i < 10; i++) assert.ok(za.pick(eps)!.instance.zone === 'a');
  // One of the two local ones already tried: below minHealthy, so any zone (not a1).
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) seen.add(za.pick(eps, new Set(['a1']))!.id);
  assert.deepEqual([...seen].sort(), ['a2', 'b1', 'c1']);
  // The zone has only one instance at all: spill over.
  const few = [ep('a1', 'a'), ep('b1', 'b'), ep('b2', 'b')];
  const spread = new Set<string>();
  for (let i = 0; i < 9; i++) spread.add(za.pick(few)!.id);
  assert.equal(spread.size, 3);
  // minHealthy 1 (default) with no local instance: every zone.
  assert.equal(zoneAware({ zone: 'z', inner: roundRobin() }).pick(eps)?.id, 'a1');
  assert.throws(() => zoneAware({ zone: '' }), InvalidOptionError);
  assert.throws(() => zoneAware({ zone: 'a', minHealthy: 0 }), InvalidOptionError);
});
