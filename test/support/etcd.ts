/**
 * Starts real etcd processes for tests and benchmarks: one node, or a 3-member cluster, on loopback
 * ports picked free, each member with its own temporary data directory.
 *
 * - A missing `etcd` binary is an error (`EtcdNotInstalledError`) naming the install command, never a
 *   skip: a test that silently skips is a test that silently stops protecting anything.
 * - Every child is killed by `stop()`; as a safety net, also when the process exits, and when it gets
 *   SIGINT/SIGTERM/SIGHUP while a cluster is running. A parent killed with SIGKILL cannot clean up,
 *   so each start first reaps members left by a dead owner (their data directory names the owner's
 *   pid; see `reapOrphans`).
 * - Durability is etcd's default (an fsync per raft batch, no `--unsafe-no-fsync`): benchmarks
 *   compare durable writes with durable writes.
 * - Elections are fast (heartbeat 50 ms, election 500 ms, pre-vote on) so a test that kills the
 *   leader waits about half a second for the next one, not etcd's default one to two seconds.
 *
 * @example
 * ```ts
 * import { startEtcd } from './support/etcd.js';
 * const etcd = await startEtcd({ members: 3 });
 * try {
 *   // connect a client to etcd.endpoints ...
 *   await etcd.members[0]!.kill('SIGKILL');
 *   await etcd.members[0]!.restart();
 * } finally {
 *   await etcd.stop();
 * }
 * ```
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The command that installs etcd here; named by every "not installed" error. */
export const INSTALL_COMMAND = 'bash scripts/install-etcd.sh';

/** Prefix of every data directory this helper makes; the owner's pid follows it. */
const DIR_PREFIX = 'spofless-etcd-';

export class EtcdNotInstalledError extends Error {
  readonly code = 'ETCD_NOT_INSTALLED';
  constructor(binary: string, cause?: unknown) {
    super(`etcd is not installed: ${JSON.stringify(binary)} was not found on PATH; install it with \`${INSTALL_COMMAND}\` (Debian's etcd-server and etcd-client, 3.4)`, { cause });
    this.name = 'EtcdNotInstalledError';
  }
}

export class EtcdStartError extends Error {
  readonly code = 'ETCD_START_FAILED';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'EtcdStartError';
  }
}

export interface StartEtcdOptions {
  /** 1 (a single node) or 3 (a cluster that survives losing one member). */
  readonly members: 1 | 3;
  /** Parent directory of the members' data directories; the OS temp directory by default. */
  readonly dir?: string;
  /** Raft heartbeat in ms; 50 by default (etcd's is 100). */
  readonly heartbeatMs?: number;
  /** Raft election timeout in ms; 500 by default (etcd's is 1000). At least 5 heartbeats. */
  readonly electionMs?: number;
  /** How long to wait for every member to be healthy; 30 s by default (the machine may be busy). */
  readonly startTimeoutMs?: number;
  /** Extra etcd flags for every member, e.g. `['--auto-compaction-retention', '1']`. */
  readonly extraArgs?: readonly string[];
  /** Keep the data directories after `stop()` (to inspect them); removed by default. */
  readonly keepData?: boolean;
  /** The etcd binary; `etcd` on PATH by default, or `$ETCD_BIN`. */
  readonly binary?: string;
  readonly signal?: AbortSignal;
}

export interface RestartOptions {
  /**
   * Wait until the member reports healthy (it has a leader and serves a linearizable read), which
   * needs a quorum; `false` only waits until it listens. `true` by default.
   */
  readonly waitHealthy?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface EtcdMember {
  readonly name: string;
  /** The pid of the current process (changes on restart); undefined while stopped. */
  readonly pid: number | undefined;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  /**
   * Sends `signal` (SIGKILL by default). For a signal that ends the process the promise settles once
   * it has exited; SIGSTOP and SIGCONT settle at once.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the member again on the same ports and data directory (stopping it first if running). */
  restart(options?: RestartOptions): Promise<void>;
  /** The last lines etcd wrote to stderr (warnings and errors), for a failing test's message. */
  logs(): string;
}

export interface EtcdCluster {
  /** Client URLs of all members, e.g. `['http://127.0.0.1:40123', ...]`. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /**
   * Kills every member with SIGKILL and removes the data directories; with `keepData`, stops them
   * gracefully (SIGTERM, then SIGKILL after 2 s) and keeps the directories. Idempotent.
   */
  stop(): Promise<void>;
}

/** Members with a running process, and clusters not yet stopped: what the safety net cleans up. */
const live = new Set<Member>();
const liveClusters = new Set<Cluster>();

/**
 * Starts `members` etcd processes forming one cluster and waits until each is healthy. Retries with
 * fresh ports when a port picked as free was taken before etcd bound it.
 */
export async function startEtcd(options: StartEtcdOptions): Promise<EtcdCluster> {
  const { members: count, heartbeatMs = 50, electionMs = 500, startTimeoutMs = 30_000 } = options;
  if (count !== 1 && count !== 3) throw new RangeError(`members must be 1 or 3, got ${String(count)}`);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 1) throw new RangeError(`heartbeatMs must be a positive integer, got ${heartbeatMs}`);
  if (!Number.isInteger(electionMs) || electionMs < 5 * heartbeatMs) {
    throw new RangeError(`electionMs must be an integer of at least 5 heartbeats (${5 * heartbeatMs}), got ${electionMs}`);
  }
  options.signal?.throwIfAborted();
  const binary = options.binary ?? process.env.ETCD_BIN ?? 'etcd';
  checkInstalled(binary);
  reapOrphans(options.dir ?? tmpdir());

  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(2 * count);
    const root = mkdtempSync(join(options.dir ?? tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    const token = `spofless-${process.pid}-${Date.now().toString(36)}`;
    const specs = Array.from({ length: count }, (_, i) => ({
      name: `etcd${i}`,
      clientUrl: `http://127.0.0.1:${ports[2 * i]!}`,
      peerUrl: `http://127.0.0.1:${ports[2 * i + 1]!}`,
      dataDir: join(root, `etcd${i}`),
    }));
    const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(',');
    const common = [
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--heartbeat-interval', String(heartbeatMs),
      '--election-timeout', String(electionMs),
      '--pre-vote=true',
      // Our values go up to 1.5 MiB; etcd's default request limit is exactly 1.5 MiB, too small once
      // the key and the request's framing are added.
      '--max-request-bytes', '2097152',
      '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
      ...(options.extraArgs ?? []),
    ];
    const members = specs.map((s) => new Member(binary, s, common));
    const cluster = new Cluster(members, root, options.keepData === true);
    try {
      for (const m of members) m.start('new');
      await Promise.all(members.map((m) => m.waitReady(true, startTimeoutMs, options.signal)));
      return cluster;
    } catch (err) {
      const portTaken = members.some((m) => m.logs().includes('address already in use'));
      await cluster.stop();
      if (portTaken && attempt < 5) continue;
      throw err;
    }
  }
}

class Cluster implements EtcdCluster {
  readonly endpoints: string[];
  #stopped: Promise<void> | undefined;
  constructor(
    readonly members: Member[],
    readonly root: string,
    readonly keepData: boolean,
  ) {
    this.endpoints = members.map((m) => m.clientUrl);
    liveClusters.add(this);
  }
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      // Data that is about to be deleted needs no graceful shutdown; a graceful one can take seconds
      // (a leader stopping tries to hand leadership to members that are stopping too).
      await Promise.all(this.members.map((m) => (this.keepData ? m.terminate() : m.kill('SIGKILL'))));
      if (!this.keepData) rmSync(this.root, { recursive: true, force: true });
      liveClusters.delete(this);
    })();
    return this.#stopped;
  }
}

interface MemberSpec {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
}

const STOP_SIGNALS = new Set<NodeJS.Signals>(['SIGSTOP', 'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU']);
const LOG_LINES = 60;

class Member implements EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log: string[] = [];
  #exitNote = '';

  constructor(
    readonly binary: string,
    spec: MemberSpec,
    readonly common: readonly string[],
  ) {
    ({ name: this.name, clientUrl: this.clientUrl, peerUrl: this.peerUrl, dataDir: this.dataDir } = spec);
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  logs(): string {
    return [...this.#log, this.#exitNote].filter((l) => l !== '').join('\n');
  }

  start(state: 'new' | 'existing'): void {
    const args = [
      '--name', this.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster-state', state,
      ...this.common,
    ];
    // etcd reads ETCD_* variables as flags; a stray one in the environment must not change the test.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    this.#child = child;
    this.#exitNote = '';
    live.add(this);
    installSafetyNet();
    child.stderr.setEncoding('utf8');
    let partial = '';
    child.stderr.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      this.#log.push(...lines);
      if (this.#log.length > LOG_LINES) this.#log.splice(0, this.#log.length - LOG_LINES);
    });
    this.#exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        this.#exitNote = `${this.name}: could not start ${this.binary}: ${err.message}`;
        resolve();
      });
      child.once('exit', (code, signal) => {
        this.#exitNote = `${this.name}: exited with ${signal ?? `code ${code}`}`;
        resolve();
      });
    }).finally(() => {
      if (this.#child === child) live.delete(this);
    });
  }

  /** Waits until the member listens (`/version`) and, with `healthy`, until `/health` says true. */
  async waitReady(healthy: boolean, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const path = healthy ? '/health' : '/version';
    let last = 'no answer';
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      if (!this.running) throw new EtcdStartError(`etcd member ${this.name} (${this.clientUrl}) stopped while starting:\n${this.logs()}`);
      try {
        const res = await fetch(`${this.clientUrl}${path}`, { signal: AbortSignal.timeout(2_000) });
        const body = await res.text();
        if (res.ok && (!healthy || (JSON.parse(body) as { health?: unknown }).health === 'true')) return;
        last = `${res.status} ${body.trim()}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(50);
    }
    throw new EtcdStartError(`etcd member ${this.name} (${this.clientUrl}) not ${healthy ? 'healthy' : 'listening'} within ${timeoutMs} ms (last: ${last}):\n${this.logs()}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (child === undefined || !this.running) return;
    child.kill(signal);
    if (!STOP_SIGNALS.has(signal)) await this.#exited;
  }

  async restart(options: RestartOptions = {}): Promise<void> {
    await this.terminate();
    this.start('existing');
    await this.waitReady(options.waitHealthy ?? true, options.timeoutMs ?? 30_000, options.signal);
  }

  /** SIGCONT (a stopped process ignores SIGTERM until continued), SIGTERM, then SIGKILL after 2 s. */
  async terminate(): Promise<void> {
    const child = this.#child;
    if (child === undefined || !this.running) return;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
    timer.unref();
    await this.#exited;
    clearTimeout(timer);
  }

  /** For the exit handler: synchronous, no waiting. */
  killNow(): void {
    if (this.running) this.#child?.kill('SIGKILL');
  }
}

function checkInstalled(binary: string): void {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') throw new EtcdNotInstalledError(binary, r.error);
    throw new EtcdStartError(`cannot run ${binary} --version: ${r.error.message}`, r.error);
  }
  if (r.status !== 0) throw new EtcdStartError(`${binary} --version exited with ${r.status ?? r.signal}: ${r.stderr}`);
}

/** The installed etcd's version, e.g. `3.4.23`; throws `EtcdNotInstalledError` when there is none. */
export function etcdVersion(binary: string = process.env.ETCD_BIN ?? 'etcd'): string {
  checkInstalled(binary);
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout;
  return /etcd Version: (\S+)/.exec(out)?.[1] ?? 'unknown';
}

/**
 * Ports that were free a moment ago: each is bound on 127.0.0.1:0 (all at once, so they differ) and
 * released. Another process can take one before etcd binds it; startEtcd retries when that happens.
 */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<import('node:net').Server>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(s));
      }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === 'string') throw new Error('no TCP address');
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/**
 * Kills etcd processes started by this helper in a process that has since died (killed with SIGKILL,
 * so no exit handler ran), and removes their data directories and any other left by a dead owner. Such a member is recognised by its
 * `--data-dir` under `<dir>/spofless-etcd-<owner pid>-...` with that owner pid no longer alive.
 * Linux only (reads /proc); elsewhere it does nothing.
 */
function reapOrphans(dir: string): void {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return;
  }
  const marker = join(dir, DIR_PREFIX);
  const deadRoots = new Set<string>();
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('--data-dir');
    const dataDir = i >= 0 ? argv[i + 1] : undefined;
    if (dataDir === undefined || !dataDir.startsWith(marker)) continue;
    const owner = Number(/^(\d+)-/.exec(dataDir.slice(marker.length))?.[1]);
    if (!Number.isInteger(owner) || owner === process.pid || isAlive(owner)) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
    deadRoots.add(dataDir.slice(0, dataDir.lastIndexOf('/')));
  }
  // Also directories of dead owners whose members are already gone.
  for (const name of readdirSync(dir)) {
    const owner = Number(/^(\d+)-/.exec(name.slice(DIR_PREFIX.length))?.[1]);
    if (name.startsWith(DIR_PREFIX) && Number.isInteger(owner) && owner !== process.pid && !isAlive(owner)) deadRoots.add(join(dir, name));
  }
  for (const root of deadRoots) rmSync(root, { recursive: true, force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let netInstalled = false;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function killAllNow(): void {
  for (const m of live) m.killNow();
  // etcd may still hold files open for a moment; rmSync removes the names regardless.
  for (const c of liveClusters) if (!c.keepData) rmSync(c.root, { recursive: true, force: true });
}

function onSignal(signal: NodeJS.Signals): void {
  killAllNow();
  // Then die of the same signal, as the process would have without this handler.
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.kill(process.pid, signal);
}

/**
 * Exit and signal handlers that SIGKILL whatever is still running. The signal handlers are added
 * only when no one else listens for those signals, so the helper never changes how a process that
 * handles its own signals shuts down.
 */
function installSafetyNet(): void {
  if (netInstalled) return;
  netInstalled = true;
  process.once('exit', killAllNow);
  for (const s of SIGNALS) if (process.listenerCount(s) === 0) process.once(s, onSignal);
}
