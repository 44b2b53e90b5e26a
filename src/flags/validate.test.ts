import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, isSpoflessError } from '../errors/index.js';
import { FlagSet } from './flag-set.js';
import { checkRegex, validateFlag, validateSegment } from './validate.js';

const ok = {
  key: 'f',
  type: 'boolean',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
};

function refused(input: unknown, field: string, message: RegExp, segments?: string[]): void {
  assert.throws(
    () => validateFlag(input, segments === undefined ? {} : { segmentExists: (s) => segments.includes(s) }),
    (err: unknown) => {
      assert.ok(isSpoflessError(err, ErrorCode.FlagInvalid), `expected SPOF_ERR_FLAG_INVALID, got ${String(err)}`);
      assert.equal((err as unknown as { field: string }).field, field);
      assert.match((err as Error).message, message);
      return true;
    },
  );
}

describe('validateFlag refuses, naming the field', () => {
  const rows: Array<[string, unknown, string, RegExp, string[]?]> = [
    ['not an object', 'x', 'flag', /JSON object/],
    ['bad key', { ...ok, key: 'a b' }, 'key', /letters, digits/],
    ['unknown field', { ...ok, colour: 1 }, 'colour', /not a field/],
    ['bad type', { ...ok, type: 'date' }, 'type', /boolean, string, number, object/],
    ['variant of the wrong type', { ...ok, variants: { on: true, off: 'no' } }, 'variants.off', /a boolean/],
    ['no variants', { ...ok, variants: {} }, 'variants', /at least one/],
    ['default variant missing', { ...ok, defaultVariant: 'maybe' }, 'defaultVariant', /variant "maybe", which the flag does not have/],
    ['off variant missing', { ...ok, offVariant: 'nope' }, 'offVariant', /does not have/],
    ['rule serving a missing variant', { ...ok, rules: [{ conditions: [], serve: { variant: 'blue' } }] }, 'rules[0].serve.variant', /variant "blue"/],
    ['rule referring to a missing segment', { ...ok, rules: [{ conditions: [{ segment: 'beta' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].segment', /segment "beta", which does not exist/, []],
    ['percentage over 100', { ...ok, rollout: { splits: [{ variant: 'on', weight: 120 }, { variant: 'off', weight: -20 }] } }, 'rollout.splits[0].weight', /0 to 100/],
    ['negative percentage', { ...ok, rollout: { splits: [{ variant: 'on', weight: -1 }] } }, 'rollout.splits[0].weight', /0 to 100/],
    ['split not summing to 100', { ...ok, rollout: { splits: [{ variant: 'on', weight: 30 }, { variant: 'off', weight: 60 }] } }, 'rollout.splits', /sum to 100; they sum to 90/],
    ['split with a missing variant', { ...ok, rollout: { splits: [{ variant: 'maybe', weight: 100 }] } }, 'rollout.splits[0].variant', /does not have/],
    ['three decimals', { ...ok, rollout: { splits: [{ variant: 'on', weight: 33.333 }, { variant: 'off', weight: 66.667 }] } }, 'rollout.splits[0].weight', /two decimals/],
    ['unknown operator', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'like', value: 'x' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].op', /one of equals/],
    ['in with a scalar', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'in', value: 'x' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /non-empty list/],
    ['numeric op with a string', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'gt', value: '5' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /needs a number/],
    ['semver op with a non-version', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'semver_gt', value: 'latest' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /semantic version/],
    ['date op with a non-date', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'before', value: 'soon' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /RFC 3339/],
    ['invalid regex', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'matches', value: '(' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /not a valid regular expression/],
    ['catastrophic regex', { ...ok, rules: [{ conditions: [{ attribute: 'a', op: 'matches', value: '^(a+)+$' }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].value', /nested quantifier/],
    ['bad attribute path', { ...ok, rules: [{ conditions: [{ attribute: 'a..b', op: 'equals', value: 1 }], serve: { variant: 'on' } }] }, 'rules[0].conditions[0].attribute', /dotted path/],
  ];
  for (const [name, input, field, message, segments] of rows) test(name, () => refused(input, field, message, segments));
});

test('checkRegex refuses exponential patterns and back-references, accepts ordinary ones', () => {
  for (const bad of ['(a+)+', '(a*)*b', '(a|aa)+', '(\\w|\\d)+', '(ab|a)*', '((a|aa))+', '(\\w+\\s?)+$', '((ab)*)+', '(a)\\1', '(x+x+)+y', '(.*a){20}']) {
    assert.throws(() => checkRegex('re', bad), /nested quantifier|back-references/, bad);
  }
  for (const good of ['^abc$', '^(a|b)*c$', '(?:foo|bar)+', '^[a-z]+@acme\\.com$', '(ab)+', '(a|b)c', '^v\\d+\\.\\d+', '(?:foo|bar)baz', '\\d{3}-\\d{4}', '(abc){2}']) {
    assert.doesNotThrow(() => checkRegex('re', good), good);
  }
  assert.throws(() => checkRegex('re', 'a'.repeat(257)), /at most 256/);
});

test('an accepted regex over a hostile input of the capped length answers fast', () => {
  const set = new FlagSet();
  set.setFlag(validateFlag({ ...ok, rules: [{ conditions: [{ attribute: 's', op: 'matches', value: '^(a|b)*c$' }], serve: { variant: 'on' } }] }));
  const started = performance.now();
  assert.equal(set.evaluate('f', false, { s: 'ab'.repeat(512) }).value, false);
  assert.equal(set.evaluate('f', false, { s: `${'ab'.repeat(511)}c` }).value, true);
  assert.ok(performance.now() - started < 50);
});

test('validateFlag returns a clean copy with the model fields only', () => {
  const f = validateFlag({ ...ok, rules: [{ name: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }], serve: { variant: 'on' } }] });
  assert.deepEqual(f, { ...ok, rules: [{ name: 'staff', conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }], serve: { variant: 'on' } }] });
});

test('validateSegment', () => {
  assert.deepEqual(validateSegment({ key: 's', included: ['a'] }), { key: 's', included: ['a'] });
  assert.throws(() => validateSegment({ key: 's', conditions: [{ segment: 'other' }] }), /cannot refer to another segment/);
  assert.throws(() => validateSegment({ key: 's', included: [1] }), /list of strings/);
  assert.throws(() => validateSegment({ key: 's', rules: [] }), /not a field/);
});
