/**
 * `npm run bench:coordinator`: spofless's control plane against a single-node etcd (Debian's
 * etcd-server 3.4, started here on loopback by test/support/etcd.ts), in the same run:
 *
 * 1. **Durable puts per second** at 1 and 64 concurrent clients: spofless through its HTTP API with
 *    its own client (`ControlPlaneClient.put`, one `PUT /v1/kv` per put on keep-alive connections, one
 *    per concurrent call) against etcd through its client `etcd3` (64 concurrent calls on its one gRPC
 *    channel, as etcd3 is used). For context: the same puts through a bare undici keep-alive `Pool`
 *    (`spofless_undici_puts_*`, what any HTTP client pays), and spofless's SQLite store called
 *    directly (no HTTP). Each sample runs for a fixed time; the candidates take turns (A B C D,
 *    B C D A, ...) after a discarded warm-up round, and the median of the rounds is reported. Both sides acknowledge a put only once it is on disk
 *    (etcd: fsync of its WAL; spofless: SQLite WAL with synchronous=FULL), on the same filesystem.
 * 2. **Watch fan-out**: 1,000 subscribers on one prefix (spofless: 1,000 SSE connections to
 *    `GET /v1/watch?prefix=`; etcd: 1,000 etcd3 watchers). Subscribers live in a process of their
 *    own per system (bench/coordinator/watchers.ts), so the put's acknowledgement is not delayed by
 *    the receipts; latency = receipt − acknowledgement on CLOCK_MONOTONIC (shared by processes),
 *    clamped at 0 (a subscriber can be told before the writer). Puts alternate between the systems,
 *    each waiting for all receipts; a subscriber that never receives counts as an infinite latency.
 *    p50/p99 are over the 20 puts × 1,000 receipts of a round; the median of the rounds is reported.
 * 3. **Heartbeats**: 10,000 instances registered with TTL 10 s, each keeping its lease alive from a
 *    separate load process (bench/coordinator/heartbeats.ts) the way the SDK does: each instance is
 *    its own SDK process, so it has its own lease keep-alive stream (`POST /v1/leases/keepalive`,
 *    10,000 streams on 10,000 sockets) and writes one NDJSON line per renewal every TTL/3 minus up to
 *    20% jitter (≈ 3,300 renewals/s), reading its answers; failed renewals, lost leases, broken streams
 *    and per-request fallbacks are counted. `SPOFLESS_BENCH_HB_MODE=request` runs the earlier load
 *    instead: one `POST /v1/leases/{id}/keepalive` per renewal at exactly TTL/3 (≈ 3,000/s), each
 *    instance on its own keep-alive connection. The mode is recorded in the results file
 *    (`heartbeatMode`). Measured: the control plane's CPU (utime + stime of all its threads,
 *    /proc/<pid>/stat) over consecutive 5 s windows as a share of one core (median), and its RSS.
 *
 * The control plane runs as its own process (bench/coordinator/server.mjs, plain node, the compiled
 * build), so its CPU and memory are its own. Every process started is killed at the end, also on
 * error; the run is bounded (it gives up after 5 minutes). The machine may be shared: the load
 * average at the start and end is printed and recorded.
 *
 * Environment (for investigation; the results file is written only by a full run):
 * - `SPOFLESS_BENCH_CPU_PROF=<dir>`: run the control plane with `--cpu-prof` into <dir>.
 * - `SPOFLESS_BENCH_ONLY=puts|fanout|heartbeat|etcd`: run one part (`etcd`: the etcd engine, bench/coordinator/etcd.ts).
 * - `SPOFLESS_BENCH_LOGGER=off`: run the control plane without its request log (default on).
 * - `SPOFLESS_BENCH_HB_MODE=stream|request`: how the heartbeat load renews (default `stream`, as the
 *   SDK); a full run in either mode writes the results file, which records the mode.
 * - `SPOFLESS_BENCH_HB_CONNECTIONS=<n>`: the heartbeat load shares n streams (or connections, in
 *   request mode) instead of one per instance.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { Pool } from 'undici';
import type * as ClientModule from '../src/client/index.js';
import type * as StoreModule from '../src/store/index.js';
import { etcdVersion, startEtcd, type EtcdCluster } from '../test/support/etcd.js';
import { parseArgs, median, table, writeResults, load, importSpofless } from './harness.js';
import {
  type HeartbeatMode,
  cpuSeconds,
  httpPut,
  monoMs,
  fmt,
  percentile,
  putRows,
  rssMiB,
  throughput,
  VALUE_PREFIX,
  type HeartbeatsIn,
  type HeartbeatsOut,
  type HeartbeatStats,
  type WatchersIn,
  type WatchersOut,
} from './coordinator/common.js';
import { benchEtcdEngine } from './coordinator/etcd.js';

const args = parseArgs();
const settings = args.quick
  ? { putSampleMs: 500, putReps: 1, putWarmups: 1, subscribers: 100, fanoutPuts: 5, fanoutReps: 1, instances: 1_000, ttl: 10, cpuWindows: 1, cpuWindowMs: 3_000, heartbeatWarmupMs: 1_000 }
  : { putSampleMs: 2_000, putReps: 5, putWarmups: 1, subscribers: 1_000, fanoutPuts: 20, fanoutReps: 3, instances: 10_000, ttl: 10, cpuWindows: 4, cpuWindowMs: 5_000, heartbeatWarmupMs: 5_000 };
const VALUE_BYTES = 128;
// One connection per instance, as 10,000 SDKs in 10,000 processes hold; SPOFLESS_BENCH_HB_CONNECTIONS=N
// shares N connections instead (investigation only).
const HEARTBEAT_CONNECTIONS: number | 'per-instance' =
  process.env.SPOFLESS_BENCH_HB_CONNECTIONS === undefined ? 'per-instance' : Number(process.env.SPOFLESS_BENCH_HB_CONNECTIONS);
// How the heartbeat load renews: as the SDK (a keep-alive stream line per renewal) or a request each.
const hbMode = process.env.SPOFLESS_BENCH_HB_MODE ?? 'stream';
if (hbMode !== 'stream' && hbMode !== 'request') {
  throw new Error(`SPOFLESS_BENCH_HB_MODE must be stream or request, got ${JSON.stringify(hbMode)}`);
}
const HEARTBEAT_MODE: HeartbeatMode = hbMode;
const FANOUT_PREFIX = '/bench/fanout/';
const RUN_LIMIT_MS = 5 * 60_000;
const root = new URL('..', import.meta.url).pathname;

const only = process.env.SPOFLESS_BENCH_ONLY;
if (only !== undefined && !['puts', 'fanout', 'heartbeat', 'etcd'].includes(only)) {
  throw new Error(`SPOFLESS_BENCH_ONLY must be puts, fanout, heartbeat or etcd, got ${JSON.stringify(only)}`);
}
const runs = (part: string): boolean => only === undefined || only === part;
const profileDir = process.env.SPOFLESS_BENCH_CPU_PROF;

// ---------------------------------------------------------------------------------------------
// Processes: everything started is recorded here and killed at the end, whatever happens.

const children = new Set<ChildProcess>();
const closers: Array<() => Promise<void> | void> = [];

function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.once('exit', killChildren);

const watchdog = setTimeout(() => {
  console.error(`coordinator benchmark: still running after ${RUN_LIMIT_MS / 60_000} min; killing everything`);
  killChildren();
  process.exit(1);
}, RUN_LIMIT_MS);
watchdog.unref();

/** A child with an IPC channel; `next(type)` waits for its next message of that type. */
class Child<In, Out extends { type: string }> {
  readonly proc: ChildProcess;
  #waiting: Array<{ type: string; resolve: (m: Out) => void }> = [];
  #errors: string[] = [];

  constructor(
    readonly name: string,
    argv: string[],
    log: 'pipe' | 'inherit',
  ) {
    this.proc = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', log, log, 'ipc'], env: process.env });
    children.add(this.proc);
    this.proc.on('message', (m: Out) => {
      if (m.type === 'error') this.#errors.push((m as unknown as { message: string }).message);
      const i = this.#waiting.findIndex((w) => w.type === m.type);
      if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(m);
    });
  }

  send(m: In): void {
    this.proc.send(m as object);
  }

  /** The next message of `type`; rejects on timeout, on exit, or when the child reports an error. */
  async next<T extends Out['type']>(type: T, timeoutMs: number): Promise<Extract<Out, { type: T }>> {
    const failed = (): string => (this.#errors.length > 0 ? `: ${this.#errors.join('; ')}` : '');
    // A child's error is fatal to the benchmark, whenever it came.
    if (this.#errors.length > 0) throw new Error(`${this.name}${failed()}`);
    return new Promise((resolve, reject) => {
      const entry = { type: type as string, resolve: (m: Out) => done(() => resolve(m as Extract<Out, { type: T }>)) };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms${failed()}`))), timeoutMs);
      const onExit = (code: number | null, signal: string | null): void =>
        done(() => reject(new Error(`${this.name} exited with ${signal ?? `code ${code}`}${failed()}`)));
      const onError = (m: Out): void => {
        if (m.type === 'error') done(() => reject(new Error(`${this.name}${failed()}`)));
      };
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.proc.off('exit', onExit);
        this.proc.off('message', onError);
        const i = this.#waiting.indexOf(entry);
        if (i >= 0) this.#waiting.splice(i, 1);
        f();
      };
      this.#waiting.push(entry);
      this.proc.once('exit', onExit);
      this.proc.on('message', onError);
    });
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGKILL');
    await exited;
  }
}

function tsChild<In, Out extends { type: string }>(name: string, file: string): Child<In, Out> {
  return new Child<In, Out>(name, ['--import', 'tsx', join(root, 'bench', 'coordinator', file)], 'inherit');
}

interface ControlPlane {
  readonly url: string;
  readonly pid: number;
  /** The store's commit and write counters (writes per commit = the group-commit batch). */
  storeStats(): Promise<{ commits: number; writes: number }>;
  close(): Promise<void>;
}

/**
 * Starts bench/coordinator/server.mjs. Its request log (on, as `spofless up` runs) goes to a pipe
 * that this process drains, keeping the last lines for an error message: a pipe is where a service
 * manager or container runtime takes stdout. (A file on the same filesystem as the database would
 * make each synchronous log write wait behind the store's fsync journal commits.)
 */
async function startControlPlaneProcess(dir: string): Promise<ControlPlane> {
  const prof = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  type Out = { type: 'up'; url: string; pid: number } | { type: 'stats'; commits: number; writes: number };
  const child = new Child<'close' | 'stats', Out>(
    'control plane',
    [...prof, join(root, 'bench', 'coordinator', 'server.mjs'), join(dir, 'spofless')],
    'pipe',
  );
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  };
  child.proc.stdout!.on('data', keep);
  child.proc.stderr!.on('data', keep);
  let up: Extract<Out, { type: 'up' }>;
  try {
    up = await child.next('up', 30_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${tail}`, { cause: err });
  }
  return {
    url: up.url.replace(/\/$/, ''),
    pid: up.pid,
    storeStats: async () => {
      child.send('stats');
      return child.next('stats', 10_000);
    },
    close: async () => {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
      const exited = new Promise((resolve) => child.proc.once('exit', resolve));
      child.send('close');
      const timer = setTimeout(() => child.proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers.


// ---------------------------------------------------------------------------------------------

const metrics: Record<string, number> = {};
const notes: string[] = [];
const loadStart = load();

async function main(): Promise<void> {
  const version = etcdVersion();
  console.log(`coordinator: spofless control plane vs etcd ${version} (single node), ${process.version}, load ${loadStart}${args.quick ? ' (--quick: numbers mean little)' : ''}`);
  // Both data directories on the same filesystem, so both pay the same fsync.
  const dir = mkdtempSync(join(tmpdir(), 'spofless-bench-coordinator-'));
  closers.push(() => rmSync(dir, { recursive: true, force: true }));

  const etcd: EtcdCluster = await startEtcd({ members: 1, dir });
  closers.push(() => etcd.stop());
  const cp = await startControlPlaneProcess(dir);
  closers.push(() => cp.close());
  const endpoint = etcd.endpoints[0]!;
  const etcdClient = new Etcd3({ hosts: endpoint });
  closers.push(() => etcdClient.close());
  const pool = new Pool(cp.url, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 });
  closers.push(() => pool.destroy());
  console.log(`etcd ${endpoint} (pid ${etcd.members[0]!.pid}), control plane ${cp.url} (pid ${cp.pid}), data in ${dir}\n`);

  if (runs('puts')) await benchPuts(dir, cp, etcd.members[0]!.pid!, pool, etcdClient);
  if (runs('fanout')) await benchFanout(cp, etcd.members[0]!.pid!, endpoint, pool, etcdClient);
  if (runs('heartbeat')) await benchHeartbeats(cp);
  // The etcd engine (spofless on etcd vs raw etcd): bench/coordinator/etcd.ts, its own results file.
  if (runs('etcd')) await benchEtcdEngine({ etcd, etcdClient, quick: args.quick, write: !args.noWrite && profileDir === undefined, onClose: (c) => void closers.push(c), load });
}

async function benchPuts(dir: string, cp: ControlPlane, etcdPid: number, pool: Pool, etcdClient: Etcd3): Promise<void> {
  const { SqliteStore } = await importSpofless<typeof StoreModule>('store/index.js');
  const { ControlPlaneClient } = await importSpofless<typeof ClientModule>('client/index.js');
  // spofless through its SDK, as etcd through its client; a bare undici Pool beside it for context.
  const sdk = new ControlPlaneClient({ url: cp.url });
  closers.push(() => sdk.close());
  mkdirSync(join(dir, 'direct'));
  const store = await SqliteStore.open({ path: join(dir, 'direct', 'store.db') });
  closers.push(() => store.close());
  const value = 'v'.repeat(VALUE_BYTES);
  const key = (who: string, c: number, w: number, i: number): string => `/bench/puts/${who}/${c}/${w}/${i % 64}`;
  const ownCpu = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };

  for (const c of [1, 64]) {
    // `cpu`: CPU seconds of the process that serves the puts (for the store called directly, this
    // process, client loop included), to report CPU per put beside the rate.
    const cases: Array<{ name: string; cpu: () => number; op: (w: number, i: number) => Promise<void> }> = [
      { name: `spofless_puts_${c}`, cpu: () => cpuSeconds(cp.pid), op: async (w, i) => void (await sdk.put(key('sdk', c, w, i), value)) },
      { name: `spofless_undici_puts_${c}`, cpu: () => cpuSeconds(cp.pid), op: (w, i) => httpPut(pool, key('http', c, w, i), value) },
      { name: `etcd_puts_${c}`, cpu: () => cpuSeconds(etcdPid), op: async (w, i) => void (await etcdClient.put(key('etcd', c, w, i)).value(value).exec()) },
      { name: `spofless_store_puts_${c}`, cpu: ownCpu, op: async (w, i) => void (await store.put(key('store', c, w, i), value)) },
    ];
    const samples = new Map<string, number[]>(cases.map((k) => [k.name, []]));
    const cpu = new Map<string, { seconds: number; ops: number }>(cases.map((k) => [k.name, { seconds: 0, ops: 0 }]));
    const batches = { commits: 0, writes: 0 };
    for (let round = -settings.putWarmups; round < settings.putReps; round++) {
      // Rotate who goes first, so no candidate always follows the same one.
      const turn = ((round % cases.length) + cases.length) % cases.length;
      for (const k of [...cases.slice(turn), ...cases.slice(0, turn)]) {
        const http = k.name === `spofless_puts_${c}`;
        const stats0 = http ? await cp.storeStats() : undefined;
        const cpu0 = k.cpu();
        const r = await throughput(c, settings.putSampleMs, k.op);
        if (round < 0) continue;
        if (stats0 !== undefined) {
          const stats1 = await cp.storeStats();
          batches.commits += stats1.commits - stats0.commits;
          batches.writes += stats1.writes - stats0.writes;
        }
        samples.get(k.name)!.push(r.perSecond);
        const acc = cpu.get(k.name)!;
        acc.seconds += k.cpu() - cpu0;
        acc.ops += r.ops;
      }
    }
    const rows = putRows(samples, cpu, metrics);
    metrics[`spofless_puts_${c}_writes_per_commit`] = round3(batches.writes / batches.commits);
    metrics[`puts_${c}_ratio_vs_etcd`] = round3(metrics[`spofless_puts_${c}`]! / metrics[`etcd_puts_${c}`]!);
    metrics[`store_puts_${c}_ratio_vs_etcd`] = round3(metrics[`spofless_store_puts_${c}`]! / metrics[`etcd_puts_${c}`]!);
    console.log(`durable puts/s, ${c} concurrent client${c > 1 ? 's' : ''} (median of ${settings.putReps} × ${settings.putSampleMs / 1000} s, interleaved)`);
    console.log(table(['case', 'median', 'min-max', 'server cpu µs/put'], rows));
    console.log(`spofless ÷ etcd: ${metrics[`puts_${c}_ratio_vs_etcd`]}  (bare undici client ÷ etcd: ${round3(metrics[`spofless_undici_puts_${c}`]! / metrics[`etcd_puts_${c}`]!)}; store direct ÷ etcd: ${metrics[`store_puts_${c}_ratio_vs_etcd`]}; its cpu is this process's, client loop included)`);
    console.log(`spofless over HTTP: ${metrics[`spofless_puts_${c}_writes_per_commit`]} writes per SQLite commit (group-commit batch)\n`);
  }
}

async function benchFanout(cp: ControlPlane, etcdPid: number, endpoint: string, pool: Pool, etcdClient: Etcd3): Promise<void> {
  const n = settings.subscribers;
  const subscribers = {
    spofless: tsChild<WatchersIn, WatchersOut>('spofless subscribers', 'watchers.ts'),
    etcd: tsChild<WatchersIn, WatchersOut>('etcd subscribers', 'watchers.ts'),
  };
  closers.push(() => subscribers.spofless.kill(), () => subscribers.etcd.kill());
  subscribers.spofless.send({ type: 'start', mode: 'spofless', target: cp.url, prefix: FANOUT_PREFIX, n });
  subscribers.etcd.send({ type: 'start', mode: 'etcd', target: endpoint, prefix: FANOUT_PREFIX, n });
  const [readyS, readyE] = await Promise.all([subscribers.spofless.next('ready', 60_000), subscribers.etcd.next('ready', 60_000)]);
  console.log(`watch fan-out: ${n} subscribers each (connected in ${fmt(readyS.ms)} ms spofless, ${fmt(readyE.ms)} ms etcd)`);

  const put = {
    spofless: (key: string, value: string) => httpPut(pool, key, value),
    etcd: async (key: string, value: string) => void (await etcdClient.put(key).value(value).exec()),
  };
  type System = keyof typeof put;
  const perRound: Record<System, Array<{ p50: number; p99: number; max: number }>> = { spofless: [], etcd: [] };
  const pooled: Record<System, number[]> = { spofless: [], etcd: [] };
  const missing: Record<System, number> = { spofless: 0, etcd: 0 };
  const early: Record<System, number> = { spofless: 0, etcd: 0 };
  // CPU seconds the serving process and the subscribers' process spend per fan-out, to tell where
  // the time goes: the server's writes, or the subscribers' reads.
  const serverPid: Record<System, number> = { spofless: cp.pid, etcd: etcdPid };
  const serverCpu: Record<System, number> = { spofless: 0, etcd: 0 };
  const subscriberCpu: Record<System, number> = { spofless: 0, etcd: 0 };
  let seq = 0;
  for (let round = 0; round < settings.fanoutReps; round++) {
    const lat: Record<System, number[]> = { spofless: [], etcd: [] };
    for (let k = 0; k < settings.fanoutPuts; k++) {
      const order: System[] = (round + k) % 2 === 0 ? ['spofless', 'etcd'] : ['etcd', 'spofless'];
      for (const system of order) {
        seq++;
        const cpu0 = [cpuSeconds(serverPid[system]), cpuSeconds(subscribers[system].proc.pid!)];
        const got = subscribers[system].next('received', 10_000).catch(async () => {
          // Someone never received it: take what arrived, count the rest as lost.
          subscribers[system].send({ type: 'flush', seq });
          return subscribers[system].next('received', 5_000);
        });
        await put[system](`${FANOUT_PREFIX}${k}`, `${VALUE_PREFIX}${seq}`);
        const ack = monoMs();
        const r = await got;
        serverCpu[system] += cpuSeconds(serverPid[system]) - cpu0[0]!;
        subscriberCpu[system] += cpuSeconds(subscribers[system].proc.pid!) - cpu0[1]!;
        if (r.seq !== seq) throw new Error(`${system}: receipts for put ${r.seq} while waiting for ${seq}`);
        for (const at of r.at) {
          if (at < ack) early[system]++;
          lat[system].push(Math.max(0, at - ack));
        }
        for (let m = 0; m < r.missing; m++) lat[system].push(Infinity);
        missing[system] += r.missing;
        // Let the last receipts' processing finish before the next put.
        await sleep(20);
      }
    }
    for (const system of ['spofless', 'etcd'] as const) {
      const s = lat[system].sort((a, b) => a - b);
      perRound[system].push({ p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! });
      pooled[system].push(...s);
    }
  }
  const rows: string[][] = [];
  for (const system of ['spofless', 'etcd'] as const) {
    const p50 = median(perRound[system].map((r) => r.p50));
    const p99 = median(perRound[system].map((r) => r.p99));
    const all = pooled[system].sort((a, b) => a - b);
    metrics[`${system === 'spofless' ? 'fanout' : 'etcd_fanout'}_p50_ms`] = round3(p50);
    metrics[`${system === 'spofless' ? 'fanout' : 'etcd_fanout'}_p99_ms`] = round3(p99);
    metrics[`${system}_fanout_missed`] = missing[system];
    const puts = settings.fanoutPuts * settings.fanoutReps;
    metrics[`${system}_fanout_server_cpu_ms_per_put`] = round3((1000 * serverCpu[system]) / puts);
    metrics[`${system}_fanout_subscriber_cpu_ms_per_put`] = round3((1000 * subscriberCpu[system]) / puts);
    rows.push([
      system,
      fmt(p50, 1),
      fmt(p99, 1),
      perRound[system].map((r) => fmt(r.p99, 1)).join(' / '),
      fmt(all[all.length - 1], 1),
      String(missing[system]),
      `${fmt((100 * early[system]) / Math.max(1, all.length), 1)}%`,
      fmt(metrics[`${system}_fanout_server_cpu_ms_per_put`], 1),
      fmt(metrics[`${system}_fanout_subscriber_cpu_ms_per_put`], 1),
    ]);
  }
  metrics.fanout_p99_ratio_vs_etcd = round3(metrics.fanout_p99_ms! / metrics.etcd_fanout_p99_ms!);
  console.log(
    `ms from the put's acknowledgement to each subscriber's receipt, ${settings.fanoutPuts} puts × ${n} subscribers per round, median of ${settings.fanoutReps} rounds`,
  );
  console.log(table(['system', 'p50', 'p99', 'p99 by round', 'max', 'missed', 'before ack', 'server cpu ms/put', 'subscribers cpu ms/put'], rows));
  console.log(`spofless p99 ÷ etcd p99: ${metrics.fanout_p99_ratio_vs_etcd}\n`);
  await subscribers.spofless.kill();
  await subscribers.etcd.kill();
}

async function benchHeartbeats(cp: ControlPlane): Promise<void> {
  const { instances, ttl } = settings;
  const hb = tsChild<HeartbeatsIn, HeartbeatsOut>('heartbeat load', 'heartbeats.ts');
  closers.push(() => hb.kill());
  const stats = async (): Promise<HeartbeatStats> => {
    hb.send({ type: 'stats' });
    return hb.next('stats', 10_000);
  };
  // Let the control plane finish what the fan-out left (1,000 streams closing) before measuring:
  // wait, up to 10 s, for a second in which it uses under 2% of a core.
  let idleShare = Infinity;
  for (const deadline = performance.now() + 10_000; idleShare > 0.02 && performance.now() < deadline; ) {
    const idleCpu0 = cpuSeconds(cp.pid);
    const idleT0 = performance.now();
    await sleep(1_000);
    idleShare = (cpuSeconds(cp.pid) - idleCpu0) / ((performance.now() - idleT0) / 1000);
  }

  hb.send({ type: 'start', url: cp.url, instances, ttl, mode: HEARTBEAT_MODE, connections: HEARTBEAT_CONNECTIONS });
  const regDeadline = performance.now() + 120_000;
  let s = await stats();
  while (s.registerMs === 0) {
    if (performance.now() > regDeadline) throw new Error(`registered only ${s.registered} of ${instances} instances in 120 s`);
    await sleep(500);
    s = await stats();
  }
  const stream = HEARTBEAT_MODE === 'stream';
  const unit = stream ? 'keep-alive stream' : 'connection';
  const conns = HEARTBEAT_CONNECTIONS === 'per-instance' ? `one ${unit} per instance` : `${HEARTBEAT_CONNECTIONS} shared ${unit}s`;
  const how = stream ? 'a stream line per renewal every TTL/3 minus up to 20% jitter' : 'a request per renewal every TTL/3';
  console.log(`heartbeats: ${instances} instances registered with TTL ${ttl} s in ${fmt(s.registerMs / 1000, 1)} s; keeping alive from a separate process, ${how}, ${conns}`);
  await sleep(settings.heartbeatWarmupMs);

  const windows: Array<{ share: number; keepalivesPerS: number }> = [];
  let before = await stats();
  let cpu0 = cpuSeconds(cp.pid);
  let t0 = performance.now();
  const first = { cpu: cpu0, t: t0, stats: before };
  for (let w = 0; w < settings.cpuWindows; w++) {
    await sleep(settings.cpuWindowMs);
    const cpu1 = cpuSeconds(cp.pid);
    const t1 = performance.now();
    const after = await stats();
    const seconds = (t1 - t0) / 1000;
    windows.push({ share: (cpu1 - cpu0) / seconds, keepalivesPerS: (after.keepalivesOk - before.keepalivesOk) / seconds });
    [cpu0, t0, before] = [cpu1, t1, after];
  }
  const mem = rssMiB(cp.pid);
  const wholeSeconds = (t0 - first.t) / 1000;
  const share = median(windows.map((x) => x.share));
  metrics.heartbeat_10k_cpu_share = round3(share);
  metrics.heartbeat_10k_cpu_share_whole = round3((cpu0 - first.cpu) / wholeSeconds);
  metrics.heartbeat_10k_rss_mb = Math.round(mem.rss);
  metrics.heartbeat_10k_peak_rss_mb = Math.round(mem.peak);
  metrics.heartbeat_10k_keepalives_per_s = Math.round((before.keepalivesOk - first.stats.keepalivesOk) / wholeSeconds);
  metrics.heartbeat_10k_keepalives_failed = before.keepalivesFailed - first.stats.keepalivesFailed;
  metrics.heartbeat_10k_leases_lost = before.leasesLost;
  metrics.heartbeat_10k_register_s = round3(s.registerMs / 1000);
  if (stream) {
    metrics.heartbeat_10k_streams_open = before.streamsOpen;
    metrics.heartbeat_10k_streams_broken = before.streamsBroken;
    metrics.heartbeat_10k_per_request_fallbacks = before.perRequest;
  }
  metrics.idle_cpu_share = round3(idleShare);
  console.log(
    table(
      ['window', 'cpu share', 'keepalives/s'],
      windows.map((x, i) => [`${(i * settings.cpuWindowMs) / 1000}-${((i + 1) * settings.cpuWindowMs) / 1000} s`, fmt(x.share, 3), fmt(x.keepalivesPerS)]),
    ),
  );
  console.log(
    `control plane: ${fmt(share, 3)} of one core (median of ${windows.length} windows; whole ${fmt(metrics.heartbeat_10k_cpu_share_whole, 3)}; idle before ${fmt(idleShare, 3)}), ` +
      `RSS ${fmt(mem.rss)} MiB (peak ${fmt(mem.peak)}), ${fmt(metrics.heartbeat_10k_keepalives_per_s)} keepalives/s, ` +
      `${metrics.heartbeat_10k_keepalives_failed} failed, ${before.leasesLost} leases lost` +
      (stream ? `; streams: ${before.streamsOpen} open (${first.stats.streamsOpen} at the first window), ${before.streamsBroken} broken, ${before.perRequest} renewals per request` : '') +
      `${before.lastError ? ` (last error: ${before.lastError})` : ''}\n`,
  );
  if (before.backlog > 0) notes.push(`heartbeat load fell behind by ${before.backlog} keepalives`);
  if (stream && first.stats.streamsOpen < instances) notes.push(`heartbeat: only ${first.stats.streamsOpen} of ${instances} streams open when measuring began`);
  await hb.kill();
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

interface Target {
  readonly metric: string;
  readonly min?: number;
  readonly max?: number;
  readonly digits: number;
}
const TARGETS: readonly Target[] = [
  { metric: 'puts_1_ratio_vs_etcd', min: 1.5, digits: 2 },
  { metric: 'puts_64_ratio_vs_etcd', min: 1.5, digits: 2 },
  { metric: 'fanout_p99_ms', max: 50, digits: 1 },
  { metric: 'fanout_p99_ratio_vs_etcd', max: 1, digits: 2 },
  { metric: 'heartbeat_10k_cpu_share', max: 0.25, digits: 3 },
];

function printTargets(): number {
  let failed = 0;
  const rows: string[][] = [];
  for (const t of TARGETS) {
    const v = metrics[t.metric];
    if (v === undefined) continue;
    const ok = Number.isFinite(v) && (t.min === undefined || v >= t.min) && (t.max === undefined || v <= t.max);
    if (!ok) failed++;
    rows.push([t.metric, fmt(v, t.digits), t.min !== undefined ? `>= ${t.min}` : `<= ${t.max}`, ok ? 'PASS' : 'FAIL']);
  }
  console.log(table(['target', 'measured', 'limit', ''], rows));
  return failed;
}

let failedTargets = 0;
let error: unknown;
try {
  await main();
} catch (err) {
  error = err;
} finally {
  for (const close of closers.reverse()) {
    try {
      await close();
    } catch (err) {
      console.error('cleanup:', err);
    }
  }
  killChildren();
}
const loadEnd = load();
if (error !== undefined) {
  console.error('coordinator benchmark failed:', error);
  process.exitCode = 1;
} else {
  console.log(`Targets (load ${loadStart} at the start, ${loadEnd} at the end; ${(await import('node:os')).cpus().length} CPUs):`);
  failedTargets = printTargets();
  for (const n of notes) console.log(`note: ${n}`);
  const investigating = ['SPOFLESS_BENCH_LOGGER', 'SPOFLESS_BENCH_HB_CONNECTIONS'].some((v) => process.env[v] !== undefined);
  if (!args.noWrite && only === undefined && profileDir === undefined && !investigating) {
    const file = writeResults('coordinator', metrics, { ...settings, valueBytes: VALUE_BYTES }, {
      heartbeatMode: HEARTBEAT_MODE,
      heartbeatConnections: HEARTBEAT_CONNECTIONS,
      load: { start: loadStart, end: loadEnd },
      etcd: etcdVersion(),
      notes,
    });
    console.log(`\nwrote ${file}`);
  }
  if (args.check && failedTargets > 0) process.exitCode = 1;
}
clearTimeout(watchdog);
