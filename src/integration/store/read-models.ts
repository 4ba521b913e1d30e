import { expressionBuilder, sql, type Expression, type Kysely, type SqlBool } from 'kysely';
import { DELIVERY_STATES, type DeliveryState } from '../../contracts/admin-api.js';
import type { Database } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import { actionEntries, insertTimeline } from './timeline.js';

/** Which dead letters a bulk replay takes; each field narrows it, none means all. */
export interface DeadLetterFilter {
  /** Dead-lettered at or after this time, ms since the epoch. */
  since?: number | undefined;
  /** Whose last error contains this text, in any letter case. */
  errorContains?: string | undefined;
  /** Whose last attempt got this HTTP status. */
  status?: number | undefined;
}

/** `text` as a LIKE pattern that matches it literally anywhere (`\` escapes `%`, `_` and itself). */
const containing = (text: string) => `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** Who did an operator's action, for the timeline: e.g. `admin`, on instance `instance`. */
export interface Actor {
  who: string;
  instance: string;
}

/** What the admin API, the dashboard and the metrics read, and the replay of dead letters. */
export function createReadModelsRepository(database: Database<IntegrationTables>) {
  const { db } = database;

  /** Every dead letter, put back in line with a fresh attempt budget (narrow it with `where`). */
  const requeueDead = (trx: Kysely<IntegrationTables>, now: number) =>
    trx
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

  /** The condition a dead letter meets to be taken by `filter` (true for an empty one). */
  const takenBy = (filter: DeadLetterFilter) => {
    const eb = expressionBuilder<IntegrationTables, 'deliveries'>();
    const conditions: Expression<SqlBool>[] = [];
    if (filter.since !== undefined) conditions.push(eb('updated_at', '>=', filter.since));
    if (filter.status !== undefined) conditions.push(eb('last_status', '=', filter.status));
    if (filter.errorContains !== undefined) {
      conditions.push(
        sql<SqlBool>`lower(last_error) like ${containing(filter.errorContains)} escape '\\'`,
      );
    }
    return eb.and(conditions);
  };

  /** Requeues the dead letters (of `customerId` only, when given) and notes it in their timelines. */
  const replayWhere = (
    by: Actor,
    now: number,
    customerId?: string,
    filter: DeadLetterFilter = {},
  ) =>
    db.transaction().execute(async (trx) => {
      let query = requeueDead(trx, now).where(takenBy(filter));
      if (customerId !== undefined) query = query.where('customer_id', '=', customerId);
      const replayed = await query.returning('customer_id').execute();
      const ids = replayed.map((row) => row.customer_id);
      await insertTimeline(trx, actionEntries(ids, 'replay', by.who, by.instance, now));
      return ids.length;
    });

  return {
    async countByState(): Promise<Record<DeliveryState, number>> {
      const rows = await db
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
    },

    /**
     * End-to-end lags (ms) of the latest deliveries since `sinceMs`, at most `limit` of them: from
     * the CRM recording the state delivered (its creation, change or deletion) to Inventory
     * matching it.
     */
    async recentLags(sinceMs: number, limit = 5_000): Promise<number[]> {
      const rows = await db
        .selectFrom('deliveries')
        .select(['delivered_at', 'customer_created_at', 'changed_at'])
        .where('delivered_at', '>=', sinceMs)
        .orderBy('delivered_at', 'desc')
        .limit(limit)
        .execute();
      return rows.map((row) =>
        Math.max(0, (row.delivered_at ?? 0) - (row.changed_at ?? row.customer_created_at)),
      );
    },

    /** Deliveries completed per `bucketMs` since `sinceMs`, as [bucket start, count] pairs. */
    async deliveredPerBucket(sinceMs: number, bucketMs: number): Promise<[number, number][]> {
      // A literal, not a parameter: PostgreSQL must see the same expression in SELECT and GROUP BY.
      const bucket = sql<number>`delivered_at / ${sql.lit(Math.floor(bucketMs))}`;
      const rows = await db
        .selectFrom('deliveries')
        .select([bucket.as('bucket'), (eb) => eb.fn.countAll<number>().as('count')])
        .where('delivered_at', '>=', sinceMs)
        .groupBy(bucket)
        .execute();
      return rows.map((row) => [Math.floor(Number(row.bucket)) * bucketMs, Number(row.count)]);
    },

    async get(customerId: string): Promise<DeliveryRow | undefined> {
      return db
        .selectFrom('deliveries')
        .selectAll()
        .where('customer_id', '=', customerId)
        .executeTakeFirst();
    },

    /** Deliveries in `state` (all when absent), most recently changed first. */
    async list(options: {
      state?: DeliveryState | undefined;
      limit: number;
    }): Promise<DeliveryRow[]> {
      let query = db.selectFrom('deliveries').selectAll();
      if (options.state) query = query.where('state', '=', options.state);
      return query
        .orderBy('updated_at', 'desc')
        .orderBy('seq', 'desc')
        .limit(options.limit)
        .execute();
    },

    /**
     * Replays one customer's dead letter, noted in its timeline as `by`'s action. Answers false
     * when the customer has none (never recorded, or already replayed): replaying twice still
     * delivers once.
     */
    async replay(customerId: string, by: Actor, now = Date.now()): Promise<boolean> {
      return (await replayWhere(by, now, customerId)) === 1;
    },

    /**
     * Replays every dead letter `filter` takes (all by default), each noted in its customer's
     * timeline; answers how many.
     */
    async replayAll(by: Actor, filter: DeadLetterFilter = {}, now = Date.now()): Promise<number> {
      return replayWhere(by, now, undefined, filter);
    },

    /** How many dead letters `filter` takes: what `replayAll` would replay now. */
    async countDead(filter: DeadLetterFilter = {}): Promise<number> {
      const row = await db
        .selectFrom('deliveries')
        .where('state', '=', 'dead')
        .where(takenBy(filter))
        .select((eb) => eb.fn.countAll<number>().as('count'))
        .executeTakeFirstOrThrow();
      return Number(row.count);
    },
  };
}

export type ReadModelsRepository = ReturnType<typeof createReadModelsRepository>;
