/**
 * Child processes of the chaos suite: control planes (the real CLI, `spofless up --store etcd://...`)
 * and sample-service replicas, each a TypeScript entry run with `node --import tsx`.
 *
 * Unlike test/helpers/procs.ts, children run without `NODE_TEST_CONTEXT`, so `spofless up` writes its
 * JSON log lines (pino) to stderr: the suite reads the leader's health-status writes and election
 * changes from them. Every child is SIGKILLed by `stopAll()` (the suite's `finally`) and, as a safety
 * net, when this process exits. A stopped (SIGSTOP) child is continued first so that SIGKILL lands.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;
export const CLI = join(ROOT, 'src/cli/main.ts');
export const SAMPLE = join(ROOT, 'test/fixtures/sample-service.ts');

const live = new Set<Proc>();
process.on('exit', () => {
  for (const p of live) p.hardKill();
});

/** One JSON log line of a control plane. */
export type LogLine = Record<string, unknown> & { msg?: string; time?: number };

export class Proc {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  /** stderr lines that parse as JSON objects, with the local time they arrived. */
  readonly logs: Array<{ at: number; line: LogLine }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];

  constructor(name: string, args: readonly string[], env: Readonly<Record<string, string>> = {}) {
    this.name = name;
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'NODE_TEST_CONTEXT') base[k] = v;
    this.proc = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
      });
    });
    this.#lines(this.proc.stdout!, (l) => {
      this.stdout.push(l);
      for (const w of [...this.#waiters]) {
        const m = l.match(w.re);
        if (m !== null) {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          w.resolve(m);
        }
      }
    });
    this.#lines(this.proc.stderr!, (l) => {
      this.stderr.push(l);
      if (this.stderr.length > 5_000) this.stderr.splice(0, 1_000);
      if (l.startsWith('{')) {
        try {
          this.logs.push({ at: Date.now(), line: JSON.parse(l) as LogLine });
        } catch {
          // not a log line
        }
      }
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The first stdout line matching `re`. */
  line(re: RegExp, timeout = 30_000): Promise<RegExpMatchArray> {
    for (const l of this.stdout) {
      const m = l.match(re);
      if (m !== null) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line ${re} within ${timeout} ms; stderr: ${this.stderr.slice(-10).join(' | ')}`)), timeout);
      const w = {
        re,
        resolve: (m: RegExpMatchArray): void => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.#waiters.push(w);
      void this.exited.then(({ code, signal }) => {
        if (this.#waiters.includes(w)) {
          clearTimeout(timer);
          reject(new Error(`${this.name} exited (${code ?? signal}) before printing ${re}; stderr: ${this.stderr.slice(-10).join(' | ')}`));
        }
      });
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.proc.kill(sig);
  }

  /** SIGKILL (after SIGCONT, in case it is stopped) and wait for the exit. */
  async kill(): Promise<void> {
    this.hardKill();
    await this.exited;
  }

  hardKill(): void {
    if (!this.running) return;
    this.proc.kill('SIGCONT');
    this.proc.kill('SIGKILL');
  }

  #lines(stream: NodeJS.ReadableStream, each: (line: string) => void): void {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        each(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    stream.on('end', () => {
      if (buf !== '') each(buf);
      buf = '';
    });
  }
}

/** Kills every child still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill()));
}
