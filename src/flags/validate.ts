/**
 * Validation of flags and segments where they enter (API, CLI, import, SDK bootstrap files). Each
 * check throws `FlagValidationError` naming the field (`rules[1].conditions[0].value`) and what was
 * expected, so the HTTP API answers a clear 400 and nothing is written.
 */
import semver from 'semver';
import { FlagValidationError, describe } from '../errors/index.js';
import { OPERATORS, type Condition, type Flag, type FlagType, type JsonValue, type Operator, type Rollout, type Rule, type Segment, type Serve, type VariantValue } from './types.js';

/** Flag, segment and environment names: URL-safe (OFREP puts the flag key in the path unencoded). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Longest regular expression source accepted by `matches`. */
export const MAX_REGEX_LENGTH = 256;
/** Longest attribute value a `matches` condition looks at; a longer value does not match. */
export const MAX_REGEX_INPUT = 1024;
/** At most this many rules per flag, conditions per rule, values per list. */
export const LIMITS = { rules: 200, conditions: 50, values: 10_000, variants: 100 } as const;

const OPERATOR_SET: ReadonlySet<string> = new Set(OPERATORS);
const FLAG_FIELDS = new Set(['key', 'type', 'description', 'enabled', 'variants', 'defaultVariant', 'offVariant', 'rules', 'rollout', 'seed', 'metadata']);
const SEGMENT_FIELDS = new Set(['key', 'description', 'included', 'excluded', 'keyAttribute', 'conditions']);
const TYPES: ReadonlySet<string> = new Set(['boolean', 'string', 'number', 'object']);

function fail(field: string, message: string): never {
  throw new FlagValidationError(field, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws unless `name` is a valid flag, segment or environment name. */
export function checkName(field: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    fail(field, `must be 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit; got ${describe(name)}`);
  }
  return name;
}

function unknownFields(field: string, v: Record<string, unknown>, known: ReadonlySet<string>): void {
  for (const k of Object.keys(v)) if (!known.has(k)) fail(`${field}.${k}`.replace(/^\./, ''), `is not a field (expected ${[...known].join(', ')})`);
}

function attribute(field: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 256 || v.startsWith('.') || v.endsWith('.') || v.includes('..')) {
    fail(field, `must be an attribute name or dotted path (e.g. "email", "user.plan"); got ${describe(v)}`);
  }
  return v;
}

function isPrimitive(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * Refuses regular expressions that can take exponential time (a quantified group that itself holds a
 * quantifier or an alternation: `(a+)+`, `(a|aa)*`), back-references, and sources over
 * `MAX_REGEX_LENGTH`. JavaScript's engine backtracks, so this static check plus the input cap of
 * `MAX_REGEX_INPUT` is what keeps one flag from stalling every evaluation.
 */
export function checkRegex(field: string, source: unknown): RegExp {
  if (typeof source !== 'string' || source.length === 0) fail(field, `must be a regular expression (a non-empty string); got ${describe(source)}`);
  if (source.length > MAX_REGEX_LENGTH) fail(field, `regular expression is ${source.length} characters: expected at most ${MAX_REGEX_LENGTH}`);
  let re: RegExp;
  try {
    re = new RegExp(source, 'u');
  } catch (err) {
    return fail(field, `is not a valid regular expression: ${(err as Error).message}`);
  }
  // Scan groups: does a group containing a quantifier or `|` get quantified itself?
  const stack: { risky: boolean; alternation: boolean; start: number }[] = [{ risky: false, alternation: false, start: 0 }];
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') fail(field, `back-references (\\${next}) are refused: they can make matching take exponential time`);
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      continue;
    }
    const top = stack[stack.length - 1]!;
    if (c === '(') {
      stack.push({ risky: false, alternation: false, start: i + 1 });
      continue;
    }
    if (c === '|') {
      top.alternation = true;
      continue;
    }
    if (c === '*' || c === '+' || c === '{' || (c === '?' && source[i - 1] !== '(')) {
      if (c !== '?') top.risky = true;
      continue;
    }
    if (c === ')') {
      const group = stack.pop();
      if (group === undefined || stack.length === 0) break;
      const after = source[i + 1];
      const quantified = after === '*' || after === '+' || (after === '{' && /^\{\d*,\d*\}|^\{\d{2,}\}/.test(source.slice(i + 1)));
      const ambiguous = group.alternation && !disjointLiterals(source.slice(group.start, i));
      if (quantified && (group.risky || ambiguous)) {
        fail(field, `nested quantifier ${describe(source.slice(0, i + 2))}...: a repeated group that itself repeats or alternates can take exponential time; rewrite it without the outer repetition`);
      }
      if (group.risky || quantified || ambiguous) stack[stack.length - 1]!.risky = true;
    }
  }
  return re;
}

/**
 * True when a group's body is an alternation of plain literals none of which is a prefix of another
 * (`foo|bar`): repeating it cannot match one input in several ways. Anything else (`a|aa`, `\\w|\\d`)
 * counts as ambiguous.
 */
function disjointLiterals(body: string): boolean {
  const inner = body.replace(/^\?:/, '');
  const parts = inner.split('|');
  if (parts.some((p) => p.length === 0 || /[\\[\](){}*+?.^$]/.test(p))) return false;
  return parts.every((p, i) => parts.every((q, j) => i === j || !q.startsWith(p)));
}

/** Parses a `before`/`after` operand: an RFC 3339 date string or Unix milliseconds. */
export function parseDate(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

/** Parses a semantic version leniently: a leading `v` and partial versions (`1`, `1.2`) are accepted. */
export function parseSemver(v: unknown): semver.SemVer | undefined {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  const s = String(v).replace(/^[vV]/, '');
  const strict = semver.parse(s);
  if (strict !== null) return strict;
  if (/^\d+(\.\d+)?$/.test(s)) return semver.coerce(s) ?? undefined;
  return undefined;
}

function condition(field: string, v: unknown, segments: ((key: string) => boolean) | undefined): Condition {
  if (!isObject(v)) return fail(field, `must be an object { attribute, op, value } or { segment }; got ${describe(v)}`);
  if ('segment' in v) {
    unknownFields(field, v, new Set(['segment', 'negate']));
    const segment = checkName(`${field}.segment`, v.segment);
    if (v.negate !== undefined && typeof v.negate !== 'boolean') fail(`${field}.negate`, `must be true or false; got ${describe(v.negate)}`);
    if (segments !== undefined && !segments(segment)) fail(`${field}.segment`, `refers to segment ${describe(segment)}, which does not exist in this environment`);
    return v.negate === true ? { segment, negate: true } : { segment };
  }
  unknownFields(field, v, new Set(['attribute', 'op', 'value']));
  const attr = attribute(`${field}.attribute`, v.attribute);
  if (typeof v.op !== 'string' || !OPERATOR_SET.has(v.op)) fail(`${field}.op`, `must be one of ${OPERATORS.join(', ')}; got ${describe(v.op)}`);
  const op = v.op as Operator;
  const value = v.value;
  const where = `${field}.value`;
  switch (op) {
    case 'equals':
    case 'not_equals':
      if (!isPrimitive(value)) fail(where, `${op} needs a string, number or boolean; got ${describe(value)}`);
      break;
    case 'in':
    case 'not_in':
      if (!Array.isArray(value) || value.length === 0 || !value.every(isPrimitive)) fail(where, `${op} needs a non-empty list of strings, numbers or booleans; got ${describe(value)}`);
      if (value.length > LIMITS.values) fail(where, `holds ${value.length} values: expected at most ${LIMITS.values} (use a segment for long lists)`);
      break;
    case 'starts_with':
    case 'ends_with':
      if (typeof value !== 'string' || value.length === 0) fail(where, `${op} needs a non-empty string; got ${describe(value)}`);
      break;
    case 'matches':
      checkRegex(where, value);
      break;
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte':
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(where, `${op} needs a number; got ${describe(value)}`);
      break;
    case 'semver_eq':
    case 'semver_lt':
    case 'semver_lte':
    case 'semver_gt':
    case 'semver_gte':
      if (parseSemver(value) === undefined || typeof value !== 'string') fail(where, `${op} needs a semantic version such as "1.2.3"; got ${describe(value)}`);
      break;
    case 'before':
    case 'after':
      if (parseDate(value) === undefined) fail(where, `${op} needs an RFC 3339 date ("2026-01-31T00:00:00Z") or Unix milliseconds; got ${describe(value)}`);
      break;
  }
  return { attribute: attr, op, value: value as JsonValue };
}

function conditions(field: string, v: unknown, segments: ((key: string) => boolean) | undefined): Condition[] {
  if (!Array.isArray(v)) return fail(field, `must be a list of conditions; got ${describe(v)}`);
  if (v.length > LIMITS.conditions) fail(field, `holds ${v.length} conditions: expected at most ${LIMITS.conditions}`);
  return v.map((c, i) => condition(`${field}[${i}]`, c, segments));
}

function variantRef(field: string, v: unknown, variants: Readonly<Record<string, unknown>>): string {
  if (typeof v !== 'string' || !Object.hasOwn(variants, v)) {
    fail(field, `refers to variant ${describe(v)}, which the flag does not have (variants: ${Object.keys(variants).join(', ')})`);
  }
  return v;
}

/** Weights in hundredths of a percent: integers, so that sums are exact. */
export function weightUnits(w: number): number {
  return Math.round(w * 100);
}

function rollout(field: string, v: unknown, variants: Readonly<Record<string, unknown>>): Rollout {
  if (!isObject(v)) return fail(field, `must be an object { splits, bucketBy? }; got ${describe(v)}`);
  unknownFields(field, v, new Set(['splits', 'bucketBy']));
  if (!Array.isArray(v.splits) || v.splits.length === 0) fail(`${field}.splits`, `must be a non-empty list of { variant, weight }; got ${describe(v.splits)}`);
  let total = 0;
  const splits = v.splits.map((s: unknown, i: number) => {
    const f = `${field}.splits[${i}]`;
    if (!isObject(s)) return fail(f, `must be { variant, weight }; got ${describe(s)}`);
    unknownFields(f, s, new Set(['variant', 'weight']));
    const variant = variantRef(`${f}.variant`, s.variant, variants);
    const w = s.weight;
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 100) fail(`${f}.weight`, `must be a percentage from 0 to 100; got ${describe(w)}`);
    if (Math.abs(w * 100 - Math.round(w * 100)) > 1e-6) fail(`${f}.weight`, `must have at most two decimals; got ${w}`);
    total += weightUnits(w);
    return { variant, weight: w };
  });
  if (total !== 10_000) fail(`${field}.splits`, `weights must sum to 100; they sum to ${total / 100}`);
  const out: { splits: typeof splits; bucketBy?: string } = { splits };
  if (v.bucketBy !== undefined) out.bucketBy = attribute(`${field}.bucketBy`, v.bucketBy);
  return out;
}

function serve(field: string, v: unknown, variants: Readonly<Record<string, unknown>>): Serve {
  if (!isObject(v)) return fail(field, `must be { variant } or { rollout }; got ${describe(v)}`);
  if ('rollout' in v) {
    unknownFields(field, v, new Set(['rollout']));
    return { rollout: rollout(`${field}.rollout`, v.rollout, variants) };
  }
  unknownFields(field, v, new Set(['variant']));
  return { variant: variantRef(`${field}.variant`, v.variant, variants) };
}

function variantValue(field: string, type: FlagType, v: unknown): VariantValue {
  const ok =
    type === 'boolean'
      ? typeof v === 'boolean'
      : type === 'string'
        ? typeof v === 'string'
        : type === 'number'
          ? typeof v === 'number' && Number.isFinite(v)
          : typeof v === 'object' && v !== null;
  if (!ok) fail(field, `must be ${type === 'object' ? 'a JSON object or array' : `a ${type}`} (the flag's type); got ${describe(v)}`);
  return v as VariantValue;
}

/** Options of `validateFlag`. */
export interface ValidateFlagOptions {
  /** Whether a segment exists (rules referring to a missing one are refused). Without it segments are not checked. */
  readonly segmentExists?: (key: string) => boolean;
}

/**
 * Checks a flag and returns it (a fresh object with only the model's fields). Refuses unknown fields,
 * rules that name a missing variant or segment, percentages outside 0–100, splits not summing to 100,
 * catastrophic regular expressions.
 *
 * @example
 * ```ts
 * const flag = validateFlag(JSON.parse(body), { segmentExists: (k) => segments.has(k) });
 * ```
 */
export function validateFlag(input: unknown, options: ValidateFlagOptions = {}): Flag {
  if (!isObject(input)) return fail('flag', `must be a JSON object; got ${describe(input)}`);
  unknownFields('', input, FLAG_FIELDS);
  const key = checkName('key', input.key);
  const type = input.type;
  if (typeof type !== 'string' || !TYPES.has(type)) fail('type', `must be one of boolean, string, number, object; got ${describe(type)}`);
  if (typeof input.enabled !== 'boolean') fail('enabled', `must be true or false; got ${describe(input.enabled)}`);
  if (!isObject(input.variants) || Object.keys(input.variants).length === 0) fail('variants', `must be an object of at least one variant name to value; got ${describe(input.variants)}`);
  const names = Object.keys(input.variants);
  if (names.length > LIMITS.variants) fail('variants', `holds ${names.length} variants: expected at most ${LIMITS.variants}`);
  const variants: Record<string, VariantValue> = {};
  for (const name of names) {
    if (name.length === 0 || name.length > 128) fail(`variants`, `variant names must be 1-128 characters; got ${describe(name)}`);
    variants[name] = variantValue(`variants.${name}`, type as FlagType, input.variants[name]);
  }
  const flag: Record<string, unknown> = { key, type, enabled: input.enabled, variants };
  if (input.description !== undefined) {
    if (typeof input.description !== 'string' || input.description.length > 1024) fail('description', `must be a string of at most 1024 characters; got ${describe(input.description)}`);
    flag.description = input.description;
  }
  flag.defaultVariant = variantRef('defaultVariant', input.defaultVariant, variants);
  if (input.offVariant !== undefined) flag.offVariant = variantRef('offVariant', input.offVariant, variants);
  if (input.rules !== undefined) {
    if (!Array.isArray(input.rules)) fail('rules', `must be a list of rules; got ${describe(input.rules)}`);
    if (input.rules.length > LIMITS.rules) fail('rules', `holds ${input.rules.length} rules: expected at most ${LIMITS.rules}`);
    flag.rules = input.rules.map((r: unknown, i: number): Rule => {
      const f = `rules[${i}]`;
      if (!isObject(r)) return fail(f, `must be an object { conditions, serve, name? }; got ${describe(r)}`);
      unknownFields(f, r, new Set(['name', 'conditions', 'serve']));
      const rule: { name?: string; conditions: Condition[]; serve: Serve } = {
        conditions: conditions(`${f}.conditions`, r.conditions ?? [], options.segmentExists),
        serve: serve(`${f}.serve`, r.serve, variants),
      };
      if (r.name !== undefined) {
        if (typeof r.name !== 'string' || r.name.length > 256) fail(`${f}.name`, `must be a string of at most 256 characters; got ${describe(r.name)}`);
        rule.name = r.name;
      }
      return rule;
    });
  }
  if (input.rollout !== undefined) flag.rollout = rollout('rollout', input.rollout, variants);
  if (input.seed !== undefined) {
    if (typeof input.seed !== 'string' || input.seed.length > 256) fail('seed', `must be a string of at most 256 characters; got ${describe(input.seed)}`);
    flag.seed = input.seed;
  }
  if (input.metadata !== undefined) {
    if (!isObject(input.metadata)) fail('metadata', `must be an object of strings, numbers and booleans; got ${describe(input.metadata)}`);
    for (const [k, m] of Object.entries(input.metadata)) if (!isPrimitive(m)) fail(`metadata.${k}`, `must be a string, number or boolean; got ${describe(m)}`);
    flag.metadata = { ...input.metadata };
  }
  return flag as unknown as Flag;
}

/**
 * Checks a segment and returns it.
 *
 * @example
 * ```ts
 * const seg = validateSegment({ key: 'beta', included: ['u1', 'u2'] });
 * ```
 */
export function validateSegment(input: unknown): Segment {
  if (!isObject(input)) return fail('segment', `must be a JSON object; got ${describe(input)}`);
  unknownFields('', input, SEGMENT_FIELDS);
  const out: Record<string, unknown> = { key: checkName('key', input.key) };
  if (input.description !== undefined) {
    if (typeof input.description !== 'string' || input.description.length > 1024) fail('description', `must be a string of at most 1024 characters; got ${describe(input.description)}`);
    out.description = input.description;
  }
  for (const list of ['included', 'excluded'] as const) {
    const v = input[list];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail(list, `must be a list of strings; got ${describe(v)}`);
    if (v.length > 100_000) fail(list, `holds ${v.length} keys: expected at most 100000`);
    out[list] = [...v];
  }
  if (input.keyAttribute !== undefined) out.keyAttribute = attribute('keyAttribute', input.keyAttribute);
  if (input.conditions !== undefined) {
    const cs = conditions('conditions', input.conditions, undefined);
    if (cs.some((c) => 'segment' in c)) fail('conditions', 'a segment cannot refer to another segment');
    out.conditions = cs;
  }
  return out as unknown as Segment;
}

/** The segments a flag's rules refer to. */
export function segmentsOf(flag: Flag): string[] {
  const out = new Set<string>();
  for (const r of flag.rules ?? []) for (const c of r.conditions) if ('segment' in c) out.add(c.segment);
  return [...out];
}
