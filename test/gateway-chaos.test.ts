/**
 * The gateway under load with real processes on loopback: a control plane (`spofless up`), three
 * replicas of the sample service registered through the SDK, two gateways (`spofless gateway`), and a
 * steady stream of GETs and POSTs from this process. The load goes to the gateways whose `/readyz`
 * passes, as a load balancer in front of them would.
 *
 * 1. SIGKILL a replica: zero failed GETs (retried on another instance); POSTs that sent no byte are
 *    retried, the others are counted and reported.
 * 2. SIGTERM a replica (the SDK drains it first): zero failed requests of any method.
 * 3. SIGTERM a gateway: readiness fails, the load moves to the other one: zero failed requests; the
 *    gateway exits 0.
 * 4. SIGKILL the control plane: the gateway keeps routing (fail static) and reports staleness.
 * 5. Restart the gateway with the control plane still down: it serves from its saved state.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { ControlPlaneClient } from '../src/client/index.js';
import type { GatewayStatus } from '../src/gateway/index.js';
import { routeKey } from '../src/routing/keys.js';
import { cliChild, controlPlane, sampleService, tempDir, type Child } from './helpers/procs.js';

interface Tally {
  getOk: number;
  getFail: number;
  postOk: number;
  postFail: number;
  failures: string[];
}

function tally(): Tally {
  return { getOk: 0, getFail: 0, postOk: 0, postFail: 0, failures: [] };
}

test('gateway under load: replica SIGKILL and SIGTERM, gateway SIGTERM, control plane down, restart from saved state', { timeout: 90_000 }, async (t) => {
  const dataDir = tempDir(t, 'gw-chaos-cp');
  const cp = await controlPlane(t, { dataDir });
  const env = (i: number): Record<string, string> => ({
    SPOFLESS_URL: cp.url,
    SERVICE: 'sample',
    ID: `r${i}`,
    ZONE: 'a',
    VERSION: '1.0.0',
    TTL: '2',
    DRAIN_DELAY: '500',
    GRACE: '5000',
  });
  const replicas = await Promise.all([1, 2, 3].map((i) => sampleService(t, env(i))));
  const client = new ControlPlaneClient({ url: cp.url });
  t.after(() => client.close());
  await client.put(
    routeKey('sample'),
    JSON.stringify({
      name: 'sample',
      match: { pathPrefix: '/' },
      service: 'sample',
      retry: { attempts: 3, on: ['connect-failure', 'reset', 'timeout', 503] },
      timeouts: { perTryMs: 2_000, totalMs: 5_000 },
    }),
  );

  const stateDirs = [tempDir(t, 'gw-chaos-state1'), tempDir(t, 'gw-chaos-state2')];
  const startGw = async (i: number): Promise<{ child: Child; url: string; adminUrl: string }> => {
    const child = cliChild(t, ['gateway', '--url', cp.url, '--port', '0', '--admin-port', '0', '--zone', 'a', '--state-dir', stateDirs[i]!, '--grace', '1000', '--drain-timeout', '5000', '--slow-start', '0', '--json']);
    const m = await child.line(/^(\{.*"adminUrl".*\})$/);
    const { url, adminUrl } = JSON.parse(m[1]!) as { url: string; adminUrl: string };
    return { child, url, adminUrl };
  };
  const gws = await Promise.all([startGw(0), startGw(1)]);

  // Bounded: a request the gateway never answered fails the test with a reason instead of hanging it.
  const agent = new Agent({ keepAliveTimeout: 2_000, connections: 16, headersTimeout: 15_000, bodyTimeout: 15_000 });
  t.after(() => agent.destroy());
  const statusOf = async (adminUrl: string): Promise<GatewayStatus> => (await (await request(`${adminUrl}/status`, { dispatcher: agent })).body.json()) as GatewayStatus;
  for (const g of gws) {
    for (let i = 0; i < 100; i++) {
      const st = await statusOf(g.adminUrl);
      if (st.ready === true && st.routes.length === 1 && st.services[0]?.instances.length === 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // Readiness as a load balancer sees it: polled every 50 ms.
  const ready = gws.map(() => true);
  let polling = true;
  const pollers = gws.map(async (g, i) => {
    while (polling) {
      try {
        const res = await request(`${g.adminUrl}/readyz`, { dispatcher: agent });
        await res.body.dump();
        ready[i] = res.statusCode === 200;
      } catch {
        ready[i] = false;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  let current = tally();
  let running = true;
  let n = 0;
  const worker = async (w: number): Promise<void> => {
    while (running) {
      const choices = gws.map((_, i) => i).filter((i) => ready[i]);
      if (choices.length === 0) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const g = gws[choices[n++ % choices.length]!]!;
      const post = n % 3 === 0;
      const t0 = current;
      try {
        const res = await request(`${g.url}/work?w=${w}`, {
          dispatcher: agent,
          method: post ? 'POST' : 'GET',
          ...(post ? { body: JSON.stringify({ n }), headers: { 'content-type': 'application/json' } } : {}),
        });
        const text = await res.body.text();
        if (res.statusCode === 200) {
          if (post) t0.postOk++;
          else t0.getOk++;
        } else {
          if (post) t0.postFail++;
          else t0.getFail++;
          t0.failures.push(`${post ? 'POST' : 'GET'} ${res.statusCode} ${text.slice(0, 200)}`);
        }
      } catch (err) {
        if (post) t0.postFail++;
        else t0.getFail++;
        t0.failures.push(`${post ? 'POST' : 'GET'} ${(err as Error).message}`);
      }
    }
  };
  const workers = [0, 1, 2, 3, 4, 5].map((w) => worker(w));
  t.after(async () => {
    running = false;
    polling = false;
    await Promise.allSettled([...workers, ...pollers]);
  });
  const phase = async (name: string, ms: number, action: () => Promise<void> | void): Promise<Tally> => {
    current = tally();
    await action();
    await new Promise((r) => setTimeout(r, ms));
    const got = current;
    t.diagnostic(`${name}: GET ${got.getOk} ok / ${got.getFail} failed, POST ${got.postOk} ok / ${got.postFail} failed${got.failures.length > 0 ? `; ${got.failures.slice(0, 3).join(' | ')}` : ''}`);
    return got;
  };

  const base = await phase('steady', 1_500, () => undefined);
  assert.ok(base.getOk > 10, 'the load runs');
  assert.equal(base.getFail + base.postFail, 0, base.failures.join('\n'));

  // 1. SIGKILL a replica: its lease expires within 2 s; until then tries to it fail and are retried.
  const killed = await phase('replica SIGKILL', 3_500, () => replicas[0]!.child.kill('SIGKILL'));
  assert.equal(killed.getFail, 0, killed.failures.join('\n'));
  assert.ok(killed.postOk > 0);
  // POSTs whose bytes may have reached the dead replica are not repeated: counted, and few.
  assert.ok(killed.postFail <= 6, `POST failures ${killed.postFail}: ${killed.failures.join('\n')}`);

  // 2. SIGTERM a replica: the SDK marks it draining, the gateways stop sending to it at once.
  const drained = await phase('replica SIGTERM', 2_500, () => replicas[1]!.child.kill('SIGTERM'));
  assert.equal(drained.getFail + drained.postFail, 0, drained.failures.join('\n'));
  assert.deepEqual(await replicas[1]!.child.exited, { code: 0, signal: null });

  // 3. SIGTERM a gateway: readiness fails at once, it serves through the grace period, drains, exits 0.
  const gwStop = await phase('gateway SIGTERM', 2_500, () => gws[0].child.kill('SIGTERM'));
  assert.equal(gwStop.getFail + gwStop.postFail, 0, gwStop.failures.join('\n'));
  assert.deepEqual(await gws[0].child.exited, { code: 0, signal: null });
  assert.equal(ready[0], false);

  // 4. The control plane dies: the gateway keeps routing on what it knows.
  const cpDown = await phase('control plane SIGKILL', 2_000, async () => {
    cp.child.kill('SIGKILL');
    await cp.child.exited;
  });
  assert.equal(cpDown.getFail + cpDown.postFail, 0, cpDown.failures.join('\n'));
  assert.ok(cpDown.getOk > 5);
  const st = await statusOf(gws[1].adminUrl);
  assert.equal(st.config.connected, false);
  assert.ok((st.config.stalenessMs ?? 0) > 0, `staleness ${st.config.stalenessMs}`);
  const metrics = await (await request(`${gws[1].adminUrl}/metrics`, { dispatcher: agent })).body.text();
  assert.match(metrics, /spofless_gateway_control_plane_connected 0/);
  assert.ok(st.config.lastSyncAgeMs !== null && st.config.lastSyncAgeMs > 0);
  assert.match(metrics, /spofless_gateway_config_last_sync_age_seconds \d+(\.\d+)?\n/);
  assert.match(metrics, /spofless_gateway_retries_total\{route="sample"\} [1-9]/, 'the SIGKILL phase retried');

  // 5. Restart the gateway with the control plane still down: it starts from its saved state.
  running = false;
  await Promise.allSettled(workers);
  gws[1].child.kill('SIGKILL');
  await gws[1].child.exited;
  const again = await startGw(1);
  const st2 = await statusOf(again.adminUrl);
  assert.equal(st2.config.source, 'saved-state');
  assert.equal(st2.ready, true);
  let served = 0;
  for (let i = 0; i < 20; i++) {
    const res = await request(`${again.url}/after-restart`, { dispatcher: agent });
    const body = (await res.body.json()) as { id: string };
    assert.equal(res.statusCode, 200);
    assert.equal(body.id, 'r3', 'the only replica left');
    served++;
  }
  assert.equal(served, 20);
});
