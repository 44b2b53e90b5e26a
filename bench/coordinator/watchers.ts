/**
 * The subscribers of the fan-out benchmark, in a process of their own (so that the benchmark's put,
 * and the moment it is acknowledged, are not delayed by 1,000 receipts in the same event loop):
 *
 * - `spofless`: `n` Server-Sent-Events connections, one TCP connection each, to
 *   `GET /v1/watch?prefix=P`, parsed as a client would (event blocks, JSON data).
 * - `etcd`: `n` watchers on the prefix through one `etcd3` client (which multiplexes them on one
 *   gRPC watch stream, as etcd3 does by default).
 *
 * A put's value is `fanout-<seq>`. For each seq, every subscriber's receipt time is taken with
 * `process.hrtime` (CLOCK_MONOTONIC, the same clock in every process on the machine, so the
 * benchmark can subtract its acknowledgement time) and reported once all `n` have it, or when the
 * benchmark gives up on it ('flush'). Exits when the benchmark's IPC channel closes.
 *
 * Protocol (IPC): in `{ type: 'start', mode, target, prefix, n }`, `{ type: 'flush', seq }`;
 * out `{ type: 'ready', ms }`, `{ type: 'received', seq, at: number[], missing }`, `{ type: 'error', message }`.
 */
import { request } from 'node:http';
import { Etcd3 } from 'etcd3';
import { monoMs, VALUE_PREFIX, type WatchersIn, type WatchersOut } from './common.js';

function send(m: WatchersOut): void {
  process.send!(m);
}

let n = 0;
const receipts = new Map<number, number[]>();
const flushed = new Set<number>();

function record(value: string, at: number): void {
  if (!value.startsWith(VALUE_PREFIX)) return;
  const seq = Number(value.slice(VALUE_PREFIX.length));
  if (flushed.has(seq)) return;
  let list = receipts.get(seq);
  if (list === undefined) receipts.set(seq, (list = []));
  list.push(at);
  if (list.length === n) {
    receipts.delete(seq);
    flushed.add(seq);
    send({ type: 'received', seq, at: list, missing: 0 });
  }
}

/** One SSE subscriber: resolves once the server's `ready` event arrived. */
function subscribeSse(base: URL, prefix: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: base.hostname,
        port: base.port,
        path: `/v1/watch?prefix=${encodeURIComponent(prefix)}`,
        headers: { accept: 'text/event-stream' },
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET /v1/watch answered ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding('utf8');
        let buf = '';
        let ready = false;
        res.on('data', (chunk: string) => {
          const at = monoMs();
          buf += chunk;
          for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trimStart();
            }
            if (event === 'ready' && !ready) {
              ready = true;
              resolve();
            } else if (event === 'events') {
              const body = JSON.parse(data) as { events: Array<{ type: string; kv: { value: string } }> };
              for (const ev of body.events) if (ev.type === 'put') record(ev.kv.value, at);
            } else if (event === 'error' || event === 'compacted') {
              send({ type: 'error', message: `watch stream ended by the server: ${event} ${data}` });
            }
          }
        });
        res.on('end', () => {
          if (!ready) reject(new Error('watch stream ended before ready'));
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function startSpofless(url: string, prefix: string): Promise<void> {
  const base = new URL(url);
  // In waves, so connection setup does not look like a SYN flood to the loopback backlog.
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => subscribeSse(base, prefix)));
  }
}

async function startEtcd(endpoint: string, prefix: string): Promise<void> {
  const client = new Etcd3({ hosts: endpoint });
  const watchers = await Promise.all(Array.from({ length: n }, () => client.watch().prefix(prefix).create()));
  for (const w of watchers) {
    w.on('put', (kv) => record(kv.value.toString(), monoMs()));
    w.on('error', (err) => send({ type: 'error', message: `etcd watcher: ${String(err)}` }));
  }
}

process.on('disconnect', () => process.exit(0));
process.on('message', (m: WatchersIn) => {
  if (m.type === 'start') {
    n = m.n;
    const t0 = monoMs();
    const started = m.mode === 'spofless' ? startSpofless(m.target, m.prefix) : startEtcd(m.target, m.prefix);
    started.then(
      () => send({ type: 'ready', ms: monoMs() - t0 }),
      (err: unknown) => send({ type: 'error', message: `could not subscribe: ${err instanceof Error ? err.message : String(err)}` }),
    );
  } else {
    const list = receipts.get(m.seq) ?? [];
    receipts.delete(m.seq);
    flushed.add(m.seq);
    send({ type: 'received', seq: m.seq, at: list, missing: n - list.length });
  }
});
