import { sql, type Generated, type Selectable } from 'kysely';
import {
  DELIVERY_OPERATIONS,
  DELIVERY_OUTCOMES,
  DELIVERY_STATES,
  type DeliveryOperation,
  type DeliveryOutcome,
  type DeliveryState,
} from '../contracts/admin-api.js';
import {
  TIMELINE_ACTIONS,
  TIMELINE_KINDS,
  TIMELINE_RESULTS,
  type TimelineAction,
  type TimelineKind,
  type TimelineResult,
} from '../contracts/timeline.js';
import { refuseValuesOutside, type Migration } from '../core/migrations.js';
import { replaceValueTriggersWithChecks } from '../core/value-checks.js';
import type { AuditState } from '../contracts/audit.js';
import { alertsMigration, type AlertTables } from './alerts/tables.js';

/** The integration service's tables, forward only: add a new entry, never edit a released one. */
export const integrationMigrations: Migration[] = [
  {
    version: 1,
    name: 'create sync cursors, deliveries and leases',
    async up(db, types) {
      await db.schema
        .createTable('sync_cursors')
        .addColumn('source', 'text', (c) => c.primaryKey())
        .addColumn('position', types.epochMs, (c) => c.notNull())
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('deliveries')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        // One delivery per customer, whatever the number of sources that report it.
        .addColumn('customer_id', 'text', (c) => c.notNull().unique())
        .addColumn('customer_name', 'text', (c) => c.notNull())
        .addColumn('customer_created_at', types.epochMs, (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('replays', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', types.epochMs, (c) => c.notNull())
        .addColumn('failing_since', types.epochMs)
        .addColumn('last_error', 'text')
        .addColumn('last_status', 'integer')
        .addColumn('locked_by', 'text')
        .addColumn('locked_until', types.epochMs)
        .addColumn('package_request_id', 'text')
        .addColumn('recorded_at', types.epochMs, (c) => c.notNull())
        .addColumn('delivered_at', types.epochMs)
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('deliveries_due')
        .on('deliveries')
        .columns(['state', 'next_attempt_at'])
        .execute();
      await db.schema
        .createTable('leases')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('expires_at', types.epochMs, (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: 'create the inbox of pushed message ids',
    async up(db, types) {
      // Webhook ids and AMQP message ids already handled: a redelivered message is recognised.
      await db.schema
        .createTable('received_messages')
        .addColumn('message_id', 'text', (c) => c.primaryKey())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('received_at', types.epochMs, (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 3,
    name: 'index deliveries by delivery time, for the dashboard',
    async up(db) {
      await db.schema
        .createIndex('deliveries_delivered_at')
        .on('deliveries')
        .column('delivered_at')
        .execute();
    },
  },
  {
    version: 4,
    name: 'keep the trace context each customer arrived with',
    async up(db) {
      await db.schema.alterTable('deliveries').addColumn('traceparent', 'text').execute();
    },
  },
  {
    version: 5,
    name: 'refuse delivery states outside the list',
    async up(db, _types, dialect) {
      await refuseValuesOutside(db, dialect, {
        table: 'deliveries',
        column: 'state',
        allowed: DELIVERY_STATES,
        rows: 'deliveries',
        what: 'a state',
      });
    },
  },
  {
    version: 6,
    name: 'keep the feed position of each pushed message',
    async up(db, types) {
      // The feed repair moves its cursor over positions push has recorded without reading them
      // from the feed again (store/inbox.ts, passPushed).
      await db.schema
        .alterTable('received_messages')
        .addColumn('feed_position', types.epochMs)
        .execute();
      await db.schema
        .createIndex('received_messages_feed_position')
        .on('received_messages')
        .column('feed_position')
        .execute();
    },
  },
  {
    version: 7,
    name: 'keep each customer’s latest known state and what Inventory was made to match',
    async up(db, types, dialect) {
      const add = (column: string, type: 'text' | 'integer' | 'bigint' | typeof types.epochMs) =>
        db.schema.alterTable('deliveries').addColumn(column, type).execute();
      const addCounter = (column: string, type: 'integer' | 'bigint', initial: number) =>
        db.schema
          .alterTable('deliveries')
          .addColumn(column, type, (c) => c.notNull().defaultTo(initial))
          .execute();
      // The desired state: the latest customer version known, deleted or not.
      await add('customer_email', 'text');
      await addCounter('customer_version', 'bigint', 1);
      await add('customer_deleted_at', types.epochMs);
      await add('changed_at', types.epochMs);
      // +1 whenever a newer state is recorded: settling an attempt at an older one does not close it.
      await addCounter('revision', 'integer', 0);
      // What Inventory is known to hold, and what was last asked of it.
      await add('applied_version', 'bigint');
      await add('operation', 'text');
      await add('outcome', 'text');
      // 1 once a create was claimed: Inventory may then hold a package no answer recorded.
      await addCounter('create_tried', 'integer', 0);
      // Every customer so far was a create: delivered ones have version 1 in Inventory, and any
      // other may have had its create sent.
      await sql`update deliveries set create_tried = 1, changed_at = customer_created_at`.execute(
        db,
      );
      await sql`update deliveries set applied_version = 1, operation = 'create',
        outcome = 'created' where state = 'delivered'`.execute(db);
      for (const [column, allowed, what] of [
        ['operation', DELIVERY_OPERATIONS, 'an operation'],
        ['outcome', DELIVERY_OUTCOMES, 'an outcome'],
      ] as const) {
        await refuseValuesOutside(db, dialect, {
          table: 'deliveries',
          column,
          allowed,
          rows: 'deliveries',
          what,
        });
      }
    },
  },
  {
    version: 8,
    name: 'keep a timeline per customer: events received, attempts, operator actions',
    async up(db, types) {
      // A new table takes its CHECKs at creation, on both databases (no triggers needed).
      const oneOf = (column: string, allowed: readonly string[]) =>
        sql`${sql.ref(column)} in (${sql.join(allowed.map((value) => sql.lit(value)))})`;
      await db.schema
        .createTable('timeline_entries')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('customer_id', 'text', (c) => c.notNull())
        .addColumn('at', types.epochMs, (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull().check(oneOf('kind', TIMELINE_KINDS)))
        .addColumn('result', 'text', (c) => c.notNull().check(oneOf('result', TIMELINE_RESULTS)))
        .addColumn('source', 'text')
        .addColumn('event_type', 'text')
        .addColumn('event_id', 'text')
        .addColumn('message_id', 'text')
        .addColumn('version', 'bigint')
        .addColumn('operation', 'text', (c) => c.check(oneOf('operation', DELIVERY_OPERATIONS)))
        .addColumn('outcome', 'text', (c) => c.check(oneOf('outcome', DELIVERY_OUTCOMES)))
        .addColumn('duration_ms', 'integer')
        .addColumn('status', 'integer')
        .addColumn('error', 'text')
        .addColumn('trace_id', 'text')
        .addColumn('instance', 'text')
        .addColumn('action', 'text', (c) => c.check(oneOf('action', TIMELINE_ACTIONS)))
        .execute();
      await db.schema
        .createIndex('timeline_entries_customer')
        .on('timeline_entries')
        .columns(['customer_id', 'seq'])
        .execute();
    },
  },
  {
    version: 9,
    name: 'let operators pause delivery to Inventory',
    async up(db, types) {
      // One row per destination ('inventory'); paused while paused_at is set.
      await db.schema
        .createTable('delivery_controls')
        .addColumn('destination', 'text', (c) => c.primaryKey())
        .addColumn('paused_at', types.epochMs)
        .addColumn('paused_by', 'text')
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .execute();
      // The row exists from the start: a pause or resume is one conditional UPDATE of it.
      await db
        .insertInto('delivery_controls')
        .values({ destination: 'inventory', paused_at: null, paused_by: null, updated_at: 0 })
        .execute();
    },
  },
  {
    version: 10,
    name: 'index pushed message ids and timeline entries by age, for the retention sweep',
    async up(db) {
      await db.schema
        .createIndex('received_messages_received_at')
        .on('received_messages')
        .column('received_at')
        .execute();
      await db.schema
        .createIndex('timeline_entries_at')
        .on('timeline_entries')
        .column('at')
        .execute();
    },
  },
  {
    version: 11,
    name: 'audit the CRM against Inventory: audit jobs, and repairs as new changes',
    async up(db, types) {
      // Each repair of a customer counts up: its calls to Inventory then carry idempotency keys
      // of their own, so a stored answer from before the drift is not replayed for them.
      await db.schema
        .alterTable('deliveries')
        .addColumn('repairs', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('audits')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('repair', 'integer', (c) => c.notNull())
        .addColumn('instance', 'text', (c) => c.notNull())
        .addColumn('started_at', types.epochMs, (c) => c.notNull())
        .addColumn('updated_at', types.epochMs, (c) => c.notNull())
        .addColumn('finished_at', types.epochMs)
        .addColumn('report', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audits_started_at').on('audits').column('started_at').execute();
    },
  },
  alertsMigration,
  {
    version: 13,
    name: 'check delivery states, operations and outcomes in the table, not by triggers (SQLite)',
    async up(db, _types, dialect) {
      await replaceValueTriggersWithChecks(db, dialect, 'deliveries', [
        { column: 'state', allowed: DELIVERY_STATES },
        { column: 'operation', allowed: DELIVERY_OPERATIONS },
        { column: 'outcome', allowed: DELIVERY_OUTCOMES },
      ]);
    },
  },
];

/** The `customer_id` of timeline entries about every customer (a pause, a resume). */
export const ALL_CUSTOMERS = '*';

export interface IntegrationTables extends AlertTables {
  sync_cursors: { source: string; position: number; updated_at: number };
  deliveries: {
    seq: Generated<number>;
    customer_id: string;
    /** Empty once the customer is deleted: erased with its email. */
    customer_name: string;
    customer_email: string | null;
    /** bigint on PostgreSQL, read as a number. */
    customer_version: Generated<number>;
    customer_deleted_at: number | null;
    customer_created_at: number;
    /** When the CRM recorded the state this row wants (null: rows from before, read as created). */
    changed_at: number | null;
    revision: Generated<number>;
    applied_version: number | null;
    operation: DeliveryOperation | null;
    outcome: DeliveryOutcome | null;
    create_tried: Generated<number>;
    event_id: string;
    source: string;
    state: DeliveryState;
    attempts: Generated<number>;
    replays: Generated<number>;
    next_attempt_at: number;
    failing_since: number | null;
    last_error: string | null;
    last_status: number | null;
    locked_by: string | null;
    locked_until: number | null;
    package_request_id: string | null;
    recorded_at: number;
    delivered_at: number | null;
    updated_at: number;
    traceparent: string | null;
    /** How many times an audit or resync sent the customer through again (idempotency keys). */
    repairs: Generated<number>;
  };
  audits: {
    id: string;
    state: AuditState;
    repair: number;
    instance: string;
    started_at: number;
    /** The running instance writes its progress at least every few seconds. */
    updated_at: number;
    finished_at: number | null;
    /** The report so far (counts, examples), as JSON. */
    report: string;
  };
  leases: { name: string; holder: string; expires_at: number };
  delivery_controls: {
    destination: string;
    paused_at: number | null;
    paused_by: string | null;
    updated_at: number;
  };
  timeline_entries: {
    seq: Generated<number>;
    customer_id: string;
    at: number;
    kind: TimelineKind;
    result: TimelineResult;
    source: string | null;
    event_type: string | null;
    event_id: string | null;
    message_id: string | null;
    /** bigint on PostgreSQL, read as a number. */
    version: number | null;
    operation: DeliveryOperation | null;
    outcome: DeliveryOutcome | null;
    duration_ms: number | null;
    status: number | null;
    error: string | null;
    trace_id: string | null;
    instance: string | null;
    action: TimelineAction | null;
  };
  received_messages: {
    message_id: string;
    source: string;
    received_at: number;
    /** The message's place in the CRM feed; null when its sender did not say. */
    feed_position: number | null;
  };
}

export type DeliveryRow = Selectable<IntegrationTables['deliveries']>;
