/**
 * Leader election on any `Store` (etcd's `concurrency.Election`), with a fencing token and a local
 * deadline: a deposed or paused leader's late writes are refused by the store itself.
 *
 * @example
 * ```ts
 * import { Election } from 'spofless/election';
 * const election = new Election({ store, name: 'control-plane', ttl: 10 });
 * election.campaign();
 * const leadership = await election.whenLeader();
 * await leadership.txn({ success: [{ type: 'put', key: '/jobs/owner', value: leadership.id }] });
 * ```
 */
export { ELECTION_PREFIX, Election, isNotLeader } from './election.js';
export type {
  Disposable,
  ElectionChange,
  ElectionClock,
  ElectionLogger,
  ElectionOptions,
  ElectionState,
  ElectionTimers,
  LeaderInfo,
  Leadership,
} from './election.js';
export { NotLeaderError } from '../errors/index.js';
