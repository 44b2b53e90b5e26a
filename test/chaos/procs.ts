/**
 * Child processes of the chaos suite: control planes (the real CLI, `spofless up --store etcd://...`)
 * and sample-service replicas: test/helpers/procs.ts's `Child`, run without `NODE_TEST_CONTEXT` so
 * that `spofless up` writes its JSON log lines (pino) to stderr; the suite reads the leader's
 * health-status writes and election changes from them. Every child is SIGKILLed by `stopAll()` (the
 * suite's `finally`) and, as a safety net, when this process exits.
 */
import { Child } from '../helpers/procs.js';

export { CLI, SAMPLE, stopAll } from '../helpers/procs.js';

/** One JSON log line of a control plane. */
export type LogLine = Record<string, unknown> & { msg?: string; time?: number };

export class Proc extends Child {
  /** stderr lines that parse as JSON objects, with the local time they arrived. */
  readonly logs: Array<{ at: number; line: LogLine }> = [];

  constructor(name: string, args: readonly string[], env: Readonly<Record<string, string>> = {}) {
    super(args, env, { name, withoutTestContext: true, lineTimeout: 30_000 });
  }

  protected override onStderrLine(l: string): void {
    if (!l.startsWith('{')) return;
    try {
      this.logs.push({ at: Date.now(), line: JSON.parse(l) as LogLine });
    } catch {
      // not a log line
    }
  }

  /** Sends `sig` if the child still runs. */
  signal(sig: NodeJS.Signals): void {
    this.kill(sig);
  }

  /** SIGKILL (after SIGCONT, in case it is stopped) and wait for the exit. */
  async stop(): Promise<void> {
    this.hardKill();
    await this.exited;
  }
}
