import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BrokenCircuitError,
  ErrorCode,
  InvalidOptionError,
  SpoflessError,
  TimeoutError,
  isSpoflessError,
} from './index.js';

test('errors carry a stable code, cause and retryable flag', () => {
  const cause = new Error('boom');
  const e = new TimeoutError('too slow', { cause });
  assert.equal(e.code, ErrorCode.Timeout);
  assert.equal(e.cause, cause);
  assert.equal(e.retryable, true);
  assert.equal(e.name, 'TimeoutError');
  assert.ok(e instanceof SpoflessError);
  assert.ok(e instanceof TimeoutError);
  assert.ok(!(e instanceof BrokenCircuitError));
  assert.deepEqual(e.toJSON(), { name: 'TimeoutError', code: 'SPOF_ERR_TIMEOUT', message: 'too slow', retryable: true });
});

test('guards recognise an error made by another copy of the package', () => {
  // A second copy has its own classes but the same Symbol.for brand and codes.
  const brand = Symbol.for('spofless.error');
  const foreign: object = Object.assign(new Error('open'), { code: ErrorCode.BrokenCircuit, retryable: false });
  Object.defineProperty(foreign, brand, { value: true });
  assert.ok(foreign instanceof BrokenCircuitError);
  assert.ok(foreign instanceof SpoflessError);
  assert.ok(!(foreign instanceof TimeoutError));
  assert.ok(isSpoflessError(foreign));
  assert.ok(isSpoflessError(foreign, ErrorCode.BrokenCircuit));
  assert.ok(!isSpoflessError(foreign, ErrorCode.Timeout));
  assert.ok(!isSpoflessError(new Error('plain')));
  assert.ok(!isSpoflessError(null));
});

test('InvalidOptionError names the owner, option, value and what is allowed', () => {
  const e = new InvalidOptionError('CircuitBreaker', 'failureRateThreshold', 1.5, 'a number in (0, 1]');
  assert.equal(e.message, 'CircuitBreaker: option "failureRateThreshold" must be a number in (0, 1]; got 1.5');
  assert.equal(e.option, 'failureRateThreshold');
  assert.equal(e.code, 'SPOF_ERR_INVALID_OPTION');
});

test('a subclass without a code of its own matches only its own instances', () => {
  class Custom extends SpoflessError {
    constructor() {
      super('SPOF_ERR_CUSTOM', 'custom');
    }
  }
  assert.ok(new Custom() instanceof Custom);
  assert.ok(new Custom() instanceof SpoflessError);
  assert.ok(!(new TimeoutError('t') instanceof Custom), 'a sibling is not a Custom');
});
