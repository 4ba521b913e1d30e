import {
  DAY_MS,
  readRetentionMs,
  RetentionSweeper,
  type RetainedTable,
} from '../core/retention.js';
import type { ServiceDefinition } from '../core/service.js';
import { IdempotencyKeys } from './idempotency.js';
import { inventoryMigrations, type InventoryTables } from './migrations.js';
import { packageRequestRoutes } from './routes.js';

export const inventoryService: ServiceDefinition<InventoryTables> = {
  name: 'inventory',
  title: 'Inventory API',
  description: 'Package requests of the Mini Integration Platform demo Inventory system.',
  portVariable: 'INVENTORY_PORT',
  defaultPort: 8001,
  databaseVariable: 'INVENTORY_DATABASE_URL',
  migrations: inventoryMigrations,
  setup: ({ database, env, logger }) => {
    const sweeper = new RetentionSweeper(
      database.db,
      INVENTORY_RETAINED,
      readRetentionMs(env, DAY_MS, 'a client retries a call under its Idempotency-Key for hours'),
      logger,
    );
    return {
      routes: async (app) => {
        await app.register(packageRequestRoutes, {
          db: database.db,
          dialect: database.dialect,
          idempotencyKeys: new IdempotencyKeys(database.db),
          afterErasure: () => database.scrubSoon?.(),
        });
      },
      start: async () => sweeper.start(),
      stop: () => sweeper.stop(),
    };
  },
};

/** What Inventory keeps for RETENTION_DAYS: idempotency records (their keys and answers). */
export const INVENTORY_RETAINED: RetainedTable[] = [
  {
    table: 'idempotency_keys',
    key: 'key',
    writtenAt: 'created_at',
    cutoff: (ms) => new Date(ms).toISOString(),
  },
];
