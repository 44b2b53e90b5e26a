// A process that owns an etcd node, for test/etcd-support.test.ts: it prints the member's pid and data
// directory as one JSON line, then, by its argument, throws (`throw`: the exit handler must kill etcd)
// or waits to be killed (`wait`: a SIGKILL leaves an orphan for the next start to reap).
import { startEtcd } from './etcd.js';

const mode = process.argv[2];
const etcd = await startEtcd({ members: 1 });
const m = etcd.members[0]!;
process.stdout.write(`${JSON.stringify({ pid: m.pid, dataDir: m.dataDir })}\n`);
if (mode === 'throw') throw new Error('owner fails with etcd still running');
setInterval(() => {}, 60_000);
