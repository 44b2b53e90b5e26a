#!/usr/bin/env node
// Runs bench/<area>.bench.ts files: all of them, or the areas named as arguments
// (`node scripts/run-bench.mjs resilience`). Each area runs in its own child process with
// `node --import tsx --expose-gc`, one after another, so one area's heap, JIT state and timers cannot
// disturb another's numbers. Arguments starting with `--` go to every benchmark (`--quick`,
// `--check`, `--no-write`; see bench/README.md). Exits non-zero if any benchmark fails or hangs.
//
// spofless itself is measured as it ships: src/ is first compiled to plain JavaScript (TypeScript's
// own emit, file by file, as `tsc` would write dist/) and the benchmarks load that build through
// SPOFLESS_BENCH_BUILD. Loading src/ through tsx instead would measure esbuild's output, which wraps
// every closure made at run time in a `__name(fn, "name")` defineProperty call (tsx turns keepNames
// on): slower per call and heavier per object than what users run, while the peers in node_modules
// are plain JavaScript that tsx leaves alone.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import ts from 'typescript';

const root = new URL('..', import.meta.url).pathname;
const benchDir = join(root, 'bench');
const SUFFIX = '.bench.ts';
// A benchmark must exit by itself (no timer may keep it alive); this bound turns a hang into a failure.
const TIMEOUT_MS = 20 * 60_000;

const args = process.argv.slice(2);
const wanted = args.filter((a) => !a.startsWith('--'));
const passThrough = args.filter((a) => a.startsWith('--'));

const available = readdirSync(benchDir)
  .filter((f) => f.endsWith(SUFFIX))
  .map((f) => f.slice(0, -SUFFIX.length))
  .sort();

const unknown = wanted.filter((a) => !available.includes(a));
if (unknown.length > 0) {
  console.error(`no benchmark for ${unknown.join(', ')}; available: ${available.join(', ') || '(none)'}`);
  process.exit(1);
}
const areas = wanted.length > 0 ? wanted : available;
if (areas.length === 0) {
  console.error('no bench/*.bench.ts files');
  process.exit(1);
}

/**
 * Emits src/**\/*.ts (tests excluded) as ES modules into a fresh directory under node_modules/.cache
 * (one per run, so two runs at once don't overwrite each other's build); returns it and its src root.
 */
function buildSources() {
  const cache = join(root, 'node_modules', '.cache', 'spofless-bench');
  mkdirSync(cache, { recursive: true });
  const out = mkdtempSync(join(cache, 'build-'));
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  if (config === undefined) throw new Error('cannot read tsconfig.json');
  // Per-file emit cannot look up package.json, so say ESM outright (the package is "type": "module").
  const compilerOptions = { ...config.options, module: ts.ModuleKind.ESNext, declaration: false, sourceMap: false, inlineSourceMap: false };
  const srcRoot = join(root, 'src');
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) {
        const { outputText } = ts.transpileModule(readFileSync(p, 'utf8'), { compilerOptions, fileName: p });
        const target = join(out, 'src', relative(srcRoot, p)).replace(/\.ts$/, '.js');
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, outputText);
      }
    }
  };
  walk(srcRoot);
  writeFileSync(join(out, 'package.json'), '{ "type": "module", "private": true }\n');
  return { out, src: join(out, 'src') };
}

const build = buildSources();

let failures = 0;
for (const area of areas) {
  if (areas.length > 1) console.log(`\n=== ${area} ===`);
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--expose-gc', join('bench', `${area}${SUFFIX}`), ...passThrough],
    { cwd: root, stdio: 'inherit', timeout: TIMEOUT_MS, killSignal: 'SIGKILL', env: { ...process.env, SPOFLESS_BENCH_BUILD: build.src } },
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (r.error?.code === 'ETIMEDOUT') {
    console.error(`${area}: did not exit within ${TIMEOUT_MS / 60_000} min (a timer or handle keeps it alive?); killed`);
    failures++;
  } else if (r.error) {
    console.error(`${area}: could not run: ${r.error.message}`);
    failures++;
  } else if (r.status !== 0) {
    console.error(`${area}: exited with ${r.status ?? r.signal} after ${seconds} s`);
    failures++;
  } else {
    console.log(`${area}: done in ${seconds} s`);
  }
}
rmSync(build.out, { recursive: true, force: true });
process.exit(failures > 0 ? 1 : 0);
