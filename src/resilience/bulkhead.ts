/**
 * A bulkhead: at most `maxConcurrent` calls run at once, at most `maxQueue` more wait in line (first in,
 * first out), and any call beyond that is refused at once with `BulkheadRejectedError`. It keeps one
 * slow dependency from taking every connection, socket or worker of the process with it.
 *
 * A refused call costs one already-rejected promise: no timer, no listener, no queue entry. A queued
 * caller whose signal aborts leaves the line at once and rejects with `AbortedError`. A running call is
 * not interrupted by the bulkhead: it gets the caller's signal as it is.
 *
 * @example
 * ```ts
 * import { Bulkhead } from 'spofless/resilience';
 * const bulkhead = new Bulkhead({ maxConcurrent: 10, maxQueue: 50 });
 * const report = await bulkhead.execute(({ signal }) => renderReport(id, { signal }), req.signal);
 * ```
 */
import { BulkheadRejectedError, InvalidOptionError } from '../errors/index.js';
import { Emitter, type Disposable } from './events.js';
import { DEFAULT_CONTEXT, NEVER_ABORTED, type Operation, type Policy } from './policy.js';
import { errorForAbort } from './timeout.js';

/**
 * Options of {@link Bulkhead}.
 *
 * @example
 * ```ts
 * const options: BulkheadOptions = { maxConcurrent: 8, maxQueue: 32 };
 * ```
 */
export interface BulkheadOptions {
  /** Calls that may run at once: an integer >= 1. */
  readonly maxConcurrent: number;
  /** Calls that may wait for a slot: an integer >= 0. Default 0 (refuse as soon as all slots are busy). */
  readonly maxQueue?: number;
}

/**
 * Emitted when the bulkhead refuses a call.
 *
 * @example
 * ```ts
 * bulkhead.onReject(({ executing, queued }: BulkheadRejectEvent) => log.warn({ executing, queued }, 'bulkhead full'));
 * ```
 */
export interface BulkheadRejectEvent {
  /** Calls running at the time (always `maxConcurrent`). */
  readonly executing: number;
  /** Calls waiting at the time (always `maxQueue`). */
  readonly queued: number;
}

interface Waiter {
  // Runs the queued call in the slot just freed.
  readonly start: () => void;
}

/**
 * Limits concurrent calls; see the module comment.
 *
 * @example
 * ```ts
 * const bulkhead = new Bulkhead({ maxConcurrent: 4, maxQueue: 16 });
 * bulkhead.onReject(({ executing, queued }) => metrics.increment('bulkhead.rejected', { executing, queued }));
 * console.log(bulkhead.executing, bulkhead.queued);
 * ```
 */
export class Bulkhead implements Policy {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  #executing = 0;
  readonly #queue: Waiter[] = [];
  readonly #onReject = new Emitter<BulkheadRejectEvent>();
  /** Subscribes to refused calls; returns a disposable. */
  readonly onReject: (listener: (event: BulkheadRejectEvent) => void) => Disposable = this.#onReject.subscribe;

  constructor(options: BulkheadOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('Bulkhead', 'options', options, 'an object with maxConcurrent');
    }
    const { maxConcurrent, maxQueue = 0 } = options;
    if (!(Number.isSafeInteger(maxConcurrent) && maxConcurrent >= 1)) {
      throw new InvalidOptionError('Bulkhead', 'maxConcurrent', maxConcurrent, 'an integer >= 1');
    }
    if (!(Number.isSafeInteger(maxQueue) && maxQueue >= 0)) {
      throw new InvalidOptionError('Bulkhead', 'maxQueue', maxQueue, 'an integer >= 0');
    }
    this.maxConcurrent = maxConcurrent;
    this.maxQueue = maxQueue;
  }

  /** Calls running now. */
  get executing(): number {
    return this.#executing;
  }

  /** Calls waiting for a slot now. */
  get queued(): number {
    return this.#queue.length;
  }

  execute<T>(fn: Operation<T>, signal?: AbortSignal): Promise<T> {
    // The shared never-aborted signal needs no listener and no context of its own.
    const caller = signal === NEVER_ABORTED ? undefined : signal;
    if (caller?.aborted) return Promise.reject(errorForAbort(caller));
    if (this.#executing < this.maxConcurrent) return this.#run(fn, caller);
    if (this.#queue.length >= this.maxQueue) {
      this.#onReject.emit({ executing: this.#executing, queued: this.#queue.length });
      return Promise.reject(new BulkheadRejectedError(this.maxConcurrent, this.maxQueue));
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(errorForAbort(caller!));
      };
      const waiter: Waiter = {
        start: () => {
          caller?.removeEventListener('abort', onAbort);
          resolve(this.#run(fn, caller));
        },
      };
      caller?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  async #run<T>(fn: Operation<T>, signal: AbortSignal | undefined): Promise<T> {
    this.#executing++;
    try {
      return await fn(signal === undefined ? DEFAULT_CONTEXT : { signal });
    } finally {
      this.#release();
    }
  }

  #release(): void {
    this.#executing--;
    // Started here, synchronously, so that no new caller can take the freed slot ahead of the line.
    this.#queue.shift()?.start();
  }
}
