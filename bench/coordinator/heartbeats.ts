/**
 * The heartbeat load of the coordinator benchmark, in a process of its own so that its CPU is not
 * counted as the control plane's: registers `instances` instances, each under its own lease of `ttl`
 * seconds as the SDK does (`POST /v1/leases`, then `PUT /v1/catalog/services/{service}/instances/{id}`
 * with that lease, on a keep-alive connection of its own), and keeps every lease alive. Two modes:
 *
 * - `stream` (the default; what `ControlPlaneClient.register()` does, src/client/registration.ts and
 *   keepalive-stream.ts): each instance is its own SDK process, so it has its own keep-alive stream
 *   (`POST /v1/leases/keepalive` upgraded to `spofless-keepalive/1`: NDJSON lines raw on a connection
 *   of its own), opened on its first renewal;
 *   it renews every TTL/3 minus up to 20% jitter, counted from the previous answer, by writing one
 *   line `{"id":"<lease>"}` and reading the answer (10,000 instances at TTL 10 s: ≈ 3,300 lines/s).
 *   As the SDK: an answer later than TTL/3 counts as a failed renewal and cuts the stream; a stream
 *   that breaks is reopened on a renewal after a backoff (full jitter, 250 ms doubling up to 10 s),
 *   and meanwhile renewals go per request (counted as `perRequest`); lines unanswered when it broke
 *   are sent again per request. With `connections: n`, the instances share n streams (investigation).
 *   The registration connection is closed after 4 s idle (undici's default), whatever keep-alive the
 *   server offers: fetch would keep it for the control plane's hint (fastify's 72 s), but what is
 *   measured is the steady state, in which an SDK process holds only its stream; and 10,000 idle
 *   connections more would take the load process past its 20,000 file descriptors (EMFILE).
 * - `request` (the earlier load): `POST /v1/leases/{id}/keepalive` at exactly TTL/3, spread evenly
 *   over the period with a timing wheel of 10 ms slots (a lease registered at slot T gets slot
 *   T + 1 + (i mod slots)); the wheel follows the clock, not the timer count, so a late timer sends
 *   what has become due. One keep-alive connection per instance, or `connections: n` shared.
 *
 * In both, a renewal answered "lease not found" means the lease expired (the instance was lost): it is
 * counted and the instance registered again.
 *
 * Protocol (IPC): in `{ type: 'start', url, instances, ttl, mode, connections }`, `{ type: 'stats' }`;
 * out `HeartbeatStats` (on 'stats'), `{ type: 'error', message }`. Exits when the IPC channel closes.
 */
import { request as httpRequest, type ClientRequest } from 'node:http';
import type { Duplex } from 'node:stream';
import { Client, Pool, type Dispatcher } from 'undici';
import type { HeartbeatsIn, HeartbeatsOut } from './common.js';

const SLOT_MS = 10;
/** Registrations in flight at once (a deploy registering many instances, not all at the same instant). */
const REGISTER_CONCURRENCY = 64;
/** Stream mode: how long an idle registration connection is kept (undici's default, and the cap on the server's hint). */
const FETCH_KEEPALIVE_MS = 4_000;
const NDJSON = 'application/x-ndjson';
const LEASE_NOT_FOUND = 'SPOF_ERR_STORE_LEASE_NOT_FOUND';
/** A line unanswered this long counts in `backlog` (the load or the server falling behind). */
const BACKLOG_MS = 1_000;
/** How long a renewal waits for its stream's head before it goes per request (keepalive-stream.ts). */
const HEAD_WAIT_MS = 1_000;

function send(m: HeartbeatsOut): void {
  process.send!(m);
}

interface Instance {
  readonly service: string;
  readonly id: string;
  readonly port: number;
  lease: string;
  /** Its own connection (`connections: 'per-instance'`), as 10,000 SDKs in 10,000 processes have; else the shared pool. */
  http: Dispatcher;
  /** Stream mode: its keep-alive stream (its own, or shared), its one timer, and when its line went out. */
  stream?: KeepAliveStream;
  timer?: NodeJS.Timeout;
  sentAt: number;
}

interface KeepAliveStream {
  state: 'idle' | 'connecting' | 'open' | 'down';
  req: ClientRequest | undefined;
  /** The upgraded connection the lines go on (as the SDK's stream, keepalive-stream.ts). */
  socket: Duplex | undefined;
  /** Lines sent and not yet answered, oldest first (answers come in the same order). */
  waiters: Instance[];
  /** Renewals waiting for the stream's head. */
  queued: Instance[];
  buf: string;
  failures: number;
  lastDelay: number;
  retryAt: number;
}

let url = '';
let ttl = 10;
let mode: 'stream' | 'request' = 'stream';
let registered = 0;
let registerMs = 0;
let keepalivesOk = 0;
let keepalivesFailed = 0;
let leasesLost = 0;
let inFlight = 0;
let connections = 1;
let lastError = '';
let streamsOpened = 0;
let streamsBroken = 0;
let perRequest = 0;
let streams: KeepAliveStream[] = [];

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** As the SDK registers: grant a lease, then put the instance under it. */
async function register(inst: Instance): Promise<void> {
  const grant = await inst.http.request({
    method: 'POST',
    path: '/v1/leases',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ttl }),
  });
  const granted = await grant.body.text();
  if (grant.statusCode !== 200) throw new Error(`POST /v1/leases: ${grant.statusCode} ${granted}`);
  const lease = (JSON.parse(granted) as { id: string }).id;
  const res = await inst.http.request({
    method: 'PUT',
    path: `/v1/catalog/services/${inst.service}/instances/${inst.id}`,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ address: '127.0.0.1', port: inst.port, lease }),
  });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`register ${inst.service}/${inst.id}: ${res.statusCode} ${body}`);
  inst.lease = lease;
}

/** One renewal per request; 'lost' when the lease had expired (and the instance was registered again). */
async function keepalivePerRequest(inst: Instance): Promise<'ok' | 'lost' | 'failed'> {
  inFlight++;
  try {
    const res = await inst.http.request({ method: 'POST', path: `/v1/leases/${inst.lease}/keepalive` });
    const body = await res.body.text();
    if (res.statusCode === 200) {
      keepalivesOk++;
      return 'ok';
    }
    if (res.statusCode === 404) {
      leasesLost++;
      await register(inst);
      return 'lost';
    }
    keepalivesFailed++;
    lastError = `keepalive: ${res.statusCode} ${body.slice(0, 200)}`;
    return 'failed';
  } catch (err) {
    keepalivesFailed++;
    lastError = `keepalive: ${message(err)}`;
    return 'failed';
  } finally {
    inFlight--;
  }
}

// ---- stream mode: one instance renews as registration.ts does ----------------------------------------

/** registration.ts's `#period()`: TTL/3 minus up to 20% jitter. */
const period = (): number => ((ttl * 1000) / 3) * (1 - 0.2 * Math.random());
/** registration.ts's deadline for one renewal. */
const deadline = (): number => Math.ceil(Math.max(500, (ttl * 1000) / 3));

function schedule(inst: Instance, ms: number): void {
  clearTimeout(inst.timer);
  inst.timer = setTimeout(() => renew(inst), ms);
}

function renew(inst: Instance): void {
  const s = inst.stream!;
  if ((s.state === 'idle' || s.state === 'down') && Date.now() >= s.retryAt) openStream(s);
  if (s.state === 'open') writeLine(s, inst);
  else if (s.state === 'connecting') {
    s.queued.push(inst);
    // As the SDK: a renewal waits for the stream's head 1 s at most, then goes per request.
    inst.timer = setTimeout(() => {
      const i = s.queued.indexOf(inst);
      if (i < 0) return;
      s.queued.splice(i, 1);
      void renewPerRequest(inst);
    }, HEAD_WAIT_MS);
  } else void renewPerRequest(inst);
}

async function renewPerRequest(inst: Instance): Promise<void> {
  perRequest++;
  const r = await keepalivePerRequest(inst);
  schedule(inst, r === 'failed' ? period() / 2 : period());
}

function writeLine(s: KeepAliveStream, inst: Instance): void {
  s.waiters.push(inst);
  inst.sentAt = performance.now();
  clearTimeout(inst.timer);
  inst.timer = setTimeout(() => late(s, inst), deadline());
  s.socket!.write(`{"id":"${inst.lease}"}\n`);
}

/** No answer by the deadline: the renewal failed, and the stream is stuck (the SDK cuts it). */
function late(s: KeepAliveStream, inst: Instance): void {
  const i = s.waiters.indexOf(inst);
  if (i < 0) return;
  s.waiters.splice(i, 1);
  keepalivesFailed++;
  schedule(inst, period() / 2);
  broken(s, `keep-alive stream: no answer for lease ${inst.lease} within ${deadline()} ms`);
}

function openStream(s: KeepAliveStream): void {
  const req = httpRequest(`${url}/v1/leases/keepalive`, {
    method: 'POST',
    // As the SDK: the upgraded stream, its lines raw on the connection after the 101.
    headers: { 'content-type': NDJSON, accept: NDJSON, connection: 'upgrade', upgrade: 'spofless-keepalive/1' },
    // A connection of its own, as the SDK's stream has.
    agent: false,
  });
  s.state = 'connecting';
  s.req = req;
  s.socket = undefined;
  s.buf = '';
  req.on('error', (err) => broken(s, `keep-alive stream: ${err.message}`, req));
  req.on('close', () => {
    if (s.socket === undefined) broken(s, 'keep-alive stream: closed', req);
  });
  req.on('response', (res) => {
    res.resume();
    broken(s, `keep-alive stream: HTTP ${res.statusCode} (no upgrade)`, req);
  });
  req.on('upgrade', (_res, socket, head) => {
    if (s.req !== req) return void socket.destroy();
    streamsOpened++;
    s.state = 'open';
    s.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => onData(s, text));
    socket.on('end', () => broken(s, 'keep-alive stream: the control plane ended it', req));
    socket.on('close', () => broken(s, 'keep-alive stream: closed', req));
    socket.on('error', (err) => broken(s, `keep-alive stream: ${err.message}`, req));
    if (head.length > 0) onData(s, head.toString('utf8'));
    for (const inst of s.queued.splice(0)) writeLine(s, inst);
  });
  req.end();
}

function onData(s: KeepAliveStream, text: string): void {
  s.buf += text;
  let nl: number;
  while ((nl = s.buf.indexOf('\n')) >= 0) {
    const line = s.buf.slice(0, nl);
    s.buf = s.buf.slice(nl + 1);
    if (line.trim() === '') continue;
    const inst = s.waiters.shift();
    let answer: { id?: unknown; ttl?: unknown; error?: { code?: unknown; message?: unknown } };
    try {
      answer = JSON.parse(line) as typeof answer;
    } catch {
      answer = {};
    }
    if (inst === undefined || answer.id !== inst.lease || (answer.error === undefined && typeof answer.ttl !== 'number')) {
      if (inst !== undefined) s.waiters.unshift(inst);
      return broken(s, `keep-alive stream: unexpected answer ${line.slice(0, 200)}`);
    }
    s.failures = 0;
    if (answer.error === undefined) {
      keepalivesOk++;
      schedule(inst, period());
    } else if (answer.error.code === LEASE_NOT_FOUND) {
      leasesLost++;
      clearTimeout(inst.timer);
      register(inst).then(
        () => schedule(inst, period()),
        (err: unknown) => {
          keepalivesFailed++;
          lastError = `register again: ${message(err)}`;
          schedule(inst, period() / 2);
        },
      );
    } else {
      keepalivesFailed++;
      lastError = `keep-alive stream: ${line.slice(0, 200)}`;
      schedule(inst, period() / 2);
    }
  }
}

/** The stream (if `req` is still its request) is down until a backoff passes; its renewals go per request. */
function broken(s: KeepAliveStream, why: string, req = s.req): void {
  if (req !== s.req || s.state === 'down') return;
  streamsBroken++;
  lastError = why;
  s.req = undefined;
  req?.destroy();
  s.socket?.destroy();
  s.socket = undefined;
  s.lastDelay = Math.min(10_000, 250 * 2 ** s.failures++) * Math.random();
  s.state = 'down';
  s.retryAt = Date.now() + s.lastDelay;
  for (const inst of [...s.waiters.splice(0), ...s.queued.splice(0)]) {
    clearTimeout(inst.timer);
    void renewPerRequest(inst);
  }
}

// ---------------------------------------------------------------------------------------------

async function start(m: Extract<HeartbeatsIn, { type: 'start' }>): Promise<void> {
  ({ url, ttl, mode } = m);
  const perInstance = m.connections === 'per-instance';
  connections = perInstance ? m.instances : m.connections;
  const keepAliveTimeout = mode === 'stream' ? FETCH_KEEPALIVE_MS : 60_000;
  const pool = new Pool(m.url, { connections: perInstance ? 1 : m.connections, pipelining: 1, keepAliveTimeout });
  if (mode === 'stream') {
    streams = Array.from({ length: connections }, () => ({ state: 'idle', req: undefined, socket: undefined, waiters: [], queued: [], buf: '', failures: 0, lastDelay: 0, retryAt: 0 }));
  }
  const slots = Math.round((m.ttl * 1000) / 3 / SLOT_MS);
  const wheel: Instance[][] = Array.from({ length: slots }, () => []);
  const t0 = performance.now();
  if (mode === 'request') {
    let done = -1; // the last slot whose keepalives were sent
    const timer = setInterval(() => {
      const now = Math.floor((performance.now() - t0) / SLOT_MS);
      for (let s = done + 1; s <= now; s++) for (const inst of wheel[s % slots]!) void keepalivePerRequest(inst);
      done = now;
    }, SLOT_MS);
    timer.unref();
  }

  const instances: Instance[] = Array.from({ length: m.instances }, (_, i) => ({
    service: `bench-hb-${Math.floor(i / 100)}`,
    id: `i${i}`,
    port: 10_000 + (i % 50_000),
    lease: '',
    http: perInstance ? new Client(m.url, { pipelining: 1, keepAliveTimeout, ...(mode === 'stream' ? { keepAliveMaxTimeout: keepAliveTimeout } : {}) }) : pool,
    sentAt: 0,
    ...(mode === 'stream' ? { stream: streams[i % streams.length]! } : {}),
  }));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < instances.length) {
      const i = next++;
      const inst = instances[i]!;
      await register(inst);
      registered++;
      if (mode === 'stream') {
        // The SDK's first renewal comes one period after registering; it opens the stream.
        schedule(inst, period());
      } else {
        const slot = Math.floor((performance.now() - t0) / SLOT_MS) + 1 + (i % slots);
        wheel[slot % slots]!.push(inst);
      }
    }
  };
  await Promise.all(Array.from({ length: REGISTER_CONCURRENCY }, worker));
  registerMs = performance.now() - t0;
}

/** Stream mode: lines unanswered for over BACKLOG_MS; request mode: keepalives due but not yet sent. */
function backlog(): number {
  if (mode === 'request') return Math.max(0, inFlight - connections);
  const old = performance.now() - BACKLOG_MS;
  let n = 0;
  for (const s of streams) for (const inst of s.waiters) if (inst.sentAt < old) n++;
  return n;
}

process.on('disconnect', () => process.exit(0));
process.on('message', (m: HeartbeatsIn) => {
  if (m.type === 'start') {
    start(m).catch((err: unknown) => send({ type: 'error', message: message(err) }));
  } else {
    send({
      type: 'stats',
      registered,
      registerMs,
      keepalivesOk,
      keepalivesFailed,
      leasesLost,
      backlog: backlog(),
      lastError,
      streamsOpen: streams.filter((s) => s.state === 'open').length,
      streamsOpened,
      streamsBroken,
      perRequest,
    });
  }
});
