/**
 * Composition: `wrap(a, b, c)` is one policy that runs a call through `a`, then `b`, then `c`, with one
 * `AbortSignal` flowing through all of them:
 *
 * ```ts
 * wrap(retry, breaker, timeout, bulkhead).execute(fn, signal)
 * // is
 * retry.execute((c1) =>
 *   breaker.execute((c2) =>
 *     timeout.execute((c3) =>
 *       bulkhead.execute(fn, c3.signal), c2.signal), c1.signal), signal)
 * ```
 *
 * The order is the caller's choice and matters: a timeout outside a retry bounds all attempts together
 * (a deadline), inside it each attempt; a bulkhead inside a retry holds a slot per attempt, outside it
 * one for the whole call. Any object with the `Policy` `execute` signature can take part, including a
 * `CircuitBreaker`, whose fallback type joins the result type (see {@link ExtraResultOf}).
 *
 * The operation receives the contexts of all the policies merged into one object, outer fields first,
 * so `attempt` from a retry reaches it however deep the retry sits; `signal` is the innermost policy's,
 * which aborts whenever an outer one does. Contexts are merged with object spread: policies' contexts
 * are plain objects, and only their own enumerable fields are carried.
 *
 * @example
 * ```ts
 * import { wrap, RetryPolicy, TimeoutPolicy, Bulkhead, CircuitBreaker } from 'spofless/resilience';
 * const policy = wrap(
 *   new TimeoutPolicy({ duration: 2_000 }),  // overall deadline
 *   new RetryPolicy({ maxAttempts: 3 }),
 *   new CircuitBreaker(),
 *   new TimeoutPolicy({ duration: 500 }),    // per attempt
 *   new Bulkhead({ maxConcurrent: 10 }),
 * );
 * const res = await policy.execute(({ signal, attempt }) => fetch(url, { signal, headers: { 'x-attempt': `${attempt}` } }), req.signal);
 * ```
 */
import { DEFAULT_CONTEXT, NEVER_ABORTED, type Operation, type PolicyContext } from './policy.js';

/**
 * Anything with a policy's `execute`: every spofless policy, and any user-made one. `C` is the context it
 * gives its operation; `F` is what it may resolve with besides the operation's own value (a breaker's
 * fallback), `never` for most policies.
 *
 * @example
 * ```ts
 * const logging: PolicyLike = {
 *   execute: async (fn, signal) => {
 *     console.time('call');
 *     try { return await fn({ signal: signal ?? NEVER_ABORTED }); } finally { console.timeEnd('call'); }
 *   },
 * };
 * ```
 */
export interface PolicyLike<C extends PolicyContext = PolicyContext, F = never> {
  execute<T>(fn: Operation<T, C>, signal?: AbortSignal): Promise<T | F>;
}

// A type no operation returns, used to ask "does this policy resolve with the operation's value only?".
declare const _probe: unique symbol;
type Probe = typeof _probe;

/**
 * The context a policy gives its operation.
 *
 * @example
 * ```ts
 * type C = ContextOf<RetryPolicy>; // RetryContext: { signal; attempt }
 * ```
 */
export type ContextOf<P> = P extends { execute<T>(fn: Operation<T, infer C>, signal?: AbortSignal): Promise<unknown> } ? C : never;

/**
 * What a policy may resolve with besides the operation's own value: a `CircuitBreaker`'s fallback type
 * (read from its type-only `fallbackType`), `never` for a policy that resolves with the operation's
 * value only, `unknown` for any other policy that may resolve with something else (TypeScript erases a
 * generic method's type parameter when inferring from it, so it cannot be read off `execute`).
 *
 * @example
 * ```ts
 * type A = ExtraResultOf<RetryPolicy>; // never
 * type B = ExtraResultOf<CircuitBreaker<{ stale: true }>>; // { stale: true }
 * ```
 */
export type ExtraResultOf<P> = P extends { readonly fallbackType?: infer F }
  ? F
  : P extends { execute(fn: Operation<Probe, PolicyContext>, signal?: AbortSignal): Promise<Probe> }
    ? never
    : unknown;

type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/**
 * The context the operation of `wrap(...policies)` receives: every policy's context merged.
 *
 * @example
 * ```ts
 * type C = WrappedContext<[RetryPolicy, TimeoutPolicy]>; // { signal; attempt }
 * ```
 */
export type WrappedContext<P extends readonly unknown[]> = PolicyContext & Intersection<ContextOf<P[number]>>;

/**
 * The policy `wrap` returns. `policies` lists the wrapped policies, outermost first.
 *
 * @example
 * ```ts
 * const policy = wrap(retry, timeout);
 * policy.policies; // [retry, timeout]
 * ```
 */
export class PolicyWrap<C extends PolicyContext = PolicyContext, F = never> implements PolicyLike<C, F> {
  readonly policies: readonly PolicyLike<PolicyContext, unknown>[];

  constructor(policies: readonly PolicyLike<PolicyContext, unknown>[]) {
    this.policies = Object.freeze([...policies]);
  }

  execute<T>(fn: Operation<T, C>, signal?: AbortSignal): Promise<T | F> {
    const policies = this.policies;
    if (policies.length === 0) {
      // Nothing to wrap: behave like a policy that adds nothing (and lets nothing throw synchronously).
      const context = signal === undefined || signal === NEVER_ABORTED ? DEFAULT_CONTEXT : { signal };
      return new Promise<T>((resolve) => resolve(fn(context as C)));
    }
    // `merged` is the union of the contexts of the policies outside policy i; undefined at the top.
    const run = (i: number, merged: PolicyContext | undefined, inner: AbortSignal | undefined): Promise<unknown> =>
      policies[i]!.execute((context: PolicyContext) => {
        // The first context is passed on as is: nothing to merge, and no allocation.
        const next = merged === undefined ? context : { ...merged, ...context };
        return i + 1 === policies.length ? fn(next as C) : run(i + 1, next, next.signal);
      }, inner);
    return run(0, undefined, signal) as Promise<T | F>;
  }
}

/**
 * Composes policies, outermost first, into one; see the module comment.
 *
 * @example
 * ```ts
 * const policy = wrap(new RetryPolicy({ maxAttempts: 3 }), new TimeoutPolicy({ duration: 200 }));
 * await policy.execute(({ signal, attempt }) => call(attempt, { signal }));
 * ```
 */
export function wrap<const P extends readonly PolicyLike<PolicyContext, unknown>[]>(
  ...policies: P
): PolicyWrap<WrappedContext<P>, ExtraResultOf<P[number]>> {
  return new PolicyWrap(policies);
}
