// The control plane as its own process, for bench/coordinator.bench.ts: its CPU and memory are then
// its own (read from /proc/<pid>/ by the benchmark), not mixed with the load generators'.
//
//   node bench/coordinator/server.mjs <dataDir | etcd://host:port/ns>     (with an IPC channel; started by the benchmark)
//
// Plain JavaScript run by plain node (no tsx loader thread in the measured process), loading spofless
// from SPOFLESS_BENCH_BUILD (the compiled build scripts/run-bench.mjs makes), else from dist/.
// Sends `{ type: 'up', url, pid }` once listening; answers 'stats' with the store's
// `{ type: 'stats', commits, writes }`. On the message 'close' it closes the control plane and exits 0
// (so `--cpu-prof` gets to write its profile); when the benchmark goes away (the IPC channel closes,
// also when it was killed with SIGKILL) it exits at once.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dataDir = process.argv[2];
if (dataDir === undefined || process.send === undefined) {
  console.error('usage: node bench/coordinator/server.mjs <dataDir>, with an IPC channel');
  process.exit(2);
}
process.on('disconnect', () => process.exit(1));

const build = process.env.SPOFLESS_BENCH_BUILD;
const entry = build ? pathToFileURL(join(build, 'server', 'index.js')).href : new URL('../../dist/server/index.js', import.meta.url).href;
const { startControlPlane } = await import(entry);
// SPOFLESS_BENCH_LOGGER=off turns the request log off, to measure what it costs (investigation only).
const logger = process.env.SPOFLESS_BENCH_LOGGER === 'off' ? { logger: false } : {};
// An `etcd://` store URL instead of a data directory runs the control plane on etcd (bench/coordinator/etcd.ts).
const where = dataDir.startsWith('etcd://') ? { store: dataDir } : { dataDir };
const cp = await startControlPlane({ host: '127.0.0.1', port: 0, ...where, ...logger });

let closing = false;
process.on('message', (m) => {
  if (m === 'stats') {
    // The SQLite engine's counters: writes per commit is the group-commit batch size.
    const { commits, writes } = cp.store.stats ?? { commits: NaN, writes: NaN };
    process.send({ type: 'stats', commits, writes });
    return;
  }
  if (m !== 'close' || closing) return;
  closing = true;
  Promise.resolve(cp.close()).then(
    () => process.exit(0),
    (err) => {
      console.error('control plane close failed:', err);
      process.exit(1);
    },
  );
});
process.send({ type: 'up', url: cp.url, pid: process.pid });
