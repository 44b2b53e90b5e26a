/**
 * `startGateway`: the reverse proxy fed by the catalog. It owns the listening servers (traffic and
 * admin), the feed from the control plane, the route table, the per-service pools and the lifecycle.
 *
 * Lifecycle:
 *
 * | from     | to       | when                                                                    |
 * |----------|----------|-------------------------------------------------------------------------|
 * | starting | serving  | the first configuration is in (control plane, or the saved state)      |
 * | serving  | grace    | `close()` (SIGTERM): `/readyz` fails, requests are still accepted      |
 * | grace    | draining | `graceMs` passed: the listener closes, idle keep-alive connections too |
 * | draining | closed   | in-flight requests finished, or `drainTimeoutMs` passed (the rest cut)  |
 * | any      | closed   | `destroy()`: everything cut now                                        |
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HealthCheck, Instance } from '../catalog/types.js';
import { ControlPlaneClient } from '../client/index.js';
import { ErrorCode, InvalidOptionError } from '../errors/index.js';
import { sharedBreakerOptions } from '../resilience/index.js';
import { ActiveChecks } from './health.js';
import { Feed, type FeedSnapshot } from './feed.js';
import { renderMetrics } from './metrics.js';
import { FastServer } from './h1server.js';
import { ProxyCall, writeError, type ProxyHost, type ProxyRequest, type ProxyResponse } from './proxy.js';
import { RouteTable, compileRoute, hostOf, isFailedOutcome, type CompiledRoute } from './table.js';
import { ServicePool, Upstream, type OutlierSettings, type PoolSettings } from './upstreams.js';
import { proxyUpgrade, rawError } from './websocket.js';

/**
 * Options of {@link startGateway}.
 *
 * @example
 * ```ts
 * const options: GatewayOptions = { controlPlane: ['http://10.0.0.1:7400', 'http://10.0.0.2:7400'], port: 8080,
 *   adminPort: 9901, zone: 'eu-1a', stateDir: '/var/lib/spofless-gateway' };
 * ```
 */
export interface GatewayOptions {
  /** Control-plane URL(s); the gateway fails over between them. */
  readonly controlPlane: string | readonly string[];
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Default: `host`. */
  readonly adminHost?: string;
  /** Default 0 (any free port). */
  readonly adminPort?: number;
  /** The gateway's zone: instances there are preferred. */
  readonly zone?: string;
  /** Stay in the zone while it has at least this many healthy instances. Default 1. */
  readonly minHealthyInZone?: number;
  /** Where the last configuration is saved (fail static across restarts). Default: not saved. */
  readonly stateDir?: string;
  /** After `close()`, how long requests are still accepted while readiness fails. Default 5 000 ms. */
  readonly graceMs?: number;
  /** Then how long in-flight requests may take before they are cut. Default 30 000 ms. */
  readonly drainTimeoutMs?: number;
  /** How long `startGateway` waits for the control plane before it starts from the saved state. Default 3 000 ms. */
  readonly startTimeoutMs?: number;
  /** Passive health: outlier ejection. */
  readonly outlier?: Partial<OutlierSettings>;
  /** Health (%) below which the pool routes to every instance. Default 50. */
  readonly panicThreshold?: number;
  /** New instances get a growing share of traffic over this window. Default 5 000 ms; 0 turns it off. */
  readonly slowStartMs?: number;
  /** Active check for instances registered without one; `false`: none. Default TCP every 5 s, rise 2, fall 3. */
  readonly defaultHealthCheck?: HealthCheck | false;
  /** Connections per upstream instance. Default 256. */
  readonly connectionsPerUpstream?: number;
  /** Idle keep-alive connections to upstreams are closed after this (below the upstream's keep-alive). Default 4 000 ms. */
  readonly upstreamIdleTimeoutMs?: number;
  /** Default 2 000 ms. */
  readonly connectTimeoutMs?: number;
  /** Response headers from an upstream, when the route sets no per-try timeout. Default 60 000 ms. */
  readonly headersTimeoutMs?: number;
  /** Longest silence inside an upstream response body. Default 300 000 ms. */
  readonly bodyTimeoutMs?: number;
  /** Client keep-alive idle timeout. Default 65 000 ms (above common load balancers' 60 s). */
  readonly keepAliveTimeoutMs?: number;
  /** A line per notable event (config source, ejections, checks, drain). Default: none. */
  readonly log?: (line: string) => void;
  /** Watch heartbeat timeout (tests). */
  readonly heartbeatTimeoutMs?: number;
}

/**
 * A running gateway.
 *
 * @example
 * ```ts
 * const gw = await startGateway({ controlPlane: 'http://127.0.0.1:7400', port: 8080, adminPort: 9901 });
 * process.once('SIGTERM', () => void gw.close());
 * ```
 */
export interface Gateway {
  /** `http://host:port` of the traffic listener. */
  readonly url: string;
  /** `http://host:port` of the admin listener. */
  readonly adminUrl: string;
  /** What `/status` shows. */
  status(): GatewayStatus;
  /** Graceful: readiness fails, `graceMs` of serving, stop accepting, finish in flight up to `drainTimeoutMs`. */
  close(): Promise<void>;
  /** Now: every connection cut. */
  destroy(): Promise<void>;
}

export interface GatewayStatus {
  readonly state: 'serving' | 'grace' | 'draining' | 'closed';
  readonly ready: boolean;
  readonly config: {
    readonly source: 'none' | 'saved-state' | 'control-plane';
    readonly connected: boolean;
    readonly stalenessMs: number | null;
    readonly lastContact: string | null;
    /** ms since the last byte from the control plane (events or heartbeats), connected or not. */
    readonly lastSyncAgeMs: number | null;
    readonly savedStateAt: string | null;
    readonly controlPlane: string;
    readonly revisions: { readonly routes: number; readonly instances: number };
  };
  readonly inFlight: number;
  readonly websockets: number;
  readonly routes: ReadonlyArray<Record<string, unknown>>;
  readonly invalidRoutes: ReadonlyArray<{ name: string; error: string; revision: number }>;
  readonly services: ReadonlyArray<{ service: string; instances: ReadonlyArray<Record<string, unknown>> }>;
}

const DEFAULT_CHECK: HealthCheck = { type: 'tcp', interval: 5_000, timeout: 1_000, rise: 2, fall: 3 };

function num(owner: string, name: string, v: unknown, def: number, min = 0): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new InvalidOptionError(owner, name, v, `a number >= ${min}`);
  return v;
}

class GatewayImpl implements Gateway, ProxyHost {
  inFlight = 0;
  closing = false;
  noRoute = 0;
  readonly sockets = new Set<Duplex>();
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  url = '';
  adminUrl = '';
  #state: GatewayStatus['state'] = 'serving';
  #table = new RouteTable(new Map());
  readonly #pools = new Map<string, ServicePool>();
  /** Upstreams by catalog key. */
  readonly #upstreams = new Map<string, Upstream>();
  readonly #settings: PoolSettings;
  readonly #server: FastServer;
  readonly #admin: Server;
  readonly #client: ControlPlaneClient;
  readonly #feed: Feed;
  readonly #checks: ActiveChecks;
  readonly #log: (line: string) => void;
  readonly #graceMs: number;
  readonly #drainMs: number;
  #hasConfig = false;
  #idleWaiter: (() => void) | undefined;
  #closed: Promise<void> | undefined;

  constructor(o: GatewayOptions) {
    const owner = 'startGateway';
    const zone = o.zone;
    if (zone !== undefined && (typeof zone !== 'string' || zone === '')) throw new InvalidOptionError(owner, 'zone', zone, 'a non-empty string');
    this.#log = o.log ?? ((): void => undefined);
    this.#graceMs = num(owner, 'graceMs', o.graceMs, 5_000);
    this.#drainMs = num(owner, 'drainTimeoutMs', o.drainTimeoutMs, 30_000);
    this.headersTimeoutMs = num(owner, 'headersTimeoutMs', o.headersTimeoutMs, 60_000, 1);
    this.bodyTimeoutMs = num(owner, 'bodyTimeoutMs', o.bodyTimeoutMs, 300_000);
    const out = o.outlier ?? {};
    this.#settings = {
      zone,
      minHealthyInZone: num(owner, 'minHealthyInZone', o.minHealthyInZone, 1, 1),
      panicThreshold: num(owner, 'panicThreshold', o.panicThreshold, 50),
      slowStartMs: num(owner, 'slowStartMs', o.slowStartMs, 5_000),
      outlier: {
        consecutiveFailures: num(owner, 'outlier.consecutiveFailures', out.consecutiveFailures, 5, 1),
        baseEjectionMs: num(owner, 'outlier.baseEjectionMs', out.baseEjectionMs, 10_000),
        maxEjectionMs: num(owner, 'outlier.maxEjectionMs', out.maxEjectionMs, 300_000),
        maxEjectionPercent: num(owner, 'outlier.maxEjectionPercent', out.maxEjectionPercent, 50),
      },
      connections: num(owner, 'connectionsPerUpstream', o.connectionsPerUpstream, 256, 1),
      idleTimeoutMs: num(owner, 'upstreamIdleTimeoutMs', o.upstreamIdleTimeoutMs, 4_000, 1),
      connectTimeoutMs: num(owner, 'connectTimeoutMs', o.connectTimeoutMs, 2_000, 1),
      breaker: sharedBreakerOptions({
        window: { type: 'count', size: 20 },
        minimumCalls: 10,
        failureRateThreshold: 0.5,
        openDuration: { initial: 1_000, max: 30_000 },
        halfOpenProbes: 1,
        isFailureResult: isFailedOutcome,
      }),
    };
    this.#checks = new ActiveChecks(o.defaultHealthCheck === false ? undefined : (o.defaultHealthCheck ?? DEFAULT_CHECK), (u, healthy, detail) =>
      this.#log(`instance ${u.key}: active check ${healthy ? 'passing' : 'failing'} (${detail})`),
    );
    this.#client = new ControlPlaneClient({ url: o.controlPlane, timeout: 5_000 });
    this.#feed = new Feed({
      client: this.#client,
      stateDir: o.stateDir,
      log: this.#log,
      onChange: (snap, what) => this.#apply(snap, what),
      ...(o.heartbeatTimeoutMs !== undefined ? { heartbeatTimeout: o.heartbeatTimeoutMs } : {}),
    });
    const keepAliveTimeout = num(owner, 'keepAliveTimeoutMs', o.keepAliveTimeoutMs, 65_000);
    // node's server takes every connection the fast path (h1server.ts) hands it: bodies, upgrades …
    const http = createServer({ keepAliveTimeout, requestTimeout: 0 }, (req, res) => this.#onRequest(req, res));
    this.#server = new FastServer({ http, keepAliveTimeoutMs: keepAliveTimeout, onRequest: (req, res) => this.#onRequest(req, res) });
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    this.#admin = createServer((req, res) => this.#onAdmin(req, res));
  }

  async start(o: GatewayOptions): Promise<void> {
    const host = o.host ?? '127.0.0.1';
    await listen(this.#server, num('startGateway', 'port', o.port, 0), host);
    await listen(this.#admin, num('startGateway', 'adminPort', o.adminPort, 0), o.adminHost ?? host);
    this.url = urlOf(this.#server);
    this.adminUrl = urlOf(this.#admin);
    const source = await this.#feed.start(AbortSignal.timeout(num('startGateway', 'startTimeoutMs', o.startTimeoutMs, 3_000, 1)));
    this.#log(`gateway on ${this.url} (admin ${this.adminUrl}); configuration from ${source === 'none' ? 'nowhere yet (no saved state): waiting for the control plane' : source}`);
  }

  // ---- configuration -------------------------------------------------------------------------------

  #apply(snap: FeedSnapshot, what: { routes: boolean; instances: boolean }): void {
    this.#hasConfig = true;
    if (what.routes) {
      const next = new Map<string, CompiledRoute>();
      for (const [name, route] of snap.routes) next.set(name, compileRoute(route, this.#table.routes.get(name)));
      this.#table = new RouteTable(next);
    }
    if (what.instances) this.#applyInstances(snap.instances);
  }

  #applyInstances(instances: ReadonlyMap<string, Instance>): void {
    const now = Date.now();
    const touched = new Set<string>();
    for (const [key, inst] of instances) {
      const had = this.#upstreams.get(key);
      if (had !== undefined && had.sameAddress(inst)) {
        if (had.instance !== inst) had.update(inst);
        continue;
      }
      if (had !== undefined) this.#retire(key, had);
      // Slow start counts from the registration (the same on every gateway, and a restarted gateway
      // does not ramp up instances that have served for hours), never from the future.
      const u = new Upstream(inst, this.#settings, Math.min(now, inst.registeredAt ?? 0));
      this.#upstreams.set(key, u);
      this.#checks.add(u);
      touched.add(inst.service);
    }
    for (const [key, u] of this.#upstreams) {
      if (!instances.has(key)) {
        this.#retire(key, u);
        touched.add(u.instance.service);
      }
    }
    if (touched.size === 0) return;
    const by = new Map<string, Upstream[]>();
    for (const u of this.#upstreams.values()) {
      let l = by.get(u.instance.service);
      if (l === undefined) by.set(u.instance.service, (l = []));
      l.push(u);
    }
    for (const service of touched) {
      let pool = this.#pools.get(service);
      if (pool === undefined) this.#pools.set(service, (pool = new ServicePool(service, this.#settings)));
      pool.set(by.get(service) ?? []);
    }
  }

  /** An instance left the catalog (or moved): no new request; those in flight finish, then its pool closes. */
  #retire(key: string, u: Upstream): void {
    this.#upstreams.delete(key);
    this.#checks.remove(u);
    u.close().catch(() => undefined);
  }

  pool(service: string): ServicePool | undefined {
    return this.#pools.get(service);
  }

  onTryOutcome(u: Upstream, failed: boolean): void {
    if (!failed) {
      u.consecutiveFailures = 0;
      return;
    }
    if (++u.consecutiveFailures < this.#settings.outlier.consecutiveFailures) return;
    const now = Date.now();
    if (u.ejectedUntil > now) return;
    const pool = this.#pools.get(u.instance.service);
    if (pool?.eject(u, now) === true) this.#log(`instance ${u.key}: ejected for ${u.ejectedUntil - now} ms (ejection ${u.ejections})`);
  }

  onCallDone(): void {
    if (this.#state === 'draining') {
      setImmediate(() => this.#server.closeIdleConnections());
      if (this.inFlight === 0) this.#idleWaiter?.();
    }
  }

  // ---- traffic -------------------------------------------------------------------------------------

  #onRequest(req: ProxyRequest, res: ProxyResponse): void {
    let path = req.url ?? '/';
    let host = hostHeader(req.rawHeaders);
    if (path.charCodeAt(0) !== 47 /* / */) {
      // Absolute form (a client that takes the gateway for a forward proxy): use its host and path.
      try {
        const u = new URL(path);
        host = u.host;
        path = `${u.pathname}${u.search}`;
      } catch {
        path = '/';
      }
    }
    const h = hostOf(host);
    const route = this.#table.match(h, path, req);
    if (route === undefined) {
      this.noRoute++;
      writeError(res, 404, ErrorCode.GatewayNoRoute, `no route for host ${JSON.stringify(h)} and path ${JSON.stringify(path.split('?')[0])}`, this.closing, { host: h, path: path.split('?')[0] });
      return;
    }
    new ProxyCall(this, route, req, res, path).start();
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = req.url ?? '/';
    const h = hostOf(req.headers.host);
    const route = this.#table.match(h, path, req);
    if (route === undefined || this.#state === 'closed') {
      this.noRoute++;
      rawError(socket, 404, ErrorCode.GatewayNoRoute, `no route for host ${JSON.stringify(h)} and path ${JSON.stringify(path.split('?')[0])}`);
      return;
    }
    const upstreamPath = route.stripPrefix ? path.slice(route.prefixBare.length) || '/' : path;
    proxyUpgrade(this, route, req, socket, head, upstreamPath.startsWith('/') ? upstreamPath : `/${upstreamPath}`);
  }

  // ---- admin ---------------------------------------------------------------------------------------

  #onAdmin(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      const text = JSON.stringify(body, null, 2);
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(405, { error: { code: ErrorCode.HttpNotFound, message: `${req.method} is not served here: the admin endpoints are GET only` } });
      return;
    }
    switch (path) {
      case '/healthz':
        json(200, { ok: true });
        return;
      case '/readyz': {
        const ready = this.#ready();
        json(ready ? 200 : 503, { ready, state: this.#state, config: this.#feed.source });
        return;
      }
      case '/status':
        json(200, this.status());
        return;
      case '/metrics': {
        const text = renderMetrics(
          {
            routes: [...this.#table.routes.values()].map((r) => ({ stats: r.stats, breakerState: r.breaker.state })),
            upstreams: this.#upstreams.values(),
            gateway: {
              inFlight: this.inFlight,
              noRoute: this.noRoute,
              stalenessSeconds: finiteSeconds(this.#feed.staleness),
              lastSyncAgeSeconds: this.#feed.lastContact > 0 ? Math.max(0, Date.now() - this.#feed.lastContact) / 1000 : -1,
              connected: this.#feed.connected,
              invalidRoutes: this.#feed.snapshot.invalid.size,
              websockets: this.sockets.size,
            },
          },
          Date.now(),
        );
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(text);
        return;
      }
      default:
        json(404, { error: { code: ErrorCode.HttpNotFound, message: `no admin endpoint ${JSON.stringify(path)}: try /healthz, /readyz, /status, /metrics` } });
    }
  }

  #ready(): boolean {
    return this.#state === 'serving' && this.#hasConfig;
  }

  status(): GatewayStatus {
    const now = Date.now();
    const feed = this.#feed;
    const staleness = feed.staleness;
    const services = [...this.#pools.values()]
      .filter((p) => p.upstreams.length > 0)
      .map((p) => ({
        service: p.service,
        instances: p.upstreams.map((u) => ({
          id: u.instance.id,
          origin: u.origin,
          zone: u.instance.zone ?? null,
          version: u.instance.version ?? null,
          color: u.instance.color ?? null,
          status: u.instance.status,
          activeCheck: { healthy: u.activeHealthy, last: u.lastCheck || null },
          ejected: u.ejected(now),
          ejectedForMs: u.ejected(now) ? u.ejectedUntil - now : 0,
          ejections: u.ejections,
          breaker: u.breaker.state,
          inFlight: u.inFlight,
          requests: u.requests,
          failures: u.failures,
        })),
      }));
    return {
      state: this.#state,
      ready: this.#ready(),
      config: {
        source: feed.source,
        connected: feed.connected,
        stalenessMs: Number.isFinite(staleness) ? staleness : null,
        lastContact: feed.lastContact > 0 ? new Date(feed.lastContact).toISOString() : null,
        lastSyncAgeMs: feed.lastContact > 0 ? Math.max(0, now - feed.lastContact) : null,
        savedStateAt: feed.savedStateAt > 0 ? new Date(feed.savedStateAt).toISOString() : null,
        controlPlane: this.#client.url,
        revisions: feed.revisions,
      },
      inFlight: this.inFlight,
      websockets: this.sockets.size,
      routes: [...this.#table.routes.values()].map((r) => ({
        name: r.name,
        match: r.route.match,
        service: r.service,
        balancer: r.route.balancer ?? 'least-request',
        traffic: r.route.traffic ?? null,
        breaker: r.breaker.state,
        requests: r.stats.requests,
        retries: r.stats.retries,
        fallbacks: r.stats.fallbacks,
      })),
      invalidRoutes: [...feed.snapshot.invalid.values()],
      services,
    };
  }

  // ---- shutdown ------------------------------------------------------------------------------------

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    // A gateway that never had a configuration was never ready: nobody sends it traffic to drain.
    const grace = this.#hasConfig ? this.#graceMs : 0;
    this.#state = 'grace';
    this.#log(`closing: readiness fails, serving ${grace} ms more`);
    await delay(grace);
    this.#state = 'draining';
    this.closing = true;
    this.#server.close();
    this.#server.closeIdleConnections();
    if (this.inFlight > 0) {
      this.#log(`draining ${this.inFlight} request(s) in flight (up to ${this.#drainMs} ms)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#drainMs);
        t.unref();
        this.#idleWaiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    await this.#shutdown(this.inFlight > 0);
  }

  destroy(): Promise<void> {
    this.closing = true;
    this.#state = 'draining';
    this.#closed ??= this.#shutdown(true);
    return this.#closed;
  }

  async #shutdown(force: boolean): Promise<void> {
    if (force && this.inFlight > 0) this.#log(`cutting ${this.inFlight} request(s) still in flight`);
    this.#server.close();
    this.#server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    this.#checks.close();
    await this.#feed.close();
    this.#client.close();
    await Promise.allSettled([...this.#upstreams.values()].map((u) => (force ? u.destroy() : u.close())));
    this.#admin.close();
    this.#admin.closeAllConnections();
    this.#state = 'closed';
    this.#log('closed');
  }
}

/** The `Host` header from the raw list (without making node build `req.headers`). */
function hostHeader(raw: readonly string[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 4 && (n === 'Host' || n === 'host' || n.toLowerCase() === 'host')) return raw[i + 1];
  }
  return undefined;
}

function finiteSeconds(ms: number): number {
  return Number.isFinite(ms) ? ms / 1000 : -1;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function listen(server: Server | FastServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function urlOf(server: Server | FastServer): string {
  const a = server.address() as AddressInfo;
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `http://${h}:${a.port}`;
}

/**
 * Starts a gateway: listens, reads the routes and instances from the control plane (or its saved state
 * when the control plane does not answer within `startTimeoutMs`), and keeps them current.
 *
 * @example
 * ```ts
 * import { startGateway } from 'spofless/gateway';
 * const gw = await startGateway({ controlPlane: 'http://127.0.0.1:7400', port: 8080, adminPort: 9901, stateDir: './.gateway' });
 * console.log(gw.url, gw.adminUrl);
 * process.once('SIGTERM', () => void gw.close());
 * ```
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('startGateway', 'options', options, 'an object');
  const cp = options.controlPlane;
  if (!(typeof cp === 'string' && cp !== '') && !(Array.isArray(cp) && cp.length > 0 && cp.every((u) => typeof u === 'string' && u !== ''))) {
    throw new InvalidOptionError('startGateway', 'controlPlane', cp, 'a control-plane URL or a non-empty list of them');
  }
  const gw = new GatewayImpl(options);
  try {
    await gw.start(options);
  } catch (err) {
    await gw.destroy();
    throw err;
  }
  return gw;
}
