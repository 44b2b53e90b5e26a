/**
 * Flags benchmark (`npm run bench:flags`).
 *
 * 1. Evaluation: the flag of bench/flags/five-rules.flagd.json (five targeting rules, then a 30%
 *    rollout) evaluated for contexts that miss every rule and land in the rollout (the longest path:
 *    five rules tested, then a murmur3 hash), by spofless (`FlagSet`, the flag imported from that very
 *    file) and by `@openfeature/flagd-core` on the file itself, interleaved in the same run. 1,024
 *    different contexts rotate so the hash is not of one string. Both answers are checked equal first.
 * 2. Propagation: a control plane (its own process) and 1,000 `FlagClient`s (in 4 processes of 250,
 *    each SDK with its own client, watch stream and TCP connection). The benchmark toggles a flag through the
 *    HTTP API; for each toggle, the time from the API's acknowledgement (the response read here) to
 *    the moment each SDK applied the change (CLOCK_MONOTONIC, comparable across processes).
 *
 * Three rounds of each (propagation after one uncounted warm-up round); every figure is the median of
 * the three rounds' figures.
 * Targets: eval_ns ≤ 1000, eval_ratio_vs_flagd ≤ 1/3 (≥ 3× faster), propagation_p99_ms ≤ 100.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlagdCore } from '@openfeature/flagd-core';
import type * as Flags from '../src/flags/index.js';
import { formatNs, importSpofless, load, median, parseArgs, printTargets, table, timeInterleaved, writeResults, type TimeCase } from './harness.js';

const args = parseArgs();
const root = new URL('..', import.meta.url).pathname;
const { FlagSet, fromFlagd } = await importSpofless<typeof Flags>('flags/index.js');

const monoMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;
const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

const ROUNDS = 3;
const loadStart = load();

// ---- 1. evaluation ---------------------------------------------------------------------------------

const DOC = readFileSync(new URL('./flags/five-rules.flagd.json', import.meta.url), 'utf8');
const KEY = 'new-checkout';
const set = new FlagSet();
for (const f of fromFlagd(JSON.parse(DOC)).flags) set.setFlag(f);
const core = new FlagdCore();
core.setConfigurations(DOC);

/** Contexts that miss all five rules: not blocked, not @acme.com, not (de and 18+), app < 3.2.0, not enterprise. */
const misses = Array.from({ length: 1024 }, (_, i) => ({ targetingKey: `user-${i * 7919}`, email: `user${i}@example.org`, country: 'fr', age: 30 + (i % 20), appVersion: '3.1.4', plan: 'pro' }));
/** Contexts that match the second rule (an early exit). */
const hits = misses.map((c) => ({ ...c, email: c.email.replace('@example.org', '@acme.com') }));

for (const ctxs of [misses, hits]) {
  for (const ctx of ctxs) {
    const ours = set.evaluate(KEY, false, ctx, 'boolean');
    const theirs = core.resolveBooleanEvaluation(KEY, false, ctx);
    if (ours.value !== theirs.value || ours.variant !== theirs.variant) throw new Error(`spofless and flagd-core disagree on ${JSON.stringify(ctx)}: ${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
  }
}

let sink = 0;
function spoflessLoop(ctxs: typeof misses): TimeCase['run'] {
  return (n) => {
    let on = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (set.evaluate(KEY, false, ctxs[i & 1023], 'boolean').value) on++;
    const ms = performance.now() - t0;
    sink += on;
    return Promise.resolve(ms);
  };
}
function flagdLoop(ctxs: typeof misses): TimeCase['run'] {
  return (n) => {
    let on = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (core.resolveBooleanEvaluation(KEY, false, ctxs[i & 1023]).value) on++;
    const ms = performance.now() - t0;
    sink += on;
    return Promise.resolve(ms);
  };
}

const evalRounds: Array<Map<string, number>> = [];
for (let round = 0; round < ROUNDS; round++) {
  const { medians } = await timeInterleaved(
    [
      { name: 'spofless', run: spoflessLoop(misses) },
      { name: 'flagd', run: flagdLoop(misses) },
      { name: 'spofless_hit', run: spoflessLoop(hits) },
      { name: 'flagd_hit', run: flagdLoop(hits) },
    ],
    args.quick ? { n: 2_000, reps: 3, warmups: 1 } : { n: 100_000, reps: 7, warmups: 2 },
  );
  evalRounds.push(medians);
}
const evalMedian = (name: string): number => median(evalRounds.map((m) => m.get(name)!));
const evalNs = evalMedian('spofless');
const flagdNs = evalMedian('flagd');
const hitNs = evalMedian('spofless_hit');
const flagdHitNs = evalMedian('flagd_hit');
if (sink < 0) console.log(sink);

console.log(`\nflag evaluation (5 rules + 30% rollout), ns per evaluation, median of ${ROUNDS} rounds`);
console.log(
  table(
    ['path', 'spofless', 'flagd-core', 'spofless ÷ flagd'],
    [
      ['all 5 rules miss, rollout bucket', formatNs(evalNs), formatNs(flagdNs), (evalNs / flagdNs).toFixed(3)],
      ['rule 2 matches', formatNs(hitNs), formatNs(flagdHitNs), (hitNs / flagdHitNs).toFixed(3)],
    ],
  ),
);

// ---- 2. propagation --------------------------------------------------------------------------------

const SDKS = args.quick ? 100 : 1_000;
/** The SDKs run in this many processes (as services would, each with its own event loop), SDKS / SDK_PROCS each. */
const SDK_PROCS = 4;
const TOGGLES = args.quick ? 5 : 20;
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

type Msg = { type: string; [k: string]: unknown };
function child(file: string, argv: string[]): { proc: ChildProcess; next: (type: string, timeoutMs: number, match?: (m: Msg) => boolean) => Promise<Msg> } {
  const proc = spawn(process.execPath, [join(root, file), ...argv], { cwd: root, stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: process.env });
  children.add(proc);
  const inbox: Msg[] = [];
  const waiters: Array<{ type: string; match: (m: Msg) => boolean; resolve: (m: Msg) => void }> = [];
  proc.on('message', (m: Msg) => {
    if (m.type === 'error') console.error(`${file}: ${String(m.message)}`);
    const i = waiters.findIndex((w) => w.type === m.type && w.match(m));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
    else inbox.push(m);
  });
  const next = (type: string, timeoutMs: number, match: (m: Msg) => boolean = () => true): Promise<Msg> => {
    const i = inbox.findIndex((m) => m.type === type && match(m));
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = { type, match, resolve: (m: Msg) => (clearTimeout(timer), resolve(m)) };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${file}: no '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.push(w);
    });
  };
  return { proc, next };
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<{ revision: number }> {
  const res = await fetch(url + path, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const json = (await res.json()) as { revision: number };
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const dir = mkdtempSync(join(tmpdir(), 'spofless-bench-flags-'));
const p99s: number[] = [];
const p50s: number[] = [];
const maxes: number[] = [];
let connectMs = 0;
try {
  const server = child('bench/flags/server.mjs', [join(dir, 'cp')]);
  const up = await server.next('up', 30_000);
  const url = String(up.url);
  await api(url, 'PUT', '/v1/flags/bench/flags/toggle', { key: 'toggle', type: 'boolean', enabled: true, variants: { on: true, off: false }, defaultVariant: 'off' });
  const per = Math.ceil(SDKS / SDK_PROCS);
  const sdkProcs = Array.from({ length: SDK_PROCS }, (_, i) => child('bench/flags/sdks.mjs', [url, 'bench', String(Math.min(per, SDKS - i * per))]));
  const readies = await Promise.all(sdkProcs.map((p) => p.next('ready', 180_000)));
  connectMs = Math.max(...readies.map((r) => Number(r.ms)));
  console.log(`\n${SDKS} SDKs (${SDK_PROCS} processes) synced and streaming in ${connectMs.toFixed(0)} ms`);
  // Round 0 warms up (JIT in the SDK processes and the server, first-use allocations) and is not counted.
  for (let round = -1; round < ROUNDS; round++) {
    const samples: number[] = [];
    let missing = 0;
    for (let t = 0; t < TOGGLES; t++) {
      await new Promise((r) => setTimeout(r, 150));
      const { revision } = await api(url, 'POST', `/v1/flags/bench/flags/toggle/${t % 2 === 0 ? 'off' : 'on'}`);
      const ack = monoMs();
      const got = await Promise.all(
        sdkProcs.map((p) =>
          p.next('received', 10_000, (m) => m.revision === revision).catch(async () => {
            p.proc.send({ type: 'flush', revision });
            return p.next('received', 5_000, (m) => m.revision === revision);
          }),
        ),
      );
      const at = got.flatMap((g) => g.at as number[]);
      missing += SDKS - at.length;
      // A receipt can precede the acknowledgement (the event beat the HTTP answer): that is 0 ms late.
      for (const a of at) samples.push(Math.max(0, a - ack));
    }
    if (missing > 0) throw new Error(`round ${round + 1}: ${missing} receipts missing`);
    if (round < 0) {
      console.log(`warm-up: ${samples.length} receipts, p99 ${percentile(samples, 99).toFixed(1)} ms (not counted)`);
      continue;
    }
    p99s.push(percentile(samples, 99));
    p50s.push(percentile(samples, 50));
    maxes.push(Math.max(...samples));
    console.log(`round ${round + 1}: ${samples.length} receipts, p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms`);
  }
  server.proc.send('close');
  for (const p of sdkProcs) p.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

const metrics = {
  eval_ns: Math.round(evalNs * 10) / 10,
  flagd_eval_ns: Math.round(flagdNs * 10) / 10,
  eval_ratio_vs_flagd: Math.round((evalNs / flagdNs) * 1000) / 1000,
  eval_rule_hit_ns: Math.round(hitNs * 10) / 10,
  flagd_eval_rule_hit_ns: Math.round(flagdHitNs * 10) / 10,
  propagation_p50_ms: Math.round(median(p50s) * 10) / 10,
  propagation_p99_ms: Math.round(median(p99s) * 10) / 10,
  propagation_max_ms: Math.round(median(maxes) * 10) / 10,
  sdk_connect_ms: Math.round(connectMs),
};
console.log(`\nspofless ÷ flagd-core: ${metrics.eval_ratio_vs_flagd} (${(1 / metrics.eval_ratio_vs_flagd).toFixed(1)}x faster); propagation to ${SDKS} SDKs: p99 ${metrics.propagation_p99_ms} ms (median of ${ROUNDS} rounds' p99)\n`);
const failed = printTargets(metrics, [
  { metric: 'eval_ns', max: 1000, show: (v) => `${v.toFixed(1)} ns` },
  { metric: 'eval_ratio_vs_flagd', max: 1 / 3, show: (v) => v.toFixed(3) },
  { metric: 'propagation_p99_ms', max: 100, show: (v) => `${v.toFixed(1)} ms` },
]);
const loadEnd = load();
console.log(`load average: ${loadStart} at the start, ${loadEnd} at the end`);
if (!args.noWrite) {
  const file = writeResults(
    'flags',
    metrics,
    { rounds: ROUNDS, eval_n: 100_000, eval_reps: 7, contexts: 1024, sdks: SDKS, sdk_processes: SDK_PROCS, toggles_per_round: TOGGLES },
    { load: { start: loadStart, end: loadEnd }, source: { ...(await import('./harness.js')).sourceVersion(['src/flags', 'src/client', 'src/server']) } },
  );
  console.log(`wrote ${file}`);
}
if (args.check && failed > 0) process.exitCode = 1;
