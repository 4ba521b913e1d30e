import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { WebhookMessageState } from '../contracts/webhook-endpoints.js';
import type { Migration } from '../core/migrations.js';

/** The CRM's tables, forward only: add a new entry, never edit a released one. */
export const crmMigrations: Migration[] = [
  {
    version: 1,
    name: 'create customers',
    async up(db, types) {
      await db.schema
        .createTable('customers')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('email_normalized', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: 'create the event outbox and record existing customers in it',
    async up(db, types) {
      await db.schema
        .createTable('events')
        .addColumn('position', types.serialPrimaryKey, types.serialKey)
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('customer_id', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('occurred_at', types.timestamp, (c) => c.notNull())
        .execute();
      // Customers created before the outbox existed get their event now, in creation order.
      for (let after = 0; ;) {
        const customers = await db
          .selectFrom('customers')
          .select(['seq', 'id', 'name', 'email', 'created_at'])
          .where('seq', '>', after)
          .orderBy('seq')
          .limit(1000)
          .execute();
        if (customers.length === 0) break;
        await db
          .insertInto('events')
          .values(
            customers.map((c) => {
              const createdAt = new Date(c.created_at).toISOString();
              return {
                id: randomUUID(),
                type: 'customer.created',
                customer_id: c.id,
                payload: JSON.stringify({
                  id: c.id,
                  name: c.name,
                  email: c.email,
                  created_at: createdAt,
                }),
                occurred_at: createdAt,
              };
            }),
          )
          .execute();
        after = customers[customers.length - 1]!.seq;
      }
    },
  },
  {
    version: 3,
    name: 'create webhook endpoints, their messages and attempts, and relay cursors',
    async up(db, types) {
      await db.schema
        .createTable('webhook_endpoints')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('url', 'text', (c) => c.notNull().unique())
        .addColumn('secret', 'text', (c) => c.notNull())
        // Kept valid for a while after a rotation, so receivers can switch over without a gap.
        .addColumn('previous_secret', 'text')
        .addColumn('previous_secret_expires_at', types.epochMs)
        .addColumn('created_at', types.epochMs, (c) => c.notNull())
        .addColumn('disabled_at', types.epochMs)
        .addColumn('disabled_reason', 'text')
        .addColumn('failing_since', types.epochMs)
        .execute();
      // One row per endpoint and event, written with the event (the outbox), sent by the relay.
      await db.schema
        .createTable('webhook_messages')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('endpoint_id', 'text', (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('event_position', types.epochMs, (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', types.epochMs, (c) => c.notNull())
        .addColumn('locked_until', types.epochMs)
        .addColumn('last_status', 'integer')
        .addColumn('last_error', 'text')
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .addUniqueConstraint('webhook_messages_endpoint_event_unique', ['endpoint_id', 'event_id'])
        .execute();
      await db.schema
        .createIndex('webhook_messages_due')
        .on('webhook_messages')
        .columns(['state', 'next_attempt_at'])
        .execute();
      await db.schema
        .createTable('webhook_attempts')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('endpoint_id', 'text', (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('attempted_at', types.epochMs, (c) => c.notNull())
        .addColumn('status', 'integer')
        .addColumn('error', 'text')
        .addColumn('duration_ms', 'integer', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('webhook_attempts_by_endpoint')
        .on('webhook_attempts')
        .columns(['endpoint_id', 'seq'])
        .execute();
      await db.schema
        .createTable('relay_cursors')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('position', types.epochMs, (c) => c.notNull())
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 4,
    name: 'keep the trace context of the request that created each event',
    async up(db) {
      await db.schema.alterTable('events').addColumn('traceparent', 'text').execute();
    },
  },
  {
    version: 5,
    name: "record each event's writing transaction, so appends can commit concurrently (PostgreSQL)",
    async up(db, _types, dialect) {
      // SQLite has a single writer: positions commit in order there, nothing to record.
      if (dialect !== 'postgres') return;
      // Events already stored count as written long ago (0); new ones record their transaction.
      // Feed readers compare it with the transactions still running (see "Feed order", events.ts).
      await sql`alter table events add column xid xid8 not null default '0'`.execute(db);
      await sql`alter table events alter column xid set default pg_current_xact_id()`.execute(db);
    },
  },
  {
    version: 6,
    name: 'a lease on each relay, so one CRM instance of several publishes the events',
    async up(db, types) {
      await db.schema.alterTable('relay_cursors').addColumn('holder', 'text').execute();
      await db.schema.alterTable('relay_cursors').addColumn('lease_until', types.epochMs).execute();
    },
  },
  {
    version: 7,
    name: 'customers change and leave: versions, update times, changed fields on events, tombstones',
    async up(db, types) {
      // Customers so far were never changed: version 1, last changed when created.
      await db.schema
        .alterTable('customers')
        .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
        .execute();
      await db.schema.alterTable('customers').addColumn('updated_at', types.timestamp).execute();
      await db
        .updateTable('customers')
        .set({ updated_at: sql.ref('created_at') })
        .execute();
      // A JSON array on customer.updated events; null on the others.
      await db.schema.alterTable('events').addColumn('changed_fields', 'text').execute();
      // What is kept of a deleted customer: no name, no email.
      await db.schema
        .createTable('customer_tombstones')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('deleted_at', types.timestamp, (c) => c.notNull())
        .execute();
      // Deleting a customer erases its earlier events.
      await db.schema
        .createIndex('events_customer_id')
        .on('events')
        .column('customer_id')
        .execute();
    },
  },
  {
    version: 8,
    name: 'remember the feed positions a deletion erased',
    async up(db, types) {
      // A deletion leaves gaps in the feed's positions for good; on PostgreSQL a reader must know
      // them from gaps a running transaction may still fill (feed-order.ts), or it would wait on
      // every transaction older than the events after them.
      await db.schema
        .createTable('erased_positions')
        .addColumn('position', types.epochMs, (c) => c.primaryKey())
        .execute();
    },
  },
  {
    version: 9,
    name: 'index customer ids in byte order, for audits that page through them',
    async up(db, _types, dialect) {
      // SQLite compares text byte by byte already; PostgreSQL follows the database's collation,
      // so the audit's `collate "C"` order needs indexes of its own (customer-states.ts).
      if (dialect !== 'postgres') return;
      await sql`create index customers_id_bytes on customers (id collate "C")`.execute(db);
      await sql`create index customer_tombstones_id_bytes on customer_tombstones (id collate "C")`.execute(
        db,
      );
    },
  },
];

export interface CrmTables {
  customers: {
    seq: import('kysely').Generated<number>;
    id: string;
    name: string;
    email: string;
    email_normalized: string;
    version: import('kysely').ColumnType<number, number | undefined, number>;
    created_at: string | Date;
    /** Null only on rows written before migration 7 ran; it sets them. */
    updated_at: string | Date | null;
  };
  webhook_endpoints: {
    seq: import('kysely').Generated<number>;
    id: string;
    url: string;
    secret: string;
    previous_secret: string | null;
    previous_secret_expires_at: number | null;
    created_at: number;
    disabled_at: number | null;
    disabled_reason: string | null;
    failing_since: number | null;
  };
  webhook_messages: {
    seq: import('kysely').Generated<number>;
    endpoint_id: string;
    event_id: string;
    event_position: number;
    state: WebhookMessageState;
    attempts: import('kysely').Generated<number>;
    next_attempt_at: number;
    locked_until: number | null;
    last_status: number | null;
    last_error: string | null;
    updated_at: number;
  };
  webhook_attempts: {
    seq: import('kysely').Generated<number>;
    endpoint_id: string;
    event_id: string;
    attempted_at: number;
    status: number | null;
    error: string | null;
    duration_ms: number;
  };
  relay_cursors: {
    name: string;
    position: number;
    updated_at: number;
    /** The CRM instance relaying, while `lease_until` is ahead. */
    holder: string | null;
    lease_until: number | null;
  };
  customer_tombstones: { id: string; version: number; deleted_at: string | Date };
  events: {
    position: import('kysely').Generated<number>;
    id: string;
    type: string;
    customer_id: string;
    payload: string;
    occurred_at: string | Date;
    traceparent: string | null;
    /** customer.updated: the changed fields, as a JSON array; null on other events. */
    changed_fields: string | null;
    // On PostgreSQL also `xid` (xid8, the writing transaction), read and written only in SQL.
  };
  /** Feed positions whose events a deletion erased: gaps that no transaction will fill. */
  erased_positions: { position: number };
}
