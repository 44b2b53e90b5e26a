/**
 * The `spofless` command, as a function: `run(argv, io)` resolves the exit code. `main.ts` wires it
 * to the process; tests call it in-process with their own streams.
 *
 * Exit codes: 0 done; 1 the operation failed (one line on stderr: the server's message, or why the
 * control plane could not be reached); 2 bad usage (unknown command or flag, missing argument).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ControlPlaneClient, DEFAULT_URL } from '../client/index.js';
import type { Instance, InstanceStatus, KeyValue, WatchEvent } from '../client/index.js';
import type { StoreUrl } from '../store/index.js';
import { oneLine, parseArgsMessage } from './args.js';
import { age, cell, table } from './format.js';
import { ROUTING_USAGE, isRoutingCommand, runRouting } from './routing.js';

/** Where the CLI writes and what it reads from its environment. */
export interface CliIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Ends long-running commands (`up`, `watch`): the process's SIGINT/SIGTERM. */
  readonly signal?: AbortSignal;
}

const USAGE = `usage: spofless <command> [options]

commands:
  up [--host H] [--port P] [--data DIR]            run a control plane (default 127.0.0.1:7400, ./.spofless)
     [--store etcd://H:P,H:P,...[/NS]]             on an etcd cluster instead (members fail over;
                                                   NS: key prefix)
     [--election-ttl S]                            with --store etcd: replicas elect a leader on a lease of S
                                                   seconds (default 10): a dead leader is replaced within S
     [--log-level L]                               request log on stderr: info (default; successful kv
                                                   get/put and keepalive requests only at debug), debug,
                                                   warn, error, silent
  services                                         list services
  instances <service> [--status S[,S]] [--zone Z]  list a service's instances
  kv get <key>                                     print a value
  kv put <key> <value>                             set a value ('-' reads it from stdin)
  kv del <key> [--prefix]                          delete a key (or every key under a prefix)
  kv ls [prefix] [--limit N] [--keys-only]         list keys
  watch <prefix> [--revision N]                    print changes until Ctrl-C
  flags ls|get|set|rm|on|off|rollout|import|export|history ...
                                                   feature flags (see 'spofless flags --help')
  gateway [--port P] [--admin-port P] [--zone Z]   run a gateway fed by the catalog (see
          [--state-dir DIR] [--grace MS]           'spofless gateway --help')
${ROUTING_USAGE}
options:
  --url URL[,URL...]   control plane (default $SPOFLESS_URL, else ${DEFAULT_URL})
  --json               machine-readable output
  -h, --help           this text
  --version            the version
`;

const COMMON = ['url', 'json', 'help', 'version'];
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  up: ['host', 'port', 'data', 'store', 'election-ttl', 'json', 'help', 'log-level'],
  services: COMMON,
  instances: [...COMMON, 'status', 'zone'],
  'kv get': [...COMMON, 'revision'],
  'kv put': [...COMMON, 'lease'],
  'kv del': [...COMMON, 'prefix'],
  'kv ls': [...COMMON, 'limit', 'keys-only', 'revision'],
  watch: [...COMMON, 'revision', 'prev-kv'],
};

const LOG_LEVELS = new Set(['debug', 'info', 'warn', 'error', 'silent']);
const STATUSES = new Set(['passing', 'warning', 'critical', 'draining', 'maintenance']);

/** A usage error: exit 2 with a hint. */
class UsageError extends Error {}

/**
 * Runs the CLI with `argv` (without `node` and the script). Never throws; resolves the exit code.
 *
 * @example
 * ```ts
 * const code = await run(['kv', 'get', '/config/mode', '--json'], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  if (isRoutingCommand(argv)) return runRouting(argv, io);
  // `gateway` has its own flags (src/cli/gateway.ts).
  if (argv[0] === 'gateway') return (await import('./gateway.js')).gatewayCommand(argv.slice(1), io);
  // `flags` has its own options (src/cli/flags.ts).
  if (argv[0] === 'flags') return (await import('./flags.js')).runFlags(argv.slice(1), io);
  let json = false;
  try {
    const { values, positionals } = parse(argv);
    json = values.json === true;
    if (values.version === true) {
      io.stdout.write(`${version()}\n`);
      return 0;
    }
    const [cmd, sub] = positionals;
    if (values.help === true || cmd === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (cmd === undefined) throw new UsageError('missing command');
    const name = cmd === 'kv' ? `kv ${sub ?? ''}` : cmd;
    const allowed = ALLOWED[name];
    if (allowed === undefined) {
      throw new UsageError(cmd === 'kv' ? (sub === undefined ? 'kv needs a subcommand: get, put, del or ls' : `unknown kv subcommand '${sub}'`) : `unknown command '${cmd}'`);
    }
    for (const key of Object.keys(values)) {
      if (!allowed.includes(key)) throw new UsageError(`option '--${key}' does not apply to '${name}'`);
    }
    const args = positionals.slice(cmd === 'kv' ? 2 : 1);
    if (cmd === 'up') return await up(values, args, io);
    const client = new ControlPlaneClient({ url: values.url ?? io.env.SPOFLESS_URL ?? DEFAULT_URL });
    try {
      switch (name) {
        case 'services':
          return await services(client, args, json, io);
        case 'instances':
          return await instances(client, args, values, json, io);
        case 'kv get':
          return await kvGet(client, args, values, json, io);
        case 'kv put':
          return await kvPut(client, args, values, json, io);
        case 'kv del':
          return await kvDel(client, args, values, json, io);
        case 'kv ls':
          return await kvLs(client, args, values, json, io);
        default:
          return await watch(client, args, values, json, io);
      }
    } finally {
      client.close();
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spofless: ${err.message} (see 'spofless --help')\n`);
      return 2;
    }
    io.stderr.write(`spofless: ${oneLine(err)}\n`);
    return 1;
  }
}

type Values = ReturnType<typeof parse>['values'];

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        host: { type: 'string' },
        port: { type: 'string' },
        data: { type: 'string' },
        store: { type: 'string' },
        'election-ttl': { type: 'string' },
        status: { type: 'string' },
        zone: { type: 'string' },
        prefix: { type: 'boolean' },
        limit: { type: 'string' },
        'keys-only': { type: 'boolean' },
        revision: { type: 'string' },
        'prev-kv': { type: 'boolean' },
        lease: { type: 'string' },
        'log-level': { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError(parseArgsMessage(err));
  }
}

function version(): string {
  // src/cli/run.ts and dist/cli/run.js are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--${name} must be a positive integer; got '${value}'`);
  }
  return Number(value);
}

function exactly(args: readonly string[], names: readonly string[], what: string): string[] {
  if (args.length < names.length) throw new UsageError(`${what} needs ${names.map((n) => `<${n}>`).join(' ')}`);
  if (args.length > names.length) throw new UsageError(`${what}: unexpected argument '${args[names.length]}'`);
  return [...args];
}

function out(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

// ---- commands --------------------------------------------------------------------------------------

async function up(values: Values, args: readonly string[], io: CliIo): Promise<number> {
  exactly(args, [], 'up');
  const port = values.port === undefined ? 7400 : Number(values.port);
  if (!/^\d+$/.test(values.port ?? '0') || port > 65535) throw new UsageError(`--port must be 0 to 65535; got '${values.port}'`);
  const host = values.host ?? '127.0.0.1';
  let store: StoreUrl | undefined;
  if (values.store !== undefined) {
    const { parseStoreUrl } = await import('../store/index.js');
    try {
      store = parseStoreUrl(values.store);
    } catch (err) {
      throw new UsageError(`--store: ${oneLine(err)}`);
    }
    if (values.data !== undefined) throw new UsageError('give --data DIR or --store URL, not both (--store sqlite:DIR names the directory)');
  }
  const dataDir = store?.engine === 'sqlite' ? store.dataDir : (values.data ?? './.spofless');
  const electionTtl = positiveInt('election-ttl', values['election-ttl']);
  if (electionTtl !== undefined && store?.engine !== 'etcd') throw new UsageError('--election-ttl needs --store etcd://... (one control plane on SQLite leads without an election)');
  if (electionTtl !== undefined && electionTtl > 3600) throw new UsageError(`--election-ttl must be 1 to 3600 seconds; got '${values['election-ttl']}'`);
  const level = values['log-level'] ?? 'info';
  if (!LOG_LEVELS.has(level)) throw new UsageError(`--log-level must be one of ${[...LOG_LEVELS].join(', ')}; got '${level}'`);
  // Loaded here, not at the top: the server (fastify, SQLite) is only for `up`; other commands start fast.
  const { startControlPlane } = await import('../server/index.js');
  // Request logs (JSON lines) go to stderr, so that stdout carries only what `up` says (its URL).
  const logger = io.env.NODE_TEST_CONTEXT === undefined ? { level, stream: io.stderr as NodeJS.WritableStream } : false;
  const cp = await startControlPlane({
    host,
    port,
    ...(store?.engine === 'etcd' ? { store: values.store! } : { dataDir }),
    ...(electionTtl !== undefined ? { election: { ttl: electionTtl } } : {}),
    logger,
  });
  const where = store?.engine === 'etcd' ? { store: `etcd://${store.endpoints.join(',')}${store.namespace.replace(/\/$/, '')}` } : { dataDir };
  if (values.json === true) io.stdout.write(`${JSON.stringify({ url: cp.url, ...where })}\n`);
  else io.stdout.write(`spofless listening on ${cp.url}\n`);
  await new Promise<void>((resolve) => {
    if (io.signal === undefined) return;
    if (io.signal.aborted) resolve();
    else io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await cp.close();
  if (values.json !== true) io.stderr.write('spofless: control plane stopped\n');
  return 0;
}

async function services(client: ControlPlaneClient, args: readonly string[], json: boolean, io: CliIo): Promise<number> {
  exactly(args, [], 'services');
  const res = await client.services();
  if (json) out(io, res);
  else if (res.services.length === 0) io.stdout.write('no services\n');
  else io.stdout.write(table(['SERVICE', 'INSTANCES', 'PASSING'], res.services.map((s) => [s.name, String(s.instances), String(s.passing)])));
  return 0;
}

async function instances(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  const [service] = exactly(args, ['service'], 'instances');
  // One status or several, comma-separated (the API takes both).
  if (values.status !== undefined && !values.status.split(',').every((s) => STATUSES.has(s))) {
    throw new UsageError(`--status must be one or more (comma-separated) of ${[...STATUSES].join(', ')}; got '${values.status}'`);
  }
  const res = await client.instances(service!, {
    ...(values.status !== undefined ? { status: values.status.split(',') as InstanceStatus[] } : {}),
    ...(values.zone !== undefined ? { zone: values.zone } : {}),
  });
  if (json) {
    out(io, res);
    return 0;
  }
  if (res.instances.length === 0) {
    io.stdout.write(`no instances of ${service}\n`);
    return 0;
  }
  const now = Date.now();
  const rows = res.instances.map((i: Instance) => [
    cell(i.id, 40),
    `${i.address.includes(':') ? `[${i.address}]` : i.address}:${i.port}`,
    i.zone ?? '-',
    i.version ?? i.color ?? '-',
    i.status,
    i.registeredAt === undefined ? '-' : age(now - new Date(i.registeredAt).getTime()),
    cell(i.tags.join(',') || '-', 30),
  ]);
  io.stdout.write(table(['ID', 'ADDRESS', 'ZONE', 'VERSION', 'STATUS', 'AGE', 'TAGS'], rows));
  return 0;
}

async function kvGet(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  const [key] = exactly(args, ['key'], 'kv get');
  const revision = positiveInt('revision', values.revision);
  const kv = await client.get(key!, revision !== undefined ? { revision } : {});
  if (kv === undefined) {
    if (json) out(io, { kv: null });
    io.stderr.write(`spofless: key ${JSON.stringify(key)} not found\n`);
    return 1;
  }
  if (json) out(io, kv);
  else io.stdout.write(kv.value.endsWith('\n') ? kv.value : `${kv.value}\n`);
  return 0;
}

async function kvPut(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  const [key, raw] = exactly(args, ['key', 'value'], 'kv put');
  const value = raw === '-' ? readFileSync(0, 'utf8') : raw!;
  const res = await client.put(key!, value, values.lease !== undefined ? { lease: values.lease } : {});
  if (json) out(io, res);
  else io.stdout.write(`OK revision ${res.revision}\n`);
  return 0;
}

async function kvDel(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  const [key] = exactly(args, ['key'], 'kv del');
  const res = await client.delete(key!, { prefix: values.prefix === true });
  if (json) out(io, res);
  else io.stdout.write(`deleted ${res.deleted} key${res.deleted === 1 ? '' : 's'} (revision ${res.revision})\n`);
  return 0;
}

async function kvLs(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  if (args.length > 1) throw new UsageError(`kv ls: unexpected argument '${args[1]}'`);
  const prefix = args[0] ?? '';
  const limit = positiveInt('limit', values.limit);
  const revision = positiveInt('revision', values.revision);
  const res = await client.range(prefix, {
    ...(limit !== undefined ? { limit } : {}),
    ...(revision !== undefined ? { revision } : {}),
    ...(values['keys-only'] === true ? { keysOnly: true } : {}),
  });
  if (json) {
    out(io, res);
    return 0;
  }
  if (res.kvs.length === 0) {
    io.stdout.write(`no keys${prefix === '' ? '' : ` under ${JSON.stringify(prefix)}`}\n`);
    return 0;
  }
  const keysOnly = values['keys-only'] === true;
  const headers = keysOnly ? ['KEY', 'REV', 'VER', 'LEASE'] : ['KEY', 'REV', 'VER', 'LEASE', 'VALUE'];
  const rows = res.kvs.map((kv: KeyValue) => {
    const base = [cell(kv.key, 80), String(kv.modRevision), String(kv.version), kv.lease ?? '-'];
    return keysOnly ? base : [...base, cell(kv.value)];
  });
  io.stdout.write(table(headers, rows));
  if (res.more) io.stdout.write(`... more keys (revision ${res.revision}); raise --limit\n`);
  return 0;
}

async function watch(client: ControlPlaneClient, args: readonly string[], values: Values, json: boolean, io: CliIo): Promise<number> {
  const [prefix] = exactly(args, ['prefix'], 'watch');
  const revision = positiveInt('revision', values.revision);
  // A first request, so that a control plane that is not there fails the command at once.
  await client.health(io.signal !== undefined ? { signal: io.signal } : {});
  const w = client.watch(prefix!, {
    ...(revision !== undefined ? { startRevision: revision } : {}),
    ...(values['prev-kv'] === true ? { prevKv: true } : {}),
    ...(io.signal !== undefined ? { signal: io.signal } : {}),
  });
  let wasConnected = false;
  for await (const msg of w) {
    switch (msg.type) {
      case 'connected':
        if (wasConnected) io.stderr.write(`spofless: watching again from revision ${w.nextRevision ?? msg.revision + 1}\n`);
        else if (!json) io.stderr.write(`spofless: watching ${JSON.stringify(prefix)} at revision ${msg.revision}\n`);
        wasConnected = true;
        break;
      case 'events':
        for (const e of msg.events) io.stdout.write(json ? `${JSON.stringify({ revision: msg.revision, ...e })}\n` : eventLine(msg.revision, e));
        break;
      case 'disconnected':
        io.stderr.write(`spofless: lost the watch stream (${oneLine(msg.error)}); retrying in ${msg.retryIn} ms\n`);
        break;
      case 'compacted':
        io.stderr.write(`spofless: revision ${msg.requestedRevision} has been compacted (oldest kept: ${msg.compactRevision}); watch again with --revision ${msg.compactRevision} or without --revision\n`);
        return 1;
    }
  }
  return 0;
}

function eventLine(revision: number, e: WatchEvent): string {
  return e.type === 'put' ? `${revision}  PUT     ${e.kv.key}  ${cell(e.kv.value)}\n` : `${revision}  DELETE  ${e.kv.key}\n`;
}
