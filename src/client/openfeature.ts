/**
 * An OpenFeature server provider (`@openfeature/server-sdk`) over the flag SDK: evaluations are local
 * (no network call), values, variants, reasons and error codes as the OpenFeature specification
 * defines them. Provider events follow the SDK's state: `PROVIDER_READY` after the first sync,
 * `PROVIDER_CONFIGURATION_CHANGED` (with `flagsChanged`) on every change, `PROVIDER_STALE` while the
 * stream is down or the flags come from a saved or bootstrap state, `PROVIDER_READY` again when live.
 */
import {
  ErrorCode as OFErrorCode,
  GeneralError,
  OpenFeatureEventEmitter,
  ProviderEvents,
  type EvaluationContext as OFContext,
  type JsonValue as OFJson,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { InvalidOptionError } from '../errors/index.js';
import type { Evaluation, FlagType } from '../flags/types.js';
import type { Disposable } from './listeners.js';
import { FlagClient, type FlagClientOptions } from './flags.js';

/**
 * Options of {@link SpoflessProvider}: a `FlagClient` to use, or the options to start one with; and
 * `initTimeout`, how long `initialize` waits for the first sync (default 10 s). Past it the provider is
 * in error (evaluations answer the caller's default) until the SDK syncs, which then emits
 * `PROVIDER_READY`.
 *
 * @example
 * ```ts
 * const options: SpoflessProviderOptions = { environment: 'production', bootstrap: './flags.json', initTimeout: 3_000 };
 * ```
 */
export type SpoflessProviderOptions = ({ readonly flags: FlagClient } | FlagClientOptions) & { readonly initTimeout?: number };

const CODES: Readonly<Record<string, OFErrorCode>> = {
  PROVIDER_NOT_READY: OFErrorCode.PROVIDER_NOT_READY,
  FLAG_NOT_FOUND: OFErrorCode.FLAG_NOT_FOUND,
  PARSE_ERROR: OFErrorCode.PARSE_ERROR,
  TYPE_MISMATCH: OFErrorCode.TYPE_MISMATCH,
  TARGETING_KEY_MISSING: OFErrorCode.TARGETING_KEY_MISSING,
  INVALID_CONTEXT: OFErrorCode.INVALID_CONTEXT,
  GENERAL: OFErrorCode.GENERAL,
};

/**
 * @example
 * ```ts
 * import { OpenFeature } from '@openfeature/server-sdk';
 * import { SpoflessProvider } from 'spofless/client';
 * await OpenFeature.setProviderAndWait(new SpoflessProvider({ environment: 'production' }));
 * const client = OpenFeature.getClient();
 * const on = await client.getBooleanValue('new-checkout', false, { targetingKey: user.id });
 * ```
 */
export class SpoflessProvider implements Provider {
  readonly metadata = { name: 'spofless' } as const;
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  readonly flags: FlagClient;
  readonly #owns: boolean;
  readonly #initTimeout: number;
  #subscriptions: Disposable[] = [];
  /** Until initialize() settles the SDK sets the status itself (READY, or ERROR); events wait for it. */
  #initialized = false;

  constructor(options: SpoflessProviderOptions = {}) {
    const { initTimeout = 10_000, ...rest } = options;
    if (typeof initTimeout !== 'number' || !(initTimeout > 0)) throw new InvalidOptionError('SpoflessProvider', 'initTimeout', initTimeout, 'a number of ms > 0');
    this.#initTimeout = initTimeout;
    if ('flags' in rest && rest.flags instanceof FlagClient) {
      this.flags = rest.flags;
      this.#owns = false;
    } else {
      this.flags = new FlagClient(rest as FlagClientOptions);
      this.#owns = true;
    }
  }

  /** Waits for the first sync (or a fail-static state); the OpenFeature SDK answers PROVIDER_NOT_READY until then. */
  async initialize(_context?: OFContext): Promise<void> {
    // Subscribed first: a sync after a timed-out initialize must still say PROVIDER_READY.
    this.#subscriptions.push(
      this.flags.onChange((c) => this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: c.flags.filter((f) => !f.startsWith('segment:')) })),
      this.flags.onStateChange((state) => {
        if (!this.#initialized) return;
        if (state === 'stale' || state === 'static') this.events.emit(ProviderEvents.Stale, { message: `spofless flags are ${state === 'stale' ? 'disconnected from the control plane' : `served from the ${this.flags.source}`}` });
        else if (state === 'live') this.events.emit(ProviderEvents.Ready);
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.flags.ready(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new GeneralError(`spofless: no flags within ${this.#initTimeout} ms (control plane unreachable and no saved or bootstrap state); still trying`)), this.#initTimeout);
          timer.unref();
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#initialized = true;
    }
    // The SDK marks the provider READY when initialize() resolves; a static start is stale, said right after.
    if (this.flags.state === 'static') {
      setImmediate(() => {
        if (this.flags.state === 'static') this.events.emit(ProviderEvents.Stale, { message: `spofless flags are served from the ${this.flags.source}` });
      });
    }
  }

  async onClose(): Promise<void> {
    for (const s of this.#subscriptions) s.dispose();
    this.#subscriptions = [];
    if (this.#owns) {
      this.flags.close();
      await this.flags.closed();
    }
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: OFContext): Promise<ResolutionDetails<boolean>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'boolean'));
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: OFContext): Promise<ResolutionDetails<string>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'string'));
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: OFContext): Promise<ResolutionDetails<number>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'number'));
  }

  resolveObjectEvaluation<T extends OFJson>(flagKey: string, defaultValue: T, context: OFContext): Promise<ResolutionDetails<T>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'object'));
  }

  #resolve<T>(key: string, defaultValue: T, context: OFContext, type: FlagType): ResolutionDetails<T> {
    const e: Evaluation<T> = this.flags.evaluate(key, defaultValue, context, type);
    if (e.errorCode !== undefined) {
      return { value: defaultValue, reason: 'ERROR', errorCode: CODES[e.errorCode] ?? OFErrorCode.GENERAL, ...(e.errorMessage === undefined ? {} : { errorMessage: e.errorMessage }) };
    }
    return { value: e.value, reason: e.reason, ...(e.variant === undefined ? {} : { variant: e.variant }), ...(e.metadata === undefined ? {} : { flagMetadata: e.metadata }) };
  }
}
