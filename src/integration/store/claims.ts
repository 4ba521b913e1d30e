import { sql, type Kysely, type UpdateObject } from 'kysely';
import type { Database } from '../../core/db.js';
import type { DeliveryOperation, DeliveryOutcome } from '../../contracts/admin-api.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import { reportDeadLetters } from '../alerts/dead-letters.js';
import { notPaused } from './controls.js';
import { insertTimeline, type NewTimelineEntry } from './timeline.js';

/** Who holds a claim on deliveries, and for how long from now (ms). */
export interface DeliveryClaim {
  holder: string;
  lockMs: number;
}

/** What Inventory was found to hold for the customer after a call, as far as the answer said. */
export interface InventoryFacts {
  /** What the attempt asked Inventory to do (none when nothing was asked). */
  operation: DeliveryOperation | null;
  /** The customer's package request, when the answer named one. */
  packageRequestId?: string | undefined;
  /** The customer version that request now has, when the answer said. */
  appliedVersion?: number | null | undefined;
}
/** Inventory now matches the state the attempt was for. */
export interface DeliveredOutcome extends InventoryFacts {
  state: 'delivered';
  outcome: DeliveryOutcome;
}
/**
 * The call did its part but Inventory does not match yet (a create found an older package to
 * update; a deleted customer's package was found to cancel): due again at once, no failure.
 */
export interface AdvancedOutcome extends InventoryFacts {
  state: 'advanced';
}
export interface FailedOutcome extends Omit<InventoryFacts, 'operation'> {
  state: 'retrying' | 'dead';
  /** What the attempt asked Inventory to do; the column is left as it was when absent. */
  operation?: DeliveryOperation | null | undefined;
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
  outcome: DeliveredOutcome | AdvancedOutcome | FailedOutcome | ReleasedOutcome;
  /** For the customer's timeline: when the attempt started, and its call's trace id. */
  attempt?: { startedAt: number; traceId?: string | undefined };
}

/**
 * What a claim takes, in this order: expired claims, due retries, due new deliveries. One indexed
 * range per state (state, next_attempt_at), read in index order: an OR over the states would make
 * the database sort every due row on each claim.
 */
const DUE_RANGES = [
  { state: 'delivering', column: 'locked_until' },
  { state: 'retrying', column: 'next_attempt_at' },
  { state: 'pending', column: 'next_attempt_at' },
] as const;

/** The deliveries of `range` that are due at `now`. */
const dueIn = (
  db: Pick<Kysely<IntegrationTables>, 'selectFrom'>,
  { state, column }: (typeof DUE_RANGES)[number],
  now: number,
) =>
  db
    .selectFrom('deliveries')
    .where('state', '=', state)
    .where(column, state === 'delivering' ? '<' : '<=', now);

/** The columns that record what Inventory holds; a package request id once known stays. */
const knownOf = (
  facts: Omit<InventoryFacts, 'operation'>,
): UpdateObject<IntegrationTables, 'deliveries'> => ({
  ...(facts.packageRequestId === undefined ? {} : { package_request_id: facts.packageRequestId }),
  ...(facts.appliedVersion === undefined ? {} : { applied_version: facts.appliedVersion }),
});
/** Those columns, and the operation the attempt asked for. */
const factsOf = (facts: InventoryFacts): UpdateObject<IntegrationTables, 'deliveries'> => ({
  operation: facts.operation,
  ...knownOf(facts),
});

/** What one delivered call found out, joined to its delivery row by the settlement. */
interface SettledDelivery {
  customer_id: string;
  operation: DeliveryOperation | null;
  outcome: DeliveryOutcome;
  package_request_id: string | null;
  applied_version: number | null;
  revision: number;
}

/** A settled attempt's timeline entry (none for a delivery given back untried). */
function attemptEntry(
  { row, outcome, attempt }: Settlement,
  holder: string,
  now: number,
  written: ReadonlySet<string>,
  superseded: ReadonlySet<string>,
): NewTimelineEntry[] {
  if (outcome.state === 'released') return [];
  const failed = outcome.state === 'retrying' || outcome.state === 'dead';
  return [
    {
      customer_id: row.customer_id,
      at: now,
      kind: 'attempt',
      result: !written.has(row.customer_id)
        ? 'late'
        : superseded.has(row.customer_id)
          ? 'superseded'
          : outcome.state,
      version: row.customer_version,
      operation: outcome.operation ?? null,
      outcome: outcome.state === 'delivered' ? outcome.outcome : null,
      duration_ms: attempt ? Math.max(0, now - attempt.startedAt) : null,
      status: failed ? (outcome.status ?? null) : null,
      error: failed ? outcome.error : null,
      trace_id: attempt?.traceId ?? null,
      instance: holder,
    },
  ];
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
      /** Writes `changes` to the row if still claimed by `holder`, and only `ifRevision` when set. */
      const update = (
        customerId: string,
        changes: UpdateObject<IntegrationTables, 'deliveries'>,
        ifRevision?: number,
      ) => {
        let query = trx
          .updateTable('deliveries')
          .set({ ...changes, locked_by: null, locked_until: null, updated_at: now })
          .where('customer_id', '=', customerId)
          .where('state', '=', 'delivering')
          .where('locked_by', '=', holder);
        if (ifRevision !== undefined) query = query.where('revision', '=', ifRevision);
        return query
          .returning('customer_id')
          .execute()
          .then((rows) => rows.forEach((row) => written.add(row.customer_id)));
      };
      // Deliveries are the common case: one statement for all of them whose desired state did
      // not change during the call, joined to what each call found out (a CASE per column would
      // compare every row with every customer id).
      const delivered = settlements.flatMap(({ row, outcome }) =>
        outcome.state === 'delivered' ? [{ row, outcome }] : [],
      );
      if (delivered.length > 0) {
        // PostgreSQL reads an untyped parameter as text: the numbers are cast where they enter.
        const settled = sql<SettledDelivery>`(values ${sql.join(
          delivered.map(
            ({ row, outcome }) =>
              sql`(${row.customer_id}, ${outcome.operation}, ${outcome.outcome}, ${
                outcome.packageRequestId ?? row.package_request_id
              }, cast(${
                outcome.appliedVersion === undefined ? row.applied_version : outcome.appliedVersion
              } as bigint), cast(${row.revision} as bigint))`,
          ),
        )})`;
        const rows = await trx
          .with(
            'settled(customer_id, operation, outcome, package_request_id, applied_version, revision)',
            () => settled,
          )
          .updateTable('deliveries')
          .from('settled')
          .set({
            state: 'delivered',
            attempts: sql`deliveries.attempts + 1`,
            operation: sql.ref('settled.operation'),
            outcome: sql.ref('settled.outcome'),
            package_request_id: sql.ref('settled.package_request_id'),
            applied_version: sql.ref('settled.applied_version'),
            delivered_at: now,
            last_error: null,
            last_status: null,
            failing_since: null,
            locked_by: null,
            locked_until: null,
            updated_at: now,
          })
          .whereRef('deliveries.customer_id', '=', 'settled.customer_id')
          // Only the customer id may pick the plan: each settled row finds its delivery by the
          // unique index. (SQLite would rather walk the 'delivering' rows of the state index, or
          // match every settled row of the same revision: both compare all with all.)
          .where(sql<boolean>`deliveries.revision = settled.revision + 0`)
          .where(sql<string>`deliveries.state || ''`, '=', 'delivering')
          .where('deliveries.locked_by', '=', holder)
          .returning('deliveries.customer_id')
          .execute();
        for (const row of rows) written.add(row.customer_id);
      }
      for (const { row, outcome } of settlements) {
        if (outcome.state === 'released') {
          // Given back untried (circuit open, shutting down): no attempt is counted.
          await update(row.customer_id, {
            state: row.attempts > 0 ? 'retrying' : 'pending',
            next_attempt_at: outcome.nextAttemptAt,
          });
        } else if (outcome.state === 'advanced') {
          await update(
            row.customer_id,
            {
              ...factsOf(outcome),
              state: 'pending',
              attempts: sql`attempts + 1`,
              next_attempt_at: now,
            },
            row.revision,
          );
        } else if (outcome.state !== 'delivered') {
          await update(
            row.customer_id,
            {
              state: outcome.state,
              ...(outcome.operation === undefined ? {} : { operation: outcome.operation }),
              ...knownOf(outcome),
              attempts: sql`attempts + 1`,
              last_error: outcome.error,
              last_status: outcome.status ?? null,
              next_attempt_at: outcome.nextAttemptAt,
              failing_since: row.failing_since ?? now,
            },
            row.revision,
          );
        }
      }
      // A newer state arrived during the call: what the call found out is kept, and the delivery
      // goes back in line at once for the newer state, with a fresh attempt budget.
      const superseded = new Set<string>();
      for (const { row, outcome } of settlements) {
        if (written.has(row.customer_id) || outcome.state === 'released') continue;
        superseded.add(row.customer_id);
        const found =
          outcome.state === 'delivered' || outcome.state === 'advanced'
            ? factsOf(outcome)
            : knownOf(outcome);
        await update(row.customer_id, {
          ...found,
          state: 'pending',
          attempts: 0,
          failing_since: null,
          next_attempt_at: now,
        });
      }
      // The first dead letters open an alert incident, in this transaction; later ones are counted.
      const deadLetters = settlements.flatMap(({ row, outcome }) =>
        outcome.state === 'dead' && written.has(row.customer_id) && !superseded.has(row.customer_id)
          ? [{ row, error: outcome.error, status: outcome.status }]
          : [],
      );
      if (deadLetters.length > 0) await reportDeadLetters(trx, deadLetters, now);
      await insertTimeline(
        trx,
        settlements.flatMap((settlement) =>
          attemptEntry(settlement, holder, now, written, superseded),
        ),
      );
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
      // Most looks find nothing (one follows every finished call): one read says so, with no
      // transaction (on PostgreSQL five round trips less, on SQLite four statements less).
      const anyDue = await db
        .selectNoFrom((eb) =>
          eb
            .or(DUE_RANGES.map((range) => eb.exists(dueIn(eb, range, now).select('seq'))))
            .as('due'),
        )
        .executeTakeFirst();
      if (!anyDue?.due) return [];
      return db.transaction().execute(async (trx) => {
        const seqs: number[] = [];
        for (const range of DUE_RANGES) {
          if (seqs.length >= limit) break;
          let due = dueIn(trx, range, now)
            .select('seq')
            // Nothing is claimed while delivery is paused (read in this transaction).
            .where(notPaused)
            .orderBy(range.column)
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
            // A claim for a create may reach Inventory and commit there with no answer recorded
            // (a crash, a dropped connection): a later deletion must then look for that package.
            create_tried: sql<number>`case when package_request_id is null
              and customer_deleted_at is null then 1 else create_tried end`,
          })
          .where('seq', 'in', seqs)
          .returningAll()
          .execute();
        const order = new Map(seqs.map((seq, index) => [seq, index]));
        return claimed.sort((a, b) => order.get(a.seq)! - order.get(b.seq)!);
      });
    },

    /** Settles a claimed create as done: its package request `packageRequestId` was created. */
    markDelivered(row: DeliveryRow, holder: string, packageRequestId: string, now = Date.now()) {
      const outcome: DeliveredOutcome = {
        state: 'delivered',
        outcome: 'created',
        operation: 'create',
        packageRequestId,
        appliedVersion: row.customer_version,
      };
      return settleOne(holder, { row, outcome }, now);
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
