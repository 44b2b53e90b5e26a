/**
 * The heartbeat load of the coordinator benchmark, in a process of its own so that its CPU is not
 * counted as the control plane's: registers `instances` instances, each under its own lease of `ttl`
 * seconds as the SDK does (`POST /v1/leases`, then `PUT /v1/catalog/services/{service}/instances/{id}`
 * with that lease), and keeps every lease
 * alive at TTL/3 (`POST /v1/leases/{id}/keepalive`), as the SDK does: 10,000 instances at TTL 10 s is
 * 3,000 keepalives a second.
 *
 * The keepalives are spread evenly over the period with a timing wheel of 10 ms slots: a lease
 * registered at slot T gets slot T + 1 + (i mod slots), so no slot holds much more than its share and
 * the first keepalive comes well within the TTL even while the others are still registering. The
 * wheel follows the clock, not the timer count, so a late timer sends what has become due.
 * A keepalive answered 404 means the lease expired (the instance was lost): it is counted and the
 * instance registered again.
 *
 * Protocol (IPC): in `{ type: 'start', url, instances, ttl, connections }`, `{ type: 'stats' }`;
 * out `HeartbeatStats` (on 'stats'), `{ type: 'error', message }`. Exits when the IPC channel closes.
 */
import { Client, Pool, type Dispatcher } from 'undici';
import type { HeartbeatsIn, HeartbeatsOut } from './common.js';

const SLOT_MS = 10;
/** Registrations in flight at once (a deploy registering many instances, not all at the same instant). */
const REGISTER_CONCURRENCY = 64;

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
}

let pool: Pool;
let ttl = 10;
let registered = 0;
let registerMs = 0;
let keepalivesOk = 0;
let keepalivesFailed = 0;
let leasesLost = 0;
let inFlight = 0;
let connections = 1;
let lastError = '';

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

async function keepalive(inst: Instance): Promise<void> {
  inFlight++;
  try {
    const res = await inst.http.request({ method: 'POST', path: `/v1/leases/${inst.lease}/keepalive` });
    const body = await res.body.text();
    if (res.statusCode === 200) {
      keepalivesOk++;
    } else if (res.statusCode === 404) {
      leasesLost++;
      await register(inst);
    } else {
      keepalivesFailed++;
      lastError = `keepalive: ${res.statusCode} ${body.slice(0, 200)}`;
    }
  } catch (err) {
    keepalivesFailed++;
    lastError = `keepalive: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    inFlight--;
  }
}

async function start(m: Extract<HeartbeatsIn, { type: 'start' }>): Promise<void> {
  ttl = m.ttl;
  const perInstance = m.connections === 'per-instance';
  connections = perInstance ? m.instances : m.connections;
  pool = new Pool(m.url, { connections: perInstance ? 1 : m.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const slots = Math.round((m.ttl * 1000) / 3 / SLOT_MS);
  const wheel: Instance[][] = Array.from({ length: slots }, () => []);
  const t0 = performance.now();
  let done = -1; // the last slot whose keepalives were sent
  const timer = setInterval(() => {
    const now = Math.floor((performance.now() - t0) / SLOT_MS);
    for (let s = done + 1; s <= now; s++) for (const inst of wheel[s % slots]!) void keepalive(inst);
    done = now;
  }, SLOT_MS);
  timer.unref();

  const instances: Instance[] = Array.from({ length: m.instances }, (_, i) => ({
    service: `bench-hb-${Math.floor(i / 100)}`,
    id: `i${i}`,
    port: 10_000 + (i % 50_000),
    lease: '',
    http: perInstance ? new Client(m.url, { pipelining: 1, keepAliveTimeout: 60_000 }) : pool,
  }));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < instances.length) {
      const i = next++;
      const inst = instances[i]!;
      await register(inst);
      registered++;
      const slot = Math.floor((performance.now() - t0) / SLOT_MS) + 1 + (i % slots);
      wheel[slot % slots]!.push(inst);
    }
  };
  await Promise.all(Array.from({ length: REGISTER_CONCURRENCY }, worker));
  registerMs = performance.now() - t0;
}

process.on('disconnect', () => process.exit(0));
process.on('message', (m: HeartbeatsIn) => {
  if (m.type === 'start') {
    start(m).catch((err: unknown) => send({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
  } else {
    send({
      type: 'stats',
      registered,
      registerMs,
      keepalivesOk,
      keepalivesFailed,
      leasesLost,
      backlog: Math.max(0, inFlight - connections),
      lastError,
    });
  }
});
