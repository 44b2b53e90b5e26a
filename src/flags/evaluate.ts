/**
 * The evaluator. A flag is compiled once (when it arrives) into closures over pre-parsed operands:
 * sets for `in`, compiled regular expressions, parsed versions and dates, cumulative split bounds. An
 * evaluation then walks the rules and returns one of a few result objects built at compile time, so
 * the hot path allocates nothing (the rollout's hash key string aside).
 */
import type semver from 'semver';
import { murmur3 } from './murmur3.js';
import type { Condition, EvaluationContext, Flag, Operator, Reason, Rollout, Segment, VariantValue } from './types.js';
import { MAX_REGEX_INPUT, parseDate, parseSemver, weightUnits } from './validate.js';

/** A compiled test of a context. */
export type Matcher = (ctx: EvaluationContext) => boolean;

/** Segments by key, compiled; shared by every flag of an environment so a segment edit reaches all of them. */
export type SegmentTable = ReadonlyMap<string, Matcher>;

/** A resolution: the variant and why (`variant` undefined: no variant, the caller's default applies). */
export interface Resolution {
  readonly key: string;
  readonly value: VariantValue;
  readonly variant: string;
  readonly reason: Reason;
  readonly metadata?: Readonly<Record<string, string | number | boolean>>;
}

/** A flag ready to evaluate. */
export interface CompiledFlag {
  readonly flag: Flag;
  /** Evaluates against `ctx`; segments are looked up in the table given at compile time. */
  evaluate(ctx: EvaluationContext): Resolution;
}

/** 2^32, for turning a 32-bit hash into a bucket. */
const TWO_32 = 4294967296;
/** Buckets per rollout: weights are in hundredths of a percent. */
const BUCKETS = 10_000;

/** Reads an attribute, or a dotted path (`user.plan`), from the context. */
function getter(attribute: string): (ctx: EvaluationContext) => unknown {
  if (!attribute.includes('.')) return (ctx) => ctx[attribute];
  const parts = attribute.split('.');
  return (ctx) => {
    // A flat attribute literally named "user.plan" wins over the path (flagd reads paths only; both is friendlier).
    const flat = ctx[attribute];
    if (flat !== undefined) return flat;
    let v: unknown = ctx;
    for (const p of parts) {
      if (typeof v !== 'object' || v === null) return undefined;
      v = (v as Record<string, unknown>)[p];
    }
    return v;
  };
}

/** Parsed versions of context values: app versions are few and repeat, parsing is the costly part. */
const semverCache = new Map<string, semver.SemVer | null>();
function cachedSemver(v: unknown): semver.SemVer | undefined {
  if (typeof v !== 'string') return undefined;
  let parsed = semverCache.get(v);
  if (parsed === undefined) {
    if (semverCache.size >= 10_000) semverCache.clear();
    parsed = parseSemver(v) ?? null;
    semverCache.set(v, parsed);
  }
  return parsed ?? undefined;
}

function compareVersions(a: semver.SemVer, b: semver.SemVer): number {
  return a.compare(b);
}

function attributeMatcher(attribute: string, op: Operator, value: unknown): Matcher {
  const get = getter(attribute);
  switch (op) {
    case 'equals':
      return (ctx) => {
        const v = get(ctx);
        return v !== undefined && v !== null && v === value;
      };
    case 'not_equals':
      return (ctx) => {
        const v = get(ctx);
        return v !== undefined && v !== null && v !== value;
      };
    case 'in': {
      const set = new Set(value as unknown[]);
      return (ctx) => set.has(get(ctx));
    }
    case 'not_in': {
      const set = new Set(value as unknown[]);
      return (ctx) => {
        const v = get(ctx);
        return v !== undefined && v !== null && !set.has(v);
      };
    }
    case 'starts_with': {
      const s = value as string;
      return (ctx) => {
        const v = get(ctx);
        return typeof v === 'string' && v.startsWith(s);
      };
    }
    case 'ends_with': {
      const s = value as string;
      return (ctx) => {
        const v = get(ctx);
        return typeof v === 'string' && v.endsWith(s);
      };
    }
    case 'matches': {
      const re = new RegExp(value as string, 'u');
      return (ctx) => {
        const v = get(ctx);
        return typeof v === 'string' && v.length <= MAX_REGEX_INPUT && re.test(v);
      };
    }
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      const n = value as number;
      const test = op === 'lt' ? (x: number) => x < n : op === 'lte' ? (x: number) => x <= n : op === 'gt' ? (x: number) => x > n : (x: number) => x >= n;
      return (ctx) => {
        const v = get(ctx);
        return typeof v === 'number' && test(v);
      };
    }
    case 'semver_eq':
    case 'semver_lt':
    case 'semver_lte':
    case 'semver_gt':
    case 'semver_gte': {
      const target = parseSemver(value)!;
      const test =
        op === 'semver_eq'
          ? (c: number) => c === 0
          : op === 'semver_lt'
            ? (c: number) => c < 0
            : op === 'semver_lte'
              ? (c: number) => c <= 0
              : op === 'semver_gt'
                ? (c: number) => c > 0
                : (c: number) => c >= 0;
      return (ctx) => {
        const v = cachedSemver(get(ctx));
        return v !== undefined && test(compareVersions(v, target));
      };
    }
    case 'before':
    case 'after': {
      const t = parseDate(value)!;
      const before = op === 'before';
      return (ctx) => {
        const v = get(ctx);
        const at = v instanceof Date ? v.getTime() : parseDate(v);
        if (at === undefined || Number.isNaN(at)) return false;
        return before ? at < t : at > t;
      };
    }
  }
}

/** Compiles one condition. Segment conditions look the segment up at evaluation time (missing: false). */
export function compileCondition(c: Condition, segments: SegmentTable): Matcher {
  if ('segment' in c) {
    const name = c.segment;
    const negate = c.negate === true;
    return (ctx) => {
      const m = segments.get(name);
      if (m === undefined) return false;
      return m(ctx) !== negate;
    };
  }
  return attributeMatcher(c.attribute, c.op, c.value);
}

function all(matchers: readonly Matcher[]): Matcher {
  const n = matchers.length;
  if (n === 0) return () => true;
  if (n === 1) return matchers[0]!;
  if (n === 2) {
    const [a, b] = matchers as [Matcher, Matcher];
    return (ctx) => a(ctx) && b(ctx);
  }
  return (ctx) => {
    for (let i = 0; i < n; i++) if (!matchers[i]!(ctx)) return false;
    return true;
  };
}

/**
 * Compiles a segment into a membership test.
 *
 * @example
 * ```ts
 * const table = new Map([[seg.key, compileSegment(seg)]]);
 * ```
 */
export function compileSegment(segment: Segment): Matcher {
  const keyOf = getter(segment.keyAttribute ?? 'targetingKey');
  const included = new Set(segment.included ?? []);
  const excluded = new Set(segment.excluded ?? []);
  const conds = segment.conditions ?? [];
  // Segments cannot refer to segments (validation), so an empty table is enough here.
  const rules = conds.length === 0 ? undefined : all(conds.map((c) => compileCondition(c, new Map())));
  return (ctx) => {
    const k = keyOf(ctx);
    if (typeof k === 'string' || typeof k === 'number') {
      const key = String(k);
      if (included.has(key)) return true;
      if (excluded.has(key)) return false;
    }
    return rules !== undefined && rules(ctx);
  };
}

/**
 * The bucket (0 … 9,999) of a context for a rollout: murmur3 of `seed + value of bucketBy`, scaled as
 * flagd's `fractional` scales it, or -1 when the context lacks the attribute.
 *
 * @example
 * ```ts
 * bucketOf('new-checkout', 'user-42'); // the same number on every machine, forever
 * ```
 */
export function bucketOf(seed: string, value: unknown): number {
  if (typeof value !== 'string' && (typeof value !== 'number' || !Number.isFinite(value))) return -1;
  return Math.floor((murmur3(seed + String(value)) * BUCKETS) / TWO_32);
}

/** Compiles a rollout into a function of the context giving the split's index, or -1 (no bucket value). */
function compileRollout(rollout: Rollout, seed: string, variantIndex: (v: string) => number): (ctx: EvaluationContext) => number {
  const get = getter(rollout.bucketBy ?? 'targetingKey');
  const bounds: number[] = [];
  const targets: number[] = [];
  let cum = 0;
  for (const s of rollout.splits) {
    cum += weightUnits(s.weight);
    bounds.push(cum);
    targets.push(variantIndex(s.variant));
  }
  const n = bounds.length;
  return (ctx) => {
    const b = bucketOf(seed, get(ctx));
    if (b < 0) return -1;
    for (let i = 0; i < n; i++) if (b < bounds[i]!) return targets[i]!;
    return targets[n - 1]!;
  };
}

const R_STATIC = 0;
const R_DEFAULT = 1;
const R_MATCH = 2;
const R_SPLIT = 3;
const R_DISABLED = 4;
const REASONS: readonly Reason[] = ['STATIC', 'DEFAULT', 'TARGETING_MATCH', 'SPLIT', 'DISABLED'];

/**
 * Compiles a (validated) flag.
 *
 * @example
 * ```ts
 * const c = compileFlag(validateFlag(json), segmentTable);
 * c.evaluate({ targetingKey: 'user-1', email: 'a@acme.com' }); // { value: true, variant: 'on', reason: 'TARGETING_MATCH', ... }
 * ```
 */
export function compileFlag(flag: Flag, segments: SegmentTable): CompiledFlag {
  const names = Object.keys(flag.variants);
  const index = (v: string): number => names.indexOf(v);
  // Every possible answer, built now: results[reason][variant].
  const results: Resolution[][] = REASONS.map((reason) =>
    names.map((variant) => Object.freeze({ key: flag.key, value: flag.variants[variant]!, variant, reason, ...(flag.metadata ? { metadata: flag.metadata } : {}) })),
  );
  const seed = flag.seed ?? flag.key;
  const defaultIdx = index(flag.defaultVariant);
  const off = results[R_DISABLED]![index(flag.offVariant ?? flag.defaultVariant)]!;
  const fallback = results[(flag.rules?.length ?? 0) === 0 && flag.rollout === undefined ? R_STATIC : R_DEFAULT]![defaultIdx]!;
  const missingBucket = results[R_DEFAULT]![defaultIdx]!;
  type CompiledRule = { match: Matcher; variant: number; rollout: ((ctx: EvaluationContext) => number) | undefined };
  const rules: CompiledRule[] = (flag.rules ?? []).map((r) => ({
    match: all(r.conditions.map((c) => compileCondition(c, segments))),
    variant: 'variant' in r.serve ? index(r.serve.variant) : -1,
    rollout: 'rollout' in r.serve ? compileRollout(r.serve.rollout, seed, index) : undefined,
  }));
  const fallthrough = flag.rollout === undefined ? undefined : compileRollout(flag.rollout, seed, index);
  const matched = results[R_MATCH]!;
  const split = results[R_SPLIT]!;
  const n = rules.length;
  const enabled = flag.enabled;
  return {
    flag,
    evaluate(ctx) {
      if (!enabled) return off;
      for (let i = 0; i < n; i++) {
        const r = rules[i]!;
        if (!r.match(ctx)) continue;
        if (r.rollout === undefined) return matched[r.variant]!;
        const v = r.rollout(ctx);
        return v < 0 ? missingBucket : split[v]!;
      }
      if (fallthrough !== undefined) {
        const v = fallthrough(ctx);
        return v < 0 ? missingBucket : split[v]!;
      }
      return fallback;
    },
  };
}
