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

/**
 * A debounced cache write: `schedule()` writes once, `delayMs` after the first change not yet written
 * (an unref'd timer, so it never keeps a process alive); `flush()` writes at once what is still pending
 * (on close). Discovery and the flags client each keep one.
 */
export class DebouncedWrite {
  readonly #delayMs: number;
  readonly #write: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(delayMs: number, write: () => void) {
    this.#delayMs = delayMs;
    this.#write = write;
  }

  schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#write();
    }, this.#delayMs);
    this.#timer.unref();
  }

  flush(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#write();
  }
}
