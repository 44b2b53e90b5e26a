/**
 * Where the catalog keeps its state in the store. One key per instance, its value the Instance JSON,
 * attached to the instance's lease, so that a client may follow a service with a plain prefix watch.
 *
 * | key                                              | value         | lease           |
 * |--------------------------------------------------|---------------|-----------------|
 * | `/spofless/catalog/instances/{service}/{id}`     | Instance JSON | the instance's  |
 */
import { INSTANCE_STATUSES, type Instance } from './types.js';

/** The prefix of every instance key. */
export const CATALOG_INSTANCES_PREFIX = '/spofless/catalog/instances/';

/**
 * The key prefix of one service's instances (ends with `/`).
 *
 * @example
 * ```ts
 * instancesPrefix('api'); // '/spofless/catalog/instances/api/'
 * ```
 */
export function instancesPrefix(service: string): string {
  return `${CATALOG_INSTANCES_PREFIX}${service}/`;
}

/**
 * The key of one instance.
 *
 * @example
 * ```ts
 * instanceKey('api', 'api-1'); // '/spofless/catalog/instances/api/api-1'
 * ```
 */
export function instanceKey(service: string, id: string): string {
  return `${CATALOG_INSTANCES_PREFIX}${service}/${id}`;
}

/** `{ service, id }` of an instance key, or `undefined` for any other key. */
export function parseInstanceKey(key: string): { service: string; id: string } | undefined {
  if (!key.startsWith(CATALOG_INSTANCES_PREFIX)) return undefined;
  const rest = key.slice(CATALOG_INSTANCES_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1 || rest.indexOf('/', slash + 1) !== -1) return undefined;
  return { service: rest.slice(0, slash), id: rest.slice(slash + 1) };
}

/**
 * The Instance stored in a value, or `undefined` when the value is not one (a key written under the
 * catalog prefix by hand through the KV API): readers skip such keys rather than fail.
 */
export function parseInstance(value: string): Instance | undefined {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const i = v as Partial<Instance>;
  if (
    typeof i.service !== 'string' ||
    typeof i.id !== 'string' ||
    typeof i.address !== 'string' ||
    typeof i.port !== 'number' ||
    typeof i.status !== 'string' ||
    !(INSTANCE_STATUSES as readonly string[]).includes(i.status) ||
    !Array.isArray(i.tags) ||
    typeof i.metadata !== 'object' ||
    i.metadata === null
  ) {
    return undefined;
  }
  return v as Instance;
}
