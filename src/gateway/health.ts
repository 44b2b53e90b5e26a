/**
 * Active health checks from the gateway: each upstream is probed on its own timer (unref'd), with the
 * instance's own catalog check when it has one (HTTP or TCP, interval, timeout, rise, fall), else the
 * gateway's default. `fall` failures in a row take it out of balancing; `rise` passes bring it back.
 * This is the gateway's own view (a network partition between gateway and instance shows here even
 * when the control plane's checker sees the instance fine).
 *
 * | from      | to        | when                        |
 * |-----------|-----------|-----------------------------|
 * | healthy   | unhealthy | `fall` failed probes in a row |
 * | unhealthy | healthy   | `rise` passed probes in a row |
 */
import { defaultProbe, type Probe } from '../catalog/probe.js';
import type { HealthCheck } from '../catalog/types.js';
import type { Upstream } from './upstreams.js';

export class ActiveChecks {
  readonly #default: HealthCheck | undefined;
  readonly #timers = new Map<Upstream, NodeJS.Timeout>();
  readonly #probe: Probe;
  readonly #onChange: (u: Upstream, healthy: boolean, detail: string) => void;
  #closed = false;

  constructor(defaultCheck: HealthCheck | undefined, onChange: (u: Upstream, healthy: boolean, detail: string) => void, probe: Probe = defaultProbe) {
    this.#default = defaultCheck;
    this.#onChange = onChange;
    this.#probe = probe;
  }

  /** Starts probing `u` (a no-op without a check). */
  add(u: Upstream): void {
    if (this.#closed || this.#timers.has(u)) return;
    const check = this.#checkOf(u);
    if (check === undefined) return;
    // The first probe at a random point of the first interval: a thousand instances are not probed at once.
    const t = setTimeout(() => void this.#run(u), Math.floor(Math.random() * Math.min(check.interval, 1_000)));
    t.unref();
    this.#timers.set(u, t);
  }

  remove(u: Upstream): void {
    const t = this.#timers.get(u);
    if (t !== undefined) clearTimeout(t);
    this.#timers.delete(u);
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  #checkOf(u: Upstream): HealthCheck | undefined {
    const c = u.instance.check;
    if (c !== undefined) return c;
    return this.#default;
  }

  async #run(u: Upstream): Promise<void> {
    const check = this.#checkOf(u);
    if (check === undefined || !this.#timers.has(u)) return;
    const r = await this.#probe(u.instance.address, u.instance.port, check, AbortSignal.timeout(check.timeout));
    if (!this.#timers.has(u)) return;
    u.lastCheck = r.detail;
    if (r.ok) {
      u.checkFailures = 0;
      u.checkPasses++;
      if (!u.activeHealthy && u.checkPasses >= check.rise) {
        u.activeHealthy = true;
        this.#onChange(u, true, r.detail);
      }
    } else {
      u.checkPasses = 0;
      u.checkFailures++;
      if (u.activeHealthy && u.checkFailures >= check.fall) {
        u.activeHealthy = false;
        this.#onChange(u, false, r.detail);
      }
    }
    const t = setTimeout(() => void this.#run(u), check.interval);
    t.unref();
    this.#timers.set(u, t);
  }
}
