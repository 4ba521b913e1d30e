import type { Generated } from 'kysely';
import type { Migration } from '../core/migrations.js';

/** Inventory's tables, forward only: add a new entry, never edit a released one. */
export const inventoryMigrations: Migration[] = [
  {
    version: 1,
    name: 'create package requests and idempotency keys',
    async up(db, types) {
      await db.schema
        .createTable('package_requests')
        .addColumn('seq', types.serialPrimaryKey, types.serialKey)
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('customer_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        // The one-request-per-customer-and-kind rule lives here, where no race can get past it.
        .addUniqueConstraint('package_requests_customer_kind_unique', ['customer_id', 'kind'])
        .execute();
      await db.schema
        .createTable('idempotency_keys')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('request_fingerprint', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('claim_id', 'text')
        .addColumn('locked_until', types.timestamp)
        .addColumn('response_status', 'integer')
        .addColumn('response_body', 'text')
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        .execute();
    },
  },
];

export interface InventoryTables {
  package_requests: {
    seq: Generated<number>;
    id: string;
    customer_id: string;
    kind: string;
    status: string;
    created_at: string | Date;
  };
  idempotency_keys: {
    key: string;
    request_fingerprint: string;
    state: 'in_flight' | 'completed';
    claim_id: string | null;
    locked_until: string | Date | null;
    response_status: number | null;
    response_body: string | null;
    created_at: string | Date;
  };
}
