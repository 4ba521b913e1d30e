import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { DELIVERY_STATES } from '../../src/contracts/admin-api.js';
import { migrate } from '../../src/core/migrations.js';
import { integrationMigrations, type IntegrationTables } from '../../src/integration/migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

let database: TestDatabase<IntegrationTables> | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

const delivery = (customerId: string, state: string) => ({
  customer_id: customerId,
  customer_name: 'C',
  customer_created_at: 0,
  event_id: `e-${customerId}`,
  source: 'test',
  state,
  next_attempt_at: 0,
  recorded_at: 0,
  updated_at: 0,
});

/**
 * A fresh integration database migrated up to `version` (every migration when absent), untyped:
 * the point is what the database itself accepts and refuses.
 */
async function untypedDatabaseAt(version?: number): Promise<Kysely<any>> {
  database = await createTestDatabase<IntegrationTables>('integration');
  await migrate(database, integrationMigrations.slice(0, version));
  return database.db as unknown as Kysely<any>;
}

describe('integration migrations', () => {
  it('accept every delivery state of the list and refuse any other, on insert and update', async () => {
    const db = await untypedDatabaseAt();
    for (const state of DELIVERY_STATES) {
      await db
        .insertInto('deliveries')
        .values(delivery(`c-${state}`, state))
        .execute();
    }
    await expect(
      db.insertInto('deliveries').values(delivery('c-bad', 'lost')).execute(),
    ).rejects.toThrow(/deliveries_state_valid|deliveries\.state must be one of/);
    await expect(
      db
        .updateTable('deliveries')
        .set({ state: 'Delivered' })
        .where('customer_id', '=', 'c-dead')
        .execute(),
    ).rejects.toThrow(/deliveries_state_valid|deliveries\.state must be one of/);
    const states = await db.selectFrom('deliveries').select('state').orderBy('seq').execute();
    expect(states.map((row) => row.state)).toEqual([...DELIVERY_STATES]);
  });

  it('add the state check to a database that already has deliveries', async () => {
    const db = await untypedDatabaseAt(4);
    await db.insertInto('deliveries').values(delivery('c-1', 'retrying')).execute();
    expect(await migrate(database!, integrationMigrations.slice(0, 5))).toMatchObject({
      applied: [5],
    });
    await expect(sql`update deliveries set state = 'paused'`.execute(db)).rejects.toThrow();
    expect((await db.selectFrom('deliveries').select('state').execute())[0]!.state).toBe(
      'retrying',
    );
  });

  it('refuse to add the check while a delivery has a state outside the list, changing nothing', async () => {
    const db = await untypedDatabaseAt(4);
    await db.insertInto('deliveries').values(delivery('c-1', 'paused')).execute();
    await expect(migrate(database!, integrationMigrations)).rejects.toThrow(/Migration 5/);
    expect((await db.selectFrom('schema_migrations').select('version').execute()).length).toBe(4);
  });

  it('keep the message ids an older version received, with no feed position', async () => {
    const db = await untypedDatabaseAt(5);
    await db
      .insertInto('received_messages')
      .values({ message_id: 'm-1', source: 'webhook', received_at: 0 })
      .execute();
    expect(await migrate(database!, integrationMigrations.slice(0, 6))).toMatchObject({
      applied: [6],
    });
    expect(await db.selectFrom('received_messages').selectAll().execute()).toEqual([
      { message_id: 'm-1', source: 'webhook', received_at: 0, feed_position: null },
    ]);
  });

  it('take the deliveries an older version recorded as creates, and refuse unknown operations', async () => {
    const db = await untypedDatabaseAt(6);
    await db
      .insertInto('deliveries')
      .values([
        { ...delivery('c-done', 'delivered'), package_request_id: 'pr-1', customer_created_at: 5 },
        delivery('c-waiting', 'retrying'),
      ])
      .execute();
    expect(await migrate(database!, integrationMigrations.slice(0, 7))).toMatchObject({
      applied: [7],
    });
    const rows = await db
      .selectFrom('deliveries')
      .select([
        'customer_id',
        'customer_version',
        'customer_deleted_at',
        'revision',
        'applied_version',
        'operation',
        'outcome',
        'create_tried',
        'changed_at',
      ])
      .orderBy('customer_id')
      .execute();
    expect(rows.map((row) => ({ ...row, customer_version: Number(row.customer_version) }))).toEqual(
      [
        {
          customer_id: 'c-done',
          customer_version: 1,
          customer_deleted_at: null,
          revision: 0,
          applied_version: 1,
          operation: 'create',
          outcome: 'created',
          create_tried: 1,
          changed_at: 5,
        },
        {
          customer_id: 'c-waiting',
          customer_version: 1,
          customer_deleted_at: null,
          revision: 0,
          applied_version: null,
          operation: null,
          outcome: null,
          create_tried: 1,
          changed_at: 0,
        },
      ],
    );
    await expect(
      db.updateTable('deliveries').set({ operation: 'resend' }).execute(),
    ).rejects.toThrow(/deliveries_operation_valid|deliveries\.operation must be one of/);
    await expect(db.updateTable('deliveries').set({ outcome: 'lost' }).execute()).rejects.toThrow(
      /deliveries_outcome_valid|deliveries\.outcome must be one of/,
    );
  });

  it('create a timeline that refuses a kind, result, operation or action outside the lists', async () => {
    database = await createTestDatabase<IntegrationTables>('integration');
    await migrate(database!, integrationMigrations);
    const { db } = database;
    const entry = { customer_id: 'c-1', at: 0, kind: 'event', result: 'taken' } as const;
    await db.insertInto('timeline_entries').values(entry).execute();
    for (const wrong of [
      { kind: 'note' },
      { result: 'ok' },
      { operation: 'delete' },
      { action: 'restart' },
    ]) {
      await expect(
        db
          .insertInto('timeline_entries')
          .values({ ...entry, ...(wrong as object) })
          .execute(),
      ).rejects.toThrow(/check constraint|CHECK constraint/i);
    }
    expect(await db.selectFrom('timeline_entries').select('kind').execute()).toEqual([
      { kind: 'event' },
    ]);
  });

  it('move the value checks of deliveries into the table, keeping rows, ids, indexes and refusals', async () => {
    const db = await untypedDatabaseAt(12);
    await db
      .insertInto('deliveries')
      .values(['c-1', 'c-2', 'c-3'].map((id) => delivery(id, 'pending')))
      .execute();
    // The highest id ever handed out is gone: it must not be handed out again.
    await db.deleteFrom('deliveries').where('customer_id', '=', 'c-3').execute();
    const before = await db.selectFrom('deliveries').selectAll().orderBy('seq').execute();
    const indexes = () =>
      database!.dialect === 'postgres'
        ? sql<{ name: string }>`select indexname as name from pg_indexes
            where schemaname = current_schema() and tablename = 'deliveries'`.execute(db)
        : sql<{ name: string }>`select name from sqlite_master
            where type = 'index' and tbl_name = 'deliveries'`.execute(db);
    const indexesBefore = (await indexes()).rows.map((row) => row.name).sort();

    expect(await migrate(database!, integrationMigrations)).toMatchObject({ applied: [13] });
    expect(await db.selectFrom('deliveries').selectAll().orderBy('seq').execute()).toEqual(before);
    expect((await indexes()).rows.map((row) => row.name).sort()).toEqual(indexesBefore);
    if (database!.dialect === 'sqlite') {
      const triggers = await sql`select name from sqlite_master where type = 'trigger'
        and tbl_name = 'deliveries'`.execute(db);
      expect(triggers.rows).toEqual([]);
    }
    const next = await db
      .insertInto('deliveries')
      .values(delivery('c-4', 'pending'))
      .returning('seq')
      .executeTakeFirstOrThrow();
    expect(next.seq).toBeGreaterThan(Math.max(...before.map((row) => row.seq)) + 1);
    for (const [column, wrong] of [
      ['state', 'lost'],
      ['operation', 'resend'],
      ['outcome', 'gone'],
    ] as const) {
      await expect(
        db
          .updateTable('deliveries')
          .set({ [column]: wrong })
          .execute(),
      ).rejects.toThrow(new RegExp(`deliveries_${column}_valid`));
      await expect(
        db
          .insertInto('deliveries')
          .values({ ...delivery('c-5', 'pending'), [column]: wrong })
          .execute(),
      ).rejects.toThrow(new RegExp(`deliveries_${column}_valid`));
    }
    expect(
      await db.selectFrom('deliveries').select('customer_id').orderBy('seq').execute(),
    ).toEqual([{ customer_id: 'c-1' }, { customer_id: 'c-2' }, { customer_id: 'c-4' }]);
  });
});
