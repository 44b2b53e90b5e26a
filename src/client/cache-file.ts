/** The SDK's fail-static cache files (discovery and flags): written whole or not at all. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `value` as JSON to `file`, creating its directory. Write then rename: a crash mid-write never
 * leaves half a file to start from. Never throws: a cache that cannot be written only loses
 * fail-static at the next start, and serving goes on.
 *
 * @example
 * ```ts
 * saveCacheFile('/var/cache/app/orders.json', { format: 'spofless-discovery/1', instances });
 * ```
 */
export function saveCacheFile(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(tmp, JSON.stringify(value));
    renameSync(tmp, file);
  } catch {
    // See above: the cache is best effort.
  }
}
