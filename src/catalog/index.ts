/**
 * `spofless/catalog`: services and instances on a `Store`, registration under a lease, drain, and the
 * active health checks the control plane runs.
 *
 * @example
 * ```ts
 * import { Catalog, HealthChecker } from 'spofless/catalog';
 * const catalog = new Catalog(store);
 * await catalog.register('api', 'api-1', { address: '127.0.0.1', port: 8080, ttl: 10,
 *   check: { type: 'http', path: '/healthz', interval: 2_000, rise: 2, fall: 3 } });
 * const checker = new HealthChecker({ store });
 * await checker.start();
 * ```
 */
export { Catalog } from './catalog.js';
export type { CatalogOptions, InstanceVersion, RegisterOptions, SetStatusOptions } from './catalog.js';
export { HealthChecker } from './health.js';
export type {
  CatalogLogger,
  CheckResultEvent,
  Disposable,
  HealthCheckerOptions,
  StatusChangeEvent,
} from './health.js';
export { CATALOG_INSTANCES_PREFIX, instanceKey, instancesPrefix, parseInstance, parseInstanceKey } from './keys.js';
export { defaultProbe, probeHttp, probeTcp, MAX_PROBE_BODY_BYTES } from './probe.js';
export type { Probe, ProbeResult } from './probe.js';
export { ManualTimers, realTimers } from './timers.js';
export type { Clock, Timers } from './timers.js';
export { DEFAULT_REGISTRATION_TTL, INSTANCE_STATUSES, InstanceStatus } from './types.js';
export type {
  HealthCheck,
  HealthCheckInput,
  Instance,
  InstanceResult,
  ListInstancesFilter,
  RegisterInput,
  RegisterResult,
  ServiceSummary,
} from './types.js';
export { CHECK_DEFAULTS, checkHealthCheck, checkName, checkRegistration, checkStatus } from './validate.js';
export type { CheckedRegistration } from './validate.js';
export { CatalogConflictError, InstanceNotFoundError } from '../errors/index.js';
