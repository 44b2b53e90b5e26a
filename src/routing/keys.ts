/** Where routes live in the store. Every gateway watches `ROUTES_PREFIX`. */
export const ROUTES_PREFIX = '/spofless/routes/';

/**
 * @example
 * ```ts
 * routeKey('api'); // '/spofless/routes/api'
 * ```
 */
export function routeKey(name: string): string {
  return `${ROUTES_PREFIX}${name}`;
}

/** The route name of a key under {@link ROUTES_PREFIX}, or `undefined`. */
export function routeNameOf(key: string): string | undefined {
  if (!key.startsWith(ROUTES_PREFIX)) return undefined;
  const name = key.slice(ROUTES_PREFIX.length);
  return name.length > 0 && !name.includes('/') ? name : undefined;
}
