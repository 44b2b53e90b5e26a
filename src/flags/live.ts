/**
 * `StoreFlagSet`: one environment's `FlagSet` kept current from a `Store` directly (the control
 * plane's OFREP endpoints use it; services use the SDK in `spofless/client`, which does the same over
 * the HTTP watch stream). A range read, then a watch from the revision after it; when the watch's
 * history has been compacted, read again and watch from there.
 *
 * | from     | to       | when                                            |
 * |----------|----------|-------------------------------------------------|
 * | listing  | watching | the range read is in (`ready` resolves)         |
 * | watching | listing  | the watch start revision was compacted          |
 * | any      | closed   | `close()`, or the store closed                  |
 */
import { CompactedError } from '../errors/index.js';
import type { Store } from '../store/index.js';
import { FlagSet } from './flag-set.js';
import { envPrefix } from './keys.js';

const decoder = new TextDecoder();

/**
 * @example
 * ```ts
 * const live = await StoreFlagSet.open(store, 'production');
 * live.set.evaluate('new-checkout', false, { targetingKey: 'u1' });
 * live.close();
 * ```
 */
export class StoreFlagSet {
  readonly env: string;
  readonly set = new FlagSet();
  readonly #store: Store;
  /** The revision each key was last applied at: an older event (a write applied directly, then its late watch event) is dropped. */
  readonly #seen = new Map<string, number>();
  #revision = 0;
  #closed = false;
  #watch: { close(): void } | undefined;
  readonly #waiters = new Set<{ revision: number; resolve: (ok: boolean) => void }>();
  #loop: Promise<void> | undefined;

  private constructor(store: Store, env: string) {
    this.#store = store;
    this.env = env;
  }

  /** Reads the environment and starts following it. */
  static async open(store: Store, env: string): Promise<StoreFlagSet> {
    const s = new StoreFlagSet(store, env);
    await s.#list();
    s.#loop = s.#follow();
    return s;
  }

  /** The highest store revision applied. Changes whenever a flag or segment of the environment changes. */
  get revision(): number {
    return this.#revision;
  }

  /** Applies a change known to be committed at `revision` (a write this process just made), ahead of its watch event. */
  apply(key: string, value: string | undefined, revision: number): void {
    const seen = this.#seen.get(key) ?? 0;
    if (revision < seen) return;
    this.#seen.set(key, revision);
    this.set.applyKey(this.env, key, value);
    if (revision > this.#revision) this.#advance(revision);
  }

  #advance(revision: number): void {
    this.#revision = revision;
    for (const w of this.#waiters) {
      if (w.revision <= revision) {
        this.#waiters.delete(w);
        w.resolve(true);
      }
    }
  }

  /**
   * Resolves once a change committed at `revision` has been applied (true), or after `timeoutMs`
   * (false). Lets a writer answer only when its change is visible to evaluations here.
   */
  waitFor(revision: number, timeoutMs = 2_000): Promise<boolean> {
    if (this.#revision >= revision || this.#closed) return Promise.resolve(this.#revision >= revision);
    return new Promise((resolve) => {
      const waiter = { revision, resolve: (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      } };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#waiters) w.resolve(false);
    this.#waiters.clear();
    this.#watch?.close();
  }

  /** Resolves when the follow loop has ended (after `close()`). */
  async closed(): Promise<void> {
    await this.#loop;
  }

  async #list(): Promise<number> {
    const { kvs, revision } = await this.#store.range(envPrefix(this.env));
    this.set.clear();
    this.#seen.clear();
    for (const kv of kvs) {
      const key = decoder.decode(kv.key);
      this.#seen.set(key, kv.modRevision);
      this.set.applyKey(this.env, key, decoder.decode(kv.value));
    }
    if (revision > this.#revision) this.#advance(revision);
    return revision;
  }

  async #follow(): Promise<void> {
    let from = this.#revision + 1;
    while (!this.#closed) {
      const watch = this.#store.watch(envPrefix(this.env), { prefix: true, startRevision: from });
      this.#watch = watch;
      if (this.#closed) watch.close();
      try {
        for await (const batch of watch) {
          for (const e of batch.events) this.apply(decoder.decode(e.kv.key), e.type === 'delete' ? undefined : decoder.decode(e.kv.value), e.kv.modRevision);
          from = batch.revision + 1;
          if (batch.revision > this.#revision) this.#advance(batch.revision);
        }
        return;
      } catch (err) {
        if (!(err instanceof CompactedError) || this.#closed) return;
        try {
          from = (await this.#list()) + 1;
        } catch {
          return;
        }
      }
    }
  }
}
