import { sql, type Insertable, type Kysely, type Selectable } from 'kysely';
import type { TimelineAction, TimelineResult } from '../../contracts/timeline.js';
import type { Database } from '../../core/db.js';
import { ALL_CUSTOMERS, type IntegrationTables } from '../migrations.js';
import { newestPerCustomer, type NewDelivery } from './new-delivery.js';

type Db = Kysely<IntegrationTables>;
export type TimelineRow = Selectable<IntegrationTables['timeline_entries']>;
export type NewTimelineEntry = Insertable<IntegrationTables['timeline_entries']>;

/** Rows per insert: well inside both databases' limits on bound parameters (18 columns each). */
const ROWS_PER_INSERT = 500;

/**
 * Writes timeline entries in the transaction `trx` of the change they describe, so an entry exists
 * exactly when its change committed, at the price of one insert statement per batch.
 */
export async function insertTimeline(trx: Db, entries: NewTimelineEntry[]): Promise<void> {
  for (let start = 0; start < entries.length; start += ROWS_PER_INSERT) {
    await trx
      .insertInto('timeline_entries')
      .values(entries.slice(start, start + ROWS_PER_INSERT))
      .execute();
  }
}

/**
 * One entry per reported state: `taken` when it became its customer's desired state (`takenIds`
 * are the customers whose row the write changed; of several states of one customer in a read,
 * only the newest can be), `stale` otherwise, every one `duplicate` for a redelivered message.
 */
export function eventEntries(
  items: readonly NewDelivery[],
  takenIds: ReadonlySet<string> | 'duplicate',
  now: number,
  messageId?: string,
  /**
   * Of the states recorded together with `items`, the newest per customer: only those can be
   * taken. Default: the newest of `items`.
   */
  newest: ReadonlySet<NewDelivery> = new Set(newestPerCustomer(items)),
): NewTimelineEntry[] {
  return items.map((item) => {
    const result: TimelineResult =
      takenIds === 'duplicate'
        ? 'duplicate'
        : newest.has(item) && takenIds.has(item.customerId)
          ? 'taken'
          : 'stale';
    return {
      customer_id: item.customerId,
      at: now,
      kind: 'event',
      result,
      source: item.source,
      event_type: item.eventType,
      event_id: item.eventId,
      message_id: messageId ?? null,
      version: item.customerVersion,
    };
  });
}

/** An operator's action on customers, done by `who` (e.g. `admin`). */
export function actionEntries(
  customerIds: readonly string[],
  action: TimelineAction,
  who: string,
  instance: string,
  now: number,
): NewTimelineEntry[] {
  return customerIds.map((customerId) => ({
    customer_id: customerId,
    at: now,
    kind: 'action',
    result: 'done',
    action,
    source: who,
    instance,
  }));
}

/** Reads customers' timelines. */
export function createTimelineRepository(database: Database<IntegrationTables>) {
  const { db } = database;
  return {
    /**
     * The entries of `customerId` after `after` (a `seq`; 0 from the start), oldest first, with
     * the actions on every customer (pauses, resumes) from the one in force at its first entry on.
     */
    async read(customerId: string, after: number, limit: number): Promise<TimelineRow[]> {
      const firstSeq = sql<number>`(select min(seq) from timeline_entries where customer_id = ${customerId})`;
      const globalFrom = sql<number>`coalesce((select max(seq) from timeline_entries
        where customer_id = ${ALL_CUSTOMERS} and seq < ${firstSeq}), ${firstSeq})`;
      return db
        .selectFrom('timeline_entries')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb('customer_id', '=', customerId),
            eb.and([eb('customer_id', '=', ALL_CUSTOMERS), eb('seq', '>=', globalFrom)]),
          ]),
        )
        .where('seq', '>', after)
        .orderBy('seq')
        .limit(limit)
        .execute();
    },
  };
}

export type TimelineRepository = ReturnType<typeof createTimelineRepository>;
