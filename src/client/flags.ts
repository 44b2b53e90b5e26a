/**
 * `FlagClient`: the streaming flag SDK. It holds every flag and segment of one environment in memory,
 * kept current by the control plane's watch stream, and evaluates locally: no network call per
 * evaluation, no timer on the hot path.
 *
 * Start: a range read of the environment, then a watch from the revision after it (as `discover`).
 * `ready()` resolves after that first sync. Before it, evaluations return the caller's default with
 * reason `NOT_READY` (error code `PROVIDER_NOT_READY`), never a value that might be wrong.
 *
 * Fail static: when the control plane cannot be reached at start, the SDK serves the last state it
 * saved to disk (`cacheFile`), else the `bootstrap` file, and `ready()` resolves with `source` saying
 * which; it keeps trying the control plane and switches to it on the first sync. While the stream is
 * down, the last state keeps serving; `connected` is false and `staleness` counts the milliseconds
 * since the state was last known current.
 *
 * | from        | to          | when                                                           |
 * |-------------|-------------|----------------------------------------------------------------|
 * | starting    | live        | the first list from the control plane is in                    |
 * | starting    | static      | the control plane is unreachable and a saved/bootstrap state loaded |
 * | static      | live        | the control plane answers (the list replaces the static state) |
 * | live        | stale       | the watch stream broke: last state serves, staleness grows     |
 * | stale       | live        | the stream is back (resumed from its revision, or re-listed)   |
 * | any         | closed      | `close()` or the `signal`                                      |
 */
import { readFileSync } from 'node:fs';
import { ClientClosedError, InvalidOptionError, describe } from '../errors/index.js';
import { FlagSet } from '../flags/flag-set.js';
import { fromFlagd } from '../flags/flagd.js';
import { envPrefix } from '../flags/keys.js';
import type { Evaluation, EvaluationContext, Flag, FlagType, JsonValue, Segment, VariantValue } from '../flags/types.js';
import { checkName, validateFlag, validateSegment } from '../flags/validate.js';
import { fullJitterBackoff, type Backoff } from '../resilience/index.js';
import { ControlPlaneClient } from './client.js';
import { DebouncedWrite, saveCacheFile } from './cache-file.js';
import { Listeners, type Disposable } from './listeners.js';
import type { KeyValue } from './types.js';
import { listUntilDone, watchAndRelist, type ListWatch } from './list-watch.js';
import type { Watch } from './watch.js';

/** Where the flags being served came from. */
export type FlagSource = 'none' | 'control-plane' | 'cache-file' | 'bootstrap';

/** The SDK's state (see the table in the module comment). */
export type FlagClientState = 'starting' | 'live' | 'static' | 'stale' | 'closed';

/**
 * A change of the served flags.
 *
 * @example
 * ```ts
 * flags.onChange(({ flags, revision }) => console.log(`changed at ${revision}:`, flags.join(', ')));
 * ```
 */
export interface FlagChange {
  /** Keys of the flags (and `segment:<key>` of the segments) that changed. */
  readonly flags: readonly string[];
  readonly revision: number;
  readonly source: FlagSource;
}

/**
 * Options of {@link FlagClient}.
 *
 * @example
 * ```ts
 * const options: FlagClientOptions = { environment: 'production', cacheFile: '/var/lib/app/flags.json', bootstrap: './flags.bootstrap.json' };
 * ```
 */
export interface FlagClientOptions {
  /** A client to share (its URLs and headers). Default: a new one from `url`. */
  readonly client?: ControlPlaneClient;
  /** Control-plane URL(s) when no `client` is given. Default `$SPOFLESS_URL`, else `http://127.0.0.1:7400`. */
  readonly url?: string | readonly string[];
  /** The environment whose flags to serve. Default `default`. */
  readonly environment?: string;
  /** A file served when the control plane is unreachable at start and no `cacheFile` exists: a flagd document or a saved state. */
  readonly bootstrap?: string;
  /** Where to save the last state (after every change) and read it back when the control plane is unreachable at start. */
  readonly cacheFile?: string;
  /** Waits between attempts of the first list and between reconnections. Default full jitter, base 250 ms, cap 10 s. */
  readonly backoff?: Backoff;
  /** See `WatchOptions.heartbeatTimeout`. */
  readonly heartbeatTimeout?: number;
  /** Called after every change of the served flags. */
  readonly onChange?: (change: FlagChange) => void;
  /** Ends the client (as `close()`). */
  readonly signal?: AbortSignal;
}

/** The saved state file. */
interface Snapshot {
  readonly format: 'spofless-flags/1';
  readonly environment: string;
  readonly revision: number;
  /** `Date.now()` when the state was last known current. */
  readonly savedAt: number;
  readonly flags: readonly Flag[];
  readonly segments: readonly Segment[];
}

const KNOWN = new Set(['client', 'url', 'environment', 'bootstrap', 'cacheFile', 'backoff', 'heartbeatTimeout', 'onChange', 'signal']);
const OWNER = 'FlagClient';
/** Saving the state waits this long after a change so that a burst of changes is one write. */
const SAVE_DELAY_MS = 200;

/**
 * @example
 * ```ts
 * import { FlagClient } from 'spofless/client';
 * const flags = new FlagClient({ environment: 'production', cacheFile: './.flags-cache.json' });
 * await flags.ready();
 * if (flags.boolean('new-checkout', false, { targetingKey: user.id, email: user.email })) renderNewCheckout();
 * ```
 */
export class FlagClient {
  readonly environment: string;
  readonly #client: ControlPlaneClient;
  readonly #ownsClient: boolean;
  readonly #set = new FlagSet();
  readonly #prefix: string;
  readonly #backoff: Backoff;
  readonly #heartbeat: number | undefined;
  /** The bootstrap file's flags, read (and checked) by the constructor. */
  readonly #bootstrap: { flags: Flag[]; segments: Segment[] } | undefined;
  readonly #cacheFile: string | undefined;
  readonly #life = new AbortController();
  readonly #changes = new Listeners<FlagChange>();
  readonly #states = new Listeners<FlagClientState>();
  #state: FlagClientState = 'starting';
  #source: FlagSource = 'none';
  #revision = 0;
  #lastContact = 0;
  #watch: Watch | undefined;
  readonly #saver = new DebouncedWrite(SAVE_DELAY_MS, () => this.#save());
  #readyResolve!: () => void;
  readonly #ready: Promise<void>;
  readonly #loop: Promise<void>;

  constructor(options: FlagClientOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(OWNER, 'options', options, 'an object');
    for (const k of Object.keys(options)) if (!KNOWN.has(k)) throw new InvalidOptionError(OWNER, k, (options as Record<string, unknown>)[k], `not an option (known: ${[...KNOWN].join(', ')})`);
    const env = options.environment ?? 'default';
    try {
      checkName('environment', env);
    } catch {
      throw new InvalidOptionError(OWNER, 'environment', env, 'an environment name (letters, digits, _ . -)');
    }
    for (const f of ['bootstrap', 'cacheFile'] as const) {
      const v = options[f];
      if (v !== undefined && (typeof v !== 'string' || v.length === 0)) throw new InvalidOptionError(OWNER, f, v, 'a file path');
    }
    if (options.client !== undefined && options.url !== undefined) throw new InvalidOptionError(OWNER, 'url', options.url, 'absent when a client is given');
    this.environment = env;
    this.#prefix = envPrefix(env);
    this.#ownsClient = options.client === undefined;
    this.#client = options.client ?? new ControlPlaneClient(options.url === undefined ? {} : { url: options.url });
    this.#backoff = options.backoff ?? fullJitterBackoff({ base: 250, cap: 10_000 });
    this.#heartbeat = options.heartbeatTimeout;
    this.#bootstrap = options.bootstrap === undefined ? undefined : readBootstrap(options.bootstrap, env);
    this.#cacheFile = options.cacheFile;
    if (options.onChange !== undefined) this.#changes.subscribe(options.onChange);
    this.#ready = new Promise((resolve) => (this.#readyResolve = resolve));
    const signal = options.signal;
    if (signal !== undefined) {
      if (signal.aborted) this.#life.abort(signal.reason);
      else signal.addEventListener('abort', () => this.close(), { once: true });
    }
    // The loop never rejects: every failure inside it is a state (stale, static), not an exception.
    this.#loop = this.#run().catch(() => undefined);
  }

  /**
   * Resolves once flags can be served: after the first sync with the control plane, or, when it cannot
   * be reached at start, once the saved state or the bootstrap file is loaded (`source` says which).
   * Rejects with `ClientClosedError` when the client is closed first; with `signal`, when it aborts.
   */
  ready(options: { signal?: AbortSignal } = {}): Promise<void> {
    const waits: Promise<void>[] = [this.#ready];
    const closed = new Promise<void>((_, reject) => {
      const onClose = (): void => reject(new ClientClosedError('the flag client was closed before it was ready'));
      if (this.#life.signal.aborted) onClose();
      else this.#life.signal.addEventListener('abort', onClose, { once: true });
    });
    closed.catch(() => undefined);
    waits.push(closed);
    if (options.signal !== undefined) {
      const s = options.signal;
      waits.push(
        new Promise((_, reject) => {
          const reason = (): Error => (s.reason instanceof Error ? s.reason : new Error(String(s.reason)));
          if (s.aborted) reject(reason());
          else s.addEventListener('abort', () => reject(reason()), { once: true });
        }),
      );
    }
    return Promise.race(waits);
  }

  get state(): FlagClientState {
    return this.#state;
  }

  /** Where the served flags came from. */
  get source(): FlagSource {
    return this.#source;
  }

  /** True while the watch stream is open: the flags are current. */
  get connected(): boolean {
    return this.#state === 'live';
  }

  /** The store revision the flags reflect (0 before any state). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Milliseconds since the flags were last known current: 0 while connected; since the saved state was
   * written when serving it; `Infinity` when serving the bootstrap file or nothing.
   */
  get staleness(): number {
    if (this.#state === 'live') return 0;
    return this.#lastContact === 0 ? Number.POSITIVE_INFINITY : Math.max(0, Date.now() - this.#lastContact);
  }

  /** The flags served now, sorted by key. */
  flags(): Flag[] {
    return this.#set.flags();
  }

  /** Called after each change of the served flags. */
  onChange(listener: (change: FlagChange) => void): Disposable {
    return this.#changes.subscribe(listener);
  }

  /**
   * Evaluates a flag with every detail (value, variant, reason, error code). `expected` refuses a flag of
   * another type (`TYPE_MISMATCH`). Never throws.
   */
  evaluate<T>(key: string, defaultValue: T, context?: EvaluationContext, expected?: FlagType): Evaluation<T> {
    if (this.#source === 'none') {
      return { key, value: defaultValue, reason: 'NOT_READY', errorCode: 'PROVIDER_NOT_READY', errorMessage: 'the flag client has not synced yet: await ready()' };
    }
    return this.#set.evaluate(key, defaultValue, context, expected);
  }

  boolean(key: string, defaultValue: boolean, context?: EvaluationContext): boolean {
    return this.evaluate(key, defaultValue, context, 'boolean').value;
  }

  string(key: string, defaultValue: string, context?: EvaluationContext): string {
    return this.evaluate(key, defaultValue, context, 'string').value;
  }

  number(key: string, defaultValue: number, context?: EvaluationContext): number {
    return this.evaluate(key, defaultValue, context, 'number').value;
  }

  object<T extends JsonValue = JsonValue>(key: string, defaultValue: T, context?: EvaluationContext): T {
    return this.evaluate(key, defaultValue, context, 'object').value;
  }

  /** Stops following the control plane (the served flags stay readable) and saves the state once more. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    this.#life.abort(new ClientClosedError('the flag client was closed'));
    this.#watch?.close();
    this.#saver.flush();
    if (this.#ownsClient) this.#client.close();
  }

  /** Resolves when the background loop has ended (after `close()`). */
  async closed(): Promise<void> {
    await this.#loop;
  }

  /** Called on every state change (`live`, `stale`, `static`, `closed`). */
  onStateChange(listener: (state: FlagClientState) => void): Disposable {
    return this.#states.subscribe(listener);
  }

  // ---- internals -------------------------------------------------------------------------------------

  #setState(state: FlagClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#states.emit(state);
  }

  async #run(): Promise<void> {
    let first = true;
    const lw: ListWatch<{ kvs: KeyValue[]; revision: number }> = {
      life: this.#life.signal,
      backoff: this.#backoff,
      list: (signal) => this.#list(signal),
      onList: (list) => this.#replace(list.kvs, list.revision, 'control-plane'),
      // The first list: until the control plane answers, serve a saved or bootstrap state if there is one.
      onListError: () => {
        if (first) {
          first = false;
          this.#loadStatic();
        }
      },
      heartbeatTimeout: this.#heartbeat,
      revision: () => this.#revision,
      openWatch: (options) => (this.#watch = this.#client.watch(this.#prefix, options)),
      onMessage: (msg, watch) => {
        switch (msg.type) {
          case 'connected':
            if (this.#state !== 'closed') this.#setState('live');
            this.#lastContact = Date.now();
            break;
          case 'events':
            this.#lastContact = Date.now();
            this.#apply(msg.events.map((e) => ({ key: e.kv.key, value: e.type === 'delete' ? undefined : e.kv.value })), msg.revision);
            break;
          case 'disconnected':
            if (this.#state === 'live') {
              this.#setState('stale');
              this.#lastContact = Math.max(this.#lastContact, watch.lastContact);
            }
            break;
        }
      },
      onWatchEnd: () => {
        if (this.#state === 'live') {
          this.#setState('stale');
          this.#lastContact = Date.now();
        }
      },
    };
    if (!(await listUntilDone(lw))) return;
    first = false;
    await watchAndRelist(lw);
  }

  /** Every key of the environment, one consistent list (`rangeAll`). */
  #list(signal: AbortSignal): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.#client.rangeAll(this.#prefix, { signal });
  }

  #replace(kvs: readonly KeyValue[], revision: number, source: FlagSource): void {
    const before = new Map(this.#set.flags().map((f) => [f.key, JSON.stringify(f)]));
    this.#set.clear();
    for (const kv of kvs) this.#set.applyKey(this.environment, kv.key, kv.value);
    this.#revision = revision;
    this.#lastContact = Date.now();
    const wasServing = this.#source !== 'none';
    this.#source = source;
    if (this.#state !== 'closed') this.#setState('live');
    const changed = new Set<string>();
    for (const f of this.#set.flags()) if (before.get(f.key) !== JSON.stringify(f)) changed.add(f.key);
    for (const k of before.keys()) if (this.#set.flag(k) === undefined) changed.add(k);
    this.#readyResolve();
    if (wasServing && changed.size > 0) this.#changes.emit({ flags: [...changed], revision, source });
    this.#scheduleSave();
  }

  #apply(events: readonly { key: string; value: string | undefined }[], revision: number): void {
    const changed: string[] = [];
    for (const e of events) {
      const what = this.#set.applyKey(this.environment, e.key, e.value);
      if (what !== undefined) changed.push(what.kind === 'flag' ? what.name : `segment:${what.name}`);
    }
    if (revision > this.#revision) this.#revision = revision;
    if (changed.length === 0) return;
    this.#changes.emit({ flags: changed, revision: this.#revision, source: this.#source });
    this.#scheduleSave();
  }

  /** Loads the saved state, else the bootstrap file. Returns true when one served. */
  #loadStatic(): boolean {
    if (this.#cacheFile !== undefined) {
      const snap = readSnapshot(this.#cacheFile, this.environment);
      if (snap !== undefined) {
        this.#serveStatic(snap.flags, snap.segments, snap.revision, 'cache-file');
        this.#lastContact = snap.savedAt;
        return true;
      }
    }
    if (this.#bootstrap !== undefined) {
      this.#serveStatic(this.#bootstrap.flags, this.#bootstrap.segments, 0, 'bootstrap');
      this.#lastContact = 0;
      return true;
    }
    return false;
  }

  #serveStatic(flags: readonly Flag[], segments: readonly Segment[], revision: number, source: FlagSource): void {
    this.#set.clear();
    for (const s of segments) this.#set.setSegment(s);
    for (const f of flags) this.#set.setFlag(f);
    this.#revision = revision;
    this.#source = source;
    if (this.#state === 'starting') this.#setState('static');
    this.#readyResolve();
  }

  #scheduleSave(): void {
    if (this.#cacheFile === undefined || this.#source !== 'control-plane') return;
    this.#saver.schedule();
  }

  #save(): void {
    const file = this.#cacheFile;
    if (file === undefined || this.#source !== 'control-plane') return;
    const snap: Snapshot = {
      format: 'spofless-flags/1',
      environment: this.environment,
      revision: this.#revision,
      savedAt: this.#state === 'live' ? Date.now() : this.#lastContact,
      flags: this.#set.flags(),
      segments: this.#set.segments(),
    };
    saveCacheFile(file, snap);
  }
}

function readSnapshot(file: string, env: string): Snapshot | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  const s = raw as Partial<Snapshot>;
  if (s.format !== 'spofless-flags/1' || s.environment !== env || !Array.isArray(s.flags) || !Array.isArray(s.segments)) return undefined;
  try {
    return {
      format: s.format,
      environment: env,
      revision: Number(s.revision ?? 0),
      savedAt: Number(s.savedAt ?? 0),
      segments: s.segments.map((x) => validateSegment(x)),
      flags: s.flags.map((x) => validateFlag(x)),
    };
  } catch {
    return undefined;
  }
}

/** A bootstrap file: a saved state (any environment's) or a flagd document. Throws `InvalidOptionError` when it cannot be read or is invalid. */
function readBootstrap(file: string, env: string): { flags: Flag[]; segments: Segment[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidOptionError(OWNER, 'bootstrap', file, `a readable file (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidOptionError(OWNER, 'bootstrap', file, `a JSON file (${(err as Error).message})`);
  }
  const snap = raw as Partial<Snapshot>;
  if (snap.format === 'spofless-flags/1') {
    const s = readSnapshot(file, snap.environment ?? env);
    if (s === undefined) throw new InvalidOptionError(OWNER, 'bootstrap', file, 'a valid saved flag state');
    return { flags: [...s.flags], segments: [...s.segments] };
  }
  try {
    return fromFlagd(raw);
  } catch (err) {
    throw new InvalidOptionError(OWNER, 'bootstrap', file, `a flagd document or a saved flag state (${describe((err as Error).message)})`);
  }
}

/** The value types, for callers that pick an accessor dynamically. */
export type { VariantValue };
