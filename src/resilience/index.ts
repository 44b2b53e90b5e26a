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
  TimeoutPolicy,
  Deadline,
  deadlineOf,
  remainingTime,
  errorForAbort,
  MAX_TIMER_DELAY,
  type TimeoutOptions,
  type TimeoutEvent,
  type DeadlineOptions,
} from './timeout.js';
export {
  RetryPolicy,
  isNeverRetried,
  retryAfterOf,
  parseRetryAfter,
  type RetryContext,
  type RetryOptions,
  type RetryEvent,
  type GiveUpEvent,
  type GiveUpReason,
} from './retry.js';
export {
  constantBackoff,
  exponentialBackoff,
  fullJitterBackoff,
  decorrelatedJitterBackoff,
  type Backoff,
  type RandomSource,
  type ExponentialBackoffOptions,
  type JitterBackoffOptions,
} from './backoff.js';
export { RetryBudget, type RetryBudgetOptions } from './budget.js';
export { Bulkhead, type BulkheadOptions, type BulkheadRejectEvent } from './bulkhead.js';
export { wrap, PolicyWrap, type PolicyLike, type ContextOf, type ExtraResultOf, type WrappedContext } from './wrap.js';
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
