/** Returned by every `on...` subscription: call `dispose()` to unsubscribe. */
export interface Disposable {
  dispose(): void;
}

/**
 * A small listener list. A listener that throws does not stop the others or the caller: its error is
 * re-thrown on `process.nextTick`, as an uncaught exception would be.
 */
export class Listeners<T> {
  #list: Array<(value: T) => void> = [];

  get size(): number {
    return this.#list.length;
  }

  subscribe(listener: (value: T) => void): Disposable {
    // A fresh array on change keeps an emit in progress stable when a listener unsubscribes.
    this.#list = [...this.#list, listener];
    return {
      dispose: () => {
        this.#list = this.#list.filter((l) => l !== listener);
      },
    };
  }

  emit(value: T): void {
    for (const listener of this.#list) {
      try {
        listener(value);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}
