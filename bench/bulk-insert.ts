// UUIDv7, as the CRM makes them (src/core/ids.ts), so the indexes grow the same way.
import { v7 as newId } from 'uuid';
import Database from 'better-sqlite3';

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
