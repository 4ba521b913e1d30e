import {
  sql,
  type ExpressionBuilder,
  type Kysely,
  type OnConflictDatabase,
  type OnConflictTables,
} from 'kysely';
import type { DeliveryState } from '../../contracts/admin-api.js';
import type { Database } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import { claimColumns, isNewlyClaimed, type LimitedClaim } from './recording-claims.js';
import type { HeldLease, LeasesRepository } from './leases.js';
import { newestPerCustomer, type NewDelivery } from './new-delivery.js';
import { isPausedIn } from './controls.js';
import { eventEntries, insertTimeline } from './timeline.js';

type Db = Kysely<IntegrationTables>;

const idsOf = (rows: readonly { customer_id: string }[]) => new Set(rows.map((r) => r.customer_id));

/** Of the reported states, those the database took: the newest of each customer it wrote. */
function acceptedOf(
  items: readonly NewDelivery[],
  written: readonly { customer_id: string }[],
): NewDelivery[] {
  const ids = idsOf(written);
  return newestPerCustomer(items).filter((item) => ids.has(item.customerId));
}

/** One read of the feed: the states its events report, and the cursor's move from `from` to `to`. */
export interface FeedPage {
  source: string;
  from: number;
  to: number;
  items: NewDelivery[];
  lease: HeldLease;
}

/** What recording a page of the feed wrote. */
export interface RecordedPage {
  /** The states the database took (new or newer), the newest of each customer. */
  accepted: NewDelivery[];
  /** The deliveries written claimed for the claim's holder, to be sent by it at once. */
  claimed: DeliveryRow[];
}

/** A message a source was pushed (a webhook call, a RabbitMQ message). */
export interface PushedMessage {
  /** The sender's message id: a redelivery carries the same one. */
  id: string;
  /** The source that received it, e.g. `webhook`. */
  source: string;
  /** Its event's place in the CRM feed, when the sender says (the feed repair skips it then). */
  feedPosition?: number | undefined;
}

/** A pushed message and the customers' states it reports. */
export interface PushedItems {
  message: PushedMessage;
  items: NewDelivery[];
}

/** What recording pushed messages together wrote. */
export interface RecordedPushes {
  /**
   * Per message, in order: the states it reported that the database took (new or newer), or
   * undefined when its id was seen before (a redelivery).
   */
  accepted: (NewDelivery[] | undefined)[];
  /** The delivery rows written; those new and claimed have revision 0 and the holder's lock. */
  rows: DeliveryRow[];
}

/**
 * Records a pushed message's customers (and its id, for deduplication) and sees them delivered;
 * answers the new customers, or undefined when the message id was seen before.
 */
export type RecordPushed = (
  message: PushedMessage,
  items: NewDelivery[],
) => Promise<NewDelivery[] | undefined>;

/**
 * Records one read of the feed and moves the cursor from `from` to `to`, in one transaction;
 * answers the new customers, or undefined (nothing written) without the lease or from a stale cursor.
 */
export type RecordFromFeed = (
  source: string,
  from: number,
  to: number,
  items: NewDelivery[],
  lease: HeldLease,
  now?: number,
) => Promise<NewDelivery[] | undefined>;

/**
 * The columns of an upsert's conflicting row that take the new desired state (the customer as the
 * inserted row has it), and one revision more.
 */
export const newDesiredState = (
  eb: ExpressionBuilder<
    OnConflictDatabase<IntegrationTables, 'deliveries'>,
    OnConflictTables<'deliveries'>
  >,
) => ({
  customer_name: eb.ref('excluded.customer_name'),
  customer_email: eb.ref('excluded.customer_email'),
  customer_version: eb.ref('excluded.customer_version'),
  customer_deleted_at: eb.ref('excluded.customer_deleted_at'),
  changed_at: eb.ref('excluded.changed_at'),
  event_id: eb.ref('excluded.event_id'),
  revision: sql<number>`deliveries.revision + 1`,
});

/**
 * Where every source records the customers it finds, as deliveries: one per customer whatever the
 * number of sources and messages that report it, and each pushed message once.
 */
export function createInboxRepository(
  database: Database<IntegrationTables>,
  leases: LeasesRepository,
) {
  const { db } = database;
  /** After a deletion was written, SQLite scrubs the erased name and email from its files soon. */
  const scrubIfErased = <
    Written extends readonly { customer_deleted_at?: number | null; deletedAt?: number | null }[],
  >(
    written: Written | undefined,
  ): Written | undefined => {
    if (written?.some((row) => (row.customer_deleted_at ?? row.deletedAt ?? null) !== null)) {
      database.scrubSoon?.();
    }
    return written;
  };

  /**
   * Records the customers' reported states, pending or claimed: a customer seen for the first
   * time gets its delivery; one already recorded takes the state only when its version is newer
   * (stale, duplicated and reordered events change nothing), and is then due again, except while
   * an instance holds it: that instance's settlement sees the newer revision and puts it back in
   * line. A deletion blanks the name and email (erasure). Answers the rows it wrote.
   */
  const upsertQuery = (trx: Db, items: NewDelivery[], now: number, claim?: LimitedClaim) =>
    trx
      .insertInto('deliveries')
      .values(
        newestPerCustomer(items).map((item, index) => ({
          customer_id: item.customerId,
          customer_name: item.customerName,
          customer_email: item.customerEmail,
          customer_version: item.customerVersion,
          customer_deleted_at: item.deletedAt,
          customer_created_at: item.customerCreatedAt,
          changed_at: item.changedAt,
          event_id: item.eventId,
          source: item.source,
          next_attempt_at: now,
          recorded_at: now,
          updated_at: now,
          traceparent: item.traceparent ?? null,
          ...claimColumns(item, index, now, claim),
        })),
      )
      .onConflict((conflict) =>
        conflict
          .column('customer_id')
          .doUpdateSet((eb) => {
            const inFlight = sql<boolean>`deliveries.state = 'delivering'`;
            return {
              ...newDesiredState(eb),
              traceparent: eb.ref('excluded.traceparent'),
              state: sql<DeliveryState>`case when ${inFlight} then deliveries.state else 'pending' end`,
              // A new desired state is a new operation, with its own attempts and retry budget.
              attempts: sql<number>`case when ${inFlight} then deliveries.attempts else 0 end`,
              failing_since: sql<
                number | null
              >`case when ${inFlight} then deliveries.failing_since else null end`,
              next_attempt_at: eb.ref('excluded.next_attempt_at'),
              updated_at: eb.ref('excluded.updated_at'),
            };
          })
          .where((eb) =>
            eb('excluded.customer_version', '>', eb.ref('deliveries.customer_version')),
          ),
      );

  /** `upsertQuery`'s rows written, claimed with `claim` unless delivery is paused. */
  const upsertRows = async (
    trx: Db,
    items: NewDelivery[],
    now: number,
    claim: LimitedClaim | undefined,
  ): Promise<DeliveryRow[]> => {
    if (items.length === 0) return [];
    const claiming = claim && !(await isPausedIn(trx)) ? claim : undefined;
    return upsertQuery(trx, items, now, claiming).returningAll().execute();
  };

  /**
   * Notes pushed messages' ids and feed positions; answers, per message, whether it is the first
   * with its id (false for a redelivery, or a repeat earlier in the same list).
   */
  const rememberMessages = async (
    trx: Db,
    messages: readonly PushedMessage[],
    now: number,
  ): Promise<boolean[]> => {
    const inserted = await trx
      .insertInto('received_messages')
      .values(
        messages.map((message) => ({
          message_id: message.id,
          source: message.source,
          received_at: now,
          feed_position: message.feedPosition ?? null,
        })),
      )
      .onConflict((conflict) => conflict.column('message_id').doNothing())
      .returning('message_id')
      .execute();
    const fresh = new Set(inserted.map((row) => row.message_id));
    return messages.map((message) => fresh.delete(message.id));
  };

  /**
   * Records pushed messages' customers in one transaction with their ids. A redelivered id writes
   * nothing but its events' `duplicate` entries. With `claim`, customers seen for the first time
   * are written already claimed by `claim.holder` (as `claimDue` would leave them), unless
   * delivery is paused; without, pending.
   */
  const recordPushedItems = async (
    pushed: readonly PushedItems[],
    claim: LimitedClaim | undefined,
    now: number,
  ): Promise<RecordedPushes> => {
    const recorded = await db.transaction().execute(async (trx) => {
      const first = await rememberMessages(
        trx,
        pushed.map(({ message }) => message),
        now,
      );
      // Of several states of one customer in these messages, only the newest can be taken.
      const items = pushed.flatMap(({ items: reported }, i) => (first[i] ? reported : []));
      const rows = await upsertRows(trx, items, now, claim);
      const taken = idsOf(rows);
      const newest = new Set(newestPerCustomer(items));
      await insertTimeline(
        trx,
        pushed.flatMap(({ message, items: reported }, i) =>
          eventEntries(reported, first[i] ? taken : 'duplicate', now, message.id, newest),
        ),
      );
      const accepted = pushed.map(({ items: reported }, i) =>
        first[i]
          ? newestPerCustomer(reported).filter(
              (item) => newest.has(item) && taken.has(item.customerId),
            )
          : undefined,
      );
      return { accepted, rows };
    });
    scrubIfErased(recorded.rows);
    return recorded;
  };

  /**
   * Records what one read of the feed returned and moves the cursor from `from` to `to`, in one
   * transaction: a crash before commit leaves both as they were, so the same events are read
   * again and none is skipped. Refused (answers undefined, nothing written) unless `lease.holder`
   * still holds the poll lease and the cursor is still at `from`. With `claim`, customers seen for
   * the first time are written already claimed (the first `claim.limit` of them), unless delivery
   * is paused; without, pending.
   */
  const recordFeedPage = async (
    { source, from, to, items, lease }: FeedPage,
    claim: LimitedClaim | undefined,
    now: number,
  ): Promise<RecordedPage | undefined> => {
    const recorded = await db.transaction().execute(async (trx) => {
      if (!(await leases.holdsLeaseIn(trx, lease, now))) return undefined;
      if ((await leases.readCursorIn(trx, source)) !== from) return undefined;
      let written: { customer_id: string }[] = [];
      let claimed: DeliveryRow[] = [];
      if (items.length > 0) {
        const claiming = claim && !(await isPausedIn(trx)) ? claim : undefined;
        const query = upsertQuery(trx, items, now, claiming);
        if (claiming) {
          // Whole rows for those to send at once; the ids do for the rest.
          const rows = await query.returningAll().execute();
          claimed = rows.filter((row) => isNewlyClaimed(row, claiming.holder));
          written = rows;
        } else {
          written = await query.returning('customer_id').execute();
        }
      }
      await insertTimeline(trx, eventEntries(items, idsOf(written), now));
      await leases.moveCursorIn(trx, source, to, now);
      return { accepted: acceptedOf(items, written), claimed };
    });
    scrubIfErased(recorded?.accepted);
    return recorded;
  };

  const recordFromFeed: RecordFromFeed = async (source, from, to, items, lease, now = Date.now()) =>
    (await recordFeedPage({ source, from, to, items, lease }, undefined, now))?.accepted;

  /**
   * Moves the feed cursor of `source` over the positions pushed messages have recorded, as far as
   * they run on without a gap from it, in one transaction: everything up to the new position was
   * recorded, so the feed repair need not read it again. Answers the cursor's position afterwards,
   * or undefined (nothing written) without the lease.
   */
  const passPushed = (source: string, lease: HeldLease, limit: number, now = Date.now()) =>
    db.transaction().execute(async (trx) => {
      if (!(await leases.holdsLeaseIn(trx, lease, now))) return undefined;
      const from = await leases.readCursorIn(trx, source);
      const pushed = await trx
        .selectFrom('received_messages')
        .select('feed_position')
        .where('feed_position', '>', from)
        .orderBy('feed_position')
        .limit(limit)
        .execute();
      let to = from;
      for (const { feed_position: position } of pushed) {
        if (position !== to + 1) break;
        to = position;
      }
      if (to > from) await leases.moveCursorIn(trx, source, to, now);
      return to;
    });

  return {
    recordFromFeed,
    recordFeedPage,
    passPushed,

    recordPushedItems,

    /**
     * Records a pushed message's customers and remembers its id, in one transaction. Answers
     * undefined when the message id was seen before (a redelivery): nothing is written.
     */
    async recordMessage(
      message: PushedMessage,
      items: NewDelivery[],
      now = Date.now(),
    ): Promise<NewDelivery[] | undefined> {
      return (await recordPushedItems([{ message, items }], undefined, now)).accepted[0];
    },

    /**
     * `recordMessage` for an instance that will deliver the new customers at once: their
     * deliveries are written already claimed by `claim.holder` (as `claimDue` would leave them),
     * which saves a claim query per pushed message. If the holder dies first, the claim expires
     * and any instance takes them over. Answers the new deliveries' rows, or undefined for a
     * redelivered id.
     */
    async recordMessageClaimed(
      message: PushedMessage,
      items: NewDelivery[],
      claim: LimitedClaim,
      now = Date.now(),
    ): Promise<DeliveryRow[] | undefined> {
      const { accepted, rows } = await recordPushedItems([{ message, items }], claim, now);
      return accepted[0] && rows;
    },
  };
}

export type InboxRepository = ReturnType<typeof createInboxRepository>;
