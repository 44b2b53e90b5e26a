/**
 * Where flags live in the store. One key per flag and per segment, under one prefix per environment,
 * so a watch of `envPrefix(env)` delivers every change of that environment and nothing else. The audit
 * log lives under its own prefix (not below `envPrefix`), so SDK streams do not carry it.
 *
 * | key                                            | value                      |
 * |------------------------------------------------|----------------------------|
 * | `/spofless/flags/<env>/flags/<flag>`           | the `Flag` as JSON         |
 * | `/spofless/flags/<env>/segments/<segment>`     | the `Segment` as JSON      |
 * | `/spofless/flags-audit/<env>/<ms>-<random>`    | an `AuditRecord` as JSON   |
 */

export const FLAGS_ROOT = '/spofless/flags/';
export const AUDIT_ROOT = '/spofless/flags-audit/';

/** Every key of one environment (flags and segments). */
export function envPrefix(env: string): string {
  return `${FLAGS_ROOT}${env}/`;
}
export function flagsPrefix(env: string): string {
  return `${FLAGS_ROOT}${env}/flags/`;
}
export function segmentsPrefix(env: string): string {
  return `${FLAGS_ROOT}${env}/segments/`;
}
export function flagKey(env: string, flag: string): string {
  return `${flagsPrefix(env)}${flag}`;
}
export function segmentKey(env: string, segment: string): string {
  return `${segmentsPrefix(env)}${segment}`;
}
export function auditPrefix(env: string): string {
  return `${AUDIT_ROOT}${env}/`;
}
/** An audit key: time-ordered (zero-padded ms), unique (random suffix). */
export function auditKey(env: string, at: number, random: string): string {
  return `${auditPrefix(env)}${String(at).padStart(15, '0')}-${random}`;
}

/** What a key under `envPrefix(env)` holds: a flag or a segment and its name, or undefined. */
export function parseEnvKey(env: string, key: string): { kind: 'flag' | 'segment'; name: string } | undefined {
  const base = envPrefix(env);
  if (!key.startsWith(base)) return undefined;
  const rest = key.slice(base.length);
  if (rest.startsWith('flags/')) return { kind: 'flag', name: rest.slice(6) };
  if (rest.startsWith('segments/')) return { kind: 'segment', name: rest.slice(9) };
  return undefined;
}
