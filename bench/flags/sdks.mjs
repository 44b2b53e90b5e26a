// N flag SDKs (`FlagClient`, each with its own control-plane client and so its own watch stream and
// TCP connection) in one process, for bench/flags.bench.ts. Each records, on CLOCK_MONOTONIC (the same
// clock in every process on the machine), when a change of the flag `toggle` reached it.
//
//   node bench/flags/sdks.mjs <url> <environment> <n>     (with an IPC channel)
//
// Out: `{ type: 'ready', ms }` once all N have synced and their streams are open;
// `{ type: 'received', revision, at: number[] }` once all N saw the change at `revision`, or when the
// benchmark sends `{ type: 'flush', revision }` (then `at` holds whoever saw it); `{ type: 'error', message }`.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [url, environment, nText] = process.argv.slice(2);
const n = Number(nText);
if (url === undefined || environment === undefined || !(n > 0) || process.send === undefined) {
  console.error('usage: node bench/flags/sdks.mjs <url> <environment> <n>, with an IPC channel');
  process.exit(2);
}
process.on('disconnect', () => process.exit(0));
const build = process.env.SPOFLESS_BENCH_BUILD;
const entry = build ? pathToFileURL(join(build, 'client', 'index.js')).href : new URL('../../dist/client/index.js', import.meta.url).href;
const { FlagClient } = await import(entry);

const monoMs = () => Number(process.hrtime.bigint() / 1000n) / 1000;
const receipts = new Map();
const done = new Set();

function record(revision, at) {
  if (done.has(revision)) return;
  let list = receipts.get(revision);
  if (list === undefined) receipts.set(revision, (list = []));
  list.push(at);
  if (list.length === n) {
    receipts.delete(revision);
    done.add(revision);
    process.send({ type: 'received', revision, at: list });
  }
}

process.on('message', (m) => {
  if (m?.type !== 'flush' || done.has(m.revision)) return;
  done.add(m.revision);
  const at = receipts.get(m.revision) ?? [];
  receipts.delete(m.revision);
  process.send({ type: 'received', revision: m.revision, at });
});

try {
  const started = monoMs();
  const sdks = [];
  for (let i = 0; i < n; i++) {
    const sdk = new FlagClient({ url, environment });
    sdk.onChange((c) => {
      if (c.flags.includes('toggle')) record(c.revision, monoMs());
    });
    sdks.push(sdk);
  }
  await Promise.all(sdks.map((s) => s.ready()));
  // ready() is the first list; the stream opens right after. Wait until every stream is live.
  while (!sdks.every((s) => s.connected)) await new Promise((r) => setTimeout(r, 20));
  process.send({ type: 'ready', ms: monoMs() - started });
} catch (err) {
  process.send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
}
