/** Returned by every `on...` subscription: call `dispose()` to unsubscribe. */
export interface Disposable {
  dispose(): void;
}

/**
 * A minimal event source. `emit` costs one length check when nobody listens, which keeps events off
 * the hot path. Listeners that throw do not break the caller: the error is reported on
 * `process.nextTick` as an uncaught exception would be, after every other listener has run.
 */
export class Emitter<T> {
  #listeners: Array<(value: T) => void> = [];

  get size(): number {
    return this.#listeners.length;
  }

  /** Subscribes; the returned disposable unsubscribes (idempotent). */
  subscribe = (listener: (value: T) => void): Disposable => {
    // A fresh array on change keeps an emit in progress stable when a listener unsubscribes.
    this.#listeners = [...this.#listeners, listener];
    let done = false;
    return {
      dispose: () => {
        if (done) return;
        done = true;
        const i = this.#listeners.indexOf(listener);
        if (i >= 0) this.#listeners = this.#listeners.filter((_, j) => j !== i);
      },
    };
  };

  emit(value: T): void {
    const ls = this.#listeners;
    for (let i = 0; i < ls.length; i++) {
      try {
        ls[i]!(value);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}
