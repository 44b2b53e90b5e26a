/**
 * Control-plane replicas: which replica runs the work that must run once (active health checks, and
 * later the rollout controller), and `GET /v1/leader`, which says whether this replica leads.
 *
 * Every replica answers every request from the shared store; only the elected leader runs the checker,
 * and the checker's status writes carry the leader's fence, so a deposed leader's late write is refused
 * by the store. On a store only one process can open (SQLite) there is nothing to elect: the one
 * replica leads (`mode: 'single'`).
 *
 * Leader duties follow the election (`#apply`, serialised, so a quick lose-win-lose never runs two
 * `start()`s at once):
 * | election state         | health checker |
 * |------------------------|----------------|
 * | leader                 | started        |
 * | anything else          | stopped        |
 * A `start()` that fails (the store unreachable for the first listing) is tried again every second
 * while the replica still leads.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { HealthChecker } from '../catalog/index.js';
import { Election, type ElectionState } from '../election/index.js';
import { ErrorCode, InvalidOptionError, NotLeaderError } from '../errors/index.js';
import type { Compare, Store } from '../store/index.js';

/**
 * The `election` option of `startControlPlane`.
 *
 * @example
 * ```ts
 * const election: ReplicaElectionOptions = { ttl: 10, id: 'cp-eu-1a' };
 * ```
 */
export interface ReplicaElectionOptions {
  /** Lease TTL of the election, whole seconds. A dead leader is replaced within about this long. Default 10. */
  readonly ttl?: number;
  /** This replica's name in the election (shown by `GET /v1/leader`). Default `<hostname>:<pid>:<port>`. */
  readonly id?: string;
  /** The election's name; replicas of one control plane share it. Default `control-plane`. */
  readonly name?: string;
}

/** What `GET /v1/leader` answers. */
export interface LeaderStatus {
  /** `election`: replicas elect a leader; `single`: this is the only replica (SQLite), it leads. */
  readonly mode: 'election' | 'single';
  /** Whether this replica leads now (by its local deadline). */
  readonly leader: boolean;
  /** This replica's election state. */
  readonly state: ElectionState['value'] | 'single';
  readonly id: string;
  /** This replica's fencing token while it leads. */
  readonly token?: number;
  /** The election TTL, seconds (election mode). */
  readonly ttl?: number;
  /** Who leads, as stored (election mode; `null` when nobody campaigns). */
  readonly current?: { readonly id: string; readonly token: number } | null;
}

/** Internal: owned by `startControlPlane`. */
export class Replica {
  readonly election: Election | undefined;
  readonly #id: string;
  readonly #checker: HealthChecker | undefined;
  readonly #log: FastifyBaseLogger;
  #chain: Promise<void> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: {
    store: Store;
    election: Election | undefined;
    id: string;
    checker: HealthChecker | undefined;
    log: FastifyBaseLogger;
  }) {
    this.election = options.election;
    this.#id = options.id;
    this.#checker = options.checker;
    this.#log = options.log;
    this.election?.onChange((c) => {
      this.#log.info({ from: c.from, to: c.to, reason: c.reason, token: c.state.value === 'leader' ? c.state.leadership.token : undefined }, `election: ${c.to}`);
      this.#apply();
    });
  }

  /** Checks the `election` option where it enters (the `Election` checks its fields again). */
  static check(option: unknown): void {
    if (option === undefined || option === true || option === false) return;
    if (typeof option !== 'object' || option === null) throw new InvalidOptionError('startControlPlane', 'election', option, 'true, false or { ttl, id, name }');
    const o = option as ReplicaElectionOptions;
    if (o.ttl !== undefined && (!Number.isInteger(o.ttl) || o.ttl < 1 || o.ttl > 3600)) throw new InvalidOptionError('startControlPlane', 'election.ttl', o.ttl, 'whole seconds from 1 to 3600');
    if (o.id !== undefined && (typeof o.id !== 'string' || o.id === '')) throw new InvalidOptionError('startControlPlane', 'election.id', o.id, 'a non-empty string');
    if (o.name !== undefined && (typeof o.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.name))) throw new InvalidOptionError('startControlPlane', 'election.name', o.name, '1 to 64 characters of A-Z a-z 0-9 . _ -');
  }

  /** Makes an `Election` for the replica, or none for a single control plane. */
  static election(store: Store, option: boolean | ReplicaElectionOptions | undefined, single: boolean, defaultId: string, log: FastifyBaseLogger): Election | undefined {
    if (option === false || (option === undefined && single)) return undefined;
    const o = option === true || option === undefined ? {} : option;
    return new Election({ store, name: o.name ?? 'control-plane', id: o.id ?? defaultId, ttl: o.ttl ?? 10, logger: log });
  }

  /** The fence of the checker's status writes: the leader's compares, or `NotLeaderError`. */
  fence(): readonly Compare[] {
    if (this.election === undefined) return [];
    const l = this.election.leadership;
    if (l === undefined) throw new NotLeaderError(this.election.name, `${this.#id} does not lead the control plane`);
    return l.fence();
  }

  get isLeader(): boolean {
    return this.election === undefined || this.election.isLeader;
  }

  /** Starts campaigning (or, single, the leader's duties at once). */
  start(): Promise<void> {
    if (this.election === undefined) {
      this.#apply();
      return this.#chain;
    }
    this.election.campaign();
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    await this.#checker?.stop();
    await this.election?.close();
    await this.#chain;
  }

  async status(): Promise<LeaderStatus> {
    const e = this.election;
    if (e === undefined) return { mode: 'single', leader: true, state: 'single', id: this.#id };
    const state = e.state;
    const l = state.value === 'leader' ? state.leadership : undefined;
    const current = await e.leader();
    return {
      mode: 'election',
      leader: l !== undefined,
      state: state.value,
      id: e.id,
      ...(l !== undefined ? { token: l.token } : {}),
      ttl: e.ttl,
      current: current === undefined ? null : { id: current.id, token: current.token },
    };
  }

  #apply(): void {
    this.#chain = this.#chain.then(async () => {
      const checker = this.#checker;
      if (checker === undefined) return;
      const leading = !this.#closed && this.isLeader;
      if (leading && !checker.running) {
        try {
          await checker.start();
          this.#log.info({}, 'health checker: started (this replica leads)');
        } catch (err) {
          this.#log.warn({ err }, 'health checker: could not start; trying again in 1 s');
          clearTimeout(this.#retry);
          this.#retry = setTimeout(() => this.#apply(), 1_000);
          this.#retry.unref();
        }
      } else if (!leading && checker.running) {
        await checker.stop();
        this.#log.info({}, 'health checker: stopped (this replica does not lead)');
      }
    });
  }
}

/** `GET /v1/leader`: whether this replica leads, and who does. */
export function registerLeaderRoute(app: FastifyInstance, replica: () => Replica | undefined): void {
  app.get('/v1/leader', async (_req, reply) => {
    const r = replica();
    if (r === undefined) return reply.code(503).send({ error: { code: ErrorCode.HttpUnavailable, message: 'the control plane is starting' } });
    return r.status();
  });
}
