import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ErrorObject } from 'ajv';
import { validationField, validationMessage, validatorCompiler } from './validation.js';

function firstError(schema: object, data: unknown, httpPart = 'body'): ErrorObject {
  const validate = validatorCompiler({ schema, httpPart }) as ((d: unknown) => boolean) & { errors?: ErrorObject[] | null };
  assert.equal(validate(data), false);
  return validate.errors![0]!;
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['list'],
  properties: {
    list: { type: 'array', items: { type: 'object', additionalProperties: false, properties: { n: { type: 'integer', minimum: 1 }, s: { type: 'string', enum: ['a', 'b'] } } } },
  },
};

test('messages name the field, what was expected and what came', () => {
  const cases: [unknown, string, string][] = [
    [{}, 'body is missing the required field "list"', 'body.list'],
    [{ list: [], x: 1 }, 'body has an unknown field "x": expected only list', 'body.x'],
    [{ list: [{ n: 'one' }] }, 'body.list[0].n must be an integer; got "one"', 'body.list[0].n'],
    [{ list: [{ n: 0 }] }, 'body.list[0].n must be >= 1; got 0', 'body.list[0].n'],
    [{ list: [{ s: 'c' }] }, 'body.list[0].s must be one of "a", "b"; got "c"', 'body.list[0].s'],
  ];
  for (const [data, message, field] of cases) {
    const e = firstError(schema, data);
    assert.equal(validationMessage('body', e), message);
    assert.equal(validationField('body', e), field);
  }
});

test('bodies are not coerced; query strings are', () => {
  const s = { type: 'object', properties: { n: { type: 'integer' }, b: { type: 'boolean' } } };
  assert.equal(validationMessage('body', firstError(s, { n: '5' })), 'body.n must be an integer; got "5"');
  const q = validatorCompiler({ schema: s, httpPart: 'querystring' });
  const data = { n: '5', b: 'true' };
  assert.equal(q(data), true);
  assert.deepEqual(data, { n: 5, b: true });
});
