/**
 * End to end, with real processes and sockets on loopback: a control plane started by the CLI, three
 * replicas of the sample service registered through the SDK, and three independent SDK watchers
 * (`discover`) in this process.
 *
 * 1. SIGKILL one replica: every watcher sees it leave within its TTL + 1 s.
 * 2. SIGTERM another under a steady stream of calls through `Discovery.request`: it drains, and not
 *    one call fails.
 * 3. SIGKILL the control plane: every watcher keeps its list (fail static), calls keep flowing, and
 *    `staleness` grows; restart it on the same port and data: watchers reconnect, staleness is 0 again,
 *    the surviving replica is still registered (its lease got a fresh TTL).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlaneClient, type Discovery } from '../src/client/index.js';
import { constantBackoff } from '../src/resilience/index.js';
import { controlPlane, sampleService, tempDir, until } from './helpers/procs.js';

const TTL_S = 2;

test('three replicas: SIGKILL is seen within TTL + 1 s, SIGTERM drains without losing a call, the SDK fails static', { timeout: 60_000 }, async (t) => {
  const dataDir = tempDir(t, 'e2e-discovery');
  let cp = await controlPlane(t, { dataDir });
  const env = (i: number): Record<string, string> => ({
    SPOFLESS_URL: cp.url,
    SERVICE: 'sample',
    ID: `r${i}`,
    ZONE: i === 3 ? 'b' : 'a',
    VERSION: '1.0.0',
    TTL: String(TTL_S),
    DRAIN_DELAY: '500',
    GRACE: '5000',
  });
  const replicas = await Promise.all([1, 2, 3].map((i) => sampleService(t, env(i))));
  const [r1, r2, r3] = replicas as [(typeof replicas)[0], (typeof replicas)[0], (typeof replicas)[0]];

  // Three watchers, each with its own client (its own connections), as three services would be.
  const clients = [0, 1, 2].map(() => new ControlPlaneClient({ url: cp.url }));
  t.after(() => clients.forEach((c) => c.close()));
  const watchers: Discovery[] = await Promise.all(
    clients.map((c, i) => c.discover('sample', { backoff: constantBackoff(100), ...(i === 0 ? { zone: 'a' } : {}) })),
  );
  await until(() => watchers.every((w) => w.instances.length === 3 && w.connected), 5_000, 'every watcher to list 3 instances');
  for (const w of watchers) assert.deepEqual(w.instances.map((i) => i.id).sort(), ['r1', 'r2', 'r3']);

  // ---- 1. SIGKILL: gone from every watcher within TTL + 1 s ----------------------------------------
  const goneAfter: Array<number | undefined> = watchers.map(() => undefined);
  const killedAt = Date.now();
  const subs = watchers.map((w, i) =>
    w.onChange((c) => {
      if (c.removed.some((x) => x.id === 'r1') && goneAfter[i] === undefined) goneAfter[i] = Date.now() - killedAt;
    }),
  );
  r1.child.kill('SIGKILL');
  await until(() => goneAfter.every((x) => x !== undefined), TTL_S * 1000 + 4_000, 'every watcher to drop r1');
  subs.forEach((s) => s.dispose());
  t.diagnostic(`SIGKILLed instance left each watcher after ${goneAfter.join(', ')} ms (TTL ${TTL_S * 1000} ms)`);
  for (const ms of goneAfter) assert.ok(ms! <= TTL_S * 1000 + 1000, `seen gone after ${ms} ms`);
  // The others are alive and registered (renewing their leases all along).
  for (const w of watchers) assert.deepEqual(w.instances.map((i) => i.id).sort(), ['r2', 'r3']);
  assert.ok(r2.child.proc.exitCode === null && r3.child.proc.exitCode === null, `replicas exited: ${r2.child.stderr.join(' | ')}`);

  // ---- 2. SIGTERM under load: drains, no call lost ------------------------------------------------
  const caller = watchers[1]!;
  const failures: unknown[] = [];
  const servedBy = new Map<string, number>();
  let stop = false;
  const loops = [0, 1, 2, 3].map(async () => {
    while (!stop) {
      try {
        const res = await caller.request('/');
        const { id } = (await res.json()) as { id: string };
        if (res.status !== 200) failures.push(new Error(`HTTP ${res.status}`));
        servedBy.set(id, (servedBy.get(id) ?? 0) + 1);
      } catch (err) {
        failures.push(err);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  const beforeDrain = servedBy.get('r2') ?? 0;
  const sawDraining = watchers.map(() => false);
  const drainSubs = watchers.map((w, i) => w.onChange((c) => c.updated.some((x) => x.id === 'r2' && x.status === 'draining') && (sawDraining[i] = true)));
  const termAt = Date.now();
  r2.child.kill('SIGTERM');
  const exit = await r2.child.exited;
  const drainMs = Date.now() - termAt;
  await until(() => watchers.every((w) => !w.instances.some((x) => x.id === 'r2')), 3_000, 'every watcher to drop r2');
  await new Promise((r) => setTimeout(r, 200));
  stop = true;
  await Promise.all(loops);
  drainSubs.forEach((s) => s.dispose());
  const total = [...servedBy.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`r2 shutdown log: ${r2.child.stderr.join(' | ')}`);
  t.diagnostic(`SIGTERM drain took ${drainMs} ms; ${total} calls during the test, ${failures.length} failed; r2 served ${servedBy.get('r2')}`);
  assert.deepEqual(failures, []);
  assert.equal(exit.code, 0, `r2 exit ${JSON.stringify(exit)}; stderr ${r2.child.stderr.join(' | ')}`);
  assert.ok(beforeDrain > 0, 'r2 took calls before its drain');
  assert.ok(sawDraining.every(Boolean), 'every watcher saw r2 draining before it left');
  assert.ok(r2.child.stdout.some((l) => l.startsWith('stopped ')), 'r2 ran its onShutdown');

  // ---- 3. fail static: control plane SIGKILLed, then back ----------------------------------------
  cp.child.kill('SIGKILL');
  await cp.child.exited;
  await until(() => watchers.every((w) => !w.connected), 3_000, 'every watcher to notice the control plane is gone');
  await new Promise((r) => setTimeout(r, 500));
  for (const w of watchers) {
    assert.deepEqual(w.instances.map((i) => i.id), ['r3'], 'the last list is kept');
    assert.ok(w.staleness >= 400, `staleness ${w.staleness}`);
  }
  for (let i = 0; i < 10; i++) {
    const res = await watchers[i % 3]!.request('/');
    assert.equal(((await res.json()) as { id: string }).id, 'r3');
  }
  t.diagnostic(`with the control plane down: staleness ${watchers.map((w) => w.staleness).join(', ')} ms, calls still served`);

  cp = await controlPlane(t, { dataDir, port: cp.port });
  const restartedAt = Date.now();
  await until(() => watchers.every((w) => w.connected), 10_000, 'every watcher to reconnect');
  t.diagnostic(`watchers reconnected ${Date.now() - restartedAt} ms after the control plane was back`);
  for (const w of watchers) {
    assert.equal(w.staleness, 0);
    assert.deepEqual(w.instances.map((i) => i.id), ['r3']);
  }
  // r3 renews its lease against the restarted control plane and stays registered past its TTL.
  await new Promise((r) => setTimeout(r, TTL_S * 1000 + 500));
  for (const w of watchers) assert.deepEqual(w.instances.map((i) => i.id), ['r3']);
  const listed = await clients[0]!.instances('sample');
  assert.deepEqual(listed.instances.map((i) => i.id), ['r3']);
  assert.equal(r3.child.proc.exitCode, null);
});
