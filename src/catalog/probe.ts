/**
 * The probes a health check runs: an HTTP GET (status and, optionally, a text the body must contain)
 * and a TCP connect. Each takes an `AbortSignal` (the checker's timeout) and never rejects: a failure is
 * a result with a reason a person can read (`connection refused`, `HTTP 503 (expected 2xx)`).
 *
 * HTTP probes open a fresh connection each time (no agent, `connection: close`): a check must see what
 * a new client would see, not ride on a connection that was accepted before the server wedged.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import type { HealthCheck } from './types.js';

/** What one probe found. */
export interface ProbeResult {
  readonly ok: boolean;
  /** e.g. `HTTP 200`, `HTTP 503 (expected 2xx)`, `connection refused`, `timed out`. */
  readonly detail: string;
}

/** Runs one check against `address:port`. Resolves `{ ok: false, detail: 'timed out' }` on abort. */
export type Probe = (address: string, port: number, check: HealthCheck, signal: AbortSignal) => Promise<ProbeResult>;

/** The body prefix read for `bodyMatch`. */
export const MAX_PROBE_BODY_BYTES = 64 * 1024;

const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed',
};

function reason(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return 'timed out';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return REASONS[code] ?? code;
  return err instanceof Error ? err.message : String(err);
}

function hostFor(address: string): string {
  // node:http wants a bare IPv6 address in `host` (it adds the brackets for the Host header itself).
  return address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
}

/** The default probe: HTTP or TCP by `check.type`. */
export const defaultProbe: Probe = (address, port, check, signal) =>
  check.type === 'http' ? probeHttp(address, port, check, signal) : probeTcp(address, port, signal);

/**
 * @example
 * ```ts
 * const r = await probeHttp('127.0.0.1', 8080, { type: 'http', path: '/healthz', interval: 1000, timeout: 500, rise: 1, fall: 1 }, AbortSignal.timeout(500));
 * ```
 */
export function probeHttp(address: string, port: number, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(r);
    };
    const onAbort = (): void => done({ ok: false, detail: 'timed out' });
    const req = request({
      host: hostFor(address),
      port,
      path: check.path ?? '/',
      method: 'GET',
      agent: false,
      headers: { 'user-agent': 'spofless-health-check', accept: '*/*', connection: 'close' },
    });
    req.on('error', (err) => done({ ok: false, detail: reason(err, signal) }));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const statusOk = check.expectStatus === undefined ? status >= 200 && status < 300 : status === check.expectStatus;
      if (!statusOk) {
        res.resume();
        done({ ok: false, detail: `HTTP ${status} (expected ${check.expectStatus ?? '2xx'})` });
        return;
      }
      const match = check.bodyMatch;
      if (match === undefined) {
        res.resume();
        done({ ok: true, detail: `HTTP ${status}` });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const judge = (): void => {
        const body = Buffer.concat(chunks).subarray(0, MAX_PROBE_BODY_BYTES).toString('utf8');
        done(
          body.includes(match)
            ? { ok: true, detail: `HTTP ${status}, body matches` }
            : { ok: false, detail: `HTTP ${status}, body does not contain ${JSON.stringify(match)}` },
        );
      };
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_PROBE_BODY_BYTES) judge();
      });
      res.on('end', judge);
      res.on('error', (err) => done({ ok: false, detail: reason(err, signal) }));
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}

/**
 * @example
 * ```ts
 * const r = await probeTcp('127.0.0.1', 5432, AbortSignal.timeout(500)); // { ok: true, detail: 'connected' }
 * ```
 */
export function probeTcp(address: string, port: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    const socket = connect({ host: hostFor(address), port });
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(r);
    };
    const onAbort = (): void => done({ ok: false, detail: 'timed out' });
    socket.on('connect', () => done({ ok: true, detail: 'connected' }));
    socket.on('error', (err) => done({ ok: false, detail: reason(err, signal) }));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}
