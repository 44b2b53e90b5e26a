/**
 * Store URLs, as `spofless up --store` and `startControlPlane({ store })` take them:
 *
 * | form                                   | engine                                                    |
 * |----------------------------------------|-----------------------------------------------------------|
 * | `etcd://host:port,host:port,...`       | etcd, these members (one is enough; several fail over)     |
 * | `etcd://host:port,.../some/namespace`  | etcd, every key under `/some/namespace/` (installations share one cluster) |
 * | `sqlite:` or `sqlite:<dir>`            | the embedded SQLite engine, `store.db` in `<dir>` (default `./.spofless`) |
 * | `<dir>` (no scheme)                    | the embedded SQLite engine in `<dir>`                      |
 *
 * Every endpoint is checked (host, then a port from 1 to 65535); a bad one is named in the error.
 */
import { isIP } from 'node:net';
import { InvalidArgumentError, describe } from '../../errors/index.js';

/** A parsed store URL. */
export type StoreUrl =
  | {
      readonly engine: 'etcd';
      /** `host:port` of each member, in the order given (IPv6 hosts in brackets). */
      readonly endpoints: readonly string[];
      /** Key prefix every key lives under (`''`: the whole key space). Ends with `/` when not empty. */
      readonly namespace: string;
    }
  | {
      readonly engine: 'sqlite';
      /** The directory holding `store.db`. */
      readonly dataDir: string;
    };

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Checks one etcd endpoint and returns it as `host:port`. Accepts `host:port`, `[v6]:port` and the
 * same with `http://` in front (etcd's own `--advertise-client-urls` form). TLS (`https://`) is not
 * supported yet and says so.
 *
 * @example
 * ```ts
 * parseEndpoint('http://127.0.0.1:2379'); // '127.0.0.1:2379'
 * ```
 */
export function parseEndpoint(input: unknown): string {
  if (typeof input !== 'string' || input.trim() === '') {
    throw new InvalidArgumentError(`etcd endpoint must be "host:port"; got ${describe(input)}`);
  }
  let s = input.trim();
  if (/^https:\/\//i.test(s)) {
    throw new InvalidArgumentError(`etcd endpoint ${describe(input)}: TLS (https) is not supported yet; use a plain "host:port" on a trusted network`);
  }
  s = s.replace(/^http:\/\//i, '').replace(/\/$/, '');
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6 !== null) {
    host = v6[1]!;
    portText = v6[2]!;
    if (isIP(host) !== 6) throw new InvalidArgumentError(`etcd endpoint ${describe(input)}: ${describe(host)} is not an IPv6 address`);
  } else {
    const i = s.lastIndexOf(':');
    if (i <= 0) throw new InvalidArgumentError(`etcd endpoint ${describe(input)} must be "host:port" (the port is required; etcd's is usually 2379)`);
    host = s.slice(0, i);
    portText = s.slice(i + 1);
    if (host.includes(':')) {
      throw new InvalidArgumentError(`etcd endpoint ${describe(input)}: ${describe(host)} is not a host name (an IPv6 address goes in brackets: [::1]:2379)`);
    }
    if (isIP(host) === 0 && !HOSTNAME.test(host)) {
      throw new InvalidArgumentError(`etcd endpoint ${describe(input)}: ${describe(host)} is not a host name or IP address (IPv6 goes in brackets: [::1]:2379)`);
    }
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new InvalidArgumentError(`etcd endpoint ${describe(input)}: port must be an integer from 1 to 65535; got ${describe(portText)}`);
  }
  return v6 !== null ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Parses a store URL (see the table above).
 *
 * @example
 * ```ts
 * parseStoreUrl('etcd://10.0.0.1:2379,10.0.0.2:2379');
 * // { engine: 'etcd', endpoints: ['10.0.0.1:2379', '10.0.0.2:2379'], namespace: '' }
 * parseStoreUrl('sqlite:/var/lib/spofless'); // { engine: 'sqlite', dataDir: '/var/lib/spofless' }
 * ```
 */
export function parseStoreUrl(url: string): StoreUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new InvalidArgumentError(`store URL must be "etcd://host:port,..." or "sqlite:<dir>"; got ${describe(url)}`);
  }
  const s = url.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(s)?.[1]?.toLowerCase();
  // A Windows drive letter ("C:\data") is a path, not a scheme.
  if (scheme === undefined || /^[a-z]:[\\/]/i.test(s)) return { engine: 'sqlite', dataDir: s };
  if (scheme === 'sqlite') {
    const dir = s.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    return { engine: 'sqlite', dataDir: dir === '' ? './.spofless' : dir };
  }
  if (scheme !== 'etcd') {
    throw new InvalidArgumentError(`store URL ${describe(url)}: unknown scheme "${scheme}:"; expected "etcd://host:port,..." or "sqlite:<dir>"`);
  }
  const rest = s.slice('etcd:'.length);
  if (!rest.startsWith('//')) throw new InvalidArgumentError(`store URL ${describe(url)} must start with "etcd://", then host:port,host:port,...`);
  const body = rest.slice(2);
  const slash = body.indexOf('/');
  const hosts = slash < 0 ? body : body.slice(0, slash);
  const path = slash < 0 ? '' : body.slice(slash);
  if (hosts === '') throw new InvalidArgumentError(`store URL ${describe(url)} names no etcd endpoint: expected etcd://host:port[,host:port...]`);
  const endpoints = hosts.split(',').map((h, i) => {
    try {
      return parseEndpoint(h);
    } catch (err) {
      throw new InvalidArgumentError(`store URL ${describe(url)}: endpoint ${i + 1} ${(err as Error).message.replace(/^etcd endpoint /, '')}`, { cause: err });
    }
  });
  if (new Set(endpoints).size !== endpoints.length) throw new InvalidArgumentError(`store URL ${describe(url)} names an endpoint twice`);
  const segments = path.split('/').filter((p) => p !== '');
  let namespace = '';
  if (segments.length > 0) {
    const decoded = segments.map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        throw new InvalidArgumentError(`store URL ${describe(url)}: namespace segment ${describe(p)} is not valid percent-encoding`);
      }
    });
    namespace = `/${decoded.join('/')}/`;
  }
  if (/[?#]/.test(path)) throw new InvalidArgumentError(`store URL ${describe(url)}: query strings and fragments are not supported; use etcd://host:port,.../namespace`);
  return { engine: 'etcd', endpoints, namespace };
}
