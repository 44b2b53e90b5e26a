/**
 * List, then watch from the list's revision, and list again when the watch's history is gone: the loop
 * under `discover()` and the flags client (Kubernetes' reflector calls it ListAndWatch). What the list
 * and the events mean is the caller's; this owns the order, the backoff between failed lists, and the
 * lifetime (`life` aborted: every step stops, the current watch is closed).
 */
import type { Backoff } from '../resilience/index.js';
import { sleep, type Watch, type WatchMessage, type WatchOptions } from './watch.js';

export interface ListWatch<L> {
  /** Ends the loop. */
  readonly life: AbortSignal;
  /** Delay between failed lists (attempt counts from 0 within a run of failures), and the watch's. */
  readonly backoff: Backoff;
  /** The watch's heartbeat timeout, ms (the watch's default when absent). */
  readonly heartbeatTimeout?: number | undefined;
  /** One consistent list. */
  list(signal: AbortSignal): Promise<L>;
  /** A list arrived: it replaces the caller's state (and its revision). */
  onList(list: L): void;
  /** A list failed; `attempt` is 0 for the first failure of a run. */
  onListError?(attempt: number): void;
  /** The caller's revision now: a watch starts after it. */
  revision(): number;
  /** Opens the watch with these options (the caller keeps it to close it or read its state). */
  openWatch(options: WatchOptions): Watch;
  /** Every message of the watch but `compacted` (which this handles). */
  onMessage(msg: WatchMessage, watch: Watch): void;
  /** The watch ended: compacted, refused (a 4xx), or closed. */
  onWatchEnd(): void;
}

/** Lists until a list succeeds (`onList`), with backoff; false when `life` ended first. */
export async function listUntilDone<L>(lw: ListWatch<L>): Promise<boolean> {
  const { life } = lw;
  for (let attempt = 0; ; ) {
    if (life.aborted) return false;
    try {
      const list = await lw.list(life);
      if (life.aborted) return false;
      lw.onList(list);
      return true;
    } catch {
      if (life.aborted) return false;
      lw.onListError?.(attempt);
      await sleep(lw.backoff.delay(attempt++, 0), life);
    }
  }
}

/**
 * Watches from the caller's revision; when the watch's history is gone (compacted, or a 4xx on the
 * watch: nothing to resume), lists again and watches from the new revision. Returns when `life` ends
 * or a watch ends without needing a list (it was closed).
 */
export async function watchAndRelist<L>(lw: ListWatch<L>): Promise<void> {
  const { life } = lw;
  while (!life.aborted) {
    const watch = lw.openWatch({
      startRevision: lw.revision() + 1,
      backoff: lw.backoff,
      ...(lw.heartbeatTimeout !== undefined ? { heartbeatTimeout: lw.heartbeatTimeout } : {}),
    });
    if (life.aborted) watch.close();
    let relist = false;
    try {
      for await (const msg of watch) {
        if (msg.type === 'compacted') relist = true;
        else lw.onMessage(msg, watch);
      }
    } catch {
      relist = true;
    }
    lw.onWatchEnd();
    if (life.aborted || !relist) return;
    if (!(await listUntilDone(lw))) return;
  }
}
