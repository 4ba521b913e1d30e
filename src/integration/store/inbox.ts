import type { Kysely } from 'kysely';
import type { Database } from '../../core/db.js';
import type { DeliveryRow, IntegrationTables } from '../migrations.js';
import type { DeliveryClaim } from './claims.js';
import type { HeldLease, LeasesRepository } from './leases.js';
import type { NewDelivery } from './new-delivery.js';

type Db = Kysely<IntegrationTables>;

/** A message a source was pushed (a webhook call, a RabbitMQ message). */
export interface PushedMessage {
  /** The sender's message id: a redelivery carries the same one. */
  id: string;
  /** The source that received it, e.g. `webhook`. */
  source: string;
  /** Its event's place in the CRM feed, when the sender says (the feed repair skips it then). */
  feedPosition?: number | undefined;
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
 * Where every source records the customers it finds, as deliveries: one per customer whatever the
 * number of sources and messages that report it, and each pushed message once.
 */
export function createInboxRepository(
  database: Database<IntegrationTables>,
  leases: LeasesRepository,
) {
  const { db } = database;

  /** The insert of new deliveries, pending or claimed; a customer already recorded is skipped. */
  const insertQuery = (trx: Db, items: NewDelivery[], now: number, claim?: DeliveryClaim) =>
    trx
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

  /** Inserts the customers not recorded yet, as pending deliveries; answers those it inserted. */
  const insertNew = async (trx: Db, items: NewDelivery[], now: number): Promise<NewDelivery[]> => {
    if (items.length === 0) return [];
    const inserted = await insertQuery(trx, items, now).returning('customer_id').execute();
    const fresh = new Set(inserted.map((row) => row.customer_id));
    return items.filter((item) => fresh.has(item.customerId));
  };

  /** Inserts the customers not recorded yet, already claimed by `claim.holder`; answers their rows. */
  const insertClaimed = async (
    trx: Db,
    items: NewDelivery[],
    now: number,
    claim: DeliveryClaim,
  ): Promise<DeliveryRow[]> => {
    if (items.length === 0) return [];
    return insertQuery(trx, items, now, claim).returningAll().execute();
  };

  /** Notes a pushed message's id and feed position; false when it was seen before (a redelivery). */
  const rememberMessage = async (
    trx: Db,
    message: PushedMessage,
    now: number,
  ): Promise<boolean> => {
    const first = await trx
      .insertInto('received_messages')
      .values({
        message_id: message.id,
        source: message.source,
        received_at: now,
        feed_position: message.feedPosition ?? null,
      })
      .onConflict((conflict) => conflict.column('message_id').doNothing())
      .returning('message_id')
      .executeTakeFirst();
    return first !== undefined;
  };

  /**
   * Records what one read of the feed returned and moves the cursor from `from` to `to`, in one
   * transaction: a crash before commit leaves both as they were, so the same events are read
   * again and none is skipped. Refused (answers undefined, nothing written) unless `lease.holder`
   * still holds the poll lease and the cursor is still at `from`.
   */
  const recordFromFeed: RecordFromFeed = (source, from, to, items, lease, now = Date.now()) =>
    db.transaction().execute(async (trx) => {
      if (!(await leases.holdsLeaseIn(trx, lease, now))) return undefined;
      if ((await leases.readCursorIn(trx, source)) !== from) return undefined;
      const fresh = await insertNew(trx, items, now);
      await leases.moveCursorIn(trx, source, to, now);
      return fresh;
    });

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
    passPushed,

    /**
     * Records a pushed message's customers and remembers its id, in one transaction. Answers
     * undefined when the message id was seen before (a redelivery): nothing is written.
     */
    async recordMessage(
      message: PushedMessage,
      items: NewDelivery[],
      now = Date.now(),
    ): Promise<NewDelivery[] | undefined> {
      return db.transaction().execute(async (trx) => {
        if (!(await rememberMessage(trx, message, now))) return undefined;
        return insertNew(trx, items, now);
      });
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
      claim: DeliveryClaim,
      now = Date.now(),
    ): Promise<DeliveryRow[] | undefined> {
      return db.transaction().execute(async (trx) => {
        if (!(await rememberMessage(trx, message, now))) return undefined;
        return insertClaimed(trx, items, now, claim);
      });
    },
  };
}

export type InboxRepository = ReturnType<typeof createInboxRepository>;
