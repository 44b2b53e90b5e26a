/**
 * The gateway's feed: routes and catalog instances from the control plane, kept current by two
 * resumable watches, and saved to disk so the gateway serves (and starts) when the control plane is
 * unreachable (fail static).
 *
 * Per prefix (routes, instances):
 *
 * | from      | to        | when                                                          |
 * |-----------|-----------|---------------------------------------------------------------|
 * | listing   | watching  | the paged list at one revision was read and applied           |
 * | listing   | listing   | the control plane did not answer (backoff, the state stays)   |
 * | watching  | live      | the watch stream is open                                      |
 * | live      | watching  | the stream broke: the watch resumes from its revision         |
 * | watching  | listing   | the revision was compacted, or the watch ended with a 4xx     |
 * | any       | closed    | `close()`                                                     |
 *
 * The saved state is one JSON file (`stateDir/gateway-state.json`), written after changes (at most
 * every 100 ms) to a temporary file that is then renamed over the old one: a crash leaves the old
 * file or the new one, never half of one.
 */
import { mkdir, readFile, rename, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Instance } from '../catalog/types.js';
import type { ControlPlaneClient, KeyValue, Watch, WatchEvent } from '../client/index.js';
import { CATALOG_INSTANCES_PREFIX } from '../client/index.js';
import { fullJitterBackoff } from '../resilience/index.js';
import { ROUTES_PREFIX, routeNameOf } from '../routing/keys.js';
import type { Route } from '../routing/types.js';
import { parseRoute } from '../routing/validate.js';

/** A stored route that failed validation: ignored (the last valid version, if any, stays in use). */
export interface InvalidRoute {
  readonly name: string;
  readonly error: string;
  readonly revision: number;
}

/** What the feed hands the gateway after each change. */
export interface FeedSnapshot {
  readonly routes: ReadonlyMap<string, Route>;
  readonly invalid: ReadonlyMap<string, InvalidRoute>;
  readonly instances: ReadonlyMap<string, Instance>;
}

interface SavedState {
  readonly format: 1;
  readonly savedAt: number;
  readonly routes: Record<string, string>;
  readonly instances: Instance[];
}

const STATE_FILE = 'gateway-state.json';

/** Options of {@link Feed}. */
export interface FeedOptions {
  readonly client: ControlPlaneClient;
  readonly stateDir: string | undefined;
  readonly onChange: (snapshot: FeedSnapshot, what: { routes: boolean; instances: boolean }) => void;
  readonly log: (line: string) => void;
  readonly heartbeatTimeout?: number;
}

type Source = 'none' | 'saved-state' | 'control-plane';

/**
 * @example
 * ```ts
 * const feed = new Feed({ client, stateDir: '/var/lib/spofless-gw', onChange: (s) => apply(s), log: console.error });
 * await feed.start(AbortSignal.timeout(3_000));
 * ```
 */
export class Feed {
  readonly #o: FeedOptions;
  readonly #life = new AbortController();
  /** Route text by name (the last valid one), for saving. */
  readonly #routeText = new Map<string, string>();
  readonly #routes = new Map<string, Route>();
  readonly #invalid = new Map<string, InvalidRoute>();
  readonly #instances = new Map<string, Instance>();
  readonly #live = { routes: false, instances: false };
  readonly #watches: { routes?: Watch; instances?: Watch } = {};
  #lastContact = 0;
  #source: Source = 'none';
  #savedStateAt = 0;
  #saveTimer: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();
  #loops: Promise<void>[] = [];
  #revisions = { routes: 0, instances: 0 };

  constructor(options: FeedOptions) {
    this.#o = options;
  }

  get snapshot(): FeedSnapshot {
    return { routes: this.#routes, invalid: this.#invalid, instances: this.#instances };
  }

  /** Both watch streams are open. */
  get connected(): boolean {
    return this.#live.routes && this.#live.instances;
  }

  /** Where the configuration in use came from. */
  get source(): Source {
    return this.#source;
  }

  /** ms since the configuration was last known current: 0 while connected; since start if never synced. */
  get staleness(): number {
    if (this.connected) return 0;
    return this.#lastContact === 0 ? Number.POSITIVE_INFINITY : Math.max(0, Date.now() - this.#lastContact);
  }

  /**
   * `Date.now()` of the last byte from the control plane on both watches (events or the heartbeat
   * pings the server sends every few seconds), or of the last sync before they broke; 0: never.
   */
  get lastContact(): number {
    const r = this.#watches.routes;
    const i = this.#watches.instances;
    if (this.connected && r !== undefined && i !== undefined) return Math.max(this.#lastContact, Math.min(r.lastContact, i.lastContact));
    return this.#lastContact;
  }

  get savedStateAt(): number {
    return this.#savedStateAt;
  }

  get revisions(): { readonly routes: number; readonly instances: number } {
    return this.#revisions;
  }

  /**
   * Lists both prefixes once (up to `signal`); when the control plane does not answer, loads the saved
   * state instead. Then keeps both current in the background. Resolves with the source used.
   */
  async start(signal: AbortSignal): Promise<Source> {
    const first = AbortSignal.any([signal, this.#life.signal]);
    let listed: [Awaited<ReturnType<Feed['list']>>, Awaited<ReturnType<Feed['list']>>] | undefined;
    try {
      listed = await Promise.all([this.list(ROUTES_PREFIX, first), this.list(CATALOG_INSTANCES_PREFIX, first)]);
    } catch (err) {
      this.#o.log(`control plane unreachable at start (${(err as Error).message}); ${this.#o.stateDir !== undefined ? 'trying the saved state' : 'no state dir: waiting for it'}`);
    }
    if (listed !== undefined) {
      this.#replaceRoutes(listed[0].kvs, listed[0].revision);
      this.#replaceInstances(listed[1].kvs, listed[1].revision);
      this.#lastContact = Date.now();
      this.#source = 'control-plane';
      this.#o.onChange(this.snapshot, { routes: true, instances: true });
      this.#scheduleSave();
    } else if (await this.#load()) {
      this.#source = 'saved-state';
      this.#o.onChange(this.snapshot, { routes: true, instances: true });
    }
    this.#loops = [
      this.#run('routes', ROUTES_PREFIX, listed?.[0].revision),
      this.#run('instances', CATALOG_INSTANCES_PREFIX, listed?.[1].revision),
    ];
    return this.#source;
  }

  /** Stops both watches and writes the state one last time. */
  async close(): Promise<void> {
    this.#life.abort();
    await Promise.allSettled(this.#loops);
    if (this.#saveTimer !== undefined) {
      clearTimeout(this.#saveTimer);
      this.#saveTimer = undefined;
      await this.#save();
    }
    await this.#saving;
  }

  /** One consistent paged list of `prefix` (`ControlPlaneClient.rangeAll`). */
  list(prefix: string, signal: AbortSignal): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.#o.client.rangeAll(prefix, { signal });
  }

  async #run(which: 'routes' | 'instances', prefix: string, listedAt: number | undefined): Promise<void> {
    const life = this.#life.signal;
    const backoff = fullJitterBackoff({ base: 250, cap: 5_000 });
    let revision = listedAt;
    let attempt = 0;
    while (!life.aborted) {
      if (revision === undefined) {
        try {
          const l = await this.list(prefix, life);
          if (which === 'routes') this.#replaceRoutes(l.kvs, l.revision);
          else this.#replaceInstances(l.kvs, l.revision);
          revision = l.revision;
          attempt = 0;
          this.#lastContact = Date.now();
          this.#source = 'control-plane';
          this.#o.onChange(this.snapshot, { routes: which === 'routes', instances: which === 'instances' });
          this.#scheduleSave();
        } catch {
          if (life.aborted) return;
          await sleep(backoff.delay(attempt++, 0), life);
          continue;
        }
      }
      const watch = this.#o.client.watch(prefix, {
        startRevision: revision + 1,
        signal: life,
        backoff: fullJitterBackoff({ base: 250, cap: 5_000 }),
        ...(this.#o.heartbeatTimeout !== undefined ? { heartbeatTimeout: this.#o.heartbeatTimeout } : {}),
      });
      this.#watches[which] = watch;
      let relist = false;
      try {
        for await (const msg of watch) {
          if (msg.type === 'connected') {
            this.#live[which] = true;
            this.#lastContact = Date.now();
          } else if (msg.type === 'events') {
            this.#lastContact = Date.now();
            const changed = which === 'routes' ? this.#applyRoutes(msg.events) : this.#applyInstances(msg.events);
            this.#revisions[which] = Math.max(this.#revisions[which], msg.revision);
            if (changed) {
              this.#o.onChange(this.snapshot, { routes: which === 'routes', instances: which === 'instances' });
              this.#scheduleSave();
            }
          } else if (msg.type === 'disconnected') {
            if (this.#live[which]) this.#lastContact = Math.max(this.#lastContact, watch.lastContact);
            this.#live[which] = false;
          } else {
            relist = true;
          }
        }
      } catch {
        relist = true;
      }
      if (this.#live[which]) this.#lastContact = Date.now();
      this.#live[which] = false;
      if (!relist) return;
      revision = undefined;
    }
  }

  #replaceRoutes(kvs: readonly KeyValue[], revision: number): void {
    const seen = new Set<string>();
    for (const kv of kvs) {
      const name = routeNameOf(kv.key);
      if (name === undefined) continue;
      seen.add(name);
      this.#putRoute(name, kv.value, kv.modRevision ?? revision);
    }
    for (const name of [...this.#routes.keys(), ...this.#invalid.keys()]) {
      if (!seen.has(name)) this.#deleteRoute(name);
    }
    this.#revisions.routes = revision;
  }

  #applyRoutes(events: readonly WatchEvent[]): boolean {
    let changed = false;
    for (const e of events) {
      const name = routeNameOf(e.kv.key);
      if (name === undefined) continue;
      changed = true;
      if (e.type === 'delete') this.#deleteRoute(name);
      else this.#putRoute(name, e.kv.value, e.kv.modRevision);
    }
    return changed;
  }

  #putRoute(name: string, text: string, revision: number): void {
    if (this.#routeText.get(name) === text) return;
    try {
      const route = parseRoute(text, `route ${JSON.stringify(name)}`);
      if (route.name !== name) throw new Error(`the route stored under ${JSON.stringify(name)} is named ${JSON.stringify(route.name)}`);
      this.#routes.set(name, route);
      this.#routeText.set(name, text);
      this.#invalid.delete(name);
    } catch (err) {
      // Keep the last valid version in use (as Envoy keeps its last good config); report this one.
      const error = err instanceof Error ? err.message : String(err);
      this.#invalid.set(name, { name, error, revision });
      this.#o.log(`route ${name}: ignored an invalid definition at revision ${revision}: ${error}`);
    }
  }

  #deleteRoute(name: string): void {
    this.#routes.delete(name);
    this.#routeText.delete(name);
    this.#invalid.delete(name);
  }

  #replaceInstances(kvs: readonly KeyValue[], revision: number): void {
    this.#instances.clear();
    for (const kv of kvs) {
      const inst = parseInstance(kv.value);
      if (inst !== undefined) this.#instances.set(kv.key, inst);
    }
    this.#revisions.instances = revision;
  }

  #applyInstances(events: readonly WatchEvent[]): boolean {
    let changed = false;
    for (const e of events) {
      if (!e.kv.key.startsWith(CATALOG_INSTANCES_PREFIX)) continue;
      if (e.type === 'delete') {
        changed = this.#instances.delete(e.kv.key) || changed;
        continue;
      }
      const inst = parseInstance(e.kv.value);
      if (inst === undefined) continue;
      this.#instances.set(e.kv.key, inst);
      changed = true;
    }
    return changed;
  }

  // ---- saved state -------------------------------------------------------------------------------

  #scheduleSave(): void {
    if (this.#o.stateDir === undefined || this.#saveTimer !== undefined || this.#life.signal.aborted) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      void this.#save();
    }, 100);
    this.#saveTimer.unref();
  }

  #save(): Promise<void> {
    const dir = this.#o.stateDir;
    if (dir === undefined) return Promise.resolve();
    const state: SavedState = {
      format: 1,
      savedAt: Date.now(),
      routes: Object.fromEntries(this.#routeText),
      instances: [...this.#instances.values()],
    };
    // Writes are chained: two saves never race on the temporary file.
    this.#saving = this.#saving.then(async () => {
      try {
        await mkdir(dir, { recursive: true });
        const file = join(dir, STATE_FILE);
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, JSON.stringify(state));
        const fh = await open(tmp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, file);
        this.#savedStateAt = state.savedAt;
      } catch (err) {
        this.#o.log(`could not save the gateway state in ${dir}: ${(err as Error).message}`);
      }
    });
    return this.#saving;
  }

  async #load(): Promise<boolean> {
    const dir = this.#o.stateDir;
    if (dir === undefined) return false;
    let state: SavedState;
    try {
      state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as SavedState;
      if (state.format !== 1 || typeof state.routes !== 'object' || !Array.isArray(state.instances)) throw new Error('unknown format');
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') this.#o.log(`ignored the saved state in ${dir}: ${(err as Error).message}`);
      return false;
    }
    for (const [name, text] of Object.entries(state.routes)) if (typeof text === 'string') this.#putRoute(name, text, 0);
    for (const inst of state.instances) {
      const i = parseInstance(JSON.stringify(inst));
      if (i !== undefined) this.#instances.set(`${CATALOG_INSTANCES_PREFIX}${i.service}/${i.id}`, i);
    }
    this.#savedStateAt = state.savedAt;
    this.#lastContact = state.savedAt;
    this.#o.log(`serving from the saved state of ${new Date(state.savedAt).toISOString()}: ${this.#routes.size} route(s), ${this.#instances.size} instance(s)`);
    return true;
  }
}

function parseInstance(text: string): Instance | undefined {
  try {
    const v = JSON.parse(text) as Instance;
    if (typeof v !== 'object' || v === null || typeof v.id !== 'string' || typeof v.service !== 'string' || typeof v.address !== 'string' || typeof v.port !== 'number') {
      return undefined;
    }
    return { ...v, tags: v.tags ?? [], metadata: v.metadata ?? {}, status: v.status ?? 'passing' };
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
