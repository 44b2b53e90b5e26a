/**
 * Registration: an instance in the catalog under a lease that this process keeps alive.
 *
 * The lease is renewed every TTL/3 (minus up to 20% jitter, so instances started together do not
 * renew together) by one unref'd timer, over the client's keep-alive stream (one line per renewal; per
 * request while the stream is down, see keepalive-stream.ts). When a renewal finds the lease gone (the control plane says
 * 404: it expired while this process was paused or cut off), the registration grants a new lease and
 * registers again, with the status it had. When the control plane cannot be reached, renewals are
 * tried more often (every TTL/6) until it answers or the lease expires.
 *
 * States:
 *
 * | from     | to       | when                                                               |
 * |----------|----------|--------------------------------------------------------------------|
 * | active   | lost     | a renewal got 404: the lease and its key are gone                  |
 * | lost     | active   | a new lease was granted and the instance registered again          |
 * | active   | closed   | `deregister()`, `close()`, or the shutdown sequence                |
 *
 * Graceful shutdown (`installShutdown`), on SIGTERM or SIGINT:
 * 1. mark the instance `draining` (watchers stop sending it new calls) and keep serving `drainDelay` ms,
 *    the time they need to see it; 2. deregister (delete the key, revoke the lease); 3. stop accepting,
 *    let requests in flight finish (up to `grace` ms), close keep-alive connections as they go idle;
 * 4. run `onShutdown`; 5. let the process exit (and exit it after `exitTimeout` ms if something else
 *    still holds it open). A second signal during the sequence cuts every connection and exits at once.
 */
import { ControlPlaneError, InvalidOptionError, isSpoflessError, ErrorCode } from '../errors/index.js';
import type { RandomSource } from '../resilience/index.js';
import type { Transport } from './http.js';
import { Listeners, type Disposable } from './listeners.js';
import { checkSignals, closeGracefully, serverOf, trackRequests, type CloseResult, type ServerLike } from './shutdown.js';
import type { Instance, InstanceSpec, InstanceStatus, LeaseGrant } from './types.js';
import { sleep } from './watch.js';

/**
 * What to register: the instance's service and id, and its catalog fields.
 *
 * @example
 * ```ts
 * const me: InstanceRegistration = { service: 'api', id: 'api-1', address: '127.0.0.1', port: 8080, zone: 'a' };
 * ```
 */
export interface InstanceRegistration extends InstanceSpec {
  readonly service: string;
  readonly id: string;
}

/**
 * Options of `ControlPlaneClient.register()`.
 *
 * @example
 * ```ts
 * const options: RegisterOptions = { ttl: 10 };
 * ```
 */
export interface RegisterOptions {
  /** Lease TTL in whole seconds (>= 1). The instance disappears this long after its process dies. Default 10. */
  readonly ttl?: number;
  /** Aborts the first registration. */
  readonly signal?: AbortSignal;
  /** Random numbers for the renewal jitter (tests). */
  readonly random?: RandomSource;
}

/** What happens to a registration, for logs and tests. */
export type RegistrationEvent =
  | { readonly type: 'renewed'; readonly lease: string }
  | { readonly type: 'renew-failed'; readonly error: unknown }
  | { readonly type: 'lost'; readonly lease: string }
  | { readonly type: 'reregistered'; readonly lease: string; readonly revision: number }
  | { readonly type: 'reregister-failed'; readonly error: unknown }
  | { readonly type: 'draining' }
  | { readonly type: 'deregistered' };

/**
 * Options of {@link Registration.installShutdown}.
 *
 * @example
 * ```ts
 * const options: ShutdownOptions = { server, signals: ['SIGTERM'], grace: 5_000, drainDelay: 500 };
 * ```
 */
export interface ShutdownOptions {
  /** The server to close: a node http(s) server, or an object with one in `.server` (fastify). */
  readonly server: ServerLike;
  /** Default `['SIGTERM', 'SIGINT']`. */
  readonly signals?: readonly NodeJS.Signals[];
  /** How long requests in flight may take once the listener is closed, ms. Default 10 000. */
  readonly grace?: number;
  /** Mark the instance draining first (true, default) or deregister at once (false). */
  readonly drain?: boolean;
  /** Time between marking draining and closing the listener, ms: watchers need it to stop sending. Default 1 000. */
  readonly drainDelay?: number;
  /** Let the process end when done (true, default): exits after `exitTimeout` ms if something else holds it open. */
  readonly exit?: boolean;
  /** Default 1 000 ms. */
  readonly exitTimeout?: number;
  /** Runs after the server closed, before the exit (close databases, flush logs). */
  readonly onShutdown?: (result: CloseResult) => void | Promise<void>;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

/** Returned by `installShutdown`. */
export interface ShutdownHandle extends Disposable {
  /** Runs the shutdown sequence now, as a signal would (without exiting unless `exit`). */
  shutdown(): Promise<CloseResult>;
}

const OWNER = 'register';

/**
 * Renews a lease once; rejects with a 404 `ControlPlaneError` when the lease is gone. `attemptTimeout`:
 * how long one control plane may take to answer before the next is tried.
 */
export type Renew = (lease: string, signal: AbortSignal, attemptTimeout: number) => Promise<LeaseGrant>;

/**
 * A registered instance, kept alive. Made by `ControlPlaneClient.register()`.
 *
 * @example
 * ```ts
 * const reg = await client.register({ service: 'api', id, address: '127.0.0.1', port }, { ttl: 10 });
 * reg.installShutdown({ server });
 * ```
 */
export class Registration {
  readonly service: string;
  readonly id: string;
  readonly ttl: number;
  readonly #transport: Transport;
  readonly #spec: InstanceRegistration;
  readonly #random: RandomSource;
  readonly #events = new Listeners<RegistrationEvent>();
  #lease = '';
  #instance: Instance | undefined;
  #status: InstanceStatus | undefined;
  #state: 'active' | 'lost' | 'closed' = 'active';
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;

  readonly #renew: Renew;

  /**
   * Internal: use `ControlPlaneClient.register()`. `renew` renews a lease (the client's keep-alive
   * stream); default: one `POST /v1/leases/{id}/keepalive` per renewal.
   */
  constructor(transport: Transport, spec: InstanceRegistration, options: RegisterOptions = {}, renew?: Renew) {
    if (typeof spec !== 'object' || spec === null) throw new InvalidOptionError(OWNER, 'instance', spec, 'an object with service, id, address and port');
    for (const k of ['service', 'id', 'address'] as const) {
      if (typeof spec[k] !== 'string' || spec[k] === '') throw new InvalidOptionError(OWNER, k, spec[k], 'a non-empty string');
    }
    if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new InvalidOptionError(OWNER, 'port', spec.port, 'an integer from 1 to 65535');
    const ttl = options.ttl ?? 10;
    if (!Number.isInteger(ttl) || ttl < 1) throw new InvalidOptionError(OWNER, 'ttl', ttl, 'a whole number of seconds >= 1');
    this.#transport = transport;
    this.#spec = spec;
    this.service = spec.service;
    this.id = spec.id;
    this.ttl = ttl;
    this.#status = spec.status;
    this.#random = options.random ?? Math.random;
    this.#renew =
      renew ??
      ((lease, signal, timeout) => transport.json<LeaseGrant>('POST', `/v1/leases/${encodeURIComponent(lease)}/keepalive`, { signal, idempotent: true, timeout }));
  }

  /** The current lease id. */
  get lease(): string {
    return this.#lease;
  }

  /** The instance as the control plane last returned it. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  get state(): 'active' | 'lost' | 'closed' {
    return this.#state;
  }

  /** Renewals, losses, re-registrations. */
  onEvent(listener: (event: RegistrationEvent) => void): Disposable {
    return this.#events.subscribe(listener);
  }

  /** Internal: the first registration. */
  async start(signal?: AbortSignal): Promise<this> {
    await this.#register(signal);
    this.#schedule(this.#period());
    return this;
  }

  /** Marks the instance draining: it takes no new calls from balancers; renewals go on. */
  async drain(signal?: AbortSignal): Promise<void> {
    this.#status = 'draining';
    const res = await this.#transport.json<{ instance: Instance }>('POST', `${this.#path()}/drain`, { signal, idempotent: true });
    this.#instance = res.instance;
    this.#events.emit({ type: 'draining' });
  }

  /** Stops renewing, deletes the instance and revokes its lease. A missing instance or lease is not an error. */
  async deregister(signal?: AbortSignal): Promise<void> {
    this.#stop();
    await this.#inflight?.catch(() => undefined);
    try {
      await this.#transport.json('DELETE', this.#path(), { signal, idempotent: true });
    } catch (err) {
      if (!(err instanceof ControlPlaneError && err.status === 404)) throw err;
    }
    try {
      await this.#transport.json('DELETE', `/v1/leases/${this.#lease}`, { signal, idempotent: true });
    } catch (err) {
      if (!(err instanceof ControlPlaneError && err.status === 404)) throw err;
    }
    this.#events.emit({ type: 'deregistered' });
  }

  /** Stops renewing without deregistering: the instance disappears when its lease expires. */
  close(): void {
    this.#stop();
  }

  /**
   * Graceful shutdown on `signals`: drain (or deregister), stop accepting, wait for requests in
   * flight, then let the process exit. Install it before the server starts listening, so every
   * request is counted.
   *
   * @example
   * ```ts
   * const server = http.createServer(handler);
   * reg.installShutdown({ server, grace: 10_000 });
   * // fastify: reg.installShutdown({ server: app });   express: reg.installShutdown({ server: app.listen(port) })
   * ```
   */
  installShutdown(options: ShutdownOptions): ShutdownHandle {
    const owner = 'installShutdown';
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(owner, 'options', options, 'an object with a server');
    const server = serverOf(options.server, owner);
    const signals = checkSignals(owner, options.signals ?? ['SIGTERM', 'SIGINT']);
    const grace = checkMs(owner, 'grace', options.grace, 10_000);
    const drainDelay = checkMs(owner, 'drainDelay', options.drainDelay, 1_000);
    const exitTimeout = checkMs(owner, 'exitTimeout', options.exitTimeout, 1_000);
    const drainFirst = options.drain ?? true;
    const exit = options.exit ?? true;
    const log = options.log ?? ((): void => undefined);
    trackRequests(server);
    let running: Promise<CloseResult> | undefined;
    let disposed = false;

    const sequence = async (): Promise<CloseResult> => {
      // Every control-plane step is bounded: a control plane that is down must not hold the exit.
      const step = AbortSignal.timeout(Math.ceil(Math.max(1_000, Math.min(5_000, grace))));
      if (drainFirst) {
        try {
          await this.drain(step);
          log(`draining ${this.service}/${this.id} for ${drainDelay} ms`);
        } catch (err) {
          log(`could not mark ${this.service}/${this.id} draining: ${messageOf(err)}`);
        }
        await sleep(drainDelay, new AbortController().signal);
      }
      try {
        await this.deregister(AbortSignal.timeout(Math.ceil(Math.max(1_000, Math.min(5_000, grace)))));
        log(`deregistered ${this.service}/${this.id}`);
      } catch (err) {
        this.#stop();
        log(`could not deregister ${this.service}/${this.id} (its lease will expire): ${messageOf(err)}`);
      }
      const result = await closeGracefully(server, { grace });
      log(`server closed: ${result.inFlightAtStart} request(s) were in flight${result.forced ? `; cut after ${grace} ms` : ''}`);
      await options.onShutdown?.(result);
      return result;
    };

    const onSignal = (signal: NodeJS.Signals): void => {
      if (running !== undefined) {
        // Asked twice: stop waiting.
        log(`${signal} again: closing every connection now`);
        server.closeAllConnections();
        if (exit) process.exit(1);
        return;
      }
      log(`${signal}: shutting down`);
      running = sequence();
      running.then(
        () => {
          remove();
          if (exit) {
            process.exitCode ??= 0;
            setTimeout(() => process.exit(), exitTimeout).unref();
          }
        },
        (err: unknown) => {
          log(`shutdown failed: ${messageOf(err)}`);
          remove();
          if (exit) process.exit(1);
        },
      );
    };
    const remove = (): void => {
      if (disposed) return;
      disposed = true;
      for (const s of signals) process.removeListener(s, onSignal);
    };
    for (const s of signals) process.on(s, onSignal);
    return {
      dispose: remove,
      shutdown: () => (running ??= sequence()),
    };
  }

  // ---- internals -------------------------------------------------------------------------------

  #path(): string {
    return `/v1/catalog/services/${encodeURIComponent(this.service)}/instances/${encodeURIComponent(this.id)}`;
  }

  /** Grants a lease and puts the instance under it. */
  async #register(signal?: AbortSignal): Promise<void> {
    const grant = await this.#transport.json<LeaseGrant>('POST', '/v1/leases', { body: { ttl: this.ttl }, signal, idempotent: true });
    const { service: _s, id: _i, ...spec } = this.#spec;
    const body = { ...spec, ...(this.#status !== undefined ? { status: this.#status } : {}), lease: grant.id };
    try {
      const res = await this.#transport.json<{ instance: Instance; lease: string; revision: number }>('PUT', this.#path(), { body, signal, idempotent: true });
      this.#lease = grant.id;
      this.#instance = res.instance;
      if (this.#state === 'lost') this.#events.emit({ type: 'reregistered', lease: grant.id, revision: res.revision });
      if (this.#state !== 'closed') this.#state = 'active';
    } catch (err) {
      // Do not leave an unused lease behind.
      this.#transport.json('DELETE', `/v1/leases/${grant.id}`, { idempotent: true }).catch(() => undefined);
      throw err;
    }
  }

  #period(): number {
    return ((this.ttl * 1000) / 3) * (1 - 0.2 * this.#random());
  }

  #schedule(ms: number): void {
    if (this.#state === 'closed') return;
    this.#timer = setTimeout(() => {
      this.#inflight = this.#tick();
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#state === 'closed') return;
    const window = Math.ceil(Math.max(500, (this.ttl * 1000) / 3));
    const deadline = AbortSignal.timeout(window);
    try {
      if (this.#state === 'active') {
        try {
          // Half the window per control plane: a silent one leaves time to renew through another.
          await this.#renew(this.#lease, deadline, Math.max(250, window / 2));
          this.#events.emit({ type: 'renewed', lease: this.#lease });
          this.#schedule(this.#period());
          return;
        } catch (err) {
          if (!(err instanceof ControlPlaneError && (err.status === 404 || isSpoflessError(err, ErrorCode.StoreLeaseNotFound)))) throw err;
          this.#state = 'lost';
          this.#events.emit({ type: 'lost', lease: this.#lease });
        }
      }
      if (this.#state !== 'lost') return;
      try {
        await this.#register(deadline);
      } catch (err) {
        this.#events.emit({ type: 'reregister-failed', error: err });
        this.#schedule(this.#period() / 2);
        return;
      }
      this.#schedule(this.#period());
    } catch (err) {
      // The control plane did not answer: try again sooner, the lease is running out.
      this.#events.emit({ type: 'renew-failed', error: err });
      this.#schedule(this.#period() / 2);
    }
  }

  #stop(): void {
    this.#state = 'closed';
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function checkMs(owner: string, option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) throw new InvalidOptionError(owner, option, value, 'a finite number of ms >= 0');
  return value;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
