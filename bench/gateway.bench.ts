/**
 * `npm run bench:gateway`: the spofless gateway against HAProxy, nginx and @fastify/reply-from, all in
 * front of the same Node upstream, in one run.
 *
 * - **Upstream**: plain `node:http`, a 6-byte answer, its own process (bench/gateway/upstream.mjs).
 * - **Candidates**, each its own process so that its CPU time is its own:
 *   - `direct`: wrk straight at the upstream (the ceiling);
 *   - `spofless`: `startGateway` from the compiled build (bench/gateway/gateway.mjs), fed by a control
 *     plane (in this process, idle while measuring) holding one route and one registered instance;
 *   - `haproxy`: Debian's HAProxy 2.6, `nbthread 1`, keep-alive to the upstream (`http-reuse always`);
 *   - `nginx`: Debian's nginx 1.22, `worker_processes 1`, `master_process off`, upstream keepalive 64;
 *   - `reply-from`: fastify 5 + @fastify/reply-from 12 (bench/gateway/reply-from.mjs).
 *   All three proxies add `X-Forwarded-For`, as the gateway does; none writes an access log.
 * - **Feature rows**: the same gateway with the route changed through the control plane between
 *   rows: `+retries` (3 attempts on connect-failure, reset and 503, per-try and total timeouts),
 *   `+breaker` (a route breaker), `+canary` (10% to a second version, sticky on a header the load
 *   does not send), `+all`.
 * - **Load**: wrk, 1 thread, 50 connections, `GET /`. Each sample is a warm-up then a measured run of
 *   the same duration for every row; rows take turns (A B C …, A B C …) for several rounds and the
 *   median of the rounds is reported. The ratios (`rps_ratio_vs_haproxy` …) are the median of the
 *   per-round ratios, so a slow minute of a shared machine hits both sides of each ratio.
 * - **CPU time per 10,000 requests** of each proxy process: utime + stime (/proc/<pid>/stat, all
 *   threads) over the measured run, divided by the requests wrk completed. It holds up better than
 *   req/s on a machine shared with other work. For `direct` it is the upstream's.
 *
 * Environment (investigation):
 * - `SPOFLESS_BENCH_CPU_PROF=<dir>`: run the gateway with `--cpu-prof` into <dir> (the profile is
 *   written when the gateway closes at the end).
 * - `SPOFLESS_BENCH_ONLY=spofless,haproxy,...`: measure only these rows (results not written).
 * - `SPOFLESS_BENCH_ROUNDS=<n>`, `SPOFLESS_BENCH_DURATION=<s>`: fewer rounds or shorter samples, to
 *   keep a run short on a machine shared with other work (results not written).
 *
 * Needs wrk, haproxy and nginx: `bash scripts/install-bench-peers.sh` (the benchmark fails with that
 * command when one is missing). Every process started is stopped at the end, also on error.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as ServerModule from '../src/server/index.js';
import { importSpofless, load, median, parseArgs, table, writeResults } from './harness.js';

const args = parseArgs();
const settings = args.quick
  ? { durationS: 2, warmupS: 1, rounds: 1, connections: 50, wrkThreads: 1 }
  : { durationS: 6, warmupS: 2, rounds: 5, connections: 50, wrkThreads: 1 };
const envInt = (name: string): number | undefined => {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return n;
};
const roundsOverride = envInt('SPOFLESS_BENCH_ROUNDS');
const durationOverride = envInt('SPOFLESS_BENCH_DURATION');
if (roundsOverride !== undefined) settings.rounds = roundsOverride;
if (durationOverride !== undefined) settings.durationS = durationOverride;
const only = process.env.SPOFLESS_BENCH_ONLY?.split(',').map((s) => s.trim());
const cpuProfDir = process.env.SPOFLESS_BENCH_CPU_PROF;

const INSTALL = 'bash scripts/install-bench-peers.sh';
function findBin(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not installed: run \`${INSTALL}\` (needs root and apt-get)`);
}
const WRK = findBin('wrk');
const HAPROXY = findBin('haproxy');
const NGINX = findBin('nginx');

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'spofless-bench-gw-'));
let cp: ServerModule.ControlPlane | undefined;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a node helper with an IPC channel and waits for its `{ type: 'up' }` message. */
function startNode(script: string, argv: string[], execArgv: string[] = []): Promise<{ child: ChildProcess; up: Record<string, unknown> }> {
  const child = spawn(process.execPath, [...execArgv, join(import.meta.dirname, 'gateway', script), ...argv], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: process.env,
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within 20 s`)), 20_000);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was up`)));
    child.on('message', (m: Record<string, unknown>) => {
      if (m.type === 'up') {
        clearTimeout(timer);
        resolve({ child, up: m });
      }
    });
  });
}

function startPlain(cmd: string, argv: string[]): ChildProcess {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`${cmd} exited early: ${code ?? signal}`);
  });
  return child;
}

/** Waits until `url` answers 200 with the upstream's body. */
async function ready(url: string, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      const text = await res.text();
      if (res.status === 200 && text === 'hello\n') return;
      last = `${res.status} ${text.slice(0, 200)}`;
    } catch (err) {
      last = String((err as Error).cause ?? err);
    }
    await sleep(100);
  }
  throw new Error(`${what} at ${url} never answered 200 hello: last ${last}`);
}

interface WrkResult {
  readonly rps: number;
  readonly p99Ms: number;
  readonly p50Ms: number;
  readonly requests: number;
  readonly errors: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

function runWrk(url: string, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(WRK, [`-t${settings.wrkThreads}`, `-c${settings.connections}`, `-d${seconds}s`, '--latency', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out}`));
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
      const p50 = /^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
      const total = /(\d+) requests in/.exec(out);
      if (rps === null || p99 === null || p50 === null || total === null) return reject(new Error(`cannot read wrk's output:\n${out}`));
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
      resolve({ rps: Number(rps[1]), p99Ms: toMs(p99[1]!, p99[2]!), p50Ms: toMs(p50[1]!, p50[2]!), requests: Number(total[1]), errors });
    });
  });
}

interface Sample extends WrkResult {
  readonly cpuMsPer10k: number;
  /** Of which in the kernel (stime): on loopback a write runs the receiver's TCP path too. */
  readonly sysMsPer10k: number;
}

/** utime and stime of a process (all threads), seconds. */
function cpuTimes(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // USER_HZ is 100 on every Linux this runs on.
  return { user: Number(fields[11]) / 100, sys: Number(fields[12]) / 100 };
}

async function sample(url: string, pid: number): Promise<Sample> {
  await runWrk(url, settings.warmupS);
  const before = cpuTimes(pid);
  const r = await runWrk(url, settings.durationS);
  const after = cpuTimes(pid);
  const per10k = (seconds: number): number => (seconds * 1000 * 10_000) / Math.max(1, r.requests);
  return { ...r, cpuMsPer10k: per10k(after.user + after.sys - before.user - before.sys), sysMsPer10k: per10k(after.sys - before.sys) };
}

// ---- the route variants --------------------------------------------------------------------------

const SERVICE = 'bench-upstream';
const baseRoute = { name: 'bench', service: SERVICE, match: { pathPrefix: '/' } };
const retries = { retry: { attempts: 3, on: ['connect-failure', 'reset', 503], budgetPercent: 20 }, timeouts: { perTryMs: 2_000, totalMs: 5_000 } };
const breaker = { breaker: { failureRate: 50, minimumCalls: 20, openMs: 5_000 } };
const canary = { traffic: { active: 'v1', canary: { version: 'v2', weight: 10, stickyOn: { header: 'x-user' } } } };
const VARIANTS: Readonly<Record<string, object>> = {
  spofless: baseRoute,
  'spofless+retries': { ...baseRoute, ...retries },
  'spofless+breaker': { ...baseRoute, ...breaker },
  'spofless+canary': { ...baseRoute, ...canary },
  'spofless+all': { ...baseRoute, ...retries, ...breaker, ...canary },
};

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(cp!.url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Puts the route and waits until the gateway has applied that revision. */
async function useVariant(name: string, adminUrl: string, gwUrl: string): Promise<void> {
  const { revision } = (await api('PUT', '/v1/routes/bench', VARIANTS[name])) as { revision: number };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = (await (await fetch(`${adminUrl}/status`)).json()) as { config: { revisions: { routes: number } } };
    if (status.config.revisions.routes >= revision) break;
    if (Date.now() > deadline) throw new Error(`the gateway did not apply route revision ${revision} within 10 s`);
    await sleep(50);
  }
  await ready(gwUrl, `gateway (${name})`);
}

// ---- main ----------------------------------------------------------------------------------------

let stopping = false;
async function stopAll(): Promise<void> {
  stopping = true;
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    if (c.connected) c.send('close');
    else c.kill('SIGTERM');
  }
  const deadline = Date.now() + 5_000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(50);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await cp?.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const loadStart = load();
  console.log(`gateway bench: wrk -t${settings.wrkThreads} -c${settings.connections}, ${settings.warmupS} s warm-up + ${settings.durationS} s per sample, ${settings.rounds} rounds; load ${loadStart}`);

  const upstream = await startNode('upstream.mjs', []);
  const upPort = upstream.up.port as number;
  const upUrl = `http://127.0.0.1:${upPort}`;

  const { startControlPlane } = await importSpofless<typeof ServerModule>('server/index.js');
  cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'cp'), logger: false, healthChecks: false });
  // One instance, as HAProxy and nginx have one server. Its lease outlives the run.
  await api('PUT', `/v1/catalog/services/${SERVICE}/instances/u1`, { address: '127.0.0.1', port: upPort, version: 'v1', status: 'passing', ttl: 3600 });
  await api('PUT', '/v1/routes/bench', baseRoute);

  const gw = await startNode('gateway.mjs', [cp.url], cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []);
  const gwUrl = gw.up.url as string;
  const adminUrl = gw.up.adminUrl as string;

  const haPort = await freePort();
  const haCfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    haCfg,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:${haPort}
  default_backend be
backend be
  server u1 127.0.0.1:${upPort}
`,
  );
  const haproxy = startPlain(HAPROXY, ['-f', haCfg, '-db']);

  const ngPort = await freePort();
  const ngDir = join(dir, 'nginx');
  mkdirSync(join(ngDir, 'logs'), { recursive: true });
  const ngCfg = join(ngDir, 'nginx.conf');
  writeFileSync(
    ngCfg,
    `daemon off;
master_process off;
worker_processes 1;
error_log ${ngDir}/logs/error.log warn;
pid ${ngDir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${ngDir}/body;
  proxy_temp_path ${ngDir}/proxy;
  fastcgi_temp_path ${ngDir}/fastcgi;
  uwsgi_temp_path ${ngDir}/uwsgi;
  scgi_temp_path ${ngDir}/scgi;
  upstream u { server 127.0.0.1:${upPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${ngPort};
    location / {
      proxy_pass http://u;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`,
  );
  const nginx = startPlain(NGINX, ['-p', ngDir, '-c', ngCfg, '-e', `${ngDir}/logs/error.log`]);

  const rf = await startNode('reply-from.mjs', [upUrl]);
  const rfUrl = `http://127.0.0.1:${rf.up.port as number}`;

  const rows: { name: string; url: string; pid: number }[] = [
    // The base gateway row sits between its two ratio peers, and next to the feature rows.
    { name: 'direct', url: `${upUrl}/`, pid: upstream.up.pid as number },
    { name: 'nginx', url: `http://127.0.0.1:${ngPort}/`, pid: nginx.pid! },
    { name: 'haproxy', url: `http://127.0.0.1:${haPort}/`, pid: haproxy.pid! },
    { name: 'spofless', url: `${gwUrl}/`, pid: gw.up.pid as number },
    { name: 'reply-from', url: `${rfUrl}/`, pid: rf.up.pid as number },
    ...['spofless+retries', 'spofless+breaker', 'spofless+canary', 'spofless+all'].map((name) => ({ name, url: `${gwUrl}/`, pid: gw.up.pid as number })),
  ].filter((r) => only === undefined || only.includes(r.name));
  for (const r of rows) await ready(r.url, r.name);

  // The canary rows need a second version registered; it is there for every row (same upstream),
  // so that only the route differs between the spofless rows.
  await api('PUT', `/v1/catalog/services/${SERVICE}/instances/u2`, { address: '127.0.0.1', port: upPort, version: 'v2', status: 'passing', ttl: 3600 });

  // A discarded warm-up of every row first: the node candidates need their hot paths compiled.
  for (const r of rows) {
    if (r.name.startsWith('spofless')) await useVariant(r.name, adminUrl, gwUrl);
    await runWrk(r.url, settings.warmupS + 1);
  }
  const samples = new Map<string, Sample[]>(rows.map((r) => [r.name, []]));
  const ratios = { reply: [] as number[], haproxy: [] as number[], p99: [] as number[], cpuHaproxy: [] as number[], cpuReply: [] as number[] };
  for (let round = 0; round < settings.rounds; round++) {
    const got = new Map<string, Sample>();
    for (const r of rows) {
      if (r.name.startsWith('spofless')) await useVariant(r.name, adminUrl, gwUrl);
      const s = await sample(r.url, r.pid);
      got.set(r.name, s);
      samples.get(r.name)!.push(s);
      console.log(
        `round ${round + 1}/${settings.rounds}  ${r.name.padEnd(17)} ${s.rps.toFixed(0).padStart(6)} req/s  p99 ${s.p99Ms.toFixed(2).padStart(6)} ms  cpu ${s.cpuMsPer10k.toFixed(0).padStart(5)} ms/10k${s.errors > 0 ? `  ERRORS ${s.errors}` : ''}  (load ${load()})`,
      );
    }
    const sp = got.get('spofless');
    const ha = got.get('haproxy');
    const rfS = got.get('reply-from');
    if (sp && rfS) {
      ratios.reply.push(sp.rps / rfS.rps);
      ratios.cpuReply.push(sp.cpuMsPer10k / rfS.cpuMsPer10k);
    }
    if (sp && ha) {
      ratios.haproxy.push(sp.rps / ha.rps);
      ratios.p99.push(sp.p99Ms / ha.p99Ms);
      ratios.cpuHaproxy.push(sp.cpuMsPer10k / ha.cpuMsPer10k);
    }
  }

  const metrics: Record<string, number> = {};
  const key = (name: string): string => name.replace('+', '_').replace('-', '_');
  const printed: string[][] = [];
  const base = samples.get('spofless');
  const baseCpu = base && base.length > 0 ? median(base.map((s) => s.cpuMsPer10k)) : NaN;
  for (const [name, xs] of samples) {
    const rps = median(xs.map((s) => s.rps));
    const p99 = median(xs.map((s) => s.p99Ms));
    const p50 = median(xs.map((s) => s.p50Ms));
    const cpu = median(xs.map((s) => s.cpuMsPer10k));
    const errors = xs.reduce((a, s) => a + s.errors, 0);
    const k = key(name);
    metrics[`rps_${k}`] = Math.round(rps);
    metrics[`p50_ms_${k}`] = Math.round(p50 * 1000) / 1000;
    metrics[`p99_ms_${k}`] = Math.round(p99 * 1000) / 1000;
    metrics[`cpu_ms_per_10k_${k}`] = Math.round(cpu * 10) / 10;
    metrics[`cpu_sys_ms_per_10k_${k}`] = Math.round(median(xs.map((s) => s.sysMsPer10k)) * 10) / 10;
    metrics[`errors_${k}`] = errors;
    const cost = name.startsWith('spofless+') ? `${(((cpu - baseCpu) / baseCpu) * 100).toFixed(0)}%` : '';
    if (name.startsWith('spofless+')) metrics[`feature_cpu_cost_pct_${k.slice('spofless_'.length)}`] = Math.round(((cpu - baseCpu) / baseCpu) * 1000) / 10;
    const sys = median(xs.map((s) => s.sysMsPer10k));
    printed.push([name, rps.toFixed(0), p50.toFixed(2), p99.toFixed(2), cpu.toFixed(0), sys.toFixed(0), cost, String(errors), xs.map((s) => s.rps.toFixed(0)).join(' ')]);
  }
  console.log(`\n${table(['row', 'req/s', 'p50 ms', 'p99 ms', 'cpu ms/10k', 'of which sys', 'cpu vs base', 'errors', 'req/s per round'], printed)}`);

  if (ratios.reply.length > 0) {
    metrics.rps_ratio_vs_reply_from = Math.round(median(ratios.reply) * 1000) / 1000;
    // CPU time per request, spofless ÷ peer (lower is better): holds up better than req/s on a busy machine.
    metrics.cpu_ratio_vs_reply_from = Math.round(median(ratios.cpuReply) * 1000) / 1000;
  }
  if (ratios.haproxy.length > 0) {
    metrics.rps_ratio_vs_haproxy = Math.round(median(ratios.haproxy) * 1000) / 1000;
    metrics.p99_ratio_vs_haproxy = Math.round(median(ratios.p99) * 1000) / 1000;
    metrics.cpu_ratio_vs_haproxy = Math.round(median(ratios.cpuHaproxy) * 1000) / 1000;
  }
  const targets: [string, number, '>=' | '<='][] = [
    ['rps_ratio_vs_reply_from', 1.5, '>='],
    ['rps_ratio_vs_haproxy', 0.5, '>='],
    ['p99_ratio_vs_haproxy', 3, '<='],
  ];
  let failed = 0;
  const trows = targets.map(([m, limit, op]) => {
    const v = metrics[m];
    const ok = v !== undefined && (op === '>=' ? v >= limit : v <= limit);
    if (!ok) failed++;
    return [m, v === undefined ? 'missing' : v.toFixed(3), `${op} ${limit}`, ok ? 'PASS' : 'FAIL'];
  });
  console.log(`\n${table(['target (same-run ratio, median of rounds)', 'measured', 'limit', ''], trows)}`);
  const loadEnd = load();
  console.log(`load ${loadStart} → ${loadEnd}`);

  if (!args.noWrite && only === undefined && roundsOverride === undefined && durationOverride === undefined) {
    const file = writeResults('gateway', metrics, settings, {
      source: (await import('./harness.js')).sourceVersion(['src/gateway', 'src/routing', 'src/client', 'src/resilience']),
      load: { start: loadStart, end: loadEnd },
      peers: {
        haproxy: spawnSync(HAPROXY, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0],
        nginx: spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim(),
        wrk: spawnSync(WRK, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '',
        replyFrom: '@fastify/reply-from 12',
      },
      perRound: Object.fromEntries(
        [...samples].map(([n, xs]) => [n, xs.map((s) => ({ rps: Math.round(s.rps), p99Ms: s.p99Ms, cpuMsPer10k: Math.round(s.cpuMsPer10k * 10) / 10, sysMsPer10k: Math.round(s.sysMsPer10k * 10) / 10, errors: s.errors }))]),
      ),
    });
    console.log(`wrote ${file}`);
  }
  if (args.check && failed > 0) process.exitCode = 1;
}

try {
  await main();
} finally {
  await stopAll();
}
