/** Option checks shared by the policies: each throws an InvalidOptionError naming owner, option, value and rule. */
import { InvalidOptionError } from '../errors/index.js';

export interface NumberRule {
  /** Inclusive lower bound. */
  readonly min?: number;
  /** Exclusive lower bound. */
  readonly above?: number;
  /** Inclusive upper bound. */
  readonly max?: number;
  readonly integer?: boolean;
}

function ruleText(rule: NumberRule): string {
  const kind = rule.integer ? 'an integer' : 'a number';
  const lo = rule.above !== undefined ? `> ${rule.above}` : rule.min !== undefined ? `>= ${rule.min}` : '';
  const hi = rule.max !== undefined ? `<= ${rule.max}` : '';
  return [kind, [lo, hi].filter(Boolean).join(' and ')].filter(Boolean).join(' ');
}

/** Returns `value` if it is a finite number obeying `rule`, else `fallback` when `value` is undefined. */
export function checkNumber(owner: string, option: string, value: unknown, rule: NumberRule, fallback: number): number;
export function checkNumber(owner: string, option: string, value: unknown, rule: NumberRule): number | undefined;
export function checkNumber(
  owner: string,
  option: string,
  value: unknown,
  rule: NumberRule,
  fallback?: number,
): number | undefined {
  if (value === undefined) return fallback;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (!rule.integer || Number.isInteger(value)) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.above === undefined || value > rule.above) &&
    (rule.max === undefined || value <= rule.max);
  if (!ok) throw new InvalidOptionError(owner, option, value, ruleText(rule));
  return value;
}

/** Returns `value` if it is a function (or undefined). */
export function checkFunction<F extends (...args: never[]) => unknown>(
  owner: string,
  option: string,
  value: unknown,
): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(owner, option, value, 'a function');
  return value as F;
}

/** Returns `value` if it is one of `allowed`. */
export function checkOneOf<T extends string>(
  owner: string,
  option: string,
  value: unknown,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidOptionError(owner, option, value, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
  }
  return value as T;
}

/** Throws unless `value` is a plain object (or undefined); returns it typed. */
export function checkObject<T extends object>(owner: string, option: string, value: unknown): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(owner, option, value, 'an object');
  }
  return value as T;
}

/** Throws when `options` has a key not in `known`, so a misspelt option is never silently ignored. */
export function checkKnownKeys(owner: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(owner, key, (options as Record<string, unknown>)[key], `one of the known options (${known.join(', ')})`);
    }
  }
}
