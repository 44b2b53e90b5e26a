/**
 * The JSON shapes of the control-plane HTTP API (v1), as the SDK sees them. Keys and values are UTF-8
 * text here: the SDK does not use the API's base64 mode.
 */

// The catalog's own shapes: one definition for the server that stores them and the SDK that reads
// them. catalog/types.ts imports nothing at run time, so the SDK loads no server code through it.
import type { RegisterInput } from '../catalog/types.js';
export { InstanceStatus } from '../catalog/types.js';
export type { Instance, HealthCheckInput as HealthCheck } from '../catalog/types.js';

/** A key's state, as the API returns it (values as UTF-8 text): the server's own wire type. */
import type { KeyValueJson as KeyValue } from '../server/codec.js';
export type { KeyValue };

/** One change seen by a watch. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly kv: KeyValue;
  readonly prevKv?: KeyValue;
}

export interface RangeResult {
  readonly kvs: readonly KeyValue[];
  readonly more: boolean;
  readonly revision: number;
}

export interface PutResult {
  readonly revision: number;
  readonly prevKv?: KeyValue;
}

export interface DeleteResult {
  readonly revision: number;
  readonly deleted: number;
  readonly prevKvs?: readonly KeyValue[];
}

export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';

export interface TxnCompare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly cmp: '=' | '!=' | '<' | '>';
  readonly value: string | number | null;
}

export type TxnOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string; readonly lease?: string }
  | { readonly type: 'delete'; readonly key: string; readonly prefix?: boolean }
  | { readonly type: 'range'; readonly key: string; readonly prefix?: boolean; readonly limit?: number };

export interface TxnRequest {
  readonly compare?: readonly TxnCompare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResult {
  readonly succeeded: boolean;
  readonly revision: number;
  readonly responses: readonly unknown[];
}

export interface LeaseGrant {
  readonly id: string;
  readonly ttl: number;
}

export interface LeaseInfo {
  readonly id: string;
  readonly ttl: number;
  readonly grantedTtl: number;
  readonly keys?: readonly string[];
}

export interface ServiceSummary {
  readonly name: string;
  readonly instances: number;
  readonly passing: number;
}

/** The body of an instance registration (`PUT /v1/catalog/services/{service}/instances/{id}`). */
// The catalog's registration input, less the lease fields: the SDK grants and renews the lease itself.
export type InstanceSpec = Omit<RegisterInput, 'lease' | 'ttl'>;

// Where the catalog keeps instances: one key per instance, its value the Instance JSON.
export { CATALOG_INSTANCES_PREFIX, instancesPrefix } from '../catalog/keys.js';
