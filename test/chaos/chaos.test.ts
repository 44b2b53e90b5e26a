/**
 * The chaos suite: nothing is a single point of failure.
 *
 * On loopback: a 3-member etcd cluster, 2 control planes (`spofless up --store etcd://...`, election TTL
 * 2 s), 3 replicas of the sample service registered through the SDK (lease TTL 3 s, an HTTP health check
 * every 500 ms run by the leader), a client issuing a steady stream of idempotent requests through the
 * SDK (discover + balancer + retry on another instance) and acknowledged writes (kv puts, recorded), and
 * a watcher of the whole key space recording every event. Every SDK client lists both control planes.
 *
 * Then, one at a time, each bounded in time:
 * 1. SIGKILL an etcd member (restarted afterwards);
 * 2. SIGKILL the leader control plane (restarted afterwards on its port);
 * 3. SIGSTOP the leader control plane for the election TTL + 2 s, then SIGCONT: the other one leads,
 *    and the resumed one must not act as leader;
 * 4. SIGKILL a service replica;
 * 5. SIGSTOP every control plane for longer than the services' lease TTL, then SIGCONT (fail static).
 *
 * After each: no acknowledged write lost; the watcher's revisions continuous (every revision from its
 * start seen, no event twice); the catalog converged to the truth (exactly the live replicas, passing);
 * the client's failed requests counted. And over the whole run: every health-status write a control
 * plane logged landed at a revision where that control plane's election key existed (the fence), so a
 * deposed leader's late write never landed.
 *
 * "Time to recover" of a fault: from the fault until a write issued after it is acknowledged and seen
 * by the watcher, a control plane leads, and (replica kill) the client's instance list no longer routes
 * to the dead replica.
 *
 * Prints a table; `npm run test:chaos` also writes bench/results/chaos.json. Every process is stopped,
 * passed or failed.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { table, writeResults } from '../../bench/harness.js';
import { ControlPlaneClient, type Discovery, type WatchMessage } from '../../src/client/index.js';
import { constantBackoff } from '../../src/resilience/index.js';
import { startEtcd, type EtcdCluster } from '../support/etcd.js';
import { CLI, Proc, SAMPLE, stopAll } from './procs.js';

const ELECTION_TTL_S = 2;
const SERVICE_TTL_S = 3;
const CHECK_INTERVAL_MS = 500;
const SERVICE = 'chaos';
const ELECTION_PREFIX = '/_spofless/election/control-plane/';
/** The longest a fault may take to recover before the suite fails. */
const RECOVERY_LIMIT_MS = 20_000;
/** The longest the catalog may take to converge after a fault. */
const CONVERGE_LIMIT_MS = 15_000;

interface Cp {
  readonly name: string;
  readonly proc: Proc;
  readonly url: string;
  readonly port: number;
  /** Its name in the election: `<hostname>:<pid>:<port>`, the election key's value. */
  readonly id: string;
}

interface Replica {
  readonly id: string;
  readonly proc: Proc;
}

interface Recorded {
  readonly revision: number;
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
}

interface PhaseResult {
  readonly fault: string;
  readonly recoveryMs: number;
  readonly requestsFailed: number;
  readonly requests: number;
  readonly writesFailed: number;
  readonly writesLost: number;
  readonly convergedMs: number;
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

async function startCp(name: string, storeUrl: string, port = 0): Promise<Cp> {
  const proc = new Proc(name, [CLI, 'up', '--port', String(port), '--store', storeUrl, '--election-ttl', String(ELECTION_TTL_S), '--log-level', 'info']);
  const m = await proc.line(/^spofless listening on (http:\/\/\S+)$/);
  const url = m[1]!;
  const bound = Number(new URL(url).port);
  return { name, proc, url, port: bound, id: `${hostname()}:${proc.pid}:${bound}` };
}

async function startReplica(id: string, urls: readonly string[]): Promise<Replica> {
  const proc = new Proc(id, [SAMPLE], {
    SPOFLESS_URL: urls.join(','),
    SERVICE,
    ID: id,
    TTL: String(SERVICE_TTL_S),
    CHECK_INTERVAL: String(CHECK_INTERVAL_MS),
    CHECK_TIMEOUT: '1000',
    CLIENT_TIMEOUT: '1000',
    DRAIN_DELAY: '200',
  });
  await proc.line(/^ready /);
  return { id, proc };
}

/** `GET /v1/leader` of one control plane, or undefined when it does not answer in time. */
async function leaderOf(cp: Cp): Promise<{ leader: boolean; state: string; current: { id: string; token: number } | null } | undefined> {
  try {
    const res = await fetch(`${cp.url}/v1/leader`, { signal: AbortSignal.timeout(500) });
    if (res.status !== 200) return undefined;
    return (await res.json()) as { leader: boolean; state: string; current: { id: string; token: number } | null };
  } catch {
    return undefined;
  }
}

test('chaos: etcd member, leader control plane (SIGKILL and SIGSTOP), service replica and whole control plane faults: no write lost, no watch gap, catalog converges, fenced leader, fail static', { timeout: 200_000 }, async (t) => {
  let etcd: EtcdCluster | undefined;
  const clients: ControlPlaneClient[] = [];
  const stops: Array<() => void> = [];
  const allCps: Cp[] = [];
  let flapper: Server | undefined;
  try {
    // ---------------------------------------------------------------- the system
    etcd = await startEtcd({ members: 3 });
    const storeUrl = `etcd://${etcd.endpoints.map((e) => new URL(e).host).join(',')}`;
    const [cpA, cpB] = await Promise.all([startCp('cp-a', storeUrl), startCp('cp-b', storeUrl)]);
    const cps: Cp[] = [cpA, cpB];
    allCps.push(...cps);
    const urls = cps.map((c) => c.url);
    const replicas: Replica[] = await Promise.all([0, 1, 2].map((i) => startReplica(`${SERVICE}-${i}`, urls)));

    const client = new ControlPlaneClient({ url: urls, timeout: 1_000 });
    const watcherClient = new ControlPlaneClient({ url: urls, timeout: 1_000 });
    clients.push(client, watcherClient);

    // Election keys that exist before the watcher starts (the control planes campaigned already).
    const before = await client.range(ELECTION_PREFIX);
    const startRevision = before.revision + 1;
    const electionKeys = new Map<string, { id: string; createRevision: number; deletedAt: number }>();
    for (const kv of before.kvs) electionKeys.set(kv.key, { id: kv.value, createRevision: kv.createRevision, deletedAt: Infinity });

    // ---------------------------------------------------------------- the watcher
    const recorded: Recorded[] = [];
    let watcherTop = startRevision - 1;
    let watcherConnections = 0;
    const watch = watcherClient.watch('', { prefix: true, startRevision, heartbeatTimeout: 2_000, backoff: constantBackoff(100) });
    const watching = (async () => {
      for await (const m of watch as AsyncIterable<WatchMessage>) {
        if (m.type === 'connected') watcherConnections++;
        if (m.type === 'compacted') throw new Error(`the watcher hit a compaction: ${JSON.stringify(m)}`);
        if (m.type !== 'events') continue;
        for (const e of m.events) {
          recorded.push({ revision: e.kv.modRevision, type: e.type, key: e.kv.key, value: e.kv.value, createRevision: e.kv.createRevision });
          watcherTop = Math.max(watcherTop, e.kv.modRevision);
          if (e.kv.key.startsWith(ELECTION_PREFIX)) {
            if (e.type === 'put' && !electionKeys.has(e.kv.key)) electionKeys.set(e.kv.key, { id: e.kv.value, createRevision: e.kv.createRevision, deletedAt: Infinity });
            if (e.type === 'delete') {
              const k = electionKeys.get(e.kv.key);
              if (k !== undefined && k.deletedAt === Infinity) k.deletedAt = e.kv.modRevision;
            }
          }
        }
      }
    })();
    stops.push(() => watch.close());
    let watchError: unknown;
    watching.catch((err: unknown) => {
      watchError = err;
    });

    // ---------------------------------------------------------------- the load
    const discovery: Discovery = await client.discover(SERVICE, { heartbeatTimeout: 2_000, backoff: constantBackoff(100) });
    await until(() => discovery.healthy.length === 3, 10_000, 'the client to see 3 replicas');
    let running = true;
    stops.push(() => {
      running = false;
    });
    let requests = 0;
    let requestsFailed = 0;
    const requestErrors: string[] = [];
    const requestLoop = (async () => {
      while (running) {
        requests++;
        try {
          const res = await discovery.request('/', { signal: AbortSignal.timeout(3_000) });
          await res.text();
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
        } catch (err) {
          requestsFailed++;
          if (requestErrors.length < 20) requestErrors.push(err instanceof Error ? err.message : String(err));
        }
        await sleep(20);
      }
    })();
    const acked = new Map<string, { value: string; revision: number; issuedAt: number }>();
    let writesFailed = 0;
    let lastAck: { revision: number; issuedAt: number } = { revision: 0, issuedAt: 0 };
    const writeLoop = (async () => {
      let n = 0;
      while (running) {
        const key = `/chaos/acked/${String(n).padStart(6, '0')}`;
        const value = `value-${n}`;
        const issuedAt = Date.now();
        try {
          const { revision } = await client.put(key, value);
          acked.set(key, { value, revision, issuedAt });
          lastAck = { revision, issuedAt };
          n++;
        } catch {
          // Not acknowledged: the same key is written again (a put is safe to repeat).
          writesFailed++;
        }
        await sleep(25);
      }
    })();
    await until(() => acked.size >= 20 && requests >= 20, 15_000, 'the load to run');

    // A flapping instance (of another service): its check fails and passes in turn all along, so the
    // leader of the moment writes a status change every few hundred ms, across every leadership change,
    // and the fence audit below has many writes to judge, some attempted by leaders about to be deposed.
    let healthy = true;
    flapper = createServer((_req, res) => {
      res.statusCode = healthy ? 200 : 503;
      res.end();
    });
    await new Promise<void>((resolve) => flapper!.listen(0, '127.0.0.1', resolve));
    const flip = setInterval(() => (healthy = !healthy), 700);
    flip.unref();
    stops.push(() => clearInterval(flip));
    await client.register(
      {
        service: `${SERVICE}-flapper`,
        id: 'flapper',
        address: '127.0.0.1',
        port: (flapper.address() as { port: number }).port,
        check: { type: 'http', path: '/', interval: 200, timeout: 500, rise: 1, fall: 1, initialStatus: 'passing' },
      },
      { ttl: 5 },
    );

    // ---------------------------------------------------------------- checks
    const liveCps = (): Cp[] => cps.filter((c) => c.proc.running);
    const leader = async (among: readonly Cp[]): Promise<Cp | undefined> => {
      for (const cp of among) if ((await leaderOf(cp))?.leader === true) return cp;
      return undefined;
    };
    const writesLost = async (): Promise<number> => {
      const all = await client.range('/chaos/acked/');
      assert.equal(all.more, false);
      const stored = new Map(all.kvs.map((kv) => [kv.key, kv.value]));
      let lost = 0;
      for (const [key, { value, revision }] of acked) {
        // The writer goes on meanwhile: a write acknowledged after the list was read is judged next time.
        if (revision > all.revision || stored.get(key) === value) continue;
        lost++;
        const events = recorded.filter((r) => r.key === key);
        t.diagnostic(`lost ${key} (acknowledged at revision ${revision}): stored ${JSON.stringify(stored.get(key))} in a list at revision ${all.revision} from ${client.url}; watcher saw ${JSON.stringify(events)}; watcher top ${watcherTop}`);
      }
      return lost;
    };
    const watchFaults = (): { gaps: number[]; duplicates: number } => {
      const seen = new Set<number>();
      const pairs = new Set<string>();
      let duplicates = 0;
      for (const r of recorded) {
        seen.add(r.revision);
        const pair = `${r.revision} ${r.key}`;
        if (pairs.has(pair)) duplicates++;
        pairs.add(pair);
      }
      const gaps: number[] = [];
      for (let rev = startRevision; rev <= watcherTop; rev++) if (!seen.has(rev)) gaps.push(rev);
      return { gaps, duplicates };
    };
    const catalogTruth = async (live: readonly Replica[]): Promise<boolean> => {
      const { instances } = await client.instances(SERVICE);
      const want = live.map((r) => r.id).sort();
      const got = instances.map((i) => i.id).sort();
      return JSON.stringify(got) === JSON.stringify(want) && instances.every((i) => i.status === 'passing');
    };

    /** The leader now, waiting for one if a leadership change is under way. */
    const waitLeader = async (): Promise<Cp> => {
      let found: Cp | undefined;
      await until(async () => (found = await leader(liveCps())) !== undefined, 10_000, 'a leader');
      return found!;
    };
    const results: PhaseResult[] = [];
    const phase = async (
      fault: string,
      inject: () => Promise<void>,
      recovered: () => Promise<boolean>,
      after: () => Promise<void>,
      live: () => readonly Replica[],
      /** Measure recovery from the end of `inject` (a fault that lasts a set time and ends there). */
      fromEnd = false,
    ): Promise<void> => {
      const r0 = requests;
      const f0 = requestsFailed;
      const w0 = writesFailed;
      let t0 = Date.now();
      await inject();
      if (fromEnd) t0 = Date.now();
      await until(
        async () => {
          // A write issued after the fault acknowledged and seen by the watcher, a leader, and the fault's own condition.
          if (!(lastAck.issuedAt > t0 && watcherTop >= lastAck.revision)) return false;
          if ((await leader(liveCps())) === undefined) return false;
          return recovered();
        },
        RECOVERY_LIMIT_MS,
        `recovery from "${fault}"`,
      );
      const recoveryMs = Date.now() - t0;
      await after();
      const c0 = Date.now();
      await until(() => catalogTruth(live()), CONVERGE_LIMIT_MS, `the catalog to converge after "${fault}" (want ${live().map((r) => r.id).join(',')})`);
      const convergedMs = Date.now() - c0;
      // Let the watcher catch up with the last acknowledged write before judging it.
      const top = lastAck.revision;
      await until(() => watcherTop >= top, 10_000, `the watcher to reach revision ${top}`);
      const lost = await writesLost();
      const wf = watchFaults();
      assert.equal(watchError, undefined, `${fault}: the watcher failed`);
      results.push({ fault, recoveryMs, requests: requests - r0, requestsFailed: requestsFailed - f0, writesFailed: writesFailed - w0, writesLost: lost, convergedMs });
      t.diagnostic(`${fault}: recovered in ${recoveryMs} ms, catalog converged ${convergedMs} ms later; ${requestsFailed - f0}/${requests - r0} requests failed; ${writesFailed - w0} writes not acknowledged, ${lost} acknowledged writes lost; watch gaps ${wf.gaps.length}, duplicates ${wf.duplicates}`);
      assert.equal(lost, 0, `${fault}: acknowledged writes lost`);
      assert.deepEqual(wf.gaps.slice(0, 10), [], `${fault}: the watcher missed revisions`);
      assert.equal(wf.duplicates, 0, `${fault}: the watcher saw events twice`);
    };

    await until(async () => (await leader(cps)) !== undefined, 10_000, 'a leader');
    await until(() => catalogTruth(replicas), CONVERGE_LIMIT_MS, 'the catalog to list 3 passing replicas');

    // ---------------------------------------------------------------- 1. SIGKILL an etcd member
    const member = etcd.members[0]!;
    await phase(
      'SIGKILL an etcd member',
      () => member.kill('SIGKILL'),
      () => Promise.resolve(true),
      () => member.restart(),
      () => replicas,
    );

    // ---------------------------------------------------------------- 2. SIGKILL the leader control plane
    const killed = await waitLeader();
    const survivor = cps.find((c) => c !== killed)!;
    await phase(
      'SIGKILL the leader control plane',
      () => killed.proc.stop(),
      async () => (await leaderOf(survivor))?.leader === true,
      async () => {
        const again = await startCp(killed.name, storeUrl, killed.port);
        cps[cps.indexOf(killed)] = again;
        allCps.push(again);
        await until(async () => (await leaderOf(again))?.state === 'candidate', 10_000, 'the restarted control plane to campaign');
      },
      () => replicas,
    );

    // ---------------------------------------------------------------- 3. SIGSTOP the leader control plane
    const stopped = await waitLeader();
    const other = cps.find((c) => c !== stopped)!;
    const pauseMs = ELECTION_TTL_S * 1000 + 2_000;
    let stoppedAt = 0;
    await phase(
      `SIGSTOP the leader control plane ${pauseMs / 1000} s`,
      () => {
        stoppedAt = Date.now();
        stopped.proc.signal('SIGSTOP');
        return Promise.resolve();
      },
      async () => (await leaderOf(other))?.leader === true,
      async () => {
        await sleep(Math.max(0, stoppedAt + pauseMs - Date.now()));
        stopped.proc.signal('SIGCONT');
        // Resumed: it must know at once that it does not lead.
        await until(async () => {
          const s = await leaderOf(stopped);
          return s !== undefined && !s.leader && s.current?.id === other.id;
        }, 5_000, 'the resumed control plane to answer that it does not lead');
        assert.equal((await leaderOf(other))?.leader, true, 'the new leader still leads');
      },
      () => replicas,
    );

    // ---------------------------------------------------------------- 4. SIGKILL a service replica
    const victim = replicas[0]!;
    const liveReplicas = replicas.slice(1);
    await phase(
      'SIGKILL a service replica',
      () => victim.proc.stop(),
      () => Promise.resolve(!discovery.healthy.some((i) => i.id === victim.id)),
      () => Promise.resolve(),
      () => liveReplicas,
    );

    // ---------------------------------------------------------------- 5. the whole control plane down
    // Every control plane stopped for longer than the services' lease TTL: calls between services go
    // on over the SDK's last instance list (fail static); afterwards the registrations find their
    // leases expired, register again, and the catalog converges.
    const downMs = SERVICE_TTL_S * 1000 + 2_000;
    let sawStale = 0;
    await phase(
      `every control plane stopped ${downMs / 1000} s (fail static)`,
      async () => {
        for (const cp of cps) cp.proc.signal('SIGSTOP');
        const end = Date.now() + downMs;
        while (Date.now() < end) {
          if (!discovery.connected) sawStale = Math.max(sawStale, discovery.staleness);
          await sleep(100);
        }
        for (const cp of cps) cp.proc.signal('SIGCONT');
      },
      () => Promise.resolve(discovery.connected),
      () => Promise.resolve(),
      () => liveReplicas,
      true,
    );
    t.diagnostic(`while every control plane was stopped the client's list was up to ${sawStale} ms stale and it kept calling the replicas`);
    assert.ok(sawStale > 0, 'the discovery noticed that its control planes were gone');

    running = false;
    await Promise.all([requestLoop, writeLoop]);
    // Every acknowledged write of the whole run, once the writer has stopped.
    const finalLost = await writesLost();

    // ---------------------------------------------------------------- the fence, over the whole run
    const statusWrites: Array<{ cp: string; revision: number; ok: boolean }> = [];
    let refusedLocally = 0;
    for (const cp of allCps) {
      for (const { line } of cp.proc.logs) {
        if (line.msg === 'health checker: not the leader any more; status not written') refusedLocally++;
        if (line.msg !== 'health checker: status changed') continue;
        const revision = Number(line.revision);
        const held = [...electionKeys.values()].some((k) => k.id === cp.id && k.createRevision <= revision && revision < k.deletedAt);
        statusWrites.push({ cp: cp.name, revision, ok: held });
      }
    }
    const unfenced = statusWrites.filter((w) => !w.ok);
    const byCp = new Map<string, number>();
    for (const w of statusWrites) byCp.set(w.cp, (byCp.get(w.cp) ?? 0) + 1);
    t.diagnostic(`health-status writes by control plane: ${[...byCp].map(([k, v]) => `${k} ${v}`).join(', ')}; refused by a deposed leader's local deadline: ${refusedLocally}`);
    assert.ok(statusWrites.length >= 5, `the flapping check made the leaders write (${statusWrites.length} writes)`);
    assert.ok(byCp.size >= 2, 'status writes came from more than one leader over the run');
    const wf = watchFaults();

    // ---------------------------------------------------------------- report
    const rows = results.map((r) => [r.fault, String(r.recoveryMs), `${r.requestsFailed}/${r.requests}`, String(r.writesFailed), String(r.writesLost), String(r.convergedMs)]);
    const report = table(['fault', 'recover ms', 'requests failed', 'writes unacked', 'writes lost', 'catalog converged +ms'], rows);
    process.stdout.write(`\n${report}\n`);
    const totals = {
      writes_lost: finalLost,
      idempotent_requests_failed: results.reduce((s, r) => s + r.requestsFailed, 0),
      idempotent_requests: requests,
      writes_acknowledged: acked.size,
      writes_unacknowledged: writesFailed,
      watch_gaps: wf.gaps.length,
      watch_duplicates: wf.duplicates,
      watch_events: recorded.length,
      watch_connections: watcherConnections,
      health_status_writes: statusWrites.length,
      unfenced_status_writes: unfenced.length,
      deposed_writes_refused_locally: refusedLocally,
    };
    const recovery = Object.fromEntries(results.map((r) => [`recovery_ms_${slug(r.fault)}`, r.recoveryMs]));
    const converged = Object.fromEntries(results.map((r) => [`converged_ms_${slug(r.fault)}`, r.convergedMs]));
    const failedBy = Object.fromEntries(results.map((r) => [`requests_failed_${slug(r.fault)}`, r.requestsFailed]));
    // Written by `npm run test:chaos` only: `npm test` runs this suite too, and must not dirty the tree.
    const file =
      process.env.SPOFLESS_CHAOS_RESULTS === '1'
        ? writeResults('chaos', { ...totals, ...recovery, ...converged, ...failedBy }, {
            etcd_members: 3,
            control_planes: 2,
            service_replicas: 3,
            election_ttl_s: ELECTION_TTL_S,
            service_ttl_s: SERVICE_TTL_S,
            check_interval_ms: CHECK_INTERVAL_MS,
            stop_ms: pauseMs,
          })
        : 'no file (npm run test:chaos writes bench/results/chaos.json)';
    t.diagnostic(`results in ${file}; request errors: ${requestErrors.join(' | ') || 'none'}`);

    assert.deepEqual(unfenced, [], 'a health-status write landed from a control plane that did not hold the leader key');
    assert.equal(totals.writes_lost, 0);
    assert.equal(totals.idempotent_requests_failed, 0, `idempotent requests failed: ${requestErrors.join(' | ')}`);
  } finally {
    for (const s of stops) s();
    for (const c of clients) c.close();
    flapper?.close();
    flapper?.closeAllConnections();
    await stopAll();
    await etcd?.stop();
  }
});

function slug(fault: string): string {
  return fault
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');
}
