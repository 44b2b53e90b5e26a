// A child process for test/store-sqlite.test.ts: writes as fast as it can from several concurrent
// callers and reports every acknowledged put on stdout ("<key> <revision>"), until it is killed.
import { SqliteStore } from '../src/store/sqlite.js';

const path = process.argv[2];
const callers = Number(process.argv[3] ?? 16);
if (path === undefined) throw new Error('usage: store-sqlite-writer.ts <db path> [callers]');
const store = await SqliteStore.open({ path });
process.stdout.write('ready\n');

async function caller(n: number): Promise<void> {
  for (let i = 0; ; i++) {
    const key = `/crash/${n}/${i}`;
    const { revision } = await store.put(key, `value of ${key}`);
    // Pipes are synchronous on Linux: once this returns, the parent can read the line even if we die.
    process.stdout.write(`${key} ${revision}\n`);
  }
}

await Promise.all(Array.from({ length: callers }, (_, n) => caller(n)));
