import assert from 'node:assert/strict';
import { test } from 'node:test';
import { age, cell, table } from './format.js';
import { run } from './run.js';

async function spofless(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} });
  return { code, stdout, stderr };
}

test('tables align columns on the widest cell and do not pad the last one', () => {
  assert.equal(table(['A', 'LONGER', 'Z'], [['xx', 'y', 'last'], ['x', 'yyyyyyy', '']]), 'A   LONGER   Z\nxx  y        last\nx   yyyyyyy\n');
  assert.equal(table(['K'], []), 'K\n');
});

test('cells are cut with an ellipsis and show control characters', () => {
  assert.equal(cell('abcdef', 4), 'abc…');
  assert.equal(cell('a\nb\tc\u0001'), 'a\\nb\\tc\\x01');
  assert.equal(cell('☃☃☃', 3), '☃☃☃');
  assert.deepEqual([age(500), age(1_500), age(90_000), age(7_200_000), age(-1)], ['500 ms', '1.5 s', '2 min', '2 h', '-']);
});

test('usage errors exit 2 with one line naming the problem', async () => {
  const cases: Array<[string[], string]> = [
    [[], 'missing command'],
    [['nope'], "unknown command 'nope'"],
    [['kv'], 'kv needs a subcommand: get, put, del or ls'],
    [['kv', 'cp'], "unknown kv subcommand 'cp'"],
    [['kv', 'get'], 'kv get needs <key>'],
    [['kv', 'get', 'a', 'b'], "kv get: unexpected argument 'b'"],
    [['kv', 'put', 'a'], 'kv put needs <key> <value>'],
    [['kv', 'ls', '--limit', '0'], "--limit must be a positive integer; got '0'"],
    [['services', '--zone', 'a'], "option '--zone' does not apply to 'services'"],
    [['services', '--url'], "option '--url' needs a value"],
    [['watch'], 'watch needs <prefix>'],
    [['up', '--port', '70000'], "--port must be 0 to 65535; got '70000'"],
    [['up', '--log-level', 'verbose'], "--log-level must be one of debug, info, warn, error, silent; got 'verbose'"],
    [['--bogus'], "unknown option '--bogus'"],
  ];
  for (const [args, message] of cases) {
    const r = await spofless(...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stderr, `spofless: ${message} (see 'spofless --help')\n`);
    assert.equal(r.stdout, '');
  }
});

test('gateway usage errors exit 2 with one line pointing at the gateway help', async () => {
  const cases: Array<[string[], string]> = [
    [['gateway', '--port'], "option '--port' needs a value"],
    [['gateway', '--bogus'], "unknown option '--bogus'"],
    [['gateway', 'extra'], "unexpected argument 'extra'"],
  ];
  for (const [args, message] of cases) {
    const r = await spofless(...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stderr, `spofless: ${message} (see 'spofless gateway --help')\n`);
  }
});

test('--help and --version print to stdout and exit 0; a bad --url is one line, exit 1', async () => {
  const help = await spofless('--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /spofless <command>/);
  assert.match((await spofless('--version')).stdout, /^\d+\.\d+\.\d+\n$/);
  const bad = await spofless('services', '--url', 'nota url');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^spofless: ControlPlaneClient: option "url" must be an absolute http:\/\/ or https:\/\/ URL; got "nota url"\n$/);
});
