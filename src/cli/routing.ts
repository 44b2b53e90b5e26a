/**
 * `spofless route ...` and `spofless deploy ...`: gateway routes and their deploy steps, through the
 * control plane's `/v1/routes` API (docs/api.md). Same conventions as the rest of the CLI: exit 0 done,
 * 1 the operation failed (one line: the server's message), 2 bad usage.
 *
 * The route given to `route set` is checked here with the same `validateRoute` the server runs, so a
 * typo is reported before any network call, with the field named.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_URL } from '../client/index.js';
import { Transport, normalizeUrls } from '../client/http.js';
import { ROUTE_NAME_PATTERN, validateRoute, type HashKey, type Route } from '../routing/index.js';
import { oneLine, parseArgsMessage } from './args.js';
import { table } from './format.js';
import type { CliIo } from './run.js';

export const ROUTING_USAGE = `  route ls                                         list gateway routes
  route get <name>                                 print a route (JSON)
  route set <name> --file F|--json '{...}'         create or replace a route ('--file -' reads stdin)
        [--if-revision N]                          only if the route is at revision N (0: only create)
  route rm <name> [--if-revision N]                delete a route
  deploy status <route>                            the route's versions: traffic share, instances passing
  deploy switch <route> <color> [--force]          blue-green: send all traffic to <color>
  deploy rollback <route> [--force]                abandon the canary, or switch back to the previous color
  deploy canary <route> <version> <weight>         send <weight>% of users (0-100) to <version>,
         [--sticky-header H|--sticky-cookie C]     sticky on a header or cookie
         [--force]
  deploy promote <route> [--force]                 make the canary the active version
`;

/** A usage error: exit 2. */
class RoutingUsageError extends Error {}

/** True when `argv`'s command (its first positional) is `route` or `deploy`. */
export function isRoutingCommand(argv: readonly string[]): boolean {
  const first = commandWords(argv)[0];
  return first === 'route' || first === 'deploy';
}

type Spec = { readonly args: readonly string[]; readonly options: readonly string[] };

const SPECS: Readonly<Record<string, Spec>> = {
  'route ls': { args: [], options: [] },
  'route get': { args: ['name'], options: [] },
  'route set': { args: ['name'], options: ['file', 'json', 'if-revision'] },
  'route rm': { args: ['name'], options: ['if-revision'] },
  'deploy status': { args: ['route'], options: [] },
  'deploy switch': { args: ['route', 'color'], options: ['force'] },
  'deploy rollback': { args: ['route'], options: ['force'] },
  'deploy canary': { args: ['route', 'version', 'weight'], options: ['force', 'sticky-header', 'sticky-cookie'] },
  'deploy promote': { args: ['route'], options: ['force'] },
};

/** Options that take a value, so that the command words can be found before parsing. */
const VALUED = new Set(['--url', '--file', '--if-revision', '--sticky-header', '--sticky-cookie']);

/** The first two positionals (`route set`), skipping options and their values. */
function commandWords(argv: readonly string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (VALUED.has(a)) i++;
    else if (!a.startsWith('-')) words.push(a);
  }
  return words;
}

function parse(argv: readonly string[]) {
  // `--json` is the route's JSON for `route set`, and "machine-readable output" everywhere else.
  const set = commandWords(argv).join(' ') === 'route set';
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        json: { type: set ? 'string' : 'boolean' },
        help: { type: 'boolean', short: 'h' },
        file: { type: 'string' },
        'if-revision': { type: 'string' },
        force: { type: 'boolean' },
        'sticky-header': { type: 'string' },
        'sticky-cookie': { type: 'string' },
      },
    });
  } catch (err) {
    throw new RoutingUsageError(parseArgsMessage(err));
  }
}

function routeName(v: string, what: string): string {
  if (!ROUTE_NAME_PATTERN.test(v)) throw new RoutingUsageError(`${what} must be 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit; got '${v}'`);
  return v;
}

function revisionArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v)) throw new RoutingUsageError(`--if-revision must be a revision (0: only create); got '${v}'`);
  return Number(v);
}

interface Stored {
  route: Route;
  revision: number;
}

function trafficSummary(r: Route): string {
  const t = r.traffic;
  if (t === undefined || t.active === undefined) return 'all instances';
  let s = t.active;
  if (t.canary !== undefined) s += ` + canary ${t.canary.version} ${t.canary.weight}%`;
  if (t.previous !== undefined) s += ` (previous ${t.previous})`;
  return s;
}

/**
 * Runs `spofless route ...` or `spofless deploy ...`. Never throws; resolves the exit code.
 *
 * @example
 * ```ts
 * const code = await runRouting(['deploy', 'switch', 'api', 'green'], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function runRouting(argv: readonly string[], io: CliIo): Promise<number> {
  let t: Transport | undefined;
  try {
    const { values, positionals } = parse(argv);
    const [cmd, sub, ...args] = positionals;
    if (values.help === true) {
      io.stdout.write(`usage: spofless route|deploy <subcommand> [options]\n\n${ROUTING_USAGE}`);
      return 0;
    }
    const name = `${cmd} ${sub ?? ''}`;
    const spec = SPECS[name];
    if (spec === undefined) {
      const subs = Object.keys(SPECS).filter((k) => k.startsWith(`${cmd} `)).map((k) => k.split(' ')[1]);
      throw new RoutingUsageError(sub === undefined ? `${cmd} needs a subcommand: ${subs.join(', ')}` : `unknown ${cmd} subcommand '${sub}'`);
    }
    for (const key of Object.keys(values)) {
      if (!['url', 'json', 'help', ...spec.options].includes(key)) throw new RoutingUsageError(`option '--${key}' does not apply to '${name}'`);
    }
    if (args.length < spec.args.length) throw new RoutingUsageError(`${name} needs ${spec.args.map((n) => `<${n}>`).join(' ')}`);
    if (args.length > spec.args.length) throw new RoutingUsageError(`${name}: unexpected argument '${args[spec.args.length]}'`);
    const json = values.json === true;
    // Everything is checked before the first network call.
    const plan = prepare(name, args, values);
    t = new Transport({ urls: normalizeUrls('spofless', values.url ?? io.env.SPOFLESS_URL ?? DEFAULT_URL), timeout: 10_000, headers: { accept: 'application/json' } });
    return await execute(t, plan, json, io);
  } catch (err) {
    if (err instanceof RoutingUsageError) {
      io.stderr.write(`spofless: ${err.message} (see 'spofless --help')\n`);
      return 2;
    }
    io.stderr.write(`spofless: ${oneLine(err)}\n`);
    return 1;
  } finally {
    t?.close();
  }
}

type Values = ReturnType<typeof parse>['values'];

interface Plan {
  readonly name: string;
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  readonly route?: string;
}

function prepare(name: string, args: readonly string[], values: Values): Plan {
  const enc = encodeURIComponent;
  const ifRev = revisionArg(values['if-revision']);
  const precondition = ifRev === undefined ? {} : ifRev === 0 ? { 'if-none-match': '*' } : { 'if-match': `"${ifRev}"` };
  const force = values.force === true ? { force: true } : {};
  switch (name) {
    case 'route ls':
      return { name, method: 'GET', path: '/v1/routes' };
    case 'route get':
      return { name, method: 'GET', path: `/v1/routes/${enc(routeName(args[0]!, '<name>'))}` };
    case 'route rm':
      return { name, method: 'DELETE', path: `/v1/routes/${enc(routeName(args[0]!, '<name>'))}`, headers: precondition };
    case 'route set': {
      const rname = routeName(args[0]!, '<name>');
      const file = values.file;
      const inline = typeof values.json === 'string' ? values.json : undefined;
      if ((file === undefined) === (inline === undefined)) throw new RoutingUsageError("route set needs exactly one of --file F or --json '{...}'");
      let text: string;
      try {
        text = inline ?? readFileSync(file === '-' ? 0 : file!, 'utf8');
      } catch (err) {
        throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? oneLine(err)}`);
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new Error(`the route is not valid JSON: ${(err as Error).message}`);
      }
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const given = (value as { name?: unknown }).name;
        if (given !== undefined && given !== rname) throw new Error(`the route's "name" is ${JSON.stringify(given)}, not ${JSON.stringify(rname)} as given on the command line`);
        value = { ...value, name: rname };
      }
      // The server checks again; this gives the same message without a round trip.
      validateRoute(value);
      return { name, method: 'PUT', path: `/v1/routes/${enc(rname)}`, body: value, headers: precondition };
    }
    case 'deploy status':
      return { name, method: 'GET', path: `/v1/routes/${enc(routeName(args[0]!, '<route>'))}/deploy`, route: args[0]! };
    case 'deploy switch':
      return { name, method: 'POST', path: `/v1/routes/${enc(routeName(args[0]!, '<route>'))}/deploy/switch`, body: { to: args[1]!, ...force }, route: args[0]! };
    case 'deploy rollback':
      return { name, method: 'POST', path: `/v1/routes/${enc(routeName(args[0]!, '<route>'))}/deploy/rollback`, body: { ...force }, route: args[0]! };
    case 'deploy promote':
      return { name, method: 'POST', path: `/v1/routes/${enc(routeName(args[0]!, '<route>'))}/deploy/promote`, body: { ...force }, route: args[0]! };
    default: {
      // deploy canary
      const weightText = args[2]!;
      if (!/^\d{1,3}%?$/.test(weightText) || Number(weightText.replace('%', '')) > 100) {
        throw new RoutingUsageError(`<weight> must be a whole percentage from 0 to 100; got '${weightText}'`);
      }
      const header = values['sticky-header'];
      const cookie = values['sticky-cookie'];
      if (header !== undefined && cookie !== undefined) throw new RoutingUsageError('give at most one of --sticky-header and --sticky-cookie');
      const stickyOn: HashKey | undefined = header !== undefined ? { header } : cookie !== undefined ? { cookie } : undefined;
      return {
        name,
        method: 'POST',
        path: `/v1/routes/${enc(routeName(args[0]!, '<route>'))}/deploy/canary`,
        body: { version: args[1]!, weight: Number(weightText.replace('%', '')), ...(stickyOn ? { stickyOn } : {}), ...force },
        route: args[0]!,
      };
    }
  }
}

async function execute(t: Transport, plan: Plan, json: boolean, io: CliIo): Promise<number> {
  const res = await t.json<Record<string, unknown>>(plan.method, plan.path, {
    ...(plan.body !== undefined ? { body: plan.body } : {}),
    ...(plan.headers !== undefined ? { headers: plan.headers } : {}),
    // Deploy steps are guarded by the route's revision: repeating one on another replica is harmless.
    idempotent: true,
  });
  if (json || plan.name === 'route get') {
    io.stdout.write(`${JSON.stringify(plan.name === 'route get' && !json ? res.route : res, null, 2)}\n`);
    return 0;
  }
  switch (plan.name) {
    case 'route ls': {
      const routes = res.routes as Stored[];
      if (routes.length === 0) io.stdout.write('no routes\n');
      else {
        io.stdout.write(
          table(
            ['NAME', 'HOST', 'PATH', 'SERVICE', 'TRAFFIC', 'REV'],
            routes.map(({ route: r, revision }) => [r.name, r.match.host ?? '*', r.match.pathPrefix, r.service, trafficSummary(r), String(revision)]),
          ),
        );
      }
      return 0;
    }
    case 'route set':
      io.stdout.write(`route ${(res.route as Route).name} ${res.created === true ? 'created' : 'replaced'} at revision ${String(res.revision)}\n`);
      return 0;
    case 'route rm':
      io.stdout.write(`route ${String(res.deleted)} deleted at revision ${String(res.revision)}\n`);
      return 0;
    case 'deploy status': {
      const r = res.route as Route;
      const versions = res.versions as { version: string; role: string; weight: number; passing: number; registered: number }[];
      io.stdout.write(`route ${r.name} → service ${r.service}: ${trafficSummary(r)} (revision ${String(res.revision)})\n`);
      if (versions.length === 0) io.stdout.write('no instances registered\n');
      else io.stdout.write(table(['VERSION', 'ROLE', 'WEIGHT', 'PASSING', 'REGISTERED'], versions.map((v) => [v.version, v.role, `${v.weight}%`, String(v.passing), String(v.registered)])));
      return 0;
    }
    default: {
      const r = res.route as Route;
      const what = res.changed === true ? `now ${trafficSummary(r)}` : `unchanged: ${trafficSummary(r)}`;
      io.stdout.write(`route ${r.name}: ${what} (revision ${String(res.revision)})\n`);
      return 0;
    }
  }
}
