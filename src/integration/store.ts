import { sql, type Kysely, type Selectable, type UpdateObject } from 'kysely';
import type { Database, DialectName } from '../core/db.js';
import type { DeliveryState, IntegrationTables } from './migrations.js';

export type DeliveryRow = Selectable<IntegrationTables['deliveries']>;

/** A customer some source reported, about to become a delivery. */
export interface NewDelivery {
  customerId: string;
  customerName: string;
  /** When the CRM created the customer, ms since the epoch (for end-to-end lag). */
  customerCreatedAt: number;
  eventId: string;
  /** `poll`, `reconcile`, `webhook` or `amqp`. */
  source: string;
  /** W3C trace context of the CRM request that created the customer, when known. */
  traceparent?: string | undefined;
}

/** A delivery for a customer.created event's data, from any source. */
export function customerCreatedToDelivery(
  customer: { id: string; name: string; created_at: string },
  eventId: string,
  source: string,
  traceparent?: unknown,
): NewDelivery {
  return {
    customerId: customer.id,
    customerName: customer.name,
    customerCreatedAt: Date.parse(customer.created_at),
    eventId,
    source,
    traceparent:
      typeof traceparent === 'string' && traceparent.length <= 128 ? traceparent : undefined,
  };
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
 * Records a pushed message's customers (and its id, for deduplication) and sees them delivered;
 * answers the new customers, or undefined when the message id was seen before.
 */
export type RecordPushed = (
  messageId: string,
  source: string,
  items: NewDelivery[],
) => Promise<NewDelivery[] | undefined>;

/** Who holds a claim on deliveries, and for how long from now (ms). */
export interface DeliveryClaim {
  holder: string;
  lockMs: number;
}

export const DELIVERY_STATES: readonly DeliveryState[] = [
  'pending',
  'delivering',
  'retrying',
  'delivered',
  'dead',
];

type Db = Kysely<IntegrationTables>;

/** The integration service's durable state: cursors, deliveries (with dead letters), leases. */
export class SyncStore {
  readonly db: Db;
  private readonly dialect: DialectName;

  constructor(database: Database<IntegrationTables>) {
    this.db = database.db;
    this.dialect = database.dialect;
  }

  async readCursor(source: string): Promise<number> {
    const row = await this.db
      .selectFrom('sync_cursors')
      .select('position')
      .where('source', '=', source)
      .executeTakeFirst();
    return row?.position ?? 0;
  }

  /** Inserts the customers not recorded yet, as pending deliveries; answers those it inserted. */
  private async insertNew(trx: Db, items: NewDelivery[], now: number): Promise<NewDelivery[]> {
    if (items.length === 0) return [];
    const inserted = await this.insertQuery(trx, items, now).returning('customer_id').execute();
    const fresh = new Set(inserted.map((row) => row.customer_id));
    return items.filter((item) => fresh.has(item.customerId));
  }

  /** Inserts the customers not recorded yet, already claimed by `claim.holder`; answers their rows. */
  private async insertClaimed(
    trx: Db,
    items: NewDelivery[],
    now: number,
    claim: DeliveryClaim,
  ): Promise<DeliveryRow[]> {
    if (items.length === 0) return [];
    return this.insertQuery(trx, items, now, claim).returningAll().execute();
  }

  /** The insert of new deliveries, pending or claimed; a customer already recorded is skipped. */
  private insertQuery(trx: Db, items: NewDelivery[], now: number, claim?: DeliveryClaim) {
    return trx
      .insertInto('deliveries')
      .values(
        items.map((item) => ({
          customer_id: item.customerId,
          customer_name: item.customerName,
          customer_created_at: item.customerCreatedAt,
          event_id: item.eventId,
          source: item.source,
          next_attempt_at: now,
          recorded_at: now,
          updated_at: now,
          traceparent: item.traceparent ?? null,
          ...(claim
            ? {
                state: 'delivering' as const,
                locked_by: claim.holder,
                locked_until: now + claim.lockMs,
              }
            : { state: 'pending' as const }),
        })),
      )
      .onConflict((conflict) => conflict.column('customer_id').doNothing());
  }

  /**
   * Records a pushed message's customers and remembers its id, in one transaction. Answers
   * undefined when the message id was seen before (a redelivery): nothing is written.
   */
  async recordMessage(
    messageId: string,
    source: string,
    items: NewDelivery[],
    now = Date.now(),
  ): Promise<NewDelivery[] | undefined> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await this.rememberMessage(trx, messageId, source, now))) return undefined;
      return this.insertNew(trx, items, now);
    });
  }

  /**
   * `recordMessage` for an instance that will deliver the new customers at once: their deliveries
   * are written already claimed by `claim.holder` (as `claimDue` would leave them), which saves a
   * claim query per pushed message. If the holder dies first, the claim expires and any instance
   * takes them over. Answers the new deliveries' rows, or undefined for a redelivered id.
   */
  async recordMessageClaimed(
    messageId: string,
    source: string,
    items: NewDelivery[],
    claim: DeliveryClaim,
    now = Date.now(),
  ): Promise<DeliveryRow[] | undefined> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await this.rememberMessage(trx, messageId, source, now))) return undefined;
      return this.insertClaimed(trx, items, now, claim);
    });
  }

  /** Notes a pushed message's id; false when it was seen before (a redelivery). */
  private async rememberMessage(
    trx: Db,
    messageId: string,
    source: string,
    now: number,
  ): Promise<boolean> {
    const first = await trx
      .insertInto('received_messages')
      .values({ message_id: messageId, source, received_at: now })
      .onConflict((conflict) => conflict.column('message_id').doNothing())
      .returning('message_id')
      .executeTakeFirst();
    return first !== undefined;
  }

  /**
   * Records what one read of the feed returned and moves the cursor from `from` to `to`, in one
   * transaction: a crash before commit leaves both as they were, so the same events are read again
   * and none is skipped. Refused (answers undefined, nothing written) unless `holder` still holds
   * the poll lease and the cursor is still at `from`.
   */
  async recordFromFeed(
    source: string,
    from: number,
    to: number,
    items: NewDelivery[],
    lease: { name: string; holder: string },
    now = Date.now(),
  ): Promise<NewDelivery[] | undefined> {
    return this.db.transaction().execute(async (trx) => {
      let leaseQuery = trx
        .selectFrom('leases')
        .select(['holder', 'expires_at'])
        .where('name', '=', lease.name);
      // Lock the lease row so no other instance can take the lease over until we commit.
      if (this.dialect === 'postgres') leaseQuery = leaseQuery.forUpdate();
      const held = await leaseQuery.executeTakeFirst();
      if (!held || held.holder !== lease.holder || held.expires_at <= now) return undefined;
      const cursor = await trx
        .selectFrom('sync_cursors')
        .select('position')
        .where('source', '=', source)
        .executeTakeFirst();
      if ((cursor?.position ?? 0) !== from) return undefined;
      const fresh = await this.insertNew(trx, items, now);
      await trx
        .insertInto('sync_cursors')
        .values({ source, position: to, updated_at: now })
        .onConflict((conflict) =>
          conflict.column('source').doUpdateSet({ position: to, updated_at: now }),
        )
        .execute();
      return fresh;
    });
  }

  /** Takes or renews the named lease for `holder`; true while `holder` has it. */
  async acquireLease(
    name: string,
    holder: string,
    ttlMs: number,
    now = Date.now(),
  ): Promise<boolean> {
    const row = await this.db
      .insertInto('leases')
      .values({ name, holder, expires_at: now + ttlMs })
      .onConflict((conflict) =>
        conflict
          .column('name')
          .doUpdateSet({ holder, expires_at: now + ttlMs })
          .where((eb) =>
            eb.or([eb('leases.holder', '=', holder), eb('leases.expires_at', '<=', now)]),
          ),
      )
      .returning('holder')
      .executeTakeFirst();
    return row?.holder === holder;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.db
      .deleteFrom('leases')
      .where('name', '=', name)
      .where('holder', '=', holder)
      .execute();
  }

  async leaseHolder(name: string, now = Date.now()): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('leases')
      .select(['holder', 'expires_at'])
      .where('name', '=', name)
      .executeTakeFirst();
    return row && row.expires_at > now ? row.holder : undefined;
  }

  /**
   * Claims up to `limit` deliveries that are due, or whose claim expired (its instance died), for
   * `holder` until `now + lockMs`: expired claims first, then due retries, then new deliveries,
   * each oldest first. On PostgreSQL, SKIP LOCKED lets several instances claim at once without
   * ever claiming the same row.
   */
  async claimDue(
    holder: string,
    limit: number,
    lockMs: number,
    now = Date.now(),
  ): Promise<DeliveryRow[]> {
    return this.db.transaction().execute(async (trx) => {
      // One indexed range per state (state, next_attempt_at), read in index order: an OR over the
      // states would make the database sort every due row on each claim.
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
        if (this.dialect === 'postgres') due = due.forUpdate().skipLocked();
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
  }

  /**
   * Writes back what happened to claimed deliveries, in one transaction, each only while `holder`
   * still has it claimed. Answers, per settlement, whether it was written: false means the claim
   * had expired and another instance took the delivery over (a late completion).
   */
  async settleClaims(
    holder: string,
    settlements: Settlement[],
    now = Date.now(),
  ): Promise<boolean[]> {
    if (settlements.length === 0) return [];
    return this.db.transaction().execute(async (trx) => {
      if (this.dialect === 'postgres' && settlements.length > 1) {
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
  }

  markDelivered(row: DeliveryRow, holder: string, packageRequestId: string, now = Date.now()) {
    return this.settleOne(holder, { row, outcome: { state: 'delivered', packageRequestId } }, now);
  }

  markFailed(row: DeliveryRow, holder: string, failure: FailedOutcome, now = Date.now()) {
    return this.settleOne(holder, { row, outcome: failure }, now);
  }

  releaseClaim(row: DeliveryRow, holder: string, nextAttemptAt: number, now = Date.now()) {
    return this.settleOne(holder, { row, outcome: { state: 'released', nextAttemptAt } }, now);
  }

  private async settleOne(holder: string, settlement: Settlement, now: number) {
    const [written] = await this.settleClaims(holder, [settlement], now);
    return written === true;
  }

  async countByState(): Promise<Record<DeliveryState, number>> {
    const rows = await this.db
      .selectFrom('deliveries')
      .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
      .groupBy('state')
      .execute();
    const counts = Object.fromEntries(DELIVERY_STATES.map((state) => [state, 0])) as Record<
      DeliveryState,
      number
    >;
    for (const row of rows) counts[row.state] = Number(row.count);
    return counts;
  }

  /** End-to-end lags (ms) of the latest deliveries since `sinceMs`, at most `limit` of them. */
  async recentLags(sinceMs: number, limit = 5_000): Promise<number[]> {
    const rows = await this.db
      .selectFrom('deliveries')
      .select(['delivered_at', 'customer_created_at'])
      .where('delivered_at', '>=', sinceMs)
      .orderBy('delivered_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((row) => Math.max(0, (row.delivered_at ?? 0) - row.customer_created_at));
  }

  /** Deliveries completed per `bucketMs` since `sinceMs`, as [bucket start, count] pairs. */
  async deliveredPerBucket(sinceMs: number, bucketMs: number): Promise<[number, number][]> {
    // A literal, not a parameter: PostgreSQL must see the same expression in SELECT and GROUP BY.
    const bucket = sql<number>`delivered_at / ${sql.lit(Math.floor(bucketMs))}`;
    const rows = await this.db
      .selectFrom('deliveries')
      .select([bucket.as('bucket'), (eb) => eb.fn.countAll<number>().as('count')])
      .where('delivered_at', '>=', sinceMs)
      .groupBy(bucket)
      .execute();
    return rows.map((row) => [Math.floor(Number(row.bucket)) * bucketMs, Number(row.count)]);
  }

  async get(customerId: string): Promise<DeliveryRow | undefined> {
    return this.db
      .selectFrom('deliveries')
      .selectAll()
      .where('customer_id', '=', customerId)
      .executeTakeFirst();
  }

  /** Deliveries in `state` (all when absent), most recently changed first. */
  async list(options: {
    state?: DeliveryState | undefined;
    limit: number;
  }): Promise<DeliveryRow[]> {
    let query = this.db.selectFrom('deliveries').selectAll();
    if (options.state) query = query.where('state', '=', options.state);
    return query
      .orderBy('updated_at', 'desc')
      .orderBy('seq', 'desc')
      .limit(options.limit)
      .execute();
  }

  /** Every dead letter, put back in line with a fresh attempt budget (narrow it with `where`). */
  private requeueDead(now: number) {
    return this.db
      .updateTable('deliveries')
      .set((eb) => ({
        state: 'pending',
        attempts: 0,
        replays: eb('replays', '+', 1),
        next_attempt_at: now,
        failing_since: null,
        updated_at: now,
      }))
      .where('state', '=', 'dead');
  }

  /**
   * Replays one customer's dead letter. Answers false when the customer has none (never recorded,
   * or already replayed): replaying twice still delivers once.
   */
  async replay(customerId: string, now = Date.now()): Promise<boolean> {
    const result = await this.requeueDead(now)
      .where('customer_id', '=', customerId)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Replays every dead letter; answers how many. */
  async replayAll(now = Date.now()): Promise<number> {
    return Number((await this.requeueDead(now).executeTakeFirst()).numUpdatedRows);
  }
}
