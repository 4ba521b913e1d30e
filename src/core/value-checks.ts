import { sql, type Transaction } from 'kysely';
import type { DialectName } from './db.js';

/** A column and the only values it may hold. */
export interface ColumnValues {
  column: string;
  allowed: readonly string[];
}

/**
 * On SQLite, replaces the triggers that `refuseValuesOutside` made on `table` with CHECK
 * constraints, by copying the table once. A trigger runs a small program for every row it
 * watches, a few microseconds each time: on the tables every customer writes several times,
 * that was a tenth of the CPU per customer. A CHECK costs next to nothing. PostgreSQL has the
 * CHECKs already: nothing to do there.
 *
 * The copy keeps the rows, their ids, the AUTOINCREMENT counter, every index and any other
 * trigger. It holds the migration's write lock while it copies: 7 s for 1,000,000 deliveries on
 * a 2-core machine.
 */
export async function replaceValueTriggersWithChecks(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run before the typed schema exists
  db: Transaction<any>,
  dialect: DialectName,
  table: string,
  columns: readonly ColumnValues[],
): Promise<void> {
  if (dialect === 'postgres') return;
  const schema = await sql<{ type: string; name: string; sql: string | null }>`
    select type, name, sql from sqlite_master where tbl_name = ${table}`.execute(db);
  const definition = schema.rows.find((row) => row.type === 'table')?.sql;
  const opening = /^create\s+table\s+("?)([A-Za-z_][A-Za-z0-9_]*)\1\s*\(/i;
  if (!definition || !opening.test(definition) || !definition.trimEnd().endsWith(')')) {
    throw new Error(`Cannot read how table ${table} is defined; is it a table of this service?`);
  }
  const replaced = new Set(
    columns.flatMap(({ column }) =>
      ['on_insert', 'on_update'].map((suffix) => `${table}_${column}_valid_${suffix}`),
    ),
  );
  // Indexes made by the table's own UNIQUE and PRIMARY KEY clauses have no sql: the copy's
  // definition makes them again.
  const kept = schema.rows.filter(
    (row) => row.type !== 'table' && row.sql !== null && !replaced.has(row.name),
  );
  const checks = columns.map(
    ({ column, allowed }) =>
      `, constraint "${table}_${column}_valid" check ("${column}" in (${allowed
        .map((value) => `'${value.replaceAll("'", "''")}'`)
        .join(', ')}))`,
  );
  const copy = `${table}_with_checks`;
  const body = definition.trimEnd();
  const copyDefinition =
    body.replace(opening, `create table "${copy}" (`).slice(0, -1) + checks.join('') + ')';
  const counter = await sql<{ seq: number }>`
    select seq from sqlite_sequence where name = ${table}`
    .execute(db)
    .catch(() => ({ rows: [] as { seq: number }[] }));

  await sql.raw(copyDefinition).execute(db);
  // Same definition, same column order: the rows go over as they are (and any outside the
  // lists stop the migration here, naming the constraint).
  await sql`insert into ${sql.table(copy)} select * from ${sql.table(table)}`.execute(db);
  await sql`drop table ${sql.table(table)}`.execute(db);
  await sql`alter table ${sql.table(copy)} rename to ${sql.table(table)}`.execute(db);
  for (const row of kept) await sql.raw(row.sql!).execute(db);
  const seq = counter.rows[0]?.seq;
  if (seq !== undefined) {
    // Ids once handed out are not handed out again, even those whose rows were deleted.
    await sql`delete from sqlite_sequence where name = ${table}`.execute(db);
    await sql`insert into sqlite_sequence (name, seq)
      values (${table}, max(${seq}, coalesce((select max(rowid) from ${sql.table(table)}), 0)))`.execute(
      db,
    );
  }
}
