/**
 * `spofless/client`: the SDK a service embeds. Register an instance under a lease kept alive, discover
 * the instances of the services it calls (a live list that fails static), balance calls over them with
 * a breaker per instance, and shut down gracefully.
 *
 * @example
 * ```ts
 * import { ControlPlaneClient } from 'spofless/client';
 * const cp = new ControlPlaneClient({ url: process.env.SPOFLESS_URL });
 * const reg = await cp.register({ service: 'api', id: 'api-1', address: '127.0.0.1', port: 8080 }, { ttl: 10 });
 * reg.installShutdown({ server });
 * const users = await cp.discover('users', { zone: 'eu-1a' });
 * const res = await users.request('/users/42');
 * ```
 */
export { ControlPlaneClient, DEFAULT_URL, type ControlPlaneClientOptions, type CallOptions } from './client.js';
export { Discovery, type DiscoverOptions, type DiscoveryChange, type DiscoverySource } from './discovery.js';
export {
  Registration,
  type InstanceRegistration,
  type RegisterOptions,
  type RegistrationEvent,
  type ShutdownHandle,
  type ShutdownOptions,
} from './registration.js';
export type { KeepAliveStreamStats } from './keepalive-stream.js';
export { Watch, type WatchMessage, type WatchOptions } from './watch.js';
export { FlagClient, type FlagChange, type FlagClientOptions, type FlagClientState, type FlagSource } from './flags.js';
export { SpoflessProvider, type SpoflessProviderOptions } from './openfeature.js';
export { roundRobin, leastRequest, zoneAware, type Balancer, type Endpoint, type LeastRequestOptions, type ZoneAwareOptions } from './balancer.js';
export { SseParser, type SseMessage, type SseParserCallbacks } from './sse.js';
export { closeGracefully, trackRequests, type CloseOptions, type CloseResult, type ServerLike } from './shutdown.js';
export { connectionFailureCode } from './http.js';
export type { Disposable } from './listeners.js';
export {
  InstanceStatus,
  CATALOG_INSTANCES_PREFIX,
  instancesPrefix,
  type DeleteResult,
  type HealthCheck,
  type Instance,
  type InstanceSpec,
  type KeyValue,
  type LeaseGrant,
  type LeaseInfo,
  type PutResult,
  type RangeResult,
  type ServiceSummary,
  type TxnCompare,
  type TxnOp,
  type TxnRequest,
  type TxnResult,
  type WatchEvent,
} from './types.js';
export {
  ClientClosedError,
  ControlPlaneError,
  ControlPlaneUnreachableError,
  NoInstanceAvailableError,
  CompactedError,
  isSpoflessError,
  ErrorCode,
} from '../errors/index.js';
