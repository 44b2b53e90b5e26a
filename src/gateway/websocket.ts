/**
 * WebSocket (and any HTTP/1.1 `Upgrade`) pass-through: the handshake goes to an instance through its
 * undici pool with `upgrade`; after its `101 Switching Protocols` the gateway writes the 101 to the
 * client and pipes the two raw sockets both ways (backpressure by `pipe`), until either side closes.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ErrorCode } from '../errors/index.js';
import { FAILED, SUCCEEDED, type CompiledRoute } from './table.js';
import { admit, chooseVersion, scan, upstreamHeaders } from './proxy.js';
import type { ServicePool, Upstream } from './upstreams.js';

/** What an upgrade needs from the gateway. */
export interface UpgradeHost {
  pool(service: string): ServicePool | undefined;
  onTryOutcome(u: Upstream, failed: boolean): void;
  readonly sockets: Set<Duplex>;
}

/** Writes a small HTTP error answer on a raw socket and closes it. */
export function rawError(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  const reason = status === 404 ? 'Not Found' : status === 503 ? 'Service Unavailable' : 'Bad Gateway';
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  } else socket.destroy();
}

/** Proxies one upgrade request to an instance of `route`'s service. */
export function proxyUpgrade(host: UpgradeHost, route: CompiledRoute, req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void {
  const pool = host.pool(route.service);
  const tried: Upstream[] = [];
  const headers = upstreamHeaders(req, route.forceHeader);
  const want = chooseVersion(route, scan.forced, req);
  const upgrade = req.headers.upgrade ?? 'websocket';
  socket.on('error', () => socket.destroy());
  const attempt = (): void => {
    let u: Upstream | undefined;
    let outcome: ((v: number) => void) | undefined;
    for (;;) {
      u = pool?.pick(route.balancer, want, -1, tried, Date.now());
      if (u === undefined) {
        rawError(socket, 503, ErrorCode.NoInstanceAvailable, `route ${route.name}: no instance of service ${JSON.stringify(route.service)} is available`);
        return;
      }
      outcome = admit(u.breaker);
      if (outcome !== undefined) break;
      tried.push(u);
    }
    const up = u;
    const done = outcome;
    up.inFlight++;
    up.requests++;
    let settled = false;
    const settle = (failed: boolean): void => {
      if (settled) return;
      settled = true;
      up.inFlight--;
      done(failed ? FAILED : SUCCEEDED);
      host.onTryOutcome(up, failed);
    };
    const handler: Dispatcher.DispatchHandler = {
      onConnect() {},
      onHeaders(status) {
        // The instance refused the upgrade with a plain answer.
        settle(status >= 500);
        rawError(socket, 502, ErrorCode.GatewayUpstreamFailed, `route ${route.name}: instance ${up.instance.id} refused the upgrade (HTTP ${status})`);
        return false;
      },
      onData: () => true,
      onComplete() {},
      onError(err) {
        settle(true);
        const code = (err as { code?: string }).code;
        if (code === 'ECONNREFUSED' && tried.length < 2 && !socket.destroyed) {
          tried.push(up);
          attempt();
          return;
        }
        rawError(socket, 502, ErrorCode.GatewayUpstreamFailed, `route ${route.name}: instance ${up.instance.id} failed: ${err.message}`);
      },
      onUpgrade(status, rawHeaders, upstream) {
        settle(false);
        let reply = `HTTP/1.1 ${status} Switching Protocols\r\n`;
        const rh = rawHeaders ?? [];
        for (let i = 0; i < rh.length; i += 2) reply += `${rh[i]!.toString('latin1')}: ${rh[i + 1]!.toString('latin1')}\r\n`;
        reply += '\r\n';
        if (socket.destroyed) {
          upstream.destroy();
          return;
        }
        socket.write(reply);
        if (head.length > 0) upstream.write(head);
        host.sockets.add(socket);
        const close = (): void => {
          host.sockets.delete(socket);
          socket.destroy();
          upstream.destroy();
        };
        upstream.on('error', close);
        upstream.on('close', close);
        socket.on('close', close);
        upstream.pipe(socket);
        socket.pipe(upstream);
      },
    };
    up.pool.dispatch({ path, method: 'GET', headers, upgrade, headersTimeout: 10_000 }, handler);
  };
  attempt();
}
