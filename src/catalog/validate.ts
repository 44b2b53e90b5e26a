/**
 * Checks for what enters the catalog, so that a library caller and an HTTP client get the same refusal
 * with the same message. Every message names the field (`body.check.interval`), what was expected and
 * what was given. Unknown fields are refused: a misspelt `intervl` must not silently fall back to the
 * default.
 *
 * Limits:
 * | what                      | limit                                                         |
 * |---------------------------|---------------------------------------------------------------|
 * | service, id               | 1 … 128 of `A-Z a-z 0-9 . _ : @ -`, starting with a letter or digit |
 * | address                   | an IP address, or a host name of at most 253 characters       |
 * | port                      | 1 … 65535                                                     |
 * | zone, version, color      | 1 … 64 printable characters                                   |
 * | tags                      | at most 64, each 1 … 128 printable characters                 |
 * | metadata                  | at most 64 entries; keys 1 … 128, values 0 … 512 printable characters (Consul's limits) |
 * | check interval            | 100 ms … 24 h; timeout 10 ms … 5 min; rise, fall 1 … 100       |
 */
import { isIP } from 'node:net';
import { InvalidArgumentError, describe } from '../errors/index.js';
import { MAX_LEASE_TTL, MIN_LEASE_TTL } from '../store/index.js';
import { INSTANCE_STATUSES, type HealthCheck, type InstanceStatus } from './types.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const HOST_LABEL = '[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOST = new RegExp(`^${HOST_LABEL}(\\.${HOST_LABEL})*\\.?$`);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const LEASE_ID = /^[1-9][0-9]{0,18}$/;

export const CHECK_DEFAULTS = { interval: 10_000, timeout: 2_000, rise: 2, fall: 3 } as const;

const REGISTER_FIELDS = ['address', 'port', 'zone', 'tags', 'metadata', 'version', 'color', 'status', 'check', 'lease', 'ttl'] as const;
const CHECK_FIELDS = ['type', 'path', 'expectStatus', 'bodyMatch', 'interval', 'timeout', 'rise', 'fall', 'initialStatus'] as const;

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyFields(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(`${where} has an unknown field ${JSON.stringify(k)}: expected only ${allowed.join(', ')}`);
  }
}

function text(v: unknown, where: string, min: number, max: number): string {
  if (typeof v !== 'string') fail(`${where} must be a string; got ${describe(v)}`);
  if (v.length < min || v.length > max) fail(`${where} must be ${min} to ${max} characters long; got ${v.length}`);
  if (CONTROL.test(v)) fail(`${where} must not contain control characters; got ${describe(v)}`);
  return v;
}

function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${where} must be an integer from ${min} to ${max}; got ${describe(v)}`);
  }
  return v;
}

/** A service name or instance id: it becomes one segment of a store key, so no `/`. */
export function checkName(v: unknown, what: 'service' | 'id'): string {
  if (typeof v !== 'string' || !NAME.test(v)) {
    fail(
      `${what === 'service' ? 'service name' : 'instance id'} must be 1 to 128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit; got ${describe(v)}`,
    );
  }
  return v;
}

/** An instance status. */
export function checkStatus(v: unknown, where: string): InstanceStatus {
  if (typeof v !== 'string' || !(INSTANCE_STATUSES as readonly string[]).includes(v)) {
    fail(`${where} must be one of ${INSTANCE_STATUSES.map((s) => JSON.stringify(s)).join(', ')}; got ${describe(v)}`);
  }
  return v as InstanceStatus;
}

function checkAddress(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 253 || (isIP(v) === 0 && !HOST.test(v))) {
    fail(`${where} must be an IP address or a host name; got ${describe(v)}`);
  }
  return v;
}

/** A health check with its defaults filled in. */
export function checkHealthCheck(v: unknown, where: string): HealthCheck {
  if (!isPlainObject(v)) fail(`${where} must be an object; got ${describe(v)}`);
  onlyFields(v, CHECK_FIELDS, where);
  const type = v.type;
  if (type !== 'http' && type !== 'tcp') fail(`${where}.type must be "http" or "tcp"; got ${describe(type)}`);
  if (type === 'tcp') {
    for (const f of ['path', 'expectStatus', 'bodyMatch'] as const) {
      if (v[f] !== undefined) fail(`${where}.${f} applies only to an "http" check; this one is "tcp"`);
    }
  }
  const interval = v.interval === undefined ? CHECK_DEFAULTS.interval : int(v.interval, `${where}.interval`, 100, 86_400_000);
  const timeout =
    v.timeout === undefined ? Math.min(CHECK_DEFAULTS.timeout, interval) : int(v.timeout, `${where}.timeout`, 10, 300_000);
  const check: {
    -readonly [K in keyof HealthCheck]: HealthCheck[K];
  } = {
    type,
    interval,
    timeout,
    rise: v.rise === undefined ? CHECK_DEFAULTS.rise : int(v.rise, `${where}.rise`, 1, 100),
    fall: v.fall === undefined ? CHECK_DEFAULTS.fall : int(v.fall, `${where}.fall`, 1, 100),
  };
  if (type === 'http') {
    const path = v.path === undefined ? '/' : text(v.path, `${where}.path`, 1, 1024);
    if (!path.startsWith('/') || /\s/.test(path)) fail(`${where}.path must start with "/" and hold no spaces; got ${describe(path)}`);
    check.path = path;
    if (v.expectStatus !== undefined) check.expectStatus = int(v.expectStatus, `${where}.expectStatus`, 100, 599);
    if (v.bodyMatch !== undefined) check.bodyMatch = text(v.bodyMatch, `${where}.bodyMatch`, 1, 1024);
  }
  if (v.initialStatus !== undefined) {
    const s = checkStatus(v.initialStatus, `${where}.initialStatus`);
    if (s !== 'passing' && s !== 'warning' && s !== 'critical') {
      fail(`${where}.initialStatus must be "passing", "warning" or "critical"; got ${describe(s)}`);
    }
    check.initialStatus = s;
  }
  return check;
}

/** A registration, checked; the fields left out stay out (defaults are the catalog's business). */
export interface CheckedRegistration {
  readonly address: string;
  readonly port: number;
  readonly zone?: string;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly version?: string;
  readonly color?: string;
  readonly status?: InstanceStatus;
  readonly check?: HealthCheck;
  readonly lease?: string;
  readonly ttl?: number;
}

/**
 * Checks a registration body. `where` names it in messages (`body` for the HTTP API).
 *
 * @example
 * ```ts
 * checkRegistration({ address: '127.0.0.1', port: 0 }, 'body'); // throws: body.port must be an integer from 1 to 65535; got 0
 * ```
 */
export function checkRegistration(v: unknown, where = 'registration'): CheckedRegistration {
  if (!isPlainObject(v)) fail(`${where} must be an object; got ${describe(v)}`);
  onlyFields(v, REGISTER_FIELDS, where);
  if (v.address === undefined) fail(`${where} is missing the required field "address"`);
  if (v.port === undefined) fail(`${where} is missing the required field "port"`);
  const out: { -readonly [K in keyof CheckedRegistration]: CheckedRegistration[K] } = {
    address: checkAddress(v.address, `${where}.address`),
    port: int(v.port, `${where}.port`, 1, 65_535),
    tags: [],
    metadata: {},
  };
  if (v.zone !== undefined) out.zone = text(v.zone, `${where}.zone`, 1, 64);
  if (v.version !== undefined) out.version = text(v.version, `${where}.version`, 1, 64);
  if (v.color !== undefined) out.color = text(v.color, `${where}.color`, 1, 64);
  if (v.tags !== undefined) {
    if (!Array.isArray(v.tags)) fail(`${where}.tags must be an array of strings; got ${describe(v.tags)}`);
    if (v.tags.length > 64) fail(`${where}.tags must hold at most 64 tags; got ${v.tags.length}`);
    out.tags = v.tags.map((t: unknown, i) => text(t, `${where}.tags[${i}]`, 1, 128));
  }
  if (v.metadata !== undefined) {
    if (!isPlainObject(v.metadata)) fail(`${where}.metadata must be an object of strings; got ${describe(v.metadata)}`);
    const entries = Object.entries(v.metadata);
    if (entries.length > 64) fail(`${where}.metadata must hold at most 64 entries; got ${entries.length}`);
    const meta: Record<string, string> = {};
    for (const [k, val] of entries) {
      text(k, `${where}.metadata key ${describe(k)}`, 1, 128);
      meta[k] = text(val, `${where}.metadata[${JSON.stringify(k)}]`, 0, 512);
    }
    out.metadata = meta;
  }
  if (v.status !== undefined) out.status = checkStatus(v.status, `${where}.status`);
  if (v.check !== undefined) out.check = checkHealthCheck(v.check, `${where}.check`);
  if (v.lease !== undefined && v.ttl !== undefined) {
    fail(`${where} gives both "lease" and "ttl": expected one (lease: use that lease; ttl: the server grants one)`);
  }
  if (v.lease !== undefined) {
    if (typeof v.lease !== 'string' || !LEASE_ID.test(v.lease)) {
      fail(`${where}.lease must be a lease id (decimal text of a positive integer); got ${describe(v.lease)}`);
    }
    out.lease = v.lease;
  }
  if (v.ttl !== undefined) out.ttl = int(v.ttl, `${where}.ttl`, MIN_LEASE_TTL, MAX_LEASE_TTL);
  return out;
}
