/**
 * One consistent list of a prefix however long it is: pages of `GET /v1/kv?prefix=`, every page after
 * the first read at the first page's revision, so the list is the store's state at one revision and a
 * watch from `revision + 1` continues it with no gap. Shared by discovery, the flags client and the
 * gateway's feed (each then watches from there).
 */
import type { KeyValue, RangeResult } from './types.js';

/** One page: `ControlPlaneClient.range`, or the same request over a `Transport`. */
export type RangePage = (
  prefix: string,
  page: { readonly limit: number; readonly revision?: number; readonly fromKey?: string; readonly signal?: AbortSignal },
) => Promise<RangeResult>;

/** Keys per page: the server's limit is far higher, but a page this size keeps one response small. */
export const RANGE_PAGE_SIZE = 1000;

export async function rangeAll(range: RangePage, prefix: string, signal?: AbortSignal): Promise<{ kvs: KeyValue[]; revision: number }> {
  const kvs: KeyValue[] = [];
  let revision: number | undefined;
  let fromKey: string | undefined;
  for (;;) {
    const page = await range(prefix, {
      limit: RANGE_PAGE_SIZE,
      ...(revision === undefined ? {} : { revision }),
      ...(fromKey === undefined ? {} : { fromKey }),
      ...(signal === undefined ? {} : { signal }),
    });
    revision ??= page.revision;
    kvs.push(...page.kvs);
    const last = page.kvs.at(-1);
    if (!page.more || last === undefined) break;
    // The next page starts just after the last key (keys are strings; `\0` is the smallest suffix).
    fromKey = `${last.key}\u0000`;
  }
  return { kvs, revision };
}
