/**
 * `spofless gateway`: runs a gateway until SIGTERM/SIGINT, then closes it gracefully (readiness fails,
 * `--grace` ms of serving, stop accepting, in-flight requests finish within `--drain-timeout`).
 *
 * Prints one line `gateway listening on <url> (admin <url>)` on stdout once it serves (or `{ url,
 * adminUrl }` with `--json`); notable events go to stderr.
 */
import { parseArgs } from 'node:util';
import { isSpoflessError } from '../errors/index.js';
import { parseArgsMessage } from './args.js';
import type { CliIo } from './run.js';

export const GATEWAY_USAGE = `usage: spofless gateway [options]

  --url URL[,URL...]       control plane(s), failed over in order (default $SPOFLESS_URL, else http://127.0.0.1:7400)
  --host H                 listen address (default 127.0.0.1)
  --port P                 traffic port (default 8080; 0: any free port)
  --admin-host H           admin address (default: --host)
  --admin-port P           admin port: /healthz /readyz /status /metrics (default 9901; 0: any)
  --zone Z                 this gateway's zone: instances there are preferred
  --state-dir DIR          keep the last configuration here; serve from it when the control plane is down
  --grace MS               after SIGTERM, keep serving this long with readiness failing (default 5000)
  --drain-timeout MS       then wait this long for requests in flight (default 30000)
  --slow-start MS          ramp-up window for new instances (default 5000; 0: off)
  --json                   print the URLs as JSON
`;

const OPTIONS = {
  url: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'admin-host': { type: 'string' },
  'admin-port': { type: 'string' },
  zone: { type: 'string' },
  'state-dir': { type: 'string' },
  grace: { type: 'string' },
  'drain-timeout': { type: 'string' },
  'slow-start': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

class Usage extends Error {}

/** `parseArgs` with its errors as one usage line (exit 2). */
function parseGatewayArgs(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw new Usage(parseArgsMessage(err));
  }
}

function port(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new Usage(`--${name} must be 0 to 65535; got '${v}'`);
  return n;
}

function ms(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Usage(`--${name} must be a whole number of milliseconds; got '${v}'`);
  return Number(v);
}

/**
 * Runs `spofless gateway` (argv after `gateway`). Resolves the exit code once the gateway has closed.
 *
 * @example
 * ```ts
 * const code = await gatewayCommand(['--url', 'http://127.0.0.1:7400', '--port', '8080'], { stdout: process.stdout, stderr: process.stderr, env: process.env, signal });
 * ```
 */
export async function gatewayCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let values: { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };
  try {
    const parsed = parseGatewayArgs(argv);
    if (parsed.positionals.length > 0) throw new Usage(`unexpected argument '${parsed.positionals[0]}'`);
    values = parsed.values;
    if (values.help === true) {
      io.stdout.write(GATEWAY_USAGE);
      return 0;
    }
    const url = values.url ?? io.env.SPOFLESS_URL ?? 'http://127.0.0.1:7400';
    const urls = url.split(',').map((u) => u.trim()).filter((u) => u !== '');
    for (const u of urls) {
      if (!/^https?:\/\/[^/]+/.test(u)) throw new Usage(`--url must be http(s) URLs; got '${u}'`);
    }
    if (urls.length === 0) throw new Usage('--url needs at least one URL');
    if (values.zone === '') throw new Usage('--zone must not be empty');
    const options = {
      controlPlane: urls,
      host: values.host ?? '127.0.0.1',
      port: port('port', values.port, 8080),
      adminPort: port('admin-port', values['admin-port'], 9901),
      ...(values['admin-host'] !== undefined ? { adminHost: values['admin-host'] } : {}),
      ...(values.zone !== undefined ? { zone: values.zone } : {}),
      ...(values['state-dir'] !== undefined ? { stateDir: values['state-dir'] } : {}),
      ...(ms('grace', values.grace) !== undefined ? { graceMs: ms('grace', values.grace)! } : {}),
      ...(ms('drain-timeout', values['drain-timeout']) !== undefined ? { drainTimeoutMs: ms('drain-timeout', values['drain-timeout'])! } : {}),
      ...(ms('slow-start', values['slow-start']) !== undefined ? { slowStartMs: ms('slow-start', values['slow-start'])! } : {}),
      log: (line: string) => io.stderr.write(`spofless gateway: ${line}\n`),
    };
    // Loaded here: other commands do not pay for undici's pools and the gateway's modules.
    const { startGateway } = await import('../gateway/index.js');
    const gw = await startGateway(options);
    if (values.json === true) io.stdout.write(`${JSON.stringify({ url: gw.url, adminUrl: gw.adminUrl })}\n`);
    else io.stdout.write(`gateway listening on ${gw.url} (admin ${gw.adminUrl})\n`);
    await new Promise<void>((resolve) => {
      if (io.signal === undefined) return;
      if (io.signal.aborted) resolve();
      else io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await gw.close();
    return 0;
  } catch (err) {
    if (err instanceof Usage) {
      io.stderr.write(`spofless: ${err.message} (see 'spofless gateway --help')\n`);
      return 2;
    }
    const msg = err instanceof Error ? err.message : String(err);
    if (isSpoflessError(err) && err.code === 'SPOF_ERR_INVALID_OPTION') {
      io.stderr.write(`spofless: ${msg}\n`);
      return 2;
    }
    io.stderr.write(`spofless: gateway: ${msg.split('\n')[0]}\n`);
    return 1;
  }
}
