/**
 * Child processes for the end-to-end tests: the control plane (through the real CLI, `spofless up`)
 * and replicas of the sample service, each on loopback, each killed when its test ends, passed or
 * failed (`t.after`), and as a safety net when this process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = new URL('../..', import.meta.url).pathname;
export const CLI = join(ROOT, 'src/cli/main.ts');
export const SAMPLE = join(ROOT, 'test/fixtures/sample-service.ts');

/** Lines kept per stream; older ones are dropped in batches (a chatty child must not grow without bound). */
const MAX_LINES = 5_000;

const live = new Set<Child>();
process.on('exit', () => {
  for (const c of live) c.hardKill();
});

export interface ChildOptions {
  /** Names the child in errors. */
  readonly name?: string;
  /**
   * Run without the test runner's `NODE_TEST_CONTEXT`: a child that sees it (a CLI through
   * `node --test`) keeps quiet on stderr, so `spofless up`'s JSON log lines need this.
   */
  readonly withoutTestContext?: boolean;
  /** How long `line()` waits by default, ms (15 s). */
  readonly lineTimeout?: number;
}

/**
 * A child process (`node --import tsx <args>`) with its output collected line by line. Every child is
 * SIGKILLed when this process exits, and by `stopAll()`.
 */
export class Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #lineTimeout: number;
  #waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];

  constructor(args: readonly string[], env: Readonly<Record<string, string>> = {}, options: ChildOptions = {}) {
    this.name = options.name ?? 'child';
    this.#lineTimeout = options.lineTimeout ?? 15_000;
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !(options.withoutTestContext === true && k === 'NODE_TEST_CONTEXT')) base[k] = v;
    this.proc = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
      });
    });
    this.#lines(this.proc.stdout!, (l) => {
      keep(this.stdout, l);
      for (const w of [...this.#waiters]) {
        const m = l.match(w.re);
        if (m !== null) {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          w.resolve(m);
        }
      }
    });
    this.#lines(this.proc.stderr!, (l) => {
      keep(this.stderr, l);
      this.onStderrLine(l);
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Each stderr line as it arrives (for subclasses). */
  protected onStderrLine(_line: string): void {}

  /** Resolves the first stdout line matching `re` (already printed or to come). */
  line(re: RegExp, timeout = this.#lineTimeout): Promise<RegExpMatchArray> {
    for (const l of this.stdout) {
      const m = l.match(re);
      if (m !== null) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name}: no line ${re} within ${timeout} ms; stdout: ${this.stdout.slice(-20).join(' | ')}; stderr: ${this.stderr.slice(-20).join(' | ')}`)),
        timeout,
      );
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
          reject(new Error(`${this.name} exited (${code ?? signal}) before printing ${re}; stderr: ${this.stderr.slice(-20).join(' | ')}`));
        }
      });
    });
  }

  /** Sends `signal` if the child still runs. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.proc.kill(signal);
  }

  /** SIGKILL, after SIGCONT in case it is stopped (SIGSTOP), so that the kill lands. */
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

function keep(lines: string[], line: string): void {
  lines.push(line);
  if (lines.length > MAX_LINES) lines.splice(0, MAX_LINES / 5);
}

/** SIGKILLs every child still running and waits for the exits. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...live].map(async (c) => {
      c.hardKill();
      await c.exited;
    }),
  );
}

/** Registers the child to be killed (SIGKILL) when the test ends. */
function owned(t: TestContext, c: Child): Child {
  t.after(async () => {
    c.hardKill();
    await c.exited;
  });
  return c;
}

/** A temporary data directory, removed when the test ends. */
export function tempDir(t: TestContext, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `spofless-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A control plane run by the CLI (`spofless up`): resolves once it printed its URL. */
export async function controlPlane(t: TestContext, options: { dataDir: string; port?: number }): Promise<{ child: Child; url: string; port: number }> {
  const child = owned(t, new Child([CLI, 'up', '--port', String(options.port ?? 0), '--data', options.dataDir]));
  const m = await child.line(/^spofless listening on (http:\/\/\S+)$/);
  const url = m[1]!;
  return { child, url, port: Number(new URL(url).port) };
}

/** One replica of the sample service: resolves once it registered. */
export async function sampleService(
  t: TestContext,
  env: Readonly<Record<string, string>>,
): Promise<{ child: Child; id: string; url: string }> {
  const child = owned(t, new Child([SAMPLE], env));
  const m = await child.line(/^ready (.*)$/);
  const info = JSON.parse(m[1]!) as { id: string; url: string };
  return { child, id: info.id, url: info.url };
}

/** Runs the CLI to completion: exit code and output. */
export async function cli(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = new Child([CLI, ...args], env);
  const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
  const { code } = await c.exited;
  clearTimeout(timer);
  // Let the last 'data' events land.
  await new Promise((r) => setImmediate(r));
  return { code, stdout: c.stdout.join('\n'), stderr: c.stderr.join('\n') };
}

/** Starts the CLI and returns the child (for `watch`, `up`): killed when the test ends. */
export function cliChild(t: TestContext, args: readonly string[], env: Readonly<Record<string, string>> = {}): Child {
  return owned(t, new Child([CLI, ...args], env));
}

/** Polls `cond` every 5 ms until true, or throws after `ms`. */
export async function until(cond: () => boolean, ms: number, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
