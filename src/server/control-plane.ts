/**
 * `startControlPlane`: the store, the catalog, the health checker, the watch hub and the HTTP API,
 * started together and closed together.
 */
import { mkdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';
import { Catalog, HealthChecker, type HealthCheckerOptions } from '../catalog/index.js';
import { InvalidOptionError, NotLeaderError, SpoflessError, ErrorCode } from '../errors/index.js';
import { SqliteStore, openEtcdStore, parseStoreUrl, type Store } from '../store/index.js';
import { DEFAULT_BODY_LIMIT, buildApp } from './app.js';
import { WatchHub, type WatchHubStats } from './watch-hub.js';
import type { Election } from '../election/index.js';
import { Replica, registerLeaderRoute, type LeaderStatus, type ReplicaElectionOptions } from './replica.js';

/**
 * @example
 * ```ts
 * const options: ControlPlaneOptions = { host: '127.0.0.1', port: 0, dataDir: './.spofless', logger: false };
 * ```
 */
export interface ControlPlaneOptions {
  /** Address to bind. Default `127.0.0.1` (loopback only). */
  readonly host?: string;
  /** Port; 0 picks a free one (read it back from `url`). Default 7400. */
  readonly port?: number;
  /** Where the embedded store keeps `store.db`; created if missing. Default `./.spofless`. Ignored with `store`. */
  readonly dataDir?: string;
  /**
   * A store to serve instead of opening one in `dataDir`, or a store URL to open (and close on
   * `close()`): `etcd://host:port,host:port,...[/namespace]` (several members fail over) or
   * `sqlite:<dir>`. See `parseStoreUrl` in `spofless/store`.
   */
  readonly store?: Store | string;
  /**
   * Close the store on `close()`. Default: true for the store opened here, false for one passed in
   * (its owner closes it).
   */
  readonly closeStore?: boolean;
  /**
   * Request logs, one JSON line per request (pino), at `info` except successful kv gets and puts and
   * per-request keepalives, at `debug` (`warn` when slow): `true`, `false`, pino options such as
   * `{ level: 'warn' }` or `{ level: 'info', stream }`, or a pino-compatible logger. Default: `true`,
   * or `false` under `node --test`.
   */
  readonly logger?: NonNullable<FastifyServerOptions['logger']> | FastifyBaseLogger;
  /** Run active health checks (on the elected leader only, see `election`). Default true. */
  readonly healthChecks?: boolean | Omit<HealthCheckerOptions, 'store' | 'logger' | 'fence'>;
  /**
   * Replicas: several control planes on one shared store (etcd) elect a leader that alone runs the
   * work that must run once (active health checks), with fenced writes. `true` or options: elect;
   * `false`: this is the only control plane, it leads. Default: elect, except on the embedded SQLite
   * store (one process only), where the one replica leads.
   */
  readonly election?: boolean | ReplicaElectionOptions;
  /** Watch streams: the unread-bytes bound of a subscriber (default 4 MiB) and the ping interval (default 15 s). */
  readonly watch?: { readonly maxBufferedBytes?: number; readonly pingIntervalMs?: number; readonly maxFrameBytes?: number };
  /** Largest request body in bytes. Default 3 MiB. */
  readonly bodyLimit?: number;
}

/** A running control plane. */
export interface ControlPlane {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly store: Store;
  readonly catalog: Catalog;
  /** `undefined` when `healthChecks: false`. Runs only while this replica leads. */
  readonly healthChecker: HealthChecker | undefined;
  /** This replica's election; `undefined` for a single control plane (it always leads). */
  readonly election: Election | undefined;
  /** Whether this replica leads now (always, for a single control plane). */
  readonly isLeader: boolean;
  /** What `GET /v1/leader` answers. */
  leader(): Promise<LeaderStatus>;
  /** Store watches and subscribers of the watch hub right now. */
  readonly watchStats: WatchHubStats;
  /**
   * Stops accepting connections, ends every watch stream, stops health checks, lets requests in flight
   * finish, then closes the store (see `closeStore`). Idempotent.
   */
  close(): Promise<void>;
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];
/** How long `close()` lets requests in flight finish before it cuts their connections. */
const CLOSE_GRACE_MS = 5_000;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function checkOptions(o: ControlPlaneOptions): void {
  const fail = (name: string, v: unknown, expected: string): never => {
    throw new InvalidOptionError('startControlPlane', name, v, expected);
  };
  if (typeof o !== 'object' || o === null) fail('options', o, 'an object');
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host.length === 0)) fail('host', o.host, 'a host name or IP address');
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 0 || o.port > 65_535)) fail('port', o.port, 'an integer from 0 to 65535');
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir.length === 0)) fail('dataDir', o.dataDir, 'a directory path');
  if (typeof o.store === 'string') {
    try {
      parseStoreUrl(o.store);
    } catch (err) {
      fail('store', o.store, `a store URL: ${(err as Error).message}`);
    }
  }
  if (typeof o.store !== 'string' && o.store !== undefined && (typeof o.store !== 'object' || o.store === null || typeof o.store.watch !== 'function')) fail('store', o.store, 'a Store or a store URL');
  if (o.bodyLimit !== undefined && (!Number.isSafeInteger(o.bodyLimit) || o.bodyLimit < 1024)) fail('bodyLimit', o.bodyLimit, 'an integer >= 1024');
  Replica.check(o.election);
}

function notYet(): never {
  throw new NotLeaderError('control-plane', 'the control plane is still starting');
}

function defaultLogger(): boolean {
  // Quiet under `node --test` (it sets NODE_TEST_CONTEXT in the processes it runs, and their children).
  return process.env.NODE_TEST_CONTEXT === undefined && process.env.NODE_ENV !== 'test';
}

/**
 * Starts a control plane: opens (or takes) the store, starts health checks and serves the HTTP API.
 *
 * @example
 * ```ts
 * import { startControlPlane } from 'spofless/server';
 * const cp = await startControlPlane({ port: 0, dataDir: './.spofless' });
 * console.log(`spofless listening on ${cp.url}`);
 * process.once('SIGTERM', () => void cp.close());
 * ```
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  checkOptions(options);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 7400;
  let store: Store;
  let ownsStore: boolean;
  const storeUrl = typeof options.store === 'string' ? parseStoreUrl(options.store) : undefined;
  if (storeUrl?.engine === 'etcd') {
    store = await openEtcdStore({ endpoints: storeUrl.endpoints, namespace: storeUrl.namespace });
    ownsStore = options.closeStore ?? true;
  } else if (options.store !== undefined && typeof options.store !== 'string') {
    store = options.store;
    ownsStore = options.closeStore ?? false;
  } else {
    const dir = resolve(storeUrl?.engine === 'sqlite' ? storeUrl.dataDir : (options.dataDir ?? './.spofless'));
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new SpoflessError(ErrorCode.InvalidOption, `startControlPlane: option "dataDir" must be a directory that can be created; got ${JSON.stringify(dir)}`, { cause: err });
    }
    store = await SqliteStore.open({ path: join(dir, 'store.db') });
    ownsStore = options.closeStore ?? true;
  }

  const catalog = new Catalog(store);
  const hub = new WatchHub({ store, ...(options.watch ?? {}) });
  let closing = false;
  const app = buildApp({
    store,
    catalog,
    hub,
    logger: options.logger ?? defaultLogger(),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    allowedHosts: isLoopback(host) ? new Set([...LOOPBACK_NAMES, host.toLowerCase()]) : undefined,
    closing: () => closing,
  });
  const checks = options.healthChecks ?? true;
  // Made once the port is bound (it names the replica); the checker runs only after that.
  let replica: Replica | undefined;
  const healthChecker =
    checks === false
      ? undefined
      : new HealthChecker({ ...(checks === true ? {} : checks), store, logger: app.log, fence: () => replica?.fence() ?? notYet() });
  registerLeaderRoute(app, () => replica);

  const shutdown = async (): Promise<void> => {
    closing = true;
    // Resigning revokes the election lease: another replica leads at once, not after the TTL.
    await replica?.close();
    await healthChecker?.stop();
    hub.close();
    const cut = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
    cut.unref();
    try {
      await app.close();
    } finally {
      clearTimeout(cut);
      if (ownsStore) await store.close();
    }
  };

  let address: string;
  let live: Replica;
  try {
    address = await app.listen({ host, port });
    const bound = app.server.address();
    const id = `${hostname()}:${process.pid}:${typeof bound === 'object' && bound !== null ? bound.port : port}`;
    const election = Replica.election(store, options.election, store instanceof SqliteStore, id, app.log);
    live = replica = new Replica({ store, election, id, checker: healthChecker, log: app.log });
    await live.start();
  } catch (err) {
    await shutdown().catch(() => undefined);
    const code = (err as { code?: unknown }).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new SpoflessError(
        ErrorCode.InvalidOption,
        `startControlPlane: cannot listen on ${host}:${port} (${String(code)}): choose another --port or --host`,
        { cause: err },
      );
    }
    throw err;
  }
  const bound = app.server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${isIP(urlHost) === 6 ? `[${urlHost}]` : urlHost}:${boundPort}`;
  app.log.info({ url, address }, 'control plane listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    host,
    port: boundPort,
    store,
    catalog,
    healthChecker,
    election: live.election,
    get isLeader() {
      return live.isLeader;
    },
    leader: () => live.status(),
    get watchStats() {
      return hub.stats;
    },
    close: () => (closed ??= shutdown()),
  };
}
