import { sql, type Generated } from 'kysely';
import {
  ALERT_OUTBOX_STATES,
  type AlertOutboxState,
  type AlertType,
  type IncidentType,
} from '../../contracts/alerts.js';
import type { Migration } from '../../core/migrations.js';

/** Integration migration 11: where alerts go, what is to be sent, and which incidents are open. */
export const alertsMigration: Migration = {
  version: 12,
  name: 'send operational alerts from an outbox, one per incident',
  async up(db, types) {
    await db.schema
      .createTable('alert_endpoints')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('url', 'text', (c) => c.notNull().unique())
      .addColumn('secret', 'text', (c) => c.notNull())
      // 1: from ALERT_WEBHOOK_URLS, kept in step with it at start-up; 0: from the admin API.
      .addColumn('configured', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', types.epochMs, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('alert_incidents')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('opened_at', types.epochMs, (c) => c.notNull())
      .addColumn('closed_at', types.epochMs)
      .addColumn('occurrences', 'integer', (c) => c.notNull().defaultTo(1))
      // When an instance last saw the condition: one no instance reports any more is resolved.
      .addColumn('last_seen_at', types.epochMs, (c) => c.notNull())
      .execute();
    // At most one open incident per condition, whichever instance sees it first: the others'
    // inserts do nothing (ON CONFLICT DO NOTHING), so a condition alerts once.
    await db.schema
      .createIndex('alert_incidents_open')
      .on('alert_incidents')
      .columns(['type', 'key'])
      .unique()
      .where(sql.ref('closed_at'), 'is', null)
      .execute();
    const states = sql.join(ALERT_OUTBOX_STATES.map((state) => sql.lit(state)));
    await db.schema
      .createTable('alert_outbox')
      .addColumn('seq', types.serialPrimaryKey, types.serialKey)
      // The alert's id: `webhook-id`, the same for each of its endpoints and on every retry.
      .addColumn('alert_id', 'text', (c) => c.notNull())
      .addColumn('endpoint_id', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in (${states})`))
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', types.epochMs, (c) => c.notNull())
      .addColumn('next_attempt_at', types.epochMs, (c) => c.notNull())
      .addColumn('locked_by', 'text')
      .addColumn('locked_until', types.epochMs)
      .addColumn('last_status', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('sent_at', types.epochMs)
      .addColumn('updated_at', types.epochMs, (c) => c.notNull())
      .addUniqueConstraint('alert_outbox_once', ['alert_id', 'endpoint_id'])
      .execute();
    await db.schema
      .createIndex('alert_outbox_due')
      .on('alert_outbox')
      .columns(['state', 'next_attempt_at'])
      .execute();
    await db.schema
      .createIndex('alert_outbox_created_at')
      .on('alert_outbox')
      .column('created_at')
      .execute();
  },
};

export interface AlertTables {
  alert_endpoints: {
    id: string;
    url: string;
    /** The `whsec_` signing secret, in clear (the integration service has no secrets keyring). */
    secret: string;
    /** 1 when ALERT_WEBHOOK_URLS put it there. */
    configured: number;
    created_at: number;
  };
  alert_incidents: {
    id: string;
    type: IncidentType;
    key: string;
    opened_at: number;
    closed_at: number | null;
    occurrences: number;
    last_seen_at: number;
  };
  alert_outbox: {
    seq: Generated<number>;
    alert_id: string;
    endpoint_id: string;
    type: AlertType;
    /** The webhook's JSON body, as signed. */
    body: string;
    state: AlertOutboxState;
    attempts: number;
    created_at: number;
    next_attempt_at: number;
    locked_by: string | null;
    locked_until: number | null;
    last_status: number | null;
    last_error: string | null;
    sent_at: number | null;
    updated_at: number;
  };
}
