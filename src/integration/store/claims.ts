import { sql, type UpdateObject } from 'kysely';
import type { Database } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';

/** Who holds a claim on deliveries, and for how long from now (ms). */
export interface DeliveryClaim {
  holder: string;
  lockMs: number;
}

export interface DeliveredOutcome {
  state: 'delivered';
  packageRequestId: string;
}
export interface FailedOutcome {
  state: 'retrying' | 'dead';
  error: string;
  status?: number | undefined;
  nextAttemptAt: number;
}
export interface ReleasedOutcome {
  state: 'released';
  nextAttemptAt: number;
}
/** What became of one claimed delivery. */
export interface Settlement {
  row: DeliveryRow;
  outcome: DeliveredOutcome | FailedOutcome | ReleasedOutcome;
}

/**
 * Claims on due deliveries and their settlement: each delivery is claimed by one instance at a
 * time, and its outcome is written only while that instance still holds the claim.
 */
export function createClaimsRepository(database: Database<IntegrationTables>) {
  const { db, dialect } = database;

  /**
   * Writes back what happened to claimed deliveries, in one transaction, each only while `holder`
   * still has it claimed. Answers, per settlement, whether it was written: false means the claim
   * had expired and another instance took the delivery over (a late completion).
   */
  const settleClaims = async (
    holder: string,
    settlements: Settlement[],
    now = Date.now(),
  ): Promise<boolean[]> => {
    if (settlements.length === 0) return [];
    return db.transaction().execute(async (trx) => {
      if (dialect === 'postgres' && settlements.length > 1) {
        // Lock the rows in one order (by customer id) before changing any. One instance can hold
        // a row in two settlements at once (its claim ran out during a slow call and it claimed
        // the row again); writing deliveries, then failures, they would lock rows crosswise.
        await trx
          .selectFrom('deliveries')
          .select('customer_id')
          .where(
            'customer_id',
            'in',
            settlements.map(({ row }) => row.customer_id),
          )
          .orderBy('customer_id')
          .forUpdate()
          .execute();
      }
      const written = new Set<string>();
      const update = (
        customerIds: string[],
        changes: UpdateObject<IntegrationTables, 'deliveries'>,
      ) =>
        trx
          .updateTable('deliveries')
          .set({ ...changes, locked_by: null, locked_until: null, updated_at: now })
          .where('customer_id', 'in', customerIds)
          .where('state', '=', 'delivering')
          .where('locked_by', '=', holder)
          .returning('customer_id')
          .execute()
          .then((rows) => rows.forEach((row) => written.add(row.customer_id)));

      // Deliveries are the common case: one statement for all of them.
      const delivered = settlements.flatMap(({ row, outcome }) =>
        outcome.state === 'delivered' ? [{ id: row.customer_id, outcome }] : [],
      );
      if (delivered.length > 0) {
        const packageRequestIds = sql.join(
          delivered.map(({ id, outcome }) => sql`when ${id} then ${outcome.packageRequestId}`),
          sql` `,
        );
        await update(
          delivered.map(({ id }) => id),
          {
            state: 'delivered',
            attempts: sql`attempts + 1`,
            package_request_id: sql<string>`case customer_id ${packageRequestIds} end`,
            delivered_at: now,
            last_error: null,
            last_status: null,
            failing_since: null,
          },
        );
      }
      for (const { row, outcome } of settlements) {
        if (outcome.state === 'released') {
          // Given back untried (circuit open, shutting down): no attempt is counted.
          await update([row.customer_id], {
            state: row.attempts > 0 ? 'retrying' : 'pending',
            next_attempt_at: outcome.nextAttemptAt,
          });
        } else if (outcome.state !== 'delivered') {
          await update([row.customer_id], {
            state: outcome.state,
            attempts: sql`attempts + 1`,
            last_error: outcome.error,
            last_status: outcome.status ?? null,
            next_attempt_at: outcome.nextAttemptAt,
            failing_since: row.failing_since ?? now,
          });
        }
      }
      return settlements.map((s) => written.has(s.row.customer_id));
    });
  };

  const settleOne = async (holder: string, settlement: Settlement, now: number) => {
    const [written] = await settleClaims(holder, [settlement], now);
    return written === true;
  };

  return {
    settleClaims,

    /**
     * Claims up to `limit` deliveries that are due, or whose claim expired (its instance died),
     * for `holder` until `now + lockMs`: expired claims first, then due retries, then new
     * deliveries, each oldest first. On PostgreSQL, SKIP LOCKED lets several instances claim at
     * once without ever claiming the same row.
     */
    async claimDue(
      holder: string,
      limit: number,
      lockMs: number,
      now = Date.now(),
    ): Promise<DeliveryRow[]> {
      return db.transaction().execute(async (trx) => {
        // One indexed range per state (state, next_attempt_at), read in index order: an OR over
        // the states would make the database sort every due row on each claim.
        const ranges = [
          { state: 'delivering' as const, column: 'locked_until' as const },
          { state: 'retrying' as const, column: 'next_attempt_at' as const },
          { state: 'pending' as const, column: 'next_attempt_at' as const },
        ];
        const seqs: number[] = [];
        for (const { state, column } of ranges) {
          if (seqs.length >= limit) break;
          let due = trx
            .selectFrom('deliveries')
            .select('seq')
            .where('state', '=', state)
            .where(column, state === 'delivering' ? '<' : '<=', now)
            .orderBy(column)
            .limit(limit - seqs.length);
          if (dialect === 'postgres') due = due.forUpdate().skipLocked();
          for (const row of await due.execute()) seqs.push(row.seq);
        }
        if (seqs.length === 0) return [];
        const claimed = await trx
          .updateTable('deliveries')
          .set({
            state: 'delivering',
            locked_by: holder,
            locked_until: now + lockMs,
            updated_at: now,
          })
          .where('seq', 'in', seqs)
          .returningAll()
          .execute();
        return claimed.sort((a, b) => seqs.indexOf(a.seq) - seqs.indexOf(b.seq));
      });
    },

    markDelivered(row: DeliveryRow, holder: string, packageRequestId: string, now = Date.now()) {
      return settleOne(holder, { row, outcome: { state: 'delivered', packageRequestId } }, now);
    },

    markFailed(row: DeliveryRow, holder: string, failure: FailedOutcome, now = Date.now()) {
      return settleOne(holder, { row, outcome: failure }, now);
    },

    releaseClaim(row: DeliveryRow, holder: string, nextAttemptAt: number, now = Date.now()) {
      return settleOne(holder, { row, outcome: { state: 'released', nextAttemptAt } }, now);
    },
  };
}

export type ClaimsRepository = ReturnType<typeof createClaimsRepository>;
