import { newId } from '../core/ids.js';
import { EventEmitter, once } from 'node:events';
import { sql, type Kysely } from 'kysely';
import pLimit from 'p-limit';
import { toIsoString, type DialectName } from '../core/db.js';
import type { Customer } from '../contracts/customers.js';
import { CUSTOMER_CREATED, type CustomerCreatedEvent } from '../contracts/customer-events.js';
import type { CrmTables } from './migrations.js';

/**
 * On PostgreSQL, sequence values are handed out at insert time but become visible at commit time,
 * so a reader could see position 6 before 5 commits and skip 5 forever. Taking this transaction
 * lock before appending makes appends (and so positions) commit one after another, in order.
 * SQLite already allows a single writer at a time.
 */
async function serialiseAppends(trx: Kysely<CrmTables>, dialect: DialectName): Promise<void> {
  if (dialect === 'postgres') {
    await sql`select pg_advisory_xact_lock(hashtext(current_schema() || '.events'))`.execute(trx);
  }
}

function toEvent(row: {
  position: number;
  id: string;
  payload: string;
  occurred_at: string | Date;
  traceparent: string | null;
}): CustomerCreatedEvent {
  return {
    position: row.position,
    id: row.id,
    type: CUSTOMER_CREATED,
    occurred_at: toIsoString(row.occurred_at),
    data: JSON.parse(row.payload) as CustomerCreatedEvent['data'],
    traceparent: row.traceparent,
  };
}

/**
 * Transactions that append an event and may be open at once. Appends commit one at a time (see
 * serialiseAppends), so a second one waiting keeps the next commit ready; more would only hold
 * pooled connections while they wait, leaving none for reads, readiness or the webhook sender.
 */
const APPENDS_IN_FLIGHT = 2;

/** The CRM's outbox of events: appended in the same transaction as the change it describes. */
export class EventLog {
  private readonly appended = new EventEmitter();
  private closed = false;
  private readonly appendSlots = pLimit(APPENDS_IN_FLIGHT);

  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly dialect: DialectName,
  ) {
    this.appended.setMaxListeners(0);
  }

  /** Runs a transaction that appends an event, once one of the few append slots is free. */
  withAppendSlot<T>(transaction: () => Promise<T>): Promise<T> {
    return this.appendSlots(transaction);
  }

  /**
   * Call inside the transaction that creates the customer, before its other writes; run that
   * transaction through `withAppendSlot`.
   */
  async appendCustomerCreated(
    trx: Kysely<CrmTables>,
    customer: Customer,
    traceparent?: string,
  ): Promise<void> {
    await serialiseAppends(trx, this.dialect);
    const eventId = newId();
    const { position } = await trx
      .insertInto('events')
      .values({
        id: eventId,
        type: CUSTOMER_CREATED,
        customer_id: customer.id,
        payload: JSON.stringify(customer),
        occurred_at: customer.created_at,
        traceparent: traceparent ?? null,
      })
      .returning('position')
      .executeTakeFirstOrThrow();
    // One webhook message per active endpoint, committed with the event: none is lost to a crash.
    const now = Date.now();
    await trx
      .insertInto('webhook_messages')
      .columns([
        'endpoint_id',
        'event_id',
        'event_position',
        'state',
        'next_attempt_at',
        'updated_at',
      ])
      .expression((eb) =>
        eb
          .selectFrom('webhook_endpoints')
          .select((s) => [
            'id',
            s.val(eventId).as('event_id'),
            s.val(position).as('event_position'),
            s.val('pending').as('state'),
            s.val(now).as('next_attempt_at'),
            s.val(now).as('updated_at'),
          ])
          .where('disabled_at', 'is', null),
      )
      .execute();
  }

  /** The events with these ids, by id (ids with no event are left out). */
  async getMany(eventIds: readonly string[]): Promise<Map<string, CustomerCreatedEvent>> {
    if (eventIds.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('events')
      .select(['position', 'id', 'type', 'payload', 'occurred_at', 'traceparent'])
      .where('id', 'in', eventIds)
      .execute();
    return new Map(rows.map((row) => [row.id, toEvent(row)]));
  }

  /** Tells waiting readers and relays in this process that something was committed. */
  notifyCommitted(): void {
    this.appended.emit('committed');
  }

  /** Calls `listener` after every commit of new events in this process (relays wake on it). */
  onCommitted(listener: () => void): void {
    this.appended.on('committed', listener);
  }

  async readAfter(position: number, limit: number): Promise<CustomerCreatedEvent[]> {
    const rows = await this.db
      .selectFrom('events')
      .select(['position', 'id', 'type', 'payload', 'occurred_at', 'traceparent'])
      .where('position', '>', position)
      .orderBy('position')
      .limit(limit)
      .execute();
    return rows.map(toEvent);
  }

  /**
   * Long-poll: reads events after `position`; when there are none, waits up to `waitMs` for one.
   * Wakes at once for commits in this process and re-reads every `recheckMs` for commits made
   * by other processes sharing the database.
   */
  async waitAfter(
    position: number,
    limit: number,
    waitMs: number,
    recheckMs = 250,
  ): Promise<CustomerCreatedEvent[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const events = await this.readAfter(position, limit);
      const remaining = deadline - Date.now();
      if (events.length > 0 || remaining <= 0 || this.closed) return events;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), Math.min(remaining, recheckMs));
      try {
        await once(this.appended, 'committed', { signal: controller.signal });
      } catch {
        // timed out: re-read
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Ends every long-poll at once (shutdown); they answer with what they have. */
  close(): void {
    this.closed = true;
    this.appended.emit('committed');
  }
}
