// UUIDv7, as the CRM makes them (src/core/ids.ts), so the indexes grow the same way.
import { v7 as newId } from 'uuid';
import Database from 'better-sqlite3';
import type pg from 'pg';

/**
 * Writes `count` customers and their `customer.created` events straight into the CRM's SQLite file,
 * in one transaction with prepared statements: creating 1,000,000 customers through the API would
 * take longer than the whole bench. The CRM must be stopped, and must have run its migrations on this
 * file first (the bench starts it once for that), so the schema is the CRM's own. The rows are what
 * `CustomerStore.create` writes: same columns, same payload, same order of positions.
 */
export function bulkInsertCustomers(crmSqlitePath: string, count: number, label: string): void {
  const db = new Database(crmSqlitePath);
  try {
    db.pragma('journal_mode = WAL');
    const insertCustomer = db.prepare(
      'INSERT INTO customers (id, name, email, email_normalized, created_at) VALUES (?, ?, ?, ?, ?)',
    );
    const insertEvent = db.prepare(
      'INSERT INTO events (id, type, customer_id, payload, occurred_at, traceparent) VALUES (?, ?, ?, ?, ?, NULL)',
    );
    const insertAll = db.transaction(() => {
      for (let n = 1; n <= count; n++) {
        const customer = {
          id: newId(),
          name: `Bench Customer ${n}`,
          email: `bench-${label}-${n}@example.com`,
          created_at: new Date().toISOString(),
        };
        insertCustomer.run(
          customer.id,
          customer.name,
          customer.email,
          customer.email.toLowerCase(),
          customer.created_at,
        );
        insertEvent.run(
          newId(),
          'customer.created',
          customer.id,
          JSON.stringify(customer),
          customer.created_at,
        );
      }
    });
    insertAll();
  } finally {
    db.close();
  }
}

/** Rows per INSERT into PostgreSQL: large enough that round trips cost little. */
const POSTGRES_BATCH = 5_000;

/**
 * The same rows as `bulkInsertCustomers`, into the CRM's tables in `schema` on PostgreSQL, in
 * batches (each one statement per table, its columns passed as arrays).
 */
export async function bulkInsertCustomersIntoPostgres(
  client: pg.Client,
  schema: string,
  count: number,
  label: string,
): Promise<void> {
  await client.query('begin');
  try {
    for (let first = 1; first <= count; first += POSTGRES_BATCH) {
      const ids: string[] = [];
      const names: string[] = [];
      const emails: string[] = [];
      const createdAts: string[] = [];
      const eventIds: string[] = [];
      const payloads: string[] = [];
      for (let n = first; n < first + POSTGRES_BATCH && n <= count; n++) {
        const customer = {
          id: newId(),
          name: `Bench Customer ${n}`,
          email: `bench-${label}-${n}@example.com`,
          created_at: new Date().toISOString(),
        };
        ids.push(customer.id);
        names.push(customer.name);
        emails.push(customer.email);
        createdAts.push(customer.created_at);
        eventIds.push(newId());
        payloads.push(JSON.stringify(customer));
      }
      await client.query(
        `insert into "${schema}".customers (id, name, email, email_normalized, created_at)
         select id, name, email, lower(email), created_at
         from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           as rows (id, name, email, created_at)`,
        [ids, names, emails, createdAts],
      );
      // WITH ORDINALITY keeps the customers' order, so positions follow creation as in the CRM.
      await client.query(
        `insert into "${schema}".events (id, type, customer_id, payload, occurred_at)
         select id, 'customer.created', customer_id, payload, occurred_at
         from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           with ordinality as rows (id, customer_id, payload, occurred_at, n)
         order by n`,
        [eventIds, ids, payloads, createdAts],
      );
    }
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}
