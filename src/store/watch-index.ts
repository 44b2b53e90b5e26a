/**
 * Finds the watchers a key concerns without looking at the others: exact-key watchers in a map, prefix
 * watchers in a byte trie. Matching a key costs one map lookup plus one step per byte of the key, however
 * many watchers exist, so a write wakes only the watchers whose key or prefix it touches.
 */

interface TrieNode<W> {
  readonly children: Map<number, TrieNode<W>>;
  readonly watchers: Set<W>;
}

function node<W>(): TrieNode<W> {
  return { children: new Map(), watchers: new Set() };
}

/**
 * @example
 * ```ts
 * const index = new WatchIndex<string>();
 * index.add(Buffer.from('/svc/'), true, 'w1');
 * index.match(Buffer.from('/svc/a'), (w) => console.log(w)); // w1
 * ```
 */
export class WatchIndex<W> {
  readonly #exact = new Map<string, Set<W>>();
  readonly #root: TrieNode<W> = node();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(key: Uint8Array, prefix: boolean, watcher: W): void {
    let set: Set<W>;
    if (prefix) {
      let at = this.#root;
      for (const b of key) {
        let next = at.children.get(b);
        if (next === undefined) {
          next = node();
          at.children.set(b, next);
        }
        at = next;
      }
      set = at.watchers;
    } else {
      const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
      let s = this.#exact.get(k);
      if (s === undefined) {
        s = new Set();
        this.#exact.set(k, s);
      }
      set = s;
    }
    if (!set.has(watcher)) {
      set.add(watcher);
      this.#size++;
    }
  }

  remove(key: Uint8Array, prefix: boolean, watcher: W): void {
    if (!prefix) {
      const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
      const s = this.#exact.get(k);
      if (s?.delete(watcher) === true) {
        this.#size--;
        if (s.size === 0) this.#exact.delete(k);
      }
      return;
    }
    const path: TrieNode<W>[] = [this.#root];
    for (const b of key) {
      const next = path[path.length - 1]!.children.get(b);
      if (next === undefined) return;
      path.push(next);
    }
    if (!path[path.length - 1]!.watchers.delete(watcher)) return;
    this.#size--;
    // Prune empty branches so a churn of short-lived prefix watchers does not leak trie nodes.
    for (let i = path.length - 1; i > 0; i--) {
      const n = path[i]!;
      if (n.watchers.size > 0 || n.children.size > 0) break;
      path[i - 1]!.children.delete(key[i - 1]!);
    }
  }

  /** Calls `visit` once for every watcher of `key`: exact watchers of it and prefix watchers of its prefixes. */
  match(key: Uint8Array, visit: (watcher: W) => void): void {
    if (this.#exact.size > 0) {
      const s = this.#exact.get(Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1'));
      if (s !== undefined) for (const w of s) visit(w);
    }
    let at: TrieNode<W> | undefined = this.#root;
    for (let i = 0; at !== undefined; i++) {
      for (const w of at.watchers) visit(w);
      if (i === key.length) break;
      at = at.children.get(key[i]!);
    }
  }
}
