/**
 * A TCP proxy on loopback that can be frozen: while frozen it accepts connections (as the kernel does
 * for a SIGSTOP'd process, into its listen backlog) but forwards no byte either way, so a client sees
 * exactly what a stopped control plane looks like: no refusal, no reset, no answer. `close()` makes it
 * refuse (a dead process). Used where a real SIGSTOP needs a child process the test cannot have (an
 * in-process control plane); the chaos suite stops real processes.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class FreezableProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #target: { host: string; port: number };
  #frozen = false;
  #paused: Array<() => void> = [];
  port = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(targetUrl: string): Promise<FreezableProxy> {
    const u = new URL(targetUrl);
    const p = new FreezableProxy({ host: u.hostname, port: Number(u.port) });
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    p.port = (p.#server.address() as { port: number }).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Stops forwarding (both ways, existing and new connections). */
  freeze(): void {
    this.#frozen = true;
  }

  /** Forwards again, including what was held. */
  thaw(): void {
    this.#frozen = false;
    for (const resume of this.#paused.splice(0)) resume();
  }

  /** Refuses new connections and resets the open ones (a dead process). */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.#sockets.add(client);
    const upstream = connect(this.#target.port, this.#target.host);
    this.#sockets.add(upstream);
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!this.#frozen) {
          to.write(chunk);
          return;
        }
        // Hold this chunk and stop reading until thawed: TCP pushes back as with a stopped reader.
        from.pause();
        this.#paused.push(() => {
          to.write(chunk);
          from.resume();
        });
      });
      from.on('end', () => to.end());
    };
    pipe(client, upstream);
    pipe(upstream, client);
    const gone = (): void => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', gone);
    upstream.on('error', gone);
    client.on('close', gone);
    upstream.on('close', gone);
  }
}
