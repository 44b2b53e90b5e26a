/**
 * flagd flag-definition JSON (https://flagd.dev/reference/flag-definitions/) in and out.
 *
 * flagd's `targeting` is JSON Logic, which says far more than the spofless model. Import takes the
 * subset the model has and refuses the rest with `FlagUnsupportedError`, naming the construct and
 * where it is (`flags.my-flag.targeting.if[0]: operator "%"`), rather than importing something that
 * evaluates differently:
 *
 * | flagd                                                        | spofless                            |
 * |--------------------------------------------------------------|-------------------------------------|
 * | `{"if": [c1, v1, c2, v2, …, else]}` (else may nest an `if`)  | rules in order; `else` a last rule  |
 * | a branch `"variant"` / `{"fractional": …}`                   | `serve: { variant }` / `{ rollout }`|
 * | `==` / `===`, `!=` / `!==` (a var and a literal)             | `equals`, `not_equals`              |
 * | `in` (a var in a literal list), `!` of it                    | `in`, `not_in`                      |
 * | `starts_with`, `ends_with`                                   | same                                |
 * | `<` `<=` `>` `>=` (a var and a number)                       | `lt` `lte` `gt` `gte`               |
 * | `sem_ver` with `=` `<` `<=` `>` `>=`                         | `semver_eq` …                       |
 * | `and` of conditions; `or` at the top of a branch             | all conditions; one rule per `or` arm|
 * | `$evaluators` + `{"$ref": name}` (AND-only conditions)       | segments                            |
 * | `fractional` with `{"cat": [seed, {"var": attr}]}`, a var, or nothing (flag key + targetingKey) | rollout, bucketing identical to flagd |
 *
 * Export writes the reverse; a flag using `matches` or `before`/`after` (which flagd lacks) is refused.
 * Known semantic differences: flagd's `DISABLED` serves the caller's default, spofless serves
 * `offVariant`; JSON Logic treats a missing attribute as null (so `!in` holds), spofless holds no
 * condition on a missing attribute.
 */
import { FlagUnsupportedError, describe } from '../errors/index.js';
import type { Condition, Flag, FlagType, Operator, Rollout, Rule, Segment, Serve, VariantValue } from './types.js';
import { validateFlag, validateSegment, weightUnits } from './validate.js';

/** A flagd flag definition document. */
export interface FlagdDocument {
  readonly $schema?: string;
  readonly flags: Readonly<Record<string, FlagdFlag>>;
  readonly $evaluators?: Readonly<Record<string, unknown>>;
  readonly metadata?: Readonly<Record<string, string | number | boolean>>;
}

export interface FlagdFlag {
  readonly state: 'ENABLED' | 'DISABLED';
  readonly variants: Readonly<Record<string, VariantValue>>;
  readonly defaultVariant: string | null;
  readonly targeting?: unknown;
  readonly metadata?: Readonly<Record<string, string | number | boolean>>;
}

export const FLAGD_SCHEMA = 'https://flagd.dev/schema/v0/flags.json';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unsupported(field: string, message: string): never {
  throw new FlagUnsupportedError(field, message);
}

/** The single operator of a JSON Logic node `{ op: args }`. */
function opOf(field: string, node: unknown): [string, unknown] {
  if (!isObject(node)) return unsupported(field, `expected a JSON Logic operation; got ${describe(node)}`);
  const keys = Object.keys(node);
  if (keys.length !== 1) return unsupported(field, `a JSON Logic operation has exactly one operator; got ${describe(keys)}`);
  return [keys[0]!, node[keys[0]!]];
}

function varName(node: unknown): string | undefined {
  if (!isObject(node) || !('var' in node) || Object.keys(node).length !== 1) return undefined;
  const v = node.var;
  if (typeof v === 'string' && v.length > 0) return v;
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'string') return v[0];
  return undefined;
}

const COMPARISON: Readonly<Record<string, [Operator, Operator]>> = {
  // [when the var is on the left, when it is on the right]
  '<': ['lt', 'gt'],
  '<=': ['lte', 'gte'],
  '>': ['gt', 'lt'],
  '>=': ['gte', 'lte'],
};

const SEMVER: Readonly<Record<string, Operator>> = { '=': 'semver_eq', '<': 'semver_lt', '<=': 'semver_lte', '>': 'semver_gt', '>=': 'semver_gte' };

/** A condition conjunction (AND) from JSON Logic; refuses `or` and anything unmodelled. */
function conjunction(field: string, node: unknown, evaluators: ReadonlySet<string>): Condition[] {
  const [op, args] = opOf(field, node);
  if (op === 'and') {
    if (!Array.isArray(args) || args.length === 0) return unsupported(`${field}.and`, 'expected a non-empty list');
    return args.flatMap((a, i) => conjunction(`${field}.and[${i}]`, a, evaluators));
  }
  return [single(field, op, args, evaluators)];
}

function pair(field: string, op: string, args: unknown): [string, unknown, boolean] {
  if (!Array.isArray(args) || args.length !== 2) return unsupported(`${field}.${op}`, `expected two arguments (a {"var"} and a literal); got ${describe(args)}`);
  const left = varName(args[0]);
  if (left !== undefined && varName(args[1]) === undefined && !isObject(args[1])) return [left, args[1], true];
  const right = varName(args[1]);
  if (right !== undefined && !isObject(args[0])) return [right, args[0], false];
  return unsupported(`${field}.${op}`, `only a comparison of one {"var"} with a literal is supported; got ${describe(args)}`);
}

function single(field: string, op: string, args: unknown, evaluators: ReadonlySet<string>): Condition {
  switch (op) {
    case '$ref': {
      if (typeof args !== 'string' || !evaluators.has(args)) return unsupported(`${field}.$ref`, `refers to ${describe(args)}, which is not in $evaluators`);
      return { segment: args };
    }
    case '==':
    case '===':
    case '!=':
    case '!==': {
      const [attribute, value] = pair(field, op, args);
      return { attribute, op: op.startsWith('!') ? 'not_equals' : 'equals', value: value as string };
    }
    case 'in': {
      if (!Array.isArray(args) || args.length !== 2) return unsupported(`${field}.in`, `expected two arguments; got ${describe(args)}`);
      const attribute = varName(args[0]);
      if (attribute === undefined || !Array.isArray(args[1])) {
        return unsupported(`${field}.in`, 'only "a {"var"} in a literal list" is supported (a substring test, "x" in {"var"}, is not)');
      }
      return { attribute, op: 'in', value: args[1] as string[] };
    }
    case '!': {
      const inner: unknown = Array.isArray(args) && args.length === 1 ? (args[0] as unknown) : args;
      const [iop, iargs] = opOf(`${field}.!`, inner);
      if (iop === '$ref' && typeof iargs === 'string' && evaluators.has(iargs)) return { segment: iargs, negate: true };
      const c = single(`${field}.!`, iop, iargs, evaluators);
      if ('op' in c && c.op === 'in') return { attribute: c.attribute, op: 'not_in', value: c.value };
      if ('op' in c && c.op === 'equals') return { attribute: c.attribute, op: 'not_equals', value: c.value };
      return unsupported(`${field}.!`, `negation is supported only of "in", "==" and "$ref"; got ${describe(iop)}`);
    }
    case 'starts_with':
    case 'ends_with': {
      const [attribute, value, varLeft] = pair(field, op, args);
      if (!varLeft) return unsupported(`${field}.${op}`, 'the {"var"} must come first');
      return { attribute, op, value: value as string };
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const [attribute, value, varLeft] = pair(field, op, args);
      if (attribute.startsWith('$flagd.')) return unsupported(`${field}.${op}`, `comparisons of ${attribute} (flagd's own properties) are not supported`);
      if (typeof value !== 'number') return unsupported(`${field}.${op}`, `only numeric comparisons are supported; got ${describe(value)}`);
      return { attribute, op: COMPARISON[op]![varLeft ? 0 : 1], value };
    }
    case 'sem_ver': {
      if (!Array.isArray(args) || args.length !== 3) return unsupported(`${field}.sem_ver`, `expected [{"var"}, operator, version]; got ${describe(args)}`);
      const attribute = varName(args[0]);
      const target = SEMVER[String(args[1])];
      if (attribute === undefined || typeof args[2] !== 'string') return unsupported(`${field}.sem_ver`, `expected [{"var"}, operator, version]; got ${describe(args)}`);
      if (target === undefined) return unsupported(`${field}.sem_ver`, `operator ${describe(args[1])} is not supported (supported: =, <, <=, >, >=)`);
      return { attribute, op: target, value: args[2] };
    }
    case 'or':
      return unsupported(`${field}.or`, '"or" is supported only at the top of an "if" condition (it becomes one rule per arm)');
    default:
      return unsupported(`${field}`, `operator ${describe(op)} is not supported by the spofless flag model`);
  }
}

function fractional(field: string, flagKey: string, args: unknown): Rollout {
  if (!Array.isArray(args) || args.length === 0) return unsupported(`${field}.fractional`, 'expected a list of [variant, weight] buckets');
  let seed = flagKey;
  let bucketBy: string | undefined;
  let buckets = args;
  const first: unknown = args[0];
  if (!Array.isArray(first)) {
    buckets = args.slice(1);
    const v = varName(first);
    if (v !== undefined) {
      seed = '';
      bucketBy = v;
    } else if (isObject(first) && Array.isArray(first.cat) && first.cat.length === 2 && typeof first.cat[0] === 'string' && varName(first.cat[1]) !== undefined) {
      seed = first.cat[0];
      bucketBy = varName(first.cat[1]);
    } else if (isObject(first) && Array.isArray(first.cat) && first.cat.length === 2 && varName(first.cat[0]) === '$flagd.flagKey' && varName(first.cat[1]) !== undefined) {
      bucketBy = varName(first.cat[1]);
    } else {
      return unsupported(`${field}.fractional[0]`, `the bucketing expression must be {"var": attr} or {"cat": ["seed" or {"var": "$flagd.flagKey"}, {"var": attr}]}; got ${describe(first)}`);
    }
  }
  let total = 0;
  const raw = buckets.map((b, i) => {
    if (!Array.isArray(b) || b.length < 1 || b.length > 2 || typeof b[0] !== 'string') return unsupported(`${field}.fractional[${i}]`, `expected ["variant", weight]; got ${describe(b)}`);
    const w: unknown = b.length === 2 ? (b[1] as unknown) : 1;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0) return unsupported(`${field}.fractional[${i}]`, `weight must be a whole number; got ${describe(w)}`);
    total += w;
    return { variant: b[0], w };
  });
  if (total === 0) return unsupported(`${field}.fractional`, 'weights sum to 0');
  // flagd weights are relative; ours are percentages with two decimals. Exact when total divides 10,000.
  if (10_000 % total !== 0) return unsupported(`${field}.fractional`, `weights sum to ${total}: the model needs a sum dividing 10000 (e.g. 100) to keep flagd's exact buckets`);
  const splits = raw.map((r) => ({ variant: r.variant, weight: (r.w * (10_000 / total)) / 100 }));
  return bucketBy === undefined && seed === flagKey ? { splits } : { splits, bucketBy: bucketBy ?? 'targetingKey' };
}

function serveOf(field: string, flagKey: string, node: unknown): Serve | 'nested-if' {
  if (typeof node === 'string') return { variant: node };
  if (isObject(node) && 'fractional' in node) return { rollout: fractional(field, flagKey, node.fractional) };
  if (isObject(node) && 'if' in node) return 'nested-if';
  return unsupported(field, `a branch must be a variant name or {"fractional": …}; got ${describe(node)}`);
}

interface Imported {
  rules: Rule[];
  rollout?: Rollout;
  seed?: string;
}

function targeting(field: string, flagKey: string, node: unknown, evaluators: ReadonlySet<string>): Imported {
  if (node === undefined || (isObject(node) && Object.keys(node).length === 0)) return { rules: [] };
  const [op, args] = opOf(field, node);
  if (op === 'fractional') return withSeed({ rules: [], rollout: fractional(field, flagKey, args) }, flagKey, field, args);
  if (op !== 'if') return unsupported(field, `targeting must be {"if": …} or {"fractional": …}; got operator ${describe(op)}`);
  const rules: Rule[] = [];
  let out: Imported = { rules };
  let list = args;
  let path = `${field}.if`;
  for (;;) {
    if (!Array.isArray(list) || list.length < 2) return unsupported(path, `expected [condition, branch, …]; got ${describe(list)}`);
    let i = 0;
    for (; i + 1 < list.length; i += 2) {
      const serve = serveOf(`${path}[${i + 1}]`, flagKey, list[i + 1]);
      if (serve === 'nested-if') return unsupported(`${path}[${i + 1}]`, 'an "if" inside a then-branch is not supported (only in the else position)');
      out = withSeed(out, flagKey, `${path}[${i + 1}]`, 'rollout' in serve ? (list[i + 1] as { fractional: unknown }).fractional : undefined);
      const cond: unknown = list[i];
      const [cop, cargs] = opOf(`${path}[${i}]`, cond);
      const arms: unknown[] = cop === 'or' ? (Array.isArray(cargs) ? (cargs as unknown[]) : unsupported(`${path}[${i}].or`, 'expected a list')) : [cond];
      arms.forEach((arm, j) => rules.push({ conditions: conjunction(cop === 'or' ? `${path}[${i}].or[${j}]` : `${path}[${i}]`, arm, evaluators), serve }));
    }
    if (i >= list.length) break; // no else
    const last: unknown = list[i];
    if (last === null) break;
    const serve = serveOf(`${path}[${i}]`, flagKey, last);
    if (serve === 'nested-if') {
      list = (last as { if: unknown }).if;
      path = `${path}[${i}].if`;
      continue;
    }
    if ('rollout' in serve) {
      out = withSeed(out, flagKey, `${path}[${i}]`, (last as { fractional: unknown }).fractional);
      out.rollout = serve.rollout;
    } else rules.push({ conditions: [], serve });
    break;
  }
  return out;
}

/** A flag has one seed: every `fractional` of a flag must agree on it (they do unless a "cat" names different seeds). */
function withSeed(out: Imported, flagKey: string, field: string, args: unknown): Imported {
  if (!Array.isArray(args)) return out;
  const first: unknown = args[0];
  let seed = flagKey;
  if (varName(first) !== undefined) seed = '';
  else if (isObject(first) && Array.isArray(first.cat) && typeof first.cat[0] === 'string') seed = first.cat[0];
  if (out.seed !== undefined && out.seed !== seed) return unsupported(field, `two "fractional" operations of one flag use different seeds (${describe(out.seed)}, ${describe(seed)})`);
  out.seed = seed;
  return out;
}

function typeOfVariants(field: string, variants: Readonly<Record<string, unknown>>): FlagType {
  const types = new Set(Object.values(variants).map((v) => (typeof v === 'object' && v !== null ? 'object' : typeof v)));
  if (types.size !== 1) return unsupported(field, `variants of one flag must share a type; got ${[...types].join(', ')}`);
  const t = [...types][0]!;
  if (t !== 'boolean' && t !== 'string' && t !== 'number' && t !== 'object') return unsupported(field, `variant values must be booleans, strings, numbers or objects; got ${t}`);
  return t;
}

/**
 * Converts a flagd document into spofless flags and segments (each validated). Throws
 * `FlagUnsupportedError` for a construct outside the model, `FlagValidationError` for an invalid result.
 *
 * @example
 * ```ts
 * const { flags, segments } = fromFlagd(JSON.parse(readFileSync('flags.flagd.json', 'utf8')));
 * ```
 */
export function fromFlagd(doc: unknown): { flags: Flag[]; segments: Segment[] } {
  if (!isObject(doc) || !isObject(doc.flags)) return unsupported('document', `a flagd document is an object with "flags"; got ${describe(doc)}`);
  for (const k of Object.keys(doc)) if (!['$schema', 'flags', '$evaluators', 'metadata'].includes(k)) unsupported(k, 'is not a field of a flagd document');
  const evaluators = isObject(doc.$evaluators) ? doc.$evaluators : {};
  const names = new Set(Object.keys(evaluators));
  const segments: Segment[] = Object.entries(evaluators).map(([name, node]) =>
    validateSegment({ key: name, conditions: conjunction(`$evaluators.${name}`, node, new Set()) }),
  );
  const flags: Flag[] = [];
  for (const [key, raw] of Object.entries(doc.flags)) {
    const field = `flags.${key}`;
    if (!isObject(raw)) unsupported(field, `expected a flag object; got ${describe(raw)}`);
    for (const k of Object.keys(raw)) if (!['state', 'variants', 'defaultVariant', 'targeting', 'metadata'].includes(k)) unsupported(`${field}.${k}`, 'is not a field of a flagd flag');
    if (raw.state !== 'ENABLED' && raw.state !== 'DISABLED') unsupported(`${field}.state`, `must be "ENABLED" or "DISABLED"; got ${describe(raw.state)}`);
    if (!isObject(raw.variants) || Object.keys(raw.variants).length === 0) unsupported(`${field}.variants`, 'must hold at least one variant');
    if (typeof raw.defaultVariant !== 'string') unsupported(`${field}.defaultVariant`, 'a null default variant (use the code default) is not supported: name a variant');
    const t = targeting(`${field}.targeting`, key, raw.targeting, names);
    const flag: Record<string, unknown> = {
      key,
      type: typeOfVariants(`${field}.variants`, raw.variants),
      enabled: raw.state === 'ENABLED',
      variants: raw.variants,
      defaultVariant: raw.defaultVariant,
    };
    if (t.rules.length > 0) flag.rules = t.rules;
    if (t.rollout !== undefined) flag.rollout = t.rollout;
    if (t.seed !== undefined && t.seed !== key) flag.seed = t.seed;
    if (raw.metadata !== undefined) flag.metadata = raw.metadata;
    flags.push(validateFlag(flag, { segmentExists: (s) => names.has(s) }));
  }
  return { flags, segments };
}

function logicOf(field: string, c: Condition): unknown {
  if ('segment' in c) return c.negate === true ? { '!': { $ref: c.segment } } : { $ref: c.segment };
  const v = { var: c.attribute };
  switch (c.op) {
    case 'equals':
      return { '===': [v, c.value] };
    case 'not_equals':
      return { '!==': [v, c.value] };
    case 'in':
      return { in: [v, c.value] };
    case 'not_in':
      return { '!': { in: [v, c.value] } };
    case 'starts_with':
    case 'ends_with':
      return { [c.op]: [v, c.value] };
    case 'lt':
      return { '<': [v, c.value] };
    case 'lte':
      return { '<=': [v, c.value] };
    case 'gt':
      return { '>': [v, c.value] };
    case 'gte':
      return { '>=': [v, c.value] };
    case 'semver_eq':
      return { sem_ver: [v, '=', c.value] };
    case 'semver_lt':
      return { sem_ver: [v, '<', c.value] };
    case 'semver_lte':
      return { sem_ver: [v, '<=', c.value] };
    case 'semver_gt':
      return { sem_ver: [v, '>', c.value] };
    case 'semver_gte':
      return { sem_ver: [v, '>=', c.value] };
    case 'matches':
    case 'before':
    case 'after':
      return unsupported(field, `operator ${c.op} has no flagd equivalent: this flag cannot be exported to flagd`);
  }
}

function and(field: string, conds: readonly Condition[]): unknown {
  if (conds.length === 0) return true;
  if (conds.length === 1) return logicOf(`${field}[0]`, conds[0]!);
  return { and: conds.map((c, i) => logicOf(`${field}[${i}]`, c)) };
}

function fractionalOf(flag: Flag, r: Rollout): unknown {
  const units = r.splits.map((s) => weightUnits(s.weight));
  const whole = units.every((u) => u % 100 === 0);
  const buckets = r.splits.map((s, i) => [s.variant, whole ? units[i]! / 100 : units[i]!]);
  const seed = flag.seed ?? flag.key;
  const by = r.bucketBy ?? 'targetingKey';
  if (seed === flag.key && by === 'targetingKey') return { fractional: buckets };
  if (seed === '') return { fractional: [{ var: by }, ...buckets] };
  return { fractional: [{ cat: [seed, { var: by }] }, ...buckets] };
}

function segmentLogic(s: Segment): unknown {
  const keyVar = { var: s.keyAttribute ?? 'targetingKey' };
  const conds = s.conditions ?? [];
  const rules = conds.length === 0 ? undefined : and(`segments.${s.key}.conditions`, conds);
  const included = (s.included ?? []).length > 0 ? { in: [keyVar, s.included] } : undefined;
  const guarded = rules === undefined ? undefined : (s.excluded ?? []).length > 0 ? { and: [{ '!': { in: [keyVar, s.excluded] } }, rules] } : rules;
  if (included !== undefined && guarded !== undefined) return { or: [included, guarded] };
  return included ?? guarded ?? { in: [keyVar, []] };
}

/**
 * Converts spofless flags and segments into one flagd document. Throws `FlagUnsupportedError` for a
 * flag using an operator flagd lacks (`matches`, `before`, `after`).
 *
 * @example
 * ```ts
 * writeFileSync('flags.flagd.json', JSON.stringify(toFlagd(set.flags(), set.segments()), null, 2));
 * ```
 */
export function toFlagd(flags: readonly Flag[], segments: readonly Segment[] = []): FlagdDocument {
  const out: Record<string, FlagdFlag> = {};
  for (const flag of flags) {
    const field = `flags.${flag.key}`;
    const branches: unknown[] = [];
    (flag.rules ?? []).forEach((r, i) => {
      branches.push(and(`${field}.rules[${i}].conditions`, r.conditions));
      branches.push('variant' in r.serve ? r.serve.variant : fractionalOf(flag, r.serve.rollout));
    });
    let targetingNode: unknown;
    if (branches.length === 0) targetingNode = flag.rollout === undefined ? undefined : fractionalOf(flag, flag.rollout);
    else targetingNode = { if: [...branches, flag.rollout === undefined ? null : fractionalOf(flag, flag.rollout)] };
    out[flag.key] = {
      state: flag.enabled ? 'ENABLED' : 'DISABLED',
      variants: flag.variants,
      defaultVariant: flag.enabled ? flag.defaultVariant : (flag.offVariant ?? flag.defaultVariant),
      ...(targetingNode === undefined ? {} : { targeting: targetingNode }),
      ...(flag.metadata === undefined ? {} : { metadata: flag.metadata }),
    };
  }
  const doc: { $schema: string; flags: Record<string, FlagdFlag>; $evaluators?: Record<string, unknown> } = { $schema: FLAGD_SCHEMA, flags: out };
  if (segments.length > 0) doc.$evaluators = Object.fromEntries(segments.map((s) => [s.key, segmentLogic(s)]));
  return doc;
}
