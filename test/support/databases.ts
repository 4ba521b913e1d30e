import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/core/db.js';

export type ServiceName = 'crm' | 'inventory' | 'integration';

const URL_VARIABLES: Record<ServiceName, string> = {
  crm: 'CRM_DATABASE_URL',
  inventory: 'INVENTORY_DATABASE_URL',
  integration: 'INTEGRATION_DATABASE_URL',
};

/** The PostgreSQL URL the suite runs against for this service, or undefined for SQLite. */
export function postgresUrlFor(service: ServiceName): string | undefined {
  const value = process.env[URL_VARIABLES[service]];
  return value && value.trim() !== '' ? value : undefined;
}

export interface TestDatabase<Tables> extends Database<Tables> {
  /** Environment that points a service process at this same database. */
  env: Record<string, string>;
  /** Closes the connection and deletes the data. */
  drop(): Promise<void>;
}

/**
 * A fresh, empty database for one test: a temporary SQLite file, or, when the service's
 * `*_DATABASE_URL` is set, a new schema in that PostgreSQL database.
 */
export async function createTestDatabase<Tables>(
  service: ServiceName,
): Promise<TestDatabase<Tables>> {
  const url = postgresUrlFor(service);
  if (url) {
    const schema = `test_${service}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const database = await openDatabase<Tables>({ url, schema, sqliteFile: '' });
    const withSchema = new URL(url);
    withSchema.searchParams.set('options', `-c search_path=${schema}`);
    return {
      ...database,
      env: { [URL_VARIABLES[service]]: withSchema.toString() },
      drop: async () => {
        await database.close();
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          await client.query(`drop schema if exists "${schema}" cascade`);
        } finally {
          await client.end();
        }
      },
    };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mip-${service}-`));
  const database = await openDatabase<Tables>({ sqliteFile: path.join(dir, `${service}.sqlite`) });
  return {
    ...database,
    // Scrubs after erasures within a second, so tests can wait for them.
    env: { DATA_DIR: dir, SQLITE_SCRUB_AFTER_MS: '1000' },
    drop: async () => {
      await database.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How many rows `table` holds (tests count what was stored, not what was answered). */
export async function countRows<Tables>(db: Kysely<Tables>, table: keyof Tables & string) {
  const { rows } = await sql<{
    n: number | string;
  }>`select count(*) as n from ${sql.table(table)}`.execute(db);
  return Number(rows[0]!.n);
}

/** The tables of the app's database: its PostgreSQL schema, or its SQLite file. */
export async function tablesOf(test: { database: Database<unknown> }): Promise<string[]> {
  const db = test.database.db as Kysely<any>;
  const { rows } =
    test.database.dialect === 'postgres'
      ? await sql<{ name: string }>`select table_name as name from information_schema.tables
          where table_schema = current_schema() and table_type = 'BASE TABLE'`.execute(db)
      : await sql<{ name: string }>`select name from sqlite_master
          where type = 'table' and name not like 'sqlite_%'`.execute(db);
  return rows.map((row) => row.name);
}

/** How many rows each table of the app's database holds. */
export async function rowCounts(test: {
  database: Database<unknown>;
}): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const table of await tablesOf(test)) {
    counts.set(table, await countRows(test.database.db as Kysely<any>, table));
  }
  return counts;
}
