/**
 * What bench/coordinator.bench.ts shares with its child processes (bench/coordinator/*.ts): the
 * messages on their IPC channels, a clock comparable across processes, and /proc readings; and the
 * measurement helpers it shares with bench/coordinator/etcd.ts.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Pool } from 'undici';
import { median } from '../harness.js';

/** Milliseconds on CLOCK_MONOTONIC (process.hrtime): the same clock in every process on the machine. */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** Fan-out puts carry `fanout-<seq>` as their value; subscribers report receipts by seq. */
export const VALUE_PREFIX = 'fanout-';

export type WatchersIn =
  | { readonly type: 'start'; readonly mode: 'spofless' | 'etcd'; readonly target: string; readonly prefix: string; readonly n: number }
  | { readonly type: 'flush'; readonly seq: number };
export type WatchersOut =
  | { readonly type: 'ready'; readonly ms: number }
  | { readonly type: 'received'; readonly seq: number; readonly at: number[]; readonly missing: number }
  | { readonly type: 'error'; readonly message: string };

export type HeartbeatMode = 'stream' | 'request';
export type HeartbeatsIn =
  | {
      readonly type: 'start';
      readonly url: string;
      readonly instances: number;
      readonly ttl: number;
      /** How leases are renewed: a keep-alive stream line each (as the SDK), or a request each. */
      readonly mode: HeartbeatMode;
      /** Streams (stream mode) or keep-alive connections (request mode) shared by all instances, or one per instance (as separate SDK processes). */
      readonly connections: number | 'per-instance';
    }
  | { readonly type: 'stats' };
export interface HeartbeatStats {
  readonly type: 'stats';
  /** Instances registered so far, and how long registering all of them took (ms; 0 until done). */
  readonly registered: number;
  readonly registerMs: number;
  readonly keepalivesOk: number;
  readonly keepalivesFailed: number;
  /** Keepalives answered 404: the lease had expired, so the instance was lost (and re-registered). */
  readonly leasesLost: number;
  /** Request mode: keepalives due but not yet sent; stream mode: lines unanswered for over 1 s. */
  readonly backlog: number;
  readonly lastError: string;
  /** Stream mode: streams open now, opened so far (a 200 head), broken so far (cut, ended, failed, late). */
  readonly streamsOpen: number;
  readonly streamsOpened: number;
  readonly streamsBroken: number;
  /** Stream mode: renewals sent per request because their stream was down (as the SDK falls back). */
  readonly perRequest: number;
}
export type HeartbeatsOut = HeartbeatStats | { readonly type: 'error'; readonly message: string };

/** User plus system CPU seconds a process (all its threads) has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces), counted from field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

/** Resident set size of a process in MiB (VmRSS), and its peak (VmHWM). */
export function rssMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Operations completed by `concurrency` loops running `op` for about `ms`, and per second. */
export async function throughput(concurrency: number, ms: number, op: (worker: number, i: number) => Promise<void>): Promise<{ ops: number; perSecond: number }> {
  let ops = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        await op(w, i);
        ops++;
      }
    }),
  );
  return { ops, perSecond: ops / ((performance.now() - t0) / 1000) };
}

/** The `p`th percentile (nearest rank) of ascending `sorted`; NaN when it is empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** `PUT /v1/kv` on the control plane behind `pool`; throws unless it answers 200. */
export async function httpPut(pool: Pool, key: string, value: string): Promise<void> {
  const res = await pool.request({
    method: 'PUT',
    path: '/v1/kv',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key, value }),
  });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`PUT /v1/kv ${key}: ${res.statusCode} ${body.slice(0, 300)}`);
}

/** A number for a results table: grouped thousands, `-` for none, `inf`. */
export const fmt = (v: number | undefined, digits = 0): string =>
  v === undefined || Number.isNaN(v) ? '-' : v === Infinity ? 'inf' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/**
 * The put rounds of one concurrency as metrics (`<name>` = median puts/s, `<name>_cpu_us_per_put`) and
 * table rows (name, median, range, CPU µs per put), one per system, in `samples`' order.
 */
export function putRows(
  samples: ReadonlyMap<string, readonly number[]>,
  cpu: ReadonlyMap<string, { readonly seconds: number; readonly ops: number }>,
  metrics: Record<string, number>,
): string[][] {
  const rows: string[][] = [];
  for (const [name, xs] of samples) {
    const { seconds, ops } = cpu.get(name)!;
    metrics[name] = Math.round(median(xs));
    metrics[`${name}_cpu_us_per_put`] = Math.round((1e6 * seconds) / ops);
    rows.push([name, fmt(median(xs)), `${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))}`, fmt(metrics[`${name}_cpu_us_per_put`])]);
  }
  return rows;
}
