import type { CrmClient } from './crm-client.js';

/**
 * The feed position after which every event the CRM recorded at or after `sinceMs` lies, found by
 * bisecting positions 0 to `upTo` (events are in commit order, so their times only grow): about
 * log2(upTo) reads of one event each.
 */
export async function positionBefore(
  crm: Pick<CrmClient, 'readEvents'>,
  sinceMs: number,
  upTo: number,
): Promise<number> {
  let low = 0;
  let high = upTo;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    const [next] = await crm.readEvents(middle, 1, 0);
    if (next === undefined || Date.parse(next.occurred_at) >= sinceMs) high = middle;
    else low = next.position;
  }
  return low;
}
