/**
 * The gateway's counters and their Prometheus text exposition (`GET /metrics` on the admin port).
 *
 * Counters are plain numbers and typed arrays bumped on the hot path (no label maps, no allocation);
 * the text is built only when scraped.
 */
import type { Upstream } from './upstreams.js';

/** Latency histogram bounds, seconds (Prometheus' defaults, plus finer steps at the low end). */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** Per route: requests by status, latency, retries, fallbacks. */
export class RouteStats {
  readonly route: string;
  requests = 0;
  retries = 0;
  retriesDenied = 0;
  fallbacks = 0;
  noUpstream = 0;
  /** Index: the status code (0 when the request ended without a status: client gone, reset). */
  readonly statuses = new Float64Array(600);
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;

  constructor(route: string) {
    this.route = route;
  }

  observe(status: number, seconds: number): void {
    this.statuses[status > 0 && status < 600 ? status : 0]!++;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.latencySum += seconds;
  }
}

const BREAKER_STATE: Readonly<Record<string, number>> = { closed: 0, 'half-open': 1, open: 2, isolated: 3, disabled: 4 };

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Everything `/metrics` shows. */
export interface MetricsSource {
  readonly routes: Iterable<{ readonly stats: RouteStats; readonly breakerState: string }>;
  readonly upstreams: Iterable<Upstream>;
  readonly gateway: { readonly inFlight: number; readonly noRoute: number; readonly stalenessSeconds: number; readonly lastSyncAgeSeconds: number; readonly connected: boolean; readonly invalidRoutes: number; readonly websockets: number };
}

/** The Prometheus text format (version 0.0.4). */
export function renderMetrics(src: MetricsSource, now: number): string {
  const out: string[] = [];
  const head = (name: string, type: string, help: string): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const routes = [...src.routes];
  head('spofless_gateway_requests_total', 'counter', 'Requests by route and status code (code="0": ended without a status).');
  for (const { stats } of routes) {
    for (let s = 0; s < 600; s++) {
      const v = stats.statuses[s]!;
      if (v > 0) out.push(`spofless_gateway_requests_total{route="${esc(stats.route)}",code="${s}"} ${v}`);
    }
  }
  head('spofless_gateway_request_duration_seconds', 'histogram', 'Request duration through the gateway, to the last byte, by route.');
  for (const { stats } of routes) {
    const r = esc(stats.route);
    let cum = 0;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      cum += stats.buckets[i]!;
      out.push(`spofless_gateway_request_duration_seconds_bucket{route="${r}",le="${LATENCY_BUCKETS[i]}"} ${cum}`);
    }
    cum += stats.buckets[LATENCY_BUCKETS.length]!;
    out.push(`spofless_gateway_request_duration_seconds_bucket{route="${r}",le="+Inf"} ${cum}`);
    out.push(`spofless_gateway_request_duration_seconds_sum{route="${r}"} ${stats.latencySum}`);
    out.push(`spofless_gateway_request_duration_seconds_count{route="${r}"} ${cum}`);
  }
  head('spofless_gateway_retries_total', 'counter', 'Retries made, by route.');
  for (const { stats } of routes) out.push(`spofless_gateway_retries_total{route="${esc(stats.route)}"} ${stats.retries}`);
  head('spofless_gateway_retries_denied_total', 'counter', 'Retries not made because the retry budget was spent, by route.');
  for (const { stats } of routes) out.push(`spofless_gateway_retries_denied_total{route="${esc(stats.route)}"} ${stats.retriesDenied}`);
  head('spofless_gateway_fallbacks_total', 'counter', 'Fallback responses served, by route.');
  for (const { stats } of routes) out.push(`spofless_gateway_fallbacks_total{route="${esc(stats.route)}"} ${stats.fallbacks}`);
  head('spofless_gateway_route_breaker_state', 'gauge', 'Route breaker: 0 closed, 1 half-open, 2 open, 3 isolated, 4 disabled.');
  for (const { stats, breakerState } of routes) out.push(`spofless_gateway_route_breaker_state{route="${esc(stats.route)}"} ${BREAKER_STATE[breakerState] ?? -1}`);

  const ups = [...src.upstreams];
  const lab = (u: Upstream): string => `service="${esc(u.instance.service)}",instance="${esc(u.instance.id)}"`;
  head('spofless_gateway_upstream_requests_total', 'counter', 'Tries sent to an upstream instance.');
  for (const u of ups) out.push(`spofless_gateway_upstream_requests_total{${lab(u)}} ${u.requests}`);
  head('spofless_gateway_upstream_responses_total', 'counter', 'Upstream answers by status class.');
  for (const u of ups) for (let c = 1; c <= 5; c++) out.push(`spofless_gateway_upstream_responses_total{${lab(u)},class="${c}xx"} ${u.statusClasses[c]}`);
  head('spofless_gateway_upstream_failures_total', 'counter', 'Tries that failed without an answer (connect failure, reset, timeout).');
  for (const u of ups) out.push(`spofless_gateway_upstream_failures_total{${lab(u)}} ${u.failures}`);
  head('spofless_gateway_upstream_in_flight', 'gauge', 'Tries in flight to an upstream instance.');
  for (const u of ups) out.push(`spofless_gateway_upstream_in_flight{${lab(u)}} ${u.inFlight}`);
  head('spofless_gateway_upstream_ejections_total', 'counter', 'Outlier ejections of an upstream instance.');
  for (const u of ups) out.push(`spofless_gateway_upstream_ejections_total{${lab(u)}} ${u.ejections}`);
  head('spofless_gateway_upstream_ejected', 'gauge', '1 while the instance is ejected as an outlier.');
  for (const u of ups) out.push(`spofless_gateway_upstream_ejected{${lab(u)}} ${u.ejected(now) ? 1 : 0}`);
  head('spofless_gateway_upstream_healthy', 'gauge', '1 while the active health check passes.');
  for (const u of ups) out.push(`spofless_gateway_upstream_healthy{${lab(u)}} ${u.activeHealthy ? 1 : 0}`);
  head('spofless_gateway_upstream_breaker_state', 'gauge', 'Instance breaker: 0 closed, 1 half-open, 2 open, 3 isolated, 4 disabled.');
  for (const u of ups) out.push(`spofless_gateway_upstream_breaker_state{${lab(u)}} ${BREAKER_STATE[u.breaker.state] ?? -1}`);

  const g = src.gateway;
  head('spofless_gateway_in_flight', 'gauge', 'Requests in flight through the gateway.');
  out.push(`spofless_gateway_in_flight ${g.inFlight}`);
  head('spofless_gateway_websockets', 'gauge', 'WebSocket connections open through the gateway.');
  out.push(`spofless_gateway_websockets ${g.websockets}`);
  head('spofless_gateway_no_route_total', 'counter', 'Requests no route matched (answered 404).');
  out.push(`spofless_gateway_no_route_total ${g.noRoute}`);
  head('spofless_gateway_config_staleness_seconds', 'gauge', 'Seconds since the configuration was last known current (0 while the watch is live).');
  out.push(`spofless_gateway_config_staleness_seconds ${g.stalenessSeconds}`);
  head('spofless_gateway_config_last_sync_age_seconds', 'gauge', 'Seconds since the last byte from the control plane (events or heartbeats), connected or not; -1: never.');
  out.push(`spofless_gateway_config_last_sync_age_seconds ${g.lastSyncAgeSeconds}`);
  head('spofless_gateway_control_plane_connected', 'gauge', '1 while the watch streams are live.');
  out.push(`spofless_gateway_control_plane_connected ${g.connected ? 1 : 0}`);
  head('spofless_gateway_invalid_routes', 'gauge', 'Stored routes that failed validation and are ignored.');
  out.push(`spofless_gateway_invalid_routes ${g.invalidRoutes}`);
  return `${out.join('\n')}\n`;
}
