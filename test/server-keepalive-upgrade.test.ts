/**
 * The upgraded lease keep-alive stream (`POST /v1/leases/keepalive` with `upgrade: spofless-keepalive/1`,
 * answered 101, then NDJSON raw on the connection) over real sockets, written byte by byte from a plain
 * TCP client so that nothing of node:http's client stands between the test and the wire. And the SDK's
 * fallback to the chunked form when something between it and the control plane drops the upgrade.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { ControlPlaneClient } from '../src/client/index.js';
import { call, startServer } from './server-helpers.js';

const UPGRADE_HEAD = (port: number, contentType = 'application/x-ndjson', upgrade = 'spofless-keepalive/1'): string =>
  `POST /v1/leases/keepalive HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: ${contentType}\r\nconnection: upgrade\r\nupgrade: ${upgrade}\r\n\r\n`;

/** A raw connection: everything it receives, and whether it ended. */
class Raw {
  readonly socket: Socket;
  text = '';
  ended = false;
  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (s: string) => (this.text += s));
    this.socket.on('end', () => (this.ended = true));
    this.socket.on('close', () => (this.ended = true));
    this.socket.on('error', () => undefined);
  }
  get head(): string {
    return this.text.slice(0, this.text.indexOf('\r\n\r\n'));
  }
  /** The NDJSON answers after the head. */
  get lines(): Record<string, unknown>[] {
    const at = this.text.indexOf('\r\n\r\n');
    if (at < 0) return [];
    return this.text
      .slice(at + 4)
      .split('\n')
      .filter((l, i, all) => i < all.length - 1 && l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  async until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; received ${JSON.stringify(this.text)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function raw(t: TestContext, url: string): Raw {
  const r = new Raw(Number(new URL(url).port));
  t.after(() => r.socket.destroy());
  return r;
}

async function grant(url: string, ttl: number): Promise<string> {
  const r = await call(url, 'POST', '/v1/leases', { ttl });
  assert.equal(r.status, 200);
  return r.body.id as string;
}

test('upgraded: 101, then every line answered in order, raw on the connection; lines sent with the head are served too', async (t) => {
  const { url } = await startServer(t);
  const port = Number(new URL(url).port);
  const id = await grant(url, 7);
  const r = raw(t, url);
  // The first line goes in the same write as the request head (it arrives as the upgrade's `head` bytes).
  r.socket.write(`${UPGRADE_HEAD(port)}{"id":"${id}"}\n`);
  await r.until(() => r.lines.length >= 1, 'the first answer');
  assert.match(r.head, /^HTTP\/1\.1 101 /);
  assert.match(r.head, /\r\nupgrade: spofless-keepalive\/1/i);
  assert.doesNotMatch(r.head, /transfer-encoding/i);
  // The SDK's shape, a CRLF one, one split over two writes, a blank ping, an unknown lease, bad lines.
  r.socket.write(`{"id":"${id}"}\r\n{"id":"${id.slice(0, 3)}`);
  await new Promise((res) => setTimeout(res, 30));
  r.socket.write(`${id.slice(3)}"}\n\n{"id":"123"}\n{ "id" : "${id}" }\nnope\n{"id":"${id}","x":1}\n{"id":7}\n`);
  await r.until(() => r.lines.length >= 8, 'eight answers');
  const lines = r.lines;
  assert.deepEqual(lines.slice(0, 3), [{ id, ttl: 7 }, { id, ttl: 7 }, { id, ttl: 7 }]);
  assert.equal(lines[3]!.id, '123');
  assert.equal((lines[3]!.error as { code: string }).code, 'SPOF_ERR_STORE_LEASE_NOT_FOUND');
  assert.deepEqual(lines[4], { id, ttl: 7 }, 'JSON with spaces takes the full parser, same answer');
  assert.match((lines[5]!.error as { message: string }).message, /line 7 is not valid JSON/);
  assert.match((lines[6]!.error as { message: string }).message, /unknown field "x"/);
  assert.match((lines[7]!.error as { message: string }).message, /"id" must be a lease id string/);
  // The lease really was renewed.
  const info = await call(url, 'GET', `/v1/leases/${id}`);
  assert.equal(info.status, 200);
  // The client ends its side: the server answers what it read, then ends too.
  r.socket.write(`{"id":"${id}"}\n`);
  r.socket.end();
  await r.until(() => r.ended, 'the server to end the connection');
  assert.equal(r.lines.length, 9);
});

test('upgraded: the router still guards it (415 for another content type, and the connection ends); other upgrades get 400', async (t) => {
  const { url } = await startServer(t);
  const port = Number(new URL(url).port);
  const a = raw(t, url);
  a.socket.write(UPGRADE_HEAD(port, 'text/plain'));
  await a.until(() => a.ended, 'the 415 and the end of the connection');
  assert.match(a.text, /^HTTP\/1\.1 415 /);
  assert.match(a.text, /SPOF_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE/);
  const b = raw(t, url);
  b.socket.write(UPGRADE_HEAD(port, 'application/x-ndjson', 'websocket'));
  await b.until(() => b.ended, 'the 400 and the end of the connection');
  assert.match(b.text, /^HTTP\/1\.1 400 /);
  assert.match(b.text, /only POST \/v1\/leases\/keepalive upgrades/);
  // The API is still served.
  assert.equal((await call(url, 'GET', '/healthz')).status, 200);
});

test('upgraded: closing the server ends the stream at once, after answering what was read', async (t) => {
  const { url, cp } = await startServer(t);
  const port = Number(new URL(url).port);
  const id = await grant(url, 10);
  const r = raw(t, url);
  r.socket.write(`${UPGRADE_HEAD(port)}{"id":"${id}"}\n`);
  await r.until(() => r.lines.length >= 1, 'the first answer');
  const started = Date.now();
  await cp.close();
  await r.until(() => r.ended, 'the stream to end', 2_000);
  assert.ok(Date.now() - started < 2_000);
  assert.deepEqual(r.lines, [{ id, ttl: 10 }]);
});

test('the SDK opens the upgraded form; behind a proxy that drops the upgrade it falls back to the chunked form at once', async (t) => {
  const { url } = await startServer(t);
  const target = Number(new URL(url).port);
  // A TCP proxy that, when told to, strips `connection`/`upgrade` from request heads (as a proxy that
  // does not pass upgrades does), and records which form each keep-alive stream arrived in.
  const forms: string[] = [];
  let strip = false;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(target, '127.0.0.1');
    sockets.add(down).add(up);
    let first = true;
    down.on('data', (chunk: Buffer) => {
      let s = chunk.toString('latin1');
      if (first && s.startsWith('POST /v1/leases/keepalive ')) {
        if (strip) s = s.replace(/\r\nconnection: upgrade/i, '\r\nconnection: keep-alive').replace(/\r\nupgrade: [^\r]*/i, '');
        forms.push(/\r\nupgrade:/i.test(s) ? 'upgrade' : /transfer-encoding: chunked/i.test(s) ? 'chunked' : 'plain');
      }
      first = false;
      up.write(Buffer.from(s, 'latin1'));
    });
    up.pipe(down);
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const proxied = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const renewals = async (client: ControlPlaneClient, id: string, n: number): Promise<void> => {
    const reg = await client.register({ service: 'api', id, address: '127.0.0.1', port: 8080 }, { ttl: 1, random: () => 0 });
    let renewed = 0;
    reg.onEvent((e) => e.type === 'renewed' && renewed++);
    const end = Date.now() + 5_000;
    while (renewed < n) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${n} renewals of ${id}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const direct = new ControlPlaneClient({ url: proxied });
  t.after(() => direct.close());
  await renewals(direct, 'a', 2);
  assert.deepEqual(forms, ['upgrade']);
  assert.equal(direct.keepAliveStats.state, 'open');
  assert.equal(direct.keepAliveStats.perRequest, 0);

  strip = true;
  const behind = new ControlPlaneClient({ url: proxied });
  t.after(() => behind.close());
  await renewals(behind, 'b', 3);
  assert.deepEqual(forms, ['upgrade', 'plain', 'chunked'], 'one upgrade attempt answered 200, then the chunked form');
  const stats = behind.keepAliveStats;
  assert.equal(stats.state, 'open');
  assert.equal(stats.opened, 1);
  assert.ok(stats.overStream >= 2, `renewed over the chunked stream ${stats.overStream} times`);
});
