/**
 * The flag model: flags with typed variants, a default and an off variant, ordered targeting rules,
 * reusable segments and percentage rollouts. The JSON stored under one key per flag (and per segment)
 * is exactly these shapes; `validateFlag` / `validateSegment` check them where they enter.
 */

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** The type every variant of a flag shares (`object` is any JSON object or array). */
export type FlagType = 'boolean' | 'string' | 'number' | 'object';

/** A variant's value. */
export type VariantValue = boolean | string | number | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/**
 * Attribute operators. Every one is false when the attribute is missing (a negated operator too, as in
 * LaunchDarkly: "not in the list" says nothing about a user whose country is unknown) and when its type
 * does not fit the operator (a number for `starts_with`, a string for `lt`).
 */
export const OPERATORS = [
  'equals',
  'not_equals',
  'in',
  'not_in',
  'starts_with',
  'ends_with',
  'matches',
  'lt',
  'lte',
  'gt',
  'gte',
  'semver_eq',
  'semver_lt',
  'semver_lte',
  'semver_gt',
  'semver_gte',
  'before',
  'after',
] as const;
export type Operator = (typeof OPERATORS)[number];

/**
 * One test on the evaluation context: an attribute (a dotted path: `user.plan`) and an operator, or
 * membership of a segment.
 *
 * @example
 * ```ts
 * const c: Condition = { attribute: 'email', op: 'ends_with', value: '@acme.com' };
 * const s: Condition = { segment: 'beta-testers' };
 * ```
 */
export type Condition =
  | { readonly attribute: string; readonly op: Operator; readonly value: JsonValue }
  | { readonly segment: string; readonly negate?: boolean };

/** A share of a rollout: `weight` percent (0–100, up to two decimals) go to `variant`. */
export interface Split {
  readonly variant: string;
  readonly weight: number;
}

/**
 * A percentage rollout. Each context is put in a bucket by hashing (murmur3) the flag's seed and the
 * value of `bucketBy`; buckets are laid out in split order, so widening the first split from 10 to 50
 * keeps everyone who was in it. Weights sum to 100.
 */
export interface Rollout {
  readonly splits: readonly Split[];
  /** The context attribute to bucket by. Default `targetingKey`. */
  readonly bucketBy?: string;
}

/** What a matching rule (or the fallthrough) serves. */
export type Serve = { readonly variant: string } | { readonly rollout: Rollout };

/** A targeting rule: all its conditions hold (an empty list always holds), then it serves. */
export interface Rule {
  readonly name?: string;
  readonly conditions: readonly Condition[];
  readonly serve: Serve;
}

/**
 * A feature flag.
 *
 * Evaluation: `enabled: false` serves `offVariant` (the kill switch, reason `DISABLED`); otherwise the
 * first rule whose conditions hold serves (reason `TARGETING_MATCH`, or `SPLIT` for a rollout); when
 * none does, `rollout` serves when set (`SPLIT`), else `defaultVariant` (`STATIC` when the flag has no
 * rules, `DEFAULT` when rules exist and none matched). A rollout whose `bucketBy` attribute is missing
 * from the context yields nothing, and the flag serves `defaultVariant` (`DEFAULT`), as flagd does.
 *
 * @example
 * ```ts
 * const flag: Flag = {
 *   key: 'new-checkout', type: 'boolean', enabled: true,
 *   variants: { on: true, off: false }, defaultVariant: 'off', offVariant: 'off',
 *   rules: [{ conditions: [{ attribute: 'email', op: 'ends_with', value: '@acme.com' }], serve: { variant: 'on' } }],
 *   rollout: { splits: [{ variant: 'on', weight: 10 }, { variant: 'off', weight: 90 }] },
 * };
 * ```
 */
export interface Flag {
  readonly key: string;
  readonly type: FlagType;
  readonly description?: string;
  readonly enabled: boolean;
  readonly variants: Readonly<Record<string, VariantValue>>;
  readonly defaultVariant: string;
  /** Served everywhere while `enabled` is false. Default: `defaultVariant`. */
  readonly offVariant?: string;
  readonly rules?: readonly Rule[];
  /** The fallthrough rollout, when no rule matches. */
  readonly rollout?: Rollout;
  /** Prefix of every bucketing hash of this flag. Default: the flag's key (so flags do not correlate). */
  readonly seed?: string;
  /** Returned with every evaluation (OpenFeature flag metadata). */
  readonly metadata?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * A reusable segment: a context is in it when its key is in `included`, or (not in `excluded` and) the
 * segment has conditions and all of them hold. A segment with neither keys nor conditions holds no one.
 *
 * @example
 * ```ts
 * const beta: Segment = { key: 'beta', included: ['user-1'], conditions: [{ attribute: 'plan', op: 'in', value: ['pro', 'team'] }] };
 * ```
 */
export interface Segment {
  readonly key: string;
  readonly description?: string;
  readonly included?: readonly string[];
  readonly excluded?: readonly string[];
  /** The attribute `included` and `excluded` are matched against. Default `targetingKey`. */
  readonly keyAttribute?: string;
  readonly conditions?: readonly Condition[];
}

/** The evaluation context: `targetingKey` and any attributes. */
export type EvaluationContext = { readonly targetingKey?: string } & Readonly<Record<string, unknown>>;

/** OpenFeature resolution reasons (plus `NOT_READY` from the SDK before its first sync). */
export type Reason = 'STATIC' | 'DEFAULT' | 'TARGETING_MATCH' | 'SPLIT' | 'DISABLED' | 'ERROR' | 'NOT_READY' | 'CACHED' | 'STALE' | 'UNKNOWN';

/** OpenFeature error codes. */
export type EvaluationErrorCode = 'PROVIDER_NOT_READY' | 'FLAG_NOT_FOUND' | 'PARSE_ERROR' | 'TYPE_MISMATCH' | 'TARGETING_KEY_MISSING' | 'INVALID_CONTEXT' | 'GENERAL';

/** The outcome of one evaluation. On an error `value` is the caller's default and `variant` is absent. */
export interface Evaluation<T = VariantValue> {
  readonly key: string;
  readonly value: T;
  readonly variant?: string;
  readonly reason: Reason;
  readonly errorCode?: EvaluationErrorCode;
  readonly errorMessage?: string;
  readonly metadata?: Readonly<Record<string, string | number | boolean>>;
}
