/** What every policy hands the operation it runs: the signal that says "stop, the caller gave up". */
export interface PolicyContext {
  readonly signal: AbortSignal;
}

/** The work a policy runs. It may return a value or a promise of one; it should honour `signal`. */
export type Operation<T, C extends PolicyContext = PolicyContext> = (context: C) => PromiseLike<T> | T;

/** A resilience policy: breaker, retry, timeout, bulkhead, or a composition of them (`wrap`). */
export interface Policy<C extends PolicyContext = PolicyContext> {
  /**
   * Runs `fn` under this policy. `signal` aborts the whole call (including waits between retries);
   * the operation receives a signal that is aborted when the caller's is, or when a timeout fires.
   */
  execute<T>(fn: Operation<T, C>, signal?: AbortSignal): Promise<T>;
}

/** The no-throw outcome of a call: a rejected circuit costs no exception. */
export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** A signal that is never aborted, shared so a call without a signal allocates nothing. */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/** The context handed to operations called without a signal; shared, frozen. */
export const DEFAULT_CONTEXT: PolicyContext = Object.freeze({ signal: NEVER_ABORTED });
