/**
 * One Server-Sent Events stream on a raw `ServerResponse`: frames, backpressure accounting and an orderly
 * end. The watch hub decides what to send; this only knows how.
 *
 * `buffered` is what this process holds for the client and has not yet handed to the kernel
 * (`writableLength`: the response's own queue plus its socket's). The kernel's socket buffers come on
 * top and are bounded by the OS.
 */
import type { ServerResponse } from 'node:http';
import { ErrorCode } from '../errors/index.js';

/** How long a stream that was ended with unsent bytes may take to flush before its socket is destroyed. */
export const END_GRACE_MS = 10_000;

export function readyFrame(revision: number): string {
  return `event: ready\ndata: {"revision":${revision}}\n\n`;
}

/** An `events` frame; `data` is the JSON text of `{ revision, events }`. */
export function eventsFrame(revision: number, data: string): string {
  return `id: ${revision}\nevent: events\ndata: ${data}\n\n`;
}

export function compactedFrame(compactRevision: number, requestedRevision: number): string {
  const data = {
    code: ErrorCode.StoreCompacted,
    compactRevision,
    requestedRevision,
    message: `revision ${requestedRevision} has been compacted: the oldest revision still held is ${compactRevision}; re-list and watch from there`,
  };
  return `event: compacted\ndata: ${JSON.stringify(data)}\n\n`;
}

export function slowFrame(resumeFrom: number, buffered: number, limit: number): string {
  const data = {
    code: ErrorCode.WatchSlow,
    resumeFrom,
    message: `the subscriber had ${buffered} bytes unread (the limit is ${limit}): cut off; reconnect with Last-Event-ID: ${resumeFrom - 1}`,
  };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}

export const PING_FRAME = ': ping\n\n';

/**
 * A `progress` frame: every matching event up to `revision` has been sent on this stream. It carries no
 * `id` (it is not an event); a client that wants to resume after it asks from `revision + 1`.
 */
export function progressFrame(revision: number): string {
  return `event: progress\ndata: {"revision":${revision}}\n\n`;
}


export class SseStream {
  readonly #res: ServerResponse;
  #ended = false;
  #drainWaiters: ((drained: boolean) => void)[] = [];
  #closeListeners: (() => void)[] = [];

  constructor(res: ServerResponse) {
    this.#res = res;
    res.on('drain', () => this.#wake(true));
    res.on('close', () => {
      this.#ended = true;
      this.#wake(false);
      const ls = this.#closeListeners;
      this.#closeListeners = [];
      for (const l of ls) l();
    });
  }

  /** Sends the status line and headers. */
  open(): void {
    this.#res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // nginx and kin buffer responses unless told not to; a watch must not wait in a proxy.
      'x-accel-buffering': 'no',
      // When the stream ends (cut off, compacted, closing) the connection goes too: a client resumes on
      // a new one, and a stuck one does not keep an idle keep-alive socket for a minute.
      connection: 'close',
    });
    this.#res.flushHeaders();
  }

  /** Bytes written and not yet taken by the kernel. */
  get buffered(): number {
    return this.#res.writableLength;
  }

  /** True once ended by us or closed by the client. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Called once when the connection closes (client gone, or after `end`). */
  onClose(listener: () => void): void {
    if (this.#res.closed) listener();
    else this.#closeListeners.push(listener);
  }

  /** Writes a frame; false when the buffer is past Node's high-water mark (wait for `drained`). */
  write(frame: string): boolean {
    if (this.#ended) return false;
    return this.#res.write(frame);
  }

  /** Resolves true when the buffer has drained, false if the stream ended first. */
  drained(): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    if (this.#res.writableLength === 0) return Promise.resolve(true);
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Ends the stream after an optional last frame. A client that does not read what is still buffered
   * within `END_GRACE_MS` has its socket destroyed, so a stuck reader cannot hold memory forever.
   */
  end(last?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    const res = this.#res;
    if (last !== undefined) res.write(last);
    res.end();
    this.#wake(false);
    if (!res.writableFinished) {
      const timer = setTimeout(() => res.destroy(), END_GRACE_MS);
      timer.unref();
      res.once('close', () => clearTimeout(timer));
    }
  }

  /** Ends the stream at once, dropping what is buffered. */
  destroy(): void {
    this.#ended = true;
    this.#wake(false);
    this.#res.destroy();
  }

  #wake(drained: boolean): void {
    const ws = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of ws) w(drained);
  }
}
