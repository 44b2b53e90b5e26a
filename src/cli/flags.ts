/**
 * `spofless flags ...`: feature flags from the command line, over the control plane's `/v1/flags` API.
 *
 * Every change names its actor (`--actor`, else `$USER`) for the audit log. Exit codes as the rest of
 * the CLI: 0 done, 1 the operation failed (one line: the server's message), 2 bad usage.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_URL } from '../client/index.js';
import { connectionFailureCode } from '../client/http.js';
import { NAME_PATTERN } from '../flags/validate.js';
import type { Flag } from '../flags/types.js';
import { parseArgsMessage } from './args.js';
import { age, cell, table } from './format.js';

/** What the flags commands need of the CLI's io (a subset of `CliIo`). */
export interface FlagsIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
  readonly env: Readonly<Record<string, string | undefined>>;
}

export const FLAGS_USAGE = `usage: spofless flags <command> [options]

commands:
  ls                                   list the environment's flags
  get <flag>                           print a flag (JSON)
  set <flag> <file|->                  create or replace a flag from JSON ('-' reads stdin)
  rm <flag>                            delete a flag
  on <flag>                            turn a flag on
  off <flag>                           turn a flag off: its off variant everywhere (kill switch)
  rollout <flag> <percent>             serve <percent>% the "on" variant (--variant V for non-boolean
                                       flags), the rest the off variant; widening keeps users in
  segments                             list segments
  segment get|set|rm <name> [file|-]   read, write or delete a segment
  import <file|->                      import a flagd flag definition (--prune deletes flags not in it)
  export [--output FILE]               write the environment as a flagd flag definition
  history [flag] [--limit N]           who changed what, newest first

options:
  --env ENV            environment (default $SPOFLESS_ENV, else "default")
  --actor NAME         who makes the change, for the audit log (default $USER)
  --revision N         change only if the flag is still at revision N (else 409, nothing written)
  --url URL[,URL...]   control plane (default $SPOFLESS_URL, else ${DEFAULT_URL})
  --json               machine-readable output
`;

class UsageError extends Error {}
class Failure extends Error {}

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        env: { type: 'string' },
        actor: { type: 'string' },
        revision: { type: 'string' },
        url: { type: 'string' },
        json: { type: 'boolean' },
        variant: { type: 'string' },
        prune: { type: 'boolean' },
        limit: { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(parseArgsMessage(err));
  }
}

type Values = ReturnType<typeof parse>['values'];

const OPTIONS: Readonly<Record<string, readonly string[]>> = {
  ls: [],
  get: [],
  set: ['revision'],
  rm: ['revision'],
  on: ['revision'],
  off: ['revision'],
  rollout: ['revision', 'variant'],
  segments: [],
  segment: ['revision'],
  import: ['prune'],
  export: ['output'],
  history: ['limit'],
};
const COMMON = ['env', 'actor', 'url', 'json', 'help'];

/** The control plane over plain fetch, trying each URL in turn while connections fail. */
class Api {
  readonly #urls: string[];
  readonly #actor: string;
  constructor(urls: string[], actor: string) {
    this.#urls = urls;
    this.#actor = actor;
  }

  async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    let last: unknown;
    for (const base of this.#urls) {
      let res: Response;
      try {
        res = await fetch(base + path, {
          method,
          headers: { accept: 'application/json', 'x-spofless-actor': this.#actor, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
          ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
          signal: AbortSignal.timeout(15_000),
        });
      } catch (err) {
        last = err;
        if (connectionFailureCode(err) !== undefined) continue;
        throw new Failure(`${method} ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? {} : JSON.parse(text);
      } catch {
        throw new Failure(`${method} ${path}: the control plane answered ${res.status} with a body that is not JSON`);
      }
      if (res.status >= 400) {
        const e = (parsed as { error?: { code?: string; message?: string } }).error;
        throw new Failure(e?.message !== undefined ? `${e.message} (${e.code ?? res.status})` : `${method} ${path}: HTTP ${res.status}`);
      }
      return parsed as T;
    }
    const code = connectionFailureCode(last);
    throw new Failure(`cannot reach the control plane at ${this.#urls.join(', ')}: ${code ?? (last instanceof Error ? last.message : 'no answer')}`);
  }
}

function exactly(args: readonly string[], names: readonly string[], what: string): string[] {
  if (args.length < names.length) throw new UsageError(`${what} needs ${names.map((n) => `<${n}>`).join(' ')}`);
  if (args.length > names.length) throw new UsageError(`${what}: unexpected argument '${args[names.length]}'`);
  return [...args];
}

function nameArg(value: string, what: string): string {
  if (!NAME_PATTERN.test(value)) throw new UsageError(`${what} must be letters, digits, '_', '.', '-' (starting with a letter or digit); got '${value}'`);
  return value;
}

function readJson(source: string): unknown {
  let text: string;
  try {
    text = source === '-' ? readFileSync(0, 'utf8') : readFileSync(source, 'utf8');
  } catch (err) {
    throw new Failure(`cannot read ${source === '-' ? 'stdin' : source}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Failure(`${source === '-' ? 'stdin' : source} is not JSON: ${(err as Error).message}`);
  }
}

function ifMatch(values: Values): Record<string, string> {
  if (values.revision === undefined) return {};
  if (!/^\d+$/.test(values.revision)) throw new UsageError(`--revision must be a revision number; got '${values.revision}'`);
  return { 'if-match': `"${values.revision}"` };
}

function rolloutCell(f: Flag): string {
  if (f.rollout === undefined) return '-';
  return f.rollout.splits.map((s) => `${s.variant} ${s.weight}%`).join(' / ');
}

/**
 * Runs `spofless flags <argv...>`; resolves the exit code. Never throws.
 *
 * @example
 * ```ts
 * const code = await runFlags(['rollout', 'new-checkout', '25', '--env', 'production'], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function runFlags(argv: readonly string[], io: FlagsIo): Promise<number> {
  try {
    const { values, positionals } = parse(argv);
    const [cmd, ...args] = positionals;
    if (values.help === true || cmd === 'help') {
      io.stdout.write(FLAGS_USAGE);
      return 0;
    }
    if (cmd === undefined) throw new UsageError('flags needs a command: ls, get, set, rm, on, off, rollout, segments, segment, import, export or history');
    const allowed = OPTIONS[cmd];
    if (allowed === undefined) throw new UsageError(`unknown flags command '${cmd}'`);
    for (const k of Object.keys(values)) if (!COMMON.includes(k) && !allowed.includes(k)) throw new UsageError(`option '--${k}' does not apply to 'flags ${cmd}'`);
    const env = nameArg(values.env ?? io.env.SPOFLESS_ENV ?? 'default', '--env');
    const actor = values.actor ?? io.env.USER ?? io.env.USERNAME ?? 'unknown';
    if (actor.length === 0 || actor.length > 256) throw new UsageError('--actor must be 1 to 256 characters');
    const urls = (values.url ?? io.env.SPOFLESS_URL ?? DEFAULT_URL).split(',').map((u) => u.trim().replace(/\/+$/, '')).filter((u) => u.length > 0);
    for (const u of urls) if (!/^https?:\/\/[^/]+$/.test(u)) throw new UsageError(`--url must be http(s)://host:port; got '${u}'`);
    const api = new Api(urls, actor);
    const base = `/v1/flags/${env}`;
    const json = values.json === true;
    const print = (v: unknown): void => void io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
    switch (cmd) {
      case 'ls': {
        exactly(args, [], 'flags ls');
        const res = await api.call<{ flags: Array<{ flag: Flag; revision: number }>; revision: number }>('GET', base);
        if (json) print(res);
        else if (res.flags.length === 0) io.stdout.write(`no flags in environment ${env}\n`);
        else
          io.stdout.write(
            table(
              ['FLAG', 'TYPE', 'STATE', 'DEFAULT', 'RULES', 'ROLLOUT', 'REVISION'],
              res.flags.map(({ flag: f, revision }) => [cell(f.key, 40), f.type, f.enabled ? 'on' : `off (${f.offVariant ?? f.defaultVariant})`, cell(f.defaultVariant, 20), String(f.rules?.length ?? 0), rolloutCell(f), String(revision)]),
            ),
          );
        return 0;
      }
      case 'get': {
        const [key] = exactly(args, ['flag'], 'flags get');
        const res = await api.call<{ flag: Flag; revision: number }>('GET', `${base}/flags/${nameArg(key!, '<flag>')}`);
        print(json ? res : res.flag);
        return 0;
      }
      case 'set': {
        const [key, file] = exactly(args, ['flag', 'file'], 'flags set');
        const body = readJson(file!);
        if (typeof body === 'object' && body !== null && !Array.isArray(body) && !('key' in body)) (body as Record<string, unknown>).key = key;
        const res = await api.call<{ flag: Flag; revision: number; created: boolean }>('PUT', `${base}/flags/${nameArg(key!, '<flag>')}`, body, ifMatch(values));
        if (json) print(res);
        else io.stdout.write(`${res.created ? 'created' : 'updated'} flag ${key} in ${env} at revision ${res.revision}\n`);
        return 0;
      }
      case 'rm': {
        const [key] = exactly(args, ['flag'], 'flags rm');
        const res = await api.call<{ revision: number }>('DELETE', `${base}/flags/${nameArg(key!, '<flag>')}`, undefined, ifMatch(values));
        if (json) print(res);
        else io.stdout.write(`deleted flag ${key} from ${env} at revision ${res.revision}\n`);
        return 0;
      }
      case 'on':
      case 'off': {
        const [key] = exactly(args, ['flag'], `flags ${cmd}`);
        const res = await api.call<{ flag: Flag; revision: number }>('POST', `${base}/flags/${nameArg(key!, '<flag>')}/${cmd}`, undefined, ifMatch(values));
        if (json) print(res);
        else io.stdout.write(`flag ${key} is ${cmd} in ${env}${cmd === 'off' ? ` (serving ${res.flag.offVariant ?? res.flag.defaultVariant} everywhere)` : ''} at revision ${res.revision}\n`);
        return 0;
      }
      case 'rollout': {
        const [key, pct] = exactly(args, ['flag', 'percent'], 'flags rollout');
        const percent = Number(pct!.replace(/%$/, ''));
        if (!/^\d+(\.\d{1,2})?%?$/.test(pct!) || percent > 100) throw new UsageError(`<percent> must be a number from 0 to 100 (up to two decimals); got '${pct}'`);
        const res = await api.call<{ flag: Flag; revision: number }>('POST', `${base}/flags/${nameArg(key!, '<flag>')}/rollout`, { percent, ...(values.variant === undefined ? {} : { variant: values.variant }) }, ifMatch(values));
        if (json) print(res);
        else io.stdout.write(`flag ${key} in ${env}: ${rolloutCell(res.flag)} (by ${res.flag.rollout?.bucketBy ?? 'targetingKey'}) at revision ${res.revision}\n`);
        return 0;
      }
      case 'segments': {
        exactly(args, [], 'flags segments');
        const res = await api.call<{ segments: Array<{ segment: { key: string; included?: string[]; conditions?: unknown[] }; revision: number }> }>('GET', base);
        if (json) print(res.segments);
        else if (res.segments.length === 0) io.stdout.write(`no segments in environment ${env}\n`);
        else io.stdout.write(table(['SEGMENT', 'KEYS', 'CONDITIONS', 'REVISION'], res.segments.map(({ segment: s, revision }) => [s.key, String(s.included?.length ?? 0), String(s.conditions?.length ?? 0), String(revision)])));
        return 0;
      }
      case 'segment': {
        const [sub, name, file] = args;
        if (sub === 'get' || sub === 'rm') {
          exactly(args, ['get|rm', 'name'], `flags segment ${sub}`);
          const path = `${base}/segments/${nameArg(name!, '<name>')}`;
          const res = await api.call<unknown>(sub === 'get' ? 'GET' : 'DELETE', path, undefined, sub === 'rm' ? ifMatch(values) : {});
          if (json || sub === 'get') print(sub === 'get' && !json ? (res as { segment: unknown }).segment : res);
          else io.stdout.write(`deleted segment ${name} from ${env}\n`);
          return 0;
        }
        if (sub === 'set') {
          exactly(args, ['set', 'name', 'file'], 'flags segment set');
          const body = readJson(file!);
          if (typeof body === 'object' && body !== null && !Array.isArray(body) && !('key' in body)) (body as Record<string, unknown>).key = name;
          const res = await api.call<{ revision: number; created: boolean }>('PUT', `${base}/segments/${nameArg(name!, '<name>')}`, body, ifMatch(values));
          if (json) print(res);
          else io.stdout.write(`${res.created ? 'created' : 'updated'} segment ${name} in ${env} at revision ${res.revision}\n`);
          return 0;
        }
        throw new UsageError(sub === undefined ? 'flags segment needs get, set or rm' : `unknown flags segment command '${sub}'`);
      }
      case 'import': {
        const [file] = exactly(args, ['file'], 'flags import');
        const doc = readJson(file!);
        const res = await api.call<{ created: string[]; updated: string[]; unchanged: string[]; deleted: string[]; revision: number }>('POST', `${base}/import${values.prune === true ? '?prune=true' : ''}`, doc);
        if (json) print(res);
        else io.stdout.write(`imported into ${env}: ${res.created.length} created, ${res.updated.length} updated, ${res.unchanged.length} unchanged, ${res.deleted.length} deleted\n`);
        return 0;
      }
      case 'export': {
        exactly(args, [], 'flags export');
        const doc = await api.call<unknown>('GET', `${base}/export`);
        const text = `${JSON.stringify(doc, null, 2)}\n`;
        if (values.output === undefined) io.stdout.write(text);
        else {
          try {
            writeFileSync(values.output, text);
          } catch (err) {
            throw new Failure(`cannot write ${values.output}: ${(err as Error).message}`);
          }
          io.stderr.write(`wrote ${values.output}\n`);
        }
        return 0;
      }
      default: {
        // history
        if (args.length > 1) throw new UsageError(`flags history: unexpected argument '${args[1]}'`);
        const key = args[0] === undefined ? undefined : nameArg(args[0], '[flag]');
        const limit = values.limit === undefined ? 50 : Number(values.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError(`--limit must be 1 to 10000; got '${values.limit}'`);
        const q = new URLSearchParams({ limit: String(limit), ...(key === undefined ? {} : { key }) });
        const res = await api.call<{ records: Array<{ at: string; actor: string; action: string; kind: string; key: string; revision: number; before: Flag | null; after: Flag | null }> }>('GET', `${base}/history?${q.toString()}`);
        if (json) print(res.records);
        else if (res.records.length === 0) io.stdout.write(`no changes recorded${key === undefined ? '' : ` for ${key}`} in ${env}\n`);
        else {
          const now = Date.now();
          io.stdout.write(
            table(
              ['WHEN', 'AGO', 'ACTOR', 'ACTION', 'WHAT', 'REVISION', 'CHANGE'],
              res.records.map((r) => [r.at, age(now - Date.parse(r.at)), cell(r.actor, 24), r.action, `${r.kind} ${r.key}`, String(r.revision), cell(summary(r.before, r.after), 60)]),
            ),
          );
        }
        return 0;
      }
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spofless: ${err.message} (see 'spofless flags --help')\n`);
      return 2;
    }
    io.stderr.write(`spofless: ${(err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ')}\n`);
    return 1;
  }
}

/** One line saying what a change did, for `history`. */
function summary(before: Flag | null, after: Flag | null): string {
  if (before === null) return 'created';
  if (after === null) return 'deleted';
  const parts: string[] = [];
  if ('enabled' in before && before.enabled !== after.enabled) parts.push(after.enabled ? 'turned on' : 'turned off');
  if (JSON.stringify(before.rollout) !== JSON.stringify(after.rollout)) parts.push(`rollout ${before.rollout ? rolloutCell(before) : '-'} -> ${after.rollout ? rolloutCell(after) : '-'}`);
  if (JSON.stringify(before.rules) !== JSON.stringify(after.rules)) parts.push('rules changed');
  if (JSON.stringify(before.variants) !== JSON.stringify(after.variants)) parts.push('variants changed');
  if (before.defaultVariant !== after.defaultVariant) parts.push(`default ${before.defaultVariant} -> ${after.defaultVariant}`);
  return parts.join('; ') || 'updated';
}
