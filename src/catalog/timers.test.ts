import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualTimers } from './timers.js';

test('ManualTimers runs due timers in order, at their due time, including ones set while advancing', () => {
  const time = new ManualTimers(100);
  const log: string[] = [];
  time.setTimeout(() => log.push(`b@${time.now()}`), 20);
  const a = time.setTimeout(() => log.push(`never`), 5);
  time.setTimeout(() => {
    log.push(`c@${time.now()}`);
    time.setTimeout(() => log.push(`d@${time.now()}`), 5);
  }, 10);
  time.clearTimeout(a);
  time.advance(14);
  assert.deepEqual(log, ['c@110']);
  assert.equal(time.now(), 114);
  time.advance(100);
  assert.deepEqual(log, ['c@110', 'd@115', 'b@120']);
  assert.equal(time.pending, 0);
  assert.throws(() => time.advance(-1), RangeError);
});
