/**
 * `spofless/resilience`: circuit breaker (with fallback), breaker groups, timeout, retry with a budget,
 * bulkhead, and their composition. No dependencies beyond Node itself.
 */
export {
  CircuitBreaker,
  BreakerStateName,
  normalizeBreakerOptions,
  sharedBreakerOptions,
  type CircuitBreakerOptions,
  type NormalizedBreakerOptions,
  type BreakerSnapshot,
  type BreakerMetrics,
  type WindowOptions,
  type OpenDuration,
  type StateChangeEvent,
  type SuccessEvent,
  type FailureEvent,
  type RejectEvent,
} from './breaker.js';
export { BreakerGroup, type BreakerGroupOptions } from './group.js';
export { ManualClock, coarseClock, preciseClock, COARSE_REFRESH_READS, type Clock } from './clock.js';
export { channels } from './diagnostics.js';
export type { Disposable } from './events.js';
export { DEFAULT_CONTEXT, NEVER_ABORTED, type Operation, type Policy, type PolicyContext, type Result } from './policy.js';
export type { WindowSnapshot } from './window.js';
export {
  SpoflessError,
  BrokenCircuitError,
  IsolatedCircuitError,
  TimeoutError,
  AbortedError,
  BulkheadRejectedError,
  RetryBudgetExhaustedError,
  InvalidOptionError,
  isSpoflessError,
  ErrorCode,
} from '../errors/index.js';
