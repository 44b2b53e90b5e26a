/**
 * Checks for a route as it enters the control plane (HTTP API, CLI, library), so that every gateway
 * only ever reads routes that are whole and sensible. Every refusal is an `InvalidArgumentError` whose
 * message names the field (`route.retry.attempts`), what came and what was expected. Unknown fields are
 * refused at every level: a misspelt `atempts` must not silently fall back to the default.
 *
 * Normalisation (so that gateways compare plain strings): header names (match headers, hash keys, the
 * force header, fallback headers) and `match.host` are lower-cased. Nothing else is rewritten and no
 * default is filled in: defaults are the gateway's business, and a stored route says only what its
 * author said.
 *
 * Limits:
 * | what                         | limit                                                              |
 * |------------------------------|--------------------------------------------------------------------|
 * | name                         | `[a-z0-9][a-z0-9._-]{0,62}`                                        |
 * | service                      | the catalog's service names (1 … 128 of `A-Z a-z 0-9 . _ : @ -`)    |
 * | match.host                   | a host name or IP address, no port, at most 253 characters         |
 * | match.pathPrefix             | starts with `/`, at most 1024 characters, no `?`, `#`, space, `//`; no trailing `/` except `/` itself |
 * | match.headers                | at most 32; names HTTP tokens; values 0 … 1024 characters, no control characters |
 * | balancer                     | `least-request`, `round-robin`, `consistent-hash` (then `hashOn` is required) |
 * | retry.attempts / on / budgetPercent | 1 … 5 / `connect-failure`, `reset`, `timeout` or a status 100 … 599, no duplicates / 0 … 100 |
 * | timeouts                     | integers 1 ms … 1 h; `perTryMs` ≤ `totalMs`                         |
 * | breaker                      | failureRate 1 … 100, minimumCalls 1 … 100,000, openMs 1 ms … 1 h    |
 * | fallback                     | status 200 … 599; at most 32 headers (no hop-by-hop or length headers); body at most 65,536 characters |
 * | traffic versions             | 1 … 64 printable characters (the catalog's limit on version/color) |
 * | traffic.canary.weight        | an integer 0 … 100                                                 |
 */
import { InvalidArgumentError, describe } from '../errors/index.js';
import type {
  BalancerKind,
  FallbackResponse,
  HashKey,
  RetryOn,
  RetryPolicy,
  Route,
  RouteBreaker,
  RouteMatch,
  RouteTimeouts,
  TrafficPolicy,
} from './types.js';

/** The pattern a route name must match: it becomes one segment of a store key and of a URL path. */
export const ROUTE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The header a request may carry to force a version when the route names none. */
export const DEFAULT_FORCE_HEADER = 'x-spofless-version';

export const BALANCER_KINDS: readonly BalancerKind[] = ['least-request', 'round-robin', 'consistent-hash'];
const RETRY_CONDITIONS = ['connect-failure', 'reset', 'timeout'] as const;

const ROUTE_FIELDS = ['name', 'match', 'service', 'balancer', 'hashOn', 'retry', 'timeouts', 'breaker', 'fallback', 'traffic', 'stripPrefix'] as const;
const MATCH_FIELDS = ['host', 'pathPrefix', 'headers'] as const;
const RETRY_FIELDS = ['attempts', 'on', 'budgetPercent'] as const;
const TIMEOUT_FIELDS = ['perTryMs', 'totalMs'] as const;
const BREAKER_FIELDS = ['failureRate', 'minimumCalls', 'openMs'] as const;
const FALLBACK_FIELDS = ['status', 'headers', 'body'] as const;
const TRAFFIC_FIELDS = ['active', 'previous', 'canary', 'forceHeader'] as const;
const CANARY_FIELDS = ['version', 'weight', 'stickyOn'] as const;

const SERVICE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const HOST_LABEL = '[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?';
const HOST = new RegExp(`^${HOST_LABEL}(\\.${HOST_LABEL})*\\.?$`);
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** RFC 9110 `token`: what a header name (and a cookie name) may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Header values: visible characters, spaces and tabs, nothing that could split a header (RFC 9110 field-value). */
// eslint-disable-next-line no-control-regex
const BAD_FIELD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/** Response headers a fallback must not set: the gateway frames the body and owns the connection. */
const FALLBACK_FORBIDDEN_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
]);
const HOUR_MS = 3_600_000;
const MAX_HEADERS = 32;
const MAX_FALLBACK_BODY = 65_536;

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function object(v: unknown, where: string): Record<string, unknown> {
  if (!isPlainObject(v)) fail(`${where} must be an object; got ${describe(v)}`);
  return v;
}

function onlyFields(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(`${where} has an unknown field ${JSON.stringify(k)}: expected only ${allowed.join(', ')}`);
  }
}

function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${where} must be an integer from ${min} to ${max}; got ${describe(v)}`);
  }
  return v;
}

function num(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    fail(`${where} must be a number from ${min} to ${max}; got ${describe(v)}`);
  }
  return v;
}

function text(v: unknown, where: string, min: number, max: number): string {
  if (typeof v !== 'string') fail(`${where} must be a string; got ${describe(v)}`);
  if (v.length < min || v.length > max) fail(`${where} must be ${min} to ${max} characters long; got ${v.length} (${describe(v)})`);
  if (CONTROL.test(v)) fail(`${where} must not contain control characters; got ${describe(v)}`);
  return v;
}

/** A header name: an HTTP token, returned lower-cased. */
function headerName(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 128 || !TOKEN.test(v)) {
    fail(`${where} must be a header name (1 to 128 of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ \` | ~); got ${describe(v)}`);
  }
  return v.toLowerCase();
}

function headerValue(v: unknown, where: string): string {
  if (typeof v !== 'string') fail(`${where} must be a string; got ${describe(v)}`);
  if (v.length > 1024) fail(`${where} must be at most 1024 characters long; got ${v.length}`);
  if (BAD_FIELD_VALUE.test(v)) fail(`${where} must not contain control characters (no CR or LF); got ${describe(v)}`);
  return v;
}

function headerMap(v: unknown, where: string, forbidden?: ReadonlySet<string>): Record<string, string> {
  const obj = object(v, where);
  const entries = Object.entries(obj);
  if (entries.length > MAX_HEADERS) fail(`${where} must hold at most ${MAX_HEADERS} headers; got ${entries.length}`);
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    const name = headerName(k, `${where} name`);
    if (forbidden?.has(name)) fail(`${where} must not set ${JSON.stringify(name)}: the gateway frames the response and owns the connection`);
    if (Object.hasOwn(out, name)) fail(`${where} names ${JSON.stringify(name)} twice (header names are case-insensitive)`);
    out[name] = headerValue(val, `${where}[${JSON.stringify(k)}]`);
  }
  return out;
}

function version(v: unknown, where: string): string {
  return text(v, where, 1, 64);
}

/** A stickiness or canary key: exactly one of `{ header }` or `{ cookie }`. */
function hashKey(v: unknown, where: string): HashKey {
  const obj = object(v, where);
  onlyFields(obj, ['header', 'cookie'], where);
  const hasHeader = obj.header !== undefined;
  const hasCookie = obj.cookie !== undefined;
  if (hasHeader === hasCookie) {
    fail(`${where} must give exactly one of "header" or "cookie"; got ${describe(v)}`);
  }
  if (hasHeader) return { header: headerName(obj.header, `${where}.header`) };
  // Cookie names are case-sensitive (RFC 6265): kept as given.
  if (typeof obj.cookie !== 'string' || obj.cookie.length === 0 || obj.cookie.length > 128 || !TOKEN.test(obj.cookie)) {
    fail(`${where}.cookie must be a cookie name (1 to 128 token characters); got ${describe(obj.cookie)}`);
  }
  return { cookie: obj.cookie };
}

function checkMatch(v: unknown, where: string): RouteMatch {
  const obj = object(v, where);
  onlyFields(obj, MATCH_FIELDS, where);
  if (obj.pathPrefix === undefined) fail(`${where} is missing the required field "pathPrefix" (use "/" to take every path)`);
  const p = obj.pathPrefix;
  if (typeof p !== 'string' || !p.startsWith('/')) fail(`${where}.pathPrefix must be a string starting with "/"; got ${describe(p)}`);
  if (p.length > 1024) fail(`${where}.pathPrefix must be at most 1024 characters long; got ${p.length}`);
  if (/[\s?#]/.test(p) || CONTROL.test(p)) fail(`${where}.pathPrefix must be a path without spaces, "?" or "#"; got ${describe(p)}`);
  if (p.includes('//')) fail(`${where}.pathPrefix must not contain an empty segment ("//"); got ${describe(p)}`);
  if (p.length > 1 && p.endsWith('/')) {
    fail(`${where}.pathPrefix must not end with "/" (prefixes match whole segments: "${p.slice(0, -1)}" already takes "${p}x"); got ${describe(p)}`);
  }
  const out: { -readonly [K in keyof RouteMatch]: RouteMatch[K] } = { pathPrefix: p };
  if (obj.host !== undefined) {
    const h = obj.host;
    if (typeof h !== 'string' || h.length === 0 || h.length > 253) {
      fail(`${where}.host must be a host name without a port (1 to 253 characters); got ${describe(h)}`);
    }
    const lower = h.toLowerCase();
    if (!HOST.test(lower) && !IPV4.test(lower)) {
      fail(`${where}.host must be a host name or IPv4 address without a port, e.g. "api.example.com"; got ${describe(h)}`);
    }
    out.host = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  }
  if (obj.headers !== undefined) out.headers = headerMap(obj.headers, `${where}.headers`);
  return out;
}

function checkRetry(v: unknown, where: string): RetryPolicy {
  const obj = object(v, where);
  onlyFields(obj, RETRY_FIELDS, where);
  if (obj.attempts === undefined) fail(`${where} is missing the required field "attempts" (1 to 5 tries, the first included)`);
  if (obj.on === undefined) fail(`${where} is missing the required field "on" (e.g. ["connect-failure", "reset", 503])`);
  const attempts = int(obj.attempts, `${where}.attempts`, 1, 5);
  if (!Array.isArray(obj.on)) fail(`${where}.on must be an array; got ${describe(obj.on)}`);
  if (obj.on.length > 32) fail(`${where}.on must hold at most 32 conditions; got ${obj.on.length}`);
  const on: RetryOn[] = [];
  obj.on.forEach((c: unknown, i: number) => {
    const w = `${where}.on[${i}]`;
    let cond: RetryOn;
    if (typeof c === 'number') cond = int(c, w, 100, 599);
    else if (typeof c === 'string' && (RETRY_CONDITIONS as readonly string[]).includes(c)) cond = c as RetryOn;
    else fail(`${w} must be one of ${RETRY_CONDITIONS.map((x) => JSON.stringify(x)).join(', ')} or a status code from 100 to 599; got ${describe(c)}`);
    if (on.includes(cond)) fail(`${w} repeats ${describe(cond)}`);
    on.push(cond);
  });
  const out: { -readonly [K in keyof RetryPolicy]: RetryPolicy[K] } = { attempts, on };
  if (obj.budgetPercent !== undefined) out.budgetPercent = num(obj.budgetPercent, `${where}.budgetPercent`, 0, 100);
  return out;
}

function checkTimeouts(v: unknown, where: string): RouteTimeouts {
  const obj = object(v, where);
  onlyFields(obj, TIMEOUT_FIELDS, where);
  const out: { -readonly [K in keyof RouteTimeouts]: RouteTimeouts[K] } = {};
  if (obj.perTryMs !== undefined) out.perTryMs = int(obj.perTryMs, `${where}.perTryMs`, 1, HOUR_MS);
  if (obj.totalMs !== undefined) out.totalMs = int(obj.totalMs, `${where}.totalMs`, 1, HOUR_MS);
  if (out.perTryMs !== undefined && out.totalMs !== undefined && out.perTryMs > out.totalMs) {
    fail(`${where}.perTryMs must be at most totalMs (${out.totalMs}): one try cannot outlast the whole request; got ${out.perTryMs}`);
  }
  return out;
}

function checkBreaker(v: unknown, where: string): RouteBreaker {
  const obj = object(v, where);
  onlyFields(obj, BREAKER_FIELDS, where);
  const out: { -readonly [K in keyof RouteBreaker]: RouteBreaker[K] } = {};
  if (obj.failureRate !== undefined) out.failureRate = num(obj.failureRate, `${where}.failureRate`, 1, 100);
  if (obj.minimumCalls !== undefined) out.minimumCalls = int(obj.minimumCalls, `${where}.minimumCalls`, 1, 100_000);
  if (obj.openMs !== undefined) out.openMs = int(obj.openMs, `${where}.openMs`, 1, HOUR_MS);
  return out;
}

function checkFallback(v: unknown, where: string): FallbackResponse {
  const obj = object(v, where);
  onlyFields(obj, FALLBACK_FIELDS, where);
  if (obj.status === undefined) fail(`${where} is missing the required field "status"`);
  const out: { -readonly [K in keyof FallbackResponse]: FallbackResponse[K] } = {
    // 1xx are interim answers, never a final response.
    status: int(obj.status, `${where}.status`, 200, 599),
  };
  if (obj.headers !== undefined) out.headers = headerMap(obj.headers, `${where}.headers`, FALLBACK_FORBIDDEN_HEADERS);
  if (obj.body !== undefined) {
    if (typeof obj.body !== 'string') fail(`${where}.body must be a string; got ${describe(obj.body)}`);
    if (obj.body.length > MAX_FALLBACK_BODY) fail(`${where}.body must be at most ${MAX_FALLBACK_BODY} characters long; got ${obj.body.length}`);
    if ((out.status === 204 || out.status === 304) && obj.body.length > 0) fail(`${where}.body must be empty with status ${out.status}, which has no body`);
    out.body = obj.body;
  }
  return out;
}

function checkTraffic(v: unknown, where: string): TrafficPolicy {
  const obj = object(v, where);
  onlyFields(obj, TRAFFIC_FIELDS, where);
  const out: { -readonly [K in keyof TrafficPolicy]: TrafficPolicy[K] } = {};
  if (obj.active !== undefined) out.active = version(obj.active, `${where}.active`);
  if (obj.previous !== undefined) out.previous = version(obj.previous, `${where}.previous`);
  if (obj.canary !== undefined) {
    const w = `${where}.canary`;
    const c = object(obj.canary, w);
    onlyFields(c, CANARY_FIELDS, w);
    if (c.version === undefined) fail(`${w} is missing the required field "version"`);
    if (c.weight === undefined) fail(`${w} is missing the required field "weight" (0 to 100 percent)`);
    const canary: { version: string; weight: number; stickyOn?: HashKey } = {
      version: version(c.version, `${w}.version`),
      weight: int(c.weight, `${w}.weight`, 0, 100),
    };
    if (c.stickyOn !== undefined) canary.stickyOn = hashKey(c.stickyOn, `${w}.stickyOn`);
    if (out.active === undefined) fail(`${w} needs ${where}.active: the canary takes its share from the active version`);
    if (canary.version === out.active) fail(`${w}.version must differ from ${where}.active (${describe(out.active)}): that is not a canary`);
    out.canary = canary;
  }
  if (obj.forceHeader !== undefined) out.forceHeader = headerName(obj.forceHeader, `${where}.forceHeader`);
  return out;
}

/**
 * Checks a route as it comes from a user (parsed JSON) and returns it normalised and frozen.
 * `where` names the value in messages (`route`, or `body` for the HTTP API).
 *
 * @throws InvalidArgumentError naming the field, the bad value and what was expected.
 * @example
 * ```ts
 * const route = validateRoute({ name: 'api', service: 'api', match: { pathPrefix: '/api' },
 *   traffic: { active: 'blue' } });
 * validateRoute({ name: 'api', service: 'api', match: { pathPrefix: 'api' } });
 * // throws: route.match.pathPrefix must be a string starting with "/"; got "api"
 * ```
 */
export function validateRoute(input: unknown, where = 'route'): Route {
  const obj = object(input, where);
  onlyFields(obj, ROUTE_FIELDS, where);
  for (const f of ['name', 'match', 'service'] as const) {
    if (obj[f] === undefined) fail(`${where} is missing the required field ${JSON.stringify(f)}`);
  }
  if (typeof obj.name !== 'string' || !ROUTE_NAME_PATTERN.test(obj.name)) {
    fail(`${where}.name must be 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit; got ${describe(obj.name)}`);
  }
  if (typeof obj.service !== 'string' || !SERVICE.test(obj.service)) {
    fail(`${where}.service must be a catalog service name (1 to 128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit); got ${describe(obj.service)}`);
  }
  const route: { -readonly [K in keyof Route]: Route[K] } = {
    name: obj.name,
    match: checkMatch(obj.match, `${where}.match`),
    service: obj.service,
  };
  if (obj.balancer !== undefined) {
    if (typeof obj.balancer !== 'string' || !(BALANCER_KINDS as readonly string[]).includes(obj.balancer)) {
      fail(`${where}.balancer must be one of ${BALANCER_KINDS.map((b) => JSON.stringify(b)).join(', ')}; got ${describe(obj.balancer)}`);
    }
    route.balancer = obj.balancer as BalancerKind;
  }
  if (obj.hashOn !== undefined) {
    if (route.balancer !== 'consistent-hash') {
      fail(`${where}.hashOn applies only to balancer "consistent-hash"; the balancer is ${describe(route.balancer ?? 'least-request')}`);
    }
    route.hashOn = hashKey(obj.hashOn, `${where}.hashOn`);
  } else if (route.balancer === 'consistent-hash') {
    fail(`${where}.hashOn is required with balancer "consistent-hash": give { "header": name } or { "cookie": name }`);
  }
  if (obj.retry !== undefined) route.retry = checkRetry(obj.retry, `${where}.retry`);
  if (obj.timeouts !== undefined) route.timeouts = checkTimeouts(obj.timeouts, `${where}.timeouts`);
  if (obj.breaker !== undefined) route.breaker = checkBreaker(obj.breaker, `${where}.breaker`);
  if (obj.fallback !== undefined) route.fallback = checkFallback(obj.fallback, `${where}.fallback`);
  if (obj.traffic !== undefined) route.traffic = checkTraffic(obj.traffic, `${where}.traffic`);
  if (obj.stripPrefix !== undefined) {
    if (typeof obj.stripPrefix !== 'boolean') fail(`${where}.stripPrefix must be true or false; got ${describe(obj.stripPrefix)}`);
    route.stripPrefix = obj.stripPrefix;
  }
  return deepFreeze(route);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * The stored form of a route: JSON, as written at `routeKey(route.name)`.
 *
 * @example
 * ```ts
 * await store.put(routeKey(route.name), serializeRoute(route));
 * ```
 */
export function serializeRoute(route: Route): string {
  return JSON.stringify(route);
}

/**
 * Parses and checks a stored or user-given route text. Bad JSON is an `InvalidArgumentError` too.
 *
 * @example
 * ```ts
 * const route = parseRoute(kv.value); // as a gateway reads it from a watch event
 * ```
 */
export function parseRoute(text: string, where = 'route'): Route {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail(`${where} is not valid JSON: ${(err as Error).message}`);
  }
  return validateRoute(value, where);
}
