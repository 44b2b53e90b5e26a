/**
 * The etcd engine's part of `npm run bench:coordinator` (`SPOFLESS_BENCH_ONLY=etcd` runs it alone):
 * spofless *on* etcd against raw etcd, on the same single-node etcd, in the same run.
 *
 * - A control plane process (bench/coordinator/server.mjs, the compiled build) started with
 *   `store: 'etcd://<member>/bench-spofless'`: its keys live under a namespace, so its traffic and raw
 *   etcd's never meet in one watch.
 * - **Durable puts per second** at 1 and 64 concurrent clients: spofless-on-etcd through its HTTP API
 *   (`PUT /v1/kv`, undici Pool, a connection per client) against etcd through `etcd3` (64 concurrent
 *   calls on its one channel); the engine called directly (`EtcdStore.put`, no HTTP) is reported for
 *   context. Interleaved rounds after a discarded warm-up; the median of the rounds is reported.
 *   Every put, on both sides, is acknowledged by the same etcd after its WAL fsync.
 * - **Watch fan-out p99**: 1,000 SSE subscribers of the control plane (whose watch hub holds one
 *   etcd watch for the prefix) against 1,000 `etcd3` watchers, each in a subscriber process of its
 *   own (bench/coordinator/watchers.ts); latency = receipt − the put's acknowledgement, as the
 *   SQLite fan-out part measures it; puts alternate between the systems; p99 per round, median of
 *   the rounds.
 *
 * Writes `bench/results/coordinator-etcd.json` with `fanout_p99_ratio_vs_etcd` (spofless-on-etcd ÷
 * raw etcd; target ≤ 1.2) and the puts figures. Everything started here is stopped here, also on error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import { Pool } from 'undici';
import type * as StoreModule from '../../src/store/index.js';
import type { EtcdCluster } from '../../test/support/etcd.js';
import { importSpofless, median, table, writeResults } from '../harness.js';
import { cpuSeconds, fmt, httpPut, monoMs, percentile, putRows, throughput, VALUE_PREFIX, type WatchersIn, type WatchersOut } from './common.js';

export interface EtcdEngineBenchInput {
  readonly etcd: EtcdCluster;
  /** The raw etcd client the rest of the benchmark uses. */
  readonly etcdClient: Etcd3;
  readonly quick: boolean;
  /** Write bench/results/coordinator-etcd.json. */
  readonly write: boolean;
  /** Registers cleanup with the benchmark (run even on error). */
  readonly onClose: (close: () => Promise<void> | void) => void;
  readonly load: () => number;
}

const root = new URL('../..', import.meta.url).pathname;
const VALUE = 'x'.repeat(128);
const RAW_PREFIX = '/bench/etcd-engine/raw/';
const CP_PREFIX = '/bench/etcd-engine/cp/';
const NAMESPACE = 'bench-spofless';

interface Settings {
  readonly putSampleMs: number;
  readonly putReps: number;
  readonly putWarmups: number;
  readonly subscribers: number;
  readonly fanoutPuts: number;
  readonly fanoutReps: number;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** A child with an IPC channel; `next(type)` waits for its next message of that type. */
class IpcChild<Out extends { type: string }> {
  readonly proc: ChildProcess;
  #queue: Out[] = [];
  #waiters: Array<{ type: string; resolve: (m: Out) => void }> = [];
  #errors: string[] = [];

  constructor(readonly name: string, argv: string[], stdio: 'inherit' | 'pipe') {
    this.proc = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', stdio, stdio, 'ipc'], env: process.env });
    this.proc.on('message', (m: Out) => {
      if (m.type === 'error') this.#errors.push((m as unknown as { message: string }).message);
      const i = this.#waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      else this.#queue.push(m);
    });
  }

  send(m: unknown): void {
    this.proc.send(m as object);
  }

  next<T extends Out['type']>(type: T, timeoutMs: number): Promise<Extract<Out, { type: T }>> {
    if (this.#errors.length > 0) return Promise.reject(new Error(`${this.name}: ${this.#errors.join('; ')}`));
    const i = this.#queue.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0] as Extract<Out, { type: T }>);
    return new Promise((resolve, reject) => {
      const entry = {
        type: type as string,
        resolve: (m: Out) => {
          clearTimeout(timer);
          this.proc.off('exit', onExit);
          resolve(m as Extract<Out, { type: T }>);
        },
      };
      const drop = (): void => {
        const j = this.#waiters.indexOf(entry);
        if (j >= 0) this.#waiters.splice(j, 1);
      };
      const timer = setTimeout(() => {
        drop();
        this.proc.off('exit', onExit);
        reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms${this.#errors.length > 0 ? `: ${this.#errors.join('; ')}` : ''}`));
      }, timeoutMs);
      const onExit = (code: number | null, signal: string | null): void => {
        drop();
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${signal ?? `code ${code}`}`));
      };
      this.proc.once('exit', onExit);
      this.#waiters.push(entry);
    });
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGKILL');
    await exited;
  }
}

/** Runs the etcd engine's part; returns its metrics. */
export async function benchEtcdEngine(input: EtcdEngineBenchInput): Promise<Record<string, number>> {
  const settings: Settings = input.quick
    ? { putSampleMs: 500, putReps: 1, putWarmups: 1, subscribers: 100, fanoutPuts: 5, fanoutReps: 1 }
    : { putSampleMs: 2_000, putReps: 3, putWarmups: 1, subscribers: 1_000, fanoutPuts: 20, fanoutReps: 3 };
  const metrics: Record<string, number> = {};
  const loadStart = input.load();
  const member = input.etcd.members[0]!;
  const hostPort = member.clientUrl.replace(/^http:\/\//, '');
  const storeUrl = `etcd://${hostPort}/${NAMESPACE}`;
  console.log(`\n--- the etcd engine: spofless on etcd (${storeUrl}) vs raw etcd, same member ---`);

  // The control plane on etcd, as its own process (its CPU is its own).
  const cp = new IpcChild<{ type: 'up'; url: string; pid: number }>('control plane on etcd', [join(root, 'bench', 'coordinator', 'server.mjs'), storeUrl], 'pipe');
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  };
  cp.proc.stdout!.on('data', keep);
  cp.proc.stderr!.on('data', keep);
  input.onClose(() => cp.kill());
  let up: { url: string; pid: number };
  try {
    up = await cp.next('up', 30_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${tail}`, { cause: err });
  }
  const url = up.url.replace(/\/$/, '');
  const pool = new Pool(url, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 });
  input.onClose(() => pool.destroy());
  const { openEtcdStore } = await importSpofless<typeof StoreModule>('store/index.js');
  const direct = await openEtcdStore({ endpoints: [hostPort], namespace: `/${NAMESPACE}-direct/` });
  input.onClose(() => direct.close());
  const etcdPid = member.pid!;
  console.log(`control plane on etcd ${url} (pid ${up.pid}), etcd pid ${etcdPid}\n`);

  // ---- durable puts ----------------------------------------------------------------------------
  const key = (who: string, c: number, w: number, i: number): string => `/bench/etcd-engine/puts/${who}/${c}/${w}/${i % 64}`;
  const ownCpu = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  for (const c of [1, 64]) {
    const cases: Array<{ name: string; cpu: () => number; op: (w: number, i: number) => Promise<void> }> = [
      { name: `spofless_etcd_puts_${c}`, cpu: () => cpuSeconds(up.pid), op: (w, i) => httpPut(pool, key('http', c, w, i), VALUE) },
      { name: `etcd_puts_${c}`, cpu: () => cpuSeconds(etcdPid), op: async (w, i) => void (await input.etcdClient.put(key('etcd', c, w, i)).value(VALUE).exec()) },
      { name: `engine_puts_${c}`, cpu: ownCpu, op: async (w, i) => void (await direct.put(key('engine', c, w, i), VALUE)) },
    ];
    const samples = new Map<string, number[]>(cases.map((k) => [k.name, []]));
    const cpu = new Map<string, { seconds: number; ops: number }>(cases.map((k) => [k.name, { seconds: 0, ops: 0 }]));
    for (let round = -settings.putWarmups; round < settings.putReps; round++) {
      const turn = ((round % cases.length) + cases.length) % cases.length;
      for (const k of [...cases.slice(turn), ...cases.slice(0, turn)]) {
        const cpu0 = k.cpu();
        const r = await throughput(c, settings.putSampleMs, k.op);
        if (round < 0) continue;
        samples.get(k.name)!.push(r.perSecond);
        const acc = cpu.get(k.name)!;
        acc.seconds += k.cpu() - cpu0;
        acc.ops += r.ops;
      }
    }
    const rows = putRows(samples, cpu, metrics);
    metrics[`puts_${c}_ratio_vs_etcd`] = round3(metrics[`spofless_etcd_puts_${c}`]! / metrics[`etcd_puts_${c}`]!);
    metrics[`engine_puts_${c}_ratio_vs_etcd`] = round3(metrics[`engine_puts_${c}`]! / metrics[`etcd_puts_${c}`]!);
    console.log(`durable puts/s on etcd, ${c} concurrent client${c > 1 ? 's' : ''} (median of ${settings.putReps} × ${settings.putSampleMs / 1000} s, interleaved)`);
    console.log(table(['case', 'median', 'min-max', 'server cpu µs/put'], rows));
    console.log(`spofless-on-etcd (HTTP) ÷ etcd: ${metrics[`puts_${c}_ratio_vs_etcd`]}  (the engine called directly ÷ etcd3: ${metrics[`engine_puts_${c}_ratio_vs_etcd`]}; its cpu is this process's)\n`);
  }

  // ---- watch fan-out ---------------------------------------------------------------------------
  const n = settings.subscribers;
  const subs = {
    spofless: new IpcChild<WatchersOut>('spofless-on-etcd subscribers', ['--import', 'tsx', join(root, 'bench', 'coordinator', 'watchers.ts')], 'inherit'),
    etcd: new IpcChild<WatchersOut>('etcd subscribers', ['--import', 'tsx', join(root, 'bench', 'coordinator', 'watchers.ts')], 'inherit'),
  };
  input.onClose(() => subs.spofless.kill());
  input.onClose(() => subs.etcd.kill());
  subs.spofless.send({ type: 'start', mode: 'spofless', target: url, prefix: CP_PREFIX, n } satisfies WatchersIn);
  subs.etcd.send({ type: 'start', mode: 'etcd', target: member.clientUrl, prefix: RAW_PREFIX, n } satisfies WatchersIn);
  const [readyS, readyE] = await Promise.all([subs.spofless.next('ready', 60_000), subs.etcd.next('ready', 60_000)]);
  console.log(`watch fan-out: ${n} subscribers each (connected in ${fmt(readyS.ms)} ms spofless-on-etcd, ${fmt(readyE.ms)} ms etcd)`);
  const put = {
    spofless: (k: number, value: string) => httpPut(pool, `${CP_PREFIX}${k}`, value),
    etcd: async (k: number, value: string) => void (await input.etcdClient.put(`${RAW_PREFIX}${k}`).value(value).exec()),
  };
  type System = keyof typeof put;
  const systems: readonly System[] = ['spofless', 'etcd'];
  const perRound: Record<System, Array<{ p50: number; p99: number }>> = { spofless: [], etcd: [] };
  const missing: Record<System, number> = { spofless: 0, etcd: 0 };
  const serverPid: Record<System, number> = { spofless: up.pid, etcd: etcdPid };
  const serverCpu: Record<System, number> = { spofless: 0, etcd: 0 };
  let seq = 1_000_000; // distinct from the SQLite part's sequence numbers
  for (let round = 0; round < settings.fanoutReps; round++) {
    const lat: Record<System, number[]> = { spofless: [], etcd: [] };
    for (let k = 0; k < settings.fanoutPuts; k++) {
      const order: System[] = (round + k) % 2 === 0 ? ['spofless', 'etcd'] : ['etcd', 'spofless'];
      for (const system of order) {
        seq++;
        const cpu0 = cpuSeconds(serverPid[system]);
        const got = subs[system].next('received', 10_000).catch(async () => {
          subs[system].send({ type: 'flush', seq } satisfies WatchersIn);
          return subs[system].next('received', 5_000);
        });
        await put[system](k, `${VALUE_PREFIX}${seq}`);
        const ack = monoMs();
        const r = await got;
        serverCpu[system] += cpuSeconds(serverPid[system]) - cpu0;
        if (r.seq !== seq) throw new Error(`${system}: receipts for put ${r.seq} while waiting for ${seq}`);
        for (const at of r.at) lat[system].push(Math.max(0, at - ack));
        for (let m = 0; m < r.missing; m++) lat[system].push(Infinity);
        missing[system] += r.missing;
        await sleep(20);
      }
    }
    for (const system of systems) {
      const s = lat[system].sort((a, b) => a - b);
      perRound[system].push({ p50: percentile(s, 50), p99: percentile(s, 99) });
    }
  }
  const rows: string[][] = [];
  for (const system of systems) {
    const name = system === 'spofless' ? 'spofless_etcd' : 'etcd';
    metrics[`${name}_fanout_p50_ms`] = round3(median(perRound[system].map((r) => r.p50)));
    metrics[`${name}_fanout_p99_ms`] = round3(median(perRound[system].map((r) => r.p99)));
    metrics[`${name}_fanout_missed`] = missing[system];
    metrics[`${name}_fanout_server_cpu_ms_per_put`] = round3((1000 * serverCpu[system]) / (settings.fanoutPuts * settings.fanoutReps));
    rows.push([
      system === 'spofless' ? 'spofless-on-etcd' : 'etcd',
      fmt(metrics[`${name}_fanout_p50_ms`], 1),
      fmt(metrics[`${name}_fanout_p99_ms`], 1),
      perRound[system].map((r) => fmt(r.p99, 1)).join(' / '),
      String(missing[system]),
      fmt(metrics[`${name}_fanout_server_cpu_ms_per_put`], 1),
    ]);
  }
  metrics.fanout_p99_ratio_vs_etcd = round3(metrics.spofless_etcd_fanout_p99_ms! / metrics.etcd_fanout_p99_ms!);
  console.log(`ms from the put's acknowledgement to each subscriber's receipt, ${settings.fanoutPuts} puts × ${n} subscribers per round, median of ${settings.fanoutReps} rounds`);
  console.log(table(['system', 'p50', 'p99', 'p99 by round', 'missed', 'server cpu ms/put'], rows));
  console.log(`spofless-on-etcd p99 ÷ etcd p99: ${metrics.fanout_p99_ratio_vs_etcd} (target <= 1.2: ${metrics.fanout_p99_ratio_vs_etcd <= 1.2 ? 'PASS' : 'FAIL'})\n`);
  await subs.spofless.kill();
  await subs.etcd.kill();

  if (input.write) {
    const file = writeResults('coordinator-etcd', metrics, { ...settings, valueBytes: VALUE.length }, {
      load: { start: loadStart, end: input.load() },
      store: storeUrl.replace(/:\d+\//, ':<port>/'),
      targets: { fanout_p99_ratio_vs_etcd: { max: 1.2 } },
    });
    console.log(`wrote ${file}`);
  }
  return metrics;
}
