/**
 * Server CPU per lease renewal: the keep-alive stream (`POST /v1/leases/keepalive`, one NDJSON line
 * per renewal) against one HTTP request per renewal (`POST /v1/leases/{id}/keepalive`).
 *
 * A control plane runs in this process; the load runs in a child process (so its CPU is not counted)
 * and renews `instances` leases at `rate` renewals/s, evenly paced, for `seconds`. The stream load
 * opens one stream per instance (as many SDK processes would) and writes each renewal on its own, so
 * no two lines share a packet: the worst case for the stream, the usual one for 10,000 instances. The
 * request load reuses keep-alive connections (as the SDK's fetch does). The server's CPU is
 * `process.cpuUsage()` (user + system, every thread) around the window; the idle CPU of the same
 * window with no load is measured too and subtracted for the per-renewal figure.
 *
 *   node --import tsx scripts/keepalive-cpu.ts [--instances 10000] [--rate 3300] [--seconds 10] [--only stream|request]
 *
 * Prints one JSON line per mode and a summary. Not a test: numbers depend on the machine.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

type Mode = 'stream' | 'request';
interface LoadIn {
  readonly url: string;
  readonly mode: Mode;
  readonly leases: readonly string[];
  readonly rate: number;
  readonly seconds: number;
}
type LoadMsg = { type: 'ready' } | { type: 'start' } | { type: 'done'; answered: number; errors: number };

const tick = 10;

async function load(input: LoadIn): Promise<void> {
  const send = (m: LoadMsg): void => void process.send!(m);
  let answered = 0;
  let errors = 0;
  let counting = false;
  const count = (ok: boolean): void => {
    if (!counting) return;
    if (ok) answered++;
    else errors++;
  };
  let fire: (i: number) => void;
  const closers: (() => void)[] = [];
  if (input.mode === 'stream') {
    const streams = await Promise.all(
      input.leases.map(
        (lease) =>
          new Promise<{ write: () => void }>((resolve, reject) => {
            const req = request(`${input.url}/v1/leases/keepalive`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, agent: false });
            req.on('error', reject);
            req.on('response', (res) => {
              res.setEncoding('utf8');
              let buf = '';
              res.on('data', (s: string) => {
                buf += s;
                let nl;
                while ((nl = buf.indexOf('\n')) >= 0) {
                  count(!buf.slice(0, nl).includes('"error"'));
                  buf = buf.slice(nl + 1);
                }
              });
              const line = `{"id":"${lease}"}\n`;
              resolve({ write: () => void req.write(line) });
            });
            req.flushHeaders();
            closers.push(() => req.destroy());
          }),
      ),
    );
    fire = (i) => streams[i % streams.length]!.write();
  } else {
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    closers.push(() => agent.destroy());
    fire = (i) => {
      const lease = input.leases[i % input.leases.length]!;
      const req = request(`${input.url}/v1/leases/${lease}/keepalive`, { method: 'POST', agent }, (res) => {
        res.resume();
        res.on('end', () => count(res.statusCode === 200));
      });
      req.on('error', () => count(false));
      req.end();
    };
  }
  send({ type: 'ready' });
  await new Promise<void>((r) => process.once('message', () => r()));
  // Evenly paced: every tick sends what the rate owes since the start, so the rate is exact.
  let next = 0;
  const run = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      let sent = 0;
      const timer = setInterval(() => {
        const due = Math.floor(((performance.now() - started) / 1000) * input.rate);
        for (; sent < due; sent++) fire(next++);
        if (performance.now() - started >= ms) {
          clearInterval(timer);
          resolve();
        }
      }, tick);
    });
  await run(1_000); // warm-up
  counting = true;
  send({ type: 'start' });
  await run(input.seconds * 1000);
  await new Promise((r) => setTimeout(r, 200)); // the last answers
  counting = false;
  send({ type: 'done', answered, errors });
  for (const c of closers) c();
  process.disconnect();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { instances: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, only: { type: 'string' } } });
  const instances = Number(values.instances ?? 10_000);
  const rate = Number(values.rate ?? 3_300);
  const seconds = Number(values.seconds ?? 10);
  const { startControlPlane } = await import('../src/server/index.js');
  const { SqliteStore } = await import('../src/store/index.js');
  const dir = mkdtempSync(join(tmpdir(), 'spofless-kacpu-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db') });
  const cp = await startControlPlane({ port: 0, logger: false, healthChecks: false, store, closeStore: true });
  try {
    const leases: string[] = [];
    // TTL long enough that no lease expires during the run, whatever the rate.
    for (let i = 0; i < instances; i++) leases.push((await store.grantLease(3_600)).id);
    const idleStart = process.cpuUsage();
    const idleT = performance.now();
    await new Promise((r) => setTimeout(r, Math.min(seconds, 5) * 1000));
    const idleUs = cpuUs(process.cpuUsage(idleStart)) / ((performance.now() - idleT) / 1000);
    console.log(JSON.stringify({ mode: 'idle', cpuShare: round(idleUs / 1e6, 4) }));
    const results: Record<string, { usPerRenewal: number; cpuShare: number }> = {};
    const modes: Mode[] = values.only === 'stream' || values.only === 'request' ? [values.only] : ['request', 'stream'];
    for (const mode of modes) {
      const child = fork(fileURLToPath(import.meta.url), ['--load'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.send({ url: cp.url, mode, leases, rate, seconds } satisfies LoadIn);
      let start: NodeJS.CpuUsage | undefined;
      let startT = 0;
      const done = await new Promise<{ answered: number; errors: number; cpu: number; wall: number }>((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', (code) => code !== 0 && reject(new Error(`load process exited with ${code}`)));
        child.on('message', (m: LoadMsg) => {
          if (m.type === 'ready') child.send('go');
          else if (m.type === 'start') {
            start = process.cpuUsage();
            startT = performance.now();
          } else resolve({ answered: m.answered, errors: m.errors, cpu: cpuUs(process.cpuUsage(start)), wall: (performance.now() - startT) / 1000 });
        });
      });
      const share = done.cpu / 1e6 / done.wall;
      const usPerRenewal = (done.cpu - idleUs * done.wall) / done.answered;
      results[mode] = { usPerRenewal: round(usPerRenewal, 1), cpuShare: round(share, 3) };
      console.log(
        JSON.stringify({
          mode,
          instances,
          connections: mode === 'stream' ? instances : 'keep-alive pool of <= 256',
          renewalsPerSecond: round(done.answered / done.wall, 0),
          errors: done.errors,
          cpuShare: round(share, 3),
          usPerRenewal: round(usPerRenewal, 1),
        }),
      );
      await new Promise((r) => setTimeout(r, 500));
    }
    const s = results.stream;
    const q = results.request;
    if (s === undefined || q === undefined) return;
    console.log(
      `server CPU per renewal: ${s.usPerRenewal} µs over the stream vs ${q.usPerRenewal} µs per request (${round(q.usPerRenewal / s.usPerRenewal, 1)}x); ` +
        `share of one core at ${rate}/s: ${s.cpuShare} vs ${q.cpuShare}`,
    );
  } finally {
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function cpuUs(u: NodeJS.CpuUsage): number {
  return u.user + u.system;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

if (process.argv.includes('--load')) {
  process.once('message', (input: LoadIn) => void load(input));
} else {
  await main();
}
