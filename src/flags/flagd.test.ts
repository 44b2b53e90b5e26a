import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FlagdCore } from '@openfeature/flagd-core';
import { ErrorCode, isSpoflessError } from '../errors/index.js';
import { FlagSet } from './flag-set.js';
import { fromFlagd, toFlagd } from './flagd.js';
import type { Flag } from './types.js';
import { validateFlag, validateSegment } from './validate.js';

const FIVE_RULES = JSON.parse(readFileSync(new URL('../../bench/flags/five-rules.flagd.json', import.meta.url), 'utf8')) as unknown;

const contexts = fc.record({
  targetingKey: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 }),
  email: fc.constantFrom('blocked@example.org', 'a@acme.com', 'jane@example.org', 'x@acme.co'),
  country: fc.constantFrom('de', 'fr', 'it'),
  age: fc.integer({ min: 10, max: 40 }),
  appVersion: fc.constantFrom('3.1.9', '3.2.0', '3.10.1', '2.0.0', '3.2.0-rc.1'),
  plan: fc.constantFrom('free', 'enterprise-gold', 'pro'),
});

function flagdReason(reason: string): string {
  // flagd answers TARGETING_MATCH for a fractional split; spofless says SPLIT (an OpenFeature reason).
  return reason === 'SPLIT' ? 'TARGETING_MATCH' : reason;
}

describe('flagd import', () => {
  test('the five-rule definition imports as rules in order and a fallthrough rollout', () => {
    const { flags, segments } = fromFlagd(FIVE_RULES);
    assert.equal(segments.length, 0);
    const [f] = flags;
    assert.ok(f);
    assert.equal(f.key, 'new-checkout');
    assert.equal(f.type, 'boolean');
    assert.deepEqual(f.rules?.map((r) => r.conditions.map((c) => ('op' in c ? c.op : 'segment'))), [['in'], ['ends_with'], ['equals', 'gte'], ['semver_gte'], ['starts_with']]);
    assert.deepEqual(f.rollout, { splits: [{ variant: 'on', weight: 30 }, { variant: 'off', weight: 70 }] });
  });

  test('evaluates exactly as flagd-core does, on random contexts (value, variant, reason)', () => {
    const core = new FlagdCore();
    core.setConfigurations(JSON.stringify(FIVE_RULES));
    const set = new FlagSet();
    for (const f of fromFlagd(FIVE_RULES).flags) set.setFlag(f);
    fc.assert(
      fc.property(contexts, (ctx) => {
        const ours = set.evaluate('new-checkout', false, ctx);
        const theirs = core.resolveBooleanEvaluation('new-checkout', false, ctx);
        assert.equal(ours.value, theirs.value);
        assert.equal(ours.variant, theirs.variant);
        assert.equal(flagdReason(ours.reason), theirs.reason);
      }),
      { numRuns: 3_000 },
    );
  });

  test('$evaluators become segments; "or" becomes one rule per arm; a nested else-if flattens; DISABLED is the kill switch', () => {
    const doc = {
      flags: {
        f: {
          state: 'DISABLED',
          variants: { a: 'A', b: 'B', c: 'C' },
          defaultVariant: 'a',
          targeting: {
            if: [
              { $ref: 'staff' },
              'b',
              { or: [{ '===': ['gold', { var: 'tier' }] }, { '<': [{ var: 'age' }, 18] }] },
              'c',
              { if: [{ '!': { in: [{ var: 'country' }, ['de']] } }, 'b', 'a'] },
            ],
          },
        },
      },
      $evaluators: { staff: { ends_with: [{ var: 'email' }, '@acme.com'] } },
    };
    const { flags, segments } = fromFlagd(doc);
    assert.deepEqual(segments, [{ key: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }] }]);
    const f = flags[0]!;
    assert.equal(f.enabled, false);
    assert.deepEqual(f.rules, [
      { conditions: [{ segment: 'staff' }], serve: { variant: 'b' } },
      { conditions: [{ attribute: 'tier', op: 'equals', value: 'gold' }], serve: { variant: 'c' } },
      { conditions: [{ attribute: 'age', op: 'lt', value: 18 }], serve: { variant: 'c' } },
      { conditions: [{ attribute: 'country', op: 'not_in', value: ['de'] }], serve: { variant: 'b' } },
      { conditions: [], serve: { variant: 'a' } },
    ]);
  });

  test('fractional with a bucketing expression keeps flagd buckets (seed and attribute)', () => {
    const doc = {
      flags: {
        f: { state: 'ENABLED', variants: { x: 1, y: 2 }, defaultVariant: 'x', targeting: { fractional: [{ cat: [{ var: '$flagd.flagKey' }, { var: 'email' }] }, ['x', 1], ['y', 3]] } },
        g: { state: 'ENABLED', variants: { x: 1, y: 2 }, defaultVariant: 'x', targeting: { fractional: [{ var: 'email' }, ['x', 50], ['y', 50]] } },
      },
    };
    const { flags } = fromFlagd(doc);
    assert.deepEqual(flags[0]!.rollout, { splits: [{ variant: 'x', weight: 25 }, { variant: 'y', weight: 75 }], bucketBy: 'email' });
    assert.equal(flags[1]!.seed, '');
    const core = new FlagdCore();
    core.setConfigurations(JSON.stringify(doc));
    const set = new FlagSet();
    for (const f of flags) set.setFlag(f);
    for (let i = 0; i < 500; i++) {
      const ctx = { targetingKey: `t${i}`, email: `user${i}@example.org` };
      assert.equal(set.evaluate('f', 0, ctx).value, core.resolveNumberEvaluation('f', 0, ctx).value);
      assert.equal(set.evaluate('g', 0, ctx).value, core.resolveNumberEvaluation('g', 0, ctx).value);
    }
  });

  const unsupported: Array<[string, unknown, RegExp]> = [
    ['modulo', { if: [{ '%': [{ var: 'n' }, 2] }, 'a', 'b'] }, /flags\.f\.targeting\.if\[0\]: operator "%" is not supported/],
    ['or inside and', { if: [{ and: [{ or: [{ '==': [{ var: 'a' }, 1] }] }] }, 'a', 'b'] }, /"or" is supported only at the top/],
    ['substring in', { if: [{ in: ['x', { var: 's' }] }, 'a', 'b'] }, /substring test/],
    ['sem_ver caret', { if: [{ sem_ver: [{ var: 'v' }, '^', '1.0.0'] }, 'a', 'b'] }, /operator "\^" is not supported/],
    ['timestamp comparison', { if: [{ '>': [{ var: '$flagd.timestamp' }, 1700000000] }, 'a', 'b'] }, /flagd's own properties/],
    ['if in a then-branch', { if: [{ '==': [{ var: 'a' }, 1] }, { if: [true, 'a'] }, 'b'] }, /inside a then-branch/],
    ['weights not dividing 10000', { fractional: [['a', 1], ['b', 2]] }, /weights sum to 3/],
    ['truthiness of a var', { if: [{ var: 'beta' }, 'a', 'b'] }, /operator "var" is not supported/],
  ];
  for (const [name, targeting, message] of unsupported) {
    test(`refuses ${name}, naming the construct and where it is`, () => {
      assert.throws(
        () => fromFlagd({ flags: { f: { state: 'ENABLED', variants: { a: 'a', b: 'b' }, defaultVariant: 'a', targeting } } }),
        (err: unknown) => isSpoflessError(err, ErrorCode.FlagUnsupported) && message.test((err as Error).message),
      );
    });
  }

  test('refuses mixed variant types and a null default variant', () => {
    assert.throws(() => fromFlagd({ flags: { f: { state: 'ENABLED', variants: { a: 1, b: 'x' }, defaultVariant: 'a' } } }), /share a type/);
    assert.throws(() => fromFlagd({ flags: { f: { state: 'ENABLED', variants: { a: 1 }, defaultVariant: null } } }), /null default variant/);
    assert.throws(() => fromFlagd({ flags: { f: { state: 'ENABLED', variants: { a: 1 }, defaultVariant: 'z' } } }), /which the flag does not have/);
  });
});

describe('flagd export', () => {
  const flag: Flag = validateFlag({
    key: 'color',
    type: 'string',
    enabled: true,
    variants: { red: 'red', green: 'green', blue: 'blue' },
    defaultVariant: 'red',
    rules: [
      { conditions: [{ segment: 'staff' }], serve: { variant: 'green' } },
      { conditions: [{ attribute: 'country', op: 'not_in', value: ['de', 'fr'] }, { attribute: 'age', op: 'gte', value: 21 }], serve: { variant: 'blue' } },
      { conditions: [{ attribute: 'appVersion', op: 'semver_lt', value: '2.0.0' }], serve: { rollout: { splits: [{ variant: 'green', weight: 12.5 }, { variant: 'blue', weight: 87.5 }] } } },
    ],
    rollout: { bucketBy: 'email', splits: [{ variant: 'green', weight: 40 }, { variant: 'red', weight: 60 }] },
  });
  const staff = validateSegment({ key: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }] });

  test('flagd-core evaluates the export exactly as spofless evaluates the flag', () => {
    const core = new FlagdCore();
    core.setConfigurations(JSON.stringify(toFlagd([flag], [staff])));
    const set = new FlagSet();
    set.setSegment(staff);
    set.setFlag(flag);
    fc.assert(
      fc.property(contexts, (ctx) => {
        const ours = set.evaluate('color', '?', ctx);
        const theirs = core.resolveStringEvaluation('color', '?', ctx);
        assert.equal(ours.value, theirs.value, JSON.stringify(ctx));
        assert.equal(ours.variant, theirs.variant);
        assert.equal(flagdReason(ours.reason), theirs.reason);
      }),
      { numRuns: 3_000 },
    );
  });

  test('round trip: import(export(flag)) is the flag', () => {
    const back = fromFlagd(toFlagd([flag], [staff]));
    assert.deepEqual(back.flags, [flag]);
    assert.deepEqual(back.segments, [staff]);
  });

  test('refuses operators flagd lacks', () => {
    const re = validateFlag({ key: 'r', type: 'boolean', enabled: true, variants: { on: true }, defaultVariant: 'on', rules: [{ conditions: [{ attribute: 'ua', op: 'matches', value: '^x' }], serve: { variant: 'on' } }] });
    assert.throws(() => toFlagd([re]), /operator matches has no flagd equivalent/);
  });
});
