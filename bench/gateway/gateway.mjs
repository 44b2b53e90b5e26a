// The spofless gateway as its own process, for bench/gateway.bench.ts: its CPU is then its own (read
// from /proc/<pid>/stat by the benchmark), not mixed with the control plane's or the load generator's.
//
//   node bench/gateway/gateway.mjs <controlPlaneUrl>   (with an IPC channel)
//
// Plain JavaScript run by plain node, loading spofless from SPOFLESS_BENCH_BUILD (the compiled build
// scripts/run-bench.mjs makes), else from dist/. Sends `{ type: 'up', url, adminUrl, pid }` once
// serving. On 'close' it closes the gateway and exits 0 (so `--cpu-prof` writes its profile); when the
// benchmark goes away (IPC closed, also on SIGKILL) it exits at once.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const controlPlane = process.argv[2];
if (controlPlane === undefined || process.send === undefined) {
  console.error('usage: node bench/gateway/gateway.mjs <controlPlaneUrl>, with an IPC channel');
  process.exit(2);
}
process.on('disconnect', () => process.exit(1));
const build = process.env.SPOFLESS_BENCH_BUILD;
const entry = build ? pathToFileURL(join(build, 'gateway', 'index.js')).href : new URL('../../dist/gateway/index.js', import.meta.url).href;
const { startGateway } = await import(entry);
const gw = await startGateway({
  controlPlane,
  host: '127.0.0.1',
  port: 0,
  adminPort: 0,
  // The benchmark's upstream never fails: the close should not wait out the grace period.
  graceMs: 0,
  drainTimeoutMs: 2_000,
  // A new instance must not start with a reduced share while the benchmark measures.
  slowStartMs: 0,
});
let closing = false;
process.on('message', (m) => {
  if (m !== 'close' || closing) return;
  closing = true;
  gw.close().then(
    () => process.exit(0),
    (err) => {
      console.error('gateway close failed:', err);
      process.exit(1);
    },
  );
});
process.send({ type: 'up', url: gw.url, adminUrl: gw.adminUrl, pid: process.pid });
