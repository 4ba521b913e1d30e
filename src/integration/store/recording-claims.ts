import type { DeliveryRow } from '../migrations.js';
import type { DeliveryClaim } from './claims.js';
import type { NewDelivery } from './new-delivery.js';

/**
 * A claim taken as deliveries are recorded, on the first `limit` customers recorded together
 * (default: all); a known customer among them takes its place but no claim.
 */
export interface LimitedClaim extends DeliveryClaim {
  limit?: number;
}

/**
 * A recorded delivery's state: claimed by `claim.holder` (as `claimDue` would leave it) when it is
 * among the first `claim.limit` customers, otherwise pending.
 */
export function claimColumns(item: NewDelivery, index: number, now: number, claim?: LimitedClaim) {
  if (!claim) return { state: 'pending' as const };
  if (index >= (claim.limit ?? Infinity)) {
    // Every row of one insert names the same columns: SQLite has no DEFAULT in a VALUES list.
    return { state: 'pending' as const, locked_by: null, locked_until: null, create_tried: 0 };
  }
  return {
    state: 'delivering' as const,
    locked_by: claim.holder,
    locked_until: now + claim.lockMs,
    // Claimed for a create (claims.ts, claimDue, says why this is kept).
    create_tried: item.deletedAt === null ? 1 : 0,
  };
}

/**
 * A delivery row written just now, claimed by `holder` as it was recorded: a customer seen for the
 * first time (revision 0; a newer state of a known customer is a revision more, and stays pending
 * or with the instance that holds it).
 */
export const isNewlyClaimed = (row: DeliveryRow, holder: string) =>
  row.revision === 0 && row.locked_by === holder;
