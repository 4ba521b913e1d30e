import { randomUUID } from 'node:crypto';
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
];

export interface CrmTables {
  customers: {
    seq: import('kysely').Generated<number>;
    id: string;
    name: string;
    email: string;
    email_normalized: string;
    created_at: string | Date;
  };
  events: {
    position: import('kysely').Generated<number>;
    id: string;
    type: string;
    customer_id: string;
    payload: string;
    occurred_at: string | Date;
  };
}
