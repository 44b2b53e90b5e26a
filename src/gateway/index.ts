/**
 * `spofless/gateway`: the reverse proxy fed by the catalog. Routes and instances come from the control
 * plane's watch streams (and a saved copy on disk when it is unreachable); requests are balanced over
 * healthy instances with retries, breakers, fallbacks, blue-green and canary traffic shifting, and a
 * graceful drain.
 *
 * @example
 * ```ts
 * import { startGateway } from 'spofless/gateway';
 * const gw = await startGateway({ controlPlane: 'http://127.0.0.1:7400', port: 8080, adminPort: 9901, zone: 'a', stateDir: './.gateway' });
 * process.once('SIGTERM', () => void gw.close());
 * ```
 */
export { startGateway, type Gateway, type GatewayOptions, type GatewayStatus } from './gateway.js';
export { hash32 } from './upstreams.js';
export type { OutlierSettings } from './upstreams.js';
