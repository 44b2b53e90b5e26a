/**
 * JSON validation at the edge. Route schemas are compiled with ajv: bodies strictly (no type coercion,
 * unknown fields refused), query strings with coercion (`?revision=12` is the number 12, `?prevKv=true`
 * the boolean). Every ajv error becomes one sentence that names the field, what was expected and what
 * came: `body.compare[0].cmp must be one of "=", "!=", "<", ">"; got "=="`.
 */
import { Ajv, type ErrorObject, type Options } from 'ajv';
import { describe } from '../errors/index.js';

const COMMON: Options = {
  allErrors: false,
  verbose: true,
  discriminator: true,
  removeAdditional: false,
  useDefaults: false,
  strict: true,
  // `value` of a compare is a string, an integer or null depending on its target.
  allowUnionTypes: true,
};

const bodyAjv = new Ajv({ ...COMMON, coerceTypes: false });
const queryAjv = new Ajv({ ...COMMON, coerceTypes: true });

/** Fastify's validator compiler: strict for bodies, coercing for query strings, params and headers. */
export function validatorCompiler({ schema, httpPart }: { schema: object; httpPart?: string }): (data: unknown) => boolean {
  return (httpPart === 'body' ? bodyAjv : queryAjv).compile(schema);
}

/** `/compare/0/key` → `compare[0].key`. */
function fieldPath(base: string, instancePath: string): string {
  let out = base;
  for (const part of instancePath.split('/').slice(1)) {
    const p = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p) ? `[${p}]` : `.${p}`;
  }
  return out;
}

const PART_NAMES: Readonly<Record<string, string>> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** The field a validation error is about, e.g. `body.compare[0].key` or `query.revision`. */
export function validationField(context: string, error: ErrorObject): string {
  const base = fieldPath(PART_NAMES[context] ?? context, error.instancePath);
  if (error.keyword === 'required') return `${base}.${String((error.params as { missingProperty: string }).missingProperty)}`;
  if (error.keyword === 'additionalProperties') return `${base}.${String((error.params as { additionalProperty: string }).additionalProperty)}`;
  if (error.keyword === 'discriminator') return `${base}.${String((error.params as { tag: string }).tag)}`;
  return base;
}

/** One sentence for one ajv error. */
export function validationMessage(context: string, error: ErrorObject): string {
  const base = fieldPath(PART_NAMES[context] ?? context, error.instancePath);
  const params = error.params as Record<string, unknown>;
  const got = `; got ${describe(error.data)}`;
  switch (error.keyword) {
    case 'required':
      return `${base} is missing the required field ${JSON.stringify(params.missingProperty)}`;
    case 'additionalProperties': {
      const props = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const expected = props.length === 0 ? 'no fields' : `only ${props.join(', ')}`;
      return `${base} has an unknown field ${JSON.stringify(params.additionalProperty)}: expected ${expected}`;
    }
    case 'type': {
      const t = String(params.type).split(',');
      const names = t.map((x) => (x === 'integer' ? 'an integer' : x === 'object' ? 'an object' : x === 'array' ? 'an array' : x === 'null' ? 'null' : `a ${x}`));
      return `${base} must be ${names.join(' or ')}${got}`;
    }
    case 'enum':
      return `${base} must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${got}`;
    case 'const':
      return `${base} must be ${JSON.stringify(params.allowedValue)}${got}`;
    case 'discriminator': {
      const tag = String(params.tag);
      const allowed = ((error.parentSchema as { oneOf?: { properties?: Record<string, { const?: unknown }> }[] } | undefined)?.oneOf ?? [])
        .map((s) => JSON.stringify(s.properties?.[tag]?.const))
        .join(', ');
      const value = (error.data as Record<string, unknown> | null | undefined)?.[tag];
      return params.error === 'tag' && value === undefined
        ? `${base} is missing the required field ${JSON.stringify(tag)} (one of ${allowed})`
        : `${base}.${tag} must be one of ${allowed}; got ${describe(value)}`;
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${base} must be ${String(params.comparison)} ${String(params.limit)}${got}`;
    case 'minLength':
      return `${base} must be at least ${String(params.limit)} characters long${got}`;
    case 'maxLength':
      return `${base} must be at most ${String(params.limit)} characters long${got}`;
    case 'maxItems':
      return `${base} must hold at most ${String(params.limit)} items; got ${(error.data as unknown[]).length}`;
    case 'pattern':
      return `${base} must match ${String(params.pattern)}${got}`;
    default:
      return `${base} ${error.message ?? 'is not valid'}${got}`;
  }
}
