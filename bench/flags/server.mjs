// The control plane as its own process, for bench/flags.bench.ts (so that 1,000 SDK streams and the
// benchmark's own event loop do not share its CPU).
//
//   node bench/flags/server.mjs <dataDir>     (with an IPC channel; started by the benchmark)
//
// Plain JavaScript run by plain node, loading spofless from SPOFLESS_BENCH_BUILD (the compiled build
// scripts/run-bench.mjs makes), else from dist/. Sends `{ type: 'up', url, pid }` once listening; on
// 'close' closes the control plane and exits; exits at once when the benchmark goes away.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dataDir = process.argv[2];
if (dataDir === undefined || process.send === undefined) {
  console.error('usage: node bench/flags/server.mjs <dataDir>, with an IPC channel');
  process.exit(2);
}
process.on('disconnect', () => process.exit(1));
const build = process.env.SPOFLESS_BENCH_BUILD;
const entry = build ? pathToFileURL(join(build, 'server', 'index.js')).href : new URL('../../dist/server/index.js', import.meta.url).href;
const { startControlPlane } = await import(entry);
const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir, logger: false, healthChecks: false });
process.on('message', (m) => {
  if (m !== 'close') return;
  Promise.resolve(cp.close()).then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
process.send({ type: 'up', url: cp.url, pid: process.pid });
