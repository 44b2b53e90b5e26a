import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlagSet } from './flag-set.js';
import type { Condition, EvaluationContext, Flag, Segment } from './types.js';
import { validateFlag, validateSegment } from './validate.js';

/** A boolean flag serving `on` when `cond` holds, `off` otherwise. */
function flagWith(cond: Condition, extra: Partial<Flag> = {}): Flag {
  return validateFlag({
    key: 'f',
    type: 'boolean',
    enabled: true,
    variants: { on: true, off: false },
    defaultVariant: 'off',
    rules: [{ conditions: [cond], serve: { variant: 'on' } }],
    ...extra,
  });
}

function setOf(flag: Flag, segments: Segment[] = []): FlagSet {
  const s = new FlagSet();
  for (const seg of segments) s.setSegment(validateSegment(seg));
  s.setFlag(flag);
  return s;
}

type Row = [name: string, cond: Condition, ctx: EvaluationContext, expected: boolean];

const ROWS: Row[] = [
  // equals / not_equals
  ['equals: same string', { attribute: 'country', op: 'equals', value: 'de' }, { country: 'de' }, true],
  ['equals: other string', { attribute: 'country', op: 'equals', value: 'de' }, { country: 'fr' }, false],
  ['equals: number', { attribute: 'age', op: 'equals', value: 30 }, { age: 30 }, true],
  ['equals: boolean', { attribute: 'beta', op: 'equals', value: true }, { beta: true }, true],
  ['equals: wrong type ("30" vs 30)', { attribute: 'age', op: 'equals', value: 30 }, { age: '30' }, false],
  ['equals: missing attribute', { attribute: 'country', op: 'equals', value: 'de' }, {}, false],
  ['equals: null attribute', { attribute: 'country', op: 'equals', value: 'de' }, { country: null }, false],
  ['not_equals: other', { attribute: 'country', op: 'not_equals', value: 'de' }, { country: 'fr' }, true],
  ['not_equals: same', { attribute: 'country', op: 'not_equals', value: 'de' }, { country: 'de' }, false],
  ['not_equals: missing attribute is false', { attribute: 'country', op: 'not_equals', value: 'de' }, {}, false],
  // in / not_in
  ['in: member', { attribute: 'country', op: 'in', value: ['de', 'fr'] }, { country: 'fr' }, true],
  ['in: not a member', { attribute: 'country', op: 'in', value: ['de', 'fr'] }, { country: 'it' }, false],
  ['in: numbers', { attribute: 'tier', op: 'in', value: [1, 2] }, { tier: 2 }, true],
  ['in: wrong type', { attribute: 'tier', op: 'in', value: [1, 2] }, { tier: '2' }, false],
  ['in: missing attribute', { attribute: 'country', op: 'in', value: ['de'] }, {}, false],
  ['not_in: not a member', { attribute: 'country', op: 'not_in', value: ['de'] }, { country: 'fr' }, true],
  ['not_in: member', { attribute: 'country', op: 'not_in', value: ['de'] }, { country: 'de' }, false],
  ['not_in: missing attribute is false', { attribute: 'country', op: 'not_in', value: ['de'] }, {}, false],
  // starts_with / ends_with
  ['starts_with: yes', { attribute: 'path', op: 'starts_with', value: '/admin' }, { path: '/admin/users' }, true],
  ['starts_with: no', { attribute: 'path', op: 'starts_with', value: '/admin' }, { path: '/home' }, false],
  ['starts_with: wrong type', { attribute: 'path', op: 'starts_with', value: '1' }, { path: 123 }, false],
  ['ends_with: yes', { attribute: 'email', op: 'ends_with', value: '@acme.com' }, { email: 'a@acme.com' }, true],
  ['ends_with: no', { attribute: 'email', op: 'ends_with', value: '@acme.com' }, { email: 'a@acme.co' }, false],
  ['ends_with: missing', { attribute: 'email', op: 'ends_with', value: '@acme.com' }, {}, false],
  // matches
  ['matches: yes', { attribute: 'ua', op: 'matches', value: '^Mozilla/5\\.0 \\(iPhone' }, { ua: 'Mozilla/5.0 (iPhone; CPU)' }, true],
  ['matches: no', { attribute: 'ua', op: 'matches', value: '^Mozilla/5\\.0 \\(iPhone' }, { ua: 'curl/8' }, false],
  ['matches: wrong type', { attribute: 'n', op: 'matches', value: '^1' }, { n: 12 }, false],
  ['matches: input over 1024 characters does not match', { attribute: 's', op: 'matches', value: 'a' }, { s: 'a'.repeat(1025) }, false],
  // numeric
  ['lt: yes', { attribute: 'age', op: 'lt', value: 18 }, { age: 17 }, true],
  ['lt: equal is no', { attribute: 'age', op: 'lt', value: 18 }, { age: 18 }, false],
  ['lte: equal', { attribute: 'age', op: 'lte', value: 18 }, { age: 18 }, true],
  ['gt: yes', { attribute: 'age', op: 'gt', value: 18 }, { age: 18.5 }, true],
  ['gte: no', { attribute: 'age', op: 'gte', value: 18 }, { age: 17.9 }, false],
  ['gt: numeric string is the wrong type', { attribute: 'age', op: 'gt', value: 18 }, { age: '30' }, false],
  ['lt: missing', { attribute: 'age', op: 'lt', value: 18 }, {}, false],
  // semver
  ['semver_gte: newer', { attribute: 'v', op: 'semver_gte', value: '2.1.0' }, { v: '2.10.0' }, true],
  ['semver_gte: older (not string order)', { attribute: 'v', op: 'semver_gte', value: '2.10.0' }, { v: '2.9.9' }, false],
  ['semver_lt: prerelease is lower', { attribute: 'v', op: 'semver_lt', value: '1.0.0' }, { v: '1.0.0-rc.1' }, true],
  ['semver_eq: v prefix', { attribute: 'v', op: 'semver_eq', value: '1.2.3' }, { v: 'v1.2.3' }, true],
  ['semver_gt: partial version', { attribute: 'v', op: 'semver_gt', value: '1.2.0' }, { v: '1.3' }, true],
  ['semver_lte: equal', { attribute: 'v', op: 'semver_lte', value: '1.2.3' }, { v: '1.2.3' }, true],
  ['semver: not a version', { attribute: 'v', op: 'semver_gte', value: '1.0.0' }, { v: 'latest' }, false],
  ['semver: wrong type', { attribute: 'v', op: 'semver_gte', value: '1.0.0' }, { v: 2 }, false],
  ['semver: missing', { attribute: 'v', op: 'semver_gte', value: '1.0.0' }, {}, false],
  // dates
  ['before: ISO string', { attribute: 'signup', op: 'before', value: '2026-01-01T00:00:00Z' }, { signup: '2025-12-31T23:59:59Z' }, true],
  ['before: later', { attribute: 'signup', op: 'before', value: '2026-01-01T00:00:00Z' }, { signup: '2026-01-01T00:00:01Z' }, false],
  ['after: epoch ms', { attribute: 'signup', op: 'after', value: '2026-01-01T00:00:00Z' }, { signup: Date.UTC(2026, 5, 1) }, true],
  ['after: Date object', { attribute: 'signup', op: 'after', value: 1_700_000_000_000 }, { signup: new Date(1_800_000_000_000) }, true],
  ['after: not a date', { attribute: 'signup', op: 'after', value: '2026-01-01' }, { signup: 'yesterday' }, false],
  ['before: wrong type', { attribute: 'signup', op: 'before', value: '2026-01-01' }, { signup: true }, false],
  ['before: missing', { attribute: 'signup', op: 'before', value: '2026-01-01' }, {}, false],
  // dotted paths
  ['dotted path', { attribute: 'user.plan', op: 'equals', value: 'pro' }, { user: { plan: 'pro' } }, true],
  ['dotted path through a non-object', { attribute: 'user.plan', op: 'equals', value: 'pro' }, { user: 'pro' }, false],
  ['flat attribute with a dot in its name', { attribute: 'user.plan', op: 'equals', value: 'pro' }, { 'user.plan': 'pro' }, true],
];

describe('evaluator: every operator', () => {
  for (const [name, cond, ctx, expected] of ROWS) {
    test(name, () => {
      const r = setOf(flagWith(cond)).evaluate('f', false, ctx);
      assert.equal(r.value, expected);
      assert.equal(r.reason, expected ? 'TARGETING_MATCH' : 'DEFAULT');
      assert.equal(r.variant, expected ? 'on' : 'off');
    });
  }
});

describe('evaluator: segments', () => {
  const seg = (s: Partial<Segment>): Segment => ({ key: 'beta', ...s });
  const rows: Array<[string, Segment, EvaluationContext, boolean, boolean?]> = [
    ['an empty segment holds no one', seg({}), { targetingKey: 'u1', plan: 'pro' }, false],
    ['included key', seg({ included: ['u1'] }), { targetingKey: 'u1' }, true],
    ['not included, no conditions', seg({ included: ['u1'] }), { targetingKey: 'u2' }, false],
    ['conditions hold', seg({ conditions: [{ attribute: 'plan', op: 'in', value: ['pro', 'team'] }] }), { targetingKey: 'u2', plan: 'team' }, true],
    ['excluded beats the conditions', seg({ excluded: ['u2'], conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }] }), { targetingKey: 'u2', plan: 'pro' }, false],
    ['included beats excluded', seg({ included: ['u2'], excluded: ['u2'] }), { targetingKey: 'u2' }, true],
    ['custom key attribute', seg({ keyAttribute: 'email', included: ['a@x.io'] }), { targetingKey: 'u9', email: 'a@x.io' }, true],
    ['no key in the context, conditions hold', seg({ conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }] }), { plan: 'pro' }, true],
    ['negated: not in the segment', seg({ included: ['u1'] }), { targetingKey: 'u2' }, true, true],
    ['negated: in the segment', seg({ included: ['u1'] }), { targetingKey: 'u1' }, false, true],
  ];
  for (const [name, segment, ctx, expected, negate] of rows) {
    test(name, () => {
      const cond: Condition = negate === true ? { segment: 'beta', negate: true } : { segment: 'beta' };
      assert.equal(setOf(flagWith(cond), [segment]).evaluate('f', false, ctx).value, expected);
    });
  }
  test('a missing segment holds no one, even negated; a segment added later applies to compiled flags', () => {
    const set = setOf(flagWith({ segment: 'beta' }));
    assert.equal(set.evaluate('f', false, { targetingKey: 'u1' }).value, false);
    const neg = setOf(flagWith({ segment: 'beta', negate: true }));
    assert.equal(neg.evaluate('f', false, { targetingKey: 'u1' }).value, false);
    set.setSegment(validateSegment({ key: 'beta', included: ['u1'] }));
    assert.equal(set.evaluate('f', false, { targetingKey: 'u1' }).value, true);
    set.deleteSegment('beta');
    assert.equal(set.evaluate('f', false, { targetingKey: 'u1' }).value, false);
  });
});

describe('evaluator: flag semantics', () => {
  const base = {
    key: 'color',
    type: 'string',
    enabled: true,
    variants: { red: 'red', green: 'green', blue: 'blue', grey: 'grey' },
    defaultVariant: 'grey',
    offVariant: 'red',
  } as const;

  test('rules apply in order: the first that holds wins', () => {
    const set = setOf(
      validateFlag({
        ...base,
        rules: [
          { conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }], serve: { variant: 'green' } },
          { conditions: [{ attribute: 'country', op: 'equals', value: 'de' }], serve: { variant: 'blue' } },
        ],
      }),
    );
    assert.equal(set.evaluate('color', 'x', { plan: 'pro', country: 'de' }).value, 'green');
    assert.equal(set.evaluate('color', 'x', { plan: 'free', country: 'de' }).value, 'blue');
    assert.deepEqual(set.evaluate('color', 'x', { plan: 'free' }), { key: 'color', value: 'grey', variant: 'grey', reason: 'DEFAULT' });
  });

  test('all conditions of a rule must hold; an empty list always holds', () => {
    const set = setOf(
      validateFlag({
        ...base,
        rules: [
          { conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }, { attribute: 'country', op: 'equals', value: 'de' }], serve: { variant: 'green' } },
          { conditions: [], serve: { variant: 'blue' } },
        ],
      }),
    );
    assert.equal(set.evaluate('color', 'x', { plan: 'pro', country: 'fr' }).value, 'blue');
    assert.equal(set.evaluate('color', 'x', { plan: 'pro', country: 'de' }).value, 'green');
  });

  test('no rules: STATIC default variant; kill switch: the off variant everywhere, reason DISABLED', () => {
    const on = setOf(validateFlag(base));
    assert.deepEqual(on.evaluate('color', 'x', { plan: 'pro' }), { key: 'color', value: 'grey', variant: 'grey', reason: 'STATIC' });
    const off = setOf(validateFlag({ ...base, enabled: false, rules: [{ conditions: [], serve: { variant: 'green' } }], rollout: { splits: [{ variant: 'blue', weight: 100 }] } }));
    assert.deepEqual(off.evaluate('color', 'x', { targetingKey: 'u' }), { key: 'color', value: 'red', variant: 'red', reason: 'DISABLED' });
    const offDefault = setOf(validateFlag({ ...base, offVariant: undefined, enabled: false }));
    assert.equal(offDefault.evaluate('color', 'x').value, 'grey');
  });

  test('rollouts: SPLIT; a context without the bucketing attribute gets the default variant (DEFAULT), as flagd does', () => {
    const set = setOf(validateFlag({ ...base, rollout: { splits: [{ variant: 'green', weight: 50 }, { variant: 'blue', weight: 50 }] } }));
    const r = set.evaluate('color', 'x', { targetingKey: 'user-1' });
    assert.equal(r.reason, 'SPLIT');
    assert.ok(r.value === 'green' || r.value === 'blue');
    assert.deepEqual(set.evaluate('color', 'x', {}), { key: 'color', value: 'grey', variant: 'grey', reason: 'DEFAULT' });
    const byEmail = setOf(validateFlag({ ...base, rollout: { bucketBy: 'email', splits: [{ variant: 'green', weight: 100 }] } }));
    assert.equal(byEmail.evaluate('color', 'x', { targetingKey: 'u', email: 'a@b.c' }).value, 'green');
    assert.equal(byEmail.evaluate('color', 'x', { targetingKey: 'u' }).reason, 'DEFAULT');
  });

  test('a rule can serve a rollout', () => {
    const set = setOf(
      validateFlag({ ...base, rules: [{ conditions: [{ attribute: 'plan', op: 'equals', value: 'pro' }], serve: { rollout: { splits: [{ variant: 'blue', weight: 100 }] } } }] }),
    );
    assert.deepEqual(set.evaluate('color', 'x', { targetingKey: 'u', plan: 'pro' }), { key: 'color', value: 'blue', variant: 'blue', reason: 'SPLIT' });
    assert.equal(set.evaluate('color', 'x', { targetingKey: 'u', plan: 'free' }).value, 'grey');
  });

  test('variant types: number and JSON values; metadata is returned', () => {
    const n = setOf(validateFlag({ key: 'limit', type: 'number', enabled: true, variants: { low: 10, high: 1000 }, defaultVariant: 'high', metadata: { owner: 'team-a' } }));
    assert.deepEqual(n.evaluate('limit', 0), { key: 'limit', value: 1000, variant: 'high', reason: 'STATIC', metadata: { owner: 'team-a' } });
    const o = setOf(validateFlag({ key: 'cfg', type: 'object', enabled: true, variants: { a: { retries: 3, hosts: ['x'] } }, defaultVariant: 'a' }));
    assert.deepEqual(o.evaluate('cfg', {}).value, { retries: 3, hosts: ['x'] });
  });

  test('errors: FLAG_NOT_FOUND, TYPE_MISMATCH, PARSE_ERROR return the caller default with reason ERROR', () => {
    const set = setOf(validateFlag(base));
    assert.deepEqual(set.evaluate('nope', 'dflt'), { key: 'nope', value: 'dflt', reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND', errorMessage: 'flag "nope" not found' });
    const mismatch = set.evaluate('color', false, {}, 'boolean');
    assert.equal(mismatch.errorCode, 'TYPE_MISMATCH');
    assert.equal(mismatch.value, false);
    set.applyKey('prod', '/spofless/flags/prod/flags/broken', '{"key":"broken"');
    const broken = set.evaluate('broken', 7);
    assert.equal(broken.errorCode, 'PARSE_ERROR');
    assert.equal(broken.value, 7);
  });

  test('evaluation allocates nothing per call: the same result object comes back', () => {
    const set = setOf(flagWith({ attribute: 'plan', op: 'equals', value: 'pro' }));
    assert.equal(set.evaluate('f', false, { plan: 'pro' }), set.evaluate('f', false, { plan: 'pro' }));
  });
});
