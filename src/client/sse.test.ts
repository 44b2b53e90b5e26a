import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseParser, type SseMessage } from './sse.js';

function parseAll(chunks: Array<string | Uint8Array>): { messages: SseMessage[]; comments: string[]; retries: number[] } {
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const p = new SseParser({ onMessage: (m) => messages.push(m), onComment: (c) => comments.push(c), onRetry: (r) => retries.push(r) });
  for (const c of chunks) p.push(c);
  return { messages, comments, retries };
}

const STREAM =
  '\uFEFF: ping\n' +
  'event: ready\ndata: {"revision": 4}\n\n' +
  'id: 5\r\nevent: events\r\ndata: {"a":1}\r\n\r\n' +
  'id: 6\revent: events\rdata: line1\rdata: line2\r\r' +
  'data:no-space\n\n' +
  'retry: 1500\nevent: nodata\n\n' +
  'id: 7\ndata\n\n';

test('parses events, ids, multi-line data, comments and retry, with every line ending', () => {
  const { messages, comments, retries } = parseAll([STREAM]);
  assert.deepEqual(messages, [
    { event: 'ready', data: '{"revision": 4}', id: undefined },
    { event: 'events', data: '{"a":1}', id: '5' },
    { event: 'events', data: 'line1\nline2', id: '6' },
    { event: 'message', data: 'no-space', id: '6' },
    { event: 'message', data: '', id: '7' },
  ]);
  assert.deepEqual(comments, ['ping']);
  assert.deepEqual(retries, [1500]);
});

test('gives the same messages however the stream is split, bytes or text, even inside a CRLF or a UTF-8 character', () => {
  const text = STREAM + 'event: utf8\ndata: héllo ☃ 𝄞\n\n';
  const bytes = new TextEncoder().encode(text);
  const whole = parseAll([bytes]).messages;
  assert.equal(whole.at(-1)?.data, 'héllo ☃ 𝄞');
  for (let cut = 1; cut < bytes.length; cut++) {
    assert.deepEqual(parseAll([bytes.subarray(0, cut), bytes.subarray(cut)]).messages, whole, `split at byte ${cut}`);
  }
  // One byte at a time.
  assert.deepEqual(parseAll([...bytes].map((b) => Uint8Array.of(b))).messages, whole);
  // Text split between CR and LF.
  const crlf = 'data: x\r';
  assert.deepEqual(parseAll([crlf, '\n\r\n']).messages, [{ event: 'message', data: 'x', id: undefined }]);
});

test('an incomplete last message is not dispatched; an id with NUL is ignored', () => {
  const { messages } = parseAll(['id: 1\ndata: a\n\nid: 2\u0000x\ndata: b\n\ndata: partial']);
  assert.deepEqual(messages, [
    { event: 'message', data: 'a', id: '1' },
    { event: 'message', data: 'b', id: '1' },
  ]);
});

test('a data line of megabytes arriving in small chunks costs linear time (catch-up frames can be that big)', () => {
  const payload = 'x'.repeat(8 * 1024 * 1024);
  const bytes = new TextEncoder().encode(`id: 9\nevent: events\ndata: ${payload}\n\n`);
  let got: SseMessage | undefined;
  const p = new SseParser({ onMessage: (m) => (got = m) });
  const t0 = performance.now();
  for (let i = 0; i < bytes.length; i += 16 * 1024) p.push(bytes.subarray(i, i + 16 * 1024));
  const ms = performance.now() - t0;
  assert.equal(got?.data.length, payload.length);
  assert.ok(ms < 1_000, `${Math.round(ms)} ms`);
});
