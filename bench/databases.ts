/**
 * Where a bench run's services keep their data: SQLite files in a fresh DATA_DIR (the embedded
 * default), or with `--postgres` three fresh schemas in one PostgreSQL database, created for the
 * run and dropped after it. Both behind one interface, so every scenario runs on either.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { bulkInsertCustomers, bulkInsertCustomersIntoPostgres } from './bulk-insert.js';
import { postgres, POSTGRES_URL } from './options.js';
import { tempDataDir } from './services.js';

export interface BenchDatabases {
  /** The environment that points the services at these databases. */
  env: Record<string, string>;
  /** Writes `count` customers and their events into the CRM's database; the CRM must be stopped. */
  insertCustomers(count: number, label: string): Promise<void>;
  /** Removes everything the run stored. */
  drop(): Promise<void>;
}

const SERVICES = ['crm', 'inventory', 'integration'] as const;

/** `runs` with a client of the bench's PostgreSQL database, closed afterwards. */
export async function withPostgres<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** The database URL whose connections use `schema` (the services create their tables there). */
function urlWithSchema(schema: string): string {
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.toString();
}

/** Fresh databases for one run, on the engine this bench run measures. */
export async function createBenchDatabases(label: string): Promise<BenchDatabases> {
  const { dir, cleanup } = tempDataDir(label);
  if (!postgres) {
    return {
      env: { DATA_DIR: dir },
      insertCustomers: (count, rowLabel) => {
        bulkInsertCustomers(path.join(dir, 'crm.sqlite'), count, rowLabel);
        return Promise.resolve();
      },
      drop: () => Promise.resolve(cleanup()),
    };
  }
  const run = `bench_${label.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
  const schemas = Object.fromEntries(SERVICES.map((service) => [service, `${run}_${service}`]));
  await withPostgres(async (client) => {
    for (const schema of Object.values(schemas)) await client.query(`create schema "${schema}"`);
  });
  return {
    // DATA_DIR too, so nothing a service might keep on disk lands in the working directory.
    env: {
      DATA_DIR: dir,
      CRM_DATABASE_URL: urlWithSchema(schemas.crm!),
      INVENTORY_DATABASE_URL: urlWithSchema(schemas.inventory!),
      INTEGRATION_DATABASE_URL: urlWithSchema(schemas.integration!),
    },
    insertCustomers: (count, rowLabel) =>
      withPostgres((client) =>
        bulkInsertCustomersIntoPostgres(client, schemas.crm!, count, rowLabel),
      ),
    drop: async () => {
      await withPostgres(async (client) => {
        for (const schema of Object.values(schemas))
          await client.query(`drop schema if exists "${schema}" cascade`);
      });
      cleanup();
    },
  };
}
