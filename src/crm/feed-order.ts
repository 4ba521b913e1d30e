import { sql } from 'kysely';
import { toIsoString } from '../core/db.js';
import { CUSTOMER_CREATED, type CustomerCreatedEvent } from '../contracts/customer-events.js';

/*
 * Feed order on PostgreSQL. Positions come from a sequence when an event is inserted but become
 * visible when its transaction commits, in any order: a reader that saw position 6 before 5
 * committed would skip 5 for good. So every event also records its writer's transaction id (`xid`):
 * - a transaction draws its events' positions and its transaction id together, in one statement
 *   that holds an advisory lock only while it runs (the events are its transaction's first write,
 *   so the id is assigned there); a lower position thus never has a higher transaction id.
 *   Without the lock a transaction could take its id before another and its positions after it.
 * - a reader stops before the first visible event whose position follows a gap that a running
 *   transaction may still fill: one whose id lies between the ids on either side of the gap. A
 *   transaction outside that range cannot hold a position inside it; one that has ended has
 *   committed (and is visible) or rolled back or deleted the event (and left a gap for good).
 * So the transactions of several processes commit concurrently, an event is readable as soon as
 * every lower position is, and no position is read before a lower one that will still commit.
 * SQLite has a single writer, so its positions commit in order.
 */
export const APPEND_LOCK = sql`hashtext(current_schema() || '.events')`;

export interface EventRow {
  position: number;
  id: string;
  payload: string;
  occurred_at: string | Date;
  traceparent: string | null;
}

/**
 * Up to `limit` visible events after `after`, each `settled` unless a transaction still running
 * may yet commit a position between it and the visible event before it (see "Feed order").
 */
export function selectFeedPage(after: number, limit: number) {
  return sql<EventRow & { settled: boolean }>`
    with running as materialized (
      select r.xid from pg_snapshot_xip(pg_current_snapshot()) as r(xid)
    ),
    page as (
      select position, id, payload, occurred_at, traceparent, xid,
        coalesce(lag(position) over by_position, 0) as previous_position,
        coalesce(lag(xid) over by_position, '0') as previous_xid
      from events
      where position >= (select coalesce(max(position), 0) from events where position <= ${after})
      window by_position as (order by position)
      order by position
      limit ${limit + 1}
    )
    select position, id, payload, occurred_at, traceparent,
      position = previous_position + 1 or not exists (
        select from running where running.xid > page.previous_xid and running.xid < page.xid
      ) as settled
    from page
    where position > ${after}
    order by position
    limit ${limit}`;
}

/** An event row as the feed serves it. */
export function toEvent(row: EventRow): CustomerCreatedEvent {
  return {
    position: row.position,
    id: row.id,
    type: CUSTOMER_CREATED,
    occurred_at: toIsoString(row.occurred_at),
    data: JSON.parse(row.payload) as CustomerCreatedEvent['data'],
    traceparent: row.traceparent,
  };
}
