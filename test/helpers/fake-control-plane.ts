/**
 * A small in-memory stand-in for the control plane's HTTP API (v1), for the SDK's unit tests: KV
 * range/put/delete, leases, catalog registration and drain, and the SSE watch with replay from a
 * revision, compaction and `ready`. It can be stopped (every connection cut) and started again on the
 * same port, which is how the tests play a control-plane outage. The end-to-end tests use the real one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Kv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease?: string;
}
interface Ev {
  type: 'put' | 'delete';
  kv: Kv;
}
interface Watcher {
  prefix: string;
  res: ServerResponse;
}

export class FakeControlPlane {
  readonly kvs = new Map<string, Kv>();
  readonly history: Array<{ revision: number; events: Ev[] }> = [];
  readonly leases = new Map<string, { ttl: number; keys: Set<string> }>();
  readonly requests: string[] = [];
  revision = 0;
  compactRevision = 0;
  /** Respond to keepalives with 404 for these lease ids. */
  nextLease = 100;
  #server: Server | undefined;
  #watchers = new Set<Watcher>();
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get watcherCount(): number {
    return this.#watchers.size;
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'SPOF_ERR_HTTP_INTERNAL', message: String(err) } }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
    return this;
  }

  /** Stops listening and cuts every connection (watch streams included). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Ends every open watch stream (the server stays up). */
  dropWatchers(): void {
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
  }

  put(key: string, value: string, lease?: string): number {
    const rev = ++this.revision;
    const prev = this.kvs.get(key);
    const kv: Kv = {
      key,
      value,
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
      ...(lease !== undefined ? { lease } : {}),
    };
    this.kvs.set(key, kv);
    if (lease !== undefined) this.leases.get(lease)?.keys.add(key);
    this.#emit(rev, [{ type: 'put', kv }]);
    return rev;
  }

  delete(keys: string[]): number {
    const present = keys.filter((k) => this.kvs.has(k));
    if (present.length === 0) return this.revision;
    const rev = ++this.revision;
    const events: Ev[] = present.map((k) => {
      this.kvs.delete(k);
      return { type: 'delete', kv: { key: k, value: '', createRevision: 0, modRevision: rev, version: 0 } };
    });
    this.#emit(rev, events);
    return rev;
  }

  /** Expires a lease now (its keys are deleted). */
  expireLease(id: string): void {
    const l = this.leases.get(id);
    if (l === undefined) return;
    this.leases.delete(id);
    this.delete([...l.keys]);
  }

  compact(revision: number): void {
    this.compactRevision = revision;
    while (this.history.length > 0 && this.history[0]!.revision < revision) this.history.shift();
  }

  #emit(revision: number, events: Ev[]): void {
    this.history.push({ revision, events });
    for (const w of this.#watchers) {
      const mine = events.filter((e) => e.kv.key.startsWith(w.prefix));
      if (mine.length > 0) w.res.write(`id: ${revision}\nevent: events\ndata: ${JSON.stringify({ revision, events: mine })}\n\n`);
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    this.requests.push(`${method} ${url.pathname}`);
    if (url.pathname === '/v1/leases/keepalive') {
      // Like a control plane without the keep-alive stream: no such route (answered before the body,
      // which would never end).
      res.writeHead(404, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ error: { code: 'SPOF_ERR_HTTP_NOT_FOUND', message: `no route ${method} ${url.pathname}` } }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>) : {};
    const json = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const p = url.pathname;
    if (p === '/healthz') return json(200, { ok: true });
    if (p === '/v1/kv' && method === 'GET') {
      const key = url.searchParams.get('key');
      if (key !== null) {
        const kv = this.kvs.get(key);
        return kv === undefined ? json(404, { error: { code: 'SPOF_ERR_KEY_NOT_FOUND', message: `key "${key}" not found` } }) : json(200, { kv, revision: this.revision });
      }
      const prefix = url.searchParams.get('prefix') ?? '';
      const kvs = [...this.kvs.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1));
      return json(200, { kvs, more: false, revision: this.revision });
    }
    if (p === '/v1/kv' && method === 'PUT') {
      const revision = this.put(String(body.key), String(body.value), body.lease as string | undefined);
      return json(200, { revision });
    }
    if (p === '/v1/leases' && method === 'POST') {
      const id = String(this.nextLease++);
      this.leases.set(id, { ttl: Number(body.ttl), keys: new Set() });
      return json(200, { id, ttl: body.ttl });
    }
    let m = /^\/v1\/leases\/(\d+)(\/keepalive)?$/.exec(p);
    if (m !== null) {
      const l = this.leases.get(m[1]!);
      if (l === undefined) return json(404, { error: { code: 'SPOF_ERR_STORE_LEASE_NOT_FOUND', message: `lease ${m[1]} not found` } });
      if (method === 'DELETE') {
        this.leases.delete(m[1]!);
        const revision = this.delete([...l.keys]);
        return json(200, { revision, deleted: l.keys.size });
      }
      return json(200, { id: m[1], ttl: l.ttl });
    }
    m = /^\/v1\/catalog\/services\/([^/]+)\/instances\/([^/]+)(\/drain)?$/.exec(p);
    if (m !== null) {
      const [service, id] = [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)];
      const key = `/spofless/catalog/instances/${service}/${id}`;
      if (method === 'PUT') {
        const lease = String(body.lease);
        if (!this.leases.has(lease)) return json(404, { error: { code: 'SPOF_ERR_STORE_LEASE_NOT_FOUND', message: `lease ${lease} not found` } });
        const instance = { service, id, tags: [], metadata: {}, status: 'passing', ...body, lease };
        const revision = this.put(key, JSON.stringify(instance), lease);
        return json(200, { instance, lease, revision });
      }
      const kv = this.kvs.get(key);
      if (kv === undefined) return json(404, { error: { code: 'SPOF_ERR_CATALOG_INSTANCE_NOT_FOUND', message: `instance ${id} not found` } });
      if (method === 'DELETE') return json(200, { revision: this.delete([key]) });
      const instance = { ...(JSON.parse(kv.value) as object), status: 'draining' };
      const revision = this.put(key, JSON.stringify(instance), kv.lease);
      return json(200, { instance, revision });
    }
    if (p === '/v1/watch') {
      const prefix = url.searchParams.get('prefix') ?? url.searchParams.get('key') ?? '';
      const lastId = req.headers['last-event-id'];
      const from = lastId !== undefined ? Number(lastId) + 1 : url.searchParams.has('revision') ? Number(url.searchParams.get('revision')) : this.revision + 1;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      if (from < this.compactRevision) {
        res.end(`event: compacted\ndata: ${JSON.stringify({ code: 'SPOF_ERR_STORE_COMPACTED', compactRevision: this.compactRevision })}\n\n`);
        return;
      }
      res.write(`event: ready\ndata: ${JSON.stringify({ revision: this.revision })}\n\n`);
      for (const h of this.history) {
        if (h.revision < from) continue;
        const mine = h.events.filter((e) => e.kv.key.startsWith(prefix));
        if (mine.length > 0) res.write(`id: ${h.revision}\nevent: events\ndata: ${JSON.stringify({ revision: h.revision, events: mine })}\n\n`);
      }
      const w: Watcher = { prefix, res };
      this.#watchers.add(w);
      res.on('close', () => this.#watchers.delete(w));
      return;
    }
    json(404, { error: { code: 'SPOF_ERR_HTTP_NOT_FOUND', message: `no route ${method} ${p}` } });
  }
}
