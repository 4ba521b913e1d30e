import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { sql, type Kysely } from 'kysely';
import { Type, type Static } from 'typebox';
import { toIsoString, type DialectName } from '../core/db.js';
import { Timestamp, Uuid } from '../core/schemas.js';
import type { Customer } from './customers.js';
import type { CrmTables } from './migrations.js';

export const CUSTOMER_CREATED = 'customer.created';

export const CustomerCreatedEventSchema = Type.Object(
  {
    position: Type.Integer({
      minimum: 1,
      description: 'Place in the feed; strictly increasing in commit order. Resume after it.',
    }),
    id: Uuid('Unique event id; a consumer deduplicates on it.'),
    type: Type.Literal(CUSTOMER_CREATED),
    occurred_at: Timestamp('When the event was recorded.'),
    data: Type.Object({
      id: Uuid('The customer id.'),
      name: Type.String(),
      email: Type.String(),
      created_at: Timestamp('When the customer was created.'),
    }),
  },
  { additionalProperties: false },
);
export type CustomerCreatedEvent = Static<typeof CustomerCreatedEventSchema>;

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

/** The CRM's outbox of events: appended in the same transaction as the change it describes. */
export class EventLog {
  private readonly appended = new EventEmitter();
  private closed = false;

  constructor(
    private readonly db: Kysely<CrmTables>,
    private readonly dialect: DialectName,
  ) {
    this.appended.setMaxListeners(0);
  }

  /** Call inside the transaction that creates the customer, before its other writes. */
  async appendCustomerCreated(trx: Kysely<CrmTables>, customer: Customer): Promise<void> {
    await serialiseAppends(trx, this.dialect);
    await trx
      .insertInto('events')
      .values({
        id: randomUUID(),
        type: CUSTOMER_CREATED,
        customer_id: customer.id,
        payload: JSON.stringify(customer),
        occurred_at: customer.created_at,
      })
      .execute();
  }

  /** Tells waiting readers in this process that something was committed. */
  notifyCommitted(): void {
    this.appended.emit('committed');
  }

  async readAfter(position: number, limit: number): Promise<CustomerCreatedEvent[]> {
    const rows = await this.db
      .selectFrom('events')
      .select(['position', 'id', 'type', 'payload', 'occurred_at'])
      .where('position', '>', position)
      .orderBy('position')
      .limit(limit)
      .execute();
    return rows.map((row) => ({
      position: row.position,
      id: row.id,
      type: CUSTOMER_CREATED,
      occurred_at: toIsoString(row.occurred_at),
      data: JSON.parse(row.payload) as CustomerCreatedEvent['data'],
    }));
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
