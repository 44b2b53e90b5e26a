/** Argument helpers shared by the CLI's command modules (run.ts, flags.ts, routing.ts). */
import { isSpoflessError } from '../errors/index.js';

/**
 * A `node:util` `parseArgs` error as one short usage line: its messages are long and mention
 * internals, so keep the gist (`unknown option '--x'`, `option '--env' needs a value`).
 *
 * @example
 * ```ts
 * try { parseArgs({ args, options, strict: true }); } catch (err) { throw new UsageError(parseArgsMessage(err)); }
 * ```
 */
export function parseArgsMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const unknown = /Unknown option '([^']+)'/.exec(msg);
  if (unknown !== null) return `unknown option '${unknown[1]}'`;
  const missing = /Option '([^']+)'.* argument missing/.exec(msg);
  if (missing !== null) return `option '${missing[1]!.replace(/^-\w, /, '').replace(/ <value>$/, '')}' needs a value`;
  return msg.split('\n')[0] ?? msg;
}

/**
 * An error as one line for stderr (the server's message, or the code when it has none).
 *
 * @example
 * ```ts
 * io.stderr.write(`spofless: ${oneLine(err)}\n`);
 * ```
 */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim() || (isSpoflessError(err) ? err.code : 'unknown error');
}
