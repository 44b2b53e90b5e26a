/**
 * `spofless/server`: the control plane's HTTP API (`/v1`, JSON and Server-Sent Events) over a store,
 * with the catalog's health checks and watch fan-out. docs/api.md documents every endpoint.
 *
 * @example
 * ```ts
 * import { startControlPlane } from 'spofless/server';
 * const cp = await startControlPlane({ host: '127.0.0.1', port: 7400, dataDir: './.spofless' });
 * console.log(`spofless listening on ${cp.url}`);
 * await cp.close();
 * ```
 */
export { startControlPlane } from './control-plane.js';
export type { ControlPlane, ControlPlaneOptions } from './control-plane.js';
export type { LeaderStatus, ReplicaElectionOptions } from './replica.js';
export { buildApp, DEFAULT_BODY_LIMIT } from './app.js';
export type { AppOptions } from './app.js';
export { WatchHub } from './watch-hub.js';
export type { WatchEnd, WatchHubOptions, WatchHubStats, WatchRequest } from './watch-hub.js';
export { KeepAliveStreams, KEEPALIVE_STREAM_PATH, NDJSON } from './keepalive-stream.js';
export type { KeepAliveStreamEnd, KeepAliveStreamStats, KeepAliveStreamsOptions } from './keepalive-stream.js';
export { toHttpError } from './errors.js';
export type { ErrorBody, HttpErrorAnswer } from './errors.js';
