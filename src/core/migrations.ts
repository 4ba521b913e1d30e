import { sql, type Kysely, type Transaction } from 'kysely';
import { columnTypes, type ColumnTypes, type Database, type DialectName } from './db.js';

export interface Migration {
  /** 1, 2, 3…: applied in this order, each exactly once, never edited after release. */
  version: number;
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before the typed schema exists
  up(db: Transaction<any>, types: ColumnTypes, dialect: DialectName): Promise<void>;
}

export interface MigrationResult {
  applied: number[];
  current: number;
}

interface MigrationTable {
  schema_migrations: { version: number; name: string; applied_at: string };
}

/**
 * Applies every migration not yet recorded, in one transaction, forward only. Two processes that
 * start at once serialise on a lock (an advisory lock on PostgreSQL, the write lock on SQLite), so
 * the second sees the first one's work and applies nothing.
 */
export async function migrate<Tables>(
  database: Database<Tables>,
  migrations: readonly Migration[],
): Promise<MigrationResult> {
  checkOrder(migrations);
  const db = database.db as unknown as Kysely<MigrationTable>;
  const types = columnTypes(database.dialect);
  return db.transaction().execute(async (trx) => {
    if (database.dialect === 'postgres') {
      await sql`select pg_advisory_xact_lock(hashtext(current_schema() || '.schema_migrations'))`.execute(
        trx,
      );
    }
    await trx.schema
      .createTable('schema_migrations')
      .ifNotExists()
      .addColumn('version', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('applied_at', types.timestamp, (c) => c.notNull())
      .execute();
    const rows = await trx.selectFrom('schema_migrations').select('version').execute();
    const done = new Set(rows.map((row) => row.version));
    const latestKnown = migrations.at(-1)?.version ?? 0;
    const latestApplied = Math.max(0, ...done);
    if (latestApplied > latestKnown) {
      throw new Error(
        `The database at ${database.location} is at migration ${latestApplied}, but this build only knows up to ${latestKnown}. Run the newer build, or point the service at another database.`,
      );
    }
    const applied: number[] = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      try {
        await migration.up(trx, types, database.dialect);
      } catch (error) {
        throw new Error(
          `Migration ${migration.version} "${migration.name}" failed, so none of this start-up's migrations were applied: ${(error as Error).message}`,
          { cause: error },
        );
      }
      await trx
        .insertInto('schema_migrations')
        .values({
          version: migration.version,
          name: migration.name,
          applied_at: new Date().toISOString(),
        })
        .execute();
      applied.push(migration.version);
    }
    return { applied, current: Math.max(latestApplied, ...applied) };
  });
}

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(
        `Migration "${migration.name}" has version ${migration.version} but stands at position ${index + 1}; versions must be 1, 2, 3… in order.`,
      );
    }
  });
}

export interface AllowedValues {
  table: string;
  column: string;
  allowed: readonly string[];
  /** How the rows are called in the refusal, e.g. `package requests`. */
  rows: string;
  /** How the column is called in the refusal, e.g. `a status`. */
  what: string;
}

/**
 * Makes the database refuse values of `table.column` outside `allowed`, at once however large the
 * table: a CHECK `<table>_<column>_valid` on PostgreSQL; on SQLite, which cannot add a CHECK
 * without copying the table, triggers on insert and update. Rows already there are checked first:
 * any outside the list stop the migration, saying how many to correct.
 */
export async function refuseValuesOutside(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before the typed schema exists
  db: Transaction<any>,
  dialect: DialectName,
  { table, column, allowed, rows, what }: AllowedValues,
): Promise<void> {
  const values = sql.join(allowed.map((value) => sql.lit(value)));
  const invalid = await sql<{ count: number }>`
    select count(*) as count from ${sql.table(table)} where ${sql.ref(column)} not in (${values})`.execute(
    db,
  );
  const count = Number(invalid.rows[0]?.count ?? 0);
  if (count > 0) {
    throw new Error(
      `${count} ${rows} have ${what} other than ${allowed.join(', ')}; correct them before upgrading.`,
    );
  }
  const name = `${table}_${column}_valid`;
  if (dialect === 'postgres') {
    await sql`alter table ${sql.table(table)} add constraint ${sql.id(name)} check (${sql.ref(column)} in (${values}))`.execute(
      db,
    );
    return;
  }
  const refusal = sql.lit(`${table}.${column} must be one of ${allowed.join(', ')}`);
  for (const [suffix, event] of [
    ['on_insert', sql`insert`],
    ['on_update', sql`update of ${sql.ref(column)}`],
  ] as const) {
    await sql`create trigger ${sql.id(`${name}_${suffix}`)} before ${event} on ${sql.table(table)}
      when new.${sql.ref(column)} not in (${values})
      begin select raise(abort, ${refusal}); end`.execute(db);
  }
}
