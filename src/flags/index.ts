/**
 * `spofless/flags`: feature flags switched live. The flag model and its validation, a compiled
 * evaluator (ordered rules, segments, murmur3 percentage rollouts), `FlagSet` (an environment in
 * memory), `FlagService` (flags on the store, with compare-and-swap writes and an audit log), and flagd
 * JSON import and export. The streaming SDK is `FlagClient` in `spofless/client`.
 *
 * @example
 * ```ts
 * import { FlagSet, validateFlag } from 'spofless/flags';
 * const set = new FlagSet();
 * set.setFlag(validateFlag({ key: 'dark-mode', type: 'boolean', enabled: true, variants: { on: true, off: false },
 *   defaultVariant: 'off', rollout: { splits: [{ variant: 'on', weight: 30 }, { variant: 'off', weight: 70 }] } }));
 * set.evaluate('dark-mode', false, { targetingKey: 'user-42' }).value;
 * ```
 */
export {
  OPERATORS,
  type Condition,
  type Evaluation,
  type EvaluationContext,
  type EvaluationErrorCode,
  type Flag,
  type FlagType,
  type JsonValue,
  type Operator,
  type Reason,
  type Rollout,
  type Rule,
  type Segment,
  type Serve,
  type Split,
  type VariantValue,
} from './types.js';
export { validateFlag, validateSegment, checkRegex, checkName, segmentsOf, NAME_PATTERN, MAX_REGEX_INPUT, MAX_REGEX_LENGTH, type ValidateFlagOptions } from './validate.js';
export { compileFlag, compileSegment, bucketOf, type CompiledFlag, type Matcher, type Resolution, type SegmentTable } from './evaluate.js';
export { murmur3 } from './murmur3.js';
export { FlagSet, type ExpectedType } from './flag-set.js';
export { fromFlagd, toFlagd, FLAGD_SCHEMA, type FlagdDocument, type FlagdFlag } from './flagd.js';
export { FlagService, type AuditAction, type AuditRecord, type StoredFlag, type StoredSegment, type WriteOptions } from './service.js';
export { StoreFlagSet } from './live.js';
export { FLAGS_ROOT, AUDIT_ROOT, envPrefix, flagsPrefix, segmentsPrefix, flagKey, segmentKey, auditPrefix, parseEnvKey } from './keys.js';
