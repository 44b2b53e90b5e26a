/**
 * Shared helpers for `bench/<area>.bench.ts` files: interleaved repetitions with medians, heap
 * deltas, a plain-text table, and the `bench/results/<area>.json` writer.
 *
 * A benchmark file is run by `scripts/run-bench.mjs` as its own process with
 * `node --import tsx --expose-gc`, so `gc()` is available and one area cannot disturb another.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, platform, arch, loadavg } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { setImmediate as yieldToLoop } from 'node:timers/promises';

/** Command-line switches every benchmark understands (passed through by `scripts/run-bench.mjs`). */
export interface BenchArgs {
  /** Fewer iterations and repetitions, results not written: for checking that a benchmark runs. */
  readonly quick: boolean;
  /** Exit with status 1 when a target fails (for CI); without it a benchmark only reports. */
  readonly check: boolean;
  /** Do not write `bench/results/<area>.json`. */
  readonly noWrite: boolean;
}

export function parseArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const known = new Set(['--quick', '--check', '--no-write']);
  for (const a of argv) {
    if (!known.has(a)) throw new Error(`unknown benchmark option ${JSON.stringify(a)}; expected one of ${[...known].join(', ')}`);
  }
  const quick = argv.includes('--quick');
  return { quick, check: argv.includes('--check'), noWrite: quick || argv.includes('--no-write') };
}

/**
 * Imports a spofless module by its path under src/ (`'resilience/index.js'`). Under
 * `scripts/run-bench.mjs` this is the compiled JavaScript it built (what users run); run directly,
 * it falls back to the TypeScript source through tsx and says so, since esbuild's output is slower.
 * Type it with `import type * as M from '../src/<path>'`.
 */
export async function importSpofless<M>(path: string): Promise<M> {
  const build = process.env.SPOFLESS_BENCH_BUILD;
  if (build === undefined || build === '') {
    console.warn(`note: measuring src/${path} as transformed by tsx, not the compiled build; run through npm run bench`);
    return (await import(new URL(`../src/${path}`, import.meta.url).href)) as M;
  }
  return (await import(pathToFileURL(join(build, path)).href)) as M;
}

/** Runs a full collection; fails loudly when the process was not started with `--expose-gc`. */
export function collect(): void {
  if (typeof gc !== 'function') throw new Error('run benchmarks with node --expose-gc (npm run bench does)');
  // Twice: the first pass can leave work (weak references, finalizers) that the second finishes.
  gc();
  gc();
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Lets timers and immediates run (opossum rotates its buckets on a timer) and settles the heap. */
export async function settle(): Promise<void> {
  await yieldToLoop();
  collect();
}

/** A timed loop: runs `n` calls and returns the elapsed milliseconds. */
export type TimedLoop = (n: number) => Promise<number>;

export interface TimeCase {
  /** Metric name of the result, e.g. `spofless_success_ns`. */
  readonly name: string;
  readonly run: TimedLoop;
}

/**
 * Times every case `reps` times, interleaved (A B C D, A B C D, ...) so that machine noise hits all
 * cases alike, after `warmups` discarded rounds. Returns the median ns/op per case, and every sample.
 */
export async function timeInterleaved(
  cases: readonly TimeCase[],
  { n, reps, warmups }: { n: number; reps: number; warmups: number },
): Promise<{ medians: Map<string, number>; samples: Map<string, number[]> }> {
  const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let round = -warmups; round < reps; round++) {
    for (const c of cases) {
      // A turn of the event loop (opossum rotates its buckets on a timer), but no forced GC: a full GC
      // throws away optimised code that embeds objects which died, so forcing one before every sample
      // would measure re-optimisation, which a real service pays once per (rare) full GC, not per call.
      await yieldToLoop();
      const ms = await c.run(n);
      if (round >= 0) samples.get(c.name)!.push((ms * 1e6) / n);
    }
  }
  const medians = new Map<string, number>();
  for (const [name, xs] of samples) medians.set(name, median(xs));
  return { medians, samples };
}

/**
 * Bytes per object: `make` builds `n` objects that stay reachable from the returned holder; the heap
 * is collected before and after, and the delta is divided by `n`. The delta is `heapUsed` plus
 * `arrayBuffers`: a typed array over 64 bytes keeps its contents outside the JS heap, and leaving
 * that out would flatter whoever uses typed arrays.
 */
export async function heapPerObject(n: number, make: (n: number) => Promise<unknown>): Promise<number> {
  const used = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  await settle();
  const before = used();
  const holder = await make(n);
  await settle();
  const after = used();
  // Read the holder after the second measurement so it cannot be collected before it.
  keepAlive(holder);
  return (after - before) / n;
}

let kept: unknown;
/** Keeps a value reachable until `releaseKept()` (so neither the optimiser nor the GC can drop it early). */
export function keepAlive(value: unknown): void {
  kept = value;
}
/** Lets go of what `keepAlive` held, and returns it. */
export function releaseKept(): unknown {
  const k = kept;
  kept = undefined;
  return k;
}

export function formatNs(ns: number): string {
  return ns >= 100 ? ns.toFixed(0) : ns.toFixed(1);
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(2)} KiB`;
  return `${bytes.toFixed(0)} B`;
}

/** Renders rows as a left-aligned first column and right-aligned others. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export interface Target {
  readonly metric: string;
  readonly max: number;
  readonly show: (v: number) => string;
}

/** Prints each target with PASS/FAIL; returns how many failed. */
export function printTargets(metrics: Readonly<Record<string, number>>, targets: readonly Target[]): number {
  let failed = 0;
  const rows = targets.map((t) => {
    const v = metrics[t.metric];
    const ok = v !== undefined && Number.isFinite(v) && v <= t.max;
    if (!ok) failed++;
    return [t.metric, v === undefined ? 'missing' : t.show(v), `<= ${t.show(t.max)}`, ok ? 'PASS' : 'FAIL'];
  });
  console.log(table(['target', 'measured', 'limit', ''], rows));
  return failed;
}

/** The 1-minute load average now: a figure well above the CPU count means the timings are noisy. */
export function load(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

export function machine(): { cpuModel: string; cpuCount: number; totalmem: number; platform: string; arch: string } {
  const cs = cpus();
  return { cpuModel: cs[0]?.model.trim() ?? 'unknown', cpuCount: cs.length, totalmem: totalmem(), platform: platform(), arch: arch() };
}

/**
 * The commit measured, and whether `paths` (the code the area measures) had uncommitted changes, in
 * which case the numbers are for that commit plus those changes.
 */
export function sourceVersion(paths: readonly string[] = ['src']): { commit: string; paths: readonly string[]; dirty: boolean } {
  const git = (...a: string[]): string => spawnSync('git', a, { cwd: new URL('..', import.meta.url), encoding: 'utf8' }).stdout?.trim() ?? '';
  return { commit: git('rev-parse', 'HEAD') || 'unknown', paths, dirty: git('status', '--porcelain', '--', ...paths) !== '' };
}

/** Writes `bench/results/<area>.json`; `extra` adds top-level fields (or replaces `source`). */
export function writeResults(
  area: string,
  metrics: Readonly<Record<string, number>>,
  settings: Readonly<Record<string, number>>,
  extra: Readonly<Record<string, unknown>> = {},
): string {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`${area}.json`, dir);
  const body = { date: new Date().toISOString(), node: process.version, machine: machine(), source: sourceVersion(), settings, ...extra, metrics };
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  return file.pathname;
}
