/**
 * `spofless/routing`: the route model shared by the control plane and the gateways.
 */
export type {
  BalancerKind,
  FallbackResponse,
  HashKey,
  RetryOn,
  RetryPolicy,
  Route,
  RouteBreaker,
  RouteMatch,
  RouteTimeouts,
  TrafficPolicy,
} from './types.js';
export { ROUTES_PREFIX, routeKey, routeNameOf } from './keys.js';
export { BALANCER_KINDS, DEFAULT_FORCE_HEADER, ROUTE_NAME_PATTERN, parseRoute, serializeRoute, validateRoute } from './validate.js';
export { deleteRoute, getRoute, listRoutes, putRoute, storedRouteOf } from './store.js';
export type { RouteList, StoredRoute, WriteResult, WriteRouteOptions } from './store.js';
export { countVersionInstances, deployStatus, promote, rollback, setCanary, switchColor } from './deploy.js';
export type { DeployOptions, DeployResult, DeployStatus, VersionStatus } from './deploy.js';
export { DeployRefusedError, RouteConflictError, RouteNotFoundError } from '../errors/index.js';
