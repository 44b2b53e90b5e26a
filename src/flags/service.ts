/**
 * `FlagService`: flags, segments and their audit log on a `Store`. Every change is one transaction
 * that compares the key's `modRevision` with the one the writer read (or named in `If-Match`), writes
 * the new value and appends an audit record (who, when, before, after), so two concurrent edits can
 * never lose one another and the log never misses or invents a change.
 */
import { randomBytes } from 'node:crypto';
import { FlagConflictError, FlagNotFoundError, FlagValidationError, InvalidArgumentError, SegmentInUseError, describe } from '../errors/index.js';
import type { Compare, KeyValue, Store, TxnOp } from '../store/index.js';
import { fromFlagd, toFlagd, type FlagdDocument } from './flagd.js';
import { auditKey, auditPrefix, flagKey, flagsPrefix, segmentKey, segmentsPrefix } from './keys.js';
import type { Flag, Segment } from './types.js';
import { checkName, segmentsOf, validateFlag, validateSegment } from './validate.js';

/** What kind of change an audit record describes. */
export type AuditAction = 'create' | 'update' | 'delete' | 'enable' | 'disable' | 'rollout' | 'import';

/**
 * One entry of the audit log.
 *
 * @example
 * ```ts
 * const [last] = await flags.history('production', { key: 'new-checkout', limit: 1 });
 * console.log(last.actor, last.at, last.action, last.before?.enabled, '->', last.after?.enabled);
 * ```
 */
export interface AuditRecord {
  readonly kind: 'flag' | 'segment';
  readonly key: string;
  readonly action: AuditAction;
  readonly actor: string;
  /** ISO 8601 time of the change. */
  readonly at: string;
  /** The store revision of the change. */
  readonly revision: number;
  readonly before: Flag | Segment | null;
  readonly after: Flag | Segment | null;
}

/** A flag with the revision it was read at (its `modRevision`: pass it back as `ifMatch`). */
export interface StoredFlag {
  readonly flag: Flag;
  readonly revision: number;
}
export interface StoredSegment {
  readonly segment: Segment;
  readonly revision: number;
}

/** Options of a write. */
export interface WriteOptions {
  /** Who makes the change (recorded in the audit log). */
  readonly actor: string;
  /** Write only if the flag is at this revision (`If-Match`); 0: only if it does not exist. */
  readonly ifMatch?: number;
  readonly signal?: AbortSignal;
}

/** Attempts of a read-modify-write without `ifMatch` (on/off/rollout) before giving up with a conflict. */
const PATCH_ATTEMPTS = 8;
/** Items per import transaction: compare + put + audit record each, under the store's 128 operations. */
const IMPORT_BATCH = 60;

function parseJson<T>(kv: KeyValue | undefined): T | null {
  if (kv === undefined) return null;
  try {
    return JSON.parse(new TextDecoder().decode(kv.value)) as T;
  } catch {
    return null;
  }
}

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

function checkActor(actor: unknown): string {
  if (typeof actor !== 'string' || actor.length === 0 || actor.length > 256) throw new InvalidArgumentError(`actor must be a name of 1-256 characters; got ${describe(actor)}`);
  return actor;
}

/**
 * Flags of every environment, on a store.
 *
 * @example
 * ```ts
 * const flags = new FlagService(store);
 * await flags.putFlag('production', { key: 'new-checkout', type: 'boolean', enabled: true,
 *   variants: { on: true, off: false }, defaultVariant: 'off' }, { actor: 'alice' });
 * await flags.setRollout('production', 'new-checkout', 10, { actor: 'alice' });
 * await flags.setEnabled('production', 'new-checkout', false, { actor: 'bob' }); // kill switch
 * ```
 */
export class FlagService {
  readonly #store: Store;
  readonly #now: () => number;

  constructor(store: Store, options: { now?: () => number } = {}) {
    this.#store = store;
    this.#now = options.now ?? Date.now;
  }

  /** Every flag and segment of an environment, at one revision. */
  async list(env: string, signal?: AbortSignal): Promise<{ flags: StoredFlag[]; segments: StoredSegment[]; revision: number }> {
    checkName('environment', env);
    const flags = await this.#store.range(flagsPrefix(env), signal ? { signal } : {});
    // All at one revision (0: an empty store, nothing to pin).
    const segments = await this.#store.range(segmentsPrefix(env), { ...(flags.revision > 0 ? { revision: flags.revision } : {}), ...(signal ? { signal } : {}) });
    return {
      flags: flags.kvs.flatMap((kv) => {
        const f = parseJson<Flag>(kv);
        return f === null ? [] : [{ flag: f, revision: kv.modRevision }];
      }),
      segments: segments.kvs.flatMap((kv) => {
        const s = parseJson<Segment>(kv);
        return s === null ? [] : [{ segment: s, revision: kv.modRevision }];
      }),
      revision: flags.revision,
    };
  }

  async getFlag(env: string, key: string, signal?: AbortSignal): Promise<StoredFlag> {
    checkName('environment', env);
    checkName('flag', key);
    const kv = await this.#store.get(flagKey(env, key), signal ? { signal } : {});
    const flag = parseJson<Flag>(kv);
    if (kv === undefined || flag === null) throw new FlagNotFoundError(env, key);
    return { flag, revision: kv.modRevision };
  }

  async getSegment(env: string, key: string, signal?: AbortSignal): Promise<StoredSegment> {
    checkName('environment', env);
    checkName('segment', key);
    const kv = await this.#store.get(segmentKey(env, key), signal ? { signal } : {});
    const segment = parseJson<Segment>(kv);
    if (kv === undefined || segment === null) throw new FlagNotFoundError(env, key, 'segment');
    return { segment, revision: kv.modRevision };
  }

  /** Creates or replaces a flag. `key` (when given) must equal the body's key. */
  async putFlag(env: string, input: unknown, options: WriteOptions, key?: string): Promise<StoredFlag & { created: boolean }> {
    checkName('environment', env);
    const actor = checkActor(options.actor);
    const signal = options.signal;
    const segs = await this.#store.range(segmentsPrefix(env), { keysOnly: true, ...(signal ? { signal } : {}) });
    const names = new Set(segs.kvs.map((kv) => text(kv.key).slice(segmentsPrefix(env).length)));
    const flag = validateFlag(input, { segmentExists: (s) => names.has(s) });
    if (key !== undefined && flag.key !== key) throw new FlagValidationError('key', `is ${describe(flag.key)} but the path names flag ${describe(key)}`);
    const k = flagKey(env, flag.key);
    const current = await this.#store.get(k, signal ? { signal } : {});
    const revision = current?.modRevision ?? 0;
    if (options.ifMatch !== undefined && options.ifMatch !== revision) throw new FlagConflictError(flag.key, options.ifMatch, revision);
    const before = parseJson<Flag>(current);
    const extra: Compare[] = segmentsOf(flag).map((s) => ({ key: segmentKey(env, s), target: 'version', cmp: '>', value: 0 }));
    const result = await this.#write(env, k, revision, flag, before, before === null ? 'create' : 'update', 'flag', actor, extra, signal);
    return { flag, revision: result, created: before === null };
  }

  /** Deletes a flag. */
  async deleteFlag(env: string, key: string, options: WriteOptions): Promise<{ revision: number }> {
    const actor = checkActor(options.actor);
    const { flag, revision } = await this.getFlag(env, key, options.signal);
    if (options.ifMatch !== undefined && options.ifMatch !== revision) throw new FlagConflictError(key, options.ifMatch, revision);
    const rev = await this.#write(env, flagKey(env, key), revision, null, flag, 'delete', 'flag', actor, [], options.signal);
    return { revision: rev };
  }

  /** Turns a flag on, or off (the kill switch: `offVariant` everywhere). */
  setEnabled(env: string, key: string, enabled: boolean, options: WriteOptions): Promise<StoredFlag> {
    return this.#patch(env, key, options, enabled ? 'enable' : 'disable', (f) => ({ ...f, enabled }));
  }

  /**
   * Sets the fallthrough to a rollout: `percent` of contexts get `variant` (default: a boolean flag's
   * `true` variant), the rest the flag's off variant. Buckets keep their place, so widening 10 → 50
   * keeps the first 10% in.
   */
  setRollout(env: string, key: string, percent: number, options: WriteOptions & { variant?: string }): Promise<StoredFlag> {
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw new FlagValidationError('percent', `must be a percentage from 0 to 100; got ${describe(percent)}`);
    }
    return this.#patch(env, key, options, 'rollout', (f) => {
      const on = options.variant ?? Object.keys(f.variants).find((v) => f.variants[v] === true);
      if (on === undefined) throw new FlagValidationError('variant', `flag ${describe(key)} is not boolean: name the variant to roll out`);
      if (!Object.hasOwn(f.variants, on)) throw new FlagValidationError('variant', `flag ${describe(key)} has no variant ${describe(on)} (variants: ${Object.keys(f.variants).join(', ')})`);
      const rest = f.offVariant ?? f.defaultVariant;
      const other = rest !== on ? rest : Object.keys(f.variants).find((v) => v !== on);
      if (other === undefined) throw new FlagValidationError('variant', `flag ${describe(key)} has a single variant: nothing to roll out against`);
      const p = Math.round(percent * 100) / 100;
      const splits = p >= 100 ? [{ variant: on, weight: 100 }] : p <= 0 ? [{ variant: other, weight: 100 }] : [{ variant: on, weight: p }, { variant: other, weight: Math.round((100 - p) * 100) / 100 }];
      // Keep the "on" share first so buckets stay put as it widens.
      return { ...f, rollout: { ...(f.rollout?.bucketBy ? { bucketBy: f.rollout.bucketBy } : {}), splits } };
    });
  }

  async putSegment(env: string, input: unknown, options: WriteOptions, key?: string): Promise<StoredSegment & { created: boolean }> {
    checkName('environment', env);
    const actor = checkActor(options.actor);
    const segment = validateSegment(input);
    if (key !== undefined && segment.key !== key) throw new FlagValidationError('key', `is ${describe(segment.key)} but the path names segment ${describe(key)}`);
    const k = segmentKey(env, segment.key);
    const current = await this.#store.get(k, options.signal ? { signal: options.signal } : {});
    const revision = current?.modRevision ?? 0;
    if (options.ifMatch !== undefined && options.ifMatch !== revision) throw new FlagConflictError(segment.key, options.ifMatch, revision);
    const before = parseJson<Segment>(current);
    const rev = await this.#write(env, k, revision, segment, before, before === null ? 'create' : 'update', 'segment', actor, [], options.signal);
    return { segment, revision: rev, created: before === null };
  }

  /** Deletes a segment; refused (`SegmentInUseError`) while a flag's rules refer to it. */
  async deleteSegment(env: string, key: string, options: WriteOptions): Promise<{ revision: number }> {
    const actor = checkActor(options.actor);
    const { segment, revision } = await this.getSegment(env, key, options.signal);
    if (options.ifMatch !== undefined && options.ifMatch !== revision) throw new FlagConflictError(key, options.ifMatch, revision);
    const { flags } = await this.list(env, options.signal);
    const users = flags.filter((f) => segmentsOf(f.flag).includes(key)).map((f) => f.flag.key);
    if (users.length > 0) throw new SegmentInUseError(key, users);
    const rev = await this.#write(env, segmentKey(env, key), revision, null, segment, 'delete', 'segment', actor, [], options.signal);
    return { revision: rev };
  }

  /** The audit log, newest first; `key` keeps one flag's (or segment's) records. */
  async history(env: string, options: { key?: string; limit?: number; signal?: AbortSignal } = {}): Promise<AuditRecord[]> {
    checkName('environment', env);
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new InvalidArgumentError(`limit must be an integer from 1 to 10000; got ${describe(limit)}`);
    const { kvs } = await this.#store.range(auditPrefix(env), options.signal ? { signal: options.signal } : {});
    // Keys are ordered by the writer's clock; the revision is the true order (replicas' clocks may differ).
    const matching = kvs.filter((kv) => options.key === undefined || text(kv.value).includes(`"key":${JSON.stringify(options.key)}`));
    matching.sort((a, b) => b.modRevision - a.modRevision);
    const out: AuditRecord[] = [];
    for (const kv of matching) {
      if (out.length >= limit) break;
      const r = parseJson<Omit<AuditRecord, 'revision'>>(kv);
      if (r === null || (options.key !== undefined && r.key !== options.key)) continue;
      out.push({ ...r, revision: kv.modRevision });
    }
    return out;
  }

  /** The environment as one flagd document. */
  async exportFlagd(env: string, signal?: AbortSignal): Promise<FlagdDocument> {
    const { flags, segments } = await this.list(env, signal);
    return toFlagd(
      flags.map((f) => f.flag),
      segments.map((s) => s.segment),
    );
  }

  /**
   * Imports a flagd document: every flag and segment in it is created or replaced (with an audit
   * record each); with `prune`, flags of the environment absent from it are deleted. Everything is
   * validated before anything is written. Up to 60 items go in one transaction (atomic); a larger
   * import is written in several.
   */
  async importFlagd(env: string, doc: unknown, options: WriteOptions & { prune?: boolean }): Promise<{ created: string[]; updated: string[]; unchanged: string[]; deleted: string[]; revision: number }> {
    checkName('environment', env);
    const actor = checkActor(options.actor);
    const { flags, segments } = fromFlagd(doc);
    const current = await this.list(env, options.signal);
    const curFlags = new Map(current.flags.map((f) => [f.flag.key, f]));
    const curSegs = new Map(current.segments.map((s) => [s.segment.key, s]));
    type Item = { key: string; storeKey: string; revision: number; after: Flag | Segment | null; before: Flag | Segment | null; kind: 'flag' | 'segment' };
    const items: Item[] = [];
    const created: string[] = [];
    const updated: string[] = [];
    const unchanged: string[] = [];
    const deleted: string[] = [];
    for (const s of segments) {
      const cur = curSegs.get(s.key);
      if (cur !== undefined && JSON.stringify(cur.segment) === JSON.stringify(s)) continue;
      items.push({ key: s.key, storeKey: segmentKey(env, s.key), revision: cur?.revision ?? 0, after: s, before: cur?.segment ?? null, kind: 'segment' });
    }
    for (const f of flags) {
      const cur = curFlags.get(f.key);
      if (cur !== undefined && JSON.stringify(cur.flag) === JSON.stringify(f)) {
        unchanged.push(f.key);
        continue;
      }
      (cur === undefined ? created : updated).push(f.key);
      items.push({ key: f.key, storeKey: flagKey(env, f.key), revision: cur?.revision ?? 0, after: f, before: cur?.flag ?? null, kind: 'flag' });
    }
    if (options.prune === true) {
      const keep = new Set(flags.map((f) => f.key));
      for (const [k, cur] of curFlags) {
        if (keep.has(k)) continue;
        deleted.push(k);
        items.push({ key: k, storeKey: flagKey(env, k), revision: cur.revision, after: null, before: cur.flag, kind: 'flag' });
      }
    }
    let revision = current.revision;
    for (let i = 0; i < items.length; i += IMPORT_BATCH) {
      const batch = items.slice(i, i + IMPORT_BATCH);
      const at = this.#now();
      const compare: Compare[] = batch.map((it) => ({ key: it.storeKey, target: 'modRevision', cmp: '=', value: it.revision }));
      const success: TxnOp[] = batch.flatMap((it): TxnOp[] => [
        it.after === null ? { type: 'delete', key: it.storeKey } : { type: 'put', key: it.storeKey, value: JSON.stringify(it.after) },
        { type: 'put', key: auditKey(env, at, randomBytes(6).toString('hex')), value: JSON.stringify(this.#record(it.kind, it.key, 'import', actor, at, it.before, it.after)) },
      ]);
      const res = await this.#store.txn({ compare, success }, options.signal ? { signal: options.signal } : {});
      if (!res.succeeded) {
        const first = batch[0]!;
        const now = await this.#store.get(first.storeKey);
        throw new FlagConflictError(i === 0 ? first.key : `${first.key} (after ${i} items were imported)`, first.revision, now?.modRevision ?? 0);
      }
      revision = res.revision;
    }
    return { created, updated, unchanged, deleted, revision };
  }

  // ---- internals -----------------------------------------------------------------------------------

  #record(kind: 'flag' | 'segment', key: string, action: AuditAction, actor: string, at: number, before: unknown, after: unknown): Omit<AuditRecord, 'revision'> {
    return { kind, key, action, actor, at: new Date(at).toISOString(), before: (before ?? null) as Flag | null, after: (after ?? null) as Flag | null };
  }

  /** One guarded write and its audit record. Returns the revision; throws a conflict when the guard fails. */
  async #write(
    env: string,
    k: string,
    expected: number,
    after: Flag | Segment | null,
    before: Flag | Segment | null,
    action: AuditAction,
    kind: 'flag' | 'segment',
    actor: string,
    extra: Compare[],
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const at = this.#now();
    const key = (after ?? before)!.key;
    const res = await this.#store.txn(
      {
        compare: [{ key: k, target: 'modRevision', cmp: '=', value: expected }, ...extra],
        success: [
          after === null ? { type: 'delete', key: k } : { type: 'put', key: k, value: JSON.stringify(after) },
          { type: 'put', key: auditKey(env, at, randomBytes(6).toString('hex')), value: JSON.stringify(this.#record(kind, key, action, actor, at, before, after)) },
        ],
      },
      signal ? { signal } : {},
    );
    if (res.succeeded) return res.revision;
    const now = await this.#store.get(k);
    if ((now?.modRevision ?? 0) !== expected) throw new FlagConflictError(key, expected, now?.modRevision ?? 0);
    // The key is as expected: a segment the flag refers to was deleted meanwhile.
    throw new FlagValidationError('rules', 'a segment the rules refer to was deleted meanwhile');
  }

  /** Read-modify-write of one flag; without `ifMatch` it retries when another writer got there first. */
  async #patch(env: string, key: string, options: WriteOptions, action: AuditAction, change: (f: Flag) => Flag): Promise<StoredFlag> {
    const actor = checkActor(options.actor);
    for (let attempt = 1; ; attempt++) {
      const { flag, revision } = await this.getFlag(env, key, options.signal);
      if (options.ifMatch !== undefined && options.ifMatch !== revision) throw new FlagConflictError(key, options.ifMatch, revision);
      const next = validateFlag(change(flag));
      try {
        const rev = await this.#write(env, flagKey(env, key), revision, next, flag, action, 'flag', actor, [], options.signal);
        return { flag: next, revision: rev };
      } catch (err) {
        if (!(err instanceof FlagConflictError) || options.ifMatch !== undefined || attempt >= PATCH_ATTEMPTS) throw err;
      }
    }
  }
}
