/**
 * srlm's custom search attributes (SrlmRun, SrlmIteration, SrlmStage, SrlmModel) on a
 * namespace: checked, and added where the server allows it (a dev server, a self-hosted
 * cluster). Where they cannot be added (Temporal Cloud without the Cloud ops API here), runs
 * start without them; `temporal operator search-attribute create` adds them by hand.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../workflows/contract';

const Indexed = temporal.api.enums.v1.IndexedValueType;
const TYPES = { Keyword: Indexed.INDEXED_VALUE_TYPE_KEYWORD, Int: Indexed.INDEXED_VALUE_TYPE_INT } as const;

export interface SearchAttributeSetup {
  enabled: boolean;
  added: string[];
  /** why they are off, when they are */
  reason?: string;
}

export async function ensureSearchAttributes(client: Client, namespace: string): Promise<SearchAttributeSetup> {
  const ops = client.connection.operatorService;
  let have: Record<string, unknown>;
  try {
    have = (await ops.listSearchAttributes({ namespace })).customAttributes ?? {};
  } catch (err) {
    return { enabled: false, added: [], reason: `cannot list search attributes (${(err as Error).message.split('\n')[0]})` };
  }
  const missing = Object.entries(SEARCH_ATTRIBUTES).filter(([name]) => !(name in have));
  if (missing.length === 0) return { enabled: true, added: [] };
  try {
    await ops.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, TYPES[type]])) });
  } catch (err) {
    return {
      enabled: false,
      added: [],
      reason: `search attributes ${missing.map(([n]) => n).join(', ')} are not registered and could not be added (${(err as Error).message.split('\n')[0]})`,
    };
  }
  return { enabled: true, added: missing.map(([n]) => n) };
}
