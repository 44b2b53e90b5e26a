// The etcd helper itself: a 3-member cluster replicates, survives losing its leader to SIGKILL, and
// leaves no process or directory behind; a missing binary fails with the install command.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { EtcdNotInstalledError, INSTALL_COMMAND, startEtcd, etcdVersion, type EtcdCluster } from './support/etcd.js';

const clusters: EtcdCluster[] = [];
const clients: Etcd3[] = [];
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(clusters.map((c) => c.stop()));
});

function client(endpoint: string): Etcd3 {
  const c = new Etcd3({ hosts: endpoint, dialTimeout: 2_000 });
  clients.push(c);
  return c;
}

/** Retries `fn` until it succeeds or `ms` pass: writes fail while a new leader is elected. */
async function eventually<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

test('etcd 3.4 is installed', () => {
  assert.match(etcdVersion(), /^3\.4\./);
});

test('3 members: write through one, read through another, lose the leader to SIGKILL, still write, stop leaves nothing', async () => {
  const etcd = await startEtcd({ members: 3 });
  clusters.push(etcd);
  assert.equal(etcd.endpoints.length, 3);
  assert.equal(new Set(etcd.endpoints).size, 3);
  for (const url of etcd.endpoints) assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);

  const [a, b, c] = etcd.members.map((m) => client(m.clientUrl));
  await a!.put('/t/one').value('1');
  assert.equal(await b!.get('/t/one').string(), '1');

  // A value near our 1.5 MiB limit goes through (--max-request-bytes 2 MiB).
  const big = 'x'.repeat(1.5 * 1024 * 1024);
  await b!.put('/t/big').value(big);
  assert.equal((await c!.get('/t/big').string())?.length, big.length);

  // Kill the leader: the harder case, as the other two must elect a new one before writing.
  const status = await a!.maintenance.status();
  const statuses = await Promise.all([a!, b!, c!].map((x) => x.maintenance.status()));
  const leaderIndex = statuses.findIndex((s) => s.header.member_id === status.leader);
  assert.ok(leaderIndex >= 0, `leader ${status.leader} is one of ${statuses.map((s) => s.header.member_id).join(', ')}`);
  const victim = etcd.members[leaderIndex]!;
  const victimPid = victim.pid!;
  await victim.kill('SIGKILL');
  assert.equal(victim.running, false);
  assert.equal(victim.pid, undefined);
  assert.throws(() => process.kill(victimPid, 0), { code: 'ESRCH' });

  const survivors = [a!, b!, c!].filter((_, i) => i !== leaderIndex);
  // Wait for the new leader before writing: a write proposed while there is none waits out etcd's
  // request timeout (about 6 s) instead of failing fast.
  await eventually(async () => {
    const s = await survivors[0]!.maintenance.status();
    if (s.leader === '0' || s.leader === status.leader) throw new Error(`no new leader yet (${s.leader})`);
  }, 10_000);
  await eventually(async () => survivors[0]!.put('/t/two').value('2').exec(), 10_000);
  assert.equal(await eventually(() => survivors[1]!.get('/t/two').string(), 10_000), '2');

  // The killed member comes back with its data and catches up.
  await victim.restart();
  assert.ok(victim.running);
  const back = client(victim.clientUrl);
  assert.equal(await eventually(() => back.get('/t/two').string(), 10_000), '2');

  const pids = etcd.members.map((m) => m.pid!);
  const dirs = etcd.members.map((m) => m.dataDir);
  await etcd.stop();
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `etcd pid ${pid} still alive`);
  for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} still exists`);
  await etcd.stop(); // idempotent
});

test('a missing etcd binary is an error naming the install command, not a skip', async () => {
  await assert.rejects(startEtcd({ members: 1, binary: 'etcd-not-installed-here' }), (err: unknown) => {
    assert.ok(err instanceof EtcdNotInstalledError);
    assert.equal(err.code, 'ETCD_NOT_INSTALLED');
    assert.ok(err.message.includes(INSTALL_COMMAND), err.message);
    return true;
  });
});

/** Starts test/support/etcd-owner.ts and reads the etcd pid and data directory it prints. */
async function owner(mode: 'throw' | 'wait'): Promise<{ child: import('node:child_process').ChildProcess; pid: number; dataDir: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./support/etcd-owner.ts', import.meta.url).pathname, mode], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  after(() => void child.kill('SIGKILL'));
  for await (const line of createInterface({ input: child.stdout })) {
    const { pid, dataDir } = JSON.parse(line) as { pid: number; dataDir: string };
    return { child, pid, dataDir };
  }
  throw new Error('etcd-owner printed nothing');
}

/** Whether `pid` is a live process; a zombie (killed, not yet reaped by its new parent) is not. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('an owner that dies of an uncaught error takes its etcd with it', async () => {
  const { child, pid, dataDir } = await owner('throw');
  if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  // SIGKILL was sent before the owner exited; dying takes the kernel a moment.
  await eventually(async () => assert.equal(alive(pid), false, `etcd ${pid} outlived its owner`), 2_000);
  assert.equal(existsSync(dataDir), false, `${dataDir} left behind`);
});

test('an owner killed with SIGKILL leaves an orphan that the next start reaps', async () => {
  const { child, pid, dataDir } = await owner('wait');
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(alive(pid), true, 'nothing to reap: etcd died with its owner');
  const etcd = await startEtcd({ members: 1 });
  clusters.push(etcd);
  await eventually(async () => assert.equal(alive(pid), false, `orphan etcd ${pid} not reaped`), 5_000);
  assert.equal(existsSync(dataDir), false);
  await etcd.stop();
});
