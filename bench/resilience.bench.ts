/**
 * `npm run bench:resilience`: what a circuit breaker costs per call, spofless against a bare
 * `await fn()`, opossum@9 and cockatiel@3's sampling breaker, on the success path, the failure path
 * and an open circuit; plus heap per idle breaker and for 100,000 keys in a `BreakerGroup`.
 *
 * Method (bench/README.md says how to read the output):
 * - Every timed case is the same loop, `for (let i = 0; i < n; i++) await x()`, timed with
 *   `performance.now()` around the whole loop and divided by `n`. Each case has its own loop
 *   function, so no call site is shared between candidates (a shared one would go polymorphic and
 *   slow down whoever runs second).
 * - Cases are interleaved (A B C D, A B C D, ...) after warm-up rounds, with a turn of the event
 *   loop before each (no forced GC: see timeInterleaved), so noise and timers hit every candidate
 *   alike; the median is reported. spofless is loaded as compiled JavaScript (see run-bench.mjs).
 * - Heap per breaker counts `heapUsed` plus `arrayBuffers`, after a full GC, for breakers that have
 *   each served one call; the group's figure includes its key strings.
 * - The operations are the same for everyone: `ok` is an async function returning a number; `fail`
 *   rejects with one pre-built Error, so stack capture is not what is measured.
 * - Peers are configured like spofless: 10 s window in 10 buckets, 50 % failure threshold, 20 calls
 *   before the rate counts, 5 s open (1 h for the open-circuit case, so it stays open). The
 *   failure-path breakers need a minimum volume they never reach, so they record failures while
 *   staying closed; a check at the end verifies each breaker is still in the state it was measured in.
 */
import { performance } from 'node:perf_hooks';
import Opossum from 'opossum';
import { circuitBreaker, handleAll, SamplingBreaker, CircuitState, type CircuitBreakerPolicy } from 'cockatiel';
import type * as Resilience from '../src/resilience/index.js';
import {
  parseArgs,
  timeInterleaved,
  heapPerObject,
  printTargets,
  table,
  formatNs,
  formatBytes,
  writeResults,
  machine,
  releaseKept,
  median,
  importSpofless,
  load,
  sourceVersion,
  type TimeCase,
  type Target,
} from './harness.js';

const args = parseArgs();
const settings = args.quick
  ? { n: 20_000, reps: 2, warmups: 1, idleBreakers: 2_000, groupKeys: 100_000, memoryReps: 1 }
  : { n: 200_000, reps: 9, warmups: 2, idleBreakers: 10_000, groupKeys: 100_000, memoryReps: 5 };

const HOUR = 3_600_000;
/** More calls than any run makes: a breaker with this minimum volume never opens. */
const NEVER = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// The operations.

const ok = async (): Promise<number> => 1;
// One pre-built error: building an Error captures a stack (~1 µs), which would drown the breakers.
// Even so the failure path costs microseconds for everyone: `fail()` returns a promise that is
// rejected before anyone listens, and Node's unhandled-rejection tracking pays two C++-to-JS calls.
const FAILURE = new Error('benchmark failure');
const fail = async (): Promise<number> => {
  throw FAILURE;
};
const RESOLVED: Promise<number> = Promise.resolve(1);

// ---------------------------------------------------------------------------------------------
// spofless: time window, failure-rate and slow-call detection on.

const { CircuitBreaker, BreakerGroup } = await importSpofless<typeof Resilience>('resilience/index.js');

const SPOFLESS: Resilience.CircuitBreakerOptions = {
  window: { type: 'time', duration: 10_000, buckets: 10 },
  minimumCalls: 20,
  failureRateThreshold: 0.5,
  slowCallDuration: 1_000,
  slowCallRateThreshold: 0.8,
  openDuration: 5_000,
  halfOpenProbes: 3,
};

const sSuccess = new CircuitBreaker(SPOFLESS);
const sFailure = new CircuitBreaker({ ...SPOFLESS, minimumCalls: NEVER });
const sOpen = new CircuitBreaker({ ...SPOFLESS, openDuration: HOUR });

// ---------------------------------------------------------------------------------------------
// Peers.

function cockatiel(options: { minimumRps?: number; halfOpenAfter?: number } = {}): CircuitBreakerPolicy {
  return circuitBreaker(handleAll, {
    halfOpenAfter: options.halfOpenAfter ?? 5_000,
    // minimumRps 2 over 10 s = at least 20 calls in the window, like spofless's minimumCalls.
    breaker: new SamplingBreaker({ threshold: 0.5, duration: 10_000, minimumRps: options.minimumRps ?? 2 }),
  });
}

type OpossumOptions = ConstructorParameters<typeof Opossum>[1];
function opossum(
  action: () => Promise<number>,
  overrides: Partial<NonNullable<OpossumOptions>> = {},
): Opossum<[], number> {
  return new Opossum<[], number>(action, {
    errorThresholdPercentage: 50,
    resetTimeout: 5_000,
    volumeThreshold: 20,
    rollingCountTimeout: 10_000,
    rollingCountBuckets: 10,
    cache: false,
    // spofless's breaker enforces no timeout (that is the separate Timeout policy), so opossum's
    // per-call timer is off here; the `opossum_timeout_*` case shows opossum with its default 10 s.
    timeout: false,
    // With percentiles on (the default), every failure concatenates and sorts the latency of every
    // call in the window (opossum's `fail` reads `stats`), so its failure path costs O(calls in the
    // last 10 s) and a benchmark of it measures its own length. spofless keeps no percentiles.
    rollingPercentilesEnabled: false,
    ...overrides,
  });
}

const cbSuccess = cockatiel();
const cbFailure = cockatiel({ minimumRps: NEVER });
const cbOpen = cockatiel({ halfOpenAfter: HOUR });

const opSuccess = opossum(ok);
const opTimeoutSuccess = opossum(ok, { timeout: 10_000 });
const opFailure = opossum(fail, { volumeThreshold: NEVER });
const opOpen = opossum(fail, { resetTimeout: HOUR });
const opossums = [opSuccess, opTimeoutSuccess, opFailure, opOpen];

/** Drives real failures until the breaker reports open, so 'open' (not a forced state) is measured. */
async function tripOpen(call: () => Promise<unknown>, isOpen: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1_000 && !isOpen(); i++) {
    try {
      await call();
    } catch {
      // expected: these are the failures that open it
    }
  }
  if (!isOpen()) throw new Error(`${what} did not open after 1000 failures`);
}

await tripOpen(() => sOpen.execute(fail), () => sOpen.state === 'open', 'spofless');
await tripOpen(() => cbOpen.execute(fail), () => cbOpen.state === CircuitState.Open, 'cockatiel');
await tripOpen(() => opOpen.fire(), () => opOpen.opened, 'opossum');

// ---------------------------------------------------------------------------------------------
// The timed loops: one function per case, all the same shape.

const cases: TimeCase[] = [
  // success path
  {
    name: 'bare_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await ok();
      return performance.now() - t0;
    },
  },
  {
    name: 'spofless_success_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await sSuccess.execute(ok);
      return performance.now() - t0;
    },
  },
  {
    name: 'spofless_try_success_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await sSuccess.tryExecute(ok);
      return performance.now() - t0;
    },
  },
  {
    name: 'cockatiel_success_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await cbSuccess.execute(ok);
      return performance.now() - t0;
    },
  },
  {
    name: 'opossum_success_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await opSuccess.fire();
      return performance.now() - t0;
    },
  },
  {
    name: 'opossum_timeout_success_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await opTimeoutSuccess.fire();
      return performance.now() - t0;
    },
  },
  // failure path (breakers stay closed)
  {
    name: 'bare_failure_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await fail();
        } catch {
          // the failure is the point
        }
      }
      return performance.now() - t0;
    },
  },
  {
    name: 'spofless_failure_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await sFailure.execute(fail);
        } catch {
          // the failure is the point
        }
      }
      return performance.now() - t0;
    },
  },
  {
    name: 'cockatiel_failure_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await cbFailure.execute(fail);
        } catch {
          // the failure is the point
        }
      }
      return performance.now() - t0;
    },
  },
  {
    name: 'opossum_failure_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await opFailure.fire();
        } catch {
          // the failure is the point
        }
      }
      return performance.now() - t0;
    },
  },
  // open circuit
  {
    name: 'bare_resolved_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await RESOLVED;
      return performance.now() - t0;
    },
  },
  {
    name: 'spofless_open_result_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await sOpen.tryExecute(ok);
      return performance.now() - t0;
    },
  },
  {
    name: 'spofless_open_throw_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await sOpen.execute(ok);
        } catch {
          // BrokenCircuitError is the point
        }
      }
      return performance.now() - t0;
    },
  },
  {
    name: 'cockatiel_open_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await cbOpen.execute(ok);
        } catch {
          // BrokenCircuitError is the point
        }
      }
      return performance.now() - t0;
    },
  },
  {
    name: 'opossum_open_ns',
    run: async (n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        try {
          await opOpen.fire();
        } catch {
          // 'Breaker is open' is the point
        }
      }
      return performance.now() - t0;
    },
  },
];

/** Every breaker must still be in the state it was measured in, or the numbers mean something else. */
function checkStates(): void {
  const problems: string[] = [];
  if (sSuccess.state !== 'closed') problems.push(`spofless success breaker is ${sSuccess.state}, not closed`);
  if (sFailure.state !== 'closed') problems.push(`spofless failure breaker is ${sFailure.state}, not closed`);
  if (sOpen.state !== 'open') problems.push(`spofless open breaker is ${sOpen.state}, not open`);
  if (cbSuccess.state !== CircuitState.Closed) problems.push('cockatiel success breaker is not closed');
  if (cbFailure.state !== CircuitState.Closed) problems.push('cockatiel failure breaker is not closed');
  if (cbOpen.state !== CircuitState.Open) problems.push('cockatiel open breaker is not open');
  if (!opSuccess.closed || !opTimeoutSuccess.closed) problems.push('opossum success breaker is not closed');
  if (!opFailure.closed) problems.push('opossum failure breaker is not closed');
  if (!opOpen.opened) problems.push('opossum open breaker is not open');
  if (problems.length > 0) throw new Error(`benchmark invalid: ${problems.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// Memory.

/**
 * Heap per breaker: `n` breakers are made and each serves one successful call (so state made on first
 * use is counted too: a breaker that sits idle in a real service has served calls), then the heap
 * delta is divided by `n`. Median of `memoryReps` repetitions.
 */
async function idleBytes<B>(make: () => B, call: ((b: B) => Promise<unknown>) | undefined, dispose?: (b: B) => void): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < settings.memoryReps; r++) {
    let made: B[] = [];
    samples.push(
      await heapPerObject(settings.idleBreakers, async (n) => {
        made = new Array<B>(n);
        for (let i = 0; i < n; i++) made[i] = make();
        if (call !== undefined) for (let i = 0; i < n; i++) await call(made[i]!);
        return made;
      }),
    );
    if (dispose !== undefined) for (const b of made) dispose(b);
    releaseKept();
  }
  return median(samples);
}

/** Heap for `groupKeys` keys in one BreakerGroup, each touched by one successful call; key strings included. */
async function groupBytes(): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < settings.memoryReps; r++) {
    samples.push(
      settings.groupKeys *
        (await heapPerObject(settings.groupKeys, async (n) => {
          const group = new BreakerGroup({ maxKeys: 200_000, idleTtl: 60_000, breaker: SPOFLESS });
          for (let i = 0; i < n; i++) await group.execute(`tenant-${i}`, ok);
          if (group.size !== n) throw new Error(`benchmark invalid: group holds ${group.size} keys, expected ${n}`);
          return group;
        })),
    );
    releaseKept();
  }
  return median(samples);
}

// ---------------------------------------------------------------------------------------------
// Run.

const loadStart = load();
console.log(
  `resilience: ${settings.n.toLocaleString('en')} calls per sample, median of ${settings.reps} interleaved samples ` +
    `after ${settings.warmups} warm-up rounds; node ${process.version}, load average ${loadStart} on ${machine().cpuCount} CPUs` +
    `${args.quick ? ' (--quick: results not written)' : ''}`,
);

const first = await sOpen.tryExecute(ok);
if (first.ok) throw new Error('benchmark invalid: an open spofless breaker ran the call');
checkStates();
const { medians, samples } = await timeInterleaved(cases, settings);
checkStates();
for (const b of opossums) b.shutdown();

const metrics: Record<string, number> = {};
const ns = (name: string): number => {
  const v = medians.get(name);
  if (v === undefined) throw new Error(`no timing for ${name}`);
  return v;
};
const RATIOS = {
  success_ratio_vs_bare: ['spofless_success_ns', 'bare_ns'],
  ratio_vs_cockatiel: ['spofless_success_ns', 'cockatiel_success_ns'],
  ratio_vs_opossum: ['spofless_success_ns', 'opossum_success_ns'],
  open_reject_ratio_vs_bare: ['spofless_open_result_ns', 'bare_resolved_ns'],
} as const;
for (const [metric, [a, b]] of Object.entries(RATIOS)) metrics[metric] = ns(a) / ns(b);
// The same ratios from each case's fastest sample. On a busy machine noise inflates a short baseline
// (the bare await) more than a longer call, which flatters the median ratios; the fastest samples are
// closer to the quiet-machine figure. Reported beside the metrics, not as them.
const fastest = (name: string): number => Math.min(...(samples.get(name) ?? [NaN]));
const minRatios: Record<string, number> = {};
for (const [metric, [a, b]] of Object.entries(RATIOS)) minRatios[metric] = round(fastest(a) / fastest(b), 3);

metrics.idle_breaker_bytes = await idleBytes(() => new CircuitBreaker(SPOFLESS), (b) => b.execute(ok));
metrics.group_100k_bytes = await groupBytes();
metrics.fresh_breaker_bytes = await idleBytes(() => new CircuitBreaker(SPOFLESS), undefined);
// Breakers made from one options object may share its validated copy; one made from its own object
// (options written inline at each `new`) carries its own.
metrics.idle_breaker_own_options_bytes = await idleBytes(() => new CircuitBreaker({ ...SPOFLESS }), (b) => b.execute(ok));
metrics.cockatiel_idle_breaker_bytes = await idleBytes(() => cockatiel(), (b) => b.execute(ok));
metrics.opossum_idle_breaker_bytes = await idleBytes(
  () => opossum(ok),
  (b) => b.fire(),
  (b) => b.shutdown(),
);

for (const [name, v] of medians) metrics[name] = v;
for (const k of Object.keys(metrics)) metrics[k] = round(metrics[k]!, k.includes('ratio') ? 3 : k.endsWith('_bytes') ? 0 : 1);

// ---------------------------------------------------------------------------------------------
// Report.

const PATHS = [
  { title: 'success', bare: 'bare_ns', of: (who: string) => `${who}_success_ns` },
  { title: 'failure', bare: 'bare_failure_ns', of: (who: string) => `${who}_failure_ns` },
  { title: 'open (throws)', bare: 'bare_resolved_ns', of: (who: string) => (who === 'spofless' ? 'spofless_open_throw_ns' : `${who}_open_ns`) },
] as const;

console.log('\nns/op, median (min-max) of the samples; x = times the bare await of the same path\n');
const cell = (name: string, base: number): string => {
  const xs = samples.get(name);
  const v = medians.get(name);
  if (xs === undefined || v === undefined) return '-';
  return `${formatNs(v)} (${formatNs(Math.min(...xs))}-${formatNs(Math.max(...xs))}) ${(v / base).toFixed(2)}x`;
};
console.log(
  table(
    ['path', 'bare await', 'spofless', 'cockatiel', 'opossum'],
    PATHS.map((p) => {
      const base = ns(p.bare);
      return [p.title, cell(p.bare, base), cell(p.of('spofless'), base), cell(p.of('cockatiel'), base), cell(p.of('opossum'), base)];
    }),
  ),
);
console.log(
  [
    '',
    `spofless tryExecute, success:      ${cell('spofless_try_success_ns', ns('bare_ns'))}`,
    `spofless tryExecute, open circuit: ${cell('spofless_open_result_ns', ns('bare_resolved_ns'))} (vs await of a resolved promise)`,
    `opossum with its default 10 s timeout, success: ${cell('opossum_timeout_success_ns', ns('bare_ns'))}`,
    '',
  ].join('\n'),
);

console.log('spofless / peer, same path (below 1 = spofless is faster)\n');
console.log(
  table(
    ['path', 'vs cockatiel', 'vs opossum'],
    PATHS.map((p) => [p.title, ...['cockatiel', 'opossum'].map((who) => (ns(p.of('spofless')) / ns(p.of(who))).toFixed(3))]),
  ),
);

console.log('\nheap per breaker (each has served one call)\n');
console.log(
  table(
    ['', 'bytes'],
    [
      ['spofless', formatBytes(metrics.idle_breaker_bytes)],
      ['spofless, never called', formatBytes(metrics.fresh_breaker_bytes)],
      ['spofless, each from its own options object', formatBytes(metrics.idle_breaker_own_options_bytes)],
      ['cockatiel', formatBytes(metrics.cockatiel_idle_breaker_bytes)],
      ['opossum', formatBytes(metrics.opossum_idle_breaker_bytes)],
      [`spofless BreakerGroup, ${settings.groupKeys.toLocaleString('en')} keys (total)`, formatBytes(metrics.group_100k_bytes)],
    ],
  ),
);
console.log();

const ratio = (v: number): string => v.toFixed(3);
const targets: Target[] = [
  { metric: 'success_ratio_vs_bare', max: 2.0, show: ratio },
  { metric: 'ratio_vs_cockatiel', max: 0.5, show: ratio },
  { metric: 'ratio_vs_opossum', max: 0.2, show: ratio },
  { metric: 'open_reject_ratio_vs_bare', max: 1.3, show: ratio },
  { metric: 'idle_breaker_bytes', max: 1024, show: formatBytes },
  { metric: 'group_100k_bytes', max: 100 * 1024 * 1024, show: formatBytes },
];
const failed = printTargets(metrics, targets);
console.log(
  `\nthe same ratios from the fastest sample of each case: ${Object.entries(minRatios)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ')}`,
);

const loadEnd = load();
console.log(`\nload average ${loadStart} at the start, ${loadEnd} at the end (${machine().cpuCount} CPUs)`);
if (!args.noWrite) {
  const file = writeResults('resilience', metrics, settings, {
    source: sourceVersion(['src/resilience', 'src/errors']),
    load: { start: loadStart, end: loadEnd },
    fastest_sample_ratios: minRatios,
  });
  console.log(`wrote ${file}`);
}
if (args.check && failed > 0) process.exitCode = 1;

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
