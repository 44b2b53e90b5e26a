#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node:test (TypeScript through tsx).
// Node 20's --test takes no globs, so the files are found here. Extra args narrow by path substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
// `--chaos` runs only the chaos suite (test/chaos/), which then also writes bench/results/chaos.json
// (SPOFLESS_CHAOS_RESULTS=1); without it the chaos suite runs with the rest and writes nothing, so a
// test run leaves the working tree as it was.
const chaos = process.argv.includes('--chaos');
const filters = [...process.argv.slice(2).filter((a) => !a.startsWith('--')), ...(chaos ? ['test/chaos/'] : [])];
const passThrough = process.argv.slice(2).filter((a) => a.startsWith('--') && a !== '--chaos');

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const files = [...walk(join(root, 'src'), []), ...walk(join(root, 'test'), [])]
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ') || '(all)'}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-timeout=120000', ...passThrough, ...files], {
  cwd: root,
  stdio: 'inherit',
  env: chaos ? { ...process.env, SPOFLESS_CHAOS_RESULTS: '1' } : process.env,
});
process.exit(r.status ?? 1);
