// Blue-green and canary deploys through a real gateway, with real processes: a control plane
// (`spofless up`), two blue and two green replicas of the sample service (their `version` is the
// color), and a gateway (`spofless gateway`), all on loopback. Deploy steps go through the control
// plane's API, as `spofless deploy ...` sends them. Bounded: a few seconds of load per phase and
// 10,000 canary requests; every process is killed when the test ends, passed or failed.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { cliChild, controlPlane, sampleService, tempDir } from './helpers/procs.js';

interface Answer {
  readonly status: number;
  readonly version: string | undefined;
  readonly error?: string;
}

async function api(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The control plane, four replicas (blue ×2, green ×2), a route to blue and a gateway that serves it. */
async function setUp(t: TestContext): Promise<{ cpUrl: string; gwUrl: string; adminUrl: string; agent: Agent }> {
  const { url: cpUrl } = await controlPlane(t, { dataDir: tempDir(t, 'deploy-cp') });
  const route = {
    service: 'web',
    match: { pathPrefix: '/' },
    retry: { attempts: 3, on: ['connect-failure', 'reset', 503] },
    traffic: { active: 'blue' },
  };
  const put = await api(cpUrl, 'PUT', '/v1/routes/web', route);
  assert.equal(put.status, 201, JSON.stringify(put.body));
  await Promise.all(
    ['blue-1', 'blue-2', 'green-1', 'green-2'].map((id) => sampleService(t, { SPOFLESS_URL: cpUrl, SERVICE: 'web', ID: id, VERSION: id.split('-')[0]!, TTL: '10' })),
  );
  const gw = cliChild(t, ['gateway', '--url', cpUrl, '--port', '0', '--admin-port', '0', '--grace', '0', '--slow-start', '0', '--json']);
  const m = await gw.line(/^\{.*"url".*\}$/, 30_000);
  const { url: gwUrl, adminUrl } = JSON.parse(m[0]) as { url: string; adminUrl: string };
  const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });
  t.after(() => agent.close());
  // Serving, and the gateway knows all four instances.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = (await (await fetch(`${adminUrl}/status`)).json()) as { services: { service: string; instances: unknown[] }[] };
    const web = status.services.find((s) => s.service === 'web');
    if (web?.instances.length === 4 && (await get(gwUrl, agent)).version === 'blue') break;
    if (Date.now() > deadline) throw new Error(`the gateway did not come to serve web with 4 instances: ${JSON.stringify(status)}`);
    await sleep(100);
  }
  return { cpUrl, gwUrl, adminUrl, agent };
}

async function get(gwUrl: string, agent: Agent, path = '/', headers: Record<string, string> = {}): Promise<Answer> {
  try {
    const res = await request(gwUrl + path, { dispatcher: agent, headers });
    const text = await res.body.text();
    let version: string | undefined;
    try {
      version = (JSON.parse(text) as { version?: string }).version;
    } catch {
      version = undefined;
    }
    return res.statusCode === 200 ? { status: res.statusCode, version } : { status: res.statusCode, version, error: text.slice(0, 200) };
  } catch (err) {
    return { status: 0, version: undefined, error: String(err) };
  }
}

/** The gateway's applied route revision (its admin `/status`). */
async function appliedRevision(adminUrl: string): Promise<number> {
  const s = (await (await fetch(`${adminUrl}/status`)).json()) as { config: { revisions: { routes: number } } };
  return s.config.revisions.routes;
}

async function waitApplied(adminUrl: string, revision: number): Promise<number> {
  const deadline = Date.now() + 5_000;
  while ((await appliedRevision(adminUrl)) < revision) {
    if (Date.now() > deadline) throw new Error(`the gateway did not apply route revision ${revision} within 5 s`);
    await sleep(5);
  }
  return performance.now();
}

interface Sent extends Answer {
  readonly start: number;
  readonly end: number;
  readonly slow: boolean;
}

/** A steady stream: `workers` loops of GET /, and a slow request (`/slow?ms=600`) every 100 ms, until `stop`. */
function load(gwUrl: string, agent: Agent, workers: number): { stop: () => Promise<Sent[]> } {
  const results: Sent[] = [];
  let running = true;
  const loops: Promise<void>[] = [];
  for (let w = 0; w < workers; w++) {
    loops.push(
      (async () => {
        while (running) {
          const start = performance.now();
          const a = await get(gwUrl, agent);
          results.push({ ...a, start, end: performance.now(), slow: false });
        }
      })(),
    );
  }
  const slow: Promise<void>[] = [];
  const ticker = setInterval(() => {
    const start = performance.now();
    slow.push(get(gwUrl, agent, '/slow?ms=600').then((a) => void results.push({ ...a, start, end: performance.now(), slow: true })));
  }, 100);
  return {
    stop: async () => {
      running = false;
      clearInterval(ticker);
      await Promise.all([...loops, ...slow]);
      return results;
    },
  };
}

/** Runs one deploy step under load and checks where every request went. */
async function stepUnderLoad(
  t: TestContext,
  ctx: { cpUrl: string; gwUrl: string; adminUrl: string; agent: Agent },
  step: string,
  body: unknown,
  from: string,
  to: string,
): Promise<void> {
  const l = load(ctx.gwUrl, ctx.agent, 8);
  await sleep(1_000);
  const sentAt = performance.now();
  const r = await api(ctx.cpUrl, 'POST', `/v1/routes/web/deploy/${step}`, body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const appliedAt = await waitApplied(ctx.adminUrl, r.body.revision as number);
  await sleep(1_000);
  const results = await l.stop();

  const failed = results.filter((x) => x.status !== 200);
  assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${results.length} requests failed during ${step}`);
  const before = results.filter((x) => x.start < sentAt);
  const after = results.filter((x) => x.start > appliedAt);
  assert.ok(before.length > 20 && after.length > 20, `too little load to judge: ${before.length} before, ${after.length} after`);
  const strayBefore = before.filter((x) => x.version !== from);
  assert.deepEqual(strayBefore.slice(0, 3), [], `requests started before the ${step} went to ${to}`);
  const strayAfter = after.filter((x) => x.version !== to);
  assert.deepEqual(strayAfter.slice(0, 3), [], `${strayAfter.length} of ${after.length} requests started after the gateway applied the ${step} reached ${from}`);
  // In-flight requests finish where they started: slow ones sent before the step, still running
  // when it was applied, answered from the old color, successfully.
  const inFlight = results.filter((x) => x.slow && x.start < sentAt && x.end > appliedAt);
  assert.ok(inFlight.length >= 1, 'no slow request was in flight across the step');
  for (const x of inFlight) assert.equal(x.version, from);
  // The gateway applied the step promptly.
  assert.ok(appliedAt - sentAt < 3_000, `applied ${Math.round(appliedAt - sentAt)} ms after the step was sent`);
  t.diagnostic(
    `${step}: ${results.length} requests (${before.length} before, ${after.length} after), ${inFlight.length} slow ones in flight across it, applied ${Math.round(appliedAt - sentAt)} ms after it was sent`,
  );
}

test('blue-green: switch and rollback under load, zero failed requests, no new request to the old color', { timeout: 120_000 }, async (t) => {
  const ctx = await setUp(t);
  await stepUnderLoad(t, ctx, 'switch', { to: 'green' }, 'blue', 'green');
  await stepUnderLoad(t, ctx, 'rollback', undefined, 'green', 'blue');
  // A switch to a color with no instance is refused and changes nothing.
  const refused = await api(ctx.cpUrl, 'POST', '/v1/routes/web/deploy/switch', { to: 'purple' });
  assert.equal(refused.status, 409);
  assert.equal((await get(ctx.gwUrl, ctx.agent)).version, 'blue');
});

test('canary at 10%: share within ±2 points over 10,000 requests, sticky per user, force header', { timeout: 180_000 }, async (t) => {
  const ctx = await setUp(t);
  const c = await api(ctx.cpUrl, 'POST', '/v1/routes/web/deploy/canary', { version: 'green', weight: 10, stickyOn: { header: 'x-user' } });
  assert.equal(c.status, 200, JSON.stringify(c.body));
  await waitApplied(ctx.adminUrl, c.body.revision as number);

  const N = 10_000;
  const versionOf = new Map<string, string | undefined>();
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < N) {
        const user = `user-${next++}`;
        const a = await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': user });
        if (a.status !== 200) failed++;
        versionOf.set(user, a.version);
      }
    }),
  );
  assert.equal(failed, 0);
  const green = [...versionOf.values()].filter((v) => v === 'green').length;
  const blue = [...versionOf.values()].filter((v) => v === 'blue').length;
  assert.equal(green + blue, N);
  const share = (green / N) * 100;
  assert.ok(share >= 8 && share <= 12, `canary share ${share.toFixed(2)}% is not within 10 ± 2`);
  t.diagnostic(`canary share over ${N} users: ${share.toFixed(2)}%`);

  // Sticky: each of 300 users (a third of them on the canary), asked 5 more times, keeps their version.
  const greens = [...versionOf].filter(([, v]) => v === 'green').slice(0, 100);
  const blues = [...versionOf].filter(([, v]) => v === 'blue').slice(0, 200);
  for (let round = 0; round < 5; round++) {
    await Promise.all(
      [...greens, ...blues].map(async ([user, v]) => {
        const a = await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': user });
        assert.equal(a.version, v, `user ${user} flipped from ${v} to ${a.version} (round ${round})`);
      }),
    );
  }

  // The force header reaches the named version, whatever the user's side.
  for (const [user, v] of [...greens.slice(0, 20), ...blues.slice(0, 20)]) {
    const other = v === 'green' ? 'blue' : 'green';
    const a = await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': user, 'x-spofless-version': other });
    assert.equal(a.version, other);
  }
  // ... also with the canary at 0% (a preview only the force header reaches).
  const zero = await api(ctx.cpUrl, 'POST', '/v1/routes/web/deploy/canary', { version: 'green', weight: 0 });
  await waitApplied(ctx.adminUrl, zero.body.revision as number);
  for (let i = 0; i < 50; i++) {
    assert.equal((await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': `user-${i}` })).version, 'blue');
    assert.equal((await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': `user-${i}`, 'x-spofless-version': 'green' })).version, 'green');
  }

  // Promote: everyone on green, blue kept as previous.
  const p = await api(ctx.cpUrl, 'POST', '/v1/routes/web/deploy/promote');
  assert.equal(p.status, 200);
  await waitApplied(ctx.adminUrl, p.body.revision as number);
  for (let i = 0; i < 50; i++) assert.equal((await get(ctx.gwUrl, ctx.agent, '/', { 'x-user': `user-${i}` })).version, 'green');
});
