/**
 * A `FlagSet`: every flag and segment of one environment, compiled, in memory, evaluated locally.
 * The SDK and the control plane's OFREP endpoints both keep one current from store changes.
 */
import { compileFlag, compileSegment, type CompiledFlag, type Matcher } from './evaluate.js';
import { parseEnvKey } from './keys.js';
import type { Evaluation, EvaluationContext, Flag, FlagType, Segment, VariantValue } from './types.js';
import { validateFlag, validateSegment } from './validate.js';

/** A flag value that could not be read (bad JSON, failed validation): evaluations say PARSE_ERROR. */
interface Broken {
  readonly broken: string;
}

/** The type a caller expects, or `undefined` for any. */
export type ExpectedType = FlagType | undefined;

const EMPTY: EvaluationContext = Object.freeze({});

function typeOf(v: VariantValue): FlagType {
  return typeof v === 'object' ? 'object' : (typeof v as FlagType);
}

/**
 * The flags and segments of one environment.
 *
 * @example
 * ```ts
 * const set = new FlagSet();
 * set.setFlag(flag);
 * const { value, reason } = set.evaluate('new-checkout', false, { targetingKey: 'user-1' }, 'boolean');
 * ```
 */
export class FlagSet {
  readonly #flags = new Map<string, CompiledFlag | Broken>();
  readonly #segments = new Map<string, Segment>();
  readonly #segmentTable = new Map<string, Matcher>();

  /** Number of flags (readable or not). */
  get size(): number {
    return this.#flags.size;
  }

  /** The flags' keys, sorted. */
  keys(): string[] {
    return [...this.#flags.keys()].sort();
  }

  /** The flags that could be read, sorted by key. */
  flags(): Flag[] {
    const out: Flag[] = [];
    for (const k of this.keys()) {
      const c = this.#flags.get(k);
      if (c !== undefined && 'flag' in c) out.push(c.flag);
    }
    return out;
  }

  segments(): Segment[] {
    return [...this.#segments.keys()].sort().map((k) => this.#segments.get(k)!);
  }

  flag(key: string): Flag | undefined {
    const c = this.#flags.get(key);
    return c !== undefined && 'flag' in c ? c.flag : undefined;
  }

  segment(key: string): Segment | undefined {
    return this.#segments.get(key);
  }

  hasSegment(key: string): boolean {
    return this.#segments.has(key);
  }

  setFlag(flag: Flag): void {
    this.#flags.set(flag.key, compileFlag(flag, this.#segmentTable));
  }

  setSegment(segment: Segment): void {
    this.#segments.set(segment.key, segment);
    this.#segmentTable.set(segment.key, compileSegment(segment));
  }

  deleteFlag(key: string): boolean {
    return this.#flags.delete(key);
  }

  deleteSegment(key: string): boolean {
    this.#segmentTable.delete(key);
    return this.#segments.delete(key);
  }

  clear(): void {
    this.#flags.clear();
    this.#segments.clear();
    this.#segmentTable.clear();
  }

  /**
   * Applies one store key of environment `env` (its JSON value, or `undefined` for a deletion).
   * Returns the flag or segment name it touched, or undefined for a key that is neither. A value that
   * does not parse or validate still replaces the flag: evaluating it then answers PARSE_ERROR, which
   * beats silently serving a version the operator has replaced.
   */
  applyKey(env: string, key: string, value: string | undefined): { kind: 'flag' | 'segment'; name: string } | undefined {
    const what = parseEnvKey(env, key);
    if (what === undefined) return undefined;
    if (what.kind === 'segment') {
      if (value === undefined) this.deleteSegment(what.name);
      else {
        try {
          this.setSegment(validateSegment(JSON.parse(value)));
        } catch {
          // A segment that cannot be read matches no one.
          this.deleteSegment(what.name);
        }
      }
      return what;
    }
    if (value === undefined) {
      this.deleteFlag(what.name);
      return what;
    }
    try {
      const flag = validateFlag(JSON.parse(value));
      if (flag.key !== what.name) throw new Error(`the flag under key ${key} is named ${flag.key}`);
      this.setFlag(flag);
    } catch (err) {
      this.#flags.set(what.name, { broken: err instanceof Error ? err.message : String(err) });
    }
    return what;
  }

  /**
   * Evaluates a flag. Never throws: a missing flag, a value of another type than `expected`, a flag
   * that could not be read, each returns `defaultValue` with reason `ERROR` and the OpenFeature error
   * code (`FLAG_NOT_FOUND`, `TYPE_MISMATCH`, `PARSE_ERROR`).
   */
  evaluate<T>(key: string, defaultValue: T, context: EvaluationContext = EMPTY, expected?: ExpectedType): Evaluation<T> {
    const c = this.#flags.get(key);
    if (c === undefined) return { key, value: defaultValue, reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND', errorMessage: `flag ${JSON.stringify(key)} not found` };
    if (!('flag' in c)) return { key, value: defaultValue, reason: 'ERROR', errorCode: 'PARSE_ERROR', errorMessage: `flag ${JSON.stringify(key)} could not be read: ${c.broken}` };
    const r = c.evaluate(context);
    if (expected !== undefined && c.flag.type !== expected && typeOf(r.value) !== expected) {
      return { key, value: defaultValue, reason: 'ERROR', errorCode: 'TYPE_MISMATCH', errorMessage: `flag ${JSON.stringify(key)} is of type ${c.flag.type}, not ${expected}` };
    }
    return r as unknown as Evaluation<T>;
  }

  /** Evaluates a flag without a caller default (OFREP): on an error `value` is undefined. */
  resolve(key: string, context: EvaluationContext = EMPTY): Evaluation<VariantValue | undefined> {
    return this.evaluate<VariantValue | undefined>(key, undefined, context);
  }
}
