// Shared by the server tests: a control plane on 127.0.0.1:0 over a real SQLite file in a temp dir,
// JSON calls over real HTTP (global fetch), and a small SSE reader on node:http.
import { mkdtempSync, rmSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../src/server/index.js';
import { SqliteStore } from '../src/store/index.js';

export interface Server {
  cp: ControlPlane;
  store: SqliteStore;
  url: string;
  dir: string;
}

export async function startServer(t: TestContext, options: Omit<ControlPlaneOptions, 'store'> & { compaction?: false } = {}): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'spofless-server-'));
  const store = await SqliteStore.open({ path: join(dir, 'store.db'), compaction: false });
  const cp = await startControlPlane({ port: 0, logger: false, healthChecks: false, ...options, store, closeStore: true });
  t.after(async () => {
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { cp, store, url: cp.url, dir };
}

export interface Answer {
  status: number;
  contentType: string | null;
  body: Record<string, unknown> & { error?: { code: string; message: string; [k: string]: unknown } };
}

/** One JSON call. `body` as a string is sent as is (to send malformed JSON). */
export async function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const init: RequestInit = { method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(url + path, init);
  const text = await res.text();
  let parsed: Answer['body'];
  try {
    parsed = JSON.parse(text) as Answer['body'];
  } catch {
    throw new Error(`${method} ${path}: ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, contentType: res.headers.get('content-type'), body: parsed };
}

export interface SseMessage {
  event: string;
  id: string | undefined;
  data: string;
  json: Record<string, unknown>;
}

export interface SseClient {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly messages: SseMessage[];
  readonly comments: string[];
  readonly ended: boolean;
  /** Waits until a message satisfies `pred` (checked on those already received too). */
  waitFor(pred: (m: SseMessage, all: SseMessage[]) => boolean, what: string, ms?: number): Promise<SseMessage>;
  waitEnd(ms?: number): Promise<void>;
  close(): void;
}

/** Opens `GET path` as an event stream. Resolves once the response headers arrived. */
export function sse(url: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url + path, { headers: { accept: 'text/event-stream', ...headers }, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const messages: SseMessage[] = [];
      const comments: string[] = [];
      let ended = false;
      let buf = '';
      const wakers = new Set<() => void>();
      const wake = (): void => {
        for (const w of [...wakers]) w();
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          let id: string | undefined;
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) {
            const text = data.join('\n');
            messages.push({ event, id, data: text, json: JSON.parse(text) as Record<string, unknown> });
          }
        }
        wake();
      });
      const onEnd = (): void => {
        ended = true;
        wake();
      };
      res.on('end', onEnd);
      res.on('close', onEnd);
      res.on('error', onEnd);
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        comments,
        get ended() {
          return ended;
        },
        waitFor(pred, what, ms = 5000) {
          return new Promise((ok, fail) => {
            const check = (): boolean => {
              const m = messages.find((x) => pred(x, messages));
              if (m !== undefined) {
                cleanup();
                ok(m);
                return true;
              }
              if (ended) {
                cleanup();
                fail(new Error(`stream ended before ${what}; got ${JSON.stringify(messages.map((x) => x.event + ' ' + x.data)).slice(0, 500)}`));
                return true;
              }
              return false;
            };
            const timer = setTimeout(() => {
              cleanup();
              fail(new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages.map((x) => x.event + ' ' + x.data)).slice(0, 500)}`));
            }, ms);
            const cleanup = (): void => {
              clearTimeout(timer);
              wakers.delete(waker);
            };
            const waker = (): void => void check();
            if (!check()) wakers.add(waker);
          });
        },
        waitEnd(ms = 5000) {
          return new Promise((ok, fail) => {
            if (ended) return ok();
            const timer = setTimeout(() => fail(new Error('timed out waiting for the stream to end')), ms);
            const waker = (): void => {
              if (!ended) return;
              clearTimeout(timer);
              wakers.delete(waker);
              ok();
            };
            wakers.add(waker);
          });
        },
        close() {
          req.destroy();
          res.destroy();
        },
      };
      resolve(client);
    });
    req.end();
  });
}

/** The revisions of every event delivered in `events` messages, in order. */
export function eventRevisions(messages: readonly SseMessage[]): number[] {
  const out: number[] = [];
  for (const m of messages) {
    if (m.event !== 'events') continue;
    for (const e of (m.json as { events: { kv: { modRevision: number } }[] }).events) out.push(e.kv.modRevision);
  }
  return out;
}

export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
