import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/core/db.js';
import { migrate, type Migration } from '../../src/core/migrations.js';
import { crmMigrations as allCrmMigrations } from '../../src/crm/migrations.js';

// A fixed list, so these tests do not change when the CRM gains migrations.
const crmMigrations = allCrmMigrations.slice(0, 1);
import { createTestDatabase, postgresUrlFor, type TestDatabase } from '../support/databases.js';

let database: TestDatabase<unknown> | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

const versions = async (db: Kysely<any>) =>
  (await db.selectFrom('schema_migrations').select('version').orderBy('version').execute()).map(
    (row) => row.version as number,
  );

describe('migrate', () => {
  it('applies each migration once, in order, and nothing on a second run', async () => {
    database = await createTestDatabase('crm');
    const first = await migrate(database, crmMigrations);
    expect(first).toEqual({ applied: [1], current: 1 });
    const second = await migrate(database, crmMigrations);
    expect(second).toEqual({ applied: [], current: 1 });
    expect(await versions(database.db as Kysely<any>)).toEqual([1]);
  });

  it('applies only the new ones when a later build adds a migration', async () => {
    database = await createTestDatabase('crm');
    await migrate(database, crmMigrations);
    const next: Migration = {
      version: 2,
      name: 'add a phone column',
      up: async (db) => {
        await db.schema.alterTable('customers').addColumn('phone', 'text').execute();
      },
    };
    expect(await migrate(database, [...crmMigrations, next])).toEqual({ applied: [2], current: 2 });
  });

  it('rolls back a failing migration completely and says which one failed', async () => {
    database = await createTestDatabase('crm');
    const broken: Migration = {
      version: 2,
      name: 'broken',
      up: async (db) => {
        await db.schema.createTable('half_done').addColumn('x', 'text').execute();
        await sql`select * from no_such_table`.execute(db);
      },
    };
    await expect(migrate(database, [...crmMigrations, broken])).rejects.toThrow(
      /Migration 2 "broken" failed/,
    );
    // SQLite and PostgreSQL both roll back DDL inside the transaction.
    expect(await migrate(database, crmMigrations)).toEqual({ applied: [1], current: 1 });
  });

  it('refuses to run an older build against a newer database, saying what to do', async () => {
    database = await createTestDatabase('crm');
    await migrate(database, crmMigrations);
    await (database.db as Kysely<any>)
      .insertInto('schema_migrations')
      .values({ version: 7, name: 'from the future', applied_at: new Date().toISOString() })
      .execute();
    await expect(migrate(database, crmMigrations)).rejects.toThrow(
      /at migration 7, but this build only knows up to 1\. Run the newer build/,
    );
  });

  it('refuses migrations listed out of order', async () => {
    database = await createTestDatabase('crm');
    const shuffled = [{ ...crmMigrations[0]!, version: 2 }];
    await expect(migrate(database, shuffled)).rejects.toThrow(/must be 1, 2, 3/);
  });

  it.runIf(postgresUrlFor('crm'))(
    'lets several connections migrate one PostgreSQL schema at once, applying each migration once',
    async () => {
      database = await createTestDatabase('crm');
      const url = database.env.CRM_DATABASE_URL!;
      const others = await Promise.all(
        Array.from({ length: 5 }, () => openDatabase({ url, sqliteFile: '' })),
      );
      try {
        const results = await Promise.all(others.map((other) => migrate(other, crmMigrations)));
        expect(results.flatMap((r) => r.applied)).toEqual([1]);
        expect(await versions(database.db as Kysely<any>)).toEqual([1]);
      } finally {
        await Promise.all(others.map((other) => other.close()));
      }
    },
  );
});
