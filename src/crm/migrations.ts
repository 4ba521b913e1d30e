import type { Migration } from '../core/migrations.js';

/** The CRM's tables, forward only: add a new entry, never edit a released one. */
export const crmMigrations: Migration[] = [
  {
    version: 1,
    name: 'create customers',
    async up(db, types) {
      await db.schema
        .createTable('customers')
        .addColumn('seq', types.serialPrimaryKey, (c) =>
          types.serialPrimaryKey === 'integer' ? c.primaryKey().autoIncrement() : c.primaryKey(),
        )
        .addColumn('id', 'text', (c) => c.notNull().unique())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('email_normalized', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', types.timestamp, (c) => c.notNull())
        .execute();
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
}
