/**
 * `node:diagnostics_channel` channels the resilience policies publish to. Publishing is guarded by
 * `hasSubscribers`, so a channel nobody listens to costs one property read.
 *
 * @example
 * ```ts
 * import diagnostics_channel from 'node:diagnostics_channel';
 * diagnostics_channel.subscribe('spofless:breaker:state', (msg) => console.log(msg));
 * ```
 */
import diagnostics_channel from 'node:diagnostics_channel';

export const channels = {
  /** `{ name, breaker, from, to, reason }` on every breaker state change. */
  breakerState: diagnostics_channel.channel('spofless:breaker:state'),
  /** `{ name, breaker, slow }` when a call through a breaker succeeds. */
  breakerSuccess: diagnostics_channel.channel('spofless:breaker:success'),
  /** `{ name, breaker, error, value, slow }` when a call through a breaker fails. */
  breakerFailure: diagnostics_channel.channel('spofless:breaker:failure'),
  /** `{ name, breaker, state, error }` when a breaker refuses a call. */
  breakerReject: diagnostics_channel.channel('spofless:breaker:reject'),
} as const;
