/**
 * An incremental parser for `text/event-stream` (the WHATWG HTML standard's "Server-sent events"
 * section): feed it chunks as they arrive, in any split, and it calls back once per complete message.
 *
 * - Lines end with CRLF, LF or CR; a CRLF split across two chunks is one line end.
 * - `data:` lines of one message join with `\n`; a message with no `data` line is not dispatched
 *   (the standard's rule), but its `id` still counts.
 * - A line starting with `:` is a comment (the server's `: ping`): reported to `onComment`, so a
 *   reader can treat it as a sign of life.
 * - One leading space after the colon is dropped; a leading byte-order mark is ignored.
 */

/** One dispatched message. `id` is the last event id seen on the stream so far (the standard's rule). */
export interface SseMessage {
  readonly event: string;
  readonly data: string;
  readonly id: string | undefined;
}

export interface SseParserCallbacks {
  readonly onMessage: (message: SseMessage) => void;
  readonly onComment?: (text: string) => void;
  readonly onRetry?: (ms: number) => void;
}

/**
 * @example
 * ```ts
 * const parser = new SseParser({ onMessage: (m) => console.log(m.event, m.data) });
 * for await (const chunk of response.body) parser.push(chunk);
 * ```
 */
export class SseParser {
  readonly #cb: SseParserCallbacks;
  readonly #decoder = new TextDecoder('utf-8');
  /** Pieces of the current, unfinished line. */
  #pending: string[] = [];
  #lastCr = false;
  #first = true;
  #event = '';
  #data: string[] = [];
  #id: string | undefined;

  constructor(callbacks: SseParserCallbacks) {
    this.#cb = callbacks;
  }

  /** The last event id the stream set (what to send back as `Last-Event-ID`). */
  get lastEventId(): string | undefined {
    return this.#id;
  }

  /**
   * Feeds bytes (decoded as a UTF-8 stream) or already-decoded text. Only the new text is scanned: a
   * line spanning many chunks (a catch-up frame of megabytes) costs time linear in its length.
   */
  push(chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return;
    // A CR ended the previous chunk: an LF opening this one belongs to that line end.
    let start = this.#lastCr && text.charCodeAt(0) === 10 ? 1 : 0;
    this.#lastCr = false;
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const piece = text.slice(start, i);
      let line: string;
      if (this.#pending.length === 0) {
        line = piece;
      } else {
        this.#pending.push(piece);
        line = this.#pending.join('');
        this.#pending = [];
      }
      this.#line(line);
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else {
          this.#lastCr = true;
        }
      }
      start = i + 1;
    }
    if (start < text.length) this.#pending.push(text.slice(start));
  }

  /** Ends the stream: an incomplete last message is dropped, as the standard says. */
  end(): void {
    this.#pending = [];
    this.#event = '';
    this.#data = [];
  }

  #line(line: string): void {
    if (line.length === 0) {
      this.#dispatch();
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.#cb.onComment?.(line.slice(1).trimStart());
      return;
    }
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        break;
      case 'id':
        if (!value.includes('\u0000')) this.#id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#cb.onRetry?.(Number(value));
        break;
      default:
        break;
    }
  }

  #dispatch(): void {
    const data = this.#data;
    const event = this.#event;
    this.#data = [];
    this.#event = '';
    if (data.length === 0) return;
    this.#cb.onMessage({ event: event === '' ? 'message' : event, data: data.join('\n'), id: this.#id });
  }
}
